"""What the platform says about our sessions (the session webhook), applied forward only.

Our session state only moves forward: WAITING < READY (linked) < UNPROCESSABLE | ERROR |
TERMINATING. The last three are final and none replaces another, so a late or duplicated callback
never moves a session back, and each transition is applied, and announced on the event stream
(`kind=session`), exactly once: the record is rewritten with WATCH/MULTI and the event is part of
the same transaction. A session the platform calls unprocessable, failed or terminating gives its
sockets back: its hold on the deployment is released.

The platform's session id is mapped to ours (`SessionStore.link_platform_id`) by the allocator
after its create call returns, and the platform may call back before that. Such a callback is
parked under the platform's id (one per state, for `PENDING_KEEP_S`) and applied when the mapping
is recorded: parking and linking are each one atomic script, so one of them always sees the other.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import WatchError

from fleet.models import SessionRecord, SessionState
from fleet.store.coord import EVENTS_MAXLEN
from fleet.store.deployments import DeploymentStore
from fleet.store.keys import Keys

PENDING_KEEP_S = 600.0  # an early callback waits this long for its mapping
MAX_WATCH_RETRIES = 50  # concurrent writers of one session are rare; this bounds a pathological race

FINAL_STATES = (SessionState.UNPROCESSABLE, SessionState.ERROR, SessionState.TERMINATING)
SESSION_RANK = {
    SessionState.WAITING: 0,
    SessionState.LINKED: 1,
    SessionState.UNPROCESSABLE: 2,
    SessionState.ERROR: 2,
    SessionState.TERMINATING: 2,
}

# KEYS: mapping, pending   ARGV: state, report JSON, keep_ms  -> our session id, or nil (parked)
_PARK = """
local sid = redis.call('GET', KEYS[1])
if sid then return sid end
redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return false
"""

# KEYS: mapping, pending   ARGV: session id  -> the parked reports (JSON), now taken
_LINK = """
redis.call('SET', KEYS[1], ARGV[1])
local parked = redis.call('HVALS', KEYS[2])
redis.call('DEL', KEYS[2])
return parked
"""


class SessionContended(RuntimeError):
    """The record kept changing under every attempt (retryable: answer 503, the caller retries)."""


def session_may_advance(current: SessionState, new: SessionState) -> bool:
    """Forward only; the final states share the top rank, so nothing replaces them."""
    return SESSION_RANK[new] > SESSION_RANK[current]


@dataclass(frozen=True)
class SessionReport:
    """One platform session callback, normalised. `state` None: the platform's status was a
    pending one (initializing, seeking, waiting) or unknown, which changes nothing of ours."""

    platform_session_id: str
    state: SessionState | None
    status_raw: str = ""
    error: str = ""
    deployment_request_id: str = ""
    received_at: float = 0.0

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "state": self.state.value if self.state else None})

    @classmethod
    def from_json(cls, raw: str) -> SessionReport:
        doc = json.loads(raw)
        state = SessionState(doc.pop("state")) if doc.get("state") else None
        return cls(state=state, **doc)


@dataclass(frozen=True)
class SessionReportResult:
    session_id: str
    found: bool  # our record exists
    transition: bool
    previous: SessionState | None
    state: SessionState | None  # after the report
    deployment_request_id: str = ""  # where our record says the session is


def advance_record(record: SessionRecord, report: SessionReport, now: float) -> SessionRecord:
    """The record after the report (the same object when the report changes nothing).

    The state moves forward only. Facts that a session keeps for life (when it was first heard
    linked, where, the platform's id) fill empty fields even from a report that came too late to
    move the state, so they end the same in any delivery order.
    """
    new = report.state
    if new is None:
        return record
    changes: dict[str, object] = {}
    if session_may_advance(record.state, new):
        changes["state"] = new
        if new in (SessionState.UNPROCESSABLE, SessionState.ERROR) and report.error:
            changes["error"] = report.error
    if not record.platform_session_id:
        changes["platform_session_id"] = report.platform_session_id
    if new is SessionState.LINKED:
        if record.linked_at is None:
            changes["linked_at"] = now
        if not record.deployment_request_id and report.deployment_request_id:
            changes["deployment_request_id"] = report.deployment_request_id
    return record.model_copy(update=changes) if changes else record


class SessionReports:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        dequeue: Callable[[SessionRecord], Awaitable[bool]],
        keep_s: float = PENDING_KEEP_S,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.keep_s = keep_s
        self._dequeue = dequeue
        self._holds = DeploymentStore(redis, keys)
        self._park = redis.register_script(_PARK)
        self._link = redis.register_script(_LINK)

    async def resolve_or_park(self, report: SessionReport) -> str | None:
        """Our session id for the report's platform id; None when unknown (the report is parked)."""
        keys = [
            self.keys.platform_session(report.platform_session_id),
            self.keys.platform_session_pending(report.platform_session_id),
        ]
        if report.state is None:  # nothing to keep for later
            found = await self.redis.get(keys[0])
            return str(found) if found else None
        args = [report.state.value, report.to_json(), int(self.keep_s * 1000)]
        found = await self._park(keys=keys, args=args)
        return str(found) if found else None

    async def link(self, platform_session_id: str, session_id: str) -> list[SessionReportResult]:
        """Record the mapping and apply what the platform said before it existed."""
        keys = [
            self.keys.platform_session(platform_session_id),
            self.keys.platform_session_pending(platform_session_id),
        ]
        parked = [SessionReport.from_json(raw) for raw in await self._link(keys=keys, args=[session_id])]
        parked.sort(key=lambda r: SESSION_RANK[r.state] if r.state else -1)  # in-order replay
        return [await self.apply(session_id, r, r.received_at) for r in parked]

    async def apply(self, session_id: str, report: SessionReport, now: float) -> SessionReportResult:
        key = self.keys.session(session_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            for _ in range(MAX_WATCH_RETRIES):
                try:
                    await pipe.watch(key)
                    raw = await pipe.get(key)
                    if not raw:
                        await pipe.reset()
                        return SessionReportResult(session_id, False, False, None, None)
                    record = SessionRecord.model_validate_json(raw)
                    updated = advance_record(record, report, now)
                    transition = updated.state is not record.state
                    if updated is record:
                        await pipe.reset()
                    else:
                        pipe.multi()
                        pipe.set(key, updated.model_dump_json(), keepttl=True)
                        if transition:
                            event = self._event(updated)
                            pipe.xadd(self.keys.events(), event, maxlen=EVENTS_MAXLEN, approximate=True)
                        await pipe.execute()
                except WatchError:
                    continue
                if transition and record.state is SessionState.WAITING:
                    await self._dequeue(updated)  # idempotent: only the first caller changes demand
                if (
                    report.state in FINAL_STATES
                    and updated.state in FINAL_STATES
                    and updated.deployment_request_id
                ):
                    # The platform says the session is not (or no longer) on that deployment: its
                    # sockets go back, or a confirmed hold would keep them forever. Idempotent, so a
                    # duplicate repeats it (repairing a crash between the write and this).
                    await self._holds.release(updated.deployment_request_id, session_id, now)
                return SessionReportResult(
                    session_id, True, transition, record.state, updated.state, updated.deployment_request_id
                )
        raise SessionContended(f"session {session_id} kept changing under {MAX_WATCH_RETRIES} attempts")

    @staticmethod
    def _event(record: SessionRecord) -> dict[Any, Any]:  # redis-py's field types are invariant
        return {
            "kind": "session",
            "session_id": record.session_id,
            "state": record.state.value,
            "request_id": record.deployment_request_id,
            "source": "webhook",
        }
