"""The priority gate: a bounded number of holders, waiters let in by priority then arrival, and a
cancelled waiter neither holds nor loses a slot."""

import asyncio

import pytest

from deployments.scheduling import Batcher, PriorityGate


def test_waiters_go_in_by_priority_then_arrival_and_never_more_than_the_slots():
    async def scenario():
        gate = PriorityGate(1)
        order, inside = [], []

        async def call(name, priority):
            async with gate.slot(priority):
                inside.append(name)
                assert len(inside) == 1, "one holder at a time"
                order.append(name)
                await asyncio.sleep(0.01)
                inside.remove(name)

        first = asyncio.create_task(call("turn A, chunk 0", 0))
        await asyncio.sleep(0)
        later = [("turn A, chunk 1", 1), ("turn A, chunk 2", 2), ("turn B, chunk 0", 0), ("turn C, chunk 0", 0)]
        tasks = []
        for name, priority in later:
            tasks.append(asyncio.create_task(call(name, priority)))
            await asyncio.sleep(0)
        await asyncio.gather(first, *tasks)
        return order, gate.holders

    order, holders = asyncio.run(scenario())
    assert order == ["turn A, chunk 0", "turn B, chunk 0", "turn C, chunk 0", "turn A, chunk 1", "turn A, chunk 2"]
    assert holders == 0


def test_a_cancelled_waiter_leaves_the_gate_as_it_was_and_resizing_lets_more_in():
    async def scenario():
        gate = PriorityGate(1)
        release = asyncio.Event()

        async def hold():
            async with gate.slot():
                await release.wait()

        holder = asyncio.create_task(hold())
        await asyncio.sleep(0)
        waiter = asyncio.create_task(hold())
        await asyncio.sleep(0)
        assert gate.waiting == 1
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        assert gate.waiting == 0 and gate.holders == 1
        more = [asyncio.create_task(hold()) for _ in range(2)]
        await asyncio.sleep(0)
        assert gate.holders == 1 and gate.waiting == 2
        gate.resize(3)
        assert gate.holders == 3 and gate.waiting == 0
        release.set()
        await asyncio.gather(holder, *more)
        return gate.holders

    assert asyncio.run(scenario()) == 0


def test_a_lone_call_runs_at_once_and_calls_that_wait_go_together_up_to_the_batch_size():
    async def scenario():
        batches = []
        release = asyncio.Event()

        async def run(items):
            batches.append(list(items))
            if len(batches) == 1:
                await release.wait()  # the model is busy with the first call
            return [item * 10 for item in items]

        batcher = Batcher(run, max_size=3)
        first = asyncio.create_task(batcher.submit(1))
        while not batches:
            await asyncio.sleep(0)
        assert batches == [[1]], "the first call did not wait for company"
        later = [asyncio.create_task(batcher.submit(n)) for n in (2, 3, 4, 5)]
        await asyncio.sleep(0)
        release.set()
        return await asyncio.gather(first, *later), batches

    results, batches = asyncio.run(scenario())
    assert results == [10, 20, 30, 40, 50], "each caller gets its own result"
    assert batches == [[1], [2, 3, 4], [5]]


def test_a_failed_batch_fails_its_own_calls_only():
    async def scenario():
        async def run(items):
            await asyncio.sleep(0)
            if 2 in items:
                raise ValueError("bad batch")
            return items

        batcher = Batcher(run, max_size=1)
        return await asyncio.gather(*(batcher.submit(n) for n in (1, 2, 3)), return_exceptions=True)

    first, second, third = asyncio.run(scenario())
    assert (first, third) == (1, 3)
    with pytest.raises(ValueError, match="bad batch"):
        raise second
