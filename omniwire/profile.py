"""What a task's `latency_profile` means, for whoever reads one (the server, its pages, the client).

`model_*` keys are inference durations measured inside the stage, `transfer_*` the rest of the
round trip (serialisation, the handle hop, queueing), `wait_*` time a streamed stage spent
waiting for its upstream stage, `ts_*` wall-clock timestamps. For every task
model_* + transfer_* + wait_* == ts_end - ts_start.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def model_time(profile: Mapping[str, Any]) -> float:
    return sum(v for k, v in profile.items() if k.startswith("model_"))


def transfer_time(profile: Mapping[str, Any]) -> float:
    return sum(v for k, v in profile.items() if k.startswith("transfer_"))


def wait_time(profile: Mapping[str, Any]) -> float:
    return sum(v for k, v in profile.items() if k.startswith("wait_"))
