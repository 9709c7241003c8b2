"""Which ear? Every speech-to-text candidate over the evaluation set's recordings, in this process: word
error rate per voice and over the accented voices (every voice but the Piper one the assistant speaks
with), and seconds per recording.

    python -m bench.speech_to_text                                   # every candidate, facts and cannot-dos
    python -m bench.speech_to_text --candidates tiny.en-beam5 base-beam5 --kinds fact cannot everyday

A candidate is a speech-to-text component with its options and parameters, as a cluster would name it in
configs/clusters.yaml. Writes bench-results/speech_to_text.json and speech_to_text.md.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.answers import wer_per_voice
from bench.eval_set import KINDS, load_eval_set, recordings, synthesize
from bench.report import machine, save_json, word_errors
from omniwire.audio import decode


@dataclass(frozen=True)
class Candidate:
    name: str
    component: str
    options: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    # What the assistant said just before, as a live turn gives it (Whisper's prompt): an earlier reply on
    # another subject, the usual case, must not make the question harder to hear.
    last_reply: str | None = None


EARLIER_REPLY = "Sure. A good cup of tea starts with freshly boiled water; let it steep for three to five minutes."


CANDIDATES = [
    Candidate("tiny.en-10s-greedy", "whisper_stt", {"model": "tiny.en", "short_context": True}),
    Candidate("tiny.en-10s-beam5", "whisper_stt", {"model": "tiny.en", "short_context": True}, {"beam_size": 5}),
    Candidate(
        "tiny.en-10s-beam5-after-reply",
        "whisper_stt",
        {"model": "tiny.en", "short_context": True},
        {"beam_size": 5, "last_reply_as_prompt": True},
        last_reply=EARLIER_REPLY,
    ),
    Candidate("tiny.en-greedy", "whisper_stt", {"model": "tiny.en", "short_context": False}),
    Candidate(
        "tiny.en-beam5-untrimmed",
        "whisper_stt",
        {"model": "tiny.en", "short_context": False},
        {"beam_size": 5, "vad_filter": False},
    ),
    Candidate("tiny.en-beam5", "whisper_stt", {"model": "tiny.en", "short_context": False}, {"beam_size": 5}),
    Candidate("base-greedy", "whisper_stt", {"model": "base", "short_context": False}),
    Candidate("base-10s-beam5", "whisper_stt", {"model": "base", "short_context": True}, {"beam_size": 5}),
    Candidate("base-beam5", "whisper_stt", {"model": "base", "short_context": False}, {"beam_size": 5}),
    Candidate(
        "base-beam5-prompt",
        "whisper_stt",
        {"model": "base", "short_context": False},
        {"beam_size": 5, "prompt": "A person asks a voice assistant a question."},
    ),
    Candidate("moonshine-tiny", "moonshine_stt", {"model": "tiny-en"}),
]


def measure(candidate: Candidate, said: list[Any], audios: list[Any]) -> dict[str, Any]:
    from deployments.component import components

    component = components()[candidate.component](**candidate.options)
    params = component.Params.model_validate(candidate.params)
    history = [{"role": "assistant", "content": candidate.last_reply}] if candidate.last_reply else []
    context = component.context({"history": history}, params)
    heard, seconds = [], []
    for audio in audios:
        t0 = time.perf_counter()
        speech = component.speech(audio, params)
        text = "" if speech is None else component.transcribe(speech, params, context)[0]
        seconds.append(time.perf_counter() - t0)
        heard.append(text)
    del component
    # Accented: every voice but the clean Piper one the assistant itself speaks with.
    hard = [i for i, s in enumerate(said) if not (s.voice.engine == "piper" and s.voice.channel == "clean")]
    return {
        "candidate": candidate.__dict__,
        "wer_accented": word_errors([said[i].text for i in hard], [heard[i] for i in hard])["wer"] if hard else None,
        "wer_all": word_errors([s.text for s in said], heard)["wer"],
        "wer_per_voice": wer_per_voice(said, heard),
        "seconds": {"median": statistics.median(seconds), "p95": sorted(seconds)[int(0.95 * (len(seconds) - 1))]},
        "heard": [{"id": s.id, "reference": s.text, "heard": h} for s, h in zip(said, heard, strict=True)],
    }


def main(argv: list[str] | None = None) -> None:
    names = [c.name for c in CANDIDATES]
    parser = argparse.ArgumentParser(prog="python -m bench.speech_to_text", description=__doc__.split("\n")[0])
    parser.add_argument("--candidates", nargs="+", choices=names, default=names)
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=["fact", "cannot"])
    parser.add_argument("--voices", nargs="+", metavar="VOICE", help="voice ids (default: every voice)")
    parser.add_argument("--every", type=int, default=1, metavar="N", help="every Nth question only (default: all)")
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    args = parser.parse_args(argv)
    console = Console()
    said = recordings(load_eval_set(), args.voices, args.kinds)
    keep = set(list(dict.fromkeys(s.question.id for s in said))[:: args.every])
    said = [s for s in said if s.question.id in keep]
    with console.status(f"speaking {len(said)} recordings"):
        audios = [decode(synthesize(s)).samples for s in said]
    console.print(f"{len(said)} recordings, {len(keep)} questions")
    results = []
    for candidate in (c for c in CANDIDATES if c.name in args.candidates):
        with console.status(f"{candidate.name}"):
            results.append(measure(candidate, said, audios))
        r = results[-1]
        console.print(
            f"{candidate.name}: WER accented {r['wer_accented']:.3f}, all {r['wer_all']:.3f}, "
            f"median {r['seconds']['median']:.2f} s"
        )
    voices = list(dict.fromkeys(s.voice.id for s in said))
    table = Table(title=f"word error rate, {len(said)} recordings (median seconds a recording)")
    for column in ("candidate", "accented", *voices, "s"):
        table.add_column(column, justify="left" if column == "candidate" else "right")
    for r in results:
        table.add_row(
            r["candidate"]["name"],
            f"{r['wer_accented']:.3f}" if r["wer_accented"] is not None else "",
            *(f"{r['wer_per_voice'][v]:.2f}" for v in voices),
            f"{r['seconds']['median']:.2f}",
        )
    console.print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    save_json(args.out / "speech_to_text.json", {"machine": machine(), "kinds": args.kinds, "results": results})
    lines = ["| candidate | accented | " + " | ".join(voices) + " | s |", "|---" * (len(voices) + 3) + "|"]
    for r in results:
        cells = [f"{r['wer_per_voice'][v]:.2f}" for v in voices]
        accent = f"{r['wer_accented']:.3f}" if r["wer_accented"] is not None else ""
        lines.append(
            f"| {r['candidate']['name']} | {accent} | " + " | ".join(cells) + f" | {r['seconds']['median']:.2f} |"
        )
    (args.out / "speech_to_text.md").write_text("\n".join(lines) + "\n")
    console.print(f"written to {args.out / 'speech_to_text.json'} and speech_to_text.md")


if __name__ == "__main__":
    main()
