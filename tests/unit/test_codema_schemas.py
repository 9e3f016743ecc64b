"""Wire schemas: lenient on what the platform sends (a table of the inconsistencies it has), strict
on what we send."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from codema.schemas import (
    AppVersion,
    AppVersionCreate,
    DeploymentListItem,
    DeploymentStatus,
    DeployRequest,
    IpLookup,
    IpsLookupRequest,
    Location,
    Pagination,
    SessionCreate,
    SessionInfo,
    TelemetryResult,
)
from fleet.models import Status


def status(**fields: Any) -> DeploymentStatus:
    return DeploymentStatus.model_validate({"request_id": "abc", **fields})


# name: (raw field values, expected sockets, expected usage, expected status)
LENIENT_STATUS_ROWS: dict[str, tuple[dict[str, Any], int | None, int | None, Status | None]] = {
    "spec ints": ({"sockets": 5, "sockets_usage": 2, "current_status": "Status.READY"}, 5, 2, Status.READY),
    "seed numeric strings": ({"sockets": "5", "sockets_usage": "2"}, 5, 2, None),
    "padded string": ({"sockets": " 10 ", "sockets_usage": "0"}, 10, 0, None),
    "integral float": ({"sockets": 5.0, "sockets_usage": "3.0"}, 5, 3, None),
    "usage null is unknown, not 0": ({"sockets": 5, "sockets_usage": None}, 5, None, None),
    "usage absent is unknown": ({"sockets": 5}, 5, None, None),
    "usage garbage is unknown": ({"sockets": "5", "sockets_usage": "x"}, 5, None, None),
    "negative is unknown": ({"sockets": -1, "sockets_usage": "-2"}, None, None, None),
    "fractional is unknown": ({"sockets": 2.5}, None, None, None),
    "bool is not a count": ({"sockets": True}, None, None, None),
    "lower-case status": ({"current_status": "status.ready"}, None, None, Status.READY),
    "bare status": ({"current_status": "DEPLOYING"}, None, None, Status.DEPLOYING),
    "mixed case": ({"current_status": "Status.Terminating"}, None, None, Status.TERMINATING),
    "unknown status stays unknown": ({"current_status": "Status.HIBERNATING"}, None, None, None),
}


@pytest.mark.parametrize("row", LENIENT_STATUS_ROWS.values(), ids=LENIENT_STATUS_ROWS.keys())
def test_status_parsing_is_lenient(row: tuple[dict[str, Any], int | None, int | None, Status | None]) -> None:
    fields, sockets, usage, expected = row
    parsed = status(**fields)
    report = parsed.to_report("poll")
    assert (parsed.sockets, parsed.sockets_usage, parsed.parsed_status) == (sockets, usage, expected)
    assert (report.sockets, report.usage, report.status) == (sockets, usage, expected)


def test_status_keeps_the_raw_status_string_for_the_store() -> None:
    report = status(current_status="Status.HIBERNATING").to_report("webhook")
    assert report.status_raw == "Status.HIBERNATING" and report.status is None
    assert status().to_report("poll").status_raw is None  # said nothing about status


def test_status_webhook_body_becomes_a_kernel_report() -> None:
    body = {
        "request_id": "93924761ccde",
        "fqdn": "x.codema.test",
        "app_name": "game",
        "app_version": "v1",
        "current_status": "Status.READY",
        "running": True,
        "whitelisting_active": False,
        "start_time": "2024-05-26 12:00:45.831041",
        "elapsed_time": "12",
        "error": False,
        "public_ip": "203.0.113.7",
        "ports": {
            "7777": {"external": 31669, "internal": 7777, "protocol": "UDP", "name": "7777", "proxy": None}
        },
        "location": {
            "city": "Montreal",
            "country": "Canada",
            "continent": "North America",
            "administrative_division": "Quebec",
            "timezone": "Eastern Time",
            "latitude": "45.5",
            "longitude": -73.56,
        },
        "tags": ["fleet-a", "intent:i1"],
        "sockets": "10",
        "sockets_usage": 3,
        "brand_new_field": {"x": 1},
    }
    report = DeploymentStatus.model_validate(body).to_report("webhook")
    assert report.request_id == "93924761ccde" and report.source == "webhook"
    assert (report.status, report.sockets, report.usage) == (Status.READY, 10, 3)
    assert (report.app, report.version, report.fqdn, report.public_ip) == (
        "game",
        "v1",
        "x.codema.test",
        "203.0.113.7",
    )
    assert report.tags == ("fleet-a", "intent:i1")
    assert report.location is not None and report.location.city == "Montreal"
    assert report.location.latitude == pytest.approx(45.5)
    assert report.ports == {"7777": {"external": 31669, "internal": 7777, "protocol": "UDP", "name": "7777"}}


def test_status_nulls_fall_back_to_defaults() -> None:
    parsed = status(fqdn=None, ports=None, tags=None, location=None, error=None, sessions=None)
    assert (parsed.fqdn, parsed.ports, parsed.tags, parsed.location, parsed.error) == (
        "",
        {},
        None,
        None,
        False,
    )
    assert parsed.to_report("poll").tags is None  # no tags said: the store keeps what it has


def test_status_without_request_id_is_refused() -> None:
    with pytest.raises(ValidationError):
        DeploymentStatus.model_validate({"current_status": "Status.READY"})


# name: (list item fields, expected status_raw)
LIST_ROWS: dict[str, tuple[dict[str, Any], str | None]] = {
    "status when present": ({"status": "Status.DEPLOYING", "ready": False}, "Status.DEPLOYING"),
    "status wins over ready": ({"status": "status.terminating", "ready": True}, "status.terminating"),
    "ready without status": ({"ready": True}, "Status.READY"),
    "ready as string": ({"ready": "true"}, "Status.READY"),
    "not ready, no status": ({"ready": False}, None),
}


@pytest.mark.parametrize("row", LIST_ROWS.values(), ids=LIST_ROWS.keys())
def test_list_item_status(row: tuple[dict[str, Any], str | None]) -> None:
    fields, expected = row
    item = DeploymentListItem.model_validate({"request_id": "abc", "sockets": "4", **fields})
    report = item.to_report("list")
    assert report.status_raw == expected and report.source == "list" and report.sockets == 4


def test_list_item_intent_tag() -> None:
    item = DeploymentListItem.model_validate({"request_id": "a", "tags": ["fleet-a", "intent:abc-1"]})
    assert item.intent == "abc-1"
    assert DeploymentListItem.model_validate({"request_id": "a"}).intent is None


def test_session_get_accepts_seed_app_id_or_spec_app_version() -> None:
    base = {
        "session_id": "s-s",
        "status": "Status.READY",
        "ready": True,
        "linked": True,
        "kind": "SEATS",
        "user_count": "3",
    }
    seed = SessionInfo.model_validate({**base, "app_id": 7})
    spec = SessionInfo.model_validate({**base, "app_version": "8"})
    assert (seed.app_version, spec.app_version) == (7, 8)
    assert seed.kind == "Seat" and seed.user_count == 3 and seed.status_name == "READY"


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        ("SEATS", "Seat"),
        ("seat", "Seat"),
        ("MATCH", "Match"),
        ("Default", "Default"),
        ("DEFAULT | SEATS", "Default"),
    ],
)
def test_session_kind_is_normalised(raw: str, kind: str) -> None:
    info = SessionInfo.model_validate({"session_id": "s", "kind": raw})
    assert info.kind == kind


def test_session_deployment_counts_and_report() -> None:
    info = SessionInfo.model_validate(
        {
            "session_id": "s",
            "status": "status.unprocessable",
            "deployment": {
                "request_id": "d1",
                "status": "Status.READY",
                "sockets": "5",
                "sockets_usage": "x",
            },
        }
    )
    assert info.status_name == "UNPROCESSABLE" and info.deployment_request_id == "d1"
    assert info.deployment is not None
    report = info.deployment.to_report("session")
    assert (report.sockets, report.usage, report.status) == (5, None, Status.READY)


def test_app_version_session_config_is_normalised() -> None:
    version = AppVersion.model_validate(
        {
            "name": "v1",
            "session_config": {"kind": "seats", "sockets": "10", "empty_ttl": 5, "autodeploy": "false"},
        }
    )
    config = version.session_config
    assert (config.kind, config.sockets, config.empty_ttl, config.autodeploy) == ("Seat", 10, 5, False)
    assert AppVersion.model_validate({"name": "v2"}).session_config.kind == "Default"
    assert AppVersion.model_validate({"name": "v3", "session_config": None}).session_config.kind == "Default"


def test_telemetry_scores_are_request_ids_best_first() -> None:
    result = TelemetryResult.model_validate(
        {
            "retrieval_key": "k",
            "scores": [{"request_id": "b"}, {"request_id": "a"}, {}],
            "partial_result": True,
        }
    )
    assert result.scores == ["b", "a"] and result.partial_result
    assert TelemetryResult.model_validate({"retrieval_key": "k"}).scores == []


def test_ip_lookup_is_flattened_and_unknown_is_none() -> None:
    known = IpLookup.model_validate(
        {
            "ip_address": "1.1.1.1",
            "location": {
                "continent": {"code": "OC", "name": "Oceania"},
                "country": {"code": "AU"},
                "latitude": -33.8,
                "longitude": 151.2,
            },
        }
    )
    assert (known.latitude, known.longitude, known.country_code, known.continent) == (
        -33.8,
        151.2,
        "AU",
        "Oceania",
    )
    unknown = IpLookup.model_validate({"ip_address": "10.0.0.1"})
    assert (unknown.latitude, unknown.longitude, unknown.country_code) == (None, None, "")
    garbage = IpLookup.model_validate({"ip_address": "10.0.0.1", "location": {"latitude": "n/a"}})
    assert garbage.latitude is None


def test_location_tags_as_key_value() -> None:
    loc = Location.model_validate({"city": "Paris", "tags": [{"key": "cpu", "value": "high-clock"}]})
    assert loc.tag_strings() == ("cpu=high-clock",)


def test_pagination_reads_the_nested_paginator() -> None:
    page = Pagination.model_validate({"number": 1, "has_next": True, "paginator": {"num_pages": 3}})
    assert (page.has_next, page.num_pages) == (True, 3)
    assert Pagination.model_validate({}).has_next is False


# --- strict on what we send ----------------------------------------------------------------------------
def test_requests_refuse_unknown_fields_and_leave_out_none() -> None:
    with pytest.raises(ValidationError):
        DeployRequest.model_validate({"app_name": "game", "city": "Montreal"})  # deprecated: use filters
    with pytest.raises(ValidationError):
        SessionCreate.model_validate({"app_name": "game", "ip_list": ["1.2.3.4"], "players": 3})
    assert DeployRequest(app_name="game").to_wire() == {"app_name": "game"}


@pytest.mark.parametrize(
    "bad",
    [
        {"app_name": ""},
        {"app_name": "g", "filters": [{"field": "planet", "values": ["x"], "filter_type": "any"}]},
        {"app_name": "g", "location": {"latitude": 91, "longitude": 0}},
        {"app_name": "g", "ap_sort_strategy": "random"},
    ],
)
def test_invalid_deploy_requests_are_refused_before_sending(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        DeployRequest.model_validate(bad)


def test_with_tag_adds_once() -> None:
    request = DeployRequest(app_name="game", tags=["a"]).with_tag("intent:x")
    assert request.with_tag("intent:x").tags == ["a", "intent:x"]


def test_ip_lookup_request_holds_at_most_twenty() -> None:
    IpsLookupRequest(addresses=[str(i) for i in range(20)])
    with pytest.raises(ValidationError):
        IpsLookupRequest(addresses=[str(i) for i in range(21)])


def test_secrets_in_requests_stay_out_of_reprs_but_reach_the_wire() -> None:
    version = AppVersionCreate(
        name="v1",
        docker_repository="r",
        docker_image="i",
        docker_tag="t",
        req_cpu=256,
        req_memory=256,
        private_token="registry-pass-123",
        envs=[{"key": "K", "value": "env-secret-456"}],  # type: ignore[list-item]
    )
    deploy = DeployRequest(
        app_name="g",
        webhook_url="https://h/webhooks/deployments?token=hook-secret-789",
        env_vars=[{"key": "K", "value": "env-secret-456", "is_hidden": True}],  # type: ignore[list-item]
    )
    shown = repr(version) + str(version) + repr(deploy) + str(deploy)
    for secret in ("registry-pass-123", "env-secret-456", "hook-secret-789"):
        assert secret not in shown
    assert version.to_wire()["private_token"] == "registry-pass-123"
    assert deploy.to_wire()["webhook_url"].endswith("token=hook-secret-789")
