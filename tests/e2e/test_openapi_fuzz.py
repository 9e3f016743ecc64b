"""The service's own OpenAPI description (`GET /openapi.json`), fuzzed with schemathesis against a
real `fleet web` process (Redis and the simulator behind it): no input gives a 500. A documented
503 with `Retry-After` is an answer to retry, not a failure; every answer's status code must be one
the description documents for that operation.

FLEET_FUZZ_EXAMPLES sets the examples per operation (default 25 here; `make chaos` runs 150).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import status_code_conformance

from fleet.procs import Stack
from tests.fixtures.stack import E2E

pytestmark = pytest.mark.e2e

EXAMPLES = int(os.environ.get("FLEET_FUZZ_EXAMPLES", "25"))
SEEN: dict[str, int] = {}  # status codes met, for the run's summary


def answered(ctx: Any, response: Any, case: Any) -> bool | None:
    """No 5xx except a 503 that says when to retry."""
    SEEN[str(response.status_code)] = SEEN.get(str(response.status_code), 0) + 1
    if response.status_code >= 500:
        retry_after = response.headers.get("retry-after") or response.headers.get("Retry-After")
        if response.status_code != 503 or not retry_after:
            raise AssertionError(
                f"{case.method} {case.formatted_path} answered {response.status_code}: {response.text[:300]}"
            )
    return None


@pytest.fixture(scope="module")
def fuzz_stack(redis_url: str) -> Iterator[Stack]:
    stack = Stack(
        redis_url=redis_url,
        sim_args=("--boot-s", "0.5"),
        env={"FLEET_REDIS_PREFIX": f"fuzz{uuid.uuid4().hex[:8]}", "FLEET_LEASE_TTL_S": "3"},
    )
    stack.start(webs=1, scalers=1, workers=1)
    try:
        _seed(stack)
        yield stack
    finally:
        stack.cleanup()


def _seed(stack: Stack) -> None:
    """A linked app version, a fleet and a policy, so that fuzzed calls also meet existing names."""
    e = E2E(stack)
    try:
        e.create_app_version(sockets=4)
        assert e.api.post("/v1/fleet", json={"name": "f", "enabled": True}).is_success
        assert e.api.put("/v1/fleet/f/app/game/version/v1").is_success
        policy = {
            "name": "eu",
            "enabled": True,
            "type": "Location",
            "minimum": 1,
            "maximum": 2,
            "threshold": 0.8,
            "data": {"filters": [{"field": "continent", "values": ["Europe"], "filter_type": "any"}]},
        }
        r = e.api.post("/v1/fleet/f/policies", json=policy)
        assert r.is_success, r.text
    finally:
        e.close()


@pytest.fixture(scope="module")
def fleet_openapi(fuzz_stack: Stack) -> Any:
    config = schemathesis.Config.from_dict({"base-url": fuzz_stack.web_url, "request-timeout": 20})
    return schemathesis.openapi.from_url(f"{fuzz_stack.web_url}/openapi.json", config=config)


def _authorize(case: Any, stack: Stack) -> dict[str, str]:
    """The right credentials for the operation (fuzzing is about inputs, not about a 401 wall)."""
    if case.path.startswith("/webhooks/"):
        case.query = {**(case.query or {}), "token": stack.webhook_secret}
        return {}
    return {"Authorization": f"token {stack.api_token}"}


def fuzz_operation(operation: Any, mode: GenerationMode, stack: Stack, examples: int) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        headers = _authorize(case, stack)
        case.call_and_validate(headers=headers, checks=[answered, status_code_conformance])

    run()


def test_no_input_gives_a_server_error(fleet_openapi: Any, fuzz_stack: Stack) -> None:
    failures: list[str] = []
    operations = [result.ok() for result in fleet_openapi.get_all_operations()]
    assert len(operations) >= 25
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                fuzz_operation(operation, mode, fuzz_stack, EXAMPLES)
            except Unsatisfiable:  # nothing to make invalid (no parameters, no body)
                assert mode is GenerationMode.NEGATIVE, operation.label
            except Exception as err:  # one operation's failure must not hide the others'
                failures.append(f"{operation.label} [{mode.value}]: {str(err)[:1500]}")
    print(f"status codes met: {dict(sorted(SEEN.items()))}")
    assert not failures, "\n\n".join(failures)
    assert not any(code.startswith("5") and code != "503" for code in SEEN)


def test_openapi_describes_every_route(fuzz_stack: Stack) -> None:
    """Every route the app mounts is described, and the description is served without auth."""
    from starlette.routing import Route

    from fleet.app import build_app
    from fleet.bootstrap import bootstrap
    from fleet.settings import Settings

    doc = httpx.get(f"{fuzz_stack.web_url}/openapi.json", timeout=10).json()
    settings_ = Settings(
        redis_url=fuzz_stack.redis_url or "",
        webhook_secret=fuzz_stack.webhook_secret,
        codema_api_url=fuzz_stack.sim_url,
        codema_api_token=fuzz_stack.platform_token,
    )
    app = build_app(bootstrap(settings_))
    mounted = {
        (route.path, method.lower())
        for route in app.routes
        if isinstance(route, Route) and route.path != "/openapi.json"
        for method in (route.methods or ()) - {"HEAD"}
    }
    described = {(path, m) for path, item in doc["paths"].items() for m in item if m != "parameters"}
    assert mounted == described
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method == "parameters" or path in ("/metrics", "/healthz"):
                continue
            assert "503" in op["responses"], (path, method)
            assert "Retry-After" in op["responses"]["503"].get("headers", {}), (path, method)
