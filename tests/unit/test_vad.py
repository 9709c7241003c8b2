"""End of speech on real speech, fed in 20 ms pieces as a microphone would."""

import numpy as np
import pytest

from bench.speech import speak
from graphs.api.vad import SpeechSegmenter, SpeechStarted, Utterance, VADSettings
from omniwire.audio import decode

RATE = 16_000


@pytest.fixture(scope="module")
def sentence():
    return decode(speak("What is the weather like today in Paris?")).samples


def feed(segmenter, audio, piece=320, start=1000.0):
    events = []
    for i in range(0, len(audio), piece):
        events += segmenter.feed(audio[i : i + piece], arrived=start + (i + piece) / RATE)
    return events


def test_one_utterance_between_silences(sentence):
    audio = np.concatenate([np.zeros(RATE), sentence, np.zeros(RATE)])
    events = feed(SpeechSegmenter(VADSettings(min_silence_ms=500)), audio)
    assert [type(e) for e in events] == [SpeechStarted, Utterance]
    started, utterance = events
    assert started.at == pytest.approx(1000.0 + 1.0, abs=0.2), "speech starts after one second of silence"
    assert abs(len(utterance.audio) - len(sentence)) < 0.4 * RATE
    assert utterance.ended_at == pytest.approx(1000.0 + 1.0 + len(sentence) / RATE, abs=0.3)


def test_two_utterances_and_the_stop_time(sentence):
    gap = np.zeros(int(0.8 * RATE))
    audio = np.concatenate([gap, sentence, gap, sentence, gap])
    assert sum(isinstance(e, Utterance) for e in feed(SpeechSegmenter(VADSettings(min_silence_ms=500)), audio)) == 2
    patient = SpeechSegmenter(VADSettings(min_silence_ms=1500))
    assert sum(isinstance(e, Utterance) for e in feed(patient, audio)) == 0, "0.8 s pauses are not the end"


def test_silence_and_noise_are_not_speech():
    rng = np.random.default_rng(0)
    audio = np.concatenate([np.zeros(RATE), 0.01 * rng.standard_normal(2 * RATE).astype(np.float32)])
    assert feed(SpeechSegmenter(), audio) == []


def test_long_speech_is_cut_at_the_limit(sentence):
    audio = np.concatenate([sentence] * 4)
    events = feed(SpeechSegmenter(VADSettings(max_utterance_s=3.0, min_silence_ms=2000)), audio)
    utterances = [e for e in events if isinstance(e, Utterance)]
    assert utterances and len(utterances[0].audio) <= 3.2 * RATE
