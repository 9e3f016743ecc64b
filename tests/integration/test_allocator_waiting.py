"""No room: sessions wait (answered at once), are recorded as demand for the scaler, and are linked
the moment a deployment is READY; a bounded wait ends unprocessable; 503 when no capacity can come."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fleet.store import Store
from tests.fixtures.sim import RunningSim
from tests.integration.allocator_web import UK_PLAYERS, FleetWeb, fleet_web, poll, start_fleet_web

__all__ = ["fleet_web"]

BODY = {"app_name": "game", "version_name": "v1"}


def body(*ips: str, **extra: Any) -> dict[str, Any]:
    return {**BODY, "ip_list": list(ips or UK_PLAYERS), **extra}


async def capacity_events(store: Store) -> list[dict[str, str]]:
    entries = await store.redis.xrange(store.keys.events())
    return [dict(f) for _, f in entries if f.get("kind") == "capacity"]


async def test_waiting_session_is_recorded_and_linked_when_a_deployment_is_ready(
    fleet_web: FleetWeb, store: Store, webhook_sink: Any
) -> None:
    await fleet_web.fleet_policy(store, maximum=3)
    async with fleet_web.http() as api:
        r = await api.post("/v1/session", json=body(webhook_url=f"{webhook_sink.url}/s"))
        assert r.status_code == 200, r.text
        created = r.json()
        assert created["status"] == "Status.WAITING" and created["linked"] is False
        sid = created["session_id"]
        got = (await api.get(f"/v1/session/{sid}")).json()
        assert got["linked"] is False and "deployment" not in got and got["wait_deadline"]

        # What the scaler reads: the queue, each record's size and origin, and a capacity event.
        assert [s for s, _ in await store.sessions.waiting()] == [sid]
        assert await store.sessions.waiting_demand("game", "v1") == 2
        record = await store.sessions.get(sid)
        assert record is not None and record.size == 2
        assert record.origin["country"] == "GB" and {"latitude", "longitude"} <= set(record.origin)
        events = await capacity_events(store)
        assert events and events[-1]["session_id"] == sid and events[-1]["size"] == "2"

        started = time.monotonic()
        rid = await fleet_web.ready_deployment(store, "London")  # its READY report is an event
        linked = await poll(lambda: _linked(api, sid), timeout_s=10, what="the waiting session to be linked")
        assert linked["deployment"]["request_id"] == rid and linked["deployment"]["fqdn"]
        assert time.monotonic() - started < 5
    assert await store.sessions.waiting() == []
    assert await store.sessions.waiting_demand("game", "v1") == 0
    assert fleet_web.used(rid) == 2
    hook = webhook_sink.wait_for(1)[0].body
    assert hook["session_id"] == sid and hook["linked"] is True


async def _linked(api: Any, sid: str) -> dict[str, Any] | None:
    got = (await api.get(f"/v1/session/{sid}")).json()
    return got if got.get("linked") else None


async def test_wait_option_holds_the_answer_until_linked(fleet_web: FleetWeb, store: Store) -> None:
    await fleet_web.fleet_policy(store, maximum=3)
    async with fleet_web.http() as api:
        pending = asyncio.create_task(api.post("/v1/session?wait=20", json=body()))
        await poll(lambda: store.sessions.waiting(), timeout_s=5, what="the session to wait")
        assert not pending.done()
        rid = await fleet_web.ready_deployment(store, "London")
        answer = await asyncio.wait_for(pending, 15)
    assert answer.status_code == 200 and answer.json()["linked"] is True
    assert answer.json()["deployment_request_id"] == rid


async def test_wait_option_times_out_with_the_session_still_waiting(
    fleet_web: FleetWeb, store: Store
) -> None:
    await fleet_web.fleet_policy(store, maximum=3)
    async with fleet_web.http() as api:
        started = time.monotonic()
        r = await api.post("/v1/session?wait=0.5", json=body())
    assert r.json()["status"] == "Status.WAITING" and 0.4 < time.monotonic() - started < 5


async def test_a_bounded_wait_ends_unprocessable_with_a_webhook(
    sim: RunningSim, redis_url: str, prefix: str, store: Store, webhook_sink: Any
) -> None:
    sim.setup_app("game", "v1", kind="Seat", sockets=4)
    web = start_fleet_web(sim, redis_url, prefix, session_wait_s=1.0)
    try:
        await web.fleet_policy(store, maximum=3)
        async with web.http() as api:
            r = await api.post("/v1/session", json=body(webhook_url=f"{webhook_sink.url}/s"))
            sid = r.json()["session_id"]
            hook = webhook_sink.wait_for(1, timeout_s=10)[0].body
            assert hook["session_id"] == sid and hook["status"] == "Status.UNPROCESSABLE"
            got = (await api.get(f"/v1/session/{sid}")).json()
            assert got["status"] == "Status.UNPROCESSABLE" and got["error"]
            listed = (await api.get("/v1/sessions")).json()
            assert sid not in [s["session_id"] for s in listed["data"]]
        assert await store.sessions.waiting() == []
        assert await store.sessions.waiting_demand("game", "v1") == 0
    finally:
        web.stop()


async def full_policy_deployment(web: FleetWeb, store: Store, maximum: int) -> None:
    """The policy's one deployment (READY, owned by it), filled by a session of 4 players."""
    await web.fleet_policy(store, maximum=maximum)
    rid = await web.ready_deployment(store, "London")
    await store.deployments.record_owner(rid, fleet="f", policy="eu", intent="i1", app="game", version="v1",
                                         now=time.time())  # fmt: skip
    async with web.http() as api:
        four = body("81.2.69.1", "81.2.69.2", "81.2.69.3", "81.2.69.4")
        assert (await api.post("/v1/session", json=four)).json()["linked"] is True


async def test_no_capacity_can_be_made_answers_503_with_retry_after(
    fleet_web: FleetWeb, store: Store
) -> None:
    async with fleet_web.http() as api:
        r = await api.post("/v1/session", json=body())  # no fleet policy links the version
        assert r.status_code == 503 and int(r.headers["retry-after"]) > 0
        assert "no fleet policy" in r.json()["message"]
    # A policy at maximum whose only deployment is full: still nothing can come.
    await full_policy_deployment(fleet_web, store, maximum=1)
    async with fleet_web.http() as api:
        r = await api.post("/v1/session", json=body())
        assert r.status_code == 503 and "at_maximum" in r.json()["message"]
    assert await store.sessions.waiting() == []


async def test_a_burst_beyond_what_policies_can_hold_is_refused_not_queued(
    fleet_web: FleetWeb, store: Store
) -> None:
    # maximum 2, one full deployment: room for one more deployment of 4 sockets.
    await full_policy_deployment(fleet_web, store, maximum=2)
    async with fleet_web.http() as api:
        answers = await asyncio.gather(
            *(api.post("/v1/session", json=body(f"81.2.69.{50 + i}")) for i in range(7))
        )
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] * 4 + [503] * 3, codes  # 4 sockets of headroom: 4 wait, 3 are refused
    assert await store.sessions.waiting_demand("game", "v1") == 4


async def test_burst_onto_a_full_fleet_records_its_sockets_as_demand(
    fleet_web: FleetWeb, store: Store
) -> None:
    """What the scaler turns into ceil(N / sockets) deployments (the scaler itself: test_allocator_burst)."""
    await fleet_web.fleet_policy(store, maximum=10)
    async with fleet_web.http() as api:
        answers = await asyncio.gather(
            *(api.post("/v1/session", json=body(f"81.2.69.{i}")) for i in range(1, 11))
        )
    assert all(a.status_code == 200 and a.json()["status"] == "Status.WAITING" for a in answers)
    assert await store.sessions.waiting_demand("game", "v1") == 10
    waiting = await store.sessions.waiting()
    records = await store.sessions.get_many([sid for sid, _ in waiting])
    assert len(records) == 10 and sum(r.size for r in records) == 10
    events = await capacity_events(store)
    assert sorted(e["session_id"] for e in events) == sorted(a.json()["session_id"] for a in answers)


async def test_deleting_a_waiting_session_removes_its_demand(fleet_web: FleetWeb, store: Store) -> None:
    await fleet_web.fleet_policy(store, maximum=3)
    async with fleet_web.http() as api:
        sid = (await api.post("/v1/session", json=body())).json()["session_id"]
        r = await api.put(f"/v1/session/{sid}/users", json={"ip_list": ["81.2.69.7"]})
        assert r.status_code == 200
        assert await store.sessions.waiting_demand("game", "v1") == 3
        assert (await api.delete(f"/v1/session/{sid}")).status_code == 200
    assert await store.sessions.waiting() == []
    assert await store.sessions.waiting_demand("game", "v1") == 0
