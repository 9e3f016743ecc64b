"""The API token never shows up in logs, exception messages, reprs or metrics, even when the
platform echoes it back; metric labels are route templates, never ids."""

from __future__ import annotations

import logging
import re

import httpx
import pytest
from prometheus_client import REGISTRY, generate_latest

from codema.endpoints import ALL as ENDPOINTS
from codema.errors import PlatformError
from codema.schemas import DeployRequest, SessionCreate
from fleet.logging import KeyValueFormatter
from tests.unit.test_codema_client import FakePlatform, FakeTime, Fault, make_client, route

TOKEN = "tok-SECRET-5e1f0c2d9b"
REQUEST_ID = "93924761ccde"


def echo(status: int) -> dict[str, str]:
    return {"message": f"token {TOKEN} refused for {REQUEST_ID}"}


class EchoingConnectError(httpx.ConnectError):
    """A transport error whose text carries the token, as a badly written proxy might."""

    def __init__(self, message: str, *, request: httpx.Request) -> None:
        super().__init__(f"{message}: Authorization: token {TOKEN}", request=request)


async def test_token_never_leaks(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    platform = FakePlatform(token=TOKEN)
    platform.faults += [
        Fault(route("GET", "/v1/status"), status=400, body=echo(400)),
        Fault(route("GET", "/v1/status"), status=500, body=echo(500), times=None),
        Fault(route("POST", "/v1/deploy"), exc=EchoingConnectError, times=None),
        Fault(route("GET", "/v1/session"), status=401, body=echo(401)),
        Fault(route("DELETE", "/v1/stop"), status=429, body=echo(429), headers={"Retry-After": "1"}),
    ]
    errors: list[PlatformError] = []
    client = make_client(platform, FakeTime(), max_attempts=2, circuit_failures=3)
    async with client:
        for call in (
            lambda: client.status(REQUEST_ID),  # 400 echoing the token
            lambda: client.status(REQUEST_ID),  # 500s echoing the token, retried
            lambda: client.status(REQUEST_ID),  # circuit opens
            lambda: client.deploy(
                DeployRequest(app_name="game", webhook_url="https://h/w?token=hooksecret1")
            ),
            lambda: client.get_session("s-s"),
        ):
            with pytest.raises(PlatformError) as caught:
                await call()
            errors.append(caught.value)
        await client.stop(REQUEST_ID)  # 429 then 200
        await client.create_session(SessionCreate(app_name="g", webhook_url="https://h/s?token=hooksecret1"))
        shown = [repr(client), str(client)]
    assert len(errors) == 5
    for error in errors:
        shown += [str(error), repr(error), str(error.args)]
    shown.append(caplog.text)
    shown += [str(record.args) for record in caplog.records]
    # The fields of events, raw and as both formats render them without being told any secret.
    shown += [str(getattr(record, "fleet_fields", "")) for record in caplog.records]
    for as_json in (False, True):
        shown += [KeyValueFormatter(as_json=as_json).format(record) for record in caplog.records]
    metrics = generate_latest(REGISTRY).decode()
    for text in [*shown, metrics]:
        assert TOKEN not in text
        assert "hooksecret1" not in text
    assert any("***" in str(e) for e in errors)  # the echo was redacted, not dropped silently
    assert all(r.headers["authorization"] == f"token {TOKEN}" for r in platform.requests)


async def test_metric_endpoint_labels_are_route_templates_never_ids() -> None:
    platform = FakePlatform()
    platform.deployments[REQUEST_ID] = {"request_id": REQUEST_ID, "tags": []}
    async with make_client(platform, FakeTime()) as client:
        await client.status(REQUEST_ID)
        await client.stop(REQUEST_ID)
        created = await client.create_session(SessionCreate(app_name="g", ip_list=["198.51.100.77"]))
        await client.get_session(created.session_id)
        await client.lookup_ip("198.51.100.77")
    known = {endpoint.name for endpoint in ENDPOINTS}
    exposition = generate_latest(REGISTRY).decode()
    labels = set(re.findall(r'^fleet_platform_\w+\{[^}]*endpoint="([^"]*)"', exposition, flags=re.M))
    assert labels and labels <= known
    for identifier in (REQUEST_ID, created.session_id, "198.51.100.77"):
        assert identifier not in exposition
