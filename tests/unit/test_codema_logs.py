"""The platform client's log lines are events with fields (fleet.logging.event), so that with
FLEET_LOG_FORMAT=json each fact is its own JSON field, not one formatted text; no token in them."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from codema.client import CodemaClient
from codema.errors import PlatformError
from codema.schemas import DeployRequest
from fleet.logging import KeyValueFormatter
from tests.unit.test_codema_client import FakePlatform, FakeTime, Fault, make_client, route

RID = "93924761ccde"


async def status(client: CodemaClient) -> object:
    return await client.status(RID)


async def deploy(client: CodemaClient) -> object:
    return await client.deploy(DeployRequest(app_name="game", tags=["fleet-a"]), intent="intent-5")


async def stop(client: CodemaClient) -> object:
    return await client.stop(RID)


@dataclass(frozen=True)
class Row:
    name: str
    faults: tuple[Fault, ...]
    call: Callable[[CodemaClient], Awaitable[object]]
    event: str
    fields: dict[str, Any]
    level: int = logging.INFO
    extra: tuple[str, ...] = field(default=())  # fields present with values the row cannot know


ROWS = [
    Row(
        "a retried server error",
        (Fault(route("GET", "/v1/status"), status=500),),
        status,
        "platform_retry",
        {"endpoint": "status", "attempt": 1, "status": 500, "outcome": "server_error"},
        extra=("delay_s",),
    ),
    Row(
        "a refusal ends the call",
        (Fault(route("GET", "/v1/status"), status=404),),
        status,
        "platform_call_failed",
        {"endpoint": "status", "attempt": 1, "status": 404, "outcome": "not_found", "ambiguous": False},
    ),
    Row(
        "retries spent",
        (Fault(route("GET", "/v1/status"), status=503, times=None),),
        status,
        "platform_call_failed",
        {"endpoint": "status", "attempt": 2, "status": 503, "outcome": "server_error"},
        level=logging.WARNING,
    ),
    Row(
        "a 429 backs everyone off",
        (Fault(route("DELETE", "/v1/stop"), status=429, headers={"Retry-After": "2"}),),
        stop,
        "platform_backoff",
        {"endpoint": "stop", "delay_s": 2.0},
        level=logging.WARNING,
    ),
    Row(
        "an ambiguous create is looked up by its intent",
        (Fault(route("POST", "/v1/deploy"), exc=httpx.ReadTimeout, act_first=False),),
        deploy,
        "platform_deploy_ambiguous",
        {"intent": "intent-5"},
        level=logging.WARNING,
        extra=("status",),
    ),
    Row(
        "and resent when it did not act",
        (Fault(route("POST", "/v1/deploy"), exc=httpx.ReadTimeout, act_first=False),),
        deploy,
        "platform_deploy_resend",
        {"intent": "intent-5", "attempt": 1},
        extra=("delay_s",),
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
async def test_client_logs_are_events_with_fields(row: Row, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="codema")
    platform = FakePlatform()
    platform.deployments[RID] = {"request_id": RID, "tags": []}
    platform.faults += list(row.faults)
    async with make_client(platform, FakeTime(), max_attempts=2) as client:
        with contextlib.suppress(PlatformError):  # the failure itself is what some rows log
            await row.call(client)
    found = [r for r in caplog.records if r.name.startswith("codema") and r.getMessage() == row.event]
    assert len(found) == 1, [(r.getMessage(), r.args) for r in caplog.records]
    record = found[0]
    assert record.levelno == row.level and not record.args  # no %-formatting left
    rendered = json.loads(KeyValueFormatter(as_json=True).format(record))
    assert rendered["event"] == row.event and "msg" not in rendered
    assert {k: rendered[k] for k in row.fields} == row.fields
    assert set(row.extra) <= set(rendered)
    assert platform.token not in json.dumps(rendered)
