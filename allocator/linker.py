"""The linker: a background task of each web process that places waiting sessions.

It wakes on the event stream (a deployment changed status, a platform session webhook), when this
process freed sockets, and every `tick_s`; each pass re-reads the waiting queue (level-triggered)
and tries the sessions oldest first. Sessions past their deadline become unprocessable. Each
session is changed under its claim, so linkers of several web processes never link one session
twice. A pass remembers, per app version and tags, the smallest size that found no room, and
skips larger sessions of the same kind instead of ranking again for each of them.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from allocator.candidates import Snapshot
from allocator.lifecycle import CLAIM_TTL_S
from allocator.service import Allocator, PlacementLine, ranking_reason
from fleet import metrics
from fleet.aio import cancel_within
from fleet.bootstrap import redis_client
from fleet.logging import event
from fleet.models import SessionRecord, SessionState

log = logging.getLogger(__name__)

BLOCK_MS = 250
STOP_WAIT_S = 5.0
TICK_S = 1.0
MAX_PER_PASS = 1000
READ_COUNT = 500
# After a read that found events, the next one waits this long: under callback load (thousands of
# deployment events a second) a read per few events cost ~4 % of the web process's CPU, for
# wake-ups that only need to come within a fraction of a deployment's start time.
COALESCE_S = 0.02
WAKING_EVENTS = frozenset({"deployment", "session"})
PLATFORM_FAILURES = frozenset({SessionState.UNPROCESSABLE.value, SessionState.ERROR.value})


class Linker:
    def __init__(self, allocator: Allocator, tick_s: float = TICK_S) -> None:
        self.a = allocator
        self.store = allocator.store
        self.clock = allocator.clock
        self.tick_s = tick_s
        self._task: asyncio.Task[None] | None = None
        self._nudged = True
        self.passes = 0
        allocator.wake_linker = self.wake

    def wake(self) -> None:
        self._nudged = True

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="allocator-linker")

    async def stop(self) -> None:
        if self._task is not None:
            if not await cancel_within(self._task, STOP_WAIT_S):
                event(log, "linker_stop_timed_out", logging.WARNING, waited_s=STOP_WAIT_S)
            self._task = None

    async def _run(self) -> None:
        # No socket timeout: read_events bounds the blocking read itself (fleet.store.coord).
        conn: Redis = redis_client(self.a.settings, socket_timeout_s=None)
        last_pass = -math.inf
        try:
            after = await self.store.coord.last_event_id()
            while True:
                try:
                    events = await self.store.coord.read_events(conn, after, BLOCK_MS, READ_COUNT)
                    if events:
                        after = events[-1].id
                    if any(e.kind == "deployment" for e in events):
                        self.a.candidates.invalidate()
                    for e in events:
                        if e.kind == "session" and e.fields.get("state") in PLATFORM_FAILURES:
                            await self.a.platform_failed(e.fields.get("session_id", ""))
                    due = self._nudged or any(e.kind in WAKING_EVENTS for e in events)
                    if due or self.clock() - last_pass >= self.tick_s:
                        self._nudged = False
                        last_pass = self.clock()
                        await self.pass_once()
                    if 0 < len(events) < READ_COUNT:
                        await asyncio.sleep(COALESCE_S)
                except (RedisError, OSError) as err:
                    event(log, "linker_redis_error", logging.WARNING, error=type(err).__name__)
                    await asyncio.sleep(1.0)
        finally:
            await conn.aclose()

    async def pass_once(self) -> int:
        """Try every waiting session once; returns how many were linked."""
        self.passes += 1
        now = self.clock()
        waiting = await self.store.sessions.waiting(MAX_PER_PASS)
        metrics.ALLOC_WAITING.set(len(waiting))
        if not waiting:
            return 0
        records = {r.session_id: r for r in await self.store.sessions.get_many([sid for sid, _ in waiting])}
        snaps: dict[tuple[str, str], Snapshot] = {}
        no_room: dict[Any, float] = {}
        linked = 0
        for sid, deadline in waiting:
            r = records.get(sid)
            if r is None:
                await self.store.sessions.remove_waiting(sid)  # the record expired long ago
                continue
            if r.state is not SessionState.WAITING:
                await self.store.sessions.dequeue_waiting(r)
                continue
            if deadline <= now:
                await self.expire(r)
                continue
            group = (r.app, r.version, tuple(sorted(str(s.get("tag")) for s in r.selectors)))
            if r.size >= no_room.get(group, math.inf):
                continue
            key = (r.app, r.version)
            if key not in snaps:
                snaps[key] = await self.a.candidates.fresh(r.app, r.version)
            outcome = await self.try_link(r, snaps[key])
            if outcome is True:
                linked += 1
            elif outcome is False and not await self.a.placements.get_ask(sid):
                no_room[group] = min(no_room.get(group, math.inf), r.size)
        return linked

    async def try_link(self, record: SessionRecord, snap: Snapshot) -> bool | None:
        """True linked, False no room, None someone else has it or it changed meanwhile."""
        sid = record.session_id
        sessions = self.store.sessions
        if not await sessions.claim(sid, self.a.holder, CLAIM_TTL_S):
            return None
        try:
            current = await sessions.get(sid)
            if current is None or current.state is not SessionState.WAITING:
                return None
            # Only a try that ends the wait writes its placement line: one that finds no room
            # leaves the session waiting, and a line per waiting session per pass would drown the log.
            line = PlacementLine(current)
            attempt = await self.a.attempt(current, await self.a.placements.get_ask(sid), snap)
            if not attempt.linked and not attempt.ended:
                return False
            await sessions.dequeue_waiting(current)
            await self.a.placements.forget_ask(sid)
            if attempt.ended:
                await sessions.delete(sid)
        finally:
            await sessions.unclaim(sid, self.a.holder)
        waited = round(self.clock() - current.create_time, 3)
        if attempt.ended:  # the platform refused it outright: final, the client is told
            metrics.ALLOC_WAITS.labels("unprocessable").inc()
            line.emit("unprocessable", "platform_unprocessable", attempt, waited_s=waited)
            await self.a.notify_once(current)
            self.a.waiters.wake(sid)
            return None
        metrics.ALLOC_WAITS.labels("linked").inc()
        metrics.ALLOC_TIME_TO_SESSION.labels("waited").observe(max(0.0, self.clock() - current.create_time))
        line.emit("linked", ranking_reason(attempt), attempt, waited_s=waited)
        await self.a.notify_current(current)
        self.a.waiters.wake(sid)
        return True

    async def expire(self, record: SessionRecord) -> None:
        """A session that waited its whole bound becomes unprocessable (its webhook is called)."""
        sid = record.session_id
        sessions = self.store.sessions
        if not await sessions.claim(sid, self.a.holder, CLAIM_TTL_S):
            return
        try:
            current = await sessions.get(sid)
            if current is None or current.state is not SessionState.WAITING:
                return
            current.state = SessionState.UNPROCESSABLE
            current.error = f"no deployment with room within {self.a.settings.session_wait_s:g} s"
            await sessions.put(current)
            await sessions.dequeue_waiting(current)
            await sessions.delete(sid)
            await self.a.placements.forget_ask(sid)
        finally:
            await sessions.unclaim(sid, self.a.holder)
        metrics.ALLOC_WAITS.labels("unprocessable").inc()
        metrics.ALLOC_PLACEMENTS.labels("unprocessable").inc()
        waited = round(self.clock() - current.create_time, 3)
        PlacementLine(current).emit("unprocessable", "wait_expired", waited_s=waited)
        self.a.notify(current, None)
        self.a.waiters.wake(sid)
