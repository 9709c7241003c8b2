"""Tokens per second of the local LLM in fp32 and each quantization, same prompt, same length.

    python -m bench.llm                     # all variants the device supports
    python -m bench.llm --variants fp32 int8_dynamic --runs 5

Each variant generates exactly --tokens new tokens, greedy, --runs times after one warm-up; the
figures are medians, and ratios are against fp32 measured in the same run.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.report import machine, save_json
from deployments.bundled import SMOLLM2, llm_model_dir
from deployments.llm.service import DEFAULT_SYSTEM_PROMPT

VARIANTS = ("fp32", "int8_dynamic", "bnb_8bit", "bnb_4bit")
PROMPT = "Tell me something interesting about the ocean."


def load(variant: str, path: Path, device: str):
    import torch
    from transformers import AutoModelForCausalLM

    from deployments.llm.quantized import quantized_model

    dtype = torch.float16 if device == "cuda" else torch.float32
    if variant == "fp32":
        return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(device)
    return quantized_model(path, variant, device, dtype)


def measure(model, tokenizer, device: str, tokens: int, runs: int) -> dict:
    import torch

    messages = [{"role": "system", "content": DEFAULT_SYSTEM_PROMPT}, {"role": "user", "content": PROMPT}]
    inputs = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    ).to(device)
    settings = {
        "max_new_tokens": tokens,
        "min_new_tokens": tokens,
        "do_sample": False,
        "pad_token_id": tokenizer.eos_token_id,
    }
    rates = []
    with torch.inference_mode():
        model.generate(**inputs, **settings)
        for _ in range(runs):
            t0 = time.perf_counter()
            out = model.generate(**inputs, **settings)
            rates.append(tokens / (time.perf_counter() - t0))
    text = tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    return {"tokens_per_s": statistics.median(rates), "runs": rates, "sample": text}


def main(argv: list[str] | None = None) -> None:
    import torch
    from transformers import AutoTokenizer

    parser = argparse.ArgumentParser(prog="python -m bench.llm", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=SMOLLM2)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench-results/bench-llm.json"))
    args = parser.parse_args(argv)
    console = Console()
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)

    device = "cuda" if torch.cuda.is_available() else "cpu"
    path = llm_model_dir(args.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    results = {}
    for variant in args.variants:
        if variant == "int8_dynamic" and device != "cpu":
            continue
        with console.status(f"{variant}: loading and generating"):
            t0 = time.perf_counter()
            model = load(variant, path, device)
            load_s = time.perf_counter() - t0
            results[variant] = {"load_s": load_s, **measure(model, tokenizer, device, args.tokens, args.runs)}
            del model

    base = results.get("fp32", {}).get("tokens_per_s")
    table = Table(title=f"{args.model} on {device}: {args.tokens} tokens, median of {args.runs}")
    for column in ("variant", "tokens/s", "vs fp32", "load s", "sample"):
        table.add_column(column, justify="left" if column in ("variant", "sample") else "right")
    for variant, r in results.items():
        ratio = f"{r['tokens_per_s'] / base:.2f}x" if base else "-"
        table.add_row(variant, f"{r['tokens_per_s']:.1f}", ratio, f"{r['load_s']:.1f}", r["sample"][:60])
    console.print(table)

    save_json(
        args.out,
        {
            "model": args.model,
            "device": device,
            "tokens": args.tokens,
            "prompt": PROMPT,
            "machine": machine(gpu=torch.cuda.get_device_name() if device == "cuda" else None),
            "results": results,
        },
    )
    console.print(f"written to {args.out}")


if __name__ == "__main__":
    main()
