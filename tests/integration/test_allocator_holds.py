"""Reservations against a real Redis: they expire and free their sockets, a late confirm cannot
overbook, draining and reserving never both win, and (property) reserved plus used sockets never
exceed a deployment's sockets under random interleavings of every hold operation."""

from __future__ import annotations

import asyncio
import random
import uuid

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from fleet.models import StatusReport
from fleet.store import Store

NOW = 1_000_000.0
TTL_S = 15.0


async def ready(store: Store, rid: str = "d1", sockets: int = 4, usage: int = 0) -> None:
    report = StatusReport(
        rid, "Status.READY", sockets=sockets, usage=usage, app="game", version="v1", source="poll"
    )
    await store.deployments.apply(report, NOW)


async def test_reservations_expire_and_free_their_sockets(store: Store) -> None:
    await ready(store, sockets=2)
    d = store.deployments
    assert (await d.reserve("d1", "s1", 2, NOW, TTL_S)).ok
    assert (await d.reserve("d1", "s2", 1, NOW + TTL_S - 1, TTL_S)).reason == "full"
    before = await d.get("d1", NOW + TTL_S - 1)
    assert before is not None and before.free_sockets == 0
    after = await d.get("d1", NOW + TTL_S + 0.001)  # read-side: an expired reservation holds nothing
    assert after is not None and after.free_sockets == 2 and after.reserved == 0
    assert (await d.reserve("d1", "s2", 2, NOW + TTL_S + 0.001, TTL_S)).ok
    # The late session's confirm must fail: its sockets were let to s2 meanwhile.
    assert not await d.confirm_held("d1", "s1", 2, NOW + TTL_S + 1)
    assert await d.confirm_held("d1", "s2", 2, NOW + TTL_S + 1)
    final = await d.get("d1", NOW + 100)
    assert final is not None and final.committed == 2 and final.reserved == 0 and final.sessions == 1


async def test_drain_and_reserve_never_both_win(store: Store) -> None:
    for i in range(20):
        rid = f"d{i}"
        await ready(store, rid, sockets=4)
        drained, held = await asyncio.gather(
            store.deployments.try_drain(rid, NOW), store.deployments.reserve(rid, "s", 1, NOW, TTL_S)
        )
        assert drained.ok != held.ok, (rid, drained, held)


async def test_confirmed_sessions_outlive_reservation_ttl(store: Store) -> None:
    await ready(store, sockets=3)
    d = store.deployments
    assert (await d.reserve("d1", "s1", 3, NOW, TTL_S)).ok
    assert await d.confirm_held("d1", "s1", 3, NOW + 1)
    assert (await d.reserve("d1", "s2", 1, NOW + 10 * TTL_S, TTL_S)).reason == "full"
    assert await d.release("d1", "s1", NOW + 10 * TTL_S)
    assert (await d.reserve("d1", "s2", 1, NOW + 10 * TTL_S, TTL_S)).ok


# --- property ----------------------------------------------------------------------------------
OPS = st.sampled_from(["reserve", "confirm", "release", "grow", "shrink", "usage", "tick", "expire", "drain"])
STEPS = st.lists(st.tuples(OPS, st.integers(0, 2), st.integers(1, 3)), min_size=1, max_size=30)


class Clock:
    def __init__(self) -> None:
        self.now = NOW


async def _check(store: Store, sockets: int, now: float) -> None:
    raw = await store.redis.hgetall(store.keys.holds("d1"))
    usage = int(await store.redis.hget(store.keys.deployment("d1"), "usage") or 0)
    committed = reserved = 0
    for value in raw.values():
        size, exp, state = value.split("|")
        if state == "s":
            committed += int(size)
        elif int(exp) > int(now * 1000):
            reserved += int(size)
    assert max(usage, committed) + reserved <= sockets, (usage, committed, reserved, sockets, raw)


async def _run(
    store: Store, clock: Clock, sockets: int, lane: int, steps: list[tuple[str, int, int]], rng: random.Random
) -> None:
    """One placer's operations. A reservation is confirmed whenever its placer gets to it, as the
    allocator does after the platform call, however long that took."""
    d = store.deployments
    reserved: dict[str, int] = {}
    for op, who, size in steps:
        sid = f"l{lane}s{who}"
        now = clock.now
        if op == "reserve":
            if (await d.reserve("d1", sid, size, now, TTL_S)).ok:
                reserved[sid] = size
        elif op == "confirm" and sid in reserved:
            await d.confirm_held("d1", sid, reserved.pop(sid), clock.now)
        elif op == "release":
            reserved.pop(sid, None)
            await d.release("d1", sid, now)
        elif op in ("grow", "shrink"):
            held = await store.redis.hget(store.keys.holds("d1"), sid)
            if held and held.endswith("|s"):
                old = int(held.split("|")[0])
                await d.resize("d1", sid, old + size if op == "grow" else max(0, old - size), now)
        elif op == "usage":  # the platform reports what it saw of our sessions, possibly lagging
            committed = sum(
                int(v.split("|")[0]) for v in (await store.redis.hgetall(store.keys.holds("d1"))).values()
                if v.endswith("|s")
            )  # fmt: skip
            report = StatusReport("d1", None, usage=rng.randint(0, committed), source="poll")
            await d.apply(report, now)
        elif op == "tick":
            clock.now += size
        elif op == "expire":
            clock.now += TTL_S
        elif op == "drain" and (await d.try_drain("d1", now)).ok:
            await d.undrain("d1")
        await _check(store, sockets, clock.now)


async def _scenario(redis_url: str, sockets: int, lanes: list[list[tuple[str, int, int]]], seed: int) -> None:
    redis = Redis.from_url(redis_url, decode_responses=True)
    store = Store(redis, f"tp{uuid.uuid4().hex[:10]}")
    try:
        await ready(store, sockets=sockets)
        clock, rng = Clock(), random.Random(seed)
        # Lanes run concurrently: their Redis round trips interleave in whatever order they land.
        await asyncio.gather(*(_run(store, clock, sockets, i, lane, rng) for i, lane in enumerate(lanes)))
        await _check(store, sockets, clock.now)
    finally:
        await store.wipe()
        await redis.aclose()


# The race a late confirm loses: reserved, expired, re-let to another session, then confirmed.
LATE_CONFIRM = [[("reserve", 0, 3), ("expire", 0, 1), ("reserve", 1, 1), ("confirm", 0, 1)]]


# Found by this test in CI: a session asking again, larger, found its own hold ("exists") and
# confirmed the larger size unchecked: 2 sockets held on a 1-socket deployment.
ASK_AGAIN_LARGER = [[("reserve", 2, 1), ("confirm", 2, 1), ("reserve", 2, 2), ("confirm", 2, 1)]]


@example(sockets=3, lanes=LATE_CONFIRM, seed=1)
@example(sockets=1, lanes=ASK_AGAIN_LARGER, seed=1)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sockets=st.integers(1, 6), lanes=st.lists(STEPS, min_size=1, max_size=4), seed=st.integers(0, 2**16))
def test_reserved_plus_used_never_exceeds_sockets(
    redis_url: str, sockets: int, lanes: list[list[tuple[str, int, int]]], seed: int
) -> None:
    asyncio.run(_scenario(redis_url, sockets, lanes, seed))
