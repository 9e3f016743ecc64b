"""What goes wrong on the platform: deployments stuck starting, deployments ending in ERROR,
deployments Redis does not know or that ended without a webhook, and platform errors (which must
never lead to a stop)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from fleet.bootstrap import Services
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

ServicesFactory = Callable[..., Services]


@pytest.fixture
async def make(redis_url: str, prefix: str, sim: RunningSim) -> AsyncIterator[ServicesFactory]:
    sim.setup_app(sockets=4)
    made: list[Services] = []

    def factory(**settings: object) -> Services:
        s = services_for(settings_for(redis_url, prefix, **settings), sim)
        made.append(s)
        return s

    yield factory
    if made:
        await made[0].store.wipe()
    await close_services(*made)


def statuses(sim: RunningSim) -> dict[str, str]:
    return {d["request_id"]: str(d["status"]) for d in sim.state()["deployments"]}


async def test_stuck_deployment_is_stopped_once_and_replaced_once(
    make: ServicesFactory, sim: RunningSim
) -> None:
    services = make(deploy_timeout_s=1.5)
    await setup_fleet(services.store, minimum=1, maximum=2)
    sim.faults(stuck_deploys=1.0)
    scaler = start_scaler(services, "a")
    try:
        await eventually(lambda: calls(sim, "deploy") == 1, what="the first create")
        sim.faults(stuck_deploys=0.0)
        stuck = next(iter(statuses(sim)))
        # Past the timeout: one stop for it, one replacement, within maximum 2 (it still counts).
        await eventually(lambda: calls(sim, "stop") == 1, timeout_s=10, what="the stuck one stopped")
        await eventually(
            lambda: [r for r, s in statuses(sim).items() if r != stuck and s.endswith("READY")],
            what="the replacement READY",
        )
        await asyncio.sleep(2.0)
        assert calls(sim, "deploy") == 2 and calls(sim, "stop") == 1
        d = await services.store.deployments.get(stuck, services.clock())
        assert d is not None and d.draining and d.stop_requested_at is not None
        reasons = [r.get("reason") for r in await services.store.fleets.decisions("f")]
        assert "stuck" in reasons
    finally:
        await scaler.stop()


async def test_stuck_at_maximum_waits_for_the_platform_to_confirm(
    make: ServicesFactory, sim: RunningSim
) -> None:
    services = make(deploy_timeout_s=1.0)
    await setup_fleet(services.store, minimum=1, maximum=1)
    sim.faults(stuck_deploys=1.0)
    scaler = start_scaler(services, "a")
    try:
        await eventually(lambda: calls(sim, "stop") == 1, timeout_s=10, what="the stuck one stopped")
        sim.faults(stuck_deploys=0.0)
        await asyncio.sleep(1.5)
        # The simulator defers a stop of a never-READY deployment: it is not gone, so no replacement.
        assert calls(sim, "deploy") == 1
        limited = [r for r in await services.store.fleets.decisions("f") if r.get("limited") == "maximum"]
        assert limited
    finally:
        await scaler.stop()


async def test_errors_back_off_degrade_and_one_ready_recovers(make: ServicesFactory, sim: RunningSim) -> None:
    services = make()
    await setup_fleet(services.store, minimum=1, maximum=2)
    sim.faults(fail_deploys=1.0)
    scaler = start_scaler(services, "a")
    scaler.loop.scaler.backoff_base_s, scaler.loop.scaler.backoff_cap_s = 1.0, 1.5
    try:

        async def degraded() -> dict[str, str] | None:
            state = await services.store.fleets.policy_state("f", "eu")
            return state if int(state.get("error_streak") or 0) >= 2 else None

        state = await eventually(degraded, timeout_s=30, what="two errors in a row")
        assert state["degraded"] == "1" and state["last_error"]
        # Backing off 1 s then 1.5 s (capped): far fewer creates than one per boot time.
        created = calls(sim, "deploy")
        await asyncio.sleep(2.0)
        assert calls(sim, "deploy") - created <= 2

        sim.faults(fail_deploys=0.0)
        await eventually(
            lambda: any(s.endswith("READY") for s in statuses(sim).values()), timeout_s=10, what="a READY one"
        )

        async def healed() -> bool:
            return (await services.store.fleets.policy_state("f", "eu")).get("degraded") == "0"

        await eventually(healed, what="the policy to recover after one READY")
    finally:
        await scaler.stop()


async def test_reconcile_adopts_ours_and_notices_ended_ones(make: ServicesFactory, sim: RunningSim) -> None:
    services = make()
    await setup_fleet(services.store, minimum=1, maximum=2)
    # Made by us before Redis knew (e.g. a create whose answer was lost): carries our tags.
    tags = ["f", "eu", "fleet:f", "policy:eu", "app:game", "version:v1", "intent:lost-answer"]
    ours = sim.deploy(tags=tags)
    theirs = sim.deploy(tags=["someone-else"])
    scaler = start_scaler(services, "a")
    try:
        adopted = await eventually(
            lambda: services.store.deployments.get(ours, services.clock()), what="adoption"
        )
        assert (adopted.fleet, adopted.policy, adopted.intent) == ("f", "eu", "lost-answer")
        await asyncio.sleep(1.0)
        assert calls(sim, "deploy") == 2  # the two above: the adopted one satisfies the minimum
        assert await services.store.deployments.get(theirs, services.clock()) is None

        # Ended on the platform without any webhook: noticed, no longer counted, replaced.
        sim.platform("DELETE", f"/v1/stop/{ours}")
        await eventually(lambda: calls(sim, "deploy") == 3, timeout_s=10, what="the replacement")

        async def terminal() -> bool:
            d = await services.store.deployments.get(ours, services.clock())
            return d is not None and d.status is not None and d.status.terminal

        await eventually(terminal, what="the ended one marked terminal")
        assert calls(sim, "stop") == 1  # only ours, above
    finally:
        await scaler.stop()


async def test_platform_errors_and_stale_data_never_stop(make: ServicesFactory, sim: RunningSim) -> None:
    services = make(reconcile_interval_s=0.2)  # data is stale 3 * 0.2 + 5 = 5.6 s after the last look
    await setup_fleet(services.store, minimum=1, maximum=3, idle_s=7.0, cooldown_s=0.0)
    scaler = start_scaler(services, "a")
    try:
        ready = await eventually(
            lambda: [d["request_id"] for d in live_on_platform(sim) if str(d["status"]).endswith("READY")],
            what="the minimum READY",
        )
        session = add_players(sim, ready[0], 2)  # 2 of 4 at 0.5: one more
        await eventually(lambda: len(live_on_platform(sim)) == 2, what="the scale-up")
        await eventually(
            lambda: all(str(d["status"]).endswith("READY") for d in live_on_platform(sim)), what="both READY"
        )
        sim.platform("DELETE", f"/v1/session/{session}")
        await asyncio.sleep(0.6)  # the scaler sees both empty
        sim.faults(error_rate={"deployments": 1.0, "status": 1.0})
        # Idle time (7 s) passes while every look at the platform fails: the data is stale by then.
        await asyncio.sleep(8.5)
        assert calls(sim, "stop") == 0 and len(live_on_platform(sim)) == 2
        held = [r.get("held") for r in await services.store.fleets.decisions("f")]
        assert "data_unknown" in held

        sim.faults(error_rate={})
        await eventually(
            lambda: len(live_on_platform(sim)) == 1, timeout_s=10, what="the scale-in once data is back"
        )
    finally:
        await scaler.stop()
