"""How late the ingress event loop wakes up: every live session's audio, VAD and frames pass through
it, so a loop blocked by decoding or a model call delays every other conversation on the replica."""

from __future__ import annotations

import asyncio
import time
from collections import deque

import numpy as np

INTERVAL_S = 0.01  # the probe asks to wake this often
WINDOW_S = 600.0  # samples kept for the figures /healthz reports


class LoopLagProbe:
    """A task that sleeps INTERVAL_S again and again and records how much later than asked it woke."""

    def __init__(self) -> None:
        self._samples: deque[tuple[float, float]] = deque()  # (monotonic time, lag s)
        self._task: asyncio.Task | None = None

    def ensure_running(self) -> None:
        """Starts the probe on the running loop; a replica's constructor runs before its loop does."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="omniserve-loop-lag")

    async def _run(self) -> None:
        while True:
            asked = time.monotonic()
            await asyncio.sleep(INTERVAL_S)
            now = time.monotonic()
            self._samples.append((now, max(0.0, now - asked - INTERVAL_S)))
            while self._samples and self._samples[0][0] < now - WINDOW_S:
                self._samples.popleft()

    def summary(self, window_s: float) -> dict[str, float | int] | None:
        """Lag over the last `window_s` seconds, in ms; None before the probe has run."""
        since = time.monotonic() - window_s
        lags = np.array([lag for at, lag in self._samples if at >= since]) * 1000
        if not len(lags):
            return None
        return {
            "samples": int(len(lags)),
            "p50_ms": round(float(np.percentile(lags, 50)), 2),
            "p99_ms": round(float(np.percentile(lags, 99)), 2),
            "max_ms": round(float(lags.max()), 2),
        }
