"""Every placement attempt ends in exactly one `event=placement` log line (issue 7) with the app,
version, fleet, policy, deployment, outcome, reason, players, size and latency, and never a player's
address or a token. One row per outcome of a session create, then the linker's outcomes."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from fleet.logging import KeyValueFormatter
from fleet.store import Store
from tests.fixtures.sim import RunningSim
from tests.fixtures.web import API_TOKEN, WEBHOOK_SECRET
from tests.integration.allocator_web import CITY, UK_PLAYERS, FleetWeb, fleet_web, poll, start_fleet_web

__all__ = ["fleet_web"]

FIELDS = {"session", "app", "version", "fleet", "policy", "deployment", "outcome", "reason", "players",
          "size", "latency_ms"}  # fmt: skip
RANKING = {"telemetry", "geography", "geography_fallback", "telemetry_partial", "unscored"}
PINNED_NOWHERE = "0123456789ab"


def body(**extra: Any) -> dict[str, Any]:
    return {"app_name": "game", "version_name": "v1", "ip_list": UK_PLAYERS, **extra}


def placement_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The fields of every `event=placement` record; each rendered line is checked for secrets."""
    formatter = KeyValueFormatter()  # no secrets given: nothing is scrubbed that was not left out
    lines = []
    for record in caplog.records:
        if record.getMessage() != "placement" or not hasattr(record, "fleet_fields"):
            continue
        text = formatter.format(record)
        for secret in (*UK_PLAYERS, "81.2.69.", API_TOKEN, WEBHOOK_SECRET, "token="):
            assert secret not in text, text
        lines.append(dict(record.fleet_fields))
    return lines


async def owned_ready(web: FleetWeb, store: Store) -> str:
    """A READY deployment of policy eu, its owner recorded before it is READY (as our creates are)."""
    rid = web.sim.deploy("game", "v1", filters=[CITY["London"]])
    await store.deployments.record_owner(rid, fleet="f", policy="eu", intent="i-log", app="game",
                                         version="v1", now=time.time())  # fmt: skip
    web.sim.wait_status(rid, "READY")
    await web.refresh(store, rid)
    return rid


@dataclass(frozen=True)
class Row:
    name: str
    setup: Callable[[FleetWeb, Store], Awaitable[str]]  # the deployment the line should name
    body: dict[str, Any]
    status: int
    expect: dict[str, Any]


async def linked_setup(web: FleetWeb, store: Store) -> str:
    await web.fleet_policy(store)
    return await owned_ready(web, store)


async def waiting_setup(web: FleetWeb, store: Store) -> str:
    await web.fleet_policy(store)
    return ""


async def nothing(web: FleetWeb, store: Store) -> str:
    return ""


async def pinned_setup(web: FleetWeb, store: Store) -> str:
    return PINNED_NOWHERE


async def platform_down_setup(web: FleetWeb, store: Store) -> str:
    rid = await linked_setup(web, store)
    web.sim.faults(error_rate={"session_create": 1.0})
    return rid


ROWS = [
    Row("linked", linked_setup, body(), 200, {"outcome": "linked", "fleet": "f", "policy": "eu"}),
    Row("waiting", waiting_setup, body(), 200, {"outcome": "waiting", "reason": "no_deployments"}),
    Row("refused", nothing, body(), 503, {"outcome": "refused", "outlook": "no_policy", "fleet": ""}),
    Row(
        "unprocessable (pinned)",
        pinned_setup,
        body(deployment_request_id=PINNED_NOWHERE),
        200,
        {"outcome": "unprocessable", "reason": "pinned_unavailable"},
    ),
    Row(
        "error (platform unavailable)",
        platform_down_setup,
        body(),
        503,
        {"outcome": "error", "reason": "platform_unavailable", "fleet": "f", "policy": "eu"},
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
async def test_each_create_outcome_writes_one_placement_line(
    row: Row, fleet_web: FleetWeb, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    rid = await row.setup(fleet_web, store)
    caplog.set_level(logging.INFO)
    async with fleet_web.http() as api:
        r = await api.post("/v1/session", json=row.body)
    assert r.status_code == row.status, r.text
    lines = placement_lines(caplog)
    assert len(lines) == 1, lines
    line = lines[0]
    assert set(line) >= FIELDS, line
    expect = {"app": "game", "version": "v1", "deployment": rid, "players": 2, "size": 2, **row.expect}
    assert {k: line[k] for k in expect} == expect
    if row.status == 200:
        assert line["session"] == r.json()["session_id"]
    if line["outcome"] == "linked":
        assert line["reason"] in RANKING
    assert isinstance(line["latency_ms"], float) and line["latency_ms"] >= 0


async def test_the_linker_writes_the_line_that_ends_a_wait(
    fleet_web: FleetWeb, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await fleet_web.fleet_policy(store)
    async with fleet_web.http() as api:
        sid = (await api.post("/v1/session", json=body())).json()["session_id"]
        rid = await owned_ready(fleet_web, store)

        async def linked() -> bool:
            return bool((await api.get(f"/v1/session/{sid}")).json().get("linked"))

        await poll(linked, 10, "the waiting session to be linked")
    lines = [x for x in placement_lines(caplog) if x["session"] == sid]
    assert [x["outcome"] for x in lines] == ["waiting", "linked"]  # one per attempt that ended
    done = lines[1]
    assert (done["deployment"], done["fleet"], done["policy"]) == (rid, "f", "eu")
    assert done["reason"] in RANKING and done["waited_s"] >= 0 and set(done) >= FIELDS


async def test_a_wait_that_expires_writes_an_unprocessable_line(
    sim: RunningSim, redis_url: str, prefix: str, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    sim.setup_app("game", "v1", kind="Seat", sockets=4)
    web = start_fleet_web(sim, redis_url, prefix, session_wait_s=0.5)
    try:
        await web.fleet_policy(store)
        async with web.http() as api:
            sid = (await api.post("/v1/session", json=body())).json()["session_id"]

            async def ended() -> bool:
                got = (await api.get(f"/v1/session/{sid}")).json()
                return bool(got.get("status") == "Status.UNPROCESSABLE")

            await poll(ended, 10, "the wait to expire")
    finally:
        web.stop()
    lines = [x for x in placement_lines(caplog) if x["session"] == sid]
    assert [(x["outcome"], x["reason"]) for x in lines] == [
        ("waiting", "no_deployments"),
        ("unprocessable", "wait_expired"),
    ]
    assert set(lines[1]) >= FIELDS and lines[1]["deployment"] == ""
