"""Making a platform session ours on a deployment (`PlacementStore.adopt_session`): at once while
its reservation is live; once it expired, only if it still fits (design.md §5 invariant 5), where
usage the platform already reported may count the session itself. Table of scenarios, then a
property: reserved plus used never exceed the sockets under any interleaving with adoptions."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from fleet.models import StatusReport
from fleet.store import Store
from fleet.store.placement import PlacementStore

NOW = 1_000_000.0
TTL_S = 5.0
LATE = NOW + TTL_S + 1  # the reservation of the session being adopted has expired


async def ready(store: Store, sockets: int = 4, usage: int | None = 0, status: str = "Status.READY") -> None:
    report = StatusReport("d1", status, sockets=sockets, usage=usage, app="game", version="v1", source="poll")
    await store.deployments.apply(report, NOW)


@dataclass(frozen=True)
class Row:
    name: str
    usage: int | None  # the platform's last report
    others: int  # sockets confirmed for other sessions of ours
    reserved_later: int  # reserved by another session after ours expired
    at: float  # when the adoption runs
    status: str
    drain: bool
    expected: tuple[bool, str]


ROWS = [
    # live reservation: its sockets were set aside, whatever else happened
    Row("live_reservation", 0, 0, 0, NOW + 1, "Status.READY", False, (True, "held")),
    # expired; usage 2 counts ours already: max(2, 0 + 2) + 0 = 2 <= 4
    Row("expired_fits", 2, 0, 0, LATE, "Status.READY", False, (True, "fits")),
    # expired; 2 others + 2 ours = 4 <= 4
    Row("expired_fits_exactly", 2, 2, 0, LATE, "Status.READY", False, (True, "fits")),
    # expired; 2 others + 2 ours + 1 reserved by a newcomer = 5 > 4
    Row("expired_taken_meanwhile", 2, 2, 1, LATE, "Status.READY", False, (False, "full")),
    # expired; usage 4 of 4 (counts ours) and a newcomer reserved 1: max(4, 2) + 1 = 5 > 4
    Row("expired_usage_full", 4, 0, 1, LATE, "Status.READY", False, (False, "full")),
    Row("expired_unknown_usage", None, 0, 0, LATE, "Status.READY", False, (False, "unknown")),
    Row("expired_draining", 0, 0, 0, LATE, "Status.READY", True, (False, "draining")),
    Row("expired_terminating", 0, 0, 0, LATE, "Status.TERMINATING", False, (False, "not_ready")),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
async def test_adopt_session(store: Store, row: Row) -> None:
    await ready(store, usage=0)
    d = store.deployments
    assert (await d.reserve("d1", "ours", 2, NOW, TTL_S)).ok
    if row.others:
        assert (await d.reserve("d1", "other", row.others, NOW, TTL_S)).ok
        assert await d.confirm_held("d1", "other", row.others, NOW)
    if row.reserved_later:
        assert (await d.reserve("d1", "newcomer", row.reserved_later, LATE - 0.5, TTL_S)).ok
    await d.apply(StatusReport("d1", row.status, usage=row.usage, source="poll"), NOW)
    if row.usage is None:
        await store.redis.hdel(store.keys.deployment("d1"), "usage")
    if row.drain:
        await store.redis.hset(store.keys.deployment("d1"), "draining", "1")

    placements = PlacementStore(store.redis, store.keys)
    assert await placements.adopt_session("d1", "ours", 2, row.at) == row.expected
    after = await d.get("d1", row.at)
    assert after is not None
    held = await store.redis.hget(store.keys.holds("d1"), "ours")
    assert (held == "2|0|s") if row.expected[0] else held is None  # refused: no hold left behind
    if row.expected[0]:  # what an adoption leaves is within the sockets
        assert after.usage is not None and max(after.usage, after.committed) + after.reserved <= 4


async def test_adopt_is_idempotent(store: Store) -> None:
    await ready(store)
    placements = PlacementStore(store.redis, store.keys)
    assert (await store.deployments.reserve("d1", "ours", 3, NOW, TTL_S)).ok
    assert await placements.adopt_session("d1", "ours", 3, NOW) == (True, "held")
    assert await placements.adopt_session("d1", "ours", 3, LATE) == (True, "held")  # a session now
    after = await store.deployments.get("d1", LATE)
    assert after is not None and after.committed == 3 and after.sessions == 1


# --- property: adoptions never overbook ----------------------------------------------------------
OPS = st.sampled_from(["reserve", "adopt", "release", "usage", "expire", "tick"])
STEPS = st.lists(st.tuples(OPS, st.integers(0, 3), st.integers(1, 3)), min_size=1, max_size=30)


async def _check(store: Store, sockets: int, now: float) -> None:
    raw = await store.redis.hgetall(store.keys.holds("d1"))
    usage = int(await store.redis.hget(store.keys.deployment("d1"), "usage") or 0)
    committed = sum(int(v.split("|")[0]) for v in raw.values() if v.endswith("|s"))
    reserved = sum(
        int(v.split("|")[0]) for v in raw.values() if v.endswith("|r") and int(v.split("|")[1]) > now * 1000
    )
    assert max(usage, committed) + reserved <= sockets, (usage, committed, reserved, sockets, raw)


async def _scenario(redis_url: str, sockets: int, steps: list[tuple[str, int, int]]) -> None:
    redis = Redis.from_url(redis_url, decode_responses=True)
    store = Store(redis, f"ta{uuid.uuid4().hex[:10]}")
    placements = PlacementStore(redis, store.keys)
    now = NOW
    sizes: dict[str, int] = {}
    try:
        await ready(store, sockets=sockets)
        for op, who, size in steps:
            sid = f"s{who}"
            if op == "reserve" and (await store.deployments.reserve("d1", sid, size, now, TTL_S)).ok:
                sizes[sid] = size
            elif op == "adopt" and sid in sizes:  # the platform answered (late or not): adopt it
                await placements.adopt_session("d1", sid, sizes.pop(sid), now)
            elif op == "release":
                sizes.pop(sid, None)
                await store.deployments.release("d1", sid, now)
            elif op == "usage":  # the platform reports what it has of ours, possibly lagging
                raw = await redis.hgetall(store.keys.holds("d1"))
                committed = sum(int(v.split("|")[0]) for v in raw.values() if v.endswith("|s"))
                await store.deployments.apply(StatusReport("d1", None, usage=committed, source="poll"), now)
            elif op == "expire":
                now += TTL_S
            elif op == "tick":
                now += size
            await _check(store, sockets, now)
    finally:
        await store.wipe()
        await redis.aclose()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sockets=st.integers(1, 6), steps=STEPS)
def test_adoptions_never_exceed_sockets(
    redis_url: str, sockets: int, steps: list[tuple[str, int, int]]
) -> None:
    asyncio.run(_scenario(redis_url, sockets, steps))
