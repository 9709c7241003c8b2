"""latency_profile maths (the keys' meaning is in omniwire.profile), and the figures made of them.

A turn's orchestration overhead is its transfer time plus the time when no stage was running at
all. For stages that run one after another that is end to end minus model time; streamed and
parallel stages overlap, and overlapping model time is not counted twice.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from omniwire.frames import Frame, MetricsFrame, TTSAudioFrame
from omniwire.profile import model_time, transfer_time


def stage_profile(ts_start: float, round_trip_s: float, model_s: float, ts_model_start: float) -> dict[str, float]:
    """Split one stage call's round trip into model and transfer time.

    `round_trip_s` and `model_s` come from monotonic clocks in their own processes; the split of
    transfer into in/out uses wall clocks, clamped so clock skew between nodes cannot make it negative.
    """
    model_s = min(model_s, round_trip_s)
    transfer_s = round_trip_s - model_s
    transfer_in = min(max(ts_model_start - ts_start, 0.0), transfer_s)
    return {
        "model_inference": model_s,
        "transfer_in": transfer_in,
        "transfer_out": transfer_s - transfer_in,
        "ts_start": ts_start,
        "ts_model_start": ts_start + transfer_in,
        "ts_model_end": ts_start + transfer_in + model_s,
        "ts_end": ts_start + round_trip_s,
    }


def idle_time(profiles: list[Mapping[str, Any]], start: float, end: float) -> float:
    """Time within [start, end] covered by no task's [ts_start, ts_end]."""
    covered, reach = 0.0, start
    for a, b in sorted((max(p["ts_start"], start), min(p["ts_end"], end)) for p in profiles):
        if b > reach:
            covered += b - max(a, reach)
            reach = b
    return max(end - start - covered, 0.0)


def turn_summary(profiles: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Totals of one turn's tasks: model, transfer, end to end and the overhead ratio."""
    profiles = [p for p in profiles if "ts_start" in p and "ts_end" in p]
    if not profiles:
        return {}
    start, end = min(p["ts_start"] for p in profiles), max(p["ts_end"] for p in profiles)
    overhead = overhead_s(profiles, start, end)
    return {
        "model_s": sum(model_time(p) for p in profiles),
        "transfer_s": sum(transfer_time(p) for p in profiles),
        "end_to_end_s": end - start,
        "overhead_s": overhead,
        "overhead_ratio": overhead / (end - start) if end > start else 0.0,
    }


def overhead_s(profiles: list[Mapping[str, Any]], start: float, end: float) -> float:
    """Orchestration time of a turn spanning [start, end]: transfers plus time no stage ran."""
    return sum(transfer_time(p) for p in profiles) + idle_time(profiles, start, end)


def spread(values: list[float]) -> dict[str, float] | None:
    """min / median / p95 / max; p95 interpolates linearly between the two nearest values."""
    if not values:
        return None
    array = np.asarray(values, dtype=float)
    return {
        "min": float(array.min()),
        "median": float(np.median(array)),
        "p95": float(np.percentile(array, 95)),
        "max": float(array.max()),
    }


class FirstAudio:
    """Time to first audio, measured where the reply's audio leaves (the graph for HTTP turns, the
    WebSocket sender for live ones): from the end of the user's speech to the first audio frame,
    written into the turn's closing MetricsFrame."""

    def __init__(self, speech_ended_at: float) -> None:
        self.speech_ended_at = speech_ended_at
        self.at: float | None = None

    def stamp(self, frame: Frame) -> None:
        if isinstance(frame, TTSAudioFrame):
            if self.at is None:
                self.at = time.time()
        elif isinstance(frame, MetricsFrame) and frame.stage is None and self.at is not None:
            frame.metrics["time_to_first_audio_s"] = self.at - self.speech_ended_at
