"""bench.live's clock against a small WebSocket server standing in for OmniServe: the client's first
audio runs from the end of the speech in the recording to the reply audio's arrival."""

import json
import threading

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import serve

from bench.live import TimedSession
from client.api import OmniServeClient
from omniwire.frames import EndFrame, MetricsFrame, StartFrame, TTSAudioFrame

RATE = 16_000
ANSWER_AFTER = 25  # chunks: the reply comes 0.5 s after the recording began


@pytest.fixture
def url():
    """Answers the 25th audio chunk with 0.2 s of reply audio, the turn's metrics and its end."""

    def session(ws):
        opening = json.loads(ws.recv())
        ws.send(json.dumps(StartFrame(track_id="T-1", cluster=opening["cluster"]).to_wire()))
        chunks = 0
        try:
            for message in ws:
                chunks += isinstance(message, bytes)
                if chunks == ANSWER_AFTER and isinstance(message, bytes):
                    for frame in (
                        TTSAudioFrame(audio=bytes(2 * RATE // 5), sample_rate=RATE),
                        MetricsFrame(stage=None, metrics={"time_to_first_audio_s": 0.2, "total_reply_s": 0.4}),
                        EndFrame(track_id="T-1", turn=1, status="completed"),
                    ):
                        ws.send(json.dumps(frame.to_wire()))
        except ConnectionClosed:
            pass

    with serve(session, "127.0.0.1", 0) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        yield f"http://127.0.0.1:{server.socket.getsockname()[1]}"
        server.shutdown()


def test_a_turn_is_timed_from_the_end_of_the_speech(url):
    speech = 0.5 * np.sin(np.arange(int(0.3 * RATE)) / 5).astype(np.float32)
    recording = np.concatenate([speech, np.zeros(RATE // 10, np.float32)])  # its own trailing silence
    with OmniServeClient(url) as client, client.live(cluster="X") as live:
        turn = TimedSession(live).turn(recording)
    assert turn["status"] == "completed" and turn["time_to_first_audio_s"] == 0.2, "the server's figure, as sent"
    # The reply came 0.5 s after the recording began, its speech ended at 0.3 s.
    assert 0.15 <= turn["client_first_audio_s"] < 0.5
    assert turn["total_reply_s"] >= turn["client_first_audio_s"]
