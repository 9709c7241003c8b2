"""The local LLMs answer for real, in fp32 and quantized."""

import asyncio
import time

import pytest
import torch

from deployments.llm.quantized import QuantizedLLM
from deployments.llm.service import DEFAULT_SYSTEM_PROMPT
from deployments.llm.transformers_llm import HuggingFaceLLM

QUESTION = {"transcript": "What is the capital city of France?"}
# The weights are under test here, so the plainest prompt; how well the voice prompt's replies
# answer is measured per model by bench.replies.
PARAMS = {
    "prompt_template": "{transcript}",
    "system_prompt": "You are OmniServe, a friendly voice assistant. Your answer is spoken aloud, so reply in one or "
    "two short, plain sentences.",
}


def ask(llm, inputs=QUESTION, params=PARAMS):
    return asyncio.run(llm.run(inputs, params))


@pytest.fixture(scope="module")
def fp32():
    return HuggingFaceLLM()


@pytest.fixture(scope="module")
def int8():
    return QuantizedLLM(quantization="int8_dynamic")


@pytest.mark.parametrize("name", ["fp32", "int8"])
def test_answers_a_question(request, name):
    out = ask(request.getfixturevalue(name))
    assert "paris" in out.outputs["reply_text"].lower()
    profile = out.result_profile
    assert profile["completion_tokens"] > 0 and profile["tokens_per_s"] > 0
    assert profile["prompt"] == QUESTION["transcript"]


def test_int8_quantizes_the_linear_layers_but_not_the_output_head(int8):
    kinds = {type(m) for name, m in int8.model.named_modules() if name.endswith(("q_proj", "down_proj"))}
    assert kinds == {torch.ao.nn.quantized.dynamic.Linear}
    assert type(int8.model.lm_head) is torch.nn.Linear
    assert ask(int8).result_profile["quantization"] == "int8_dynamic"


def test_history_is_chat_turns_and_findings_go_to_a_system_message(fp32):
    history = [
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Nice to meet you, Ada."},
    ]
    emotion = {"label": "happy", "summary": "The user seems happy (words positive)."}
    inputs = {"transcript": "What is my name?", "emotion": emotion, "history": history}
    params = {"max_new_tokens": 8}
    out = ask(fp32, inputs, params)
    assert out.result_profile["prompt"] == "What is my name?", "the person's words alone"
    assert out.result_profile["system"] == DEFAULT_SYSTEM_PROMPT
    assert "seems happy" in out.result_profile["context"] and "user" not in out.result_profile["context"]
    assert out.result_profile["history_messages"] == 2
    without = ask(fp32, {**inputs, "history": []}, params)
    assert out.result_profile["prompt_tokens"] > without.result_profile["prompt_tokens"] + 10


def test_int8_is_for_the_cpu():
    with pytest.raises(ValueError, match="int8_dynamic quantization runs on the CPU only"):
        QuantizedLLM(quantization="int8_dynamic", device="cuda")


def test_streamed_pieces_make_the_same_reply_as_a_whole_completion(fp32):
    messages = [{"role": "user", "content": "Name three colours."}]
    whole = asyncio.run(fp32.chat(messages, max_new_tokens=24))
    pieces = asyncio.run(_collect(fp32.chat_stream(messages, max_new_tokens=24)))
    assert len(pieces) > 3
    assert "".join(pieces).strip() == whole["text"].strip()
    assert whole["completion_tokens"] <= 24 and whole["prompt_tokens"] > 0


def test_a_consumer_that_stops_listening_stops_the_generation(fp32):
    async def first_pieces():
        stream = fp32.chat_stream([{"role": "user", "content": "Tell me a long story."}], max_new_tokens=400)
        pieces = []
        async for piece in stream:
            pieces.append(piece)
            if len(pieces) == 3:
                break
        await stream.aclose()
        return pieces

    t0 = time.perf_counter()
    assert len(asyncio.run(first_pieces())) == 3
    assert time.perf_counter() - t0 < 10, "400 tokens would take ~20 s; closing the stream ended it"


async def _collect(stream):
    return [piece async for piece in stream]


def test_a_prompt_starts_from_the_cache_of_what_it_shares_with_the_last_and_replies_the_same(fp32):
    uncached = HuggingFaceLLM(prefix_cache=False)
    system = {"role": "system", "content": DEFAULT_SYSTEM_PROMPT}
    for question in ("How many days are in a week?", "What is half of ten?"):
        messages = [system, {"role": "user", "content": question}]
        whole = asyncio.run(fp32.chat(messages, max_new_tokens=16))
        reference = asyncio.run(uncached.chat(messages, max_new_tokens=16))
        assert whole["text"] == reference["text"]
        assert reference["cached_prompt_tokens"] == 0
    # The second question shares the system prompt with the first, and only that.
    assert 30 <= whole["cached_prompt_tokens"] < whole["prompt_tokens"]
