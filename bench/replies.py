"""Do the replies answer, and honestly? The evaluation set's questions as text (so speech-to-text is out of
it) put to each local LLM, with last round's voice prompt and with today's, each reply scored by the rubric
(bench/rubric.py): facts right, requests it cannot honour answered honestly, everyday questions.

    python -m bench.replies                              # every variant
    python -m bench.replies --variants 1.5b-int4 1.5b-int8-transformers

Writes bench-results/replies.json and replies.md (the replies side by side).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.answers import Answered, answer_summary, describe
from bench.eval_set import KINDS, load_eval_set, recordings
from deployments.bundled import QWEN_05B, QWEN_15B, SMOLLM2
from deployments.llm.service import DEFAULT_SYSTEM_PROMPT, GenerationSettings
from deployments.sentences import trim_to_sentence

# Last round's voice prompt: short replies, nothing on what the assistant cannot know or do.
LAST_ROUND_PROMPT = (
    "You are a helpful voice assistant. Answer in one or two short spoken sentences: plain words, no lists, "
    "markdown, emojis or links."
)


def _onnx(model: str) -> Callable[[], Any]:
    def build():
        from deployments.llm.onnx_genai import OnnxGenAILLM

        return OnnxGenAILLM(model=model)

    return build


def _quantized(model: str) -> Callable[[], Any]:
    def build():
        from deployments.llm.quantized import QuantizedLLM

        return QuantizedLLM(model=model, repetition_penalty=1.0)

    return build


def _hf(model: str) -> Callable[[], Any]:
    def build():
        from deployments.llm.transformers_llm import HuggingFaceLLM

        return HuggingFaceLLM(model=model)

    return build


# name: (how to build the model, the system prompt)
VARIANTS: dict[str, tuple[Callable[[], Any], str]] = {
    "0.5b-int4-last-round-prompt": (_onnx(QWEN_05B), LAST_ROUND_PROMPT),
    "0.5b-int4": (_onnx(QWEN_05B), DEFAULT_SYSTEM_PROMPT),
    "1.5b-int4-last-round-prompt": (_onnx(QWEN_15B), LAST_ROUND_PROMPT),
    "1.5b-int4": (_onnx(QWEN_15B), DEFAULT_SYSTEM_PROMPT),
    "1.5b-int8-transformers": (_quantized(QWEN_15B), DEFAULT_SYSTEM_PROMPT),
    "smollm2-135m": (_hf(SMOLLM2), DEFAULT_SYSTEM_PROMPT),
}


def ask(llm: Any, system_prompt: str, question: str) -> tuple[str, float]:
    t0 = time.perf_counter()
    text, _ = llm.generate(
        [{"role": "system", "content": system_prompt}, {"role": "user", "content": question}], GenerationSettings()
    )
    return trim_to_sentence(text.strip()), time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.replies", description=__doc__.split("\n")[0])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    args = parser.parse_args(argv)
    console = Console()
    # One voice stands for the text: these answers are to what was said, not to what was heard.
    the_set = load_eval_set()
    said = recordings(the_set, voices=[the_set.voices[0].id], kinds=args.kinds)
    results: dict[str, Any] = {}
    for name in args.variants:
        build, system_prompt = VARIANTS[name]
        llm = build()
        replies, seconds = [], []
        for one in said:
            reply, took = ask(llm, system_prompt, one.text)
            replies.append(reply)
            seconds.append(took)
        summary = answer_summary([Answered(one, one.text, reply) for one, reply in zip(said, replies, strict=True)])
        results[name] = {"summary": {**summary, "seconds_per_reply": sum(seconds) / len(seconds)}, "replies": replies}
        console.print(f"{name}: {describe(summary)}, {sum(seconds) / len(seconds):.2f} s a reply")
        del llm

    table = Table(title=f"{len(said)} questions as text")
    for column in ("variant", "facts right", "cannot-dos honest", "everyday rubric", "s a reply"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for name, result in results.items():
        s = result["summary"]
        table.add_row(
            name,
            f"{s['fact']['right']}/{s['fact']['of']}" if s["fact"]["of"] else "",
            f"{s['cannot']['honest']}/{s['cannot']['of']}" if s["cannot"]["of"] else "",
            f"{s['everyday']['total']:.2f}" if s["everyday"]["replies"] else "",
            f"{s['seconds_per_reply']:.2f}",
        )
    console.print(table)

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "replies.json").write_text(
        json.dumps({"questions": [one.text for one in said], "results": results}, indent=2)
    )
    names = list(results)
    lines = ["| question | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for i, one in enumerate(said):
        cells = [results[n]["replies"][i].replace("|", "/").replace("\n", " ") for n in names]
        lines.append(f"| {one.text} | " + " | ".join(cells) + " |")
    (args.out / "replies.md").write_text("\n".join(lines) + "\n")
    console.print(f"written to {args.out / 'replies.json'} and replies.md")


if __name__ == "__main__":
    main()
