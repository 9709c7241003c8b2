"""Runs omni-client in a fresh interpreter where the server's packages cannot be imported, as on a
machine with only the client installed (`pip install omniserve`, no `server` extra)."""

import os
import subprocess
import sys

# The server's packages and the heavy ones it needs; the client must run without any of them.
SERVER_ONLY = (
    "ray",
    "torch",
    "transformers",
    "fastapi",
    "silero_vad",
    "faster_whisper",
    "pydantic",
    "sqlalchemy",
    "graphs",
    "deployments",
    "bench",
)

_RUN = """
import importlib.abc, sys

class ServerOnly(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError(f"{{name}} is not installed with the client")

sys.meta_path.insert(0, ServerOnly())
from client.cli import main
sys.exit(main({argv!r}))
"""


def run_client(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    code = _RUN.format(blocked=set(SERVER_ONLY), argv=[str(a) for a in argv])
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
        # Nothing of this process's environment but the server's key, as a user would export it.
        env={"COLUMNS": "250", "PATH": "/usr/bin:/bin", **_key()},
    )


def _key() -> dict[str, str]:
    key = os.environ.get("OMNISERVE_API_KEY")
    return {"OMNISERVE_API_KEY": key} if key else {}
