"""How a replica shares its cores between requests: a few model calls at once, the rest waiting in
order of priority, so the first words of a reply are spoken before other replies' later sentences;
and, for a model that gains from it, calls that waited taken together in one batch."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


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


class Batcher(Generic[T, R]):
    """Calls that come while a batch runs go together into the next one (up to `max_size`), so a lone
    call never waits for company and a busy model takes its queue in a few calls instead of many.

    Ray Serve's `@serve.batch` does this inside a replica only; components also run in one process
    (the benchmarks' floor, the unit tests).
    """

    def __init__(self, run_batch: Callable[[list[T]], Awaitable[list[R]]], max_size: int) -> None:
        self.run_batch = run_batch
        self.max_size = max_size
        self._queue: list[tuple[T, asyncio.Future]] = []
        self._draining: asyncio.Task | None = None

    async def submit(self, item: T) -> R:
        future = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._draining is None or self._draining.done():
            self._draining = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._queue:
            batch = [(item, future) for item, future in self._queue[: self.max_size] if not future.cancelled()]
            del self._queue[: self.max_size]
            if not batch:
                continue
            try:
                results = await self.run_batch([item for item, _ in batch])
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            else:
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
