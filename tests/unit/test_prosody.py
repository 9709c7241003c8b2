"""Prosody of real speech: one sentence spoken by the Piper voice at three speeds, decoded like an
upload (16 kHz mono float32)."""

import numpy as np
import pytest

from deployments.emotion.prosody import measure
from deployments.tts.piper import PiperTextToSpeech
from omniwire.audio import MODEL_RATE, decode, encode_wav

SENTENCE = "I cannot believe we actually won the championship today, this is amazing!"


@pytest.fixture(scope="module")
def spoken():
    voice = PiperTextToSpeech()

    def at(length_scale: float) -> np.ndarray:
        samples, rate = voice.synthesize(SENTENCE, voice.Params(length_scale=length_scale))
        return decode(encode_wav(samples, rate)).samples

    return {"fast": at(0.7), "normal": at(1.0), "slow": at(1.4)}


def test_features_of_an_utterance(spoken):
    audio = spoken["normal"]
    p = measure(audio, SENTENCE, MODEL_RATE)
    assert 70 < p["pitch_mean_hz"] < 140, "the joe voice is a low male voice"
    assert 0 < p["pitch_sd_hz"] < 40, "no octave jumps"
    assert 1 < p["pitch_sd_semitones"] < 6
    assert 55 < p["intensity_mean_db"] < 85 and p["intensity_sd_db"] > 0
    assert 0 < p["voiced_s"] < p["speech_s"] <= len(audio) / MODEL_RATE
    assert p["words"] == 12
    assert p["speaking_rate_wps"] == pytest.approx(12 / p["speech_s"], abs=0.01)
    assert 0 <= p["arousal"] <= 1 and p["arousal_level"] in {"low", "medium", "high"}


def test_faster_speech_has_a_higher_rate_and_arousal(spoken):
    fast, normal, slow = (measure(spoken[s], SENTENCE, MODEL_RATE) for s in ("fast", "normal", "slow"))
    assert fast["speech_s"] < normal["speech_s"] < slow["speech_s"]
    assert fast["speaking_rate_wps"] > normal["speaking_rate_wps"] > slow["speaking_rate_wps"]
    assert fast["speaking_rate_wps"] > 1.3 * slow["speaking_rate_wps"], "length scales 0.7 and 1.4"
    assert fast["arousal"] > normal["arousal"] > slow["arousal"]
    assert fast["pitch_mean_hz"] == pytest.approx(slow["pitch_mean_hz"], rel=0.1), "same voice, same pitch"


def test_silence_and_noise_are_not_speech():
    silence = np.zeros(MODEL_RATE, dtype=np.float32)
    noise = 0.1 * np.random.default_rng(0).standard_normal(MODEL_RATE).astype(np.float32)
    for audio in (silence, noise, silence[:800]):
        p = measure(audio, "hello there", MODEL_RATE)
        assert p["arousal"] is None and p["pitch_mean_hz"] is None and p["speaking_rate_wps"] is None
        assert p["words"] == 2
