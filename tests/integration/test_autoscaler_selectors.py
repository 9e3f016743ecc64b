"""Selectors end to end (issue 6): a session waiting for tags that no deployment of the fleet
carries makes the scaler create a deployment with those tags and the selectors' env, and the
session is linked to it; a `tag_only` selector requires nothing. A real `fleet web` (placement,
linker, webhooks), an in-process scaler with in-process jobs, and the simulator's ground truth."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from fleet.bootstrap import Services
from fleet.models import Status
from fleet.store import Store
from tests.fixtures.sim import RunningSim
from tests.fixtures.web import WEBHOOK_SECRET
from tests.integration.allocator_web import FleetWeb, fleet_web, poll
from tests.integration.autoscaler_harness import (
    close_services,
    live_on_platform,
    services_for,
    settings_for,
    setup_fleet,
    start_scaler,
)

__all__ = ["fleet_web"]

RANKED = {"tag": "ranked", "env": {"key": "MAP", "value": "1"}}


@pytest.fixture
async def scaler_services(
    redis_url: str, prefix: str, sim: RunningSim, fleet_web: FleetWeb
) -> AsyncIterator[Services]:
    # The scaler's creates name the web's webhook URL, so READY reaches the linker at once.
    settings = settings_for(redis_url, prefix, public_url=fleet_web.url, webhook_secret=WEBHOOK_SECRET)
    services = services_for(settings, sim)
    yield services
    await close_services(services)


def session(ip: str, *selectors: dict[str, Any]) -> dict[str, Any]:
    return {"app_name": "game", "version_name": "v1", "ip_list": [ip], "selectors": list(selectors)}


async def ready_with_usage(store: Store) -> list[str]:
    deps = await store.deployments.of_policy("f", "eu", time.time())
    return [d.request_id for d in deps if d.status is Status.READY and d.usage is not None]


async def test_waiting_selector_session_gets_a_tagged_deployment_with_its_env(
    fleet_web: FleetWeb, scaler_services: Services, store: Store, sim: RunningSim
) -> None:
    # minimum 1, and far under the threshold all along: only the selectors can ask for a create.
    await setup_fleet(store, minimum=1, maximum=3, threshold=0.8, idle_s=60.0)
    scaler = start_scaler(scaler_services, "s1")
    try:
        first = (await poll(lambda: ready_with_usage(store), 15, "the minimum deployment READY"))[0]
        assert "ranked" not in sim.deployment(first)["tags"]

        async with fleet_web.http() as api:
            # tag_only tags the session and filters nothing: placed at once on the untagged one.
            casual = {"tag": "casual", "tag_only": True}
            r = await api.post("/v1/session", json=session("81.2.69.160", casual))
            assert r.status_code == 200 and r.json()["linked"] is True, r.text
            assert r.json()["deployment_request_id"] == first

            r = await api.post("/v1/session", json=session("81.2.69.161", RANKED))
            assert r.status_code == 200 and r.json()["status"] == "Status.WAITING", r.text
            sid = r.json()["session_id"]

            async def linked() -> dict[str, Any] | None:
                got = (await api.get(f"/v1/session/{sid}")).json()
                return got if got.get("linked") else None

            got = await poll(linked, 20, "the ranked session to be linked")
        rid = got["deployment"]["request_id"]
        assert rid != first

        truth = sim.deployment(rid)  # the platform's ground truth
        assert "ranked" in truth["tags"] and {"f", "eu", "fleet:f", "policy:eu"} <= set(truth["tags"])
        assert truth["env_vars"] == [{"key": "MAP", "value": "1"}]
        assert sim.deployment(first)["env_vars"] == []
        ours = await store.deployments.get(rid, time.time())
        assert ours is not None and "ranked" in ours.tags and ours.policy == "eu"

        # One tagged create, nothing for the tag_only session, no second create for the same need.
        assert len(live_on_platform(sim, policy="eu")) == 2
        decisions = await store.fleets.decisions("f")
        tagged = [d for d in decisions if "create_tagged=1" in str(d.get("outcome"))]
        assert len(tagged) == 1 and tagged[0]["reason"] == "selectors", tagged
    finally:
        await scaler.stop()
