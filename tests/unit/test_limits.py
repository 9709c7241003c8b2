"""Limits of a live session, on a real WebSocket (Starlette's test transport) without a cluster."""

import io

import pytest
from fastapi import FastAPI, WebSocket
from fastapi.testclient import TestClient
from PIL import Image
from starlette.websockets import WebSocketDisconnect

from graphs.limits.requests import Limits, image_problem
from graphs.live.session import LiveConversation, LiveSettings, SessionServices
from omniwire.frames import ImageFrame, StartFrame


def session_app(limits: Limits) -> FastAPI:
    app = FastAPI()

    @app.websocket("/ws")
    async def live(ws: WebSocket) -> None:
        await ws.accept()
        start = StartFrame(track_id="T-CLUSTER_TEST-" + "0" * 32, cluster="CLUSTER_TEST")
        await LiveConversation(ws, start, None, None, LiveSettings(), True, SessionServices(limits=limits)).run()

    return app


def frames_until_closed(ws) -> list[dict]:
    frames = []
    with pytest.raises(WebSocketDisconnect) as closed:
        while True:
            frames.append(ws.receive_json())
    return frames, closed.value


def test_an_idle_session_is_closed_and_told_why():
    with TestClient(session_app(Limits(ws_idle_timeout_s=0.3))).websocket_connect("/ws") as ws:
        frames, closed = frames_until_closed(ws)
    assert closed.code == 1008
    assert frames[-1]["type"] == "ErrorFrame" and "limits.ws_idle_timeout_s" in frames[-1]["error"]


def test_a_session_ends_at_its_length_limit_even_while_the_client_talks():
    with TestClient(session_app(Limits(ws_max_session_s=0.5, ws_idle_timeout_s=5))).websocket_connect("/ws") as ws:
        ws.send_bytes(b"\0\0" * 320)
        frames, closed = frames_until_closed(ws)
    assert closed.code == 1008 and "limits.ws_max_session_s" in frames[-1]["error"]


def test_an_oversized_message_closes_the_session_with_1009():
    with TestClient(session_app(Limits(max_ws_message_bytes=1000))).websocket_connect("/ws") as ws:
        ws.send_bytes(b"\0" * 1001)
        frames, closed = frames_until_closed(ws)
    assert closed.code == 1009 and "limits.max_ws_message_bytes" in frames[-1]["error"]


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_pictures_over_the_limits_are_dropped_with_a_reason_and_the_session_goes_on():
    limits = Limits(max_images=2, max_image_pixels=10_000)
    with TestClient(session_app(limits)).websocket_connect("/ws") as ws:
        assert ws.receive_json()["type"] == "StartFrame"
        for image in (png(50, 50), png(200, 200), b"not a picture", png(50, 50), png(50, 50)):
            ws.send_json(ImageFrame(image=image).to_wire())
        errors = [ws.receive_json() for _ in range(3)]
    assert [e["status"] for e in errors] == [413, 415, 413]
    assert "limits.max_image_pixels" in errors[0]["error"] and "limits.max_images" in errors[2]["error"]


def test_a_picture_is_judged_by_its_header_before_it_is_decoded():
    limits = Limits(max_image_bytes=10_000_000, max_image_pixels=1_000_000)
    assert image_problem(png(100, 100), limits) is None
    assert image_problem(png(2000, 1000), limits)[0] == 413
    assert image_problem(b"\x89PNG broken", limits)[0] == 415
    assert "limits.max_image_bytes" in image_problem(png(10, 10), Limits(max_image_bytes=10))[1]
