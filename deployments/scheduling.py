"""How a replica shares its cores between requests: a few model calls at once, the rest waiting in
order of priority, so the first words of a reply are spoken before other replies' later sentences."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import AsyncIterator


class PriorityGate:
    """At most `slots` holders at once; waiters are let in by priority (lower first), then arrival."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.holders = 0
        self._waiting: list[tuple[int, int, asyncio.Future]] = []
        self._arrival = itertools.count()

    def resize(self, slots: int) -> None:
        self.slots = slots
        self._wake()

    @property
    def waiting(self) -> int:
        return sum(not future.done() for _, _, future in self._waiting)

    @contextlib.asynccontextmanager
    async def slot(self, priority: int = 0) -> AsyncIterator[float]:
        """Holds a slot for the block; gives the seconds it waited for one (0.0: none)."""
        waited = 0.0
        if self.holders < self.slots and not self.waiting:
            self.holders += 1
        else:
            asked = time.perf_counter()
            future = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiting, (priority, next(self._arrival), future))
            try:
                await future
            except asyncio.CancelledError:
                if future.done() and not future.cancelled():
                    self._release()  # let in just as it was cancelled: pass the slot on
                raise
            waited = time.perf_counter() - asked
        try:
            yield waited
        finally:
            self._release()

    def _release(self) -> None:
        self.holders -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiting and self.holders < self.slots:
            _, _, future = heapq.heappop(self._waiting)
            if not future.done():  # a cancelled waiter is skipped
                self.holders += 1
                future.set_result(None)
