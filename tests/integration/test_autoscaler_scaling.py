"""The scaler against the simulator and the suite's Redis: minimum, scale-up on used sockets and on
waiting sessions, scale-down after idle time, dry-run, and players never dropped when the maximum
is lowered below the current count."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from fleet.bootstrap import Services
from fleet.models import Policy, SessionRecord, SessionState
from tests.fixtures.sim import RunningSim
from tests.integration.autoscaler_harness import (
    add_players,
    calls,
    close_services,
    eventually,
    live_on_platform,
    services_for,
    settings_for,
    setup_fleet,
    start_scaler,
)


@pytest.fixture
async def services(redis_url: str, prefix: str, sim: RunningSim) -> AsyncIterator[Services]:
    sim.setup_app(sockets=4)
    s = services_for(settings_for(redis_url, prefix), sim)
    yield s
    await s.store.wipe()
    await close_services(s)


def ready_ids(sim: RunningSim) -> list[str]:
    return [d["request_id"] for d in live_on_platform(sim) if str(d["status"]).endswith("READY")]


async def test_minimum_then_scale_up_on_players_then_down_when_idle(
    services: Services, sim: RunningSim
) -> None:
    await setup_fleet(services.store, minimum=1, maximum=4, threshold=0.5)
    scaler = start_scaler(services, "a")
    try:
        first = (await eventually(lambda: ready_ids(sim), what="the minimum READY"))[0]
        assert len(live_on_platform(sim)) == 1

        # 2 of 4 sockets used at threshold 0.5: 2 >= 2 -> one more (2 / 8 = 0.25 < 0.5).
        session = add_players(sim, first, 2)
        await eventually(lambda: len(ready_ids(sim)) == 2, what="the scale-up to 2")
        await asyncio.sleep(1.0)
        assert len(live_on_platform(sim)) == 2, "one up-step only"

        # Players leave: after idle time, cooldown and a watched window, back to the minimum.
        sim.platform("DELETE", f"/v1/session/{session}")
        await eventually(lambda: len(live_on_platform(sim)) == 1, timeout_s=15, what="the scale-down to 1")
        decisions = await services.store.fleets.decisions("f")
        reasons = {d.get("reason") for d in decisions if d.get("kind") == "decision"}
        assert {"minimum", "threshold", "idle"} <= reasons
        outcomes = [d.get("outcome") for d in decisions if d.get("kind") == "action"]
        assert "created" in outcomes and any(str(o).startswith("stop_") for o in outcomes)
    finally:
        await scaler.stop()


async def test_waiting_sessions_are_demand(services: Services, sim: RunningSim) -> None:
    await setup_fleet(services.store, minimum=1, maximum=3, threshold=0.8)
    scaler = start_scaler(services, "a")
    try:
        await eventually(lambda: ready_ids(sim), what="the minimum READY")
        await asyncio.sleep(0.5)
        assert len(live_on_platform(sim)) == 1
        # Four players nobody could place: 0 used + 4 waiting >= 0.8 * 4 -> one more deployment.
        now = services.clock()
        record = SessionRecord(
            session_id="w1", app="game", version="v1", kind="Seat", ips=["81.2.69.1"] * 4, size=4,
            state=SessionState.WAITING, create_time=now, origin={"continent": "EU", "country": "GB"},
        )  # fmt: skip
        await services.store.sessions.put(record)
        await services.store.sessions.add_waiting("w1", now + 60)
        await services.store.coord.publish("capacity", app="game", version="v1")
        await eventually(lambda: len(live_on_platform(sim)) == 2, what="a deployment for the waiting players")
        decisions = await services.store.fleets.decisions("f")
        assert any(d.get("inputs", {}).get("waiting") == 4 for d in decisions)  # type: ignore[union-attr]
    finally:
        await scaler.stop()


async def test_dry_run_decides_and_records_but_creates_nothing(services: Services, sim: RunningSim) -> None:
    await setup_fleet(services.store, minimum=2, fleet_fields={"dry_run": True})
    scaler = start_scaler(services, "a")
    try:
        decisions = await eventually(
            lambda: services.store.fleets.decisions("f"), what="a decision recorded in dry-run"
        )
        await asyncio.sleep(1.0)
        assert calls(sim, "deploy") == 0
        first = decisions[-1]
        assert first["reason"] == "minimum" and first["dry_run"] is True and first["outcome"] == "dry_run"
        assert first["action"] == {"create": 2, "stop": [], "stuck": []}
    finally:
        await scaler.stop()


async def test_players_are_never_stopped_when_maximum_drops_below_count(
    services: Services, sim: RunningSim
) -> None:
    await setup_fleet(services.store, minimum=3, maximum=3, threshold=0.9)
    scaler = start_scaler(services, "a")
    try:
        ids = await eventually(lambda: (lambda r: r if len(r) == 3 else None)(ready_ids(sim)), what="3 READY")
        busy = sorted(ids)[:2]
        sessions = [add_players(sim, rid, 1) for rid in busy]
        policy = await services.store.fleets.get_policy("f", "eu")
        assert policy is not None
        lowered = Policy.model_validate({**policy.model_dump(), "minimum": 1, "maximum": 1})
        await services.store.fleets.put_policy("f", lowered)
        await services.store.coord.publish("fleet", fleet="f")

        # The idle one goes; both deployments with a player stay, however long we look.
        await eventually(lambda: len(live_on_platform(sim)) == 2, timeout_s=15, what="the idle one stopped")
        for _ in range(20):
            assert sorted(d["request_id"] for d in live_on_platform(sim)) == busy
            await asyncio.sleep(0.1)
        truth = {d["request_id"]: d for d in sim.state()["deployments"]}
        assert all(str(truth[rid]["status"]).endswith("READY") for rid in busy)

        # Once one empties, it may go: down to the new maximum.
        sim.platform("DELETE", f"/v1/session/{sessions[0]}")
        await eventually(lambda: len(live_on_platform(sim)) == 1, timeout_s=15, what="down to maximum 1")
        assert [d["request_id"] for d in live_on_platform(sim)] == [busy[1]]
    finally:
        await scaler.stop()


@pytest.mark.parametrize(
    ("caps", "limit"),
    [
        ({"account_max_deployments": 2}, "account_deployments"),
        ({"account_max_creates_per_minute": 2}, "account_creates_per_minute"),
    ],
)
async def test_account_caps_hold_across_policies(
    redis_url: str, prefix: str, sim: RunningSim, caps: dict[str, int], limit: str
) -> None:
    sim.setup_app(sockets=4)
    services = services_for(settings_for(redis_url, prefix, **caps), sim)
    await setup_fleet(services.store, minimum=2, maximum=4)
    await setup_fleet(services.store, name="us", minimum=2, maximum=4)
    scaler = start_scaler(services, "a")
    try:
        await eventually(lambda: calls(sim, "deploy") == 2, what="the first two creates")
        await asyncio.sleep(1.5)
        assert calls(sim, "deploy") == 2  # the two policies want 4 between them
        limited = {d.get("limited") for d in await services.store.fleets.decisions("f")}
        assert limit in limited
    finally:
        await scaler.stop()
        await services.store.wipe()
        await close_services(services)
