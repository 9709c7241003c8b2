#!/usr/bin/env bash
# The checks CI runs: lint, formatting, the import-layer contracts, then the whole test suite.
# Extra arguments go to pytest (e.g. tests/unit, -k name).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/lint-imports
RAY_AUTH_MODE=disabled .venv/bin/pytest "$@"
