"""Moonshine tiny-en, the model bundled in moonshine-voice 0.1.0, on real speech."""

import numpy as np
import pytest

from bench.eval_set import load_eval_set, recordings, synthesize
from deployments.stt.moonshine import MoonshineSpeechToText
from omniwire.audio import decode


@pytest.fixture(scope="module")
def stt():
    return MoonshineSpeechToText()


def test_it_hears_a_question_and_silence_stays_silent(stt):
    said = recordings(load_eval_set(), voices=["piper-joe"], questions=["capital-france"])[0]
    (heard, profile), (silent, none) = stt.process_batch(
        [
            ({"audio": decode(synthesize(said)).samples}, stt.Params()),
            ({"audio": np.zeros(16_000, np.float32)}, stt.Params()),
        ]
    )
    assert {"capital", "france"} <= set(heard["transcript"].lower().strip("?.").split())
    assert profile["model"] == "moonshine-tiny-en" and profile["audio_seconds"] > 1
    assert silent["transcript"] == "" and none["no_speech_prob"] == 1.0


def test_an_unknown_model_is_named():
    with pytest.raises(ValueError, match="moonshine model 'huge-en'"):
        MoonshineSpeechToText(model="huge-en")
