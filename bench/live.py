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
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from bench.report import machine, save_json
from bench.speech import speech_end
from client.api import LiveSession, OmniServeClient, OmniServeError
from graphs.app import DEFAULT_CLUSTER
from graphs.launch import serve_locally
from graphs.observability.latency import spread
from omniwire.audio import decode
from omniwire.frames import EndFrame, ErrorFrame, Frame, MetricsFrame, StartInterruptionFrame, TTSAudioFrame

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


class TimedSession:
    """A live session driven as a person would: questions spoken at real-time pace, replies heard
    out; every frame is kept with when (time.time()) it arrived, the client's clock for the figures."""

    def __init__(self, live: LiveSession):
        self.live = live
        self.received: list[tuple[float, Frame]] = []
        self.heard_until = 0.0  # when the reply audio received so far has been played out

    def speak(self, audio: np.ndarray, silence_s: float = 1.0) -> float:
        """Streams speech at real-time pace, then `silence_s` of silence, keeping the frames that come
        meanwhile; returns when the speech ended (its last loud 10 ms, not the end of the recording's
        own trailing silence)."""
        padded = np.concatenate([audio, np.zeros(int(self.live.sample_rate * silence_s), np.float32)])
        return self.live.speak(padded, between=self.drain) + speech_end(audio)

    def drain(self) -> None:
        """Keeps the frames that have arrived, without waiting for more."""
        while (frame := self.live.receive(timeout=0)) is not None:
            self._keep(frame)

    def expect(
        self, kind: type[Frame], where: Callable[[Frame], Any] = lambda _: True, timeout: float = 120.0
    ) -> tuple[float, Frame]:
        """The first frame of `kind` (that `where` accepts) received, and when, waiting for it if need be."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            for item in self.received:
                if isinstance(item[1], kind) and where(item[1]):
                    return item
            if frame := self.live.receive(timeout=max(deadline - time.time(), 0.01)):
                self._keep(frame)
        raise TimeoutError(f"no {kind.__name__} within {timeout:.0f} s")

    def _keep(self, frame: Frame) -> None:
        """A frame as it arrives; reply audio is played from its arrival on, as a speaker would."""
        at = time.time()
        if isinstance(frame, TTSAudioFrame):
            self.heard_until = max(self.heard_until, at) + frame.seconds
        elif isinstance(frame, StartInterruptionFrame):
            self.heard_until = at  # the client drops what it has not played
        self.received.append((at, frame))

    def hear_out(self) -> None:
        """Waits, as a person would, for the reply to finish playing before speaking again: speaking
        over it is a barge-in."""
        while (left := self.heard_until - time.time()) > 0:
            time.sleep(min(left, 0.05))
            self.drain()

    def turn(self, audio: np.ndarray) -> dict[str, Any]:
        self.received = []
        ended = self.speak(audio)
        first_audio, _ = self.expect(TTSAudioFrame)
        done, end = self.expect(EndFrame)
        metrics = next(f.metrics for _, f in self.received if isinstance(f, MetricsFrame) and f.stage is None)
        self.hear_out()
        return {
            "time_to_first_audio_s": metrics["time_to_first_audio_s"],
            "client_first_audio_s": first_audio - ended,
            "total_reply_s": done - ended,
            "status": end.status,
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
                if isinstance(frame, TTSAudioFrame):
                    first_audio = first_audio or at
                elif isinstance(frame, ErrorFrame) and frame.status == 503:
                    return {"refused": True, "at": at, "retry_after_s": frame.retry_after_s or 1.0, "error": None}
                elif isinstance(frame, ErrorFrame):
                    return {"refused": False, "error": f"ErrorFrame {frame.status}: {frame.error[:200]}"}
                elif isinstance(frame, EndFrame):
                    if frame.status == "completed" and first_audio is not None:
                        return {"refused": False, "error": None, "first_audio": first_audio}
                    return {"refused": False, "error": f"turn ended {frame.status}"}
            try:
                frame = self.live.receive(timeout=max(deadline - time.time(), 0.01))
            except OmniServeError as exc:  # a fatal ErrorFrame: the session ends with it
                return {"refused": False, "error": f"ErrorFrame {exc.status}: {exc.detail[:200]}"}
            if frame:
                self._keep(frame)
        raise TimeoutError(f"no end of the turn within {timeout:.0f} s")

    def barge_in(self, audio: np.ndarray) -> dict[str, Any]:
        self.received = []
        self.speak(audio)
        self.expect(TTSAudioFrame)
        sent = time.time()
        self.live.interrupt()
        acknowledged, _ = self.expect(StartInterruptionFrame)
        settle = time.time() + 1.5
        while time.time() < settle:
            self.drain()
            time.sleep(0.05)
        audio_after = [t for t, f in self.received if isinstance(f, TTSAudioFrame) and t > sent]
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
    with OmniServeClient(url) as client, client.live(cluster=args.cluster) as session:
        live = TimedSession(session)
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
