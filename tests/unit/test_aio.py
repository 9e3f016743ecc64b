"""fleet.aio.wait_at_most: a bounded wait that never loses the caller's cancellation (asyncio.wait_for
on Python 3.11 does when the cancel meets the awaited thing's completion; loops around it then hung
a stopping web process and a killed scaler in the suite)."""

from __future__ import annotations

import asyncio

import pytest

from fleet.aio import wait_at_most


async def test_true_when_done_false_when_the_time_ran_out() -> None:
    ev = asyncio.Event()
    ev.set()
    assert await wait_at_most(ev.wait(), 1.0) is True
    assert await wait_at_most(asyncio.Event().wait(), 0.01) is False


async def test_a_cancel_in_the_same_iteration_as_the_wake_up_is_not_lost() -> None:
    ev = asyncio.Event()
    rounds = 0

    async def waiter() -> None:  # the shape of the loops that hung: wait, then go round again
        nonlocal rounds
        while True:
            rounds += 1
            await wait_at_most(ev.wait(), 10.0)
            ev.clear()

    task = asyncio.create_task(waiter())
    await asyncio.sleep(0)  # waiting now
    ev.set()
    task.cancel()  # in the same iteration as the wake-up
    done, _ = await asyncio.wait({task}, timeout=2.0)
    assert done, "the cancellation was lost: the loop went round again"
    with pytest.raises(asyncio.CancelledError):
        task.result()
    assert rounds == 1
