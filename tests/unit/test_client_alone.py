"""The client installs and runs without the server: nothing of Ray, torch or the models."""

import tomllib
from pathlib import Path

from tests.client_alone import SERVER_ONLY, run_client

ROOT = Path(__file__).resolve().parents[2]


def test_the_base_install_is_the_client_alone():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = {dep.split(">")[0].split("[")[0].split("=")[0].strip().lower() for dep in project["dependencies"]}
    assert not base & {"ray", "torch", "transformers", "fastapi", "silero-vad", "faster-whisper", "pydantic"}
    assert {"numpy", "soundfile", "soxr", "httpx", "websockets", "rich", "sounddevice"} <= base
    assert "ray" in " ".join(project["optional-dependencies"]["server"])


def test_omni_client_runs_where_no_server_package_can_be_imported():
    shown = run_client("--help")
    assert shown.returncode == 0, shown.stderr
    assert "talk" in shown.stdout and "send" in shown.stdout
    unreachable = run_client("--url", "http://127.0.0.1:9", "clusters")
    assert unreachable.returncode == 3, unreachable.stderr
    assert "127.0.0.1:9" in unreachable.stderr and "ImportError" not in unreachable.stderr
    assert set(SERVER_ONLY) >= {"ray", "torch", "graphs", "deployments"}


def test_talk_without_an_audio_device_says_so_and_exits_2():
    """No microphone here: sounddevice missing, PortAudio missing or no device all end the same way."""
    done = run_client("--url", "http://127.0.0.1:9", "talk", timeout=60)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: no "), done.stderr
    # The hint names the file option standing in for the missing device (microphone or speaker).
    assert ("--input" in lines[0] or "--output" in lines[0]) and "Traceback" not in done.stderr
