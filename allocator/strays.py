"""Our sessions on the platform, found by the session id in their callback URL (allocator.marks),
and the sweeper that deletes the ones nobody links.

A session create whose answer was lost may have made a platform session that our look-up did not
see: the platform's list could not be read, or the platform acted on the request after we looked.
We answered without it (503, or linked on another deployment), so it would hold its sockets
forever. Each such session id is looked at again a few times once its placement attempt ended
(`SWEEP_DELAYS_S`); one read of the platform's list serves every id due. Under the session's claim
(a linker placing it at that moment is never undone), a platform session carrying our id that our
record does not link is deleted. The sweeper lives in the web process that made the call: if that
process stops first, what it had not swept stays (logged when the call was made).
"""

from __future__ import annotations

import asyncio
import logging
import time

from redis.exceptions import RedisError

from allocator.background import Background
from allocator.marks import session_id_in
from codema.client import CodemaClient
from codema.errors import PlatformError
from codema.schemas import SessionSummary
from fleet.logging import event
from fleet.models import SessionState
from fleet.store import Store

log = logging.getLogger(__name__)

SWEEP_DELAYS_S = (3.0, 15.0, 60.0)  # after the attempt: the first look, then late platform actions
MAX_PENDING = 10_000  # ids awaiting a look; beyond this the oldest are given up (logged)
CLAIM_TTL_S = 15.0
MIN_NAP_S = 0.05  # the shortest wait between looks (never a busy loop)


class PlatformSessions:
    def __init__(self, client: CodemaClient, callback_url: str) -> None:
        self.client = client
        self.callback_url = callback_url

    async def ours(self) -> dict[str, list[SessionSummary]]:
        """Platform sessions carrying one of our session ids, by our id. PlatformError when the
        complete list cannot be read: a partial list would hide sessions, so it is never used."""
        found: dict[str, list[SessionSummary]] = {}
        for s in await self.client.list_sessions():
            sid = session_id_in(s.webhook_url, self.callback_url)
            if sid:
                found.setdefault(sid, []).append(s)
        return found


def is_linked(s: SessionSummary, request_id: str) -> bool:
    """The platform placed the session on that deployment."""
    return s.deployment_request_id == request_id and (s.linked or s.status_name == "READY")


class StraySweeper:
    def __init__(
        self,
        platform: PlatformSessions,
        store: Store,
        holder: str,
        background: Background,
        delays_s: tuple[float, ...] = SWEEP_DELAYS_S,
    ) -> None:
        self.platform = platform
        self.store = store
        self.sessions = store.sessions
        self.holder = holder
        self.background = background
        self.delays_s = delays_s
        self._due: dict[str, tuple[int, float]] = {}  # our id -> (looks done, when the next is due)
        self._running = False
        self.deleted = 0  # platform sessions deleted by this process (tests, logs)

    def note(self, session_id: str) -> None:
        """Look for strays of this session id after each of `delays_s` (counted from now)."""
        if len(self._due) >= MAX_PENDING and session_id not in self._due:
            oldest = min(self._due, key=lambda k: self._due[k][1])
            del self._due[oldest]
            event(log, "stray_sweep_dropped", logging.WARNING, session=oldest, pending=len(self._due))
        self._due[session_id] = (0, time.monotonic() + self.delays_s[0])
        if not self._running:
            self._running = True
            self.background.spawn(self._run(), "allocator-stray-sweep")

    def pending(self) -> int:
        return len(self._due)

    def abandon(self) -> None:
        """The process is stopping: name what was not looked at, for the operator."""
        if self._due:
            ids = sorted(self._due)
            event(
                log, "stray_sweep_abandoned", logging.WARNING, pending=len(ids), sessions=",".join(ids[:20])
            )
            self._due.clear()

    async def _run(self) -> None:
        try:
            while self._due:
                wait_s = min(due for _, due in self._due.values()) - time.monotonic()
                if wait_s > 0:  # at most the first delay: an id noted meanwhile is due that soon
                    await asyncio.sleep(min(wait_s, max(self.delays_s[0], MIN_NAP_S)))
                    continue
                await self.sweep_due()
        finally:
            self._running = False

    async def sweep_due(self) -> int:
        """One look for every id due now; returns how many platform sessions were deleted."""
        now = time.monotonic()
        due = [sid for sid, (_, at) in self._due.items() if at <= now]
        if not due:
            return 0
        try:
            ours = await self.platform.ours()
        except PlatformError as err:
            event(log, "stray_sweep_unavailable", logging.WARNING, due=len(due), error=type(err).__name__)
            ours = None
        deleted = 0
        for sid in due:
            found = None
            if ours is not None:
                try:
                    found = await self._tidy(sid, ours.get(sid, []))
                except (RedisError, OSError) as err:
                    event(log, "stray_sweep_store_error", logging.WARNING, error=type(err).__name__)
            deleted += found or 0
            self._advance(sid, looked=found is not None)
        self.deleted += deleted
        return deleted

    def _advance(self, sid: str, *, looked: bool) -> None:
        looks = self._due[sid][0] + 1
        if looks >= len(self.delays_s):
            del self._due[sid]
            if not looked:
                event(log, "stray_sweep_gave_up", logging.WARNING, session=sid)
            return
        self._due[sid] = (looks, time.monotonic() + self.delays_s[looks] - self.delays_s[looks - 1])

    async def _tidy(self, sid: str, on_platform: list[SessionSummary]) -> int | None:
        """Delete the platform sessions of `sid` our record does not link; None: not done (the
        session is being changed, or a delete failed), look again later."""
        if not on_platform:
            return 0
        if not await self.sessions.claim(sid, self.holder, CLAIM_TTL_S):
            return None
        try:
            record = await self.sessions.get(sid)
            if record is None and not await self.store.coord.is_rebuilt():
                return None  # Redis lost its data: the record may come back with the rebuild
            keep = record.platform_session_id if record and record.state is SessionState.LINKED else ""
            deleted = 0
            for s in on_platform:
                if s.session_id == keep:
                    continue
                try:
                    await self.platform.client.delete_session(s.session_id)
                except PlatformError as err:
                    event(log, "stray_delete_failed", logging.WARNING, session=sid, error=type(err).__name__)
                    return None
                deleted += 1
                event(log, "stray_platform_session_deleted", session=sid, deployment=s.deployment_request_id)
            return deleted
        finally:
            await self.sessions.unclaim(sid, self.holder)
