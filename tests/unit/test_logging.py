"""Log lines are key=value, one per event, and never carry a secret."""

from __future__ import annotations

import logging

from fleet.logging import KeyValueFormatter, scrub


def record(msg: str, **fields: object) -> logging.LogRecord:
    r = logging.LogRecord("fleet.test", logging.INFO, __file__, 1, msg, None, None)
    r.fleet_fields = fields  # type: ignore[attr-defined]
    return r


def test_key_value_line() -> None:
    line = KeyValueFormatter().format(record("decision", fleet="f1", reason="threshold", desired=3))
    assert (
        "event=decision" in line and "fleet=f1" in line and "reason=threshold" in line and "desired=3" in line
    )


def test_secrets_never_printed() -> None:
    fmt = KeyValueFormatter(secrets=["s3cret-value"])
    line = fmt.format(
        record(
            "call",
            url="http://x/webhooks/deployments?token=s3cret-value&a=1",
            header="Authorization: token abcdef123",
        )
    )
    assert "s3cret-value" not in line and "abcdef123" not in line


def test_scrub_query_token_of_any_value() -> None:
    assert scrub("POST /webhooks/sessions?token=zzz HTTP/1.1") == "POST /webhooks/sessions?token=*** HTTP/1.1"
