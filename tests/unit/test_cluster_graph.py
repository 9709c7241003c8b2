"""The graph's bookkeeping in Serve's local testing mode: no Ray cluster, real TraceStore file.

The components here are deliberately trivial and deterministic: what is under test is how the
graph routes slots and records every outcome, not the models.
"""

import asyncio
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from ray import serve
from ray.serve.exceptions import RequestCancelledError

from deployments.component import components, register
from deployments.kinds import FIRST_CHUNK_WORDS, KINDS, Contract
from deployments.llm.service import LLMService
from deployments.stt.service import SpeechToTextService
from deployments.tts.service import TextToSpeechService
from graphs.app import build_graphs, graph_steps
from graphs.config import load_clusters, parse_clusters
from graphs.pipeline.cluster_graph import ClusterGraph
from graphs.pipeline.turn import TurnRecords, TurnRequest
from graphs.store import TaskStatus, TraceStore
from omniwire.audio import MODEL_RATE
from omniwire.frames import LLMTextFrame, MetricsFrame, TTSAudioFrame
from omniwire.profile import model_time, transfer_time, wait_time
from omniwire.tracks import new_track_id


@register("test_length_stt")
class LengthSpeechToText(SpeechToTextService):
    """'Hears' how long the audio is; silence is no speech."""

    def transcribe(self, audio, params, context=None):
        if np.abs(audio).max() < 1e-3:
            return "", {}
        return f"I spoke for {len(audio) / MODEL_RATE:.1f} seconds", {}


@register("test_echo_llm")
class EchoLLM(LLMService):
    def generate(self, messages, params):
        assert "audio" not in messages[-1]["content"]
        return messages[-1]["content"].upper() + ". AND A HALF", {}


@register("test_slow_llm")
class SlowLLM(LLMService):
    """Says three sentences, a word every 50 ms, so the graph can speak one while the next is written."""

    REPLY = "The first sentence is here. The second one follows it now. And the third one ends the reply."

    def generate(self, messages, params):
        return self.REPLY, {}

    def stream(self, messages, settings, stop):
        for word in self.REPLY.split(" "):
            if stop.is_set():
                return
            time.sleep(0.05)
            yield word + " "


@register("test_failing_llm")
class FailingLLM(LLMService):
    def generate(self, messages, params):
        raise RuntimeError("CUDA out of memory")


@register("test_closed_mid_token_llm")
class ClosedMidTokenLLM(LLMService):
    """Says two words, then ends as a replica's stream does when Serve closes it while it waits for a token."""

    def generate(self, messages, params):
        return "Two words", {}

    def stream(self, messages, settings, stop):
        yield "Two words "
        time.sleep(0.1)
        raise RuntimeError("aclose(): asynchronous generator is already running")


@register("test_beep_tts")
class BeepTextToSpeech(TextToSpeechService):
    def speak(self, text, params):
        t = np.arange(int(0.01 * len(text) * 8000)) / 8000
        return np.sin(2 * np.pi * 440 * t), 8000, {}


CONFIG = {
    "models": {
        "stt": {"component": "test_length_stt"},
        "echo": {"component": "test_echo_llm"},
        "broken": {"component": "test_failing_llm"},
        "tts": {"component": "test_beep_tts"},
        "slow": {"component": "test_slow_llm"},
        "closed": {"component": "test_closed_mid_token_llm"},
    },
    "clusters": {
        "GOOD": {
            "stages": [
                {"name": "speech_to_text", "model": "stt"},
                {"name": "llm", "model": "echo", "params": {"prompt_template": "you said: {transcript}"}},
                {"name": "text_to_speech", "model": "tts"},
            ]
        },
        "STREAMING": {
            "stages": [
                {"name": "speech_to_text", "model": "stt"},
                {"name": "llm", "model": "slow", "params": {"prompt_template": "{transcript}"}},
                {"name": "text_to_speech", "model": "tts"},
            ]
        },
        "BARGED_IN": {
            "stages": [
                {"name": "speech_to_text", "model": "stt"},
                {"name": "llm", "model": "closed", "params": {"prompt_template": "{transcript}"}},
                {"name": "text_to_speech", "model": "tts"},
            ]
        },
        "BROKEN": {
            "stages": [
                {"name": "speech_to_text", "model": "stt"},
                {"name": "llm", "model": "broken", "params": {"prompt_template": "{transcript}"}},
                {"name": "text_to_speech", "model": "tts"},
            ]
        },
    },
}


@pytest.fixture(scope="module")
def store_url(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('graph') / 'traces.db'}"


@pytest.fixture(scope="module")
def handles(store_url):
    config = parse_clusters(CONFIG)
    graphs = build_graphs(config, ["GOOD", "BROKEN", "STREAMING", "BARGED_IN"], store_url)
    return {
        name: serve.run(app, name=name, route_prefix=None, _local_testing_mode=True) for name, app in graphs.items()
    }


def turn(handles, cluster, audio, track_id=None):
    task_ids = [uuid.uuid4().hex for _ in CONFIG["clusters"][cluster]["stages"]]
    request = TurnRequest(track_id or new_track_id(cluster), task_ids, audio.astype(np.float32), b"RIFF", "audio/wav")
    return asyncio.run(_call(handles[cluster], request))


async def _call(handle, request):
    return await handle.run_turn.remote(request)


SPEECH = 0.1 * np.ones(2 * MODEL_RATE)
SILENCE = np.zeros(MODEL_RATE)


def test_completed_turn_records_every_stage(handles, store_url):
    outcome = turn(handles, "GOOD", SPEECH)
    assert outcome.status == "completed"
    assert outcome.outputs["transcript"] == "I spoke for 2.0 seconds"
    assert outcome.outputs["reply_text"] == "YOU SAID: I SPOKE FOR 2.0 SECONDS.", "half sentence trimmed"
    assert outcome.reply_audio["sample_rate"] == 8000 and outcome.reply_audio["duration_s"] > 0

    track = TraceStore(store_url).track(outcome.track_id)
    tasks = track["tasks"]
    assert [(t["task_name"], t["status"]) for t in tasks] == [
        ("speech_to_text", "completed"),
        ("llm", "completed"),
        ("text_to_speech", "completed"),
    ]
    for task in tasks:
        p = task["latency_profile"]
        assert model_time(p) + transfer_time(p) + wait_time(p) == pytest.approx(p["ts_end"] - p["ts_start"], abs=1e-5)
    assert [a["role"] for a in track["audio"]] == ["user", "reply"]


def test_a_second_turn_continues_the_track_and_remembers_the_first(handles, store_url):
    first = turn(handles, "GOOD", SPEECH)
    second = turn(handles, "GOOD", SPEECH, track_id=first.track_id)
    assert (first.turn, second.turn) == (1, 2)
    tasks = TraceStore(store_url).track(first.track_id)["tasks"]
    assert len(tasks) == 6
    assert [t["result_profile"]["history_messages"] for t in tasks if t["task_name"] == "llm"] == [0, 2]


def test_failing_stage_is_failed_and_the_rest_cancelled(handles, store_url):
    outcome = turn(handles, "BROKEN", SPEECH)
    assert outcome.status == "failed"
    assert outcome.error == "stage 'llm' failed: RuntimeError: CUDA out of memory"
    tasks = TraceStore(store_url).track(outcome.track_id)["tasks"]
    assert [t["status"] for t in tasks] == ["completed", "failed", "cancelled"]
    assert tasks[1]["error"] == outcome.error
    assert "failed" in tasks[2]["error"]


def test_silence_stops_the_turn_after_speech_to_text(handles, store_url):
    outcome = turn(handles, "GOOD", SILENCE)
    assert outcome.status == "no_speech"
    tasks = TraceStore(store_url).track(outcome.track_id)["tasks"]
    assert [t["status"] for t in tasks] == ["completed", "cancelled", "cancelled"]
    assert tasks[1]["error"] == "cancelled: no speech recognised in the audio"


def stream_turn(handles, cluster, audio, stop_after=None, stages=None):
    """Frames of one streamed turn; with `stop_after`, the caller hangs up after that many audio frames."""
    task_ids = [uuid.uuid4().hex for _ in range(stages or len(CONFIG["clusters"][cluster]["stages"]))]
    request = TurnRequest(new_track_id(cluster), task_ids, audio.astype(np.float32), b"RIFF", "audio/wav")

    async def collect():
        frames = []
        stream = handles[cluster].options(stream=True).run_turn_stream.remote(request)
        async for frame in stream:
            frames.append(frame)
            if stop_after and sum(isinstance(f, TTSAudioFrame) for f in frames) == stop_after:
                stream.cancel()
                await asyncio.sleep(0.5)  # let the graph record the interruption
                break
        return frames

    return request.track_id, asyncio.run(collect())


def test_a_streamed_reply_is_spoken_sentence_by_sentence_while_it_is_written(handles):
    _, frames = stream_turn(handles, "STREAMING", SPEECH)
    kinds = [type(f).__name__ for f in frames]
    assert kinds[0] == "StartFrame" and kinds[-1] == "EndFrame" and frames[-1].status == "completed"
    audio = [f for f in frames if isinstance(f, TTSAudioFrame)]
    assert [f.sentence for f in audio] == sorted(f.sentence for f in audio)
    assert {f.sentence for f in audio} == {0, 1, 2}
    last_text = max(i for i, f in enumerate(frames) if isinstance(f, LLMTextFrame))
    first_audio = kinds.index("TTSAudioFrame")
    assert first_audio < last_text, "the first sentence was spoken before the LLM finished"
    turn_metrics = [f for f in frames if isinstance(f, MetricsFrame) and f.stage is None][0].metrics
    assert 0 < turn_metrics["time_to_first_audio_s"] < turn_metrics["total_reply_s"]
    stage_metrics = {f.stage: f.metrics for f in frames if isinstance(f, MetricsFrame) and f.stage}
    assert set(stage_metrics) == {"speech_to_text", "llm", "text_to_speech"}
    assert stage_metrics["llm"]["ttfb_s"] < stage_metrics["llm"]["processing_s"]


def test_hanging_up_mid_reply_cancels_the_rest_and_keeps_what_was_spoken(handles, store_url):
    track_id, frames = stream_turn(handles, "STREAMING", SPEECH, stop_after=1)
    store = TraceStore(store_url)
    tasks = {t["task_name"]: t for t in store.track(track_id)["tasks"]}
    assert tasks["speech_to_text"]["status"] == "completed"
    assert tasks["llm"]["status"] == "cancelled"
    assert tasks["text_to_speech"]["status"] == "cancelled"
    # The first chunk is the reply's first words (FIRST_CHUNK_WORDS), spoken before its sentence ends.
    spoken = " ".join(SlowLLM.REPLY.split()[:FIRST_CHUNK_WORDS])
    assert tasks["text_to_speech"]["result_profile"]["spoken_text"] == spoken
    assert len(tasks["llm"]["result_profile"]["reply_text"]) < len(SlowLLM.REPLY), "generation stopped early"
    assert store.history(track_id, 5)[-1] == {"role": "assistant", "content": spoken}


def test_a_stage_closed_by_serve_mid_token_is_cancelled_not_failed(handles, store_url):
    """A barge-in while the LLM waits for its next token: Serve closes its stream, which reports
    that its generator was still running; the turn and its stages are cancelled, not failed."""
    with pytest.raises((asyncio.CancelledError, RequestCancelledError)):
        stream_turn(handles, "BARGED_IN", SPEECH)
    track = TraceStore(store_url).track(_last_track(store_url, "BARGED_IN"))
    tasks = {t["task_name"]: t for t in track["tasks"]}
    assert tasks["speech_to_text"]["status"] == "completed"
    assert [tasks[n]["status"] for n in ("llm", "text_to_speech")] == ["cancelled", "cancelled"]
    assert "already running" not in (tasks["llm"]["error"] or "")
    assert tasks["llm"]["result_profile"]["reply_text"] == "Two words"


def test_a_turn_cancelled_while_its_writes_queue_still_closes_its_records(store_url):
    """Serve may cancel a turn again while it waits for its records to be written: the writes still
    queued behind a busy writer thread must run anyway, or its tasks stay open for good."""
    store = TraceStore(store_url)
    _, task_ids = store.begin_turn(new_track_id("WRITES"), "WRITES", [("speech_to_text", {}), ("llm", {})])
    writer = ThreadPoolExecutor(max_workers=1)
    busy = threading.Event()

    async def cancelled_turn() -> None:
        records = TurnRecords(store, writer, None, None)  # writes need neither metrics nor the turn
        records.write(busy.wait)
        records.write(store.close_tasks, task_ids, "cancelled: the caller stopped listening", TaskStatus.cancelled)
        waiting = asyncio.ensure_future(asyncio.gather(*records.writes))
        await asyncio.sleep(0)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)

    asyncio.run(cancelled_turn())
    busy.set()
    writer.shutdown(wait=True)
    tasks = store.track(store.tracks("WRITES")[0]["track_id"])["tasks"]
    assert [t["status"] for t in tasks] == ["cancelled", "cancelled"]


def _last_track(store_url, cluster):
    return TraceStore(store_url).tracks(cluster)[0]["track_id"]


def test_any_kind_that_streams_a_slot_feeds_a_kind_that_takes_it_in_pieces(monkeypatch, store_url):
    """The graph pipes stages by their kinds' contracts: a kind it has never seen streams into speech."""
    monkeypatch.setitem(
        KINDS,
        "test_narration",
        Contract(frozenset({"transcript"}), frozenset({"reply_text"}), frames=("reply_text",), streams="reply_text"),
    )

    class Narrator(SlowLLM):
        kind = "test_narration"

    register("test_narrator")(Narrator)
    config = parse_clusters(
        {
            "models": {
                "stt": {"component": "test_length_stt"},
                "narrator": {"component": "test_narrator"},
                "tts": {"component": "test_beep_tts"},
            },
            "clusters": {
                "NARRATED": {
                    "stages": [
                        {"name": "speech_to_text", "model": "stt"},
                        {"name": "narrate", "model": "narrator", "params": {"prompt_template": "{transcript}"}},
                        {"name": "text_to_speech", "model": "tts"},
                    ]
                }
            },
        }
    )
    app = build_graphs(config, ["NARRATED"], store_url)["NARRATED"]
    handle = serve.run(app, name="NARRATED", route_prefix=None, _local_testing_mode=True)
    _, frames = stream_turn({"NARRATED": handle}, "NARRATED", SPEECH, stages=3)
    kinds = [type(f).__name__ for f in frames]
    last_text = max(i for i, f in enumerate(frames) if isinstance(f, LLMTextFrame))
    assert kinds.index("TTSAudioFrame") < last_text, "spoken while still narrated"
    assert {f.sentence for f in frames if isinstance(f, TTSAudioFrame)} == {0, 1, 2}
    assert frames[-1].status == "completed"


def test_a_prompt_is_read_ahead_only_where_the_turn_will_begin_it_the_same_way(tmp_path):
    config, registry = load_clusters(), components()

    def read_ahead(cluster: str) -> list[str]:
        steps = graph_steps(config, cluster, registry)
        graph = ClusterGraph.func_or_class(cluster, steps, {}, f"sqlite:///{tmp_path / 'traces.db'}", 5)
        return [stage.name for stage in graph.read_ahead]

    assert read_ahead("CLUSTER_Q_NO_EMOTION_ETE_CONVERSATION") == ["quantization_llm"]
    assert read_ahead("CLUSTER_Q_ETE_CONVERSATION") == ["quantization_llm"], "its emotion goes before the words"
    # The emotion or the notes go into these system prompts, and are not known before the turn.
    assert read_ahead("CLUSTER_HF_ETE_CONVERSATION") == []
    assert read_ahead("CLUSTER_HF_RAG_ETE_CONVERSATION") == []


def test_a_backend_that_implements_nothing_is_refused_at_registration():
    class Mute(TextToSpeechService):
        pass

    with pytest.raises(TypeError, match="Mute must implement speak"):
        register("mute")(Mute)
