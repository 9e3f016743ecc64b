"""Redis loses its data (FLUSHALL on a private redis-server) after sessions were placed: the scaler
rebuilds the deployments and then our sessions from the platform's session list (our session id is
in each one's callback URL) before it acts. Afterwards the session API answers the sessions placed
before the loss, their sockets count again, and a delete frees the socket on the platform; a
platform session that is not ours is left alone. Real `fleet web`, real scaler loop, simulator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis as SyncRedis

from allocator.rebuild import rebuild_sessions
from fleet.bootstrap import Services, bootstrap
from fleet.devredis import PrivateRedis
from fleet.models import SessionState
from fleet.store import Store
from tests.fixtures.sim import RunningSim
from tests.fixtures.web import WEBHOOK_SECRET, DummyJobs
from tests.integration.allocator_web import FleetWeb, fleet_web, poll, start_fleet_web
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
        maximum: 2
        threshold: 1.0
        data: {filters: [{field: continent, values: [Europe], filter_type: any}]}
        idle_s: 60
"""
__all__ = ["fleet_web"]
PLAYERS = [["81.2.69.160", "81.2.69.161"], ["81.2.69.170"]]  # GB: two sessions, 2 and 1 sockets


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis().start()
    yield server
    server.stop()


@pytest.fixture
def web(sim: RunningSim, private_redis: PrivateRedis) -> Iterator[FleetWeb]:
    sim.setup_app("game", "v1", kind="Seat", sockets=4)
    running = start_fleet_web(sim, private_redis.url, "rb")
    yield running
    running.stop()


def ready_ids(sim: RunningSim) -> list[str]:
    return sorted(d["request_id"] for d in live_on_platform(sim) if str(d["status"]).endswith("READY"))


def used_on_platform(sim: RunningSim) -> dict[str, int]:
    return {d["request_id"]: int(d.get("sockets_usage", d.get("used", 0))) for d in live_on_platform(sim)}


async def test_sessions_placed_before_redis_lost_its_data_are_rebuilt(
    sim: RunningSim, web: FleetWeb, private_redis: PrivateRedis, tmp_path: Path
) -> None:
    config = tmp_path / "fleets.yaml"
    config.write_text(CONFIG)
    settings = settings_for(
        private_redis.url, "rb", config=str(config), public_url=web.url, webhook_secret=WEBHOOK_SECRET
    )
    services = services_for(settings, sim)
    store: Store = services.store
    raw = SyncRedis.from_url(private_redis.url, decode_responses=True)
    scaler = start_scaler(services, "a")
    try:
        await eventually(lambda: len(ready_ids(sim)) == 2, what="the policy's 2 deployments")
        for rid in ready_ids(sim):
            await web.refresh(store, rid)  # as their READY webhooks or a poll would tell the web
        placed: dict[str, tuple[str, int]] = {}  # our session id -> (deployment, sockets)
        async with web.http() as api:
            for ips in PLAYERS:
                r = await api.post(
                    "/v1/session", json={"app_name": "game", "version_name": "v1", "ip_list": ips}
                )
                assert r.status_code == 200 and r.json()["linked"], r.text
                placed[r.json()["session_id"]] = (r.json()["deployment_request_id"], len(ips))
        stranger = add_players(sim, ready_ids(sim)[0], 1)  # a platform session that is not ours
        creates = calls(sim, "session_create")

        raw.flushall()
        await eventually(lambda: raw.exists(store.keys.rebuilt()), timeout_s=15, what="the rebuild")

        async with web.http() as api:
            for sid, (rid, size) in placed.items():
                got = await api.get(f"/v1/session/{sid}")
                assert got.status_code == 200, got.text  # before the fix: 404 for ever
                body = got.json()
                assert body["linked"] is True and body["deployment"]["request_id"] == rid
                assert body["sockets"] == size and body["user_count"] == size  # players read back
                users = (await api.get(f"/v1/session/{sid}/users")).json()["session_users"]
                assert sorted(u["ip"] for u in users) == sorted(PLAYERS[0] if size == 2 else PLAYERS[1])
                d = await store.deployments.get(rid, services.clock())
                assert d is not None and d.fleet == "f"  # the deployment was adopted too
            listed = (await api.get("/v1/sessions", params={"limit": 100})).json()
            assert sorted(s["session_id"] for s in listed["data"]) == sorted(placed)  # not the stranger
        assert await store.sessions.by_platform_id(stranger) is None
        holds = {rid: 0 for rid, _ in placed.values()}
        for rid, size in placed.values():
            holds[rid] += size
        for rid, held in holds.items():
            d = await store.deployments.get(rid, services.clock())
            assert d is not None and d.committed == held, (rid, d)
        assert calls(sim, "session_create") == creates  # rebuilt, not created again

        # A delete through us now reaches the platform and frees the socket there.
        before = used_on_platform(sim)
        async with web.http() as api:
            for sid, (rid, size) in placed.items():
                assert (await api.delete(f"/v1/session/{sid}")).status_code == 200
                before[rid] -= size

        async def freed() -> bool:
            return used_on_platform(sim) == before

        await poll(freed, 10, "the platform's sockets to be freed")
        left = [s["session_id"] for s in sim.state()["sessions"]]
        assert left == [stranger]  # ours are gone, the stranger's stays
        for rid in holds:
            d = await store.deployments.get(rid, services.clock())
            assert d is not None and d.committed == 0
    finally:
        await scaler.stop()
        raw.close()
        await close_services(services)


async def test_rebuild_reads_deployments_we_do_not_own_keeps_ended_sessions_and_is_idempotent(
    fleet_web: FleetWeb, store: Store
) -> None:
    """Straight through `rebuild_sessions` (the scaler's step) after the store lost our prefix."""
    free = await fleet_web.ready_deployment(store, "London")  # not ours: made on the platform directly
    full = await fleet_web.ready_deployment(store, "Paris")
    add_players(fleet_web.sim, full, 4)  # full on the platform; our view still says empty
    body = {"app_name": "game", "version_name": "v1"}
    async with fleet_web.http() as api:
        linked = (await api.post("/v1/session", json={**body, "ip_list": PLAYERS[0]})).json()
        pinned = (
            await api.post("/v1/session", json={**body, "ip_list": PLAYERS[1], "deployment_request_id": full})
        ).json()
    assert linked["linked"] and linked["deployment_request_id"] == free, linked

    async def refused() -> bool:  # the platform refused it on `full` (its callback may come after the answer)
        record = await store.sessions.get(pinned["session_id"])
        return record is not None and record.state is SessionState.UNPROCESSABLE

    await poll(refused, 10, "the platform's callback refusing the pinned session")

    await store.wipe()  # Redis lost our data
    services = bootstrap(fleet_web.services.settings, store=store, jobs=DummyJobs())  # type: ignore[arg-type]
    try:
        await _rebuild_then_read(fleet_web, store, services, free, linked["session_id"], pinned["session_id"])
    finally:
        await services.client.aclose()


async def _rebuild_then_read(
    fleet_web: FleetWeb, store: Store, services: Services, free: str, linked_id: str, ended_id: str
) -> None:
    assert await rebuild_sessions(services, services.clock())

    async with fleet_web.http() as api:
        got = (await api.get(f"/v1/session/{linked_id}")).json()
        assert got["linked"] and got["deployment"]["request_id"] == free and got["sockets"] == 2
        ended = await api.get(f"/v1/session/{ended_id}")
        assert ended.status_code == 200 and ended.json()["status"] == "Status.UNPROCESSABLE"
        listed = (await api.get("/v1/sessions")).json()["data"]
        assert [s["session_id"] for s in listed] == [linked_id]  # the ended one is not listed
    d = await store.deployments.get(free, services.clock())
    assert d is not None and d.app == "game" and d.committed == 2 and not d.fleet  # read, not adopted
    ended_record = await store.sessions.get(ended_id)
    assert ended_record is not None and ended_record.platform_session_id
    assert await store.sessions.by_platform_id(ended_record.platform_session_id) == ended_id
    assert await store.redis.ttl(store.keys.platform_session(ended_record.platform_session_id)) > 0  # expires

    assert await rebuild_sessions(services, services.clock())  # again: nothing doubles
    d = await store.deployments.get(free, services.clock())
    assert d is not None and d.committed == 2 and d.sessions == 1
