"""Benchmark clusters turn by turn: per-stage model and transfer time, end to end, overhead.

    python -m graphs.bench                        # deploys serve_config.yaml on a local Ray
    python -m graphs.bench --url http://127.0.0.1:8000 --turns 50 --clusters CLUSTER_HF_ETE_CONVERSATION
    python -m graphs.bench --image photo.jpg      # every turn also shows this picture

Orchestration overhead is the part of a turn's end-to-end time (request received to response
ready, measured by the ingress) spent moving data between stages or running no stage at all:
handle hops, serialisation, audio decoding and encoding, the trace writes the turn waits for
(graphs/latency.py defines it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from client.api import OmniServeClient

PROMPTS = [
    "What is the capital city of France?",
    "How is the weather today?",
    "Can you recommend a good book to read?",
    "Tell me something interesting about the ocean.",
    "What should I cook for dinner tonight?",
]


def spread(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def run_turns(client: OmniServeClient, cluster: str, utterances: list[tuple[str, bytes]],
              images: list[tuple[str, bytes]], turns: int, warmup: int) -> list[dict[str, Any]]:
    records = []
    for i in range(warmup + turns):
        prompt, audio = utterances[i % len(utterances)]
        t0 = time.perf_counter()
        body = client.converse(audio, cluster=cluster, images=images)
        client_s = time.perf_counter() - t0
        if i < warmup:
            continue
        timings = body["timings"]
        records.append({
            "prompt": prompt,
            "transcript": body["transcript"],
            "reply_text": body["reply_text"],
            "client_s": client_s,
            "end_to_end_s": timings["end_to_end_s"],
            "model_s": timings["model_s"],
            "transfer_s": timings["transfer_s"],
            "overhead_s": timings["overhead_s"],
            "overhead_ratio": timings["overhead_ratio"],
            "time_to_first_audio_s": timings["time_to_first_audio_s"],
            "stages": {s["task_name"]: {"model_s": s["model_s"], "transfer_s": s["transfer_s"]}
                       for s in timings["stages"]},
        })
    return records


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    stages = list(records[0]["stages"])
    end_to_end = sum(r["end_to_end_s"] for r in records)
    return {
        "turns": len(records),
        "stages": {
            name: {
                "model_s": spread([r["stages"][name]["model_s"] for r in records]),
                "transfer_s": spread([r["stages"][name]["transfer_s"] for r in records]),
            }
            for name in stages
        },
        "end_to_end_s": spread([r["end_to_end_s"] for r in records]),
        "model_s": spread([r["model_s"] for r in records]),
        "client_s": spread([r["client_s"] for r in records]),
        "overhead_s": spread([r["overhead_s"] for r in records]),
        "overhead_ratio": {**spread([r["overhead_ratio"] for r in records]),
                           "overall": sum(r["overhead_s"] for r in records) / end_to_end},
    }


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def show(console: Console, cluster: str, summary: dict[str, Any]) -> None:
    table = Table(title=f"{cluster}: {summary['turns']} turns (ms, min / median / max)")
    table.add_column("stage")
    table.add_column("model", justify="right")
    table.add_column("transfer", justify="right")
    for name, stage in summary["stages"].items():
        table.add_row(name, *(" / ".join(_ms(v) for v in stage[k].values()) for k in ("model_s", "transfer_s")))
    table.add_section()
    for label, key in (("end to end (server)", "end_to_end_s"), ("client round trip", "client_s"),
                       ("orchestration overhead", "overhead_s")):
        table.add_row(label, " / ".join(_ms(v) for v in summary[key].values()), "")
    console.print(table)
    ratio = summary["overhead_ratio"]
    console.print(f"overhead ratio (orchestration time over end to end): "
                  f"median {ratio['median']:.1%}, over all turns {ratio['overall']:.1%}")


def show_clusters(console: Console, summaries: dict[str, dict[str, Any]]) -> None:
    table = Table(title="clusters compared (medians, ms)")
    for column in ("cluster", "turns", "end to end", "model", "overhead", "overhead ratio"):
        table.add_column(column, justify="left" if column == "cluster" else "right")
    for cluster, s in summaries.items():
        table.add_row(cluster, str(s["turns"]), _ms(s["end_to_end_s"]["median"]), _ms(s["model_s"]["median"]),
                      _ms(s["overhead_s"]["median"]), f"{s['overhead_ratio']['median']:.1%}")
    console.print(table)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m graphs.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="a running server; without it, --config is deployed on a local Ray")
    parser.add_argument("--config", default="serve_config.yaml", help="serve config to deploy (default: %(default)s)")
    parser.add_argument("--clusters", nargs="+", help="default: every cluster the server runs")
    parser.add_argument("--turns", type=int, default=20, help="turns per cluster")
    parser.add_argument("--warmup", type=int, default=2, help="turns run first and not counted")
    parser.add_argument("--image", type=Path, action="append", default=[], help="a picture shown with every turn")
    parser.add_argument("--out", type=Path, default=Path("bench-results/bench.json"))
    args = parser.parse_args(argv)
    console = Console()

    url = args.url
    if url is None:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        import ray

        from graphs.launch import deploy, read_config

        ray.init(address="local", include_dashboard=False, log_to_driver=False)
        with console.status(f"deploying {args.config}"):
            url = deploy(read_config(args.config))

    from graphs.speech_samples import speak

    utterances = [(p, speak(p)) for p in PROMPTS]
    images = [(path.name, path.read_bytes()) for path in args.image]
    results = {}
    with OmniServeClient(url) as client:
        clusters = args.clusters or [c["name"] for c in client.clusters() if c["enabled"]]
        for cluster in clusters:
            with console.status(f"{args.turns} turns on {cluster}"):
                records = run_turns(client, cluster, utterances, images, args.turns, args.warmup)
            results[cluster] = {"summary": summarise(records), "turns": records}
            show(console, cluster, results[cluster]["summary"])
    if len(results) > 1:
        show_clusters(console, {c: r["summary"] for c, r in results.items()})

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "url": url,
        "images": [name for name, _ in images],
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()},
        "clusters": results,
    }, indent=2))
    console.print(f"written to {args.out}")


if __name__ == "__main__":
    main()
