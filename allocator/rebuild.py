"""Our sessions rebuilt from the platform after Redis lost its data (design.md §5 invariant 7).

The scaler rebuilds deployments from the platform's deployment list; without this step the sessions
placed before the loss would be forgotten: `GET`/`DELETE /v1/session/{id}` would answer 404, their
sockets would not count in our holds, and the platform sessions would stay for ever, keeping their
deployments from being scaled in. Every platform session we create carries our session id in its
callback URL (allocator.marks), so the platform's session list says which are ours.

For each of ours that Redis no longer knows: a linked one gets its record back (state from the
platform's status, deployment and size from the list: one socket per player for Seat, one for
Match; app and version from the deployment), its platform id mapped (callbacks parked meanwhile are
applied) and its hold confirmed on the deployment, so capacity is counted as before the loss. The
platform placed it, so the hold is a fact, not a new placement: it is recorded even where our
other holds would not leave room. One the platform ended (unprocessable, error) comes back
readable for an hour and unlisted, as it was. Players' addresses are not in the list: the record
carries none, and the session API reads them from the platform when they are needed
(allocator.lifecycle). Platform sessions that are not ours are left alone: the platform's usage
counts them.

Called by the scaler (through `Services.rebuild_steps`, wired in fleet.bootstrap) after the
deployments were rebuilt and before Redis is marked rebuilt; False means "not yet" (the platform
could not be read) and the whole rebuild runs again. Each step is idempotent.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import TYPE_CHECKING

from allocator.strays import PlatformSessions
from codema.errors import PlatformError, PlatformRejected, PlatformUnavailable
from codema.schemas import SessionSummary
from fleet.callbacks import callback_url
from fleet.logging import event
from fleet.models import Deployment, SessionRecord, SessionState, session_size

if TYPE_CHECKING:
    from fleet.bootstrap import Services

log = logging.getLogger(__name__)

# The platform's session status (upper-case suffix) -> ours; pending and ending ones are skipped.
PLATFORM_STATES = {
    "READY": SessionState.LINKED,
    "LINKED": SessionState.LINKED,
    "UNPROCESSABLE": SessionState.UNPROCESSABLE,
    "ERROR": SessionState.ERROR,
}


class NotYet(Exception):
    """The platform could not be read now: the rebuild runs again later."""


def state_of(s: SessionSummary) -> SessionState | None:
    state = PLATFORM_STATES.get(s.status_name)
    if state is None and s.linked and not s.status:
        return SessionState.LINKED
    return state


def pick(found: list[SessionSummary]) -> SessionSummary:
    """The platform session our record should name: a linked one first (others carrying the same
    id are leftovers of a lost answer)."""
    linked = [s for s in found if state_of(s) is SessionState.LINKED]
    return (linked or found)[0]


async def rebuild_sessions(services: Services, now: float) -> bool:
    platform = PlatformSessions(services.client, callback_url(services.settings, "sessions"))
    try:
        ours = await platform.ours()
    except PlatformError as err:
        event(log, "session_rebuild_waiting", logging.WARNING, error=type(err).__name__)
        return False
    outcomes: Counter[str] = Counter()
    try:
        for sid, found in sorted(ours.items()):
            outcomes[await rebuild_one(services, sid, pick(found), now)] += 1
    except NotYet as err:
        event(log, "session_rebuild_waiting", logging.WARNING, error=str(err))
        return False
    event(log, "sessions_rebuilt", ours=len(ours), **dict(sorted(outcomes.items())))
    return True


async def rebuild_one(services: Services, sid: str, s: SessionSummary, now: float) -> str:
    """What became of one platform session of ours: rebuilt, ended, known or a skip reason."""
    store = services.store
    if await store.sessions.get(sid) is not None:
        return "known"  # written since the loss (a web process placed or read it meanwhile)
    state = state_of(s)
    if state is None:
        return "skipped_status"
    rid = s.deployment_request_id
    d = await deployment_of(services, rid, now) if rid else None
    if state is SessionState.LINKED and (d is None or d.status is None or d.status.terminal):
        return "skipped_deployment"
    count = await players(services, s)
    if count is None:
        return "skipped_gone"
    record = SessionRecord(
        session_id=sid,
        platform_session_id=s.session_id,
        custom_id=s.custom_id,
        app=d.app if d else "",
        version=d.version if d else "",
        kind=s.kind,
        state=state,
        size=session_size(s.kind, count),
        deployment_request_id=rid if d else "",
        create_time=now,  # the platform's list does not say; the rebuild is the best we know
        linked_at=now if state is SessionState.LINKED else None,
    )
    if state is SessionState.LINKED:
        return await _rebuild_linked(services, record)
    await store.sessions.put(record)
    await store.sessions.link_platform_id(s.session_id, sid)
    await store.sessions.delete(sid)  # readable for a while, not listed, the mapping too: as before the loss
    return "ended"


async def _rebuild_linked(services: Services, record: SessionRecord) -> str:
    store, rid, sid = services.store, record.deployment_request_id, record.session_id
    # The hold first: a crash before the record leaves the hold, and the next run writes the record
    # (the rebuild runs until it is complete); a record without its hold would never get it.
    await store.deployments.confirm(rid, sid, record.size)
    if not await store.sessions.create(record):
        current = await store.sessions.get(sid)
        if (
            current is None
            or current.state is not SessionState.LINKED
            or current.deployment_request_id != rid
        ):
            await store.deployments.release(rid, sid, services.clock())
        return "known"
    # Callbacks that came while the mapping was lost were parked: a failure among them ends the
    # session now (and releases its hold, in the store).
    results = await store.sessions.link_platform_id(record.platform_session_id, sid)
    ended = [r for r in results if r.state is not None and r.state is not SessionState.LINKED]
    event(log, "session_rebuilt", session=sid, deployment=rid, size=record.size, ended=bool(ended))
    return "ended" if ended else "rebuilt"


async def deployment_of(services: Services, rid: str, now: float) -> Deployment | None:
    """The deployment as we know it after the deployments' rebuild; one we do not own (or did not
    adopt) is read from the platform once, as a status poll would."""
    store = services.store
    d = await store.deployments.get(rid, now)
    if d is not None and d.app and d.version:
        return d
    try:
        status = await services.client.status(rid)
    except PlatformUnavailable as err:
        raise NotYet(f"deployment status: {type(err).__name__}") from err
    except PlatformRejected:  # gone (404, 410) or refused for good: nothing to place it on
        return None
    await store.deployments.apply(status.to_report("poll"), now)
    return await store.deployments.get(rid, now)


async def players(services: Services, s: SessionSummary) -> int | None:
    """How many players the platform says the session has (its list says it, or its users do);
    None when the session is gone meanwhile."""
    if s.user_count is not None:
        return s.user_count
    try:
        return len(await services.client.get_session_users(s.session_id))
    except PlatformUnavailable as err:
        raise NotYet(f"session users: {type(err).__name__}") from err
    except PlatformRejected:
        return None
