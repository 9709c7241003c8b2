"""The live session on its own: real speech and the real VAD in, a stand-in graph behind it."""

import asyncio
import json
import threading
import time

import numpy as np
from fastapi import FastAPI, WebSocket
from fastapi.testclient import TestClient

from bench.speech import speak
from graphs.live.session import LiveConversation, LiveSettings, SessionServices
from graphs.live.vad import VADSettings
from graphs.pipeline.turn import TurnFactory, TurnRequest
from omniwire.audio import decode, to_pcm16
from omniwire.frames import StartFrame, TTSAudioFrame, WireReader

TRACK = "T-CLUSTER_TEST-" + "0" * 32


class _Stream:
    """A turn's stream that never ends by itself, as a graph's does while its models work."""

    def __init__(self) -> None:
        self.cancelled = asyncio.Event()

    def __aiter__(self):
        return self

    async def __anext__(self):
        await self.cancelled.wait()
        raise StopAsyncIteration

    def cancel(self) -> None:
        self.cancelled.set()


class _Graph:
    """Keeps the turns the session hands it."""

    def __init__(self) -> None:
        self.turns: list[TurnRequest] = []
        self.two_turns = threading.Event()

    def options(self, **_):
        return self

    @property
    def run_turn_stream(self):
        return self

    @property
    def prepare_turn(self):
        return self

    def remote(self, request):
        if isinstance(request, TurnRequest):
            self.turns.append(request)
            if len(self.turns) == 2:
                self.two_turns.set()
            return _Stream()
        return asyncio.sleep(0)  # prepare_turn


def receive_frame(ws, reader: WireReader):
    """The next frame of a live session, its audio the binary message after its header."""
    while True:
        message = ws.receive()
        if message.get("bytes") is not None:
            return reader.binary(message["bytes"])
        if (frame := reader.text(json.loads(message["text"]))) is not None:
            return frame


def test_a_dropped_turn_does_not_hold_up_the_users_next_words():
    """Recording that a turn was dropped may wait for the database (SQLite's write lock, a far
    PostgreSQL); the session meanwhile goes on hearing the user and starts the next turn, which goes
    to the graph once the fact is recorded (so its history cannot hold the dropped turn)."""
    graph, marking, next_turn = _Graph(), threading.Event(), threading.Event()
    discarded: list[str] = []
    requests: list[TurnRequest] = []

    def new_turn(*args, **kwargs) -> TurnRequest:
        requests.append(TurnFactory(TRACK, 3)(*args, **kwargs))
        if len(requests) == 2:
            next_turn.set()
        return requests[-1]

    class Facts:
        def record_discarded(self, track_id: str, task_ids: list[str], reason: str) -> None:
            marking.wait(timeout=30)
            assert track_id == TRACK and task_ids == requests[0].task_ids
            discarded.append(reason)

    app = FastAPI()

    @app.websocket("/ws")
    async def live(ws: WebSocket) -> None:
        await ws.accept()
        start = StartFrame(track_id=TRACK, cluster="CLUSTER_TEST")
        vad = VADSettings(end_of_turn=False, min_silence_ms=1500)  # only the stop time ends a turn
        await LiveConversation(
            ws, start, graph, new_turn, LiveSettings(vad=vad), True, SessionServices(facts=Facts())
        ).run()

    first = decode(speak("What is the capital city")).samples
    rest = decode(speak("of France?")).samples
    gap, silence = np.zeros(8_000, np.float32), np.zeros(16_000, np.float32)
    audio = np.concatenate([first, gap, rest, silence])
    try:
        with TestClient(app).websocket_connect("/ws") as ws:
            for start in range(0, len(audio), 320):
                ws.send_bytes(to_pcm16(audio[start : start + 320]))
            assert next_turn.wait(timeout=20), "the user's next words waited for the dropped turn's records"
            assert not discarded and len(graph.turns) == 1, "the next turn went ahead of the dropped turn's fact"
            marking.set()
            assert graph.two_turns.wait(timeout=20)
            ws.close()
    finally:
        marking.set()
    assert discarded == ["cancelled: the user went on speaking after a pause"]
    assert graph.turns == requests and len(requests[1].audio) > len(requests[0].audio)


class _Reply:
    """A turn's stream that says its reply at once, as a fast graph does, and ends."""

    def __init__(self, frames) -> None:
        self.frames = list(frames)

    def __aiter__(self):
        return self

    async def __anext__(self):
        if not self.frames:
            raise StopAsyncIteration
        return self.frames.pop(0)

    def cancel(self) -> None:
        self.frames.clear()


def test_speaking_over_a_reply_still_playing_records_the_words_heard():
    """The reply is all sent at once and its turn ends; the user speaks a second into its three
    seconds of audio: the words of its first second are what the records say was heard."""
    heard: list[tuple[str, list[str], str, float]] = []
    requests: list[TurnRequest] = []
    reply = [
        TTSAudioFrame(audio=bytes(32_000), sample_rate=16_000, sentence=0, text="Paris is the"),
        TTSAudioFrame(audio=bytes(64_000), sample_rate=16_000, sentence=1, text="capital city of France."),
    ]

    class Graph(_Graph):
        def remote(self, request):
            if isinstance(request, TurnRequest):
                self.turns.append(request)
                return _Reply(reply if len(self.turns) == 1 else [])
            return asyncio.sleep(0)

    def new_turn(*args, **kwargs) -> TurnRequest:
        requests.append(TurnFactory(TRACK, 1)(*args, **kwargs))
        return requests[-1]

    app = FastAPI()

    @app.websocket("/ws")
    async def live(ws: WebSocket) -> None:
        await ws.accept()
        start = StartFrame(track_id=TRACK, cluster="CLUSTER_TEST")
        vad = VADSettings(end_of_turn=False)

        class Facts:
            def record_heard(self, *args) -> None:
                heard.append(args)

        services = SessionServices(facts=Facts())
        await LiveConversation(ws, start, Graph(), new_turn, LiveSettings(vad=vad), True, services).run()

    question = np.concatenate(
        [decode(speak("What is the capital city of France?")).samples, np.zeros(24_000, np.float32)]
    )
    stop = decode(speak("Stop.")).samples
    with TestClient(app).websocket_connect("/ws") as ws:
        ws.send_bytes(to_pcm16(question))
        reader = WireReader()
        received = [receive_frame(ws, reader) for _ in range(3)]
        assert [type(f) for f in received] == [StartFrame, TTSAudioFrame, TTSAudioFrame]
        assert all(len(f.audio) for f in received[1:]), "the audio comes whole, as the binary message after its header"
        time.sleep(1.0)
        ws.send_bytes(to_pcm16(stop))
        assert ws.receive_json()["type"] == "StartInterruptionFrame"
        ws.close()
    deadline = time.monotonic() + 10
    while not heard and time.monotonic() < deadline:
        time.sleep(0.01)
    [(track_id, task_ids, text, seconds)] = heard
    assert track_id == TRACK and task_ids == requests[0].task_ids
    assert text.startswith("Paris is the") and text != "Paris is the capital city of France.", text
    assert 1.0 <= seconds < 2.0
