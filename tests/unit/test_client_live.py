"""The client's live session against a small WebSocket server standing in for OmniServe: the opening,
recorded speech sent at real-time pace, frames parsed, interruption and hang-up (the real server is in
tests/integration/test_streaming.py)."""

import json
import threading
import time

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import serve

from client.api import OmniServeClient, OmniServeError
from client.audio import RealTimePace
from omniwire.audio import from_pcm16, to_pcm16
from omniwire.frames import StartFrame, TTSAudioFrame

RATE = 16_000


@pytest.fixture
def live_server():
    """Opens each session with a StartFrame, answers every 5th audio chunk with a second of reply
    audio, and keeps what it was sent: (time.time(), message)."""
    got: list[tuple[float, str | bytes]] = []

    def session(ws):
        opening = json.loads(ws.recv())
        got.append((time.time(), opening))
        if opening["cluster"] == "NOPE":
            ws.send(json.dumps({"type": "ErrorFrame", "error": "unknown cluster 'NOPE'", "status": 404, "fatal": True}))
            return
        ws.send(json.dumps(StartFrame(track_id="T-1", cluster=opening["cluster"]).to_wire()))
        chunks = 0
        try:
            for message in ws:
                got.append((time.time(), message))
                chunks += isinstance(message, bytes)
                if isinstance(message, bytes) and chunks % 5 == 0:
                    ws.send(json.dumps(TTSAudioFrame(audio=bytes(2 * RATE), sample_rate=RATE).to_wire()))
                    ws.send(json.dumps({"type": "FrameOfTheFuture"}))
        except ConnectionClosed:
            pass

    with serve(session, "127.0.0.1", 0) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        yield f"http://127.0.0.1:{server.socket.getsockname()[1]}", got
        server.shutdown()


def test_a_recording_is_spoken_at_real_time_pace_and_the_frames_come_back_parsed(live_server):
    url, got = live_server
    samples = (0.5 * np.sin(np.arange(int(0.2 * RATE)) / 10)).astype(np.float32)
    heard = []
    with OmniServeClient(url, api_key="sk-test") as client, client.live(cluster="X") as live:
        assert live.start.track_id == "T-1" and live.sample_rate == RATE
        began = time.time()

        def between():
            while (frame := live.receive(timeout=0)) is not None:
                heard.append(frame)

        assert began <= live.speak(samples, between=between) <= began + 0.05
        took = time.time() - began
        live.interrupt()
    opening = got[0][1]
    assert opening == {"type": "StartFrame", "cluster": "X", "sample_rate": RATE, "allow_interruptions": True}
    audio = [(at, message) for at, message in got if isinstance(message, bytes)]
    assert [len(m) for _, m in audio] == [2 * 320] * 10, "20 ms chunks"
    assert np.allclose(from_pcm16(b"".join(m for _, m in audio)), from_pcm16(to_pcm16(samples)))
    assert 0.19 <= took < 0.8, "at real-time pace"
    assert audio[-1][0] - audio[0][0] >= 0.17, "spread over the recording's length"
    assert all(isinstance(f, TTSAudioFrame) and f.seconds == 1.0 for f in heard) and len(heard) >= 1
    sent = [json.loads(m)["type"] for _, m in got[1:] if isinstance(m, str)]
    assert sent == ["StartInterruptionFrame", "EndFrame"], "interrupted, then hung up"


def test_a_refused_opening_raises_with_the_servers_reason(live_server):
    url, _ = live_server
    with OmniServeClient(url) as client, pytest.raises(OmniServeError) as refused:
        client.live(cluster="NOPE")
    assert refused.value.status == 404 and "unknown cluster 'NOPE'" in refused.value.detail


def test_the_pace_keeps_real_time_whatever_the_work_between():
    pace = RealTimePace(0.02)
    pace.start()
    started = time.perf_counter()
    for n in range(10):
        time.sleep(0.015 if n % 2 else 0.001)  # work that takes part of a chunk, unevenly
        pace.wait()
    assert 0.2 <= time.perf_counter() - started < 0.6
