"""Smart Turn on real speech: finished sentences score higher than ones cut off mid-sentence, in two voices.

Each clip is the voiced speech then 200 ms of silence, what the segmenter hands over at a short stop time.
Piper samples its voice, so no two syntheses are alike: a Piper sentence scores the median of three.
The bounds are what held over 10 to 40 syntheses per sentence; single sentences vary widely.
"""

import functools
import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from bench.speech import speak
from graphs.live.end_of_turn import MODEL_FILE, RATE, WINDOW_S, EndOfTurnModel, checked_model, last_window
from omniwire.audio import decode

COMPLETE = [
    "What is the weather like in Paris today?",
    "Can you set a timer for ten minutes?",
    "Please play some relaxing music.",
    "How far is the moon from the earth?",
    "Tell me a joke about cats.",
    "What time is it in Tokyo?",
]
INCOMPLETE = [
    "I would like to know what the",
    "Can you tell me about the",
    "I was wondering if you could",
    "What is the best way to",
    "Remind me to call my",
    "So I think that we should",
]
VOICES = ("piper", "espeak-ng")


def spoken(text: str, voice: str) -> np.ndarray:
    """`text` at 16 kHz, trimmed to its voiced part so that its last sample is the end of speech."""
    if voice == "piper":
        audio = decode(speak(text)).samples
    elif shutil.which("espeak-ng") is None:
        raise RuntimeError("the espeak-ng binary is missing: apt-get install -y espeak-ng")
    else:
        with tempfile.TemporaryDirectory() as folder:
            wav = Path(folder, "speech.wav")
            subprocess.run(["espeak-ng", "-w", str(wav), text], check=True)
            audio = decode(wav.read_bytes()).samples
    voiced = np.flatnonzero(np.abs(audio) > 0.01 * np.abs(audio).max())
    return audio[voiced[0] : voiced[-1] + 1]


SILENCE = np.zeros(RATE // 5, dtype=np.float32)
model = functools.cache(EndOfTurnModel)


@functools.cache
def scores(voice: str) -> dict[str, float]:
    draws = 3 if voice == "piper" else 1  # espeak-ng says a text the same way every time
    result = {
        text: float(
            np.median([model().probability(np.concatenate([spoken(text, voice), SILENCE])) for _ in range(draws)])
        )
        for text in COMPLETE + INCOMPLETE
    }
    print(voice, {text: round(p, 3) for text, p in result.items()})
    return result


@pytest.mark.parametrize("voice", VOICES)
def test_a_finished_question_scores_high_and_a_broken_off_one_low(voice):
    p = scores(voice)
    assert p["What is the weather like in Paris today?"] > 0.5 > p["I would like to know what the"], p


@pytest.mark.parametrize("voice", VOICES)
def test_finished_sentences_score_higher_than_unfinished_ones(voice):
    p = scores(voice)
    complete, incomplete = [p[t] for t in COMPLETE], [p[t] for t in INCOMPLETE]
    assert np.mean(complete) > np.mean(incomplete) + 0.15, p
    assert sum(x > 0.5 for x in complete) >= 4, p


def test_the_model_hears_the_last_eight_seconds():
    audio = np.arange(10 * RATE, dtype=np.float32)
    assert np.array_equal(last_window(audio), audio[-WINDOW_S * RATE :])
    short = np.ones(RATE, dtype=np.float32)
    padded = last_window(short)
    assert len(padded) == WINDOW_S * RATE and not padded[:-RATE].any() and padded[-RATE:].all()


def test_features_match_whisper_feature_extractor():
    """pipecat's numpy features (not pinned, unlike the model) still equal the front end Smart Turn was trained on."""
    from transformers import WhisperFeatureExtractor

    audio = spoken("What is the weather like in Paris today?", "espeak-ng")
    reference = WhisperFeatureExtractor(chunk_length=WINDOW_S)(
        last_window(audio),
        sampling_rate=RATE,
        padding="max_length",
        max_length=WINDOW_S * RATE,
        truncation=True,
        do_normalize=True,
        return_tensors="np",
    ).input_features[0]
    np.testing.assert_allclose(model().features(audio), reference, atol=1e-4)


def test_a_different_model_file_is_refused(tmp_path):
    with pytest.raises(RuntimeError, match="is missing"):
        checked_model(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / MODEL_FILE).write_bytes(b"not smart turn")
    with pytest.raises(RuntimeError, match=f"sha256 {hashlib.sha256(b'not smart turn').hexdigest()}, not the pinned"):
        checked_model(tmp_path)
