"""Coordination in Redis: the event stream, the scaler lease with its fencing token, the
account-wide create window and the "state was rebuilt" marker."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from redis.asyncio import Redis

from fleet.store.keys import Keys

EVENTS_MAXLEN = 10_000
READ_MARGIN_S = 5.0  # a blocking read gives Redis this long past its block time to answer

# The token comes from Redis TIME (microseconds), so it never goes backwards even when Redis
# has lost the fence key with the rest of its data; it also never goes below the last fence.
_ACQUIRE = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local holder, token = string.match(cur, '^(.*)|(%d+)$')
  if holder == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return {1, token, 0}
  end
  return {0, token or '0', 0}
end
local t = redis.call('TIME')
local token = tonumber(t[1]) * 1000000 + tonumber(t[2])
local fence = tonumber(redis.call('GET', KEYS[2]) or '0')
if token <= fence then token = fence + 1 end
token = string.format('%d', token)
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. token, 'PX', ARGV[2])
redis.call('SET', KEYS[2], token)
redis.call('INCR', KEYS[3])
return {1, token, 1}
"""

_RELEASE = """
local cur = redis.call('GET', KEYS[1])
if cur and string.match(cur, '^(.*)|%d+$') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# Account-wide creates-per-minute window: admit only while fewer than the cap happened in 60 s.
_ADMIT_CREATE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[1]) - 60000)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[3])
redis.call('PEXPIRE', KEYS[1], 120000)
return 1
"""


@dataclass(frozen=True)
class Lease:
    held: bool
    token: int
    changed: bool  # this call made a new leader


@dataclass(frozen=True)
class Event:
    id: str
    kind: str
    fields: dict[str, str]


class Coordination:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._acquire = redis.register_script(_ACQUIRE)
        self._release = redis.register_script(_RELEASE)
        self._admit = redis.register_script(_ADMIT_CREATE)

    # --- events -------------------------------------------------------------------------------
    async def publish(self, kind: str, **fields: str) -> str:
        return str(
            await self.redis.xadd(
                self.keys.events(), {"kind": kind, **fields}, maxlen=EVENTS_MAXLEN, approximate=True
            )
        )

    async def last_event_id(self) -> str:
        info = (
            await self.redis.xinfo_stream(self.keys.events())
            if await self.redis.exists(self.keys.events())
            else None
        )
        return str(info["last-generated-id"]) if info else "0-0"

    async def read_events(self, redis: Redis, after: str, block_ms: int, count: int = 500) -> list[Event]:
        """Block up to block_ms for events after `after`, on a connection of its own made with
        `blocking_reader_client` (no socket timeout). The read is bounded here instead: redis-py's
        own socket timeout, cancelled from outside at the wrong moment, can leave the task waiting
        for ever (seen on Python 3.11 with redis-py 7 and 8: a stopping web process and a killed
        scaler hung), while a cancellation through this `asyncio.timeout` always ends it. A Redis
        that stops answering raises TimeoutError (an OSError) after block + READ_MARGIN_S."""
        async with asyncio.timeout(block_ms / 1000 + READ_MARGIN_S):
            out = await redis.xread({self.keys.events(): after}, count=count, block=block_ms)
        events: list[Event] = []
        for _stream, entries in out or []:
            for entry_id, fields in entries:
                events.append(Event(str(entry_id), fields.get("kind", ""), dict(fields)))
        return events

    # --- lease --------------------------------------------------------------------------------
    async def acquire_lease(self, holder: str, ttl_s: float) -> Lease:
        k = self.keys
        held, token, changed = await self._acquire(
            keys=[k.lease(), k.fence(), k.leader_changes()], args=[holder, int(ttl_s * 1000)]
        )
        return Lease(bool(int(held)), int(token), bool(int(changed)))

    async def release_lease(self, holder: str) -> None:
        await self._release(keys=[self.keys.lease()], args=[holder])

    async def lease_holder(self) -> tuple[str, int] | None:
        raw = await self.redis.get(self.keys.lease())
        if not raw:
            return None
        holder, _, token = raw.rpartition("|")
        return holder, int(token or 0)

    async def fence(self) -> int:
        return int(await self.redis.get(self.keys.fence()) or 0)

    async def token_is_current(self, token: int) -> bool:
        """A job carrying an older token than the latest grant comes from a deposed leader."""
        return token >= await self.fence()

    async def leader_changes(self) -> int:
        return int(await self.redis.get(self.keys.leader_changes()) or 0)

    # --- account caps -------------------------------------------------------------------------
    async def admit_create(self, now: float, cap_per_minute: int, intent: str) -> bool:
        return bool(
            await self._admit(
                keys=[self.keys.creates_window()], args=[int(now * 1000), cap_per_minute, intent]
            )
        )

    # --- Redis loss detection -----------------------------------------------------------------
    async def is_rebuilt(self) -> bool:
        return bool(await self.redis.exists(self.keys.rebuilt()))

    async def mark_rebuilt(self, now: float) -> None:
        await self.redis.set(self.keys.rebuilt(), repr(now))
