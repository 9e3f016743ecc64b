"""A linked session the platform no longer has (soak finding): a DELETE reached the platform but its
answer was lost, we answered 503 and the client gave up. Our record stayed linked and its hold
counted for ever, keeping the deployment from being scaled in. The scaler leader's session audit
(allocator.audit) ends it on our side once the platform's list shows it gone; a session the
platform still has, one linked too recently to judge, and any session while the list cannot be read
are left alone. Real `fleet web`, real scaler loop, the simulator's hold faults."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY

from allocator import audit
from allocator.audit import audit_sessions
from fleet.models import SessionState
from fleet.store import Store
from tests.fixtures.sim import RunningSim
from tests.fixtures.web import WEBHOOK_SECRET
from tests.integration.allocator_web import FleetWeb, poll, start_fleet_web
from tests.integration.autoscaler_harness import close_services, services_for, settings_for, start_scaler

TIMEOUT_S = 1.0  # our platform call timeout; the simulator holds its answer longer
HOLD_S = 1.5


@pytest.fixture
def web(sim: RunningSim, redis_url: str, prefix: str) -> Iterator[FleetWeb]:
    sim.setup_app("game", "v1", kind="Seat", sockets=4)
    running = start_fleet_web(sim, redis_url, prefix, codema_timeout_s=TIMEOUT_S)
    yield running
    running.stop()


def gone_total() -> float:
    return REGISTRY.get_sample_value("fleet_allocator_sessions_gone_total") or 0.0


async def place(web: FleetWeb, ip: str) -> str:
    async with web.http() as api:
        r = await api.post("/v1/session", json={"app_name": "game", "version_name": "v1", "ip_list": [ip]})
    assert r.status_code == 200 and r.json()["linked"], r.text
    return str(r.json()["session_id"])


async def delete_with_lost_answer(web: FleetWeb, sid: str) -> None:
    """The platform deletes the session, then holds its answer past our timeout: we answer 503."""
    web.sim.faults(hold_rate={"session_delete": 1.0}, hold_s=HOLD_S)
    async with web.http() as api:
        r = await api.delete(f"/v1/session/{sid}")
    web.sim.faults(hold_rate={})
    assert r.status_code == 503, r.text


async def held(store: Store, rid: str) -> int:
    d = await store.deployments.get(rid, time.time())
    assert d is not None
    return d.committed


async def test_a_session_deleted_on_the_platform_is_ended_by_the_scalers_audit(
    web: FleetWeb, store: Store, redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rid = await web.ready_deployment(store, "London")
    ghost, kept = await place(web, "81.2.69.160"), await place(web, "81.2.69.161")
    await delete_with_lost_answer(web, ghost)
    on_platform = [s["session_id"] for s in web.sim.state()["sessions"]]
    record = await store.sessions.get(ghost)
    assert record is not None and record.state is SessionState.LINKED  # ours still says linked
    assert record.platform_session_id not in on_platform and len(on_platform) == 1
    assert await held(store, rid) == 2  # both sockets still booked: one of them for nobody

    monkeypatch.setattr(audit, "GRACE_S", 0.2)
    settings = settings_for(
        redis_url, prefix, public_url=web.url, webhook_secret=WEBHOOK_SECRET, session_audit_interval_s=0.2
    )
    services = services_for(settings, web.sim)
    before = gone_total()
    scaler = start_scaler(services, "audit")
    try:

        async def ended() -> bool:
            r = await store.sessions.get(ghost)
            return r is not None and r.state is SessionState.TERMINATING

        await poll(ended, 15, "the scaler's audit to end the session")
    finally:
        await scaler.stop()
        await close_services(services)
    assert await held(store, rid) == 1  # its socket is free again; the other session's stays
    kept_record = await store.sessions.get(kept)
    assert kept_record is not None and kept_record.state is SessionState.LINKED
    assert gone_total() == before + 1
    async with web.http() as api:
        assert (await api.get(f"/v1/session/{ghost}")).status_code == 404
        assert (await api.delete(f"/v1/session/{ghost}")).status_code == 410  # a late retry: done
        listed = (await api.get("/v1/sessions", params={"limit": 100})).json()["data"]
        assert [s["session_id"] for s in listed] == [kept]


async def test_the_audit_ends_nothing_it_cannot_judge(
    web: FleetWeb, store: Store, redis_url: str, prefix: str
) -> None:
    rid = await web.ready_deployment(store, "London")
    ghost, kept = await place(web, "81.2.69.160"), await place(web, "81.2.69.161")
    await delete_with_lost_answer(web, ghost)
    # The scaler's own settings, with another public URL than the web's: the audit compares the
    # platform's session ids, so callback URLs do not matter (with them, every session would look gone).
    settings = settings_for(
        redis_url, prefix, public_url="http://scaler.invalid:9", webhook_secret=WEBHOOK_SECRET
    )
    services = services_for(settings, web.sim)  # in this test's event loop
    try:
        assert await audit_sessions(services, time.time()) == 0  # linked just now: the list may lag
        web.sim.faults(error_rate={"sessions": 1.0})
        try:
            later = time.time() + audit.GRACE_S + 1
            assert await audit_sessions(services, later) == 0  # the list cannot be read: nothing ends
        finally:
            web.sim.faults(error_rate={})
        record = await store.sessions.get(ghost)
        assert record is not None and record.state is SessionState.LINKED and await held(store, rid) == 2

        assert await audit_sessions(services, time.time() + audit.GRACE_S + 1) == 1  # now it can judge
        assert await held(store, rid) == 1
        kept_record = await store.sessions.get(kept)
        assert kept_record is not None and kept_record.state is SessionState.LINKED
    finally:
        await close_services(services)
