"""The create and stop jobs on their own (as `fleet worker` runs them): a player who joined through
the platform after the drain is never dropped, a refused stop returns the deployment to service,
a re-run create finds the deployment its first run made, and a stale token does nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from autoscaler.jobs import create_deployment, stop_deployment
from fleet.bootstrap import Services
from fleet.models import StatusReport
from fleet.store.fleets import Ops
from tests.fixtures.sim import RunningSim
from tests.integration.autoscaler_harness import (
    add_players,
    calls,
    close_services,
    services_for,
    settings_for,
)


@pytest.fixture
async def services(redis_url: str, prefix: str, sim: RunningSim) -> AsyncIterator[Services]:
    sim.setup_app(sockets=4)
    s = services_for(settings_for(redis_url, prefix), sim)
    await s.store.coord.mark_rebuilt(s.clock())
    yield s
    await s.store.wipe()
    await close_services(s)


async def lead(services: Services) -> int:
    return (await services.store.coord.acquire_lease("test", 30)).token


async def drained_deployment(services: Services, sim: RunningSim) -> str:
    rid = sim.deploy()
    body = sim.wait_status(rid, "READY")
    now = services.clock()
    await services.store.deployments.apply(
        StatusReport(request_id=rid, status_raw=body["current_status"], usage=0, sockets=4), now
    )
    await services.store.deployments.record_owner(
        rid, fleet="f", policy="eu", intent="i", app="game", version="v1", now=now
    )
    assert (await services.store.deployments.try_drain(rid, now)).ok
    return rid


async def test_a_player_who_joined_meanwhile_is_never_dropped(services: Services, sim: RunningSim) -> None:
    token = await lead(services)
    rid = await drained_deployment(services, sim)
    add_players(sim, rid, 1)  # through the platform directly, after our drain
    result = await stop_deployment(
        services, {"token": token, "request_id": rid, "fleet": "f", "policy": "eu"}
    )
    assert result == "in_use"
    assert calls(sim, "stop") == 0 and sim.deployment(rid)["status"] == "Status.READY"
    d = await services.store.deployments.get(rid, services.clock())
    assert d is not None and not d.draining and d.usage == 1  # back in service, usage known


async def test_an_empty_drained_deployment_is_stopped(services: Services, sim: RunningSim) -> None:
    token = await lead(services)
    rid = await drained_deployment(services, sim)
    result = await stop_deployment(
        services, {"token": token, "request_id": rid, "fleet": "f", "policy": "eu"}
    )
    assert result == "stop_stopping" and calls(sim, "stop") == 1
    d = await services.store.deployments.get(rid, services.clock())
    assert d is not None and d.stop_requested_at is not None
    again = await stop_deployment(services, {"token": token, "request_id": rid, "fleet": "f", "policy": "eu"})
    assert again in ("stop_stopping", "stop_accepted", "stop_gone", "gone")  # idempotent


async def test_stale_tokens_do_nothing(services: Services, sim: RunningSim) -> None:
    old = await lead(services)
    rid = await drained_deployment(services, sim)
    await services.store.coord.release_lease("test")
    await services.store.coord.acquire_lease("other", 30)  # a newer grant
    assert await stop_deployment(services, {"token": old, "request_id": rid}) == "stale_token"
    payload = {"token": old, "intent": "x1", "fleet": "f", "policy": "eu", "app": "game", "version": "v1"}
    assert await create_deployment(services, payload) == "stale_token"
    assert calls(sim, "stop") == 0 and calls(sim, "deploy") == 1  # the one drained_deployment made


async def test_a_rerun_create_finds_what_its_first_run_made(services: Services, sim: RunningSim) -> None:
    token = await lead(services)
    fleets, now = services.store.fleets, services.clock()
    ops = fleets.intent_ops(Ops(), "f", "eu", "intent-1", {"app": "game", "version": "v1"}, now)
    assert await fleets.fenced(token, ops)
    # The first run deployed, then died before recording anything but its attempt.
    made = sim.deploy(tags=["fleet:f", "policy:eu", "intent:intent-1"])
    await fleets.update_intent("intent-1", {"attempts": "1"})
    payload = {
        "token": token,
        "intent": "intent-1",
        "fleet": "f",
        "policy": "eu",
        "app": "game",
        "version": "v1",
    }
    assert await create_deployment(services, payload) == "created"
    assert calls(sim, "deploy") == 1  # not a second time
    d = await services.store.deployments.get(made, services.clock())
    assert d is not None and (d.fleet, d.policy, d.intent) == ("f", "eu", "intent-1")
    assert not await fleets.is_pending("f", "eu", "intent-1")
