"""Every local cluster of the default serve config, end to end with real speech and pictures."""

import pytest

from bench.speech import speak
from tests.integration.test_conversation import post, stages_of, words
from tests.pictures import astronaut, sign


@pytest.mark.parametrize(
    "cluster,stages",
    [
        ("CLUSTER_Q_ETE_CONVERSATION", ["speech_to_text", "emotion_detection", "quantization_llm", "text_to_speech"]),
        ("CLUSTER_Q_NO_EMOTION_ETE_CONVERSATION", ["speech_to_text", "quantization_llm", "text_to_speech"]),
    ],
)
def test_quantized_clusters(server, cluster, stages):
    response = post(server, speak("What is the capital city of France?"), cluster=cluster)
    assert response.status_code == 200, response.text
    body = response.json()
    assert {"capital", "france"} <= words(body["transcript"])
    assert body["reply_text"] and body["reply_audio"]["duration_s"] > 0.5
    assert [s["task_name"] for s in body["timings"]["stages"]] == stages
    assert (body["emotion"] is None) == ("emotion_detection" not in stages)
    assert "paris" in body["reply_text"].lower()
    llm = stages_of(server, body["track_id"])["quantization_llm"]
    assert llm["result_profile"]["model"] == "qwen2.5-coder-1.5b-instruct" and llm["result_profile"]["tokens_per_s"] > 0


def test_emotion_fuses_words_voice_and_face(server):
    response = post(
        server,
        speak("I am so happy to see you, this is wonderful!"),
        cluster="CLUSTER_HF_ETE_CONVERSATION",
        images=[("me.png", astronaut())],
    )
    assert response.status_code == 200, response.text
    emotion = response.json()["emotion"]
    assert set(emotion["modalities"]) == {"text", "audio", "face"}
    assert emotion["modalities"]["face"]["label"] == "happy"
    assert emotion["modalities"]["text"]["sentiment"] == "positive"
    assert emotion["modalities"]["audio"]["speaking_rate_wps"] > 0
    llm = stages_of(server, response.json()["track_id"])["hf_llm"]
    assert f"seems {emotion['label']}" in llm["result_profile"]["context"], "the emotion is context, not the question"


def test_retrieval_cluster_answers_from_the_right_document(server):
    response = post(
        server, speak("When does the Riverside library open on Saturdays?"), cluster="CLUSTER_HF_RAG_ETE_CONVERSATION"
    )
    assert response.status_code == 200, response.text
    tasks = stages_of(server, response.json()["track_id"])
    chunks = tasks["rag"]["result_profile"]["chunks"]
    assert chunks[0]["source"] == "library.md"
    assert "10 am" in tasks["hf_llm"]["result_profile"]["context"], "the library chunk reached the LLM"
    assert "library" in words(response.json()["transcript"])


def test_vision_cluster_reads_the_pictures(server):
    response = post(
        server,
        speak("What does this sign say?"),
        cluster="CLUSTER_HF_VISION_ETE_CONVERSATION",
        images=[("sign.png", sign()), ("me.png", astronaut())],
    )
    assert response.status_code == 200, response.text
    tasks = stages_of(server, response.json()["track_id"])
    image_text = tasks["image2text"]["result_profile"]["image_text"]
    assert {"open", "24", "hours"} <= words(image_text)
    assert "happy" in image_text
    assert image_text in tasks["hf_llm"]["result_profile"]["context"]
    assert tasks["emotion_detection"]["result_profile"]["modalities"]["face"]["label"] == "happy"
    stt, ocr, emotion = (tasks[n]["latency_profile"] for n in ("speech_to_text", "image2text", "emotion_detection"))
    assert max(stt["ts_start"], ocr["ts_start"]) < min(stt["ts_end"], ocr["ts_end"]), "they ran side by side"
    assert emotion["ts_start"] >= max(stt["ts_end"], ocr["ts_end"]) - 1e-5, "emotion waited for both"
