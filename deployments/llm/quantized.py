"""A local Hugging Face LLM with quantized weights.

On CUDA, bitsandbytes 4-bit (NF4) or 8-bit. On the CPU, torch's dynamic int8 quantization of the
linear layers is the fastest: measured on 2 cores, 2.1x fp32 tokens/s against 1.8x for
bitsandbytes NF4 and 1.1x for its 8-bit (`python -m bench.llm` measures all of them on
the machine at hand).
"""

from __future__ import annotations

import warnings
from typing import Literal

from deployments.component import register
from deployments.llm.transformers_llm import HuggingFaceLLM

Quantization = Literal["auto", "int8_dynamic", "bnb_8bit", "bnb_4bit"]


def quantized_model(path, quantization: str, device: str, dtype):
    """Load the causal LM at `path` quantized as asked; `auto` picks the fastest for `device`."""
    import torch
    from transformers import AutoModelForCausalLM

    if quantization == "auto":
        quantization = "bnb_4bit" if device == "cuda" else "int8_dynamic"
    if quantization == "int8_dynamic":
        if device != "cpu":
            raise ValueError("int8_dynamic quantization runs on the CPU only; use bnb_4bit or bnb_8bit on CUDA")
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        with warnings.catch_warnings():
            # torch.ao's eager quantization is deprecated for torchao's quantize_, whose int8 configs
            # decode this model slower than fp32 on 2 cores (torchao 0.18, one run: 56 tokens/s here,
            # 20 with dynamic activations, 18 weight-only, fp32 26): kept while the pinned torch has it.
            warnings.filterwarnings("ignore", "torch.ao.quantization is deprecated", DeprecationWarning)
            warnings.filterwarnings("ignore", "torch.quantize_per_tensor, torch.quantize_per_channel", UserWarning)
            # Per-channel scales and an fp32 output head (tied to the embeddings): with one scale per
            # tensor, or a quantized head, the 135M model falls into repeating one sentence.
            qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
            linear = {
                name: qconfig
                for name, m in model.named_modules()
                if isinstance(m, torch.nn.Linear) and name != "lm_head"
            }
            return torch.ao.quantization.quantize_dynamic(model, linear, dtype=torch.qint8)
    from transformers import BitsAndBytesConfig

    config = (
        BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype)
        if quantization == "bnb_4bit"
        else BitsAndBytesConfig(load_in_8bit=True)
    )
    return AutoModelForCausalLM.from_pretrained(path, quantization_config=config, dtype=dtype, device_map=device)


@register("quantized_llm")
class QuantizedLLM(HuggingFaceLLM):
    class Options(HuggingFaceLLM.Options):
        quantization: Quantization = "auto"

    def load_model(self, path, dtype):
        return quantized_model(path, self.options.quantization, self.device, dtype)

    def describe(self):
        return {**super().describe(), "quantization": self.options.quantization}
