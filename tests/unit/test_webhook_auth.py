"""Webhook secrets, the failure throttle, the web process's refusal to start without a secret, and
secrets kept out of logs."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from starlette.requests import Request

from fleet import runners
from fleet.logging import KeyValueFormatter
from fleet.settings import Settings
from webhooks.auth import SecretGuard
from webhooks.throttle import FailureThrottle

SECRET = "s3cret-current-0123456789"
OLD = "s3cret-previous-9876543210"


def request(query: str = "", client: str = "203.0.113.7") -> Request:
    scope: dict[str, Any] = {
        "type": "http",
        "method": "POST",
        "path": "/webhooks/deployments",
        "query_string": query.encode(),
        "headers": [],
        "client": (client, 50000),
    }
    return Request(scope)


def guard(*secrets: str, insecure: bool = False, limit: int = 3) -> SecretGuard:
    return SecretGuard(secrets, allow_insecure=insecure, throttle=FailureThrottle(limit=limit, window_s=60))


@pytest.mark.parametrize(
    "query, status",
    [
        (f"token={SECRET}", None),
        (f"token={OLD}", None),  # rotation: the older secret is still accepted
        ("token=wrong", 401),
        ("", 401),
        ("token=", 401),
        (f"token={SECRET}x", 401),
        (f"token={SECRET[:-1]}", 401),
        (f"secret={SECRET}", 401),  # only `token` carries it
    ],
    ids=["current", "previous", "wrong", "missing", "empty", "longer", "prefix", "other parameter"],
)
def test_secrets(query: str, status: int | None) -> None:
    failure = guard(SECRET, OLD).check(request(query), 0.0)
    assert (failure.status if failure else None) == status


def test_reasons_distinguish_missing_from_wrong() -> None:
    g = guard(SECRET)
    missing, wrong = g.check(request(""), 0.0), g.check(request("token=x"), 0.0)
    assert missing is not None and missing.reason == "missing_secret"
    assert wrong is not None and wrong.reason == "bad_secret"
    assert SECRET not in missing.message + wrong.message


def test_repeated_failures_are_throttled_but_a_right_secret_never_is() -> None:
    g = guard(SECRET, limit=3)
    statuses = [f.status for f in (g.check(request("token=x"), t) for t in range(5)) if f]
    assert statuses == [401, 401, 401, 429, 429]  # limit 3 per window: the 4th failure is throttled
    assert g.check(request(f"token={SECRET}"), 5.0) is None  # same address, right secret: accepted
    other = g.check(request("token=x", client="198.51.100.1"), 5.0)
    assert other is not None and other.status == 401  # another address is not affected


def test_throttle_window_expires_and_logs_once() -> None:
    t = FailureThrottle(limit=2, window_s=10)
    verdicts = [t.fail("a", now) for now in (0, 1, 2, 3, 4)]
    assert [v.throttled for v in verdicts] == [False, False, True, True, True]
    assert [v.first_throttled for v in verdicts] == [False, False, True, False, False]
    assert verdicts[2].retry_after_s == 8  # oldest failure in the window at 0, window 10 s, now 2
    assert not t.fail("a", 100).throttled  # the window has passed


def test_throttle_memory_is_bounded() -> None:
    t = FailureThrottle(limit=1, window_s=60, max_clients=100)
    for i in range(1000):
        t.fail(f"10.0.{i // 256}.{i % 256}", 0.0)
    assert t.tracked() == 100


def test_insecure_mode_accepts_without_token_only_when_no_secret_is_set() -> None:
    assert guard(insecure=True).check(request(""), 0.0) is None
    failure = guard(SECRET, insecure=True).check(request(""), 0.0)
    assert failure is not None and failure.status == 401  # a configured secret is always required


def test_no_secret_and_not_insecure_fails_closed() -> None:
    failure = guard().check(request("token=anything"), 0.0)
    assert failure is not None and failure.status == 503


# --- the web process -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "secret, insecure, refuses",
    [("", False, True), ("", True, False), ("a", False, False), (" , ", False, True), ("a,b", False, False)],
    ids=["no secret", "insecure allowed", "secret", "only separators", "two secrets"],
)
def test_web_refuses_to_start_without_a_secret(secret: str, insecure: bool, refuses: bool) -> None:
    problem = runners.check_web_settings(Settings(webhook_secret=secret, allow_insecure_webhooks=insecure))
    assert (problem is not None) == refuses
    if problem:
        assert "FLEET_WEBHOOK_SECRET" in problem and "FLEET_ALLOW_INSECURE_WEBHOOKS=1" in problem


def test_run_web_exits_before_serving(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import uvicorn

    served: list[object] = []
    monkeypatch.setenv("FLEET_WEBHOOK_SECRET", "")
    monkeypatch.delenv("FLEET_ALLOW_INSECURE_WEBHOOKS", raising=False)
    monkeypatch.setattr(runners, "setup_logging", lambda settings: None)
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: served.append(a))
    assert runners.run_web("127.0.0.1", 0) == 2
    assert served == []
    assert "FLEET_WEBHOOK_SECRET is not set" in capsys.readouterr().err


def test_comma_separated_secrets() -> None:
    assert Settings(webhook_secret=f" {SECRET} ,{OLD},").webhook_secrets() == [SECRET, OLD]


def test_access_log_lines_never_show_the_token() -> None:
    # uvicorn's access logger formats `client - "METHOD full_path HTTP/v" status`; fleet.logging
    # routes it through the scrubbing formatter (FLEET's runner keeps the access log off anyway).
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("203.0.113.7:50000", "POST", f"/webhooks/deployments?token={SECRET}&x=1", "1.1", 200),
        None,
    )
    line = KeyValueFormatter(secrets=()).format(record)
    assert SECRET not in line and "token=***" in line
