"""A deleted session's platform-id mapping expires with its record (found by the soak: without
it every session ever made left one `psession:<platform id>` key without a TTL in Redis)."""

from __future__ import annotations

from fleet.models import SessionRecord, SessionState
from fleet.store import Store
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
