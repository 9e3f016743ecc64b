"""What the platform says about sessions we placed, through the real webhook route: a session it
reports unprocessable or in error frees its sockets and the client's webhook is called once."""

from __future__ import annotations

from typing import Any

import httpx

from fleet.store import Store
from tests.fixtures.web import WEBHOOK_SECRET
from tests.integration.allocator_web import UK_PLAYERS, FleetWeb, fleet_web, poll

__all__ = ["fleet_web"]


async def test_platform_error_on_a_linked_session_frees_its_sockets(
    fleet_web: FleetWeb, store: Store, webhook_sink: Any
) -> None:
    rid = await fleet_web.ready_deployment(store, "London")
    async with fleet_web.http() as api:
        body = {"app_name": "game", "version_name": "v1", "ip_list": UK_PLAYERS,
                "webhook_url": f"{webhook_sink.url}/s"}  # fmt: skip
        sid = (await api.post("/v1/session", json=body)).json()["session_id"]
    webhook_sink.wait_for(1)  # linked
    record = await store.sessions.get(sid)
    assert record is not None and record.platform_session_id
    d = await store.deployments.get(rid, 0.0)
    assert d is not None and d.committed == 2

    # The platform calls back: the deployment failed under the session (twice: a duplicate).
    hook = {"session_id": record.platform_session_id, "status": "Status.ERROR", "ready": False,
            "linked": False, "kind": "SEATS", "user_count": 2, "error": "deployment failed"}  # fmt: skip
    async with httpx.AsyncClient(base_url=fleet_web.url, timeout=10) as http:
        for _ in range(2):
            r = await http.post(f"/webhooks/sessions?token={WEBHOOK_SECRET}", json=hook)
            assert r.status_code < 300, r.text

    async def freed() -> bool:
        d = await store.deployments.get(rid, 0.0)
        return d is not None and d.committed == 0 and d.sessions == 0

    await poll(freed, 10, "the session's sockets to be freed")
    hooks = webhook_sink.wait_for(2)
    assert hooks[1].body["status"] == "Status.ERROR" and hooks[1].body["linked"] is False
    async with fleet_web.http() as api:
        got = (await api.get(f"/v1/session/{sid}")).json()
    assert got["status"] == "Status.ERROR" and got["error"] == "deployment failed"
    linker = fleet_web.services.extras["linker"]
    passes = linker.passes  # type: ignore[attr-defined]

    async def two_more_passes() -> bool:
        return bool(linker.passes >= passes + 2)  # type: ignore[attr-defined]

    await poll(two_more_passes, 5, "the linker to read on")
    assert len(webhook_sink.hooks()) == 2  # the duplicate callback notified nobody again
