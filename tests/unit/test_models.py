"""Domain parsing rules of design.md §4: status order, lenient counts, policy shapes."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from fleet.models import Policy, Status, may_advance, normalise_kind, parse_count, parse_status, session_size


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Status.READY", Status.READY),
        ("status.ready", Status.READY),
        ("READY", Status.READY),
        (" Status.Seeked ", Status.SEEKED),
        ("Status.HIBERNATING", None),  # unknown: kept raw elsewhere, never capacity
        ("", None),
        (None, None),
        (5, None),
    ],
)
def test_parse_status(raw: object, expected: Status | None) -> None:
    assert parse_status(raw) is expected


@pytest.mark.parametrize(
    ("current", "new", "allowed"),
    [
        (None, Status.DEPLOYING, True),
        (Status.DEPLOYING, Status.READY, True),
        (Status.READY, Status.DEPLOYING, False),  # backwards
        (Status.READY, Status.READY, False),  # duplicate
        (Status.TERMINATED, Status.ERROR, False),  # terminal is final
        (Status.ERROR, Status.TERMINATED, False),
        (Status.READY, None, False),  # unknown never replaces known
        (None, None, True),
    ],
)
def test_may_advance(current: Status | None, new: Status | None, allowed: bool) -> None:
    assert may_advance(current, new) is allowed


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (5, 5),
        ("5", 5),
        (" 7 ", 7),
        ("2.0", 2),
        (2.0, 2),
        (0, 0),
        ("0", 0),
        (None, None),
        ("", None),
        ("x", None),
        (-1, None),
        ("-3", None),
        (2.5, None),
        (True, None),
        (float("nan"), None),
        ("inf", None),
    ],
)
def test_parse_count(raw: object, expected: int | None) -> None:
    assert parse_count(raw) == expected


def policy(**over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "name": "eu",
        "enabled": True,
        "type": "Location",
        "minimum": 1,
        "maximum": 3,
        "threshold": 0.8,
        "data": {"filters": [{"field": "continent", "values": ["Europe"], "filter_type": "any"}]},
    }
    return {**base, **over}


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"minimum": 0}, "minimum"),
        ({"maximum": 0}, "maximum"),
        ({"threshold": 0.05}, "threshold"),
        ({"threshold": 1.01}, "threshold"),
        ({"type": "Region"}, "type"),
        ({"minimum": 4, "maximum": 3}, "maximum must be >= minimum"),
        ({"data": {"filters": []}}, "filters"),
        ({"type": "Coordinates", "data": {"latitude": 95, "longitude": 0}}, "latitude"),
        (
            {"type": "Tag", "data": {"filters": [{"field": "city", "values": ["x"], "filter_type": "any"}]}},
            "location_tags",
        ),
    ],
)
def test_policy_rejects(over: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        Policy.model_validate(policy(**over))
    assert field in str(err.value)


def test_policy_shapes_accepted() -> None:
    assert Policy.model_validate(policy()).filter_data() is not None
    coords = Policy.model_validate(policy(type="Coordinates", data={"latitude": 45.5, "longitude": -73.6}))
    assert coords.point() is not None and coords.point().latitude == 45.5  # type: ignore[union-attr]
    tag = policy(
        type="Tag",
        data={"filters": [{"field": "location_tags", "values": ["cpu=high"], "filter_type": "all"}]},
    )
    assert Policy.model_validate(tag).type == "Tag"


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        ("SEATS", "Seat"),
        ("seat", "Seat"),
        ("MATCH", "Match"),
        ("DEFAULT | SEATS | MATCH", "Default"),
        (None, "Default"),
    ],
)
def test_kind(raw: object, kind: str) -> None:
    assert normalise_kind(raw) == kind


def test_session_size() -> None:
    assert session_size("Seat", 4) == 4  # one socket per player
    assert session_size("Match", 10) == 1  # one socket per session
