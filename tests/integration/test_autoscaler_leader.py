"""One leader at a time: two scalers never double an action, a killed leader is replaced within the
lease TTL, and a deposed leader's writes and queued jobs are refused by the fencing token."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest

from autoscaler.jobs import CREATE_JOB
from fleet.bootstrap import Services
from fleet.store.fleets import Ops
from tests.fixtures.sim import RunningSim
from tests.integration.autoscaler_harness import (
    add_players,
    calls,
    close_services,
    eventually,
    jobs_of,
    live_on_platform,
    services_for,
    settings_for,
    setup_fleet,
    start_scaler,
)

TTL_S = 2.0


@pytest.fixture
async def pair(redis_url: str, prefix: str, sim: RunningSim) -> AsyncIterator[tuple[Services, Services]]:
    """Two scaler processes' worth of services (own Redis connections, clients and job runners)."""
    sim.setup_app(sockets=4)
    settings = settings_for(redis_url, prefix, lease_ttl_s=TTL_S)
    a, b = services_for(settings, sim), services_for(settings, sim)
    yield a, b
    await a.store.wipe()
    await close_services(a, b)


def ready_count(sim: RunningSim) -> Callable[[], int]:
    return lambda: sum(str(d["status"]).endswith("READY") for d in live_on_platform(sim))


async def test_two_scalers_never_double_an_action(pair: tuple[Services, Services], sim: RunningSim) -> None:
    a, b = pair
    await setup_fleet(a.store, minimum=3, maximum=6, threshold=0.5)
    first, second = start_scaler(a, "a"), start_scaler(b, "b")
    try:
        await eventually(lambda: ready_count(sim)() == 3, what="the minimum of 3 READY")
        await asyncio.sleep(1.0)
        assert calls(sim, "deploy") == 3
        assert first.loop.leader != second.loop.leader, "exactly one leads"

        # 2 of 4 on one deployment at threshold 0.5 with 12 sockets: 2 < 6, nothing; 6 of 12 -> one more.
        rid = live_on_platform(sim)[0]["request_id"]
        add_players(sim, rid, 4)
        others = [d["request_id"] for d in live_on_platform(sim) if d["request_id"] != rid]
        add_players(sim, others[0], 2)
        await eventually(lambda: calls(sim, "deploy") >= 4, what="the scale-up")
        await asyncio.sleep(1.5)
        assert calls(sim, "deploy") == 4  # 6 / 16 = 0.375 < 0.5: one step, made once
        assert calls(sim, "stop") == 0
    finally:
        await first.stop()
        await second.stop()


async def test_killed_leader_is_replaced_within_the_ttl(
    pair: tuple[Services, Services], sim: RunningSim
) -> None:
    a, b = pair
    await setup_fleet(a.store, minimum=1, maximum=4, threshold=0.5)
    first = start_scaler(a, "a")
    await eventually(lambda: first.loop.leader, what="a to lead")
    second = start_scaler(b, "b")
    try:
        await eventually(lambda: ready_count(sim)() == 1, what="the minimum READY")
        await asyncio.sleep(0.3)
        assert not second.loop.leader
        killed_at = time.monotonic()
        await first.kill()
        await eventually(lambda: second.loop.leader, timeout_s=TTL_S * 2, what="b to take over")
        handover_s = time.monotonic() - killed_at
        # The lease was renewed at most one tick before the kill; the standby asks every TTL / 10.
        assert handover_s <= TTL_S + TTL_S / 10 + 0.3, handover_s

        # The new leader acts: players on the only deployment -> one more.
        add_players(sim, live_on_platform(sim)[0]["request_id"], 2)
        await eventually(lambda: calls(sim, "deploy") == 2, what="the new leader's scale-up")
    finally:
        await second.stop()


async def test_deposed_leaders_jobs_and_writes_are_refused(
    pair: tuple[Services, Services], sim: RunningSim
) -> None:
    a, b = pair
    await setup_fleet(a.store, minimum=2, maximum=4)
    jobs_of(a).paused = True  # a's worker is slow: its create jobs wait in the queue
    first = start_scaler(a, "a")
    await eventually(lambda: len(jobs_of(a).held) == 2, what="a to enqueue two creates")
    old_token = first.loop.token
    await first.kill()

    second = start_scaler(b, "b")
    try:
        await eventually(lambda: second.loop.leader, timeout_s=TTL_S * 2, what="b to lead")
        assert second.loop.token > old_token
        # a's creates are still in flight: b must not add its own on top.
        await asyncio.sleep(0.5)
        assert calls(sim, "deploy") == 0

        # a's queued jobs finally run: refused by the token, nothing is created by them...
        jobs_of(a).paused = False
        jobs_of(a).resume()
        await jobs_of(a).drain()
        assert [r for f, _, r in jobs_of(a).results if f == CREATE_JOB] == ["stale_token", "stale_token"]
        # ...and a's writes are refused too.
        ops = Ops().add("HSET", a.store.keys.policy_state("f", "eu"), "last_error", "from a stale leader")
        assert not await a.store.fleets.fenced(old_token, ops)
        assert "last_error" not in await a.store.fleets.policy_state("f", "eu") or (
            (await a.store.fleets.policy_state("f", "eu"))["last_error"] != "from a stale leader"
        )

        # b then creates the minimum itself: exactly two deployments in all.
        await eventually(lambda: ready_count(sim)() == 2, what="b's two creates")
        await asyncio.sleep(0.5)
        assert calls(sim, "deploy") == 2
    finally:
        await second.stop()
