"""Our sessions (JSON documents) and the queue of sessions waiting for capacity."""

from __future__ import annotations

from redis.asyncio import Redis

from fleet.models import SessionRecord
from fleet.store.keys import Keys

ENDED_KEEP_S = 3600  # an ended session stays readable this long


class SessionStore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

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
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.expire(self.keys.session(session_id), ENDED_KEEP_S)
            pipe.zrem(self.keys.sessions(), session_id)
            pipe.zrem(self.keys.waiting_sessions(), session_id)
            await pipe.execute()

    # --- the platform's id beside ours --------------------------------------------------------
    async def link_platform_id(self, platform_session_id: str, session_id: str) -> None:
        await self.redis.set(self.keys.platform_session(platform_session_id), session_id)

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
