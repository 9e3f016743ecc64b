"""Waiting sessions as demand (one policy per session, near its players), the stabilisation window,
and our ownership tags."""

from __future__ import annotations

from fractions import Fraction

import pytest

from autoscaler.demand import Target, Waiting, assign, choose, distance_km, filters_match
from autoscaler.policy import PeakWindow
from autoscaler.tags import create_tags, owner_of
from fleet.models import LocationFilter


def f(field: str, *values: str, kind: str = "any") -> LocationFilter:
    return LocationFilter(field=field, values=list(values), filter_type=kind)  # type: ignore[arg-type]


EU = Target(("f", "eu", "game", "v1"), (f("continent", "Europe"),), (50.1, 8.7))
NA = Target(("f", "na", "game", "v1"), (f("continent", "North America"),), (40.7, -74.0))
MTL = Target(("f", "mtl", "game", "v1"), (), (45.5, -73.6))  # a Coordinates policy
OTHER_APP = Target(("f", "eu2", "other", "v1"), (f("continent", "Europe"),), (50.1, 8.7))

PARIS = {"latitude": 48.86, "longitude": 2.35, "country": "FR", "continent": "EU"}
TORONTO = {"latitude": 43.65, "longitude": -79.38, "country": "Canada", "continent": "North America"}


@pytest.mark.parametrize(
    ("filters", "origin", "expected"),
    [
        ((f("continent", "Europe"),), {"continent": "EU"}, True),  # codes and names both work
        ((f("continent", "europe"),), {"continent": "Europe"}, True),
        ((f("country", "France", "FR"),), {"country": "FR"}, True),
        ((f("country", "Canada", kind="not"),), {"country": "FR"}, True),
        # The allocator's origin carries the ISO code and the platform's name of the country.
        ((f("country", "Canada"),), {"country": "CA", "country_name": "Canada"}, True),
        ((f("country", "Canada", kind="not"),), {"country": "Canada"}, False),
        ((f("country", "FR", "DE", kind="all"),), {"country": "FR"}, False),
        ((f("city", "Paris"),), PARIS, False),  # undecidable from an origin: no match by filters
        ((f("continent", "Europe"),), {}, False),
        ((), PARIS, False),
    ],
)
def test_filters_match(
    filters: tuple[LocationFilter, ...], origin: dict[str, object], expected: bool
) -> None:
    assert filters_match(filters, origin) is expected


def test_a_session_goes_to_the_matching_policy() -> None:
    assert choose([EU, NA, MTL], PARIS) is EU
    # Toronto matches North America by filters, although Montreal's point is nearer.
    assert choose([EU, NA, MTL], TORONTO) is NA


def test_no_filter_match_goes_to_the_nearest() -> None:
    lagos = {"latitude": 6.5, "longitude": 3.4, "continent": "AF"}
    assert choose([EU, NA, MTL], lagos) is EU
    assert choose([NA, MTL], {"latitude": 45.0, "longitude": -72.0}) is MTL


def test_no_origin_at_all_goes_to_the_first_by_name() -> None:
    assert choose([NA, EU, MTL], {}) is EU  # ("f", "eu") sorts first


def test_assign_counts_each_session_once_and_per_app_version() -> None:
    waiting = [
        Waiting("game", "v1", 3, PARIS),
        Waiting("game", "v1", 2, TORONTO),
        Waiting("game", "v1", 1, PARIS),
        Waiting("other", "v1", 4, PARIS),
        Waiting("game", "v2", 5, PARIS),  # no policy links v2: nobody's demand
        Waiting("game", "v1", 0, PARIS),
    ]
    assert assign(waiting, [EU, NA, MTL, OTHER_APP]) == {EU.unit: 4, NA.unit: 2, OTHER_APP.unit: 4}


def test_distance() -> None:
    assert distance_km((48.86, 2.35), (51.51, -0.13)) == pytest.approx(344, abs=5)  # Paris - London


# --- the stabilisation window ---------------------------------------------------------------------
def test_peak_window_needs_a_whole_window_then_holds_the_peak() -> None:
    w = PeakWindow()
    w.add(0.0, 4)
    assert w.peak(5.0, 10.0) is None  # watched 5 s of a 10 s window
    w.add(6.0, 3)
    assert w.peak(10.0, 10.0) == 4  # 4 seen at t=0, still inside [0, 10]
    w.add(11.0, 2)
    assert w.peak(11.0, 10.0) == 3  # t=0 left the window; 3 at t=6 is the highest left
    assert w.peak(17.0, 10.0) == 2
    w.add(18.0, Fraction("2.5"))
    assert w.peak(18.0, 10.0) == Fraction("2.5")


# --- tags -------------------------------------------------------------------------------------------
def test_tags_round_trip_and_need_both_fleet_and_policy() -> None:
    tags = [*create_tags("f", "eu", "game", "v1"), "intent:abc"]
    assert tags[:2] == ["f", "eu"]  # the plain names, as the platform's own fleets tag
    owner = owner_of(tags)
    assert owner is not None and (owner.fleet, owner.policy, owner.app, owner.version, owner.intent) == (
        "f", "eu", "game", "v1", "abc",
    )  # fmt: skip
    assert owner_of(["f", "eu", "intent:abc"]) is None  # plain names are not proof
    assert owner_of(["fleet:f"]) is None
    assert owner_of(None) is None
