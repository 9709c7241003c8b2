"""The OpenAPI schema tells the truth: schemathesis generates requests from it for every operation, in
every phase (the schema's examples, its boundaries, random cases, and sequences that feed one answer's
ids into the next request), and runs every check on each answer, against the real server.

Its CLI runs it, as anyone checking the server by hand would: tests/integration/schemathesis.toml holds
the few narrow allowances, each with its reason.
"""

import subprocess
import sys
from pathlib import Path

from graphs.api.http_app import api
from graphs.app import build_app  # noqa: F401  (registers every route on the app)
from tests.integration.conftest import API_KEY, Server

CONFIG = Path(__file__).with_name("schemathesis.toml")


def outline(openapi: dict) -> dict:
    """Each operation's parameters and documented status codes: what the checks below rely on."""
    return {
        (path, method): (sorted(p["name"] for p in op.get("parameters", [])), sorted(op["responses"]))
        for path, operations in openapi["paths"].items()
        for method, op in operations.items()
    }


def test_the_server_serves_this_schema(server: Server):
    assert outline(server.http.get("/openapi.json").json()) == outline(api.openapi())


def test_every_operation_answers_as_its_schema_says(server: Server, tmp_path):
    command = [
        *(sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "--no-color"),
        *("run", f"{server.url}/openapi.json", "--url", server.url),
        *("--checks", "all", "--phases", "examples,coverage,fuzzing,stateful"),
        *("--header", f"Authorization: Bearer {API_KEY}"),
        *("--report", "junit", "--report-dir", str(tmp_path)),
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-20_000:] + run.stderr[-5_000:]
