"""Our linked sessions that the platform no longer has, ended on our side too.

A linked record whose platform session is gone would hold its sockets for ever: its hold counts in
every placement decision and keeps its deployment from being scaled in (invariant 1 protects a
deployment with a session). It happens when a `DELETE /v1/session/{id}` reached the platform but
its answer did not reach us (we answered 503; the client gave up retrying), or when the platform
ended the session on its own. Nothing tells us: the platform sends no callback when a session is
deleted.

The scaler leader runs this every `session_audit_interval_s` (through `Services.audit_steps`,
wired in fleet.bootstrap). It reads our linked records first and the platform's complete session
list second, and compares platform session ids (each record carries its own), so a session the
list does not show was linked before the list was read; one linked less than `GRACE_S` before the
audit began is left for the next look, in case the platform's list lags its creates. Each
candidate is ended under its claim, after reading its record again: a client deleting it, or a
linker changing it, at that moment wins. An unreadable or partial list ends nothing.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from codema.errors import PlatformError
from fleet import metrics
from fleet.logging import event
from fleet.models import SessionRecord, SessionState

if TYPE_CHECKING:
    from fleet.bootstrap import Services

log = logging.getLogger(__name__)

GRACE_S = 30.0  # a session linked more recently than this is not judged by the platform's list
PAGE = 500  # records read from Redis per round trip
CLAIM_TTL_S = 15.0


async def linked_records(services: Services, linked_before: float) -> list[SessionRecord]:
    store, found = services.store, []
    offset = 0
    while True:
        records, total = await store.sessions.page(offset, PAGE)
        found += [
            r
            for r in records
            if r.state is SessionState.LINKED
            and r.platform_session_id
            and r.linked_at is not None
            and r.linked_at <= linked_before
        ]
        offset += PAGE
        if offset >= total:
            return found


async def audit_sessions(services: Services, now: float) -> int:
    """End our linked sessions the platform no longer lists; returns how many were ended."""
    records = await linked_records(services, now - GRACE_S)
    if not records:
        return 0
    try:
        # By the platform's own session ids, which our records carry: nothing here depends on the
        # callback URL (a process with another FLEET_PUBLIC_URL must not see every session gone).
        listed = {s.session_id for s in await services.client.list_sessions()}
    except PlatformError as err:
        event(log, "session_audit_skipped", logging.WARNING, error=type(err).__name__)
        return 0
    ended = 0
    for record in records:
        if record.platform_session_id not in listed:
            ended += await end_gone(services, record)
    if ended:
        event(log, "session_audit", linked=len(records), ended=ended)
    return ended


async def end_gone(services: Services, seen: SessionRecord) -> int:
    """End one session the platform no longer has, unless it changed since it was read."""
    sessions, sid = services.store.sessions, seen.session_id
    holder = f"audit-{sid}"
    if not await sessions.claim(sid, holder, CLAIM_TTL_S):
        return 0  # being changed right now: the next audit looks again
    try:
        record = await sessions.get(sid)
        if (
            record is None
            or record.state is not SessionState.LINKED
            or record.platform_session_id != seen.platform_session_id
        ):
            return 0
        rid = record.deployment_request_id
        await services.store.deployments.release(rid, sid, services.clock())
        record.state = SessionState.TERMINATING
        await sessions.put(record)
        await sessions.delete(sid)
    finally:
        await sessions.unclaim(sid, holder)
    metrics.ALLOC_SESSIONS_GONE.inc()
    event(log, "session_gone_on_platform", logging.WARNING, session=sid, deployment=rid, sockets=record.size)
    return 1
