"""The default serve config on a real Ray instance, driven over real HTTP with real speech."""

import base64
import io
import re

import numpy as np
import pytest
import soundfile as sf
from ray import serve
from sqlalchemy import func, select

from bench.speech import speak
from graphs.store import TaskRecord, TaskStatus, TraceStore
from omniwire.profile import model_time, transfer_time, wait_time

CLUSTER = "CLUSTER_HF_ETE_CONVERSATION"
STAGES = ["speech_to_text", "emotion_detection", "hf_llm", "text_to_speech"]


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def post(server, audio: bytes | None, filename="turn.wav", **form):
    files = [("audio", (filename, audio, "application/octet-stream"))] if audio is not None else []
    files += [("images", (name, data, "application/octet-stream")) for name, data in form.pop("images", [])]
    return server.http.post("/v1/conversations", data=form, files=files or None)


def stages_of(server, track_id: str, turn: int = 1) -> dict[str, dict]:
    """One turn's task records, by stage name."""
    tasks = server.http.get(f"/v1/tracks/{track_id}").json()["tasks"]
    return {t["task_name"]: t for t in tasks if t["turn"] == turn}


def voiced_seconds(samples: np.ndarray, rate: int, frame_s: float = 0.02, threshold: float = 0.01) -> float:
    n = int(rate * frame_s)
    frames = samples[: len(samples) // n * n].reshape(-1, n)
    return float((np.sqrt((frames**2).mean(axis=1)) > threshold).sum() * frame_s)


@pytest.fixture(scope="module")
def first_turn(server):
    response = post(server, speak("What is the capital city of France?"), cluster=CLUSTER)
    assert response.status_code == 200, response.text
    return response.json()


def test_spoken_question_gets_a_spoken_answer(server, first_turn):
    body = first_turn
    assert body["track_id"].startswith(f"T-{CLUSTER}-") and body["turn"] == 1
    assert {"capital", "city", "france"} <= words(body["transcript"])
    assert body["emotion"]["label"] and body["emotion"]["summary"]
    assert len(body["reply_text"].strip()) > 0

    audio = server.http.get(body["reply_audio"]["url"])
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
    samples, rate = sf.read(io.BytesIO(audio.content), dtype="float32")
    assert rate == body["reply_audio"]["sample_rate"]
    assert len(samples) / rate == pytest.approx(body["reply_audio"]["duration_s"], abs=0.01)
    assert voiced_seconds(samples, rate) > 0.5


def test_track_records_one_completed_task_per_stage_with_consistent_latency(server, first_turn):
    track = server.http.get(f"/v1/tracks/{first_turn['track_id']}").json()
    tasks = track["tasks"]
    assert [(t["task_name"], t["status"]) for t in tasks] == [(s, "completed") for s in STAGES]
    assert tasks[0]["result_profile"]["transcript"] == first_turn["transcript"]
    assert tasks[2]["parameters"] == {}, "the cluster's LLM stage takes the default prompt"
    assert tasks[2]["result_profile"]["prompt"] == first_turn["transcript"], "the person's words, as heard"

    previous = None
    for task in tasks:
        p = task["latency_profile"]
        assert set(p) >= {"model_inference", "transfer_in", "transfer_out", "ts_start", "ts_end", "ttfb_s"}
        assert p["model_inference"] > 0 and p["transfer_in"] >= 0 and p["transfer_out"] >= 0
        assert model_time(p) + transfer_time(p) + wait_time(p) == pytest.approx(p["ts_end"] - p["ts_start"], abs=1e-5)
        if previous is not None and task["task_name"] != "text_to_speech":
            assert p["ts_start"] >= previous["ts_end"] - 1e-5, "stages before the reply run one after another"
        previous = p
    llm, tts = tasks[2]["latency_profile"], tasks[3]["latency_profile"]
    assert llm["ts_start"] < tts["ts_start"] < llm["ts_end"] + 1.0, "speech starts with the reply's first sentence"
    assert tts["ts_end"] >= llm["ts_end"]

    (turn,) = track["turns"]
    assert turn["status"] == "completed"
    assert 0 <= turn["overhead_s"] < turn["end_to_end_s"]
    assert turn["end_to_end_s"] <= first_turn["timings"]["turn_s"] <= first_turn["timings"]["end_to_end_s"]
    assert turn["model_s"] == pytest.approx(first_turn["timings"]["model_s"], abs=1e-5)
    assert 0 <= turn["overhead_ratio"] < 1
    assert [a["role"] for a in track["audio"]] == ["user", "reply"]


@pytest.mark.parametrize("fmt,rate,channels", [("FLAC", 44_100, 2), ("OGG", 48_000, 1), ("WAV", 8_000, 2)])
def test_other_formats_rates_and_channel_counts(server, fmt, rate, channels):
    audio = speak("How is the weather today?", fmt=fmt, rate=rate, channels=channels)
    response = post(server, audio, filename=f"turn.{fmt.lower()}", cluster=CLUSTER)
    assert response.status_code == 200, response.text
    assert {"weather", "today"} <= words(response.json()["transcript"])


def test_continuing_a_track_with_inline_audio(server, first_turn):
    response = post(server, speak("Thank you very much."), track_id=first_turn["track_id"], response_audio="base64")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["track_id"] == first_turn["track_id"] and body["turn"] == 2
    inline = base64.b64decode(body["reply_audio"]["base64"])
    assert inline == server.http.get(body["reply_audio"]["url"]).content
    track = server.http.get(f"/v1/tracks/{body['track_id']}").json()
    assert [t["turn"] for t in track["turns"]] == [1, 2]
    llm = [t for t in track["tasks"] if t["task_name"] == "hf_llm"]
    assert [t["result_profile"]["history_messages"] for t in llm] == [0, 2], "turn 2 sees turn 1"


def test_silence_is_refused_and_the_turn_closed(server):
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(16_000, dtype=np.float32), 16_000, format="WAV")
    response = post(server, buffer.getvalue(), cluster=CLUSTER)
    assert response.status_code == 422
    body = response.json()
    assert body["detail"] == "no speech recognised in the audio"
    tasks = server.http.get(f"/v1/tracks/{body['track_id']}").json()["tasks"]
    assert [t["status"] for t in tasks] == ["completed", "cancelled", "cancelled", "cancelled"]


def _task_count(server) -> int:
    store = TraceStore(server.trace_store_url)
    with store.engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(TaskRecord))


MALFORMED = "T-CLUSTER_HF_ETE_CONVERSATION-not-hex"
UNKNOWN_TRACK = f"T-{CLUSTER}-{'0' * 32}"


@pytest.mark.parametrize(
    "case,audio,form,status,message",
    [
        ("empty file", b"", {"cluster": CLUSTER}, 400, "audio: the audio file is empty"),
        ("not audio", b"%PDF-1.4 not a sound", {"cluster": CLUSTER}, 415, "could not decode the audio"),
        ("no audio field", None, {"cluster": CLUSTER}, 400, "multipart field 'audio' is required"),
        ("unknown cluster", "speech", {"cluster": "CLUSTER_NOPE"}, 404, "unknown cluster 'CLUSTER_NOPE'"),
        (
            "disabled cluster",
            "speech",
            {"cluster": "CLUSTER_VOICE_ETE_CONVERSATION"},
            503,
            "not enabled in this deployment",
        ),
        ("malformed track", "speech", {"track_id": MALFORMED}, 400, "malformed track id"),
        ("unknown track", "speech", {"track_id": UNKNOWN_TRACK}, 404, "unknown track"),
        ("unknown cluster in track", "speech", {"track_id": f"T-CLUSTER_NOPE-{'0' * 32}"}, 404, "unknown cluster"),
        (
            "track of another cluster",
            "speech",
            {"track_id": UNKNOWN_TRACK, "cluster": "CLUSTER_Q_ETE_CONVERSATION"},
            400,
            "belongs to CLUSTER_HF_ETE_CONVERSATION",
        ),
        ("neither cluster nor track", "speech", {}, 400, "give 'cluster'"),
        (
            "image that is not one",
            "speech",
            {"cluster": CLUSTER, "images": [("face.png", b"not a png")]},
            415,
            "images[0] ('face.png') is not a readable image",
        ),
    ],
)
def test_bad_input_is_a_4xx_with_a_message_and_writes_nothing(server, case, audio, form, status, message):
    before = _task_count(server)
    audio = speak("Hello there.") if audio == "speech" else audio
    response = post(server, audio, **form)
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]
    assert _task_count(server) == before


def test_no_task_is_left_open(server):
    store = TraceStore(server.trace_store_url)
    with store.engine.connect() as conn:
        open_tasks = conn.scalar(
            select(func.count())
            .select_from(TaskRecord)
            .where(TaskRecord.status.in_([TaskStatus.pending, TaskStatus.started]))
        )
    assert open_tasks == 0


def test_track_endpoint_errors(server):
    assert server.http.get(f"/v1/tracks/{MALFORMED}").status_code == 400
    missing = server.http.get(f"/v1/tracks/{UNKNOWN_TRACK}")
    assert missing.status_code == 404 and "unknown track" in missing.json()["detail"]
    assert server.http.get(f"/v1/audio/{'0' * 32}").status_code == 404


ENABLED = {
    CLUSTER,
    "CLUSTER_Q_ETE_CONVERSATION",
    "CLUSTER_Q_NO_EMOTION_ETE_CONVERSATION",
    "CLUSTER_HF_RAG_ETE_CONVERSATION",
    "CLUSTER_HF_VISION_ETE_CONVERSATION",
    "CLUSTER_GPT_4O_ETE_CONVERSATION",
    "CLUSTER_GPT_4O_TEXT_ETE_CONVERSATION",
    "CLUSTER_GPT_35_ETE_CONVERSATION",
    "CLUSTER_GPT_35_RAG_ETE_CONVERSATION",
}


def test_clusters_endpoint_lists_every_cluster_and_what_runs(server):
    clusters = {c["name"]: c for c in server.http.get("/v1/clusters").json()["clusters"]}
    assert len(clusters) >= 7
    assert {name for name, c in clusters.items() if c["enabled"]} == ENABLED
    assert [s["name"] for s in clusters[CLUSTER]["stages"]] == STAGES
    assert all(c["reason"] is None for c in clusters.values() if c["enabled"])
    assert "not listed in enabled_clusters" in clusters["CLUSTER_VOICE_ETE_CONVERSATION"]["reason"]
    health = server.http.get("/healthz").json()
    assert health["status"] == "ok" and health["enabled_clusters"] == sorted(ENABLED)


def test_only_the_deployments_enabled_clusters_need_are_started(server):
    deployments = set(serve.status().applications["omniserve"].deployments)
    models = {
        "whisper-tiny-en",
        "multimodal-emotion",
        "qwen2.5-coder-1.5b-int8",
        "qwen2.5-coder-1.5b-int4",
        "piper-joe",
        "minilm-retrieval",
        "ocr-image-to-text",
        "openai-whisper-1",
        "openai-gpt-4o",
        "openai-gpt-35-turbo",
        "openai-tts-1",
    }
    assert deployments == {"OmniServeIngress"} | ENABLED | models, "text-emotion, used by no cluster, stays off"
