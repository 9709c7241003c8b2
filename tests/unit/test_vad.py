"""End of speech on real speech, fed in 20 ms pieces as a microphone would."""

import numpy as np
import pytest

from bench.speech import speak
from graphs.live.vad import Pause, SpeechSegmenter, SpeechStarted, Utterance, VADSettings
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
    assert [type(e) for e in events] == [SpeechStarted, Pause, Utterance]
    started, pause, utterance = events
    assert started.at == pytest.approx(1000.0 + 1.0, abs=0.2), "speech starts after one second of silence"
    assert abs(len(utterance.audio) - len(sentence)) < 0.4 * RATE
    assert utterance.ended_at == pytest.approx(1000.0 + 1.0 + len(sentence) / RATE, abs=0.3)
    assert utterance.same_as_pause and np.array_equal(pause.audio, utterance.audio), "the pause had it all"
    assert pause.ended_at == utterance.ended_at


def test_two_utterances_and_the_stop_time(sentence):
    gap = np.zeros(int(0.8 * RATE))
    audio = np.concatenate([gap, sentence, gap, sentence, gap])
    assert sum(isinstance(e, Utterance) for e in feed(SpeechSegmenter(VADSettings(min_silence_ms=500)), audio)) == 2
    patient = feed(SpeechSegmenter(VADSettings(min_silence_ms=1500)), audio)
    assert sum(isinstance(e, Utterance) for e in patient) == 0, "0.8 s pauses are not the end"
    resumed = [e for e in patient if isinstance(e, SpeechStarted) and e.resumed]
    assert len(resumed) == 1, "the second sentence goes on with the first, after its pause"
    pauses = [e for e in patient if isinstance(e, Pause)]
    assert len(pauses) == 2 and len(pauses[1].audio) > len(sentence) * 2, "a pause hands out all said so far"


def test_a_turn_judged_over_at_its_pause_ends_there(sentence):
    segmenter = SpeechSegmenter(VADSettings(min_silence_ms=1500))
    gap = np.zeros(int(0.8 * RATE))
    events = feed(segmenter, np.concatenate([gap, sentence, gap[:4000]]))
    assert isinstance(events[-1], Pause)
    segmenter.end_turn()
    later = feed(segmenter, np.concatenate([gap, sentence, gap]), start=1010.0)
    assert isinstance(later[0], SpeechStarted) and not later[0].resumed, "the next speech is a new utterance"


def test_silence_and_noise_are_not_speech():
    rng = np.random.default_rng(0)
    audio = np.concatenate([np.zeros(RATE), 0.01 * rng.standard_normal(2 * RATE).astype(np.float32)])
    assert feed(SpeechSegmenter(), audio) == []


def test_long_speech_is_cut_at_the_limit(sentence):
    audio = np.concatenate([sentence] * 4)
    events = feed(SpeechSegmenter(VADSettings(max_utterance_s=3.0, min_silence_ms=2000)), audio)
    utterances = [e for e in events if isinstance(e, Utterance)]
    assert utterances and len(utterances[0].audio) <= 3.2 * RATE
