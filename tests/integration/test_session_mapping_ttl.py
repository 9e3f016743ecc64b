"""A deleted session's platform-id mapping expires with its record (found by the soak: without
it every session ever made left one `psession:<platform id>` key without a TTL in Redis)."""

from __future__ import annotations

import time

import pytest
from pydantic import ValidationError
from redis.asyncio import Redis

from fleet.bootstrap import retention_of
from fleet.models import SessionRecord, SessionState
from fleet.settings import Settings
from fleet.store import Store
from fleet.store.session_reports import SessionReport
from fleet.store.sessions import ENDED_KEEP_S


async def test_delete_expires_the_platform_mapping_with_the_record(store: Store) -> None:
    record = SessionRecord(session_id="ours", app="a", version="v", state=SessionState.LINKED)
    await store.sessions.put(record)
    await store.sessions.link_platform_id("plat-1", "ours")
    await store.sessions.put(record.model_copy(update={"platform_session_id": "plat-1"}))
    mapping = store.keys.platform_session("plat-1")
    assert await store.redis.ttl(mapping) == -1  # kept while the session lives
    await store.sessions.delete("ours")
    assert 0 < await store.redis.ttl(mapping) <= ENDED_KEEP_S
    assert 0 < await store.redis.ttl(store.keys.session("ours")) <= ENDED_KEEP_S
    assert await store.sessions.by_platform_id("plat-1") == "ours"  # still readable meanwhile


async def test_delete_of_a_session_never_linked_or_already_gone_changes_no_mapping(store: Store) -> None:
    await store.sessions.put(SessionRecord(session_id="waiting", app="a", version="v"))
    await store.sessions.delete("waiting")
    await store.sessions.delete("never-existed")
    assert 0 < await store.redis.ttl(store.keys.session("waiting")) <= ENDED_KEEP_S
    assert not await store.redis.exists(store.keys.session("never-existed"))


async def test_retention_comes_from_the_settings(redis: Redis, prefix: str) -> None:
    """FLEET_ENDED_SESSION_KEEP_S, FLEET_TELEMETRY_KEEP_S and FLEET_EARLY_CALLBACK_KEEP_S bound the
    records each family keeps (the soak runs with them shorter than its warm-up)."""
    settings = Settings(
        redis_url="redis://unused", ended_session_keep_s=40, telemetry_keep_s=30, early_callback_keep_s=20
    )
    store = Store(redis, prefix, retention_of(settings))
    try:
        await store.sessions.put(SessionRecord(session_id="s", app="a", version="v"))
        await store.sessions.delete("s")
        assert 30 < await store.redis.ttl(store.keys.session("s")) <= 40
        await store.telemetry.record_result("k", ["1.2.3.4:d1:10"], partial=False, now=time.time())
        assert 20 < await store.redis.ttl(store.keys.telemetry("k")) <= 30
        early = SessionReport(
            platform_session_id="p-early", state=SessionState.LINKED, received_at=time.time()
        )
        assert await store.sessions.resolve_platform_report(early) is None  # parked: no mapping yet
        assert 10 < await store.redis.ttl(store.keys.platform_session_pending("p-early")) <= 20
    finally:
        await store.wipe()


def test_retention_must_be_positive() -> None:
    with pytest.raises(ValidationError, match="ended_session_keep_s"):
        Settings(redis_url="redis://unused", ended_session_keep_s=0)
