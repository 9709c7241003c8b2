#!/usr/bin/env bash
# `serve run` with the Ray environment of configs/ray.env; the serve config defaults to serve_config.yaml.
set -euo pipefail
cd "$(dirname "$0")/.."
set -a
# shellcheck source=../configs/ray.env
source configs/ray.env
set +a
exec .venv/bin/serve run "${@:-serve_config.yaml}"
