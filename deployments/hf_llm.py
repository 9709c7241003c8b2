"""Local Hugging Face causal LM with its chat template."""

from __future__ import annotations

import time
from typing import Any, Literal

from deployments.base import StrictModel, auto_device, register
from deployments.bundled import SMOLLM2, llm_model_dir
from deployments.llm_service import LLMParams, LLMService


@register("hf_llm")
class HuggingFaceLLM(LLMService):
    class Options(StrictModel):
        model: str = SMOLLM2
        device: Literal["auto", "cpu", "cuda"] = "auto"
        dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
        max_new_tokens: int = 48
        # Small models loop on a phrase without it.
        repetition_penalty: float = 1.2

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

    def load_model(self, path, dtype):
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(self.device)

    def generate(self, messages: list[dict[str, str]], params: LLMParams) -> tuple[str, dict[str, Any]]:
        inputs = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        ).to(self.device)
        max_new = params.max_new_tokens or self.options.max_new_tokens
        sampling = {"do_sample": True, "temperature": params.temperature} if params.temperature > 0 else {"do_sample": False}
        t0 = time.perf_counter()
        with self._torch.inference_mode():
            out = self.model.generate(
                **inputs,
                max_new_tokens=max_new,
                repetition_penalty=self.options.repetition_penalty,
                pad_token_id=self.tokenizer.eos_token_id,
                **sampling,
            )
        elapsed = time.perf_counter() - t0
        new_tokens = out[0, inputs["input_ids"].shape[1]:]
        text = self.tokenizer.decode(new_tokens, skip_special_tokens=True)
        return text, {
            "model": self.options.model,
            "device": self.device,
            "prompt_tokens": int(inputs["input_ids"].shape[1]),
            "completion_tokens": int(new_tokens.shape[0]),
            "tokens_per_s": round(new_tokens.shape[0] / elapsed, 1) if elapsed > 0 else None,
        }
