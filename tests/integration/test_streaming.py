"""Streaming turns: a live WebSocket fed real speech at real-time pace, barge-in, and the
streaming HTTP transports, against the default serve config."""

import json
import threading
import time

import numpy as np
import pytest

from bench.speech import speak
from client.api import OmniServeClient, OmniServeError
from omniwire.audio import decode
from omniwire.frames import (
    EndFrame,
    Frame,
    MetricsFrame,
    StartFrame,
    StartInterruptionFrame,
    TranscriptionFrame,
    TTSAudioFrame,
)
from tests.integration.conftest import API_KEY
from tests.integration.test_conversation import post, stages_of, words

CLUSTER = "CLUSTER_HF_ETE_CONVERSATION"


class LiveClient:
    """A microphone and a speaker in a test: the client's live session, speaking at real-time pace,
    with every frame received kept (the session's StartFrame first) and when it arrived."""

    def __init__(self, server, **start):
        self.url = server.url
        self.options = start
        self.frames: list[tuple[float, Frame]] = []
        self.lock = threading.Condition()

    def __enter__(self):
        self.client = OmniServeClient(self.url, api_key=API_KEY)
        try:
            self.session = self.client.live(**self.options)
        except BaseException:
            self.client.__exit__()
            raise
        self.frames.append((time.time(), self.session.start))
        threading.Thread(target=self._receive, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.session.close()
        self.client.__exit__()

    def _receive(self):
        try:
            while True:
                if frame := self.session.receive():
                    with self.lock:
                        self.frames.append((time.time(), frame))
                        self.lock.notify_all()
        except Exception:
            pass

    def speak(self, text: str, silence_after: float = 1.0):
        audio = np.concatenate([decode(speak(text)).samples, np.zeros(int(16_000 * silence_after), np.float32)])
        self.session.speak(audio)

    def wait_for(self, predicate, timeout=60.0) -> Frame:
        deadline = time.time() + timeout
        with self.lock:
            while True:
                for _, frame in self.frames:
                    if predicate(frame):
                        return frame
                left = deadline - time.time()
                assert left > 0, f"no such frame in {self.types()}"
                self.lock.wait(left)

    def wait_for_all(self, predicate, count: int, timeout=90.0) -> list[Frame]:
        deadline = time.time() + timeout
        with self.lock:
            while True:
                found = [frame for _, frame in self.frames if predicate(frame)]
                if len(found) >= count:
                    return found
                left = deadline - time.time()
                assert left > 0, f"{len(found)} of {count} such frames in {self.types()}"
                self.lock.wait(left)

    def types(self) -> list[str]:
        with self.lock:
            return [type(f).__name__ for _, f in self.frames]


def is_type(kind: type[Frame], **fields):
    return lambda f: isinstance(f, kind) and all(getattr(f, k) == v for k, v in fields.items())


def is_turn_metrics(frame: Frame) -> bool:
    return isinstance(frame, MetricsFrame) and frame.stage is None


def test_a_live_turn_streams_its_reply(server):
    with LiveClient(server, cluster=CLUSTER) as client:
        start = client.session.start
        assert start.track_id.startswith(f"T-{CLUSTER}-") and start.allow_interruptions
        client.speak("What is the capital city of France?")
        end = client.wait_for(is_type(EndFrame))
        assert end.status == "completed" and end.turn == 1 and end.reply_audio_url
        types = client.types()
        transcript = client.wait_for(is_type(TranscriptionFrame))
        assert {"capital", "france"} <= words(transcript.text)
        assert types.count("TTSAudioFrame") >= 2 and types.index("TTSAudioFrame") < types.index("EndFrame")
        turn = client.wait_for(is_turn_metrics).metrics
        assert 0 < turn["time_to_first_audio_s"] < turn["total_reply_s"]
        stages = {f.stage for _, f in client.frames if isinstance(f, MetricsFrame) and f.stage}
        assert stages == {"speech_to_text", "emotion_detection", "hf_llm", "text_to_speech"}
    tasks = server.http.get(f"/v1/tracks/{start.track_id}").json()["tasks"]
    assert [t["status"] for t in tasks] == ["completed"] * 4
    llm = [t for t in tasks if t["task_name"] == "hf_llm"][0]["latency_profile"]
    assert 0 < llm["ttfb_s"] <= llm["processing_s"]


def test_speaking_over_a_reply_stops_it(server):
    with LiveClient(server, cluster=CLUSTER) as client:
        start = client.session.start
        client.speak("Tell me a long story about a brave dragon who lived in the mountains.")
        client.wait_for(is_type(TTSAudioFrame))
        client.speak("Stop, tell me about the weather instead.")
        client.wait_for(is_type(StartInterruptionFrame))
        answered = client.wait_for(is_type(EndFrame), timeout=90)
    types = client.types()
    interruption = types.index("StartInterruptionFrame")
    second_turn = types.index("StartFrame", interruption)
    assert "TTSAudioFrame" not in types[interruption:second_turn], "no audio of the old reply after the barge-in"
    assert "EndFrame" not in types[:interruption], "the first reply was cut short"
    assert "ErrorFrame" not in types, "an interruption is not an error"

    first = stages_of(server, start.track_id, 1)
    assert first["hf_llm"]["status"] in ("completed", "cancelled"), first["hf_llm"]["error"]
    assert first["text_to_speech"]["status"] == "cancelled"
    heard = heard_of(first["text_to_speech"]["result_profile"])
    second = stages_of(server, start.track_id, answered.turn)
    assert all(t["status"] == "completed" for t in second.values())
    assert {"weather"} <= words(second["speech_to_text"]["result_profile"]["transcript"])
    assert second["hf_llm"]["result_profile"]["history_messages"] == (2 if heard else 0)


def heard_of(profile: dict) -> str:
    """What the user heard of an interrupted reply: the words it began with, as they were made."""
    assert profile["interrupted"]
    heard, made = profile["heard_text"].split(), profile["spoken_text"].split()
    assert heard == made[: len(heard)], profile
    assert 0 <= profile["heard_s"] < 30
    return profile["heard_text"]


def test_speaking_over_a_reply_still_being_heard_stops_it(server):
    """A reply is made faster than it is spoken: its turn has ended at the server while the client
    still plays it, and speaking over it then stops it too."""
    with LiveClient(server, cluster="CLUSTER_Q_NO_EMOTION_ETE_CONVERSATION") as client:
        client.speak("What is the capital city of France?")
        ended = client.wait_for(is_type(EndFrame))
        with client.lock:
            audio = [(t, f) for t, f in client.frames if isinstance(f, TTSAudioFrame)]
        heard_until = audio[0][0] + sum(f.seconds for _, f in audio)
        assert time.time() < heard_until - 1.0, "the reply is still being heard"
        client.speak("And what about Spain?")
        client.wait_for(is_type(StartInterruptionFrame))
        answered = client.wait_for(lambda f: isinstance(f, EndFrame) and f.turn > ended.turn)
    types = client.types()
    interruption = types.index("StartInterruptionFrame")
    assert types.index("EndFrame") < interruption < types.index("StartFrame", interruption)
    assert answered.status == "completed"
    first = stages_of(server, ended.track_id, ended.turn)
    assert first["text_to_speech"]["status"] == "completed", "its speech was all made"
    heard = heard_of(first["text_to_speech"]["result_profile"])
    assert len(heard.split()) < len(first["text_to_speech"]["result_profile"]["spoken_text"].split())
    second = stages_of(server, ended.track_id, answered.turn)
    assert second["quantization_llm"]["result_profile"]["history_messages"] == (2 if heard else 0)


def test_a_session_can_turn_interruptions_off(server):
    with LiveClient(server, cluster=CLUSTER, allow_interruptions=False) as client:
        client.speak("Tell me a long story about a brave dragon who lived in the mountains.")
        client.wait_for(is_type(TTSAudioFrame))
        client.speak("Stop, tell me about the weather instead.")
        ends = client.wait_for_all(is_type(EndFrame), 2)
    assert "StartInterruptionFrame" not in client.types()
    assert [e.status for e in ends] == ["completed", "completed"], "the reply was heard out"


def test_an_interrupt_frame_stops_the_reply_at_once(server):
    with LiveClient(server, cluster=CLUSTER) as client:
        client.speak("Tell me a long story about a brave dragon who lived in the mountains.")
        client.wait_for(is_type(TTSAudioFrame))
        sent = time.time()
        client.session.interrupt()
        client.wait_for(is_type(StartInterruptionFrame))
        time.sleep(1.0)
    arrivals = [(t, type(f).__name__) for t, f in client.frames]
    stopped = next(t for t, kind in arrivals if kind == "StartInterruptionFrame")
    assert stopped - sent < 2.0
    assert all(kind != "TTSAudioFrame" for t, kind in arrivals if t > stopped)
    assert "EndFrame" not in [kind for _, kind in arrivals]


def test_a_bad_opening_is_refused_with_the_reason(server):
    with pytest.raises(OmniServeError) as refused, LiveClient(server, cluster="CLUSTER_NOPE"):
        pass
    assert refused.value.status == 404 and "unknown cluster 'CLUSTER_NOPE'" in refused.value.detail


@pytest.mark.parametrize("accept", ["application/x-ndjson", "text/event-stream"])
def test_a_posted_file_can_stream_its_frames(server, accept):
    files = [("audio", ("q.wav", speak("How is the weather today?"), "audio/wav"))]
    frames = []
    with server.http.stream(
        "POST", "/v1/conversations/stream", data={"cluster": CLUSTER}, files=files, headers={"accept": accept}
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith(accept)
        for line in response.iter_lines():
            if line.startswith("data: ") or line.startswith("{"):
                frames.append(json.loads(line.removeprefix("data: ")))
    types = [f["type"] for f in frames]
    assert types[0] == "StartFrame" and types[-1] == "EndFrame" and frames[-1]["status"] == "completed"
    assert "TranscriptionFrame" in types and types.count("TTSAudioFrame") >= 1 and "LLMTextFrame" in types


def test_streaming_refuses_bad_input_before_it_starts(server):
    response = post(server, b"", cluster=CLUSTER)
    assert response.status_code == 400
    streamed = server.http.post(
        "/v1/conversations/stream", data={"cluster": CLUSTER}, files=[("audio", ("q.wav", b"", "audio/wav"))]
    )
    assert streamed.status_code == 400 and "empty" in streamed.json()["detail"]


def test_a_reply_started_on_a_pause_is_dropped_when_the_user_goes_on(server):
    """The pause after "What is the capital" starts the turn speculatively; the rest of the question
    cancels it (its records say so, and it is not in the history) and the whole question is answered."""
    first = decode(speak("What is the capital city")).samples
    rest = decode(speak("of France?")).samples
    gap = np.zeros(int(16_000 * 0.6), np.float32)
    vad = {"end_of_turn": False, "min_silence_ms": 1500}  # only the stop time ends this turn
    with LiveClient(server, cluster=CLUSTER, vad=vad) as client:
        start = client.session.start
        client.session.speak(np.concatenate([first, gap, rest, np.zeros(int(16_000 * 1.8), np.float32)]))
        end = client.wait_for(is_type(EndFrame))
        assert end.status == "completed"
    starts = [f for _, f in client.frames if isinstance(f, StartFrame)]
    assert len(starts) == 2, "the dropped turn sent nothing: only the session's and the answered turn's StartFrame"
    track = server.http.get(f"/v1/tracks/{start.track_id}").json()
    dropped = [t for t in track["tasks"] if t["turn"] == 1]
    assert dropped and all(t["status"] == "cancelled" for t in dropped)
    assert all(t["error"] == "cancelled: the user went on speaking after a pause" for t in dropped)
    assert all(t["result_profile"].get("discarded") for t in dropped)
    answered = stages_of(server, start.track_id, end.turn)
    assert {"capital", "france"} <= words(answered["speech_to_text"]["result_profile"]["transcript"])
    assert answered["hf_llm"]["result_profile"]["history_messages"] == 0, "the dropped turn is not history"


def test_the_end_of_turn_model_ends_a_finished_question_before_the_stop_time(server):
    with LiveClient(server, cluster=CLUSTER, vad={"min_silence_ms": 3000}) as client:
        client.speak("What is the capital city of France?", silence_after=0.2)
        client.wait_for(is_type(TTSAudioFrame), timeout=20)
        turn = client.wait_for(is_turn_metrics).metrics
    assert turn["end_of_turn_probability"] >= 0.5
    assert turn["turn_committed_after_s"] < 2.0, "well before the 3 s stop time, even on a busy machine"
    assert turn["time_to_first_audio_s"] >= turn["turn_committed_after_s"], "no audio before the turn is over"


def test_a_conversations_history_is_read_while_the_user_speaks(server):
    """Another conversation's turn has taken the LLM's prompt cache; this one's history is read again
    as soon as the user starts speaking, so the turn itself reads only their words."""
    cluster = "CLUSTER_Q_NO_EMOTION_ETE_CONVERSATION"
    with LiveClient(server, cluster=cluster) as client:
        start = client.session.start
        client.speak("What is the capital city of France?")
        client.wait_for(is_type(EndFrame))
        other = post(server, speak("How many days are in a week?"), cluster=cluster)
        assert other.status_code == 200, other.text
        client.speak("What is a famous museum there?")
        client.wait_for_all(is_type(EndFrame), 2)
    llm = stages_of(server, start.track_id, 2)["quantization_llm"]
    assert llm["status"] == "completed" and llm["result_profile"]["history_messages"] == 2
    profile = llm["result_profile"]
    assert profile["prompt_tokens"] - profile["cached_prompt_tokens"] <= 20, profile
