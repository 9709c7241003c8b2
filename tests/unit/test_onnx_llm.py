"""The int4 onnxruntime-genai LLM answers for real, streams token by token, stops when told; its bundled
model is only built from parts that are all there and add up to the pinned checksum."""

import asyncio
import hashlib
import threading
import time

import pytest

from deployments.bundled import SplitGGUF, assemble_parts, onnx_llm_model_dir, split_gguf_parts
from deployments.kinds import FIRST_CHUNK_WORDS
from deployments.llm.onnx_genai import OnnxGenAILLM
from deployments.llm.service import DEFAULT_SYSTEM_PROMPT, GenerationSettings, LLMParams
from deployments.sentences import SentenceAggregator

PROFILE_FIELDS = {"model", "provider", "prompt_tokens", "completion_tokens", "tokens_per_s", "ttft_s"}


@pytest.fixture(scope="module")
def llm():
    return OnnxGenAILLM()


def chat(question: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": DEFAULT_SYSTEM_PROMPT}, {"role": "user", "content": question}]


def test_streams_a_sensible_reply_piece_by_piece(llm):
    *pieces, profile = llm.stream(chat("What is the capital city of France?"), GenerationSettings(), threading.Event())
    assert len(pieces) > 3 and all(isinstance(piece, str) and piece for piece in pieces)
    assert "paris" in "".join(pieces).lower()
    assert profile.keys() >= PROFILE_FIELDS
    assert profile["model"] == "qwen2.5-coder-0.5b-instruct" and profile["provider"] == "cpu"
    assert 0 < profile["completion_tokens"] <= 64 and profile["prompt_tokens"] > 20
    assert profile["ttft_s"] > 0 and profile["tokens_per_s"] > 0


def test_setting_stop_ends_the_reply_within_a_token(llm):
    stop = threading.Event()
    pieces = []
    for piece in llm.stream(chat("Tell me a long story about a dragon."), GenerationSettings(max_new_tokens=300), stop):
        if isinstance(piece, dict):
            profile = piece
        else:
            pieces.append(piece)
            stop.set()
    assert len(pieces) == 1
    assert profile["completion_tokens"] <= 2


def test_the_stage_answers_and_a_closed_stream_frees_the_model(llm):
    async def first_piece_then_close():
        stream = llm.chat_stream([{"role": "user", "content": "Tell me a long story."}], max_new_tokens=300)
        piece = await anext(stream)
        await stream.aclose()
        return piece

    assert asyncio.run(first_piece_then_close())
    # The abandoned generation released its lock: the next request runs.
    question = {"transcript": "What is the capital city of France?"}
    out = asyncio.run(llm.run(question, {"prompt_template": "{transcript}"}))
    assert "paris" in out.outputs["reply_text"].lower()
    assert out.result_profile.keys() >= PROFILE_FIELDS


def test_the_kept_cache_reads_only_what_is_new_and_answers_as_a_fresh_generator(llm):
    # A prompt that does not fit this one's kept generator gets one of its own, with nothing cached;
    # this one generates in the replica's own process.
    uncached = OnnxGenAILLM(context_tokens=60, own_process=False)
    settings = GenerationSettings(max_new_tokens=24)
    follow_up = [*chat("What is the capital city of France?")]
    follow_up += [{"role": "assistant", "content": "Paris."}, {"role": "user", "content": "And of Italy?"}]
    for messages in (chat("How many days are in a week?"), chat("What is half of ten?"), follow_up):
        text, profile = llm.generate(messages, settings)
        reference, reference_profile = uncached.generate(messages, settings)
        assert text == reference
        assert reference_profile["cached_prompt_tokens"] == 0
        # At least the system prompt was read before, by the warm-up or the question before.
        assert 30 <= profile["cached_prompt_tokens"] < profile["prompt_tokens"]
    assert "rome" in text.lower()


HISTORY = [
    {"role": "user", "content": "What is the capital city of France?"},
    {"role": "assistant", "content": "The capital city of France is Paris."},
    {"role": "user", "content": "What is a famous museum there?"},
    {"role": "assistant", "content": "The Louvre is a famous museum in Paris."},
]


def test_a_turn_prepared_while_the_person_speaks_reads_only_their_words_and_answers_the_same(llm):
    local = OnnxGenAILLM(own_process=False)
    question = local.messages({"history": HISTORY, "transcript": "When does it open?"}, LLMParams())
    settings = GenerationSettings(max_new_tokens=24)
    reference, cold = local.generate(question, settings)

    local.generate(chat("What is half of ten?"), settings)  # another conversation's turn takes the cache
    asyncio.run(local.prepare({"history": HISTORY}, {}))
    text, warm = local.generate(question, settings)
    assert text == reference
    assert cold["prompt_tokens"] - cold["cached_prompt_tokens"] > 40, "without it the history is read in the turn"
    assert warm["prompt_tokens"] - warm["cached_prompt_tokens"] <= 16, "only the question is left to read"

    # In a generation process the read-ahead gives way to a request that arrives meanwhile: same reply.
    llm.generate(chat("What is half of ten?"), settings)
    asyncio.run(llm.prepare({"history": HISTORY}, {}))
    assert llm.generate(question, settings)[0] == reference
    assert not llm.busy


def test_findings_before_the_words_keep_the_history_cached_when_the_emotion_changes():
    local = OnnxGenAILLM(own_process=False)
    history_tokens = len(local._generation._encode([{"role": "system", "content": "x"}, *HISTORY], reply=False))
    read = {}
    for findings in ("in_system_prompt", "before_words"):
        for label in ("sad", "happy"):
            inputs = {"history": HISTORY, "transcript": "When does it open?", "emotion": {"label": label}}
            messages = local.messages(inputs, LLMParams(findings=findings))
            text, profile = local.generate(messages, GenerationSettings(max_new_tokens=8))
            assert text.strip()
        read[findings] = profile["prompt_tokens"] - profile["cached_prompt_tokens"]
    # In the system prompt a new emotion has the history read again; before the words, it stays cached.
    assert read["in_system_prompt"] >= read["before_words"] + history_tokens - 10, (read, history_tokens)


def test_a_generation_process_that_dies_fails_its_request_and_the_next_starts_a_new_one(llm):
    pieces = llm.stream(
        chat("Tell me a long story about a dragon."), GenerationSettings(max_new_tokens=300), threading.Event()
    )
    assert isinstance(next(pieces), str)
    llm._generation._proc.kill()
    with pytest.raises(RuntimeError, match=r"the LLM's generation process exited \(code -9\)"):
        list(pieces)
    assert not llm.busy, "the failed request freed the model"
    text, profile = llm.generate(chat("What is the capital city of France?"), GenerationSettings())
    assert "paris" in text.lower() and profile["completion_tokens"] > 0


def test_turns_asked_together_are_decoded_in_one_batch_and_stop_on_their_own():
    batched = OnnxGenAILLM(max_batch=2, batch_wait_s=0.5)
    story, capital = chat("Tell me a long story about a dragon."), chat("What is the capital city of France?")
    stop_story = threading.Event()
    results = {}

    def ask(name, messages, stop):
        pieces = []
        for item in batched.stream(messages, GenerationSettings(max_new_tokens=48), stop):
            if isinstance(item, dict):
                results[name] = ("".join(pieces), item)
            else:
                pieces.append(item)
                if name == "story" and len(pieces) == 3:
                    stop.set()

    threads = [
        threading.Thread(target=ask, args=("story", story, stop_story)),
        threading.Thread(target=ask, args=("capital", capital, threading.Event())),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    (_, story_profile), (capital_text, capital_profile) = results["story"], results["capital"]
    assert story_profile["batch_size"] == capital_profile["batch_size"] == 2
    assert story_profile["completion_tokens"] <= 6, "the stopped turn ended within a few steps"
    assert "paris" in capital_text.lower() and capital_profile["completion_tokens"] > 5, "the other went on"
    assert not batched.busy
    # Alone, a turn decodes as it does without batching, from the kept prompt cache.
    text, profile = batched.generate(capital, GenerationSettings(max_new_tokens=48))
    assert "batch_size" not in profile and profile["cached_prompt_tokens"] > 0 and "paris" in text.lower()


def test_sampling_with_a_temperature_still_answers(llm):
    text, profile = llm.generate(chat("Name a colour."), GenerationSettings(max_new_tokens=16, temperature=0.7))
    assert text.strip() and profile["completion_tokens"] <= 16


def test_a_corrupt_part_fails_the_checksum_and_leaves_no_file(tmp_path):
    parts = [tmp_path / "part01.bin", tmp_path / "part02.bin"]
    parts[0].write_bytes(b"GGUF first half,")
    parts[1].write_bytes(b" second half")
    expected = hashlib.sha256(b"GGUF first half, second half").hexdigest()
    target = tmp_path / "model.gguf"
    assemble_parts(parts, expected, target)
    assert target.read_bytes() == b"GGUF first half, second half"

    target.unlink()
    parts[1].write_bytes(b" second hal!")
    with pytest.raises(RuntimeError, match=rf"wrong sha256 \(expected {expected}, got [0-9a-f]{{64}}\)"):
        assemble_parts(parts, expected, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part01.bin", "part02.bin"]


def test_parts_come_in_package_order_and_a_missing_package_is_named(tmp_path, monkeypatch):
    for i in (1, 2):
        data = tmp_path / f"fake_llm_part{i}" / "data"
        data.mkdir(parents=True)
        (data.parent / "__init__.py").touch()
        (data / f"part{i:02d}.bin").write_bytes(b"x")
    monkeypatch.syspath_prepend(str(tmp_path))
    two = split_gguf_parts(SplitGGUF("fake-llm-part", 2, "0" * 64))
    assert [p.name for p in two] == ["part01.bin", "part02.bin"]
    missing = "'fake_llm_part3' is not installed: pip install fake-llm-part1 fake-llm-part2 fake-llm-part3"
    with pytest.raises(RuntimeError, match=missing):
        split_gguf_parts(SplitGGUF("fake-llm-part", 3, "0" * 64))


def test_a_local_onnxruntime_genai_directory_is_taken_as_the_model(tmp_path):
    with pytest.raises(ValueError, match="nor a local onnxruntime-genai model directory"):
        onnx_llm_model_dir(str(tmp_path))
    (tmp_path / "genai_config.json").write_text("{}")
    assert onnx_llm_model_dir(str(tmp_path)) == tmp_path


@pytest.mark.parametrize("cancellations", [1, 2])
def test_a_barge_in_while_a_token_is_awaited_cancels_cleanly_and_frees_the_model(llm, cancellations):
    """The graph cancels the LLM stage while it waits for the next token (a barge-in), once or, as
    Serve may while the stage is stopping, twice: the stage ends cancelled, never with another error,
    and the model is free by then."""
    story = {"transcript": "Tell me a long story about a dragon and a knight."}

    async def barge_in():
        stream = llm.run_stream(story, {"prompt_template": "{transcript}", "max_new_tokens": 200})
        assert isinstance(await anext(stream), str)
        waiting = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.01)
        assert not waiting.done(), "the consumer is inside the wait for a token"
        for _ in range(cancellations):
            waiting.cancel()
            await asyncio.sleep(0)
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert not llm.busy, "the generation ended before the stage did"
        with pytest.raises(StopAsyncIteration):
            await anext(stream)
        return await llm.run({"transcript": "What is the capital city of France?"}, {"prompt_template": "{transcript}"})

    assert "paris" in asyncio.run(barge_in()).outputs["reply_text"].lower()


def test_generation_steps_aside_once_the_first_words_are_out_and_a_stop_wakes_it():
    # A pause of 2 s: a token's time, even on a busy machine, stays well clear of it on either side.
    llm = OnnxGenAILLM(first_words_pause_s=2.0)
    question = chat("Tell me a long story about a dragon.")
    arrivals, first_chunk_at = [], None
    words = SentenceAggregator(first_words=FIRST_CHUNK_WORDS)
    for piece in llm.stream(question, GenerationSettings(max_new_tokens=24), threading.Event()):
        if isinstance(piece, str):
            arrivals.append(time.perf_counter())
            if first_chunk_at is None and words.push(piece):
                first_chunk_at = len(arrivals) - 1
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    assert gaps[first_chunk_at] >= 1.9, "a pause right after the piece that completes the first words"
    assert max(gaps[:first_chunk_at] + gaps[first_chunk_at + 1 :]) < 1.5, "and nowhere else"

    stop = threading.Event()
    words = SentenceAggregator(first_words=FIRST_CHUNK_WORDS)
    for piece in llm.stream(question, GenerationSettings(max_new_tokens=24), stop):
        if isinstance(piece, str) and words.push(piece):
            stop.set()
            stopped = time.perf_counter()
    assert time.perf_counter() - stopped < 1.0, "a stop during the 2 s pause ends the reply at once"
