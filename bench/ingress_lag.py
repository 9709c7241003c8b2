"""Event-loop lag of the ingress while several live sessions talk at once.

    python -m bench.ingress_lag --url http://127.0.0.1:8000 --sessions 8 --seconds 60

Each session speaks questions into the WebSocket at real-time pace, like a microphone, and waits for
each answer, for `--seconds`; meanwhile the ingress's own probe (graphs/observability/loop_lag.py)
records how late its event loop wakes up, and /healthz reports that lag over the run's window. Every
session's audio, VAD and reply frames pass through that loop, so its lag is added to everyone's turn.
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from bench.live import QUESTIONS, TimedSession
from bench.report import machine, save_json
from client.api import OmniServeClient, auth_headers
from graphs.app import DEFAULT_CLUSTER
from graphs.launch import serve_locally
from omniwire.audio import decode


def session(url: str, cluster: str, questions: list, until: float, results: list, errors: list) -> None:
    try:
        with OmniServeClient(url) as client, client.live(cluster=cluster) as conversation:
            live = TimedSession(conversation)
            i = 0
            while time.time() < until:
                results.append(live.turn(questions[i % len(questions)]))
                i += 1
    except Exception as exc:  # reported with the figures: a session that broke is a result too
        errors.append(f"{type(exc).__name__}: {exc}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ingress_lag", description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="a running server; without it, --config is deployed on a local Ray")
    parser.add_argument("--config", default="serve_config.yaml")
    parser.add_argument("--cluster", default=DEFAULT_CLUSTER)
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=Path("bench-results/bench-ingress-lag.json"))
    args = parser.parse_args(argv)
    console = Console()
    url = args.url or serve_locally(args.config)

    from bench.speech import speak

    questions = [decode(speak(q)).samples for q in QUESTIONS]
    with httpx.Client(base_url=url, timeout=30, headers=auth_headers()) as http:
        http.get("/healthz").raise_for_status()  # starts the probe before the load
        idle_s = 5.0
        time.sleep(idle_s)
        idle = http.get("/healthz", params={"lag_window_s": idle_s}).json()["event_loop_lag"]
        results: list[dict] = []
        errors: list[str] = []
        started = time.time()
        until = started + args.seconds
        threads = [
            threading.Thread(target=session, args=(url, args.cluster, questions, until, results, errors))
            for _ in range(args.sessions)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        window = time.time() - started
        loaded = http.get("/healthz", params={"lag_window_s": window}).json()["event_loop_lag"]

    table = Table(title=f"ingress event-loop lag, {args.sessions} live sessions for {window:.0f} s ({args.cluster})")
    for column in ("", "samples", "p50 ms", "p99 ms", "max ms"):
        table.add_column(column, justify="right")
    for name, lag in (("idle", idle), ("under load", loaded)):
        table.add_row(name, str(lag["samples"]), str(lag["p50_ms"]), str(lag["p99_ms"]), str(lag["max_ms"]))
    console.print(table)
    console.print(f"{len(results)} turns answered, {len(errors)} sessions broke: {errors[:3]}")
    save_json(
        args.out,
        {
            "url": url,
            "cluster": args.cluster,
            "sessions": args.sessions,
            "seconds": window,
            "machine": machine(),
            "idle": idle,
            "loaded": loaded,
            "turns": results,
            "errors": errors,
        },
    )
    console.print(f"written to {args.out}")


if __name__ == "__main__":
    main()
