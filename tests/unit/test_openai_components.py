"""The OpenAI-backed stages against a small real HTTP server that answers as the API does,
including the 503s it sends under load: retries, the API's own timing, and a missing key."""

import asyncio
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import openai
import pytest

from deployments.stt.openai_api import OpenAISpeechToText


class FlakyTranscriptionAPI(BaseHTTPRequestHandler):
    """Answers 503 to the first `failures` requests, then a transcription that took 5 ms."""

    failures = 0
    requests = 0

    def do_POST(self):
        type(self).requests += 1
        self.rfile.read(int(self.headers["content-length"]))
        if type(self).requests <= type(self).failures:
            self._answer(503, {"error": {"message": "overloaded", "type": "server_error"}}, {"retry-after-ms": "10"})
        else:
            self._answer(200, {"text": " hello world "}, {"openai-processing-ms": "5"})

    def _answer(self, status, body, headers):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def api(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    server = ThreadingHTTPServer(("127.0.0.1", 0), FlakyTranscriptionAPI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    FlakyTranscriptionAPI.requests = 0
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def transcribe(stt):
    return asyncio.run(stt.run({"audio": np.zeros(16_000, dtype=np.float32)}, {}))


def test_503s_are_retried_and_the_api_time_is_the_model_time(api):
    FlakyTranscriptionAPI.failures = 2
    out = transcribe(OpenAISpeechToText(base_url=api, max_retries=2))
    assert out.outputs["transcript"] == "hello world"
    assert out.result_profile["retries"] == 2 and FlakyTranscriptionAPI.requests == 3
    assert out.model_s == pytest.approx(0.005)


def test_without_retries_the_error_reaches_the_graph(api):
    FlakyTranscriptionAPI.failures = 1
    with pytest.raises(openai.InternalServerError, match="overloaded"):
        transcribe(OpenAISpeechToText(base_url=api, max_retries=0))


def test_a_missing_key_is_named(monkeypatch):
    monkeypatch.delenv("OMNISERVE_TEST_KEY", raising=False)
    options = {"api_key_env": "OMNISERVE_TEST_KEY"}
    assert OpenAISpeechToText.unavailable_reason(options).startswith("OMNISERVE_TEST_KEY is not set")
    with pytest.raises(RuntimeError, match="OMNISERVE_TEST_KEY is not set"):
        OpenAISpeechToText(**options)


def test_a_prompt_with_images_is_recorded_without_their_bytes():
    from deployments.llm.openai_api import data_url
    from deployments.llm.service import recorded_prompt
    from tests.pictures import sign

    png = sign()
    content = [
        {"type": "text", "text": "What does it say?"},
        {"type": "image_url", "image_url": {"url": data_url(png)}},
    ]
    recorded = recorded_prompt(content)
    assert recorded[0] == content[0]
    image = recorded[1]["image"]
    assert re.fullmatch(r"<png, \d+ KB, sha256 [0-9a-f]{12}>", image), image
    assert "base64" not in json.dumps(recorded)
    assert recorded_prompt("plain words") == "plain words"
