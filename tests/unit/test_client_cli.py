"""omni-client's server settings and the key it sends, against small real HTTP and WebSocket servers
standing in for OmniServe (the real one is in tests/integration/test_client.py)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import soundfile as sf
from websockets.sync.server import serve

from client.cli import main

CLUSTERS = {
    "clusters": [
        {"name": "CLUSTER_A", "enabled": True, "reason": None, "stages": [{"name": "speech_to_text"}]},
        {"name": "CLUSTER_B", "enabled": False, "reason": "switched off", "stages": []},
    ]
}


@pytest.fixture
def http_server():
    """Answers GET /v1/clusters and remembers each request's Authorization header."""
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.headers.get("Authorization"))
            body = json.dumps(CLUSTERS).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", seen
    server.shutdown()


def test_the_url_and_key_come_from_flags(http_server, capsys, monkeypatch):
    url, seen = http_server
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["--url", url, "--api-key", "sk-flag", "clusters"]) == 0
    out = capsys.readouterr().out
    assert "CLUSTER_A" in out and "switched off" in out
    assert seen == ["Bearer sk-flag"]


def test_the_url_and_key_come_from_the_environment(http_server, capsys, monkeypatch):
    url, seen = http_server
    monkeypatch.setenv("OMNISERVE_URL", url)
    monkeypatch.setenv("OMNISERVE_API_KEY", "sk-env")
    assert main(["clusters"]) == 0
    assert main(["clusters", "--api-key", "sk-after"]) == 0, "flags after the command work too"
    assert seen == ["Bearer sk-env", "Bearer sk-after"]


def test_talk_sends_the_key_and_reports_a_refusal(tmp_path, capsys):
    """The WebSocket carries the key too, and a fatal ErrorFrame ends the command with its reason."""
    seen = {}

    def refuse(ws):
        seen["authorization"] = ws.request.headers.get("Authorization")
        seen["opening"] = json.loads(ws.recv())
        ws.send(
            json.dumps(
                {
                    "type": "ErrorFrame",
                    "error": "cluster X is not enabled in this deployment: off",
                    "status": 503,
                    "fatal": True,
                }
            )
        )

    question = tmp_path / "question.wav"
    sf.write(question, np.zeros(1600, np.float32), 16_000)
    with serve(refuse, "127.0.0.1", 0) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.socket.getsockname()[1]}"
        code = main(
            [
                "--url",
                url,
                "--api-key",
                "sk-live",
                "talk",
                "--track_cluster",
                "X",
                "--input",
                str(question),
                "--output",
                str(tmp_path / "reply.wav"),
            ]
        )
        server.shutdown()
    err = capsys.readouterr().err
    assert code == 1
    assert "cluster X is not enabled in this deployment: off (HTTP 503)" in err and "Traceback" not in err
    assert seen["authorization"] == "Bearer sk-live"
    assert seen["opening"] == {"type": "StartFrame", "cluster": "X", "sample_rate": 16_000, "allow_interruptions": True}
