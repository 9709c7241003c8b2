"""Load: throughput, time to first audio and refusals as conversations are added, over HTTP and live.

    python -m bench.load                                   # deploys serve_config.yaml on a local Ray
    python -m bench.load --url http://127.0.0.1:8000 --levels 1 2 4 8 16 --seconds 60
    python -m bench.load --soak-sessions 8 --soak-seconds 300

At each level, that many clients talk at once for `--seconds`. An HTTP client posts a spoken question
to the streaming endpoint, times its first reply audio from the upload's end, and posts the next as
soon as the answer ends; a refused one (503) waits as Retry-After says. A live client speaks questions
into the WebSocket at real-time pace and times the first audio from the end of its speech. The soak
then keeps live sessions talking and checks the trace store: no task left pending or started, and no
server error but the refusals. Figures go to a JSON file and a plot.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
from rich.console import Console
from rich.table import Table

from bench.live import QUESTIONS, TimedSession
from bench.report import machine, save_json
from bench.speech import speak
from client.api import OmniServeClient, auth_headers
from graphs.launch import serve_locally
from omniwire.audio import decode

DEFAULT_CLUSTER = "CLUSTER_Q_NO_EMOTION_ETE_CONVERSATION"


@dataclass
class Tally:
    """What the clients of one run saw; appended to from their threads (list.append is atomic)."""

    first_audio_s: list[float] = field(default_factory=list)
    refusal_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    completed: int = 0


def http_client(url: str, cluster: str, wav: list[bytes], until: float, tally: Tally) -> None:
    with httpx.Client(base_url=url, timeout=300, headers=auth_headers()) as http:
        i = 0
        while time.time() < until:
            audio = wav[i % len(wav)]
            i += 1
            t0 = time.perf_counter()
            files = [("audio", ("question.wav", audio, "audio/wav"))]
            try:
                with http.stream("POST", "/v1/conversations/stream", data={"cluster": cluster}, files=files) as r:
                    if r.status_code == 503:
                        tally.refusal_s.append(time.perf_counter() - t0)
                        time.sleep(float(r.headers.get("retry-after", "1")))
                        continue
                    if r.status_code != 200:
                        tally.errors.append(f"HTTP {r.status_code}: {r.read()[:200]!r}")
                        continue
                    first = None
                    for line in r.iter_lines():
                        frame = json.loads(line)
                        if frame["type"] == "TTSAudioFrame" and first is None:
                            first = time.perf_counter() - t0
                        elif frame["type"] == "ErrorFrame":
                            tally.errors.append(f"ErrorFrame {frame['status']}: {frame['error'][:200]}")
                        elif frame["type"] == "EndFrame" and frame["status"] == "completed" and first is not None:
                            tally.first_audio_s.append(first)
                            tally.completed += 1
            except httpx.HTTPError as exc:
                tally.errors.append(f"{type(exc).__name__}: {exc}")


def live_client(url: str, cluster: str, questions: list[np.ndarray], until: float, tally: Tally) -> None:
    try:
        with OmniServeClient(url) as client, client.live(cluster=cluster) as session:
            live = TimedSession(session)
            i = 0
            while time.time() < until:
                live.received = []
                ended = live.speak(questions[i % len(questions)])
                i += 1
                outcome = live.outcome()
                if outcome["refused"]:
                    tally.refusal_s.append(outcome["at"] - ended)
                    time.sleep(outcome["retry_after_s"])
                elif outcome["error"]:
                    tally.errors.append(outcome["error"])
                else:
                    tally.first_audio_s.append(outcome["first_audio"] - ended)
                    tally.completed += 1
                    live.hear_out()
    except Exception as exc:  # a session that broke is a result too
        tally.errors.append(f"session broke: {type(exc).__name__}: {exc}")


def run_level(kind: str, clients: int, seconds: float, target, *args) -> dict[str, Any]:
    tally = Tally()
    psutil.cpu_percent()  # starts the CPU count from here
    started = time.time()
    until = started + seconds
    threads = [threading.Thread(target=target, args=(*args, until, tally)) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.time() - started
    ttfa = np.array(tally.first_audio_s) if tally.first_audio_s else np.array([np.nan])
    return {
        "kind": kind,
        "clients": clients,
        "seconds": round(elapsed, 1),
        "completed": tally.completed,
        "turns_per_s": round(tally.completed / elapsed, 3),
        "first_audio_p50_s": round(float(np.percentile(ttfa, 50)), 3),
        "first_audio_p95_s": round(float(np.percentile(ttfa, 95)), 3),
        "refused": len(tally.refusal_s),
        "refusal_p95_s": round(float(np.percentile(tally.refusal_s, 95)), 3) if tally.refusal_s else None,
        "errors": len(tally.errors),
        "error_samples": tally.errors[:5],
        "cpu_percent": psutil.cpu_percent(),
    }


def open_tasks(url: str, cluster: str, since: float, settle_s: float = 30.0) -> list[dict[str, Any]]:
    """Tasks of the cluster's tracks begun since `since` still pending or started `settle_s` after the
    load stopped (the last turns, cancelled as their sessions closed, are closed in that time)."""
    deadline = time.time() + settle_s
    with httpx.Client(base_url=url, timeout=60, headers=auth_headers()) as http:
        while True:
            stuck = []
            path = f"/v1/tracks?cluster={cluster}&since={since:.0f}&limit=100"
            while path:
                page = http.get(path).json()
                for summary in page["tracks"]:
                    track = http.get(f"/v1/tracks/{summary['track_id']}").json()
                    stuck += [t for t in track["tasks"] if t["status"] in ("pending", "started")]
                path = page.get("next")
            if not stuck or time.time() > deadline:
                return stuck
            time.sleep(2)


def plot(levels: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (throughput, latency, refused) = plt.subplots(1, 3, figsize=(14, 4))
    for kind, marker in (("http", "o"), ("live", "s")):
        rows = [r for r in levels if r["kind"] == kind]
        if not rows:
            continue
        x = [r["clients"] for r in rows]
        throughput.plot(x, [r["turns_per_s"] for r in rows], marker=marker, label=kind)
        latency.plot(x, [r["first_audio_p50_s"] for r in rows], marker=marker, label=f"{kind} p50")
        latency.plot(x, [r["first_audio_p95_s"] for r in rows], marker=marker, linestyle="--", label=f"{kind} p95")
        refused.plot(x, [r["refused"] / max(r["refused"] + r["completed"], 1) for r in rows], marker=marker, label=kind)
    for ax, title in (
        (throughput, "answered turns per second"),
        (latency, "time to first audio (s)"),
        (refused, "share of turns refused"),
    ):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({r["clients"] for r in levels}), [str(c) for c in sorted({r["clients"] for r in levels})])
        ax.set_xlabel("conversations at once")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="a running server; without it, --config is deployed on a local Ray")
    parser.add_argument("--config", default="serve_config.yaml")
    parser.add_argument("--cluster", default=DEFAULT_CLUSTER)
    parser.add_argument("--levels", type=int, nargs="*", default=[1, 2, 4, 8, 16], help="none: only the soak")
    parser.add_argument("--seconds", type=float, default=60.0, help="per level and transport")
    parser.add_argument("--transports", nargs="+", choices=["http", "live"], default=["http", "live"])
    parser.add_argument("--soak-sessions", type=int, default=8)
    parser.add_argument("--soak-seconds", type=float, default=0.0, help="0: no soak")
    parser.add_argument("--out", type=Path, default=Path("bench-results/load"))
    args = parser.parse_args(argv)
    console = Console()
    url = args.url or serve_locally(args.config)
    wav = [speak(q) for q in QUESTIONS]
    questions = [decode(w).samples for w in wav]
    targets = {"http": (http_client, wav), "live": (live_client, questions)}

    levels = []
    for kind in args.transports:
        target, inputs = targets[kind]
        for clients in args.levels:
            row = run_level(kind, clients, args.seconds, target, url, args.cluster, inputs)
            console.print(row)
            levels.append(row)
    soak = None
    if args.soak_seconds > 0:
        since = time.time()
        soak = run_level("live", args.soak_sessions, args.soak_seconds, live_client, url, args.cluster, questions)
        soak["stuck_tasks"] = len(open_tasks(url, args.cluster, since))
        console.print({"soak": soak})

    table = Table(title=f"{args.cluster}: load, {args.seconds:.0f} s a level")
    for column in (
        "transport",
        "at once",
        "turns/s",
        "x one",
        "first audio p50",
        "p95",
        "refused",
        "refusal p95",
        "errors",
        "CPU %",
    ):
        table.add_column(column, justify="right")
    for row in levels:
        single = next(r for r in levels if r["kind"] == row["kind"] and r["clients"] == min(args.levels))
        gain = row["turns_per_s"] / single["turns_per_s"] if single["turns_per_s"] else float("nan")
        table.add_row(
            row["kind"],
            str(row["clients"]),
            f"{row['turns_per_s']:.2f}",
            f"{gain:.2f}",
            f"{row['first_audio_p50_s']:.2f}",
            f"{row['first_audio_p95_s']:.2f}",
            str(row["refused"]),
            "" if row["refusal_p95_s"] is None else f"{row['refusal_p95_s'] * 1000:.0f} ms",
            str(row["errors"]),
            f"{row['cpu_percent']:.0f}",
        )
    console.print(table)
    result = {"url": url, "cluster": args.cluster, "machine": machine(), "levels": levels, "soak": soak}
    save_json(args.out / "load.json", result)
    if levels:
        plot(levels, args.out / "load.png")
    console.print(f"written to {args.out}/load.json and load.png")


if __name__ == "__main__":
    main()
