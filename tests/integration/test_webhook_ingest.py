"""Accepted callbacks through the real app and Redis: what is stored, what is announced (once per
transition), what it is readable through, and what wakes up."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from prometheus_client import REGISTRY

from fleet.models import SessionRecord, SessionState, Status
from tests.fixtures.web import API_TOKEN, WEBHOOK_SECRET, WebApp, WebFactory

NOW = 1_700_000_000.0
RID = "93924761ccde"
PSID = "abc123-s"
AUTH = {"Authorization": f"token {API_TOKEN}"}


def post(web: WebApp, kind: str, body: dict[str, Any]) -> Any:
    response = web.client.post(f"/webhooks/{kind}?token={WEBHOOK_SECRET}", json=body)
    assert response.status_code == 200, response.text
    return response.json()["result"]


def status_body(status: str = "Status.READY", **fields: Any) -> dict[str, Any]:
    return {
        "request_id": RID,
        "current_status": status,
        "app_name": "game",
        "app_version": "v1",
        "fqdn": f"{RID}.example",
        "public_ip": "100.10.0.85",
        "sockets": "5",
        "sockets_usage": "0",
        **fields,
    }


def session_body(status: str = "Status.READY", usage: int = 1, **fields: Any) -> dict[str, Any]:
    return {
        "session_id": PSID,
        "status": status,
        "ready": status == "Status.READY",
        "linked": status == "Status.READY",
        "kind": "SEAT",
        "user_count": 1,
        "deployment": {"request_id": RID, "status": "Status.READY", "sockets": 5, "sockets_usage": usage},
        **fields,
    }


def events(web: WebApp, kind: str) -> list[dict[str, str]]:
    return [f for _id, f in web.redis.xrange(f"{web.prefix}:events") if f.get("kind") == kind]


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def our_session(web: WebApp, state: SessionState = SessionState.WAITING, **kw: Any) -> None:
    record = SessionRecord(session_id="ours-1", app="game", version="v1", state=state, size=1, **kw)
    web.call(web.store.sessions.put, record)


def test_a_deployment_callback_is_stored_once_and_readable(web_factory: WebFactory) -> None:
    web = web_factory(clock=lambda: NOW)
    ready_before = metric("fleet_webhook_transitions_total", kind="deployment", state="READY")
    assert post(web, "deployments", status_body()) == "transition"
    assert post(web, "deployments", status_body()) == "duplicate"
    assert post(web, "deployments", status_body("Status.DEPLOYING")) == "duplicate"  # late: ignored
    assert [e["rank"] for e in events(web, "deployment")] == [str(int(Status.READY))]
    assert metric("fleet_webhook_transitions_total", kind="deployment", state="READY") == ready_before + 1

    view = web.client.get(f"/v1/deployments/{RID}", headers=AUTH).json()
    assert view["current_status"] == "Status.READY" and view["running"] is True
    assert (view["sockets"], view["sockets_usage"], view["free_sockets"]) == (5, 0, 5)
    assert view["app_name"] == "game" and view["fqdn"] == f"{RID}.example"
    listed = web.client.get("/v1/deployments", headers=AUTH).json()
    assert [d["request_id"] for d in listed["data"]] == [RID] and listed["total_count"] == 1


def test_a_callback_before_our_create_is_kept_and_merged(web_factory: WebFactory) -> None:
    web = web_factory(clock=lambda: NOW)
    assert post(web, "deployments", status_body()) == "transition"
    web.call(
        lambda: web.store.deployments.record_owner(
            RID, fleet="f", policy="p", intent="i1", app="game", version="v1", now=NOW + 1
        )
    )
    dep = web.call(web.store.deployments.get, RID, NOW + 1)
    assert dep is not None and dep.status is Status.READY and (dep.fleet, dep.policy) == ("f", "p")
    assert web.redis.sismember(f"{web.prefix}:deps:policy:f\x1fp", RID)


def test_sockets_zero_is_stored_and_viewed_without_division(web_factory: WebFactory) -> None:
    web = web_factory(clock=lambda: NOW)
    assert post(web, "deployments", status_body(sockets=0, sockets_usage=0)) == "transition"
    view = web.client.get(f"/v1/deployments/{RID}", headers=AUTH).json()
    assert (view["sockets"], view["sockets_usage"], view["free_sockets"]) == (0, 0, 0)


def test_a_session_callback_links_our_session_and_updates_its_deployment(web_factory: WebFactory) -> None:
    web = web_factory(clock=lambda: NOW)
    our_session(web, deployment_request_id=RID)
    web.call(web.store.sessions.link_platform_id, PSID, "ours-1")
    assert post(web, "deployments", status_body(sockets_usage=0)) == "transition"
    assert post(web, "sessions", session_body(usage=1)) == "transition"
    assert post(web, "sessions", session_body(usage=1)) == "duplicate"

    session = web.call(web.store.sessions.get, "ours-1")
    assert session is not None and session.state is SessionState.LINKED and session.linked_at == NOW
    assert [(e["session_id"], e["state"]) for e in events(web, "session")] == [("ours-1", "READY")]
    dep = web.call(web.store.deployments.get, RID, NOW)
    assert dep is not None and dep.usage == 1  # the session's view of its deployment is newer


def test_a_session_callback_can_be_the_first_news_of_a_deployment(web_factory: WebFactory) -> None:
    web = web_factory(clock=lambda: NOW)
    assert post(web, "sessions", session_body(usage=2)) == "pending"  # no mapping yet: kept
    dep = web.call(web.store.deployments.get, RID, NOW)
    assert dep is not None and dep.status is Status.READY and (dep.sockets, dep.usage) == (5, 2)
    assert [e["request_id"] for e in events(web, "deployment")] == [RID]


def test_an_early_session_callback_applies_when_the_mapping_appears(web_factory: WebFactory) -> None:
    web = web_factory(clock=lambda: NOW)
    our_session(web)
    assert post(web, "sessions", session_body()) == "pending"
    assert post(web, "sessions", session_body()) == "pending"
    assert web.call(web.store.sessions.get, "ours-1").state is SessionState.WAITING  # type: ignore[union-attr]
    applied = web.call(web.store.sessions.link_platform_id, PSID, "ours-1")
    assert [a.state for a in applied if a.transition] == [SessionState.LINKED]
    session = web.call(web.store.sessions.get, "ours-1")
    assert (
        session is not None and session.state is SessionState.LINKED and session.deployment_request_id == RID
    )
    assert len(events(web, "session")) == 1


def test_a_failed_session_gives_its_sockets_back(web_factory: WebFactory) -> None:
    web = web_factory(clock=lambda: NOW)
    assert post(web, "deployments", status_body()) == "transition"
    our_session(web, state=SessionState.LINKED, deployment_request_id=RID)
    web.call(web.store.deployments.confirm, RID, "ours-1", 1)
    web.call(web.store.sessions.link_platform_id, PSID, "ours-1")
    assert web.call(web.store.deployments.get, RID, NOW).committed == 1  # type: ignore[union-attr]

    assert post(web, "sessions", session_body("Status.ERROR", error="deployment full")) == "transition"
    session = web.call(web.store.sessions.get, "ours-1")
    assert session is not None and session.state is SessionState.ERROR and session.error == "deployment full"
    assert web.call(web.store.deployments.get, RID, NOW).committed == 0  # type: ignore[union-attr]
    assert post(web, "sessions", session_body("Status.READY")) == "duplicate"  # final stays final


def test_session_callbacks_that_change_nothing(web_factory: WebFactory) -> None:
    web = web_factory(clock=lambda: NOW)
    our_session(web)
    web.call(web.store.sessions.link_platform_id, PSID, "ours-1")
    assert post(web, "sessions", session_body("Status.TELEPORTING")) == "unknown_status"
    assert post(web, "sessions", {"session_id": PSID, "status": "Status.SEEKING"}) == "duplicate"
    web.call(web.store.sessions.link_platform_id, "gone-s", "no-such-session")
    assert post(web, "sessions", {"session_id": "gone-s", "status": "Status.READY"}) == "unknown_session"
    assert web.call(web.store.sessions.get, "ours-1").state is SessionState.WAITING  # type: ignore[union-attr]
    assert events(web, "session") == []


def test_a_telemetry_callback_wakes_the_placement_waiting_for_it(web_factory: WebFactory) -> None:
    web = web_factory(clock=lambda: NOW)
    portal = web.client.portal
    assert portal is not None
    waiting = portal.start_task_soon(web.store.telemetry.wait_for, "key-1", 60.0)
    body = {
        "retrieval_key": "key-1",
        "scores": [{"request_id": "b"}, {"request_id": "a"}],
        "partial_result": False,
    }
    assert post(web, "telemetry", body) == "transition"
    assert post(web, "telemetry", body) == "duplicate"
    result = waiting.result(timeout=30)
    assert result is not None and result.scores == ("b", "a") and not result.partial


def test_redis_down_is_a_503_not_a_500(web_factory: WebFactory) -> None:
    web = web_factory(redis_url="redis://127.0.0.1:1/0")
    response = web.client.post(f"/webhooks/deployments?token={WEBHOOK_SECRET}", json=status_body())
    assert response.status_code == 503 and response.headers["retry-after"]
    assert "message" in response.json()


def test_a_bug_in_a_callback_is_a_logged_500_and_stores_nothing(
    web_factory: WebFactory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Callbacks skip the app's middleware (fleet.app.FleetApp): their endpoint answers its own bugs."""
    from webhooks.ingest import Ingest

    async def broken(self: Ingest, *args: Any, **kwargs: Any) -> Any:
        raise ValueError("a bug")

    monkeypatch.setattr(Ingest, "deployment", broken)
    web = web_factory(clock=lambda: NOW)
    before = web.snapshot()
    rejected = metric("fleet_webhook_rejections_total", kind="deployment", reason="internal_error")
    with caplog.at_level(logging.ERROR, logger="webhooks"):
        response = web.client.post(f"/webhooks/deployments?token={WEBHOOK_SECRET}", json=status_body())
    assert (response.status_code, response.json()) == (500, {"message": "internal error"})
    assert (
        metric("fleet_webhook_rejections_total", kind="deployment", reason="internal_error") == rejected + 1
    )
    assert web.snapshot() == before
    (record,) = [r for r in caplog.records if r.getMessage() == "unhandled error"]
    assert record.exc_info is not None and WEBHOOK_SECRET not in caplog.text


def test_callbacks_take_the_front_door_and_everything_else_the_app(web_factory: WebFactory) -> None:
    web = web_factory(clock=lambda: NOW)
    # The API's own routes still need the token, and other methods on a callback path get the 405.
    assert web.client.get(f"/v1/deployments/{RID}").status_code == 401
    assert web.client.get(f"/webhooks/deployments?token={WEBHOOK_SECRET}").status_code == 405
    assert post(web, "deployments", status_body()) == "transition"
    # With a trailing slash it is the same callback, token checked (not the router's 307 redirect).
    slash = f"/webhooks/deployments/?token={WEBHOOK_SECRET}"
    assert web.client.post(slash, json=status_body(), follow_redirects=False).json()["result"] == "duplicate"
    wrong = web.client.post("/webhooks/deployments/?token=guess", json=status_body(), follow_redirects=False)
    assert wrong.status_code == 401


def test_a_caller_that_goes_away_mid_body_is_counted_and_is_not_a_bug(web_factory: WebFactory) -> None:
    web = web_factory(clock=lambda: NOW)
    before = web.snapshot()
    gone = metric("fleet_webhook_rejections_total", kind="deployment", reason="client_disconnect")
    bugs = metric("fleet_webhook_rejections_total", kind="deployment", reason="internal_error")
    messages = iter([{"type": "http.request", "body": b'{"request_id": "9', "more_body": True}])
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return next(messages, {"type": "http.disconnect"})

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/webhooks/deployments",
        "raw_path": b"/webhooks/deployments",
        "root_path": "",
        "query_string": f"token={WEBHOOK_SECRET}".encode(),
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    assert web.client.portal is not None
    web.client.portal.call(web.client.app, scope, receive, send)
    assert sent[0]["status"] == 499  # for the log and the metric: a server drops it, nobody is there
    assert metric("fleet_webhook_rejections_total", kind="deployment", reason="client_disconnect") == gone + 1
    assert metric("fleet_webhook_rejections_total", kind="deployment", reason="internal_error") == bugs
    assert web.snapshot() == before
