"""The Piper stage on the bundled voice: how its chunks join."""

import numpy as np
import pytest

from deployments.tts.piper import PiperTextToSpeech
from deployments.tts.service import MID_SENTENCE_TAIL_S, QUIET


@pytest.fixture(scope="module")
def voice():
    return PiperTextToSpeech()


def silence_after(audio: np.ndarray, rate: int) -> float:
    loud = np.flatnonzero(np.abs(audio) > QUIET)
    return (len(audio) - loud[-1] - 1) / rate


def spoken(voice, text: str) -> tuple[np.ndarray, int]:
    outputs, _ = voice.process({"reply_text": text}, voice.Params())
    return outputs["reply_audio"]["samples"], outputs["reply_audio"]["sample_rate"]


def test_first_words_cut_mid_sentence_end_without_the_voice_s_closing_pause(voice):
    raw, rate = voice.synthesize("The capital of")
    assert silence_after(raw, rate) > 0.1, "the voice itself ends every text with a pause"
    audio, rate = spoken(voice, "The capital of")
    assert silence_after(audio, rate) <= MID_SENTENCE_TAIL_S + 1 / rate
    assert len(audio) / rate > 0.5, "the words themselves are all there"


def test_a_whole_sentence_keeps_its_closing_pause(voice):
    audio, rate = spoken(voice, "France is Paris.")
    assert silence_after(audio, rate) > 0.1


def test_idle_threads_do_not_spin_unless_asked(voice):
    entry = "session.intra_op.allow_spinning"
    assert voice.voice.session.get_session_options().get_session_config_entry(entry) == "0"
    spinning = PiperTextToSpeech(spin_wait=True)
    assert spinning.voice.session.get_session_options().get_session_config_entry(entry) == "1"
