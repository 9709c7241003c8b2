"""Benchmark and evaluate clusters on a folder of speech: latency per stage, WER, failures, report and plots.

    python -m bench.evaluate                        # deploys serve_config.yaml on a local Ray, five spoken questions
    python -m bench.evaluate --url http://127.0.0.1:8000 --audio my-recordings/ --rounds 3 --concurrency 4
    python -m bench.evaluate --url http://127.0.0.1:8000 --clusters CLUSTER_HF_ETE_CONVERSATION CLUSTER_Q_ETE_CONVERSATION
    python -m bench.evaluate --image photo.jpg      # every turn also shows this picture

`--audio DIR` takes every file there that soundfile reads. A reference transcript for NAME.wav is
NAME.txt beside it, or an entry in DIR/references.json ({"NAME.wav": "text"}) or
DIR/references.csv (rows of file name, text); either key may leave out the extension. Without
--audio, five questions spoken by the Piper voice are the input and their own references.

Orchestration overhead is the part of a turn's end-to-end time (request received to response
ready, measured by the ingress) spent moving data between stages or running no stage at all:
handle hops, serialisation, audio decoding and encoding, the trace writes the turn waits for
(graphs/pipeline/latency.py defines it). Results go to --out: bench.json (every turn and the summaries),
report.md and its PNG plots (bench/report.py).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import soundfile as sf
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from bench.report import (
    TURN_MEASURES,
    failure_groups,
    machine,
    ms,
    save_json,
    scored,
    short_name,
    summarise,
    word_errors,
    write_report,
)
from client.api import OmniServeClient, OmniServeError

PROMPTS = [
    "What is the capital city of France?",
    "How is the weather today?",
    "Can you recommend a good book to read?",
    "Tell me something interesting about the ocean.",
    "What should I cook for dinner tonight?",
]


@dataclass
class Utterance:
    name: str
    audio: bytes
    reference: str | None
    duration_s: float


def read_references(folder: Path) -> dict[str, str]:
    """The mapping files' references, keyed as written (file name, or file name without extension)."""
    references: dict[str, str] = {}
    mapping = folder / "references.json"
    if mapping.exists():
        references.update({str(k): str(v) for k, v in json.loads(mapping.read_text(encoding="utf-8")).items()})
    table = folder / "references.csv"
    if table.exists():
        with table.open(newline="", encoding="utf-8") as rows:
            references.update({row[0].strip(): row[1] for row in csv.reader(rows) if len(row) >= 2})
    return references


def reference_for(path: Path, mapped: dict[str, str]) -> str | None:
    """NAME.txt beside the file first, then the mapping files; an empty reference is no reference."""
    beside = path.with_suffix(".txt")
    text = beside.read_text(encoding="utf-8") if beside.exists() else mapped.get(path.name, mapped.get(path.stem))
    return (text or "").strip() or None


def read_audio_folder(folder: Path) -> list[Utterance]:
    """Every file in `folder` that soundfile can read, in name order, with its reference if there is one."""
    mapped = read_references(folder)
    utterances = []
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        try:
            duration = sf.info(str(path)).duration
        except RuntimeError:  # not audio: transcripts, mapping files, anything else
            continue
        utterances.append(Utterance(path.name, path.read_bytes(), reference_for(path, mapped), duration))
    return utterances


def spoken_questions() -> list[Utterance]:
    """The built-in input: PROMPTS spoken by the bundled Piper voice, each its own reference."""
    from bench.speech import speak

    utterances = []
    for i, prompt in enumerate(PROMPTS, start=1):
        audio = speak(prompt)
        utterances.append(Utterance(f"question-{i}.wav", audio, prompt, sf.info(io.BytesIO(audio)).duration))
    return utterances


def turn_record(
    cluster: str,
    utterance: Utterance,
    round_: int,
    status: int | None,
    body: dict[str, Any],
    detail: str | None,
    started_at: float,
    client_s: float,
) -> dict[str, Any]:
    """One turn as bench.json keeps it; a failed turn keeps whatever the server said (4xx/5xx bodies too)."""
    timings = body.get("timings") or {}
    record = {
        "cluster": cluster,
        "audio": utterance.name,
        "round": round_,
        "ok": status == 200,
        "status": status,
        "detail": detail,
        "track_id": body.get("track_id"),
        "reference": utterance.reference,
        "transcript": body.get("transcript"),
        "reply_text": body.get("reply_text"),
        "started_at": started_at,
        "client_s": client_s,
        **{key: timings.get(key) for key in TURN_MEASURES if key != "client_s"},
        "overhead_ratio": timings.get("overhead_ratio"),
        "stages": {
            s["task_name"]: {"model_s": s["model_s"], "transfer_s": s["transfer_s"], "ttfb_s": s.get("ttfb_s")}
            for s in timings.get("stages", [])
        },
    }
    record["wer"] = word_errors([record["reference"]], [record["transcript"]])["wer"] if scored(record) else None
    return record


def run_turn(
    client: OmniServeClient, cluster: str, utterance: Utterance, images: list[tuple[str, bytes]], round_: int
) -> dict[str, Any]:
    """One turn on a new track; an error answer or a lost connection becomes a failed record, not an exception."""
    started_at, t0 = time.time(), time.perf_counter()
    try:
        body = client.converse(utterance.audio, cluster=cluster, images=images, filename=utterance.name)
        status, detail = 200, None
    except OmniServeError as exc:
        body, status, detail = exc.body, exc.status, exc.detail
    except (httpx.HTTPError, ConnectionError) as exc:  # no answer: timed out, refused, cut off
        body, status, detail = {}, None, f"{type(exc).__name__}: {exc}"
    return turn_record(cluster, utterance, round_, status, body, detail, started_at, time.perf_counter() - t0)


def run_cluster(
    client: OmniServeClient,
    cluster: str,
    utterances: list[Utterance],
    images: list[tuple[str, bytes]],
    rounds: int,
    concurrency: int,
    warmup: int,
    progress: Progress,
) -> list[dict[str, Any]]:
    """Warm-up turns one at a time, then every utterance `rounds` times with `concurrency` turns in flight."""
    task = progress.add_task(f"{cluster} (warm-up)", total=warmup + rounds * len(utterances), failed=0)
    for i in range(warmup):
        run_turn(client, cluster, utterances[i % len(utterances)], images, 0)
        progress.advance(task)
    progress.update(task, description=cluster)
    records, failed = [], 0
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        pending = [
            pool.submit(run_turn, client, cluster, u, images, r) for r in range(1, rounds + 1) for u in utterances
        ]
        for future in as_completed(pending):
            records.append(future.result())
            failed += not records[-1]["ok"]
            progress.update(task, advance=1, failed=failed)
    order = {u.name: i for i, u in enumerate(utterances)}
    return sorted(records, key=lambda r: (r["round"], order[r["audio"]]))


def _quartet(values: dict[str, float] | None) -> str:
    return " / ".join(ms(values[k]) for k in ("min", "median", "p95", "max")) if values else ""


def show(console: Console, cluster: str, summary: dict[str, Any]) -> None:
    if summary["completed"]:
        table = Table(
            title=f"{cluster}: {summary['completed']} of {summary['turns']} turns completed "
            f"(ms, min / median / p95 / max)"
        )
        table.add_column("stage")
        table.add_column("model", justify="right")
        table.add_column("transfer", justify="right")
        for name, stage in summary["stages"].items():
            table.add_row(name, _quartet(stage["model_s"]), _quartet(stage["transfer_s"]))
        table.add_section()
        for key, label in TURN_MEASURES.items():
            if key not in ("model_s", "transfer_s") and summary[key]:
                table.add_row(label, _quartet(summary[key]), "")
        console.print(table)
        ratio = summary["overhead_ratio"]
        console.print(
            f"overhead ratio (orchestration time over end to end): "
            f"median {ratio['median']:.1%}, over all turns {ratio['overall']:.1%}"
        )
    else:
        console.print(f"{cluster}: none of {summary['turns']} turns completed")
    wer = summary["wer"]
    if wer:
        console.print(f"word error rate: {wer['wer']:.1%} over {wer['turns']} turns, {wer['reference_words']} words")
    for status, count, detail, audio in failure_groups(summary["failures"]):
        console.print(f"[red]failed[/red] {count} × {status}: {detail} ({', '.join(audio)})", highlight=False)


def show_clusters(console: Console, summaries: dict[str, dict[str, Any]]) -> None:
    """The comparison, narrower than the report's so that it fits a terminal."""
    table = Table(title="clusters compared (medians, and the end-to-end p95, ms)")
    for column in ("cluster", "ok", "end to end", "p95", "first audio", "overhead", "overhead ratio", "WER"):
        table.add_column(column, justify="left" if column == "cluster" else "right")

    def figure(key: str, statistic: str) -> str:
        return ms(summary[key][statistic]) if summary[key] else ""

    for cluster, summary in summaries.items():
        table.add_row(
            short_name(cluster),
            f"{summary['completed']}/{summary['turns']}",
            figure("end_to_end_s", "median"),
            figure("end_to_end_s", "p95"),
            figure("time_to_first_audio_s", "median"),
            figure("overhead_s", "median"),
            f"{summary['overhead_ratio']['overall']:.1%}" if summary["overhead_ratio"] else "",
            f"{summary['wer']['wer']:.1%}" if summary["wer"] else "n/a",
        )
    console.print(table)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="a running server; without it, --config is deployed on a local Ray")
    parser.add_argument("--config", default="serve_config.yaml", help="serve config to deploy (default: %(default)s)")
    parser.add_argument(
        "--clusters",
        nargs="+",
        metavar="CLUSTER",
        help="one or more, by space or comma; default: every cluster the server runs",
    )
    parser.add_argument(
        "--audio",
        type=Path,
        metavar="DIR",
        help="folder of recordings and their references; default: five spoken questions",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        metavar="N",
        help="times each recording goes through each cluster (default: %(default)s)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=1, metavar="K", help="turns in flight at once (default: %(default)s)"
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=2,
        metavar="N",
        help="turns per cluster run first, one at a time, and not counted (default: %(default)s)",
    )
    parser.add_argument(
        "--image",
        type=Path,
        action="append",
        default=[],
        metavar="PICTURE",
        help="a picture shown with every turn; repeat for several",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("bench-results"),
        metavar="DIR",
        help="folder for bench.json, report.md and the plots (default: %(default)s); "
        "a path ending in .json names the JSON file and puts the rest beside it",
    )
    args = parser.parse_args(argv)
    if args.audio is not None and not args.audio.is_dir():
        parser.error(f"--audio {args.audio}: not a folder")
    if args.rounds < 1 or args.concurrency < 1 or args.warmup < 0:
        parser.error("--rounds and --concurrency must be at least 1, --warmup at least 0")
    if args.clusters:
        args.clusters = [c for value in args.clusters for c in value.split(",") if c]
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    console = Console()
    utterances = read_audio_folder(args.audio) if args.audio else None
    if utterances == []:
        raise SystemExit(f"no audio that soundfile can read in {args.audio}")

    url = args.url
    if url is None:
        from graphs.launch import serve_locally

        with console.status(f"deploying {args.config}"):
            url = serve_locally(args.config)

    if utterances is None:
        with console.status("speaking the questions"):
            utterances = spoken_questions()
    references = sum(1 for u in utterances if u.reference)
    console.print(f"{len(utterances)} utterances, {references} with a reference transcript")
    images = [(path.name, path.read_bytes()) for path in args.image]
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    results = {}
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]} failed"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )
    with OmniServeClient(url) as client, progress:
        clusters = args.clusters or [c["name"] for c in client.clusters() if c["enabled"]]
        for cluster in clusters:
            turns = run_cluster(
                client, cluster, utterances, images, args.rounds, args.concurrency, args.warmup, progress
            )
            results[cluster] = {"summary": summarise(turns), "turns": turns}
            show(progress.console, cluster, results[cluster]["summary"])
    if len(results) > 1:
        show_clusters(console, {c: r["summary"] for c, r in results.items()})

    json_path = args.out if args.out.suffix == ".json" else args.out / "bench.json"
    run = {
        "started_at": started_at,
        "url": url,
        "settings": {
            "audio": str(args.audio) if args.audio else "five questions spoken by Piper",
            "rounds": args.rounds,
            "concurrency": args.concurrency,
            "warmup": args.warmup,
            "images": [name for name, _ in images],
        },
        "machine": machine(),
        "inputs": [{"name": u.name, "reference": u.reference, "duration_s": u.duration_s} for u in utterances],
        "clusters": results,
    }
    save_json(json_path, run)
    written = [json_path, *write_report(run, json_path.parent)]
    console.print("written: " + ", ".join(str(p) for p in written))


if __name__ == "__main__":
    main()
