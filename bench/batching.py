"""Batched decoding of the int4 LLM: turns asked at the same moment, decoded one after another (the
default on the CPU) against together in one batch.

    python -m bench.batching                      # 2 and 4 turns at once, 3 rounds
    python -m bench.batching --turns 2 4 8 --rounds 5

Each round asks `turns` different questions at the same moment and times, per turn, the first piece
of text from the moment it was asked, and, over all, the tokens generated per second of wall time.
Figures are medians over the rounds, both ways measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.report import machine, save_json
from deployments.llm_service import DEFAULT_SYSTEM_PROMPT, GenerationSettings

QUESTIONS = [
    "What is the capital city of France?",
    "How do I boil an egg?",
    "Tell me a fun fact about cats.",
    "What should I cook for dinner tonight?",
    "Why is the sky blue?",
    "How far away is the moon?",
    "Can you recommend a good book?",
    "How can I sleep better?",
]


def round_at_once(llm, turns: int, tokens: int) -> dict[str, float]:
    """`turns` questions asked together; first piece per turn and tokens per second overall."""
    first: list[float] = []
    generated: list[int] = []
    start = threading.Barrier(turns + 1)

    def ask(question: str) -> None:
        messages = [{"role": "system", "content": DEFAULT_SYSTEM_PROMPT}, {"role": "user", "content": question}]
        start.wait()
        t0 = time.perf_counter()
        seen = None
        for item in llm.stream(messages, GenerationSettings(max_new_tokens=tokens), threading.Event()):
            if isinstance(item, dict):
                generated.append(item["completion_tokens"])
            elif seen is None:
                seen = time.perf_counter() - t0
                first.append(seen)

    threads = [threading.Thread(target=ask, args=(QUESTIONS[i % len(QUESTIONS)],)) for i in range(turns)]
    for thread in threads:
        thread.start()
    start.wait()
    t0 = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - t0
    return {"first_piece_s": statistics.median(first), "tokens_per_s": sum(generated) / wall}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.batching", description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--out", type=Path, default=Path("bench-results/bench-batching.json"))
    args = parser.parse_args(argv)
    from deployments.onnx_llm import OnnxGenAILLM

    console = Console()
    one_at_a_time = OnnxGenAILLM()
    results = []
    for turns in args.turns:
        batched = OnnxGenAILLM(max_batch=turns, batch_wait_s=0.05)
        for name, llm in (("one at a time", one_at_a_time), (f"batch of {turns}", batched)):
            round_at_once(llm, turns, args.tokens)  # warm-up
            rounds = [round_at_once(llm, turns, args.tokens) for _ in range(args.rounds)]
            results.append(
                {
                    "turns": turns,
                    "way": name,
                    "first_piece_s": round(statistics.median(r["first_piece_s"] for r in rounds), 3),
                    "tokens_per_s": round(statistics.median(r["tokens_per_s"] for r in rounds), 1),
                }
            )
            console.print(results[-1])
        del batched

    table = Table(title=f"int4 LLM, turns asked at once, {args.tokens} new tokens at most, median of {args.rounds}")
    for column in ("turns at once", "decoded", "first piece (median of the turns)", "tokens/s overall"):
        table.add_column(column, justify="right")
    for row in results:
        table.add_row(str(row["turns"]), row["way"], f"{row['first_piece_s']:.2f} s", f"{row['tokens_per_s']:.1f}")
    console.print(table)
    save_json(args.out, {"machine": machine(), "results": results})
    console.print(f"written to {args.out}")


if __name__ == "__main__":
    main()
