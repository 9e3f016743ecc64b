"""Bad callbacks through the real app and Redis: the status code each gets, and proof that Redis
did not change (every key under the test's prefix, values, types and TTLs, before and after).

Rows that are accepted on purpose (unusable socket values, unknown status) say exactly what they
may change. The clock is fixed, so a callback that brings nothing new rewrites nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client import REGISTRY

from tests.fixtures.web import OLD_WEBHOOK_SECRET, WEBHOOK_SECRET, WebApp, WebFactory
from webhooks.throttle import FAILURES_PER_WINDOW

NOW = 1_700_000_000.0
RID = "93924761ccde"
BIG = 256 * 1024 + 1
GOOD = f"token={WEBHOOK_SECRET}"


def status_body(**fields: Any) -> dict[str, Any]:
    return {
        "request_id": RID,
        "current_status": "Status.READY",
        "app_name": "game",
        "app_version": "v1",
        "sockets": 5,
        "sockets_usage": 3,
        **fields,
    }


def chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    """A body without Content-Length (sent chunked): only the streaming cap can stop it."""
    yield b'{"request_id": "' + RID.encode() + b'", "padding": "'
    sent = 0
    while sent < total:
        yield b"x" * size
        sent += size
    yield b'"}'


Check = Callable[[WebApp, dict[str, Any], dict[str, Any]], None]


def unchanged(web: WebApp, before: dict[str, Any], after: dict[str, Any]) -> None:
    assert after == before


def only_fields_added(**expected: str) -> Check:
    def check(web: WebApp, before: dict[str, Any], after: dict[str, Any]) -> None:
        key = f"{web.prefix}:dep:{RID}"
        kind, old, ttl = before[key]
        assert after[key] == (kind, {**old, **expected}, ttl)
        assert {k: v for k, v in after.items() if k != key} == {k: v for k, v in before.items() if k != key}

    return check


@dataclass
class Row:
    path: str = "/webhooks/deployments"
    query: str = GOOD
    json_body: Any = None
    content: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 400
    names: str = ""  # the field a 422 must name
    effect: Check = unchanged
    method: str = "POST"


ROWS: dict[str, Row] = {
    "wrong secret": Row(
        query="token=wrong", json_body=status_body(current_status="Status.TERMINATED"), status=401
    ),
    "missing secret": Row(query="", json_body=status_body(current_status="Status.TERMINATED"), status=401),
    "secret in another parameter": Row(query=f"secret={WEBHOOK_SECRET}", json_body=status_body(), status=401),
    "wrong secret on sessions": Row(
        path="/webhooks/sessions", query="token=x", json_body={"session_id": "abc-s"}, status=401
    ),
    "wrong secret on telemetry": Row(
        path="/webhooks/telemetry", query="token=x", json_body={"retrieval_key": "k"}, status=401
    ),
    "oversize with Content-Length": Row(content=b'{"a": "' + b"x" * BIG + b'"}', status=413),
    "oversize chunked, no Content-Length": Row(content=chunks(BIG), status=413),
    "oversize behind a small Content-Length": Row(
        content=b'{"a": "' + b"x" * BIG + b'"}', headers={"content-length": "20"}, status=413
    ),
    "truncated JSON": Row(content=b'{"request_id": "93924761ccde", "current_st'),
    "empty body": Row(content=b""),
    "not UTF-8": Row(content=b'{"request_id": "\xff\xfe"}'),
    "array body": Row(content=json.dumps([status_body()]).encode()),
    "string body": Row(content=b'"Status.READY"'),
    "deep nesting": Row(content=b'{"request_id": "x", "a": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
    "missing request_id": Row(json_body={"current_status": "Status.READY"}, status=422, names="request_id"),
    "null request_id": Row(json_body=status_body(request_id=None), status=422, names="request_id"),
    "numeric request_id": Row(json_body=status_body(request_id=93924761), status=422, names="request_id"),
    "request_id with spaces": Row(json_body=status_body(request_id="a b"), status=422, names="request_id"),
    "status not a string": Row(json_body=status_body(current_status=5), status=422, names="current_status"),
    "missing session_id": Row(
        path="/webhooks/sessions", json_body={"status": "Status.READY"}, status=422, names="session_id"
    ),
    "missing retrieval_key": Row(
        path="/webhooks/telemetry",
        json_body={"scores": [{"request_id": RID}]},
        status=422,
        names="retrieval_key",
    ),
    "scores not a list": Row(
        path="/webhooks/telemetry",
        json_body={"retrieval_key": "k", "scores": RID},
        status=422,
        names="scores",
    ),
    "GET instead of POST": Row(method="GET", status=405),
    # Accepted on purpose: unusable counts are unknown, and unknown never overwrites known (5 / 3).
    "bad socket values": Row(json_body=status_body(sockets="many", sockets_usage="-1"), status=200),
    "null and fractional socket values": Row(
        json_body=status_body(sockets=None, sockets_usage=2.5), status=200
    ),
    "boolean usage": Row(json_body=status_body(sockets_usage=True), status=200),
    # "¹" is a digit to str.isdigit but not to int(): once a 500 (found by the ports property test).
    "superscript digit counts": Row(json_body=status_body(sockets="¹", sockets_usage="²"), status=200),
    # Python refuses to read an int of more than 4,300 digits: once a 500 (found in review).
    "a count of 5,000 digits": Row(
        json_body=status_body(sockets="1" * 5000, sockets_usage="9" * 4301), status=200
    ),
    "a port of 5,000 digits": Row(  # the unusable number is dropped, the rest of the port kept
        json_body=status_body(ports={"game": {"external": "1" * 5000, "internal": 7777}}),
        status=200,
        effect=only_fields_added(ports='{"game":{"internal":7777}}'),
    ),
    # Python services write NaN for a float NaN; orjson refuses it, the lenient reader does not.
    "NaN usage (Python's json writes it)": Row(
        content=json.dumps(status_body(sockets_usage=float("nan"))).encode(), status=200
    ),
    "a UTF-8 byte-order mark": Row(content=b"\xef\xbb\xbf" + json.dumps(status_body()).encode(), status=200),
    # Accepted on purpose: an unknown status is kept raw beside the known one, which stays READY.
    "unknown status": Row(
        json_body=status_body(current_status="Status.HIBERNATING"),
        status=200,
        effect=only_fields_added(unknown_status="Status.HIBERNATING"),
    ),
}


@pytest.fixture
def seeded(web_factory: WebFactory) -> WebApp:
    """A READY deployment (5 sockets, 3 used) and a telemetry result, stored through the webhooks."""
    web = web_factory(clock=lambda: NOW)
    assert web.client.post(f"/webhooks/deployments?{GOOD}", json=status_body()).status_code == 200
    telemetry = {"retrieval_key": "k", "scores": [{"request_id": RID}], "partial_result": False}
    assert web.client.post(f"/webhooks/telemetry?{GOOD}", json=telemetry).status_code == 200
    return web


def rejections(kind: str, reason: str) -> float:
    return (
        REGISTRY.get_sample_value("fleet_webhook_rejections_total", {"kind": kind, "reason": reason}) or 0.0
    )


@pytest.mark.parametrize("row", list(ROWS.values()), ids=list(ROWS))
def test_bad_input(seeded: WebApp, row: Row) -> None:
    before = seeded.snapshot()
    assert before, "the seed must have stored something"
    response = seeded.client.request(
        row.method,
        f"{row.path}?{row.query}" if row.query else row.path,
        json=row.json_body,
        content=row.content,
        headers=row.headers,
    )
    assert response.status_code == row.status, response.text
    if row.status >= 400 and row.status != 405:
        message = response.json()["message"]
        assert WEBHOOK_SECRET not in message
        if row.names:
            assert message.startswith(f"{row.names}: "), message
    row.effect(seeded, before, seeded.snapshot())


def test_unknown_status_of_a_new_deployment_is_stored_raw_and_never_capacity(seeded: WebApp) -> None:
    body = status_body(request_id="aaaabbbbcccc", current_status="Status.HIBERNATING", sockets_usage=0)
    response = seeded.client.post(f"/webhooks/deployments?{GOOD}", json=body)
    assert response.status_code == 200 and response.json() == {"result": "unknown_status"}
    dep = seeded.call(seeded.store.deployments.get, "aaaabbbbcccc", NOW)
    assert dep is not None and dep.status is None and dep.status_raw == "Status.HIBERNATING"
    hold = seeded.call(seeded.store.deployments.reserve, "aaaabbbbcccc", "s1", 1, NOW, 10.0)
    assert not hold.ok and hold.reason == "not_ready"
    assert seeded.redis.xlen(f"{seeded.prefix}:events") == 1  # only the seed's READY transition


def test_rejections_are_counted_by_reason(seeded: WebApp) -> None:
    before = (rejections("deployment", "bad_secret"), rejections("deployment", "too_large"))
    seeded.client.post("/webhooks/deployments?token=nope", json=status_body())
    seeded.client.post(f"/webhooks/deployments?{GOOD}", content=b"x" * BIG)
    after = (rejections("deployment", "bad_secret"), rejections("deployment", "too_large"))
    assert after == (before[0] + 1, before[1] + 1)


def test_a_throttled_address_is_still_served_with_a_right_secret(seeded: WebApp) -> None:
    before = seeded.snapshot()
    codes = [
        seeded.client.post("/webhooks/deployments?token=guess", json=status_body()).status_code
        for _ in range(FAILURES_PER_WINDOW + 2)
    ]
    assert codes[:FAILURES_PER_WINDOW] == [401] * FAILURES_PER_WINDOW
    assert codes[FAILURES_PER_WINDOW:] == [429, 429]
    throttled = seeded.client.post("/webhooks/deployments?token=guess", json=status_body())
    assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) >= 1
    assert seeded.snapshot() == before
    ok = seeded.client.post(
        f"/webhooks/deployments?token={OLD_WEBHOOK_SECRET}", json=status_body(sockets_usage=4)
    )
    assert ok.status_code == 200  # same address, a right (older) secret: never refused


def test_no_secret_reaches_the_logs(seeded: WebApp, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    seeded.client.post("/webhooks/deployments?token=not-the-secret", json=status_body())
    seeded.client.post(f"/webhooks/deployments?{GOOD}", json=status_body(sockets_usage="lots"))
    seeded.client.post(f"/webhooks/deployments?{GOOD}", content=b"[1]")
    seeded.client.post(f"/webhooks/sessions?token={OLD_WEBHOOK_SECRET}", json={"session_id": "x-s"})
    # Everything the service logged, fields included (the test's own HTTP client logs URLs: skipped).
    ours = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    lines = [r.getMessage() + " " + json.dumps(getattr(r, "fleet_fields", {}), default=str) for r in ours]
    assert any("webhook_rejected" in line and "bad_secret" in line for line in lines)
    assert any("webhook_usage_unknown" in line and "invalid" in line for line in lines)
    for secret in (WEBHOOK_SECRET, OLD_WEBHOOK_SECRET, "not-the-secret"):
        assert not [line for line in lines if secret in line]
