"""Redis loses its data mid-run (FLUSHALL on a private redis-server): nothing is created or stopped
until the scaler re-applied FLEET_CONFIG and rebuilt state from the platform's list; then it
converges without doubling what exists."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis as SyncRedis

from fleet.devredis import PrivateRedis
from tests.fixtures.sim import RunningSim
from tests.integration.autoscaler_harness import (
    add_players,
    calls,
    close_services,
    eventually,
    live_on_platform,
    services_for,
    settings_for,
    start_scaler,
)

CONFIG = """
fleets:
  - name: f
    enabled: true
    apps:
      - {app: game, version: v1}
    policies:
      - name: eu
        enabled: true
        type: Location
        minimum: 2
        maximum: 4
        threshold: 0.5
        data: {filters: [{field: continent, values: [Europe], filter_type: any}]}
        idle_s: 30
"""


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis().start()
    yield server
    server.stop()


def ready(sim: RunningSim) -> list[str]:
    return [d["request_id"] for d in live_on_platform(sim) if str(d["status"]).endswith("READY")]


async def test_flushall_mid_run_waits_for_rebuild_then_converges(
    private_redis: PrivateRedis, sim: RunningSim, tmp_path: Path
) -> None:
    sim.setup_app(sockets=4)
    config = tmp_path / "fleets.yaml"
    config.write_text(CONFIG)
    services = services_for(settings_for(private_redis.url, "flush", config=str(config)), sim)
    raw = SyncRedis.from_url(private_redis.url, decode_responses=True)
    scaler = start_scaler(services, "a")
    try:
        # First start is a rebuild too: the config is applied, the (empty) list read, then the minimum.
        await eventually(lambda: len(ready(sim)) == 2, what="the minimum of 2 from the config")
        await asyncio.sleep(0.5)
        assert calls(sim, "deploy") == 2

        sim.faults(error_rate={"deployments": 1.0})  # the platform's list is down for a while
        raw.flushall()
        for _ in range(20):  # 2 s: the fleet is gone from Redis and nothing is known, yet nothing happens
            await asyncio.sleep(0.1)
            assert calls(sim, "deploy") == 2 and calls(sim, "stop") == 0
            assert not raw.exists(services.store.keys.rebuilt())
        assert raw.hget(services.store.keys.fleets(), "f"), "the config was re-applied at once"

        sim.faults(error_rate={})
        await eventually(lambda: raw.exists(services.store.keys.rebuilt()), timeout_s=10, what="the rebuild")
        owned = await eventually(
            lambda: (lambda ids: ids if len(ids) == 2 else None)(
                raw.smembers(services.store.keys.policy_deployments("f", "eu"))
            ),
            what="both deployments adopted",
        )
        assert sorted(owned) == sorted(ready(sim))
        await asyncio.sleep(1.0)
        assert calls(sim, "deploy") == 2 and calls(sim, "stop") == 0, "rebuilt, not doubled"

        # And it scales as before: 2 of 4 on one, 2 of 8 in all at 0.5 -> no; 4 of 8 -> one more.
        add_players(sim, ready(sim)[0], 4)
        await eventually(lambda: calls(sim, "deploy") == 3, what="a scale-up after the rebuild")
    finally:
        await scaler.stop()
        raw.close()
        await close_services(services)
