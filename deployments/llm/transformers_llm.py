"""Local Hugging Face causal LM with its chat template.

The KV cache of the last prompt is kept: the next prompt starts from a copy of the part both share
(the system prompt, a track's earlier turns) and reads only the rest, as transformers' prompt reuse
does. Each generation gets its own copy, so concurrent requests stay independent.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Iterator
from typing import Any, Literal

from deployments.bundled import SMOLLM2, llm_model_dir
from deployments.component import StrictModel, auto_device, register
from deployments.llm.service import GenerationSettings, LLMService, reusable_prefix


def _cut(cache: Any, length: int) -> None:
    """Keep the cache's first `length` tokens (crop takes how many to remove, as a negative number)."""
    cache.crop(min(0, length - cache.get_seq_length()))


@register("hf_llm")
class HuggingFaceLLM(LLMService):
    class Options(StrictModel):
        model: str = SMOLLM2
        device: Literal["auto", "cpu", "cuda"] = "auto"
        dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
        max_new_tokens: int = 48
        # Small models loop on a phrase without it.
        repetition_penalty: float = 1.2
        # Start each prompt from the cached KV of what it shares with the last one.
        prefix_cache: bool = True

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        import torch
        from transformers import AutoTokenizer

        opts = self.options
        device = opts.device
        if device == "auto":
            device = auto_device(torch.cuda.is_available())
        dtype = opts.dtype
        if dtype == "auto":
            dtype = "float16" if device == "cuda" else "float32"
        path = llm_model_dir(opts.model)
        self.device = device
        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = self.load_model(path, getattr(torch, dtype))
        self.model.eval()
        # The last prompt's token ids and their KV cache; read and replaced under the lock.
        self._kept_lock = threading.Lock()
        self._kept_ids: list[int] = []
        self._kept_cache: Any = None

    def load_model(self, path, dtype):
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(self.device)

    def _generation(self, messages: list[dict[str, str]], settings: GenerationSettings) -> dict[str, Any]:
        inputs = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        ).to(self.device)
        sampling = (
            {"do_sample": True, "temperature": settings.temperature}
            if settings.temperature > 0
            else {"do_sample": False}
        )
        return {
            **inputs,
            **self._cached_prefix(inputs["input_ids"][0].tolist()),
            "max_new_tokens": settings.max_new_tokens or self.options.max_new_tokens,
            "repetition_penalty": self.options.repetition_penalty,
            "pad_token_id": self.tokenizer.eos_token_id,
            **sampling,
        }

    def _cached_prefix(self, prompt_ids: list[int]) -> dict[str, Any]:
        """generate()'s `cache`: a copy of the kept cache cut to the prefix this prompt shares."""
        if not self.options.prefix_cache:
            return {}
        with self._kept_lock:
            shared = reusable_prefix(self._kept_ids, prompt_ids)
            if shared == 0 or self._kept_cache is None:
                return {}
            cache = copy.deepcopy(self._kept_cache)
        _cut(cache, shared)
        return {"cache": cache}

    def _keep(self, kwargs: dict[str, Any], cache: Any) -> None:
        """Keep this prompt's cache (without the reply) for the next prompt."""
        if not self.options.prefix_cache or cache is None:
            return
        prompt_ids = kwargs["input_ids"][0].tolist()
        _cut(cache, len(prompt_ids))
        with self._kept_lock:
            self._kept_ids, self._kept_cache = prompt_ids, cache

    @staticmethod
    def _cached_tokens(kwargs: dict[str, Any]) -> int:
        cache = kwargs.get("cache")
        return int(cache.get_seq_length()) if cache is not None else 0

    def generate(self, messages: list[dict[str, str]], settings: GenerationSettings) -> tuple[str, dict[str, Any]]:
        kwargs = self._generation(messages, settings)
        cached = self._cached_tokens(kwargs)
        t0 = time.perf_counter()
        with self._torch.inference_mode():
            out = self.model.generate(**kwargs, return_dict_in_generate=True)
        elapsed = time.perf_counter() - t0
        self._keep(kwargs, out.cache)
        out = out.sequences
        prompt_tokens = kwargs["input_ids"].shape[1]
        new_tokens = out[0, prompt_tokens:]
        text = self.tokenizer.decode(new_tokens, skip_special_tokens=True)
        return text, {
            **self.describe(),
            "prompt_tokens": int(prompt_tokens),
            "cached_prompt_tokens": cached,
            "completion_tokens": int(new_tokens.shape[0]),
            "max_new_tokens": kwargs["max_new_tokens"],
            "tokens_per_s": round(new_tokens.shape[0] / elapsed, 1) if elapsed > 0 else None,
        }

    def describe(self) -> dict[str, Any]:
        """What every profile of this model says about it."""
        return {"model": self.options.model, "device": self.device}

    def stream(
        self, messages: list[dict[str, str]], settings: GenerationSettings, stop: threading.Event
    ) -> Iterator[str | dict[str, Any]]:
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        class _Stop(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs) -> bool:
                return stop.is_set()

        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs = self._generation(messages, settings)
        cached = self._cached_tokens(kwargs)
        failed: list[BaseException] = []

        def run() -> None:
            try:
                with self._torch.inference_mode():
                    out = self.model.generate(
                        **kwargs,
                        streamer=streamer,
                        stopping_criteria=StoppingCriteriaList([_Stop()]),
                        return_dict_in_generate=True,
                    )
                self._keep(kwargs, out.cache)
            except BaseException as exc:  # handed to the consumer, who would otherwise wait forever
                failed.append(exc)
                streamer.end()

        worker = threading.Thread(target=run, name="llm-stream", daemon=True)
        t0 = time.perf_counter()
        worker.start()
        try:
            pieces = []
            for piece in streamer:
                pieces.append(piece)
                yield piece
            if failed:
                raise failed[0]
        finally:
            stop.set()
            worker.join()
        elapsed = time.perf_counter() - t0
        completion = len(self.tokenizer("".join(pieces), add_special_tokens=False)["input_ids"])
        yield {
            **self.describe(),
            "prompt_tokens": int(kwargs["input_ids"].shape[1]),
            "cached_prompt_tokens": cached,
            "completion_tokens": completion,
            "tokens_per_s": round(completion / elapsed, 1) if elapsed > 0 else None,
        }
