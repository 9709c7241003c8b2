"""Batching, where models gain from it: turns asked at the same moment, handled one after another
against together in one batch, for the int4 LLM (decoding) and Whisper (speech-to-text).

    python -m bench.batching                      # 2 and 4 turns at once, 3 rounds, both models
    python -m bench.batching --turns 2 4 8 --rounds 5 --models stt

Each LLM round asks `turns` different questions at the same moment and times, per turn, the first
piece of text from the moment it was asked, and, over all, the tokens generated per second of wall
time. Each STT round hands `turns` spoken questions of the evaluation set to the component at once
and times each transcript and all of them. Figures are medians over the rounds, both ways measured
in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.report import machine, save_json
from deployments.llm.service import DEFAULT_SYSTEM_PROMPT, GenerationSettings

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


def stt_round(stt, utterances: list) -> dict[str, float]:
    """The utterances handed to the component at once: seconds to each transcript, and to all."""

    async def at_once() -> list[float]:
        t0 = time.perf_counter()

        async def one(audio) -> float:
            await stt.run({"audio": audio}, {})
            return time.perf_counter() - t0

        return await asyncio.gather(*(one(audio) for audio in utterances))

    times = asyncio.run(at_once())
    return {"transcript_s": statistics.median(times), "all_s": max(times)}


def bench_stt(turns_list: list[int], rounds: int, console: Console) -> list[dict]:
    from bench.eval_set import spoken_questions
    from deployments.stt.whisper import WhisperSpeechToText
    from omniwire.audio import decode

    spoken = [decode(wav).samples for _, wav in spoken_questions()]
    results = []
    for turns in turns_list:
        utterances = [spoken[i % len(spoken)] for i in range(turns)]
        for name, stt in (
            ("one at a time", WhisperSpeechToText(max_batch=1)),
            (f"batch of {turns}", WhisperSpeechToText(max_batch=turns)),
        ):
            stt_round(stt, utterances)  # warm-up
            measured = [stt_round(stt, utterances) for _ in range(rounds)]
            results.append(
                {
                    "model": "whisper tiny.en",
                    "turns": turns,
                    "way": name,
                    "transcript_s": round(statistics.median(r["transcript_s"] for r in measured), 3),
                    "all_s": round(statistics.median(r["all_s"] for r in measured), 3),
                }
            )
            console.print(results[-1])
    table = Table(title=f"Whisper tiny.en, utterances at once, median of {rounds}")
    for column in ("utterances at once", "transcribed", "each transcript (median)", "all transcripts"):
        table.add_column(column, justify="right")
    for row in results:
        table.add_row(str(row["turns"]), row["way"], f"{row['transcript_s']:.2f} s", f"{row['all_s']:.2f} s")
    console.print(table)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.batching", description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--models", nargs="+", choices=["llm", "stt"], default=["llm", "stt"])
    parser.add_argument("--out", type=Path, default=Path("bench-results/bench-batching.json"))
    args = parser.parse_args(argv)
    console = Console()
    stt = bench_stt(args.turns, args.rounds, console) if "stt" in args.models else []
    llm = bench_llm(args.turns, args.rounds, args.tokens, console) if "llm" in args.models else []
    save_json(args.out, {"machine": machine(), "results": llm, "stt": stt})
    console.print(f"written to {args.out}")


def bench_llm(turns_list: list[int], rounds: int, tokens: int, console: Console) -> list[dict]:
    from deployments.llm.onnx_genai import OnnxGenAILLM

    one_at_a_time = OnnxGenAILLM()
    results = []
    for turns in turns_list:
        batched = OnnxGenAILLM(max_batch=turns, batch_wait_s=0.05)
        for name, llm in (("one at a time", one_at_a_time), (f"batch of {turns}", batched)):
            round_at_once(llm, turns, tokens)  # warm-up
            measured = [round_at_once(llm, turns, tokens) for _ in range(rounds)]
            results.append(
                {
                    "turns": turns,
                    "way": name,
                    "first_piece_s": round(statistics.median(r["first_piece_s"] for r in measured), 3),
                    "tokens_per_s": round(statistics.median(r["tokens_per_s"] for r in measured), 1),
                }
            )
            console.print(results[-1])
        del batched

    table = Table(title=f"int4 LLM, turns asked at once, {tokens} new tokens at most, median of {rounds}")
    for column in ("turns at once", "decoded", "first piece (median of the turns)", "tokens/s overall"):
        table.add_column(column, justify="right")
    for row in results:
        table.add_row(str(row["turns"]), row["way"], f"{row['first_piece_s']:.2f} s", f"{row['tokens_per_s']:.1f}")
    console.print(table)
    return results


if __name__ == "__main__":
    main()
