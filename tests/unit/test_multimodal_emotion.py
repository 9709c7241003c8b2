"""Emotion from real inputs: the transcript, its sentence spoken by the Piper voice, and photos
from scikit-image (a smiling astronaut, a coffee cup without a face)."""

import asyncio
import io
import json

import numpy as np
import pytest
from PIL import Image
from skimage import data

from bench.speech import speak
from deployments.emotion.multimodal import FUSED_LABELS, MultimodalEmotion
from deployments.emotion.text import TextEmotion
from omniwire.audio import decode

SENTENCE = "I cannot believe we actually won the championship today, this is amazing!"
QUESTION = "What is the capital city of France?"


def jpeg(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


ASTRONAUT = jpeg(data.astronaut())
COFFEE = jpeg(data.coffee())


@pytest.fixture(scope="module")
def emotion():
    return MultimodalEmotion()


@pytest.fixture(scope="module")
def speech():
    return decode(speak(SENTENCE)).samples


def detect(emotion, **inputs):
    return emotion.detect(inputs, emotion.Params())


def test_text_voice_and_face_fuse_into_one_label(emotion, speech):
    result = detect(emotion, transcript=SENTENCE, audio=speech, images=[ASTRONAUT])
    assert set(result["modalities"]) == {"text", "audio", "face"} and result["skipped"] == {}
    text, audio, face = (result["modalities"][m] for m in ("text", "audio", "face"))
    assert text["sentiment"] == "positive"
    assert 0 <= audio["arousal"] <= 1 and audio["speaking_rate_wps"] > 0
    assert face["label"] == "happy" and len(face["faces"]) == 1 and face["faces"][0]["image"] == 1
    assert result["valence"] > 0.5, "positive words and a smiling face"
    assert 0 <= result["arousal"] <= 1
    assert min(audio["arousal"], face["arousal"]) <= result["arousal"] <= max(audio["arousal"], face["arousal"])
    assert result["label"] in FUSED_LABELS.values() and result["label"] in {"happy", "excited"}
    assert result["summary"] == (
        f"The user seems {result['label']} (words positive; voice {audio['arousal_level']} energy; face happy)."
    )


def test_text_alone_gives_one_modality_and_says_what_is_missing(emotion):
    result = detect(emotion, transcript=SENTENCE)
    assert set(result["modalities"]) == {"text"}
    assert result["skipped"] == {"audio": "no audio in this turn", "face": "no images in this turn"}
    assert result["label"] == "positive" and result["arousal"] is None and result["arousal_level"] is None
    assert result["summary"] == "The user seems positive (words positive)."


def test_no_face_and_no_voice_are_skipped_not_faked(emotion):
    silence = np.zeros(16_000, dtype=np.float32)
    result = detect(emotion, transcript=QUESTION, audio=silence, images=[COFFEE])
    assert set(result["modalities"]) == {"text"}
    assert result["skipped"] == {"audio": "no voiced speech in the audio", "face": "no face found in the image"}
    assert result["label"] == "neutral"

    result = detect(emotion, transcript=QUESTION, images=[COFFEE, COFFEE])
    assert result["skipped"]["face"] == "no face found in any of the 2 images"


def test_the_face_counts_whichever_image_it_is_in(emotion):
    result = detect(emotion, transcript=QUESTION, images=[COFFEE, ASTRONAUT])
    face = result["modalities"]["face"]
    assert [f["image"] for f in face["faces"]] == [2]
    assert result["valence"] == pytest.approx(face["valence"] / 2, abs=1e-3), "neutral words, happy face"


def test_as_a_stage_the_result_is_the_emotion_slot_and_plain_json(emotion, speech):
    inputs = {"transcript": SENTENCE, "audio": speech, "images": [ASTRONAUT]}
    out = asyncio.run(emotion.run(inputs, {"face_weight": 2.0}))
    assert out.outputs["emotion"] is out.result_profile
    text, face = (out.result_profile["modalities"][m]["valence"] for m in ("text", "face"))
    assert out.result_profile["valence"] == pytest.approx((text + 2 * face) / 3, abs=1e-3)
    assert json.loads(json.dumps(out.result_profile)) == out.result_profile
    assert MultimodalEmotion.name == "multimodal_emotion" and MultimodalEmotion.kind == "emotion"


def test_text_emotion_keeps_its_output():
    text_emotion = TextEmotion()
    result = text_emotion.detect({"transcript": "I am so happy, this is wonderful!"}, text_emotion.Params())
    assert list(result) == ["label", "sentiment", "valence", "vader", "emotions", "summary"]
    assert result["label"] == "joy" and result["sentiment"] == "positive"
    assert result["summary"] == "The user sounds positive, mostly joy."
