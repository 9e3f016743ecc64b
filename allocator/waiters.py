"""Requests holding their answer until their session is linked (`?wait=`), woken in-process.

The linker that links a session may run in another web process, so a waiter also re-reads the
record every `POLL_S`; a wake-up from this process only makes the answer faster.
"""

from __future__ import annotations

import asyncio

from fleet.aio import wait_at_most

POLL_S = 0.25


class Waiters:
    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def register(self, session_id: str) -> asyncio.Event:
        return self._events.setdefault(session_id, asyncio.Event())

    def discard(self, session_id: str) -> None:
        self._events.pop(session_id, None)

    def wake(self, session_id: str) -> None:
        ev = self._events.get(session_id)
        if ev is not None:
            ev.set()

    async def pause(self, session_id: str, timeout_s: float) -> None:
        """Until woken or `min(timeout_s, POLL_S)` passed."""
        ev = self.register(session_id)
        await wait_at_most(ev.wait(), max(0.0, min(timeout_s, POLL_S)))
        ev.clear()
