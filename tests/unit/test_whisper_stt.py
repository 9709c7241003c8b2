"""Whisper tiny.en on real speech (the evaluation set's voices): utterances that wait for the model are
transcribed together, each as it is heard alone."""

import asyncio

import numpy as np
import pytest

from bench.eval_set import load_eval_set, recordings, synthesize
from deployments.stt.whisper import WhisperSpeechToText
from omniwire.audio import decode


@pytest.fixture(scope="module")
def stt():
    return WhisperSpeechToText()


@pytest.fixture(scope="module")
def utterances():
    said = recordings(
        load_eval_set(), voices=["piper-joe"], questions=["capital-france", "largest-planet", "romeo-juliet"]
    )
    return [decode(synthesize(one)).samples for one in said]


def test_a_batch_is_heard_as_each_utterance_alone_and_silence_stays_silent(stt, utterances):
    silence = np.zeros(16_000, np.float32)
    alone = [stt.process({"audio": audio}, stt.Params())[0]["transcript"] for audio in utterances]
    together = stt.process_batch([({"audio": audio}, stt.Params()) for audio in [*utterances, silence]])
    assert [outputs["transcript"] for outputs, _ in together] == [*alone, ""]
    assert "capital" in alone[0].lower() and "planet" in alone[1].lower()
    assert together[-1][1]["no_speech_prob"] == 1.0


def test_calls_that_come_together_share_one_batch_and_a_lone_call_has_none(stt, utterances):
    async def at_once():
        return await asyncio.gather(*(stt.run({"audio": audio}, {}) for audio in utterances))

    outputs = asyncio.run(at_once())
    assert [o.result_profile.get("batch_size") for o in outputs] == [3, 3, 3]
    assert "capital" in outputs[0].outputs["transcript"].lower()
    alone = asyncio.run(stt.run({"audio": utterances[0]}, {}))
    assert "batch_size" not in alone.result_profile
    assert alone.outputs == outputs[0].outputs


def test_calls_with_other_settings_are_not_mixed(stt, utterances):
    calls = [({"audio": utterances[0]}, stt.Params()), ({"audio": utterances[1]}, stt.Params(beam_size=2))]
    heard = stt.process_batch(calls)
    assert "capital" in heard[0][0]["transcript"].lower() and "planet" in heard[1][0]["transcript"].lower()


def test_one_at_a_time_when_the_options_say_so(utterances):
    stt = WhisperSpeechToText(max_batch=1)

    async def at_once():
        return await asyncio.gather(*(stt.run({"audio": audio}, {}) for audio in utterances[:2]))

    assert all("batch_size" not in o.result_profile for o in asyncio.run(at_once()))


def test_the_last_reply_and_the_clusters_words_prime_whisper_and_are_recorded(stt, utterances):
    history = [
        {"role": "user", "content": "Tell me about Paris."},
        {"role": "assistant", "content": "Paris is the capital of France, famous for the Louvre."},
    ]
    params = stt.Params(prompt="OmniServe, Riverside library", last_reply_as_prompt=True)
    assert stt.context({"history": history}, params) == (
        "Paris is the capital of France, famous for the Louvre. OmniServe, Riverside library"
    )
    assert stt.context({"history": history}, stt.Params()) is None, "the last reply is off by default"
    assert stt.context({}, stt.Params(last_reply_as_prompt=True)) is None
    (heard, profile), (plain, _) = stt.process_batch(
        [({"audio": utterances[0], "history": history}, params), ({"audio": utterances[0]}, stt.Params())]
    )
    assert profile["context"].startswith("Paris is the capital") and "capital" in heard["transcript"].lower()
    assert heard["transcript"].lower().rstrip("?.") == plain["transcript"].lower().rstrip("?.")


def test_a_long_context_is_cut_to_the_words_before_the_question(stt, utterances):
    long_reply = " ".join(f"word{i}" for i in range(200))
    context = stt.context(
        {"history": [{"role": "assistant", "content": long_reply}]}, stt.Params(last_reply_as_prompt=True)
    )
    assert context.split() == long_reply.split()[-40:]
    text, _ = stt.transcribe(utterances[1], stt.Params(), context)
    assert "planet" in text.lower()
