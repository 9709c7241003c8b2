"""The client installs and runs without the server: nothing of Ray, torch or the models."""

import tomllib
from pathlib import Path

from tests.client_alone import SERVER_ONLY, run_client

ROOT = Path(__file__).resolve().parents[2]


def test_the_base_install_is_the_client_alone():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = {dep.split(">")[0].split("[")[0].split("=")[0].strip().lower() for dep in project["dependencies"]}
    assert not base & {"ray", "torch", "transformers", "fastapi", "silero-vad", "faster-whisper", "pydantic"}
    assert {"numpy", "soundfile", "soxr", "httpx", "websockets", "rich"} <= base
    assert "ray" in " ".join(project["optional-dependencies"]["server"])


def test_omni_client_runs_where_no_server_package_can_be_imported():
    shown = run_client("--help")
    assert shown.returncode == 0, shown.stderr
    assert "talk" in shown.stdout and "send" in shown.stdout
    unreachable = run_client("--url", "http://127.0.0.1:9", "clusters")
    assert unreachable.returncode == 3, unreachable.stderr
    assert "127.0.0.1:9" in unreachable.stderr and "ImportError" not in unreachable.stderr
    assert set(SERVER_ONLY) >= {"ray", "torch", "graphs", "deployments"}
