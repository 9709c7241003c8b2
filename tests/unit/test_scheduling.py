"""The priority gate: a bounded number of holders, waiters let in by priority then arrival, and a
cancelled waiter neither holds nor loses a slot."""

import asyncio

from deployments.scheduling import PriorityGate


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
