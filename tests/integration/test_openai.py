"""The OpenAI-compatible API through the official `openai` client, and the OpenAI clusters
running against it: the client, real HTTP and our own models, no patching."""

import base64
import io

import openai
import pytest
import soundfile as sf
from sqlalchemy import select

from bench.speech import speak
from graphs.store import TaskRecord, TraceStore
from tests.integration.test_conversation import post, stages_of, voiced_seconds, words
from tests.pictures import sign


@pytest.fixture(scope="module")
def client(server):
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="sk-omniserve-test", max_retries=0) as c:
        yield c


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def test_models_list_our_models_and_their_openai_names(client):
    ids = {m.id for m in client.models.list()}
    assert {
        "whisper-1",
        "gpt-4o",
        "gpt-3.5-turbo",
        "tts-1",
        "whisper-tiny-en",
        "qwen2.5-coder-1.5b-int8",
        "piper-joe",
    } <= ids


def test_transcription(client):
    result = client.audio.transcriptions.create(model="whisper-1", file=("q.wav", speak("How is the weather today?")))
    assert {"weather", "today"} <= words(result.text)
    text = client.audio.transcriptions.create(
        model="whisper-1", file=("q.wav", speak("Good morning.")), response_format="text"
    )
    assert "morning" in words(text)


def test_chat_completion_and_its_stream_agree(client):
    messages = [{"role": "user", "content": "Name three colours."}]
    whole = client.chat.completions.create(model="gpt-4o", messages=messages, max_tokens=24)
    text = whole.choices[0].message.content
    assert text and whole.usage.completion_tokens > 0 and whole.choices[0].finish_reason in ("stop", "length")
    pieces = [
        c.choices[0].delta.content
        for c in client.chat.completions.create(model="gpt-4o", messages=messages, max_tokens=24, stream=True)
        if c.choices and c.choices[0].delta.content
    ]
    assert len(pieces) > 3
    assert "".join(pieces).strip() == text.strip()


def test_images_reach_a_text_only_model_as_text(client):
    question = {"type": "text", "text": "What does the sign say?"}
    plain = client.chat.completions.create(
        model="gpt-4o", max_tokens=4, messages=[{"role": "user", "content": [question]}]
    )
    shown = client.chat.completions.create(
        model="gpt-4o",
        max_tokens=4,
        messages=[
            {"role": "user", "content": [question, {"type": "image_url", "image_url": {"url": data_url(sign())}}]}
        ],
    )
    assert shown.usage.prompt_tokens > plain.usage.prompt_tokens + 5, "the sign's words were read into the prompt"


def test_audio_in_and_audio_out(client):
    question = base64.b64encode(speak("What is the capital city of France?")).decode("ascii")
    answer = client.chat.completions.create(
        model="gpt-4o-audio-preview",
        modalities=["text", "audio"],
        audio={"voice": "alloy", "format": "wav"},
        messages=[
            {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": question, "format": "wav"}}]}
        ],
    )
    spoken = answer.choices[0].message.audio
    samples, rate = sf.read(io.BytesIO(base64.b64decode(spoken.data)), dtype="float32")
    assert spoken.transcript and voiced_seconds(samples, rate) > 0.5


@pytest.mark.parametrize("fmt", ["wav", "mp3", "flac", "opus"])
def test_speech(client, fmt):
    speech = client.audio.speech.create(
        model="tts-1", voice="alloy", input="Hello there, nice to meet you.", response_format=fmt
    )
    samples, rate = sf.read(io.BytesIO(speech.content), dtype="float32")
    assert voiced_seconds(samples if samples.ndim == 1 else samples.mean(axis=1), rate) > 0.5


def test_errors_come_back_as_openai_errors(client):
    with pytest.raises(openai.NotFoundError, match="The model 'gpt-5' does not exist here"):
        client.chat.completions.create(model="gpt-5", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="is a text_to_speech model"):
        client.chat.completions.create(model="tts-1", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="only data: URLs can be read"):
        client.chat.completions.create(
            model="gpt-4o",
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}],
                }
            ],
        )
    with pytest.raises(openai.BadRequestError, match="could not decode the audio"):
        client.audio.transcriptions.create(model="whisper-1", file=("q.wav", b"not audio"))


@pytest.mark.parametrize(
    "cluster,llm",
    [
        ("CLUSTER_GPT_4O_TEXT_ETE_CONVERSATION", "gpt_4o_text"),
        ("CLUSTER_GPT_35_ETE_CONVERSATION", "gpt_35"),
    ],
)
def test_openai_clusters_end_to_end(server, cluster, llm):
    response = post(server, speak("What is the capital city of France?"), cluster=cluster)
    assert response.status_code == 200, response.text
    body = response.json()
    assert {"capital", "france"} <= words(body["transcript"])
    assert body["reply_text"] and body["reply_audio"]["duration_s"] > 0.5
    tasks = stages_of(server, body["track_id"])
    assert list(tasks) == ["speech_to_text", llm, "text_to_speech"]
    for name, task in tasks.items():
        api_s = task["result_profile"]["api_processing_s"]
        assert api_s is not None, "the API's own time is recorded"
        latency = task["latency_profile"]
        if name == llm:  # streamed: its model time is the whole stream, of which the API reports the start
            assert api_s <= latency["model_inference"]
        else:
            assert latency["model_inference"] == pytest.approx(api_s, abs=0.002)
        assert latency["transfer_in"] + latency["transfer_out"] > 0


def test_gpt_4o_cluster_sends_the_pictures(server):
    response = post(
        server,
        speak("What does this sign say?"),
        cluster="CLUSTER_GPT_4O_ETE_CONVERSATION",
        images=[("sign.png", sign())],
    )
    assert response.status_code == 200, response.text
    tasks = stages_of(server, response.json()["track_id"])
    assert tasks["gpt_4o"]["result_profile"]["images"] == 1
    # The prompt keeps a description of the picture, not the picture: no base64 anywhere in the records.
    image_part = tasks["gpt_4o"]["result_profile"]["prompt"][1]
    assert image_part["image"].startswith("<png, ") and "sha256" in image_part["image"]
    store = TraceStore(server.trace_store_url)
    with store.engine.connect() as conn:
        stored = conn.execute(select(TaskRecord.parameters, TaskRecord.result_profile, TaskRecord.error)).all()
    inline = base64.b64encode(sign()).decode("ascii")[:40]
    assert not [row for row in stored if "base64," in str(row) or inline in str(row)]


def test_gpt_35_rag_cluster_retrieves_before_asking(server):
    response = post(
        server,
        speak("When does the Riverside library open on Saturdays?"),
        cluster="CLUSTER_GPT_35_RAG_ETE_CONVERSATION",
    )
    assert response.status_code == 200, response.text
    tasks = stages_of(server, response.json()["track_id"])
    assert tasks["rag"]["result_profile"]["chunks"][0]["source"] == "library.md"
    assert "10 am" in tasks["gpt_35"]["result_profile"]["context"]


def test_voice_to_voice_through_an_audio_capable_chat_model(server, monkeypatch):
    """The voice2voice stage's openai backend, against this server's /v1 through the real client."""
    import asyncio

    from deployments.voice_to_voice.service import VoiceToVoice
    from omniwire.audio import decode

    monkeypatch.setenv("OPENAI_API_KEY", "sk-omniserve-test")
    stage = VoiceToVoice(backend="openai", model="gpt-4o-audio-preview", base_url=f"{server.url}/v1")
    audio = decode(speak("What is the capital city of France?")).samples
    out = asyncio.run(stage.run({"audio": audio}, {}))
    assert {"capital", "france"} <= words(out.outputs["transcript"])
    assert out.outputs["reply_text"]
    reply = out.outputs["reply_audio"]
    assert voiced_seconds(reply["samples"], reply["sample_rate"]) > 0.5
    assert out.result_profile["calls"]["chat"]["api_processing_s"] is not None
