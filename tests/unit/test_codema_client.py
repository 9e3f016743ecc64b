"""The Codema client against an in-memory platform behind httpx.MockTransport: one test per
failure mode of issue 3, with virtual time (injected sleep and clock) so nothing really waits."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from prometheus_client import REGISTRY

from codema.client import CodemaClient
from codema.errors import (
    AlreadyTerminated,
    CircuitOpen,
    Conflict,
    NotFound,
    PlatformRejected,
    PlatformUnavailable,
    RateLimited,
    Unauthorized,
)
from codema.limits import InMemoryPlatformLimits, Rate
from codema.schemas import DeployRequest, SessionCreate, StopOutcome

TOKEN = "tok-7f3a9c1e-secret"


class FakeTime:
    """Virtual time: `sleep` records the delay and moves the clock, nothing really waits."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.t = start
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


@dataclass
class Fault:
    """Answer matching requests with `status` (or raise `exc`), `times` times (None = always).
    With `act_first` the platform performs the request before failing: the ambiguous case."""

    match: Callable[[httpx.Request], bool]
    status: int = 503
    exc: type[httpx.TransportError] | None = None
    times: int | None = 1
    act_first: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=lambda: {"message": "injected"})


def route(method: str, prefix: str, **query: str) -> Callable[[httpx.Request], bool]:
    def match(request: httpx.Request) -> bool:
        params = parse_qs(request.url.query.decode())
        return (
            request.method == method
            and request.url.path.startswith(prefix)
            and all(params.get(k) == [v] for k, v in query.items())
        )

    return match


class FakePlatform:
    """Just enough of the Codema v1 API, in spec shapes, with injectable faults."""

    def __init__(self, token: str = TOKEN, page_size: int = 2) -> None:
        self.token = token
        self.page_size = page_size
        self.requests: list[httpx.Request] = []
        self.faults: list[Fault] = []
        self.deployments: dict[str, dict[str, Any]] = {}
        self.stop_answers: dict[str, int] = {}
        self.sessions: dict[str, dict[str, Any]] = {}
        self.lookup_batches: list[list[str]] = []

    def calls(self, method: str, prefix: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and r.url.path.startswith(prefix)]

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.headers.get("authorization") != f"token {self.token}":
            return httpx.Response(401, json={"message": "Unauthorized"})
        for fault in self.faults:
            if fault.times != 0 and fault.match(request):
                if fault.times is not None:
                    fault.times -= 1
                if fault.act_first:
                    self.route(request)
                if fault.exc is not None:
                    raise fault.exc("injected", request=request)
                return httpx.Response(fault.status, json=fault.body, headers=fault.headers)
        return self.route(request)

    # --- routes ----------------------------------------------------------------------------------
    def route(self, request: httpx.Request) -> httpx.Response:
        parts = request.url.path.strip("/").split("/")[1:]  # drop "v1"
        body = json.loads(request.content) if request.content else None
        key = (request.method, parts[0])
        handlers: dict[tuple[str, str], Callable[[list[str], Any, httpx.Request], httpx.Response]] = {
            ("POST", "deploy"): self._deploy,
            ("GET", "status"): self._status,
            ("DELETE", "stop"): self._stop,
            ("GET", "deployments"): self._list,
            ("POST", "deployments"): self._bulk_stop,
            ("POST", "session"): self._create_session,
            ("GET", "session"): self._session,
            ("PUT", "session"): self._session,
            ("DELETE", "session"): self._session,
            ("GET", "sessions"): self._sessions,
            ("POST", "telemetry"): self._telemetry,
            ("GET", "telemetry"): self._telemetry,
            ("GET", "locations"): self._locations,
            ("GET", "ip"): self._ip,
            ("POST", "ips"): self._ips,
            ("POST", "app"): self._app,
            ("GET", "app"): self._app,
            ("GET", "apps"): self._apps,
        }
        return handlers[key](parts, body, request)

    def _deploy(self, parts: list[str], body: Any, request: httpx.Request) -> httpx.Response:
        rid = f"{len(self.deployments) + 1:012x}"
        self.deployments[rid] = {
            "request_id": rid,
            "fqdn": f"{rid}.codema.test",
            "start_time": "2024-05-26 12:00:45.831041",
            "ready": False,
            "public_ip": "203.0.113.7",
            "tags": body.get("tags", []),
            "sockets": 10,
            "sockets_usage": 0,
        }
        return httpx.Response(
            200,
            json={
                "request_id": rid,
                "request_dns": f"{rid}.codema.test",
                "request_app": body["app_name"],
                "request_version": body.get("version_name", "v1"),
                "request_user_count": len(body.get("ip_list", [])),
                "tags": body.get("tags", []),
                "container_log_storage": {"enabled": False},
            },
        )

    def _status(self, parts: list[str], body: Any, request: httpx.Request) -> httpx.Response:
        item = self.deployments.get(parts[1])
        if item is None:
            return httpx.Response(404, json={"message": "Deployment not found"})
        return httpx.Response(200, json=status_body(parts[1], tags=item["tags"]))

    def _stop(self, parts: list[str], body: Any, request: httpx.Request) -> httpx.Response:
        code = self.stop_answers.get(parts[1], 200)
        if code == 410:
            return httpx.Response(410, json={"message": "Instance Already terminated"})
        if code == 202:
            return httpx.Response(
                202, json={"message": f"{parts[1]} - Delete request will be processed soon"}
            )
        if code != 200:
            return httpx.Response(code, json={"message": "nope"})
        return httpx.Response(200, json={"message": f"Instance {parts[1]} will be deleted"})

    def _page(self, items: list[dict[str, Any]], request: httpx.Request) -> dict[str, Any]:
        params = parse_qs(request.url.query.decode())
        page = int(params.get("page", ["1"])[0])
        size = min(self.page_size, int(params.get("limit", ["100"])[0]))
        pages = max(1, -(-len(items) // size))
        chunk = items[(page - 1) * size : page * size]
        return {
            "data": chunk,
            "total_count": len(items),
            "pagination": {
                "number": page,
                "next_page_number": page + 1 if page < pages else None,
                "previous_page_number": page - 1 if page > 1 else None,
                "paginator": {"num_pages": pages},
                "has_next": page < pages,
                "has_previous": page > 1,
            },
        }

    def _list(self, parts: list[str], body: Any, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=self._page(list(self.deployments.values()), request))

    def _bulk_stop(self, parts: list[str], body: Any, request: httpx.Request) -> httpx.Response:
        ids = [i for f in body["filters"] for i in f["values"] if i in self.deployments]
        return httpx.Response(200, json={"processable": [{"request_id": i} for i in ids]})

    def _create_session(self, parts: list[str], body: Any, request: httpx.Request) -> httpx.Response:
        sid = f"s{len(self.sessions) + 1}-s"
        self.sessions[sid] = {"ips": list(body.get("ip_list", [])), "app": body["app_name"]}
        return httpx.Response(
            200, json={"session_id": sid, "app": body["app_name"], "version": body.get("version_name", "v1")}
        )

    def _session(self, parts: list[str], body: Any, request: httpx.Request) -> httpx.Response:
        sid = parts[1]
        if sid not in self.sessions:
            return httpx.Response(410 if request.method == "DELETE" else 404, json={"message": "gone"})
        session = self.sessions[sid]
        if len(parts) == 3:  # /users
            if request.method == "PUT":
                session["ips"] += body["ip_list"]
            elif request.method == "DELETE":
                session["ips"] = [ip for ip in session["ips"] if ip not in body["ip_list"]]
            return httpx.Response(200, json={"session_users": [{"ip": ip} for ip in session["ips"]]})
        if request.method == "DELETE":
            del self.sessions[sid]
            return httpx.Response(200, json={"message": "deleted", "session_id": sid})
        return httpx.Response(200, json=session_body(sid, session["ips"]))

    def _sessions(self, parts: list[str], body: Any, request: httpx.Request) -> httpx.Response:
        items = [
            {
                "session_id": sid,
                "status": "Status.READY",
                "ready": True,
                "linked": True,
                "kind": "Seat",
                "user_count": len(s["ips"]),
            }
            for sid, s in self.sessions.items()
        ]
        return httpx.Response(200, json=self._page(items, request))

    def _telemetry(self, parts: list[str], body: Any, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(200, json={"retrieval_key": "rk-1", "expire": "2024-05-26 12:05:00.000000"})
        return httpx.Response(
            200,
            json={
                "retrieval_key": parts[2],
                "scores": [{"request_id": "b"}, {"request_id": "a"}],
                "partial_result": True,
            },
        )

    def _locations(self, parts: list[str], body: Any, request: httpx.Request) -> httpx.Response:
        loc = {
            "city": "Montreal",
            "continent": "North America",
            "country": "Canada",
            "timezone": "Eastern Time",
            "administrative_division": "Quebec",
            "latitude": 45.5,
            "longitude": -73.56,
            "type": "standard",
            "tags": [{"key": "cpu", "value": "high-clock"}],
        }
        return httpx.Response(200, json={"locations": [loc], "messages": []})

    def _ip(self, parts: list[str], body: Any, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=lookup_body(parts[1]))

    def _ips(self, parts: list[str], body: Any, request: httpx.Request) -> httpx.Response:
        self.lookup_batches.append(body["addresses"])
        return httpx.Response(200, json={"addresses": [lookup_body(ip) for ip in body["addresses"]]})

    def _app(self, parts: list[str], body: Any, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and len(parts) == 1:
            return httpx.Response(200, json={**body, "create_time": "t", "last_updated": "t"})
        if request.method == "POST":
            return httpx.Response(200, json={"success": True, "version": body})
        if len(parts) == 2:
            return httpx.Response(
                200, json={"name": parts[1], "is_active": True, "create_time": "t", "last_updated": "t"}
            )
        version = {
            "name": parts[3] if len(parts) > 3 else "v1",
            "docker_repository": "r",
            "docker_image": "i",
            "docker_tag": "t",
            "req_cpu": 256,
            "req_memory": 256,
            "session_config": {"kind": "Seat", "sockets": 10, "empty_ttl": 5},
        }
        if parts[2] == "versions":
            return httpx.Response(200, json={"versions": [version], "total_count": 1})
        return httpx.Response(200, json=version)

    def _apps(self, parts: list[str], body: Any, request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            json={
                "applications": [{"name": "game", "is_active": True, "create_time": "t", "last_updated": "t"}]
            },
        )


def status_body(rid: str, *, status: str = "Status.READY", tags: list[str] | None = None) -> dict[str, Any]:
    return {
        "request_id": rid,
        "fqdn": f"{rid}.codema.test",
        "app_name": "game",
        "app_version": "v1",
        "current_status": status,
        "running": True,
        "whitelisting_active": False,
        "start_time": "2024-05-26 12:00:45.831041",
        "elapsed_time": 3,
        "error": False,
        "public_ip": "203.0.113.7",
        "ports": {"7777": {"external": 31669, "internal": 7777, "protocol": "UDP", "name": "7777"}},
        "location": {
            "city": "Montreal",
            "country": "Canada",
            "continent": "North America",
            "administrative_division": "Quebec",
            "timezone": "Eastern Time",
            "latitude": 45.5,
            "longitude": -73.56,
        },
        "tags": tags or [],
        "sockets": 10,
        "sockets_usage": 2,
    }


def session_body(sid: str, ips: list[str]) -> dict[str, Any]:
    return {
        "session_id": sid,
        "status": "Status.READY",
        "ready": True,
        "linked": True,
        "kind": "Seat",
        "user_count": len(ips),
        "app_id": 7,
        "create_time": "2024-05-26 12:00:45.831041",
        "elapsed": 1,
        "session_users": [{"ip": ip} for ip in ips],
        "deployment": {
            "request_id": "000000000001",
            "public_ip": "203.0.113.7",
            "status": "Status.READY",
            "ready": True,
            "whitelisting_active": False,
            "fqdn": "x.codema.test",
            "sockets": "10",
            "sockets_usage": "2",
        },
    }


def lookup_body(ip: str) -> dict[str, Any]:
    return {
        "type": "ipv4",
        "ip_address": ip,
        "location": {
            "continent": {"code": "NA", "name": "North America"},
            "country": {"code": "CA", "name": "Canada"},
            "latitude": 45.4,
            "longitude": -75.7,
        },
    }


def make_client(platform: FakePlatform, clock: FakeTime, **kwargs: Any) -> CodemaClient:
    kwargs.setdefault("rng", random.Random(7))
    return CodemaClient(
        "http://codema.test",
        platform.token,
        transport=httpx.MockTransport(platform.handler),
        sleep=clock.sleep,
        clock=clock.now,
        **kwargs,
    )


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def platform() -> FakePlatform:
    return FakePlatform()


@pytest.fixture
def clock() -> FakeTime:
    return FakeTime()


REQUEST = DeployRequest(app_name="game", version_name="v1", ip_list=["198.51.100.1"], tags=["fleet-a"])


# --- 5xx: retried with growing delays ----------------------------------------------------------------
async def test_5xx_is_retried_with_growing_jittered_delays(platform: FakePlatform, clock: FakeTime) -> None:
    platform.deployments["abc"] = {"request_id": "abc", "tags": []}
    platform.faults.append(Fault(route("GET", "/v1/status"), status=503, times=3))
    retries_before = sample("fleet_platform_retries_total", endpoint="status", reason="server_error")
    async with make_client(platform, clock, max_attempts=4, base_delay_s=0.2, max_delay_s=5.0) as client:
        status = await client.status("abc")
    assert status.request_id == "abc"
    assert len(platform.calls("GET", "/v1/status")) == 4
    # Equal jitter: retry n waits within [step/2, step], step = 0.2 * 2**(n-1) -> 0.2, 0.4, 0.8.
    assert len(clock.sleeps) == 3
    for n, delay in enumerate(clock.sleeps, start=1):
        step = 0.2 * 2 ** (n - 1)
        assert step / 2 <= delay <= step
    assert clock.sleeps == sorted(clock.sleeps) and clock.sleeps[-1] > clock.sleeps[0]
    after = sample("fleet_platform_retries_total", endpoint="status", reason="server_error")
    assert after - retries_before == 3


async def test_5xx_gives_up_after_max_attempts(platform: FakePlatform, clock: FakeTime) -> None:
    platform.faults.append(Fault(route("GET", "/v1/status"), status=502, times=None))
    async with make_client(platform, clock, max_attempts=3) as client:
        with pytest.raises(PlatformUnavailable) as caught:
            await client.status("abc")
    assert caught.value.status == 502 and not caught.value.ambiguous  # a GET cannot have acted
    assert len(platform.calls("GET", "/v1/status")) == 3 and len(clock.sleeps) == 2


# --- create that times out after the platform acted: exactly one deployment ------------------------
@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(
            Fault(route("POST", "/v1/deploy"), exc=httpx.ReadTimeout, act_first=True), id="read-timeout"
        ),
        pytest.param(Fault(route("POST", "/v1/deploy"), status=500, act_first=True), id="500-after-acting"),
        pytest.param(Fault(route("POST", "/v1/deploy"), status=504, act_first=True), id="504-after-acting"),
    ],
)
async def test_ambiguous_create_after_acting_yields_one_deployment(
    platform: FakePlatform, clock: FakeTime, fault: Fault
) -> None:
    platform.deployments["zzz"] = {"request_id": "zzz", "tags": ["intent:other"]}  # someone else's
    platform.faults.append(fault)
    async with make_client(platform, clock) as client:
        created = await client.deploy(REQUEST, intent="intent-42")
    mine = [d for d in platform.deployments.values() if "intent:intent-42" in d["tags"]]
    assert len(mine) == 1
    assert created.request_id == mine[0]["request_id"] and created.recovered
    assert len(platform.calls("POST", "/v1/deploy")) == 1  # never resent
    assert platform.calls("GET", "/v1/deployments")  # looked up in the complete list


async def test_ambiguous_create_that_did_not_act_is_resent_once(
    platform: FakePlatform, clock: FakeTime
) -> None:
    platform.faults.append(Fault(route("POST", "/v1/deploy"), exc=httpx.ReadTimeout, act_first=False))
    async with make_client(platform, clock) as client:
        created = await client.deploy(REQUEST, intent="intent-7")
    assert len(platform.deployments) == 1 and not created.recovered
    assert platform.deployments[created.request_id]["tags"] == ["fleet-a", "intent:intent-7"]
    assert len(platform.calls("POST", "/v1/deploy")) == 2


async def test_ambiguous_create_whose_lookup_fails_is_not_resent(
    platform: FakePlatform, clock: FakeTime
) -> None:
    platform.faults.append(Fault(route("POST", "/v1/deploy"), exc=httpx.ReadTimeout, act_first=True))
    platform.faults.append(Fault(route("GET", "/v1/deployments"), status=503, times=None))
    async with make_client(platform, clock, max_attempts=2) as client:
        with pytest.raises(PlatformUnavailable) as caught:
            await client.deploy(REQUEST, intent="intent-9")
    assert caught.value.ambiguous  # the caller must look the intent up before trying again
    assert len(platform.calls("POST", "/v1/deploy")) == 1 and len(platform.deployments) == 1


async def test_ambiguous_create_without_intent_is_raised_not_resent(
    platform: FakePlatform, clock: FakeTime
) -> None:
    platform.faults.append(Fault(route("POST", "/v1/deploy"), exc=httpx.ReadTimeout, act_first=True))
    async with make_client(platform, clock) as client:
        with pytest.raises(PlatformUnavailable) as caught:
            await client.deploy(REQUEST)
    assert caught.value.ambiguous
    assert len(platform.calls("POST", "/v1/deploy")) == 1 and not platform.calls("GET", "/v1/deployments")


async def test_create_that_never_reached_the_platform_is_resent_without_lookup(
    platform: FakePlatform, clock: FakeTime
) -> None:
    platform.faults.append(Fault(route("POST", "/v1/deploy"), exc=httpx.ConnectError))
    async with make_client(platform, clock) as client:
        created = await client.deploy(REQUEST, intent="intent-3")
    assert len(platform.deployments) == 1 and not created.recovered
    assert len(platform.calls("POST", "/v1/deploy")) == 2 and not platform.calls("GET", "/v1/deployments")


async def test_session_create_is_not_resent_after_ambiguous_failure(
    platform: FakePlatform, clock: FakeTime
) -> None:
    platform.faults.append(Fault(route("POST", "/v1/session"), exc=httpx.ReadTimeout, act_first=True))
    async with make_client(platform, clock) as client:
        with pytest.raises(PlatformUnavailable) as caught:
            await client.create_session(SessionCreate(app_name="game", ip_list=["198.51.100.1"]))
    assert caught.value.ambiguous and len(platform.sessions) == 1


# --- circuit breaker ---------------------------------------------------------------------------------
async def test_circuit_opens_after_repeated_failures_and_closes_after_cooldown(
    platform: FakePlatform, clock: FakeTime
) -> None:
    platform.deployments["abc"] = {"request_id": "abc", "tags": []}
    outage = Fault(route("GET", "/v1/status"), status=503, times=None)
    platform.faults.append(outage)
    async with make_client(
        platform, clock, max_attempts=1, circuit_failures=3, circuit_reset_s=10.0
    ) as client:
        for _ in range(3):
            with pytest.raises(PlatformUnavailable) as caught:
                await client.status("abc")
            assert not isinstance(caught.value, CircuitOpen)
        assert sample("fleet_platform_circuit_open", endpoint="status") == 1.0
        with pytest.raises(CircuitOpen) as refused:
            await client.status("abc")
        assert len(platform.calls("GET", "/v1/status")) == 3  # refused without sending
        assert refused.value.retry_after_s == pytest.approx(10.0)
        await client.list_deployments()  # other endpoints have their own circuit

        clock.t += 10.0  # cool-down over: half-open, one probe goes through
        outage.times = 0
        assert (await client.status("abc")).request_id == "abc"
        assert sample("fleet_platform_circuit_open", endpoint="status") == 0.0
        await client.status("abc")
        assert len(platform.calls("GET", "/v1/status")) == 5


async def test_failed_half_open_probe_reopens_the_circuit(platform: FakePlatform, clock: FakeTime) -> None:
    platform.faults.append(Fault(route("GET", "/v1/status"), status=500, times=None))
    async with make_client(
        platform, clock, max_attempts=1, circuit_failures=2, circuit_reset_s=5.0
    ) as client:
        for _ in range(2):
            with pytest.raises(PlatformUnavailable):
                await client.status("abc")
        clock.t += 5.0
        with pytest.raises(PlatformUnavailable) as probe:
            await client.status("abc")  # the probe fails
        assert not isinstance(probe.value, CircuitOpen)
        with pytest.raises(CircuitOpen):
            await client.status("abc")
    assert len(platform.calls("GET", "/v1/status")) == 3


async def test_retries_stop_when_the_circuit_opens_and_report_the_real_failure(
    platform: FakePlatform, clock: FakeTime
) -> None:
    platform.faults.append(Fault(route("GET", "/v1/status"), status=503, times=None))
    async with make_client(platform, clock, max_attempts=10, circuit_failures=3) as client:
        with pytest.raises(PlatformUnavailable) as caught:
            await client.status("abc")
    assert caught.value.status == 503 and not isinstance(caught.value, CircuitOpen)
    assert len(platform.calls("GET", "/v1/status")) == 3


# --- paginated lists: complete or not at all ----------------------------------------------------------
async def test_paginated_list_is_read_completely(platform: FakePlatform, clock: FakeTime) -> None:
    for i in range(5):
        platform.deployments[f"d{i}"] = {"request_id": f"d{i}", "ready": i % 2 == 0, "tags": []}
    async with make_client(platform, clock) as client:
        items = await client.list_deployments()
    assert [d.request_id for d in items] == ["d0", "d1", "d2", "d3", "d4"]
    pages = [parse_qs(r.url.query.decode())["page"] for r in platform.calls("GET", "/v1/deployments")]
    assert pages == [["1"], ["2"], ["3"]]


async def test_failing_later_page_raises_instead_of_returning_page_one(
    platform: FakePlatform, clock: FakeTime
) -> None:
    for i in range(5):
        platform.deployments[f"d{i}"] = {"request_id": f"d{i}", "tags": []}
    platform.faults.append(Fault(route("GET", "/v1/deployments", page="2"), status=500, times=None))
    async with make_client(platform, clock, max_attempts=2) as client:
        with pytest.raises(PlatformUnavailable):
            await client.list_deployments()
        with pytest.raises(PlatformUnavailable):
            await client.find_by_intent("anything")


async def test_malformed_later_page_raises(platform: FakePlatform, clock: FakeTime) -> None:
    for i in range(3):
        platform.deployments[f"d{i}"] = {"request_id": f"d{i}", "tags": []}
    platform.faults.append(Fault(route("GET", "/v1/deployments", page="2"), status=200, body={"oops": 1}))
    async with make_client(platform, clock) as client:
        with pytest.raises(PlatformUnavailable, match="'data'"):
            await client.list_deployments()


async def test_list_that_moves_while_read_is_deduplicated_and_reread(
    platform: FakePlatform, clock: FakeTime
) -> None:
    for i in range(4):
        platform.deployments[f"d{i}"] = {"request_id": f"d{i}", "tags": []}
    original = platform._list
    served = {"n": 0}

    def shifting(parts: list[str], body: Any, request: httpx.Request) -> httpx.Response:
        served["n"] += 1
        if served["n"] == 2:  # a deployment lands at the front between page 1 and page 2
            platform.deployments = {"new": {"request_id": "new", "tags": []}, **platform.deployments}
        return original(parts, body, request)

    platform._list = shifting  # type: ignore[method-assign]
    async with make_client(platform, clock) as client:
        items = await client.list_deployments()
    assert sorted(d.request_id for d in items) == ["d0", "d1", "d2", "d3", "new"]


async def test_sessions_list_reads_every_page(platform: FakePlatform, clock: FakeTime) -> None:
    async with make_client(platform, clock) as client:
        for i in range(3):
            await client.create_session(SessionCreate(app_name="game", ip_list=[f"198.51.100.{i}"]))
        sessions = await client.list_sessions()
    assert [s.session_id for s in sessions] == ["s1-s", "s2-s", "s3-s"]
    assert all(s.kind == "Seat" and s.status_name == "READY" for s in sessions)


# --- stop and delete outcomes -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("answer", "outcome"),
    [(200, StopOutcome.STOPPING), (202, StopOutcome.ACCEPTED), (410, StopOutcome.GONE)],
)
async def test_stop_outcomes(
    platform: FakePlatform, clock: FakeTime, answer: int, outcome: StopOutcome
) -> None:
    platform.stop_answers["abc"] = answer
    async with make_client(platform, clock) as client:
        assert await client.stop("abc") is outcome
    assert len(platform.calls("DELETE", "/v1/stop/abc")) == 1


async def test_stop_of_unknown_deployment_is_not_found(platform: FakePlatform, clock: FakeTime) -> None:
    platform.stop_answers["abc"] = 404
    async with make_client(platform, clock) as client:
        with pytest.raises(NotFound):
            await client.stop("abc")


async def test_stop_after_timeout_is_resent_and_gone_counts_as_stopped(
    platform: FakePlatform, clock: FakeTime
) -> None:
    platform.faults.append(Fault(route("DELETE", "/v1/stop"), exc=httpx.ReadTimeout, act_first=True))
    platform.stop_answers["abc"] = 410  # the first (timed-out) attempt stopped it
    async with make_client(platform, clock) as client:
        assert await client.stop("abc") is StopOutcome.GONE
    assert len(platform.calls("DELETE", "/v1/stop")) == 2


async def test_delete_session_already_gone_is_success(platform: FakePlatform, clock: FakeTime) -> None:
    async with make_client(platform, clock) as client:
        created = await client.create_session(SessionCreate(app_name="game", ip_list=["198.51.100.1"]))
        await client.delete_session(created.session_id)
        await client.delete_session(created.session_id)  # 410
    assert not platform.sessions


async def test_bulk_stop_returns_processable_and_skips_empty(platform: FakePlatform, clock: FakeTime) -> None:
    platform.deployments["a"] = {"request_id": "a", "tags": []}
    async with make_client(platform, clock) as client:
        assert await client.bulk_stop([]) == []
        assert await client.bulk_stop(["a", "missing"]) == ["a"]
    assert len(platform.calls("POST", "/v1/deployments/bulk-stop")) == 1


# --- ip lookup chunking ---------------------------------------------------------------------------------
async def test_lookup_ips_chunks_at_twenty(platform: FakePlatform, clock: FakeTime) -> None:
    ips = [f"198.51.100.{i}" for i in range(45)] + ["198.51.100.0"]  # one duplicate
    async with make_client(platform, clock) as client:
        found = await client.lookup_ips(ips)
        assert await client.lookup_ips([]) == []
    assert [len(batch) for batch in platform.lookup_batches] == [20, 20, 5]
    assert [f.ip_address for f in found] == ips[:45]
    assert found[0].country_code == "CA" and found[0].latitude == pytest.approx(45.4)


# --- 429 and token buckets -------------------------------------------------------------------------------
async def test_429_retry_after_is_waited_out_by_every_caller_sharing_the_limits(
    platform: FakePlatform, clock: FakeTime
) -> None:
    platform.deployments["abc"] = {"request_id": "abc", "tags": []}
    platform.faults.append(Fault(route("GET", "/v1/status"), status=429, headers={"Retry-After": "2"}))
    limits = InMemoryPlatformLimits(clock=clock.now)
    async with (
        make_client(platform, clock, limits=limits) as first,
        make_client(platform, clock, limits=limits) as second,
    ):
        assert (await first.status("abc")).request_id == "abc"
        assert clock.sleeps == [pytest.approx(2.0)]
        sent_at = clock.t
        await limits.back_off(3.0)  # as if another caller just got a 429
        await second.list_deployments()
        assert clock.t - sent_at == pytest.approx(3.0)


async def test_429_longer_than_the_wait_budget_raises_rate_limited(
    platform: FakePlatform, clock: FakeTime
) -> None:
    platform.faults.append(Fault(route("GET", "/v1/status"), status=429, headers={"Retry-After": "120"}))
    async with make_client(platform, clock, max_wait_s=10.0) as client:
        with pytest.raises(RateLimited) as caught:
            await client.status("abc")
    assert caught.value.retry_after_s == pytest.approx(120.0)
    assert len(platform.calls("GET", "/v1/status")) == 1 and clock.sleeps == []


async def test_token_bucket_paces_calls_at_the_rate(platform: FakePlatform, clock: FakeTime) -> None:
    platform.deployments["abc"] = {"request_id": "abc", "tags": []}
    async with make_client(platform, clock, rates={"status": Rate(per_s=2.0, burst=2.0)}) as client:
        for _ in range(5):
            await client.status("abc")
    # 2 from the burst, then one token every 0.5 s: 3 waits of 0.5 s.
    assert sum(clock.sleeps) == pytest.approx(1.5)
    assert len(platform.calls("GET", "/v1/status")) == 5


# --- error mapping ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("code", "error", "sent"),
    [
        (400, PlatformRejected, 1),
        (401, Unauthorized, 1),
        (403, Unauthorized, 1),
        (404, NotFound, 1),
        (409, Conflict, 1),
        (410, AlreadyTerminated, 1),
        (422, PlatformRejected, 1),
        (500, PlatformUnavailable, 2),
        (503, PlatformUnavailable, 2),
    ],
)
async def test_http_failures_map_to_one_hierarchy(
    platform: FakePlatform, clock: FakeTime, code: int, error: type[Exception], sent: int
) -> None:
    platform.faults.append(Fault(route("GET", "/v1/status"), status=code, times=None))
    async with make_client(platform, clock, max_attempts=2) as client:
        with pytest.raises(error) as caught:
            await client.status("abc")
    assert caught.value.status == code and caught.value.endpoint == "status"  # type: ignore[attr-defined]
    assert len(platform.calls("GET", "/v1/status")) == sent  # terminal errors are never retried


async def test_wrong_token_is_unauthorized(platform: FakePlatform, clock: FakeTime) -> None:
    client = CodemaClient(
        "http://codema.test", "other-token", transport=httpx.MockTransport(platform.handler)
    )
    async with client:
        with pytest.raises(Unauthorized):
            await client.list_apps()


async def test_base_url_with_v1_suffix_is_tolerated(platform: FakePlatform) -> None:
    client = CodemaClient("http://codema.test/v1/", TOKEN, transport=httpx.MockTransport(platform.handler))
    async with client:
        await client.list_apps()
    assert platform.requests[0].url.path == "/v1/apps"


async def test_ids_are_quoted_into_one_path_segment(platform: FakePlatform, clock: FakeTime) -> None:
    async with make_client(platform, clock) as client:
        with pytest.raises(NotFound):
            await client.status("../apps")
    assert platform.requests[0].url.raw_path == b"/v1/status/..%2Fapps"


# name: (exception, endpoint route, ambiguous, requests sent with max_attempts=2)
TRANSPORT_ROWS = {
    "connect error on a create: nothing sent, resent": (
        httpx.ConnectError,
        ("POST", "/v1/session"),
        False,
        2,
    ),
    "connect timeout on a create: resent": (httpx.ConnectTimeout, ("POST", "/v1/session"), False, 2),
    "pool timeout on a create: resent": (httpx.PoolTimeout, ("POST", "/v1/session"), False, 2),
    "read timeout on a create: ambiguous, not resent": (httpx.ReadTimeout, ("POST", "/v1/session"), True, 1),
    "dropped connection on a create": (httpx.RemoteProtocolError, ("POST", "/v1/session"), True, 1),
    "write timeout on a create": (httpx.WriteTimeout, ("POST", "/v1/session"), True, 1),
    "read timeout on a read: never ambiguous": (httpx.ReadTimeout, ("GET", "/v1/sessions"), False, 2),
    "read timeout on an idempotent write: resent": (httpx.ReadTimeout, ("DELETE", "/v1/session"), True, 2),
}


@pytest.mark.parametrize("row", TRANSPORT_ROWS.values(), ids=TRANSPORT_ROWS.keys())
async def test_transport_failures_ambiguity_and_resends(
    platform: FakePlatform,
    clock: FakeTime,
    row: tuple[type[httpx.TransportError], tuple[str, str], bool, int],
) -> None:
    exc, (method, path), ambiguous, sent = row
    platform.faults.append(Fault(route(method, path), exc=exc, times=None))
    calls = {
        "POST": lambda c: c.create_session(SessionCreate(app_name="g", ip_list=["198.51.100.1"])),
        "GET": lambda c: c.list_sessions(),
        "DELETE": lambda c: c.delete_session("s1-s"),
    }
    async with make_client(platform, clock, max_attempts=2) as client:
        with pytest.raises(PlatformUnavailable) as caught:
            await calls[method](client)
    assert caught.value.ambiguous is ambiguous
    assert len(platform.calls(method, path)) == sent


async def test_undecodable_answer_maps_to_unavailable(platform: FakePlatform, clock: FakeTime) -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-encoding": "gzip"}, content=b"not gzip at all")

    client = CodemaClient("http://codema.test", TOKEN, transport=httpx.MockTransport(broken), max_attempts=1)
    async with client:
        with pytest.raises(PlatformUnavailable):
            await client.status("abc")
