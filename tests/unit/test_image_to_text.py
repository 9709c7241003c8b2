"""Image to text on real images: printed words rendered with Pillow, and a photo with a face."""

import asyncio
import re

import pytest
from PIL import Image

from deployments.vision.ocr import OCRImageToText
from graphs.config import parse_clusters
from tests.pictures import astronaut, png, sign

SIGN = sign()
ASTRONAUT = astronaut()


@pytest.fixture(scope="module")
def ocr():
    return OCRImageToText()


@pytest.fixture(scope="module")
def described(ocr):
    """One stage run over both images, shared by the tests that read it."""
    return asyncio.run(ocr.run({"images": [SIGN, ASTRONAUT]}, {}))


def test_printed_words_are_read(described):
    sign_line = described.outputs["image_text"].splitlines()[0]
    assert sign_line.startswith("Image 1: the text reads '")
    assert {"open", "24", "hours", "fresh", "coffee"} <= set(re.findall(r"\w+", sign_line.lower()))
    lines = described.result_profile["images"][0]["lines"]
    assert len(lines) == 2 and all(0.5 <= line["score"] <= 1 for line in lines)
    assert described.result_profile["images"][0]["faces"] == []


def test_a_face_is_counted_with_its_expression(described):
    assert described.outputs["image_text"].splitlines()[1] == "Image 2: one face, looks happy."
    found = described.result_profile["images"][1]
    assert found["image"] == 2 and found["lines"] == [] and found["caption"] is None
    assert [f["label"] for f in found["faces"]] == ["happy"]


def test_the_profile_holds_the_prompt_text_and_one_entry_per_image(described):
    profile = described.result_profile
    assert profile["image_text"] == described.outputs["image_text"]
    assert [entry["image"] for entry in profile["images"]] == [1, 2]
    assert [f"Image {e['image']}: {e['text']}" for e in profile["images"]] == profile["image_text"].splitlines()


def test_long_text_is_cut_and_unsure_lines_dropped(ocr):
    phrase, _ = ocr.describe(SIGN, ocr.Params(max_text_chars=8))
    assert phrase == "the text reads 'OPEN 24…'."
    phrase, profile = ocr.describe(SIGN, ocr.Params(min_text_score=1.0))
    assert all(line["score"] == 1.0 for line in profile["lines"])


def test_an_image_with_nothing_to_read_says_so(ocr):
    blank = png(Image.new("RGB", (200, 200), "white"))
    assert ocr.describe(blank, ocr.Params()) == (
        "no text or faces recognised.",
        {"caption": None, "lines": [], "faces": []},
    )


def test_no_images_give_no_text(ocr):
    out = asyncio.run(ocr.run({"images": []}, {}))
    assert out.outputs == {"image_text": ""} and out.result_profile["images"] == []


def test_a_cluster_can_give_the_llm_what_the_images_show():
    config = parse_clusters(
        {
            "models": {
                "stt": {"component": "whisper_stt"},
                "emotion": {"component": "multimodal_emotion", "options": {"min_face_size": 32}},
                "ocr": {"component": "ocr_image_to_text"},
                "llm": {"component": "hf_llm"},
                "tts": {"component": "piper_tts"},
            },
            "clusters": {
                "SEEING": {
                    "stages": [
                        {"name": "speech_to_text", "model": "stt"},
                        {"name": "emotion_detection", "model": "emotion", "params": {"face_weight": 2}},
                        {"name": "image_to_text", "model": "ocr", "params": {"max_text_chars": 120}},
                        {
                            "name": "llm",
                            "model": "llm",
                            "params": {"context_template": "Images: {image_text}\nMood: {emotion}"},
                        },
                        {"name": "text_to_speech", "model": "tts"},
                    ]
                }
            },
        }
    )
    stages = config.clusters["SEEING"].flat()
    assert [config.stage_component(s) for s in stages][1:3] == ["multimodal_emotion", "ocr_image_to_text"]
