"""Small asyncio helpers the processes share."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable


async def wait_at_most(awaitable: Awaitable[object], timeout_s: float) -> bool:
    """Await `awaitable` for at most `timeout_s`; False when the time ran out first.

    Not `asyncio.wait_for`: on Python 3.11 it loses a cancellation that arrives in the same loop
    iteration as the awaited thing completes (bpo-42130; fixed in 3.12), and a loop around it then
    never ends: a stopping web process or a killed scaler hung on exactly that. `asyncio.timeout`
    tells its own cancellation from the caller's, so the caller's always propagates."""
    try:
        async with asyncio.timeout(timeout_s):
            await awaitable
    except TimeoutError:
        return False
    return True


async def cancel_within(task: asyncio.Task[object], timeout_s: float) -> bool:
    """Cancel `task` and wait at most `timeout_s` for it to end; False if it outlived that. A
    stopping process must not hang on a task that outlives its cancellation (a redis-py blocking
    read once did: fleet.store.coord.read_events)."""
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=timeout_s)
    return bool(done)
