"""A session create whose platform answer is lost (chaos finding): the platform may have placed the
player. Our session id travels in the callback URL we hand the platform, so the platform's session
list tells what happened: placed -> linked as if the answer had come (never a 503 for a placed
player, never a socket nobody owns); not placed -> 503 as before and nothing left; unknown (the
list is down too) -> 503, and the stray sweeper deletes the platform session once it can see it.

Through a real `fleet web` and the simulator's hold faults (the platform acts, then holds its
answer past our client timeout)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

from allocator.background import Background
from allocator.marks import marked_url, session_id_in
from allocator.service import Allocator, new_session_id
from allocator.strays import PlatformSessions, StraySweeper
from codema.client import CodemaClient
from fleet.store import Store
from tests.fixtures.sim import RunningSim
from tests.integration.allocator_web import UK_PLAYERS, FleetWeb, poll, start_fleet_web

TIMEOUT_S = 1.0  # our platform call timeout; the simulator holds its answer longer
HOLD_S = 3.0
BODY = {"app_name": "game", "version_name": "v1", "ip_list": UK_PLAYERS}


@pytest.fixture
def short_web(sim: RunningSim, redis_url: str, prefix: str) -> Iterator[FleetWeb]:
    sim.setup_app("game", "v1", kind="Seat", sockets=4)
    web = start_fleet_web(sim, redis_url, prefix, codema_timeout_s=TIMEOUT_S)
    allocator(web).sweeper.delays_s = (0.3, 1.0, 3.0)  # the real ones are seconds to a minute
    yield web
    web.stop()


def allocator(web: FleetWeb) -> Allocator:
    found = web.services.extras["allocator"]
    assert isinstance(found, Allocator)
    return found


def platform_sessions(sim: RunningSim) -> list[dict[str, Any]]:
    return list(sim.state()["sessions"])


async def committed_and_reserved(store: Store, rid: str) -> tuple[int, int]:
    d = await store.deployments.get(rid, 0.0)
    assert d is not None
    return d.committed, d.reserved


async def test_lost_answer_of_a_placed_session_links_it(short_web: FleetWeb, store: Store) -> None:
    rid = await short_web.ready_deployment(store, "London")
    short_web.sim.faults(hold_rate={"session_create": 1.0}, hold_s=HOLD_S)
    async with short_web.http() as api:
        r = await api.post("/v1/session", json=BODY)
    assert r.status_code == 200, r.text  # before the fix: 503 while the platform had placed the players
    answer = r.json()
    assert answer["linked"] is True and answer["deployment_request_id"] == rid
    sid = answer["session_id"]

    on_platform = platform_sessions(short_web.sim)
    assert len(on_platform) == 1, on_platform  # exactly one: nothing was created twice
    record = await store.sessions.get(sid)
    assert record is not None and record.platform_session_id == on_platform[0]["session_id"]
    assert on_platform[0]["deployment_request_id"] == rid and on_platform[0]["linked"]
    assert short_web.used(rid) == 2 and await committed_and_reserved(store, rid) == (2, 0)

    # The platform's callback (with our id beside the token) is accepted by the webhook route.
    hooks = [h for h in short_web.sim.webhooks() if h["kind"] == "session"]
    assert hooks and all(h["result"] == "sent" for h in hooks), hooks
    code, listed = short_web.sim.platform("GET", "/v1/sessions")
    assert code == 200
    url = listed["data"][0]["webhook_url"]
    assert session_id_in(url, allocator(short_web).session_callback) == sid

    # Found and linked: nothing for the sweeper. Deleting the session frees the socket everywhere.
    assert allocator(short_web).sweeper.pending() == 0
    short_web.sim.faults(hold_rate={})
    async with short_web.http() as api:
        assert (await api.delete(f"/v1/session/{sid}")).status_code == 200
    assert platform_sessions(short_web.sim) == [] and short_web.used(rid) == 0
    assert await committed_and_reserved(store, rid) == (0, 0)


async def test_a_reservation_that_expired_during_the_lost_answer_keeps_a_session_that_fits(
    sim: RunningSim, redis_url: str, prefix: str, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="allocator.service")
    sim.setup_app("game", "v1", kind="Seat", sockets=4)
    web = start_fleet_web(sim, redis_url, prefix, codema_timeout_s=TIMEOUT_S, reservation_ttl_s=0.5)
    try:
        rid = await web.ready_deployment(store, "London")
        sim.faults(hold_rate={"session_create": 1.0}, hold_s=HOLD_S)
        async with web.http() as api:
            r = await api.post("/v1/session", json=BODY)
        assert r.status_code == 200 and r.json()["linked"] is True, r.text
        assert len(platform_sessions(sim)) == 1 and web.used(rid) == 2
        assert await committed_and_reserved(store, rid) == (2, 0)
        assert any(r.getMessage() == "reservation_expired_session_kept" for r in caplog.records)
    finally:
        web.stop()


async def test_a_create_that_failed_before_acting_answers_503_and_leaves_nothing(
    short_web: FleetWeb, store: Store
) -> None:
    rid = await short_web.ready_deployment(store, "London")
    short_web.sim.faults(error_rate={"session_create": 1.0})  # a 5xx: ambiguous, but nothing was made
    async with short_web.http() as api:
        r = await api.post("/v1/session", json=BODY)
    assert r.status_code == 503 and r.headers.get("Retry-After"), r.text
    assert platform_sessions(short_web.sim) == []
    assert await committed_and_reserved(store, rid) == (0, 0)  # the reservation was released at once


async def test_unknown_outcome_is_swept_once_the_platform_list_is_back(
    short_web: FleetWeb, store: Store
) -> None:
    rid = await short_web.ready_deployment(store, "London")
    await store.coord.mark_rebuilt(time.time())  # as the scaler does: the sweeper trusts a missing record
    sim = short_web.sim
    sim.faults(hold_rate={"session_create": 1.0}, hold_s=HOLD_S, error_rate={"sessions": 1.0})
    async with short_web.http() as api:
        r = await api.post("/v1/session", json=BODY)
    assert r.status_code == 503, r.text  # the answer and the list are both lost: we cannot tell
    assert len(platform_sessions(sim)) == 1 and short_web.used(rid) == 2  # ... but the platform acted
    assert await committed_and_reserved(store, rid) == (0, 0)

    sim.faults(hold_rate={}, error_rate={})

    async def gone() -> bool:
        return platform_sessions(sim) == [] and short_web.used(rid) == 0

    await poll(gone, 15, "the stray platform session to be deleted")
    assert allocator(short_web).sweeper.deleted == 1


async def test_the_sweeper_trusts_a_missing_record_only_once_redis_is_rebuilt(
    sim: RunningSim, store: Store
) -> None:
    """After Redis lost its data a missing record says nothing: the session may be one the rebuild
    brings back, so its platform session must stay until then."""
    sim.setup_app("game", "v1", kind="Seat", sockets=4)
    rid = sim.deploy("game", "v1")
    sim.wait_status(rid, "READY")
    base = "http://127.0.0.1:9/webhooks/sessions?token=x"
    sid = new_session_id()
    code, made = sim.platform("POST", "/v1/session", {**BODY, "deployment_request_id": rid,
                                                       "webhook_url": marked_url(base, sid)})  # fmt: skip
    assert code == 200, made
    client = CodemaClient(sim.base_url, sim.token, max_attempts=1)
    background = Background()
    sweeper = StraySweeper(PlatformSessions(client, base), store, "test", background, delays_s=(0.0, 0.0))

    async def done() -> bool:
        return sweeper.pending() == 0

    try:
        sweeper.note(sid)
        await poll(done, 10, "the sweeper's looks")
        assert len(platform_sessions(sim)) == 1 and sweeper.deleted == 0  # not rebuilt: left alone

        await store.coord.mark_rebuilt(time.time())
        sweeper.note(sid)
        await poll(done, 10, "the sweeper's looks")
        assert platform_sessions(sim) == [] and sweeper.deleted == 1
    finally:
        await background.aclose()
        await client.aclose()
