"""Benchmark live conversations: time to first audio against total reply time, and barge-in.

    python -m bench.live                          # deploys serve_config.yaml on a local Ray
    python -m bench.live --url http://127.0.0.1:8000 --turns 10 --barge-ins 5

Each turn speaks a question into the WebSocket at real-time pace, like a microphone. Time to
first audio runs from the end of the question's speech to the first reply audio (the server's
figure, measured as the audio leaves it, and the client's, as it arrives); total reply time to
the end of the turn. A barge-in asks for a long story, and as soon as its first audio arrives
sends a StartInterruptionFrame; stop latency runs from that frame to the last reply audio byte
received (zero when no audio followed it).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from websockets.sync.client import connect

from bench.report import machine, save_json
from bench.speech import speech_end
from client.api import auth_headers
from graphs.app import DEFAULT_CLUSTER
from graphs.launch import serve_locally
from graphs.observability.latency import spread
from omniwire.audio import decode, to_pcm16
from omniwire.frames import from_wire

QUESTIONS = [
    "What is the capital city of France?",
    "How is the weather today?",
    "Can you recommend a good book to read?",
    "What should I cook for dinner tonight?",
]
# A different story each barge-in: the history keeps what was heard of the last one (a few words),
# and a small LLM asked the same again may just repeat those.
STORIES = (
    "Tell me a long story about a brave dragon who lived in the mountains.",
    "Tell me a long story about a young knight who sailed across the sea.",
    "Tell me a long story about a clever fox who lived in a big city.",
)
CHUNK_S = 0.02


class LiveSession:
    def __init__(self, ws, cluster: str):
        self.ws = ws
        self.received: list[tuple[float, dict]] = []
        self.heard_until = 0.0  # when the reply audio received so far has been played out
        self.ws.send(json.dumps({"type": "StartFrame", "cluster": cluster}))
        self._expect("StartFrame")

    def speak(self, audio: np.ndarray) -> float:
        """Streams speech at real-time pace, then a second of silence; returns when the speech ended
        (its last loud 10 ms, not the end of the recording's own trailing silence)."""
        step = int(16_000 * CHUNK_S)
        padded = np.concatenate([audio, np.zeros(16_000, np.float32)])
        t0, wall0 = time.perf_counter(), time.time()
        for i, start in enumerate(range(0, len(padded), step)):
            self.ws.send(to_pcm16(padded[start : start + step]))
            time.sleep(max(0.0, t0 + (i + 1) * CHUNK_S - time.perf_counter()))
            self._drain()
        return wall0 + speech_end(audio)

    def _drain(self) -> list[tuple[float, dict]]:
        frames = []
        while True:
            try:
                message = self.ws.recv(timeout=0)
            except TimeoutError:
                return frames
            frames.append(self._keep(message))

    def _expect(self, kind: str, timeout: float = 120.0) -> tuple[float, dict]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            for item in self.received:
                if item[1]["type"] == kind:
                    self.received.remove(item)
                    return item
            try:
                message = self.ws.recv(timeout=max(deadline - time.time(), 0.01))
            except TimeoutError:
                break
            self._keep(message)
        raise TimeoutError(f"no {kind} within {timeout:.0f} s")

    def _keep(self, message: str) -> tuple[float, dict]:
        """A frame as it arrives; reply audio is played from its arrival on, as a speaker would."""
        at, frame = time.time(), json.loads(message)
        if frame["type"] == "TTSAudioFrame":
            self.heard_until = max(self.heard_until, at) + from_wire(frame).seconds
        elif frame["type"] == "StartInterruptionFrame":
            self.heard_until = at  # the client drops what it has not played
        self.received.append((at, frame))
        return at, frame

    def hear_out(self) -> None:
        """Waits, as a person would, for the reply to finish playing before speaking again: speaking
        over it is a barge-in."""
        while (left := self.heard_until - time.time()) > 0:
            time.sleep(min(left, 0.05))
            self._drain()

    def turn(self, audio: np.ndarray) -> dict[str, Any]:
        self.received = []
        ended = self.speak(audio)
        first_audio, _ = self._expect("TTSAudioFrame")
        done, end = self._expect("EndFrame")
        metrics = next(f["metrics"] for _, f in self.received if f["type"] == "MetricsFrame" and f["stage"] is None)
        self.hear_out()
        return {
            "time_to_first_audio_s": metrics["time_to_first_audio_s"],
            "client_first_audio_s": first_audio - ended,
            "total_reply_s": done - ended,
            "status": end["status"],
        }

    def outcome(self, timeout: float = 120.0) -> dict[str, Any]:
        """After speaking: when the first reply audio came, once the turn has ended; or the refusal
        (503, with when to try again) or the error that came instead."""
        deadline = time.time() + timeout
        first_audio, seen = None, 0
        while time.time() < deadline:
            while seen < len(self.received):
                at, frame = self.received[seen]
                seen += 1
                if frame["type"] == "TTSAudioFrame":
                    first_audio = first_audio or at
                elif frame["type"] == "ErrorFrame" and frame["status"] == 503:
                    return {
                        "refused": True,
                        "at": at,
                        "retry_after_s": frame.get("retry_after_s") or 1.0,
                        "error": None,
                    }
                elif frame["type"] == "ErrorFrame":
                    return {"refused": False, "error": f"ErrorFrame {frame['status']}: {frame['error'][:200]}"}
                elif frame["type"] == "EndFrame":
                    if frame["status"] == "completed" and first_audio is not None:
                        return {"refused": False, "error": None, "first_audio": first_audio}
                    return {"refused": False, "error": f"turn ended {frame['status']}"}
            try:
                message = self.ws.recv(timeout=max(deadline - time.time(), 0.01))
            except TimeoutError:
                break
            self._keep(message)
        raise TimeoutError(f"no end of the turn within {timeout:.0f} s")

    def barge_in(self, audio: np.ndarray) -> dict[str, Any]:
        self.received = []
        self.speak(audio)
        self._expect("TTSAudioFrame")
        sent = time.time()
        self.ws.send(json.dumps({"type": "StartInterruptionFrame"}))
        acknowledged, _ = self._expect("StartInterruptionFrame")
        settle = time.time() + 1.5
        while time.time() < settle:
            self._drain()
            time.sleep(0.05)
        audio_after = [t for t, f in self.received if f["type"] == "TTSAudioFrame" and t > sent]
        return {
            "acknowledged_s": acknowledged - sent,
            "stop_latency_s": max(audio_after, default=sent) - sent,
            "audio_frames_after": len(audio_after),
        }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.live", description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="a running server; without it, --config is deployed on a local Ray")
    parser.add_argument("--config", default="serve_config.yaml")
    parser.add_argument("--cluster", default=DEFAULT_CLUSTER)
    parser.add_argument("--turns", type=int, default=8)
    parser.add_argument("--barge-ins", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("bench-results/bench-live.json"))
    args = parser.parse_args(argv)
    console = Console()

    url = args.url
    if url is None:
        with console.status(f"deploying {args.config}"):
            url = serve_locally(args.config)

    from bench.speech import speak

    questions = [decode(speak(q)).samples for q in QUESTIONS]
    stories = [decode(speak(story)).samples for story in STORIES]
    with connect(
        url.replace("http://", "ws://") + "/v1/conversations/ws", max_size=None, additional_headers=auth_headers()
    ) as ws:
        live = LiveSession(ws, args.cluster)
        with console.status("warming up"):
            live.turn(questions[0])
        turns, barge_ins = [], []
        with console.status(f"{args.turns} live turns"):
            for i in range(args.turns):
                turns.append(live.turn(questions[i % len(questions)]))
        with console.status(f"{args.barge_ins} barge-ins"):
            for i in range(args.barge_ins):
                barge_ins.append(live.barge_in(stories[i % len(stories)]))

    summary = {
        "time_to_first_audio_s": spread([t["time_to_first_audio_s"] for t in turns]),
        "client_first_audio_s": spread([t["client_first_audio_s"] for t in turns]),
        "total_reply_s": spread([t["total_reply_s"] for t in turns]),
        "first_audio_over_total": spread([t["time_to_first_audio_s"] / t["total_reply_s"] for t in turns]),
        "barge_in_acknowledged_s": spread([b["acknowledged_s"] for b in barge_ins]) if barge_ins else None,
        "barge_in_stop_latency_s": spread([b["stop_latency_s"] for b in barge_ins]) if barge_ins else None,
    }
    table = Table(
        title=f"{args.cluster}: {len(turns)} live turns, {len(barge_ins)} barge-ins (min / median / p95 / max)"
    )
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in summary.items():
        if value is None:
            continue
        unit = "" if key == "first_audio_over_total" else " s"
        table.add_row(key.replace("_", " "), " / ".join(f"{v:.3f}" for v in value.values()) + unit)
    console.print(table)

    save_json(
        args.out,
        {
            "cluster": args.cluster,
            "url": url,
            "machine": machine(),
            "summary": summary,
            "turns": turns,
            "barge_ins": barge_ins,
        },
    )
    console.print(f"written to {args.out}")


if __name__ == "__main__":
    main()
