"""The voice-to-voice stage on real speech, and the tutorial's cluster run exactly as the guide writes it.

The openai backend needs a server; only what it checks before any request is tested here.
"""

import asyncio
import re
import uuid

import numpy as np
import pytest
import yaml
from pydantic import ValidationError
from ray import serve

from bench.speech import speak
from deployments.voice_to_voice.service import VoiceToVoice
from graphs.app import build_graphs
from graphs.config import DEFAULT_CLUSTERS_FILE, ROOT, ConfigError, parse_clusters
from graphs.pipeline.turn import TurnRequest
from graphs.store import TraceStore
from omniwire.audio import MODEL_RATE, decode
from omniwire.tracks import new_track_id
from tests.pictures import sign

QUESTION_WAV = speak("What is the capital city of France?")
QUESTION = decode(QUESTION_WAV).samples
TUTORIAL = ROOT / "docs" / "adding-a-pipeline.md"
TUTORIAL_CLUSTER = "CLUSTER_VOICE_ETE_CONVERSATION"


def words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


@pytest.fixture(scope="module")
def voice():
    return VoiceToVoice()


@pytest.fixture(scope="module")
def answered(voice):
    return asyncio.run(voice.run({"audio": QUESTION}, {}))


def test_answers_speech_with_speech(answered):
    assert {"capital", "city", "france"} <= words(answered.outputs["transcript"])
    assert answered.outputs["reply_text"].strip()
    reply = answered.outputs["reply_audio"]
    assert len(reply["samples"]) / reply["sample_rate"] > 0.5
    profile = answered.result_profile
    assert profile["backend"] == "local"
    assert profile["transcript"] == answered.outputs["transcript"]
    assert profile["reply_text"] == answered.outputs["reply_text"]
    assert set(profile["timings"]) == {"stt_s", "llm_s", "tts_s"} and min(profile["timings"].values()) > 0
    assert sum(profile["timings"].values()) <= answered.model_s


def test_image_text_reaches_the_prompt(voice):
    image_text = "Image 1: the text reads 'OPEN 24 HOURS / Fresh coffee'."
    params = {"context_template": "What the person shows you: {image_text}", "max_new_tokens": 8}
    out = asyncio.run(voice.run({"audio": QUESTION, "image_text": image_text}, params))
    transcript = out.outputs["transcript"]
    assert out.result_profile["prompt"] == transcript, "the question is the person's words alone"
    assert out.result_profile["context"] == f"What the person shows you: {image_text}"


def test_silence_is_no_speech(voice):
    out = asyncio.run(voice.run({"audio": np.zeros(MODEL_RATE, dtype=np.float32)}, {}))
    assert out.outputs == {"transcript": ""}, "the graph ends a turn with an empty transcript"
    assert set(out.result_profile["timings"]) == {"stt_s"}, "no LLM or TTS run for silence"


def test_openai_backend_needs_its_api_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    reason = VoiceToVoice.unavailable_reason({"backend": "openai"})
    assert reason and "OPENAI_API_KEY" in reason
    with pytest.raises(RuntimeError, match="OPENAI_API_KEY"):
        VoiceToVoice(backend="openai")
    assert VoiceToVoice.unavailable_reason({}) is None, "the local backend needs no key"
    assert "TEAM_KEY" in VoiceToVoice.unavailable_reason({"backend": "openai", "api_key_env": "TEAM_KEY"})

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1")
    assert VoiceToVoice.unavailable_reason({"backend": "openai"}) is None
    remote = VoiceToVoice(backend="openai")
    assert str(remote.client.base_url).startswith("http://127.0.0.1:8000/v1"), "base_url None: OPENAI_BASE_URL"


def test_options_belong_to_one_backend():
    with pytest.raises(ValidationError, match="whisper_model: not an option of the openai backend"):
        VoiceToVoice.Options(backend="openai", whisper_model="tiny.en")
    with pytest.raises(ValidationError, match="transcription_model: not an option of the local backend"):
        VoiceToVoice.Options(transcription_model="whisper-1")


def test_prompt_placeholders_must_be_filled_by_earlier_stages():
    def config(stages):
        return {
            "models": {"ocr": {"component": "ocr_image_to_text"}, "v2v": {"component": "voice2voice"}},
            "clusters": {"C": {"stages": stages}},
        }

    def template(text):
        return {"name": "voice2voice", "model": "v2v", "params": {"context_template": text}}

    with pytest.raises(ConfigError, match=r"placeholder \{image_text\} has no earlier stage that fills it"):
        parse_clusters(config([template("{image_text}")]))
    with pytest.raises(ConfigError, match=r"placeholder \{transcript\} does not belong here"):
        parse_clusters(config([template("{transcript}")]))
    parse_clusters(config([{"name": "image2text", "model": "ocr"}, template("{image_text}")]))


def tutorial_blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", TUTORIAL.read_text(), re.S | re.M)


def tutorial_config():
    """The guide's YAML blocks for configs/clusters.yaml, with the shipped models its stages name."""
    models, clusters = {}, {}
    for block in map(yaml.safe_load, tutorial_blocks("yaml")):
        if set(block) <= {"models", "clusters"}:
            models.update(block.get("models", {}))
            clusters.update(block.get("clusters", {}))
    shipped = yaml.safe_load(DEFAULT_CLUSTERS_FILE.read_text())["models"]
    for cluster in clusters.values():
        for stage in cluster["stages"]:
            models.setdefault(stage["model"], shipped.get(stage["model"]))
    return parse_clusters({"models": models, "clusters": clusters})


def test_the_tutorial_blocks_are_valid_and_current():
    config = tutorial_config()
    assert [config.stage_component(s) for s in config.clusters[TUTORIAL_CLUSTER].flat()] == [
        "ocr_image_to_text",
        "voice2voice",
    ]
    assert any(
        TUTORIAL_CLUSTER in (yaml.safe_load(b) or {}).get("enabled_clusters", []) for b in tutorial_blocks("yaml")
    ), "the guide enables the cluster in serve_config.yaml"
    source = {
        line.strip() for line in (ROOT / "deployments" / "voice_to_voice" / "service.py").read_text().splitlines()
    }
    for block in tutorial_blocks("python"):
        for line in block.splitlines():
            assert line.strip() in source | {"", "..."}, f"the guide quotes a line voice_to_voice.py lacks: {line}"


@pytest.fixture(scope="module")
def tutorial_turn(tmp_path_factory):
    store_url = f"sqlite:///{tmp_path_factory.mktemp('tutorial') / 'traces.db'}"
    graphs = build_graphs(tutorial_config(), [TUTORIAL_CLUSTER], store_url)
    handle = serve.run(graphs[TUTORIAL_CLUSTER], name=TUTORIAL_CLUSTER, route_prefix=None, _local_testing_mode=True)
    request = TurnRequest(
        new_track_id(TUTORIAL_CLUSTER),
        [uuid.uuid4().hex, uuid.uuid4().hex],
        QUESTION,
        QUESTION_WAV,
        "audio/wav",
        images=[sign()],
    )

    async def call():
        return await handle.run_turn.remote(request)

    outcome = asyncio.run(call())
    return outcome, TraceStore(store_url).track(outcome.track_id)


def test_the_tutorial_cluster_answers_a_turn_with_a_picture(tutorial_turn):
    outcome, track = tutorial_turn
    assert outcome.status == "completed", outcome.error
    assert outcome.reply_audio["duration_s"] > 0.5
    image2text, voice2voice = track["tasks"]
    assert [(t["task_name"], t["status"]) for t in track["tasks"]] == [
        ("image2text", "completed"),
        ("voice2voice", "completed"),
    ]
    image_text = image2text["result_profile"]["image_text"]
    assert {"open", "24", "hours", "fresh", "coffee"} <= words(image_text)
    assert image_text in voice2voice["result_profile"]["context"]
    assert {"capital", "france"} <= words(voice2voice["result_profile"]["transcript"])
