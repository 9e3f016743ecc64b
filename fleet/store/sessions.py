"""Our sessions (JSON documents) and the queue of sessions waiting for capacity."""

from __future__ import annotations

import json

from redis.asyncio import Redis

from fleet.models import SessionRecord
from fleet.store.keys import SEP, Keys
from fleet.store.session_reports import PENDING_KEEP_S, SessionReport, SessionReportResult, SessionReports

ENDED_KEEP_S = 3600  # an ended session stays readable this long

# Waiting sessions and their demand move together: the demand hash changes only when the session
# really entered or left the queue, so a retried or concurrent call never counts it twice.
# ARGV[5] caps the app version's demand (sockets that can still appear); -1: no cap. -> 1 queued,
# 0 already queued, -1 refused: the cap would be exceeded (checked and added in one step, so a
# burst cannot queue more than the policies can ever hold).
_ENQUEUE = """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
local cap = tonumber(ARGV[5])
local demand = tonumber(redis.call('HGET', KEYS[2], ARGV[3]) or '0')
if cap >= 0 and demand + tonumber(ARGV[4]) > cap then return -1 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('HINCRBY', KEYS[2], ARGV[3], ARGV[4])
return 1
"""
_DEQUEUE = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  if redis.call('HINCRBY', KEYS[2], ARGV[2], -tonumber(ARGV[3])) <= 0 then
    redis.call('HDEL', KEYS[2], ARGV[2])
  end
  return 1
end
return 0
"""
_UNCLAIM = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_RESIZE_WAITING = """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('HINCRBY', KEYS[2], ARGV[2], ARGV[3])
  return 1
end
return 0
"""


def _platform_id(raw: str | None) -> str:
    """The platform's session id in a stored record ("" for none or an unreadable record)."""
    try:
        value = json.loads(raw).get("platform_session_id") if raw else None
    except (ValueError, AttributeError):
        return ""
    return value if isinstance(value, str) else ""


class SessionStore:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        ended_keep_s: float = ENDED_KEEP_S,
        early_callback_keep_s: float = PENDING_KEEP_S,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.ended_keep_s = ended_keep_s
        self._enqueue = redis.register_script(_ENQUEUE)
        self._dequeue = redis.register_script(_DEQUEUE)
        self._resize_waiting = redis.register_script(_RESIZE_WAITING)
        self._unclaim = redis.register_script(_UNCLAIM)
        self._reports = SessionReports(redis, keys, self.dequeue_waiting, early_callback_keep_s)

    async def put(self, record: SessionRecord) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self.keys.session(record.session_id), record.model_dump_json())
            pipe.zadd(self.keys.sessions(), {record.session_id: record.create_time})
            await pipe.execute()

    async def create(self, record: SessionRecord) -> bool:
        """False when the id is taken."""
        ok = await self.redis.set(self.keys.session(record.session_id), record.model_dump_json(), nx=True)
        if ok:
            await self.redis.zadd(self.keys.sessions(), {record.session_id: record.create_time})
        return bool(ok)

    async def get(self, session_id: str) -> SessionRecord | None:
        raw = await self.redis.get(self.keys.session(session_id))
        return SessionRecord.model_validate_json(raw) if raw else None

    async def get_many(self, ids: list[str]) -> list[SessionRecord]:
        if not ids:
            return []
        raw = await self.redis.mget([self.keys.session(i) for i in ids])
        return [SessionRecord.model_validate_json(r) for r in raw if r]

    async def page(self, offset: int, limit: int) -> tuple[list[SessionRecord], int]:
        total = int(await self.redis.zcard(self.keys.sessions()))
        ids = await self.redis.zrange(self.keys.sessions(), offset, offset + limit - 1)
        return await self.get_many(list(ids)), total

    async def delete(self, session_id: str) -> None:
        """Not listed any more, readable for `ended_keep_s`; the platform id's mapping (kept without
        a TTL while the session lives) expires with it, or every session ever made would leave one."""
        platform_id = _platform_id(await self.redis.get(self.keys.session(session_id)))
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.expire(self.keys.session(session_id), int(self.ended_keep_s))
            if platform_id:
                pipe.expire(self.keys.platform_session(platform_id), int(self.ended_keep_s))
            pipe.zrem(self.keys.sessions(), session_id)
            pipe.zrem(self.keys.waiting_sessions(), session_id)
            await pipe.execute()

    # --- the platform's id beside ours --------------------------------------------------------
    async def link_platform_id(self, platform_session_id: str, session_id: str) -> list[SessionReportResult]:
        """Map the platform's id to ours, then apply the platform's callbacks that came before the
        mapping (fleet.store.session_reports). Call it once our record is stored."""
        return await self._reports.link(platform_session_id, session_id)

    async def by_platform_id(self, platform_session_id: str) -> str | None:
        value = await self.redis.get(self.keys.platform_session(platform_session_id))
        return str(value) if value else None

    # --- waiting for capacity -----------------------------------------------------------------
    async def add_waiting(self, session_id: str, deadline: float) -> None:
        await self.redis.zadd(self.keys.waiting_sessions(), {session_id: deadline})

    async def remove_waiting(self, session_id: str) -> bool:
        return bool(await self.redis.zrem(self.keys.waiting_sessions(), session_id))

    async def waiting(self, limit: int = 1000) -> list[tuple[str, float]]:
        raw = await self.redis.zrange(self.keys.waiting_sessions(), 0, limit - 1, withscores=True)
        return [(str(m), float(s)) for m, s in raw]

    # --- waiting with demand (allocator) --------------------------------------------------------
    # The scaler reads `waiting()` plus each record's `size` and `origin`; `waiting_demand` is the
    # same total per app version, kept in step atomically for the allocator's capacity outlook.
    async def enqueue_waiting(self, record: SessionRecord, cap: int | None = None) -> bool:
        """Queue a WAITING record by its deadline and add its size to the app version's demand;
        False (nothing changed) when the demand would exceed `cap` sockets."""
        keys = [self.keys.waiting_sessions(), self.keys.waiting_demand()]
        args: list[str | float] = [
            record.session_id,
            record.deadline or 0.0,
            record.app + SEP + record.version,
            record.size,
            -1 if cap is None else cap,
        ]
        return int(await self._enqueue(keys=keys, args=args)) >= 0

    async def dequeue_waiting(self, record: SessionRecord) -> bool:
        """Leave the queue (linked, expired, deleted); True for the one caller that removed it."""
        keys = [self.keys.waiting_sessions(), self.keys.waiting_demand()]
        args: list[str | int] = [record.session_id, record.app + SEP + record.version, record.size]
        return bool(await self._dequeue(keys=keys, args=args))

    async def resize_waiting(self, record: SessionRecord, delta: int) -> bool:
        keys = [self.keys.waiting_sessions(), self.keys.waiting_demand()]
        args: list[str | int] = [record.session_id, record.app + SEP + record.version, delta]
        return bool(await self._resize_waiting(keys=keys, args=args))

    async def waiting_demand(self, app: str, version: str) -> int:
        """Sockets waiting for capacity for one app version."""
        return int(await self.redis.hget(self.keys.waiting_demand(), app + SEP + version) or 0)

    async def claim(self, session_id: str, holder: str, ttl_s: float) -> bool:
        """Exclusive right to change a session for `ttl_s` (linking, deleting, resizing)."""
        key = self.keys.session_claim(session_id)
        return bool(await self.redis.set(key, holder, nx=True, px=int(ttl_s * 1000)))

    async def unclaim(self, session_id: str, holder: str) -> None:
        """Drop our claim; one that expired and was taken by another process stays theirs."""
        await self._unclaim(keys=[self.keys.session_claim(session_id)], args=[holder])

    # --- platform session reports (the session webhook; rules in fleet.store.session_reports) ---
    async def apply_platform_report(
        self, session_id: str, report: SessionReport, now: float
    ) -> SessionReportResult:
        """Apply a platform report forward only (WAITING -> READY / UNPROCESSABLE / ERROR; final
        states stay); one `kind=session` event per transition, in the same transaction."""
        return await self._reports.apply(session_id, report, now)

    async def resolve_platform_report(self, report: SessionReport) -> str | None:
        """Our session id for the report, or None: then the report is parked until the mapping
        is recorded by `link_platform_id`."""
        return await self._reports.resolve_or_park(report)
