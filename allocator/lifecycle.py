"""A session's life through the API: create (place now, or wait, or refuse), read, users, delete.

Changes to an existing session (delete, users, linking by the linker) take the session's claim in
Redis first, so two processes never change the same session at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from allocator.outlook import Outcome
from allocator.schemas import SessionCreateIn
from allocator.service import Allocator, PlacementLine, new_session_id, ranking_reason
from codema.errors import PlatformError, PlatformRejected, PlatformUnavailable
from fleet import metrics
from fleet.http import HttpError
from fleet.logging import event
from fleet.models import Deployment, SessionRecord, SessionState, normalise_kind, session_size

log = logging.getLogger(__name__)

RETRY_AFTER_S = "2"
CLAIM_TTL_S = 15.0
CLAIM_PATIENCE_S = 3.0
NO_CAPACITY_RETRY_AFTER_S = 30


def unavailable(what: str = "platform unavailable, retry shortly") -> HttpError:
    return HttpError(503, what, {"Retry-After": RETRY_AFTER_S})


def players_unknown(record: SessionRecord) -> bool:
    """A linked session without a single address: rebuilt from the platform's list after Redis lost
    its data (allocator.rebuild), which does not carry them. The platform has them."""
    return (
        record.state is SessionState.LINKED
        and bool(record.platform_session_id)
        and not (record.ips or record.geo)
    )


def constraints_of(body: SessionCreateIn) -> dict[str, Any]:
    """Location constraints of a request, kept with a waiting session for the linker."""
    doc: dict[str, Any] = {
        k: v for k in ("city", "country", "continent", "administrative_division") if (v := getattr(body, k))
    }
    if body.filters:
        doc["filters"] = [f.model_dump() for f in body.filters]
    if body.location is not None:
        doc["location"] = body.location.model_dump()
    return doc


class Sessions:
    def __init__(self, allocator: Allocator) -> None:
        self.a = allocator
        self.store = allocator.store
        self.clock = allocator.clock

    # --- create ---------------------------------------------------------------------------------
    async def create(self, body: SessionCreateIn, wait_s: float) -> SessionRecord:
        ips, geo = body.checked_ips()
        facts = await self.a.apps.get(body.app_name, body.version_name)
        kind = normalise_kind(facts.kind)
        record = SessionRecord(
            session_id=new_session_id(),
            app=body.app_name,
            version=body.version_name,
            kind=kind,
            ips=ips,
            geo=geo,
            selectors=[s.model_dump(exclude_none=True) for s in body.selectors],
            webhook_url=body.webhook_url or "",
            requested_deployment=body.deployment_request_id or "",
            size=session_size(kind, len(ips) + len(geo)),
            create_time=self.clock(),
        )
        line = PlacementLine(record)
        try:
            placed = await self._place(record, constraints_of(body), facts.sockets, line)
        except BaseException as err:  # cancelled included: every attempt ends in one line
            line.emit("error", type(err).__name__)  # an outcome already logged is not logged again
            raise
        if placed is not None:
            return placed
        return await self.hold(record, wait_s) if wait_s > 0 else record

    async def _place(
        self, record: SessionRecord, constraints: dict[str, Any], sockets: int | None, line: PlacementLine
    ) -> SessionRecord | None:
        """Place now, or refuse, or queue the session to wait (None). Logs the outcome line."""
        attempt = await self.a.attempt(record, constraints)
        reason = ranking_reason(attempt)
        if attempt.linked:
            line.emit("linked", reason, attempt)
            return await self._placed(record)
        if attempt.ended:  # the platform refused it outright (its callback came first): final
            metrics.ALLOC_PLACEMENTS.labels("unprocessable").inc()
            line.emit("unprocessable", "platform_unprocessable", attempt)
            await self.store.sessions.delete(record.session_id)  # readable for a while, not listed
            await self.a.notify_once(record)
            return record
        if attempt.platform_down:
            metrics.ALLOC_PLACEMENTS.labels("error").inc()
            line.emit("error", "platform_unavailable", attempt)
            raise unavailable()
        if attempt.refused:
            metrics.ALLOC_PLACEMENTS.labels("error").inc()
            line.emit("error", "platform_refused", attempt)
            raise HttpError(422, attempt.refused)
        if record.requested_deployment:
            line.emit("unprocessable", reason, attempt)
            return await self._unprocessable(
                record, f"deployment {record.requested_deployment} cannot take it"
            )
        view = await self.a.capacity_outlook(record, sockets)
        if not view.can_wait or not await self.a.start_waiting(record, constraints, view.headroom):
            # Refused by the outlook, or by the atomic admission: earlier sessions took the headroom.
            why = view.outcome.value if not view.can_wait else Outcome.AT_MAXIMUM.value
            metrics.ALLOC_PLACEMENTS.labels("refused").inc()
            line.emit("refused", reason, attempt, outlook=why, headroom=view.headroom, waiting=view.waiting)
            raise HttpError(
                503,
                f"no deployment of {record.app} {record.version} has room and no fleet policy can add one"
                f" ({why})",
                {"Retry-After": str(NO_CAPACITY_RETRY_AFTER_S)},
            )
        metrics.ALLOC_PLACEMENTS.labels("waiting").inc()
        line.emit("waiting", reason, attempt, headroom=view.headroom, waiting=view.waiting)
        return None

    async def _placed(self, record: SessionRecord) -> SessionRecord:
        metrics.ALLOC_PLACEMENTS.labels("linked").inc()
        metrics.ALLOC_TIME_TO_SESSION.labels("immediate").observe(max(0.0, self.clock() - record.create_time))
        if record.webhook_url:
            await self.a.notify_current(record)
        return record

    async def _unprocessable(self, record: SessionRecord, why: str) -> SessionRecord:
        record.state = SessionState.UNPROCESSABLE
        record.error = why
        await self.store.sessions.put(record)
        await self.store.sessions.delete(record.session_id)  # readable for a while, not listed
        metrics.ALLOC_PLACEMENTS.labels("unprocessable").inc()
        self.a.notify(record, None)
        return record

    async def hold(self, record: SessionRecord, wait_s: float) -> SessionRecord:
        """The record once it is no longer waiting, or as it is after `wait_s`."""
        deadline = self.clock() + wait_s
        sid = record.session_id
        try:
            while True:
                current = await self.store.sessions.get(sid)
                if current is None or current.state is not SessionState.WAITING:
                    return current or record
                left = deadline - self.clock()
                if left <= 0:
                    return current
                await self.a.waiters.pause(sid, left)
        finally:
            self.a.waiters.discard(sid)

    # --- read -----------------------------------------------------------------------------------
    async def get(self, session_id: str) -> tuple[SessionRecord, Deployment | None]:
        record = await self.store.sessions.get(session_id)
        if record is None or record.state is SessionState.TERMINATING:
            raise HttpError(404, f"session {session_id} not found")
        if players_unknown(record):
            record = await self._read_players(record)
        d = None
        if record.state is SessionState.LINKED and record.deployment_request_id:
            d = await self.store.deployments.get(record.deployment_request_id, self.clock())
        return record, d

    async def _read_players(self, record: SessionRecord) -> SessionRecord:
        """The players of a rebuilt session, from the platform; kept when nobody else is changing
        the session. A platform that cannot answer leaves the record as it is (a read is no reason
        to fail)."""
        try:
            record.ips = await self._platform_players(record)
        except HttpError:
            return record
        sid = record.session_id
        if await self.store.sessions.claim(sid, self.a.holder, CLAIM_TTL_S):
            try:
                current = await self.store.sessions.get(sid)
                if current is not None and players_unknown(current):
                    current.ips = record.ips
                    await self.store.sessions.put(current)
            finally:
                await self.store.sessions.unclaim(sid, self.a.holder)
        return record

    async def _platform_players(self, record: SessionRecord) -> list[str]:
        try:
            users = await self.a.client.get_session_users(record.platform_session_id)
        except PlatformUnavailable:
            raise unavailable() from None
        except PlatformRejected as err:
            raise HttpError(404, f"session {record.session_id} not found on the platform: {err}") from None
        return [u.ip for u in users]

    # --- claims ---------------------------------------------------------------------------------
    @asynccontextmanager
    async def claimed(self, session_id: str, ended_status: int = 404) -> AsyncIterator[SessionRecord]:
        """The session's current record while we hold its claim (the linker may hold it briefly)."""
        sessions = self.store.sessions
        give_up = self.clock() + CLAIM_PATIENCE_S
        while not await sessions.claim(session_id, self.a.holder, CLAIM_TTL_S):
            if self.clock() > give_up:
                raise HttpError(409, f"session {session_id} is being changed, retry shortly")
            await asyncio.sleep(0.05)
        try:
            record = await sessions.get(session_id)
            if record is None:
                raise HttpError(404, f"session {session_id} not found")
            if record.state is SessionState.TERMINATING:
                raise HttpError(ended_status, f"session {session_id} not found")
            yield record
        finally:
            await sessions.unclaim(session_id, self.a.holder)

    # --- delete ---------------------------------------------------------------------------------
    async def delete(self, session_id: str) -> SessionRecord:
        async with self.claimed(session_id, ended_status=410) as record:
            if record.state is SessionState.LINKED:
                try:
                    await self.a.client.delete_session(record.platform_session_id)
                except PlatformUnavailable:
                    raise unavailable() from None
                except PlatformRejected as err:
                    event(log, "session_delete_refused", logging.WARNING, session=session_id, error=str(err))
                await self.store.deployments.release(record.deployment_request_id, session_id, self.clock())
                self.a.candidates.invalidate(record.app, record.version)
                self.a.wake_linker()
            elif record.state is SessionState.WAITING:
                await self.store.sessions.dequeue_waiting(record)
                await self.a.placements.forget_ask(session_id)
                metrics.ALLOC_WAITS.labels("deleted").inc()
            elif record.platform_session_id:  # unprocessable or in error on the platform: tidy up
                with contextlib.suppress(PlatformError):
                    await self.a.client.delete_session(record.platform_session_id)
            record.state = SessionState.TERMINATING
            await self.store.sessions.put(record)
            await self.store.sessions.delete(session_id)
        event(log, "session_deleted", session=session_id, deployment=record.deployment_request_id)
        return record

    # --- users ----------------------------------------------------------------------------------
    async def add_users(self, session_id: str, ips: list[str]) -> SessionRecord:
        async with self.claimed(session_id) as record:
            if players_unknown(record):  # sizes below count from the players we know
                record.ips = await self._platform_players(record)
            new = [ip for ip in dict.fromkeys(ips) if ip not in record.ips]
            if not new:
                return record
            grow = session_size(record.kind, len(record.ips) + len(record.geo) + len(new)) - record.size
            if record.state is SessionState.LINKED:
                await self._grow_linked(record, new, grow)
            elif record.state is SessionState.WAITING:
                await self.store.sessions.resize_waiting(record, grow)
            record.ips = [*record.ips, *new]
            record.size += grow
            await self.store.sessions.put(record)
            return record

    async def _grow_linked(self, record: SessionRecord, new: list[str], grow: int) -> None:
        rid, sid, now = record.deployment_request_id, record.session_id, self.clock()
        if grow:
            held = await self.store.deployments.resize(rid, sid, record.size + grow, now)
            if not held.ok:
                raise HttpError(422, f"ip_list: deployment {rid} has no free sockets for {grow} more players")
        try:
            await self.a.client.add_session_users(record.platform_session_id, new)
        except (PlatformRejected, PlatformUnavailable) as err:
            if grow:
                await self.store.deployments.resize(rid, sid, record.size, now)
            if isinstance(err, PlatformUnavailable):
                raise unavailable() from None
            raise HttpError(422, f"ip_list: the platform refused the players: {err}") from None
        self.a.candidates.invalidate(record.app, record.version)

    async def remove_users(self, session_id: str, ips: list[str]) -> SessionRecord:
        async with self.claimed(session_id) as record:
            if players_unknown(record):
                record.ips = await self._platform_players(record)
            gone = set(ips)
            kept = [ip for ip in record.ips if ip not in gone]
            kept_geo = [g for g in record.geo if g["ip"] not in gone]
            if len(kept) + len(kept_geo) == len(record.ips) + len(record.geo):
                return record
            size = session_size(record.kind, len(kept) + len(kept_geo))
            if record.state is SessionState.LINKED:
                try:
                    await self.a.client.remove_session_users(record.platform_session_id, sorted(gone))
                except PlatformUnavailable:
                    raise unavailable() from None
                except PlatformRejected as err:
                    raise HttpError(422, f"ip_list: the platform refused: {err}") from None
                await self.store.deployments.resize(
                    record.deployment_request_id, session_id, size, self.clock()
                )
                self.a.wake_linker()
            elif record.state is SessionState.WAITING:
                await self.store.sessions.resize_waiting(record, size - record.size)
            record.ips, record.geo, record.size = kept, kept_geo, size
            await self.store.sessions.put(record)
            return record
