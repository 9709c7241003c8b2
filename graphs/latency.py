"""latency_profile maths, keeping the original system's meaning.

Per task: `model_*` are inference durations measured inside the stage, `transfer_*` the rest of
the round trip (serialisation, the handle hop, queueing: moving data between stages), `ts_*`
wall-clock timestamps. For every task model_* + transfer_* == ts_end - ts_start, so a turn's
orchestration overhead is everything in its end-to-end time that is not model time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


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


def model_time(profile: Mapping[str, Any]) -> float:
    return sum(v for k, v in profile.items() if k.startswith("model_"))


def transfer_time(profile: Mapping[str, Any]) -> float:
    return sum(v for k, v in profile.items() if k.startswith("transfer_"))


def turn_summary(profiles: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Totals of one turn's tasks: model, transfer, end to end and the overhead ratio."""
    profiles = [p for p in profiles if "ts_start" in p and "ts_end" in p]
    if not profiles:
        return {}
    model = sum(model_time(p) for p in profiles)
    transfer = sum(transfer_time(p) for p in profiles)
    end_to_end = max(p["ts_end"] for p in profiles) - min(p["ts_start"] for p in profiles)
    return {
        "model_s": model,
        "transfer_s": transfer,
        "end_to_end_s": end_to_end,
        "overhead_ratio": overhead_ratio(end_to_end, model),
    }


def overhead_ratio(end_to_end_s: float, model_s: float) -> float:
    """Share of the end-to-end time not spent in models."""
    return max(end_to_end_s - model_s, 0.0) / end_to_end_s if end_to_end_s > 0 else 0.0
