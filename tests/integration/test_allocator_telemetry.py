"""Telemetry and geography through the web process: cached per player network, measured in the
background (never awaited by a placement), partial telemetry falls back to geography, complete
telemetry decides, IP lookups are cached per network."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fleet import metrics
from fleet.store import Store
from fleet.store.placement import PlacementStore, RanksDoc
from tests.integration.allocator_web import FleetWeb, fleet_web, poll

__all__ = ["fleet_web"]

LOCAL_TTL_S = 0.3  # the web's in-process telemetry copy is re-checked this often in these tests


def body(*ips: str) -> dict[str, Any]:
    return {"app_name": "game", "version_name": "v1", "ip_list": list(ips)}


def reason_count(reason: str) -> float:
    return float(metrics.ALLOC_RANK_REASON.labels(reason)._value.get())


async def test_partial_telemetry_falls_back_to_geography(fleet_web: FleetWeb, store: Store) -> None:
    london = await fleet_web.ready_deployment(store, "London")
    tokyo = await fleet_web.ready_deployment(store, "Tokyo")
    cache = PlacementStore(store.redis, store.keys)
    # Only Tokyo has reported for this network so far: partial, so geography decides (UK players).
    await cache.put_ranks("81.2.69.0/24", RanksDoc((tokyo,), True, time.time()), 300)
    before = reason_count("geography_fallback")
    async with fleet_web.http() as api:
        r = await api.post("/v1/session", json=body("81.2.69.160"))
    assert r.json()["deployment_request_id"] == london
    assert reason_count("geography_fallback") == before + 1


async def test_complete_fresh_telemetry_decides(fleet_web: FleetWeb, store: Store) -> None:
    london = await fleet_web.ready_deployment(store, "London")
    tokyo = await fleet_web.ready_deployment(store, "Tokyo")
    cache = PlacementStore(store.redis, store.keys)
    # The platform measured Tokyo faster for this network (say, a routing quirk): trust the measurement.
    await cache.put_ranks("81.2.70.0/24", RanksDoc((tokyo, london), False, time.time()), 300)
    async with fleet_web.http() as api:
        r = await api.post("/v1/session", json=body("81.2.70.5"))
    assert r.json()["deployment_request_id"] == tokyo


async def test_telemetry_is_measured_in_the_background_and_then_used(
    fleet_web: FleetWeb, store: Store
) -> None:
    london = await fleet_web.ready_deployment(store, "London")
    await fleet_web.ready_deployment(store, "Sydney")
    cache = PlacementStore(store.redis, store.keys)
    fleet_web.services.extras["allocator"].insight.telemetry_local_ttl_s = LOCAL_TTL_S  # type: ignore[attr-defined]
    geography_before, telemetry_before = reason_count("geography"), reason_count("telemetry")
    async with fleet_web.http() as api:
        first = await api.post("/v1/session", json=body("81.2.69.160"))
        assert first.json()["deployment_request_id"] == london
        # Decided by geography: the answer did not wait for the measurement it started.
        assert reason_count("geography") == geography_before + 1
        ranks = await poll(lambda: cache.get_ranks(["81.2.69.0/24"]), 10, "the network's telemetry")
        doc = ranks["81.2.69.0/24"]
        assert doc.order[0] == london and not doc.partial and len(doc.order) == 2
        await asyncio.sleep(LOCAL_TTL_S + 0.1)  # the web's in-process copy says "none yet" until then
        second = await api.post("/v1/session", json=body("81.2.69.161"))
    assert second.json()["deployment_request_id"] == london
    assert reason_count("telemetry") == telemetry_before + 1


async def test_ip_lookups_are_cached_per_network(fleet_web: FleetWeb, store: Store) -> None:
    await fleet_web.ready_deployment(store, "London")
    async with fleet_web.http() as api:
        for ip in ("81.2.69.160", "81.2.69.161", "81.2.69.7"):
            assert (await api.post("/v1/session", json=body(ip))).status_code == 200
    calls = fleet_web.sim.calls()["calls"]
    assert calls.get("ips_lookup", 0) == 1, calls
    cache = PlacementStore(store.redis, store.keys)
    fact = (await cache.get_geo(["81.2.69.0/24"]))["81.2.69.0/24"]
    assert fact.located and fact.country == "GB"
