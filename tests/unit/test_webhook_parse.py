"""Callback bodies -> reports: lenient counts and statuses, strict subject ids (webhooks.parse)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from codema.schemas import PortMapping
from fleet.models import SessionState, Status
from webhooks.parse import (
    MAX_ID_CHARS,
    CountNote,
    FieldError,
    deployment_body,
    session_body,
    telemetry_body,
)

NOW = 1_000_000.0


def dep(**fields: Any) -> dict[str, Any]:
    return {"request_id": "93924761ccde", "current_status": "Status.READY", **fields}


# name: body fields -> (sockets, usage, usage note)
COUNTS = {
    "integers": ({"sockets": 5, "sockets_usage": 2}, (5, 2, None)),
    "numeric strings (seed examples)": ({"sockets": "5", "sockets_usage": "2"}, (5, 2, None)),
    "padded string and integral float": ({"sockets": " 5 ", "sockets_usage": 2.0}, (5, 2, None)),
    "usage missing is unknown, not 0": ({"sockets": 5}, (5, None, CountNote.MISSING)),
    "usage null is unknown": ({"sockets": 5, "sockets_usage": None}, (5, None, CountNote.NULL)),
    "usage text is unknown": ({"sockets": 5, "sockets_usage": "lots"}, (5, None, CountNote.INVALID)),
    "usage negative is unknown": ({"sockets": 5, "sockets_usage": -1}, (5, None, CountNote.INVALID)),
    "usage fractional is unknown": ({"sockets": 5, "sockets_usage": 2.5}, (5, None, CountNote.INVALID)),
    "usage boolean is unknown": ({"sockets": 5, "sockets_usage": True}, (5, None, CountNote.INVALID)),
    "usage NaN is unknown": ({"sockets": 5, "sockets_usage": float("nan")}, (5, None, CountNote.INVALID)),
    "usage object is unknown": ({"sockets": 5, "sockets_usage": {"n": 1}}, (5, None, CountNote.INVALID)),
    "superscript digits are unknown": ({"sockets": "5", "sockets_usage": "²"}, (5, None, CountNote.INVALID)),
    "absurd sockets are unknown": ({"sockets": 10**12, "sockets_usage": 1}, (None, 1, None)),
    # usage 9 > sockets 5: clamped to 5
    "usage above sockets is clamped": ({"sockets": 5, "sockets_usage": 9}, (5, 5, CountNote.CLAMPED)),
    # sockets 0 is a capacity (of nothing); usage 3 clamps to 0, and nothing divides
    "sockets 0": ({"sockets": 0, "sockets_usage": 3}, (0, 0, CountNote.CLAMPED)),
    "sockets unknown: usage kept as sent": ({"sockets": "n/a", "sockets_usage": 3}, (None, 3, None)),
}


@pytest.mark.parametrize("fields, expected", list(COUNTS.values()), ids=list(COUNTS))
def test_socket_counts(
    fields: dict[str, Any], expected: tuple[int | None, int | None, CountNote | None]
) -> None:
    parsed = deployment_body(dep(**fields))
    assert (parsed.report.sockets, parsed.report.usage, parsed.usage_note) == expected


@pytest.mark.parametrize(
    "raw, status",
    [
        ("Status.READY", Status.READY),
        ("ready", Status.READY),
        ("status.Terminated", Status.TERMINATED),
        ("Status.HIBERNATING", None),  # unknown: kept raw below
    ],
)
def test_status_strings(raw: str, status: Status | None) -> None:
    report = deployment_body(dep(current_status=raw)).report
    assert report.status_raw == raw
    assert report.status is status


def test_missing_status_is_no_status() -> None:
    body = dep()
    del body["current_status"]
    report = deployment_body(body).report
    assert report.status_raw is None and report.status is None


# name: body -> the field the 422 names
BAD_DEPLOYMENTS: dict[str, tuple[dict[str, Any], str]] = {
    "no request_id": ({"current_status": "Status.READY"}, "request_id"),
    "null request_id": ({"request_id": None}, "request_id"),
    "numeric request_id": ({"request_id": 93924761}, "request_id"),
    "empty request_id": ({"request_id": "  "}, "request_id"),
    "request_id with a space": ({"request_id": "a b"}, "request_id"),
    "request_id with a control character": ({"request_id": "ab\x00"}, "request_id"),
    "request_id too long": ({"request_id": "a" * (MAX_ID_CHARS + 1)}, "request_id"),
    "status not a string": ({"request_id": "abc", "current_status": 5}, "current_status"),
    "status absurdly long": ({"request_id": "abc", "current_status": "S" * 500}, "current_status"),
}


@pytest.mark.parametrize("body, field", list(BAD_DEPLOYMENTS.values()), ids=list(BAD_DEPLOYMENTS))
def test_unusable_subject_names_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(FieldError) as err:
        deployment_body(body)
    assert err.value.field == field
    assert str(err.value).startswith(f"{field}: ")


def test_facts_are_normalised_like_the_platform_client() -> None:
    body = dep(
        app_name="game",
        app_version="v1",
        fqdn="abc.example",
        public_ip="100.10.0.85",
        ports={"game": {"external": "31000", "internal": 7777, "protocol": "UDP"}, "junk": "x"},
        location={"city": "Montreal", "latitude": "45.5", "longitude": -73.5},
        tags=["prod", 3, "eu"],
    )
    report = deployment_body(body).report
    assert (report.app, report.version, report.fqdn, report.public_ip) == (
        "game",
        "v1",
        "abc.example",
        "100.10.0.85",
    )
    assert report.ports == {"game": {"external": 31000, "internal": 7777, "protocol": "UDP"}}
    assert report.location is not None and report.location.city == "Montreal"
    assert report.location.latitude == 45.5
    assert report.tags == ("prod", "eu")
    assert report.source == "webhook"


def test_malformed_optional_parts_are_dropped_not_fatal() -> None:
    report = deployment_body(dep(ports=[1, 2], location="Montreal", tags="prod", fqdn=5)).report
    assert report.ports is None and report.location is None and report.tags is None and report.fqdn == ""


def test_locations_parsed_once_are_not_confused_with_equal_looking_ones() -> None:
    # Locations are parsed through a cache keyed on their fields: True == 1 in Python, but only
    # 1 is a coordinate; a nested value is parsed without the cache.
    def location(**fields: Any) -> Any:
        return deployment_body(dep(location={"city": "Lima", **fields})).report.location

    assert location(latitude=1).latitude == 1.0
    assert location(latitude=True).latitude is None
    assert location(latitude=1).latitude == 1.0
    assert location(latitude=[1]).latitude is None
    assert location(latitude=-12.0) is location(latitude=-12.0)  # frozen: one shared instance
    assert location(city=1).city == "1" and location(city=1.0).city == "1.0"  # 1 == 1.0, not as text


# name: status (and flags) -> (our state, known)
SESSION_STATES: dict[str, tuple[dict[str, Any], tuple[SessionState | None, bool]]] = {
    "ready": ({"status": "Status.READY"}, (SessionState.LINKED, True)),
    "lower-case ready": ({"status": "ready"}, (SessionState.LINKED, True)),
    "unprocessable": ({"status": "Status.UNPROCESSABLE"}, (SessionState.UNPROCESSABLE, True)),
    "error": ({"status": "Status.ERROR"}, (SessionState.ERROR, True)),
    "terminating": ({"status": "Status.TERMINATING"}, (SessionState.TERMINATING, True)),
    "pending status changes nothing": ({"status": "Status.WAITING"}, (None, True)),
    "seeking changes nothing": ({"status": "Status.SEEKING"}, (None, True)),
    "unknown status": ({"status": "Status.TELEPORTING"}, (None, False)),
    "no status, linked and ready": ({"linked": True, "ready": "true"}, (SessionState.LINKED, True)),
    "no status, not linked": ({"linked": False}, (None, True)),
}


@pytest.mark.parametrize("fields, expected", list(SESSION_STATES.values()), ids=list(SESSION_STATES))
def test_session_states(fields: dict[str, Any], expected: tuple[SessionState | None, bool]) -> None:
    parsed = session_body({"session_id": "abc123-s", **fields}, NOW)
    assert (parsed.report.state, parsed.status_known) == expected
    assert parsed.report.received_at == NOW


def test_session_carries_its_deployment_as_a_webhook_report() -> None:
    body = {
        "session_id": "abc123-s",
        "status": "Status.READY",
        "deployment": {
            "request_id": "93924761ccde",
            "status": "Status.READY",
            "sockets": "4",
            "sockets_usage": 3,
        },
    }
    parsed = session_body(body, NOW)
    assert parsed.deployment is not None
    report = parsed.deployment.report
    assert (report.request_id, report.status, report.sockets, report.usage) == (
        "93924761ccde",
        Status.READY,
        4,
        3,
    )
    assert parsed.report.deployment_request_id == "93924761ccde"


def test_session_with_a_broken_deployment_object_keeps_the_session_fact() -> None:
    parsed = session_body(
        {"session_id": "abc123-s", "status": "Status.ERROR", "deployment": {"fqdn": "x"}}, NOW
    )
    assert parsed.deployment is None and parsed.deployment_problem.startswith("deployment.request_id")
    assert parsed.report.state is SessionState.ERROR


def test_session_requires_its_id() -> None:
    with pytest.raises(FieldError) as err:
        session_body({"status": "Status.READY"}, NOW)
    assert err.value.field == "session_id" and err.value.missing


def test_telemetry_scores_best_first_deduplicated() -> None:
    parsed = telemetry_body(
        {
            "retrieval_key": "cb61e402-3e35-439a-8dd2-bdefc4471234",
            "scores": [{"request_id": "b"}, {"request_id": "a"}, {"request_id": "b"}, {"x": 1}, 7, "c"],
            "partial_result": "true",
        }
    )
    assert parsed.scores == ("b", "a", "c")
    assert parsed.skipped == 2 and parsed.partial


@pytest.mark.parametrize(
    "body, field",
    [({"scores": []}, "retrieval_key"), ({"retrieval_key": "k", "scores": "a,b"}, "scores")],
    ids=["no retrieval_key", "scores not a list"],
)
def test_telemetry_names_the_bad_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(FieldError) as err:
        telemetry_body(body)
    assert err.value.field == field


def test_telemetry_without_scores_is_an_empty_complete_result() -> None:
    parsed = telemetry_body({"retrieval_key": "k"})
    assert parsed.scores == () and not parsed.partial


# --- ports: the hand-written normalisation equals the platform client's model --------------------
JSON_SCALARS = (
    st.none() | st.booleans() | st.integers(-5, 70_000) | st.floats(allow_nan=False) | st.text(max_size=6)
)
PORT_VALUES = JSON_SCALARS | st.sampled_from(["31000", " 7777 ", "-1", "1e3", "true", "Yes", "0", ""])
PORT_FIELDS = ["external", "internal", "protocol", "name", "tls_upgrade", "link", "proxy", "extra"]
A_PORT = st.dictionaries(st.sampled_from(PORT_FIELDS), PORT_VALUES | st.lists(JSON_SCALARS, max_size=2))
PORTS = st.dictionaries(st.text(min_size=1, max_size=5), A_PORT | JSON_SCALARS | st.lists(A_PORT, max_size=1))


def ports_by_the_model(value: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, port in value.items():
        try:
            out[name] = PortMapping.model_validate(port).model_dump(exclude_defaults=True)
        except ValidationError:
            continue
    return out


@settings(max_examples=400, deadline=None)
@given(PORTS)
def test_ports_are_normalised_exactly_like_the_model(ports: dict[str, Any]) -> None:
    assert deployment_body(dep(ports=ports)).report.ports == ports_by_the_model(ports)
