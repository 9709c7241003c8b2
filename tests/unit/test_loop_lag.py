"""The event-loop lag probe sees a loop blocked by synchronous work, and only for the window asked."""

import asyncio
import time

from graphs.observability.loop_lag import LoopLagProbe


def test_a_blocked_loop_shows_as_lag_and_an_idle_one_does_not():
    probe = LoopLagProbe()

    async def run():
        probe.ensure_running()
        probe.ensure_running()  # a second call starts no second probe
        await asyncio.sleep(0.3)
        idle = probe.summary(10)
        time.sleep(0.25)  # what decoding a long upload on the loop would do
        await asyncio.sleep(0.1)
        return idle, probe.summary(10), probe.summary(0.05)

    idle, blocked, recent = asyncio.run(run())
    # An idle loop wakes late only by what a busy machine's scheduler adds, far below the blocked moment.
    assert idle["samples"] >= 10 and idle["p50_ms"] < 60
    assert blocked["max_ms"] >= 240
    assert recent["max_ms"] < 240, "the blocked moment is outside the last 50 ms"


def test_no_figures_before_the_probe_has_run():
    assert LoopLagProbe().summary(60) is None
