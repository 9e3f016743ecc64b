"""`fleet web`'s log as a real process writes it: uvicorn's access line per request is off unless
FLEET_ACCESS_LOG=1, and when on it never shows the webhook token.

Regression: the worker's logging set-up re-enabled propagation of `uvicorn.access` after uvicorn
had silenced it, so every callback wrote an access line (against the README, and 8 % of the
web process's CPU under callback load)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fleet.devredis import free_port
from fleet.procs import ProcessGroup, wait_http

SECRET = "access-log-test-secret-0123456789"


@pytest.fixture(params=["0", "1"], ids=["default", "FLEET_ACCESS_LOG=1"])
def web(
    request: pytest.FixtureRequest, redis_url: str, tmp_path: Path
) -> Iterator[tuple[str, ProcessGroup, bool]]:
    port = free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "FLEET_REDIS_URL": redis_url,
        "FLEET_REDIS_PREFIX": f"t{uuid.uuid4().hex[:10]}",
        "FLEET_WEBHOOK_SECRET": SECRET,
        "FLEET_ACCESS_LOG": request.param,
        "CODEMA_API_URL": "http://127.0.0.1:9",
    }
    group = ProcessGroup(env, dir=tmp_path / "logs")
    group.dir.mkdir()
    try:
        proc = group.fleet("web", "web", "--host", "127.0.0.1", "--port", str(port))
        wait_http(f"http://127.0.0.1:{port}/healthz", proc=proc)
        yield f"http://127.0.0.1:{port}", group, request.param == "1"
    finally:
        group.stop()


def test_access_lines_only_when_asked_and_never_with_the_token(web: tuple[str, ProcessGroup, bool]) -> None:
    url, group, asked = web
    with httpx.Client(base_url=url, timeout=10) as client:
        marker = f"/healthz?probe={uuid.uuid4().hex}"
        assert client.get(marker).status_code == 200
        answer = client.post(f"/webhooks/deployments?token={SECRET}", json={"current_status": "Status.READY"})
        assert answer.status_code == 422  # a right token, a body without request_id
        assert client.post("/webhooks/deployments?token=wrong-guess", json={}).status_code == 401
    group.stop()  # flushes and closes the log
    log = group.logs("web", tail=200_000)
    assert SECRET not in log
    access = [line for line in log.splitlines() if "logger=uvicorn.access" in line]
    if not asked:
        assert access == [], access
        return
    assert any(marker in line for line in access), log
    posts = [line for line in access if "POST /webhooks/deployments" in line]
    assert len(posts) == 2 and all("token=***" in line for line in posts), posts
