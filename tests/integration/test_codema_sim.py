"""The client against the real simulator over HTTP: a deployment's and a session's life through
every client method, and the simulator's faults (answers held after acting, 429s) handled the way
issue 3 asks, checked against the simulator's ground truth."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from codema.client import CodemaClient
from codema.errors import NotFound
from codema.schemas import DeployRequest, SessionCreate, StopOutcome
from fleet.models import Status
from tests.fixtures.sim import RunningSim

T = TypeVar("T")

VERSION = {
    "name": "v1",
    "docker_repository": "registry.local",
    "docker_image": "game",
    "docker_tag": "1",
    "req_cpu": 256,
    "req_memory": 256,
    "session_config": {"kind": "Seat", "sockets": 4, "empty_ttl": 60},
}


async def eventually(probe: Callable[[], Awaitable[T | None]], what: str, timeout_s: float = 10.0) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.05)


def client_for(sim: RunningSim, **kwargs: Any) -> CodemaClient:
    return CodemaClient(sim.base_url, sim.token, **kwargs)


def with_intent(sim: RunningSim, intent: str) -> list[dict[str, Any]]:
    return [d for d in sim.state()["deployments"] if f"intent:{intent}" in (d.get("tags") or [])]


async def test_deployment_and_session_life_through_the_client(sim: RunningSim) -> None:
    async with client_for(sim, page_limit=2) as client:
        await client.create_app("game")
        assert (await client.get_app("game")).name == "game"
        assert [a.name for a in await client.list_apps()] == ["game"]
        await client.create_app_version("game", VERSION)
        version = await client.get_app_version("game", "v1")
        assert (version.session_config.kind, version.session_config.sockets) == ("Seat", 4)
        assert [v.name for v in await client.list_app_versions("game")] == ["v1"]

        request = DeployRequest(app_name="game", version_name="v1", ip_list=["8.8.8.8"], tags=["fleet-a"])
        created = [await client.deploy(request, intent=f"life-{i}") for i in range(3)]
        rid = created[0].request_id

        async def ready() -> Any:
            status = await client.status(rid)
            return status if status.parsed_status is Status.READY else None

        status = await eventually(ready, f"{rid} READY")
        report = status.to_report("poll")
        assert report.sockets == 4 and report.usage == 0 and "intent:life-0" in (report.tags or ())

        listed = await client.list_deployments()  # page_limit=2: two pages for three deployments
        assert sorted(d.request_id for d in listed) == sorted(c.request_id for c in created)
        found = await client.find_by_intent("life-0")
        assert found is not None and found.request_id == rid

        session = await client.create_session(
            SessionCreate(app_name="game", version_name="v1", ip_list=["8.8.8.8"], deployment_request_id=rid)
        )
        info = await eventually(
            lambda: _linked(client, session.session_id), f"session {session.session_id} linked"
        )
        assert info.deployment_request_id == rid and info.kind == "Seat"
        users = await client.add_session_users(session.session_id, ["1.1.1.1"])
        assert {u.ip for u in users} == {"8.8.8.8", "1.1.1.1"}
        assert {u.ip for u in await client.remove_session_users(session.session_id, ["1.1.1.1"])} == {
            "8.8.8.8"
        }
        assert {u.ip for u in await client.get_session_users(session.session_id)} == {"8.8.8.8"}
        assert [s.session_id for s in await client.list_sessions()] == [session.session_id]
        await client.delete_session(session.session_id)
        await client.delete_session(session.session_id)  # already gone: still success

        ticket = await client.request_telemetry([c.request_id for c in created], ["8.8.8.8"])
        result = await client.telemetry_result(ticket.retrieval_key)
        assert set(result.scores) <= {c.request_id for c in created}
        locations = await client.locations(tags=True)
        assert locations and all(loc.city for loc in locations)
        assert (await client.lookup_ip("8.8.8.8")).ip_address == "8.8.8.8"
        assert len(await client.lookup_ips([f"8.8.{i}.8" for i in range(25)])) == 25

        assert await client.stop(rid) in (StopOutcome.STOPPING, StopOutcome.ACCEPTED)
        gone = await eventually(lambda: _stopped(client, rid), f"{rid} stopped")
        assert gone is StopOutcome.GONE
        with pytest.raises(NotFound):
            await client.status("0123456789ab")


async def _linked(client: CodemaClient, session_id: str) -> Any:
    info = await client.get_session(session_id)
    return info if info.linked and info.status_name == "READY" else None


async def _stopped(client: CodemaClient, request_id: str) -> StopOutcome | None:
    outcome = await client.stop(request_id)
    return outcome if outcome is StopOutcome.GONE else None


async def test_deploy_answer_held_past_the_timeout_makes_exactly_one_deployment(sim: RunningSim) -> None:
    sim.setup_app()
    sim.faults(hold_rate={"deploy": 1.0}, hold_s=1.5)  # the deploy happens; its answer comes too late
    async with client_for(sim, timeout_s=0.5) as client:
        request = DeployRequest(app_name="game", version_name="v1", ip_list=["8.8.8.8"])
        created = await client.deploy(request, intent="held-1")
    assert created.recovered
    assert [d["request_id"] for d in sim.state()["deployments"]] == [created.request_id]
    assert [d["request_id"] for d in with_intent(sim, "held-1")] == [created.request_id]
    # The simulator counts a call once it has answered: wait for the held answer, then check that
    # the client looked the intent up instead of sending the deploy again.
    sim.wait_for(lambda: sim.calls()["calls"].get("deploy"), 5.0, "the held deploy to be answered")
    assert sim.calls()["calls"]["deploy"] == 1


async def test_platform_429s_are_waited_out(sim: RunningSim) -> None:
    sim.setup_app()
    rid = sim.deploy()
    sim.faults(rate_limit={"status": 4.0})  # the simulator allows 4/s; the client's bucket allows 20/s
    async with client_for(sim) as client:
        statuses = [await client.status(rid) for _ in range(10)]
    assert all(s.request_id == rid for s in statuses)
    responses = sim.calls()["responses"]["status"]
    assert responses["200"] == 10
    # Each 429 held every caller back for Retry-After instead of letting them hammer on.
    assert 1 <= responses.get("429", 0) <= 3
