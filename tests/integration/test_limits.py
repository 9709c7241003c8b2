"""Limits checked before the work, on the real server with its default limits: each refusal is a 4xx
that names the limit, and leaves no task record behind."""

import io
import json
import socket

import httpx
import numpy as np
import pytest
from PIL import Image
from websockets.sync.client import connect

from bench.speech import speak
from omniwire.audio import encode_wav
from tests.integration.conftest import AUTH
from tests.integration.test_conversation import post

CLUSTER = "CLUSTER_Q_NO_EMOTION_ETE_CONVERSATION"
MB = 1_000_000


def test_a_body_over_the_limit_is_refused_while_it_is_read(server):
    boundary = "omniserve-limit-test"

    def chunks():  # a multipart upload with no Content-Length: only counting what arrives can stop it
        yield f'--{boundary}\r\nContent-Disposition: form-data; name="audio"; filename="a.wav"\r\n\r\n'.encode()
        for _ in range(27):
            yield b"\0" * MB
        yield f"\r\n--{boundary}--\r\n".encode()

    multipart = {**AUTH, "content-type": f"multipart/form-data; boundary={boundary}"}
    streamed = httpx.post(f"{server.url}/v1/conversations", content=chunks(), headers=multipart, timeout=60)
    assert streamed.status_code == 413 and "limits.max_body_bytes" in streamed.json()["detail"]
    # A Content-Length over the limit is refused before a byte of the body is sent (a raw socket: httpx will
    # not declare more than it sends).
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as raw:
        raw.sendall(
            f"POST /v1/conversations HTTP/1.1\r\nHost: {host}\r\nAuthorization: {AUTH['Authorization']}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {30 * MB}\r\n\r\n".encode()
        )
        answer = b""
        while b"byte limit" not in answer and (chunk := raw.recv(65536)):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413") and b"25000000 byte limit" in answer


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_too_many_or_too_large_pictures_are_refused_before_the_turn(server):
    many = post(server, speak("Hello."), cluster=CLUSTER, images=[(f"{i}.png", png(8, 8)) for i in range(9)])
    assert many.status_code == 413 and "limits.max_images" in many.json()["detail"]
    huge = post(server, speak("Hello."), cluster=CLUSTER, images=[("big.png", png(8000, 6000))])
    assert huge.status_code == 413 and "limits.max_image_pixels" in huge.json()["detail"]


def test_a_truncated_wav_says_so(server):
    whole = speak("What is the capital of France?")
    response = post(server, whole[: len(whole) // 2], cluster=CLUSTER)
    assert response.status_code == 400
    assert "truncated audio: the WAV header says" in response.json()["detail"]


def test_audio_over_the_length_limit_is_refused_on_the_openai_route_too(server):
    long = encode_wav(np.zeros(16_000 * 125, dtype=np.float32), 16_000)
    response = server.http.post(
        "/v1/audio/transcriptions", data={"model": "whisper-1"}, files={"file": ("long.wav", long, "audio/wav")}
    )
    assert response.status_code == 413
    assert "max_audio_seconds" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "settings,named",
    [({"sample_rate": 1_000_000_000}, "sample_rate"), ({"vad": {"max_utterance_s": 1e9}}, "max_utterance_s")],
)
def test_a_start_frame_out_of_range_is_refused(server, settings, named):
    url = server.url.replace("http://", "ws://") + "/v1/conversations/ws"
    with connect(url, additional_headers=AUTH) as ws:
        ws.send(json.dumps({"type": "StartFrame", "cluster": CLUSTER, **settings}))
        error = json.loads(ws.recv(timeout=30))
    assert error["type"] == "ErrorFrame" and error["status"] == 400 and named in error["error"]
