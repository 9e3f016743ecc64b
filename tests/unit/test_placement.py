"""The pure placement core: filtering and ranking, one named row per scenario."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from allocator.placement import (
    Ask,
    Candidate,
    Exclusion,
    LocationRule,
    Point,
    Ranks,
    Reason,
    candidate_of,
    place,
    rtt_ms,
)
from fleet.models import Deployment, DeploymentLocation, Status

NOW = 1_000_000.0
TTL = 300.0

LONDON = Point(51.5074, -0.1278)
PARIS = Point(48.8566, 2.3522)
TOKYO = Point(35.6762, 139.6503)
NEW_YORK = Point(40.7128, -74.0060)
PLAYER_UK = Point(52.0, -1.0)


def cand(rid: str, free: int = 4, point: Point | None = LONDON, **kw: object) -> Candidate:
    return Candidate(rid, free, point=point, **kw)  # type: ignore[arg-type]


def ranks(*order: str, partial: bool = False, age_s: float = 0.0) -> Ranks:
    return Ranks({rid: i for i, rid in enumerate(order)}, partial, NOW - age_s)


@dataclass(frozen=True)
class Row:
    name: str
    ask: Ask
    candidates: list[Candidate]
    telemetry: dict[str, Ranks] = field(default_factory=dict)
    order: tuple[str, ...] = ()
    reason: Reason = Reason.TELEMETRY
    excluded: dict[Exclusion, int] = field(default_factory=dict)


ROWS = [
    Row(
        "complete fresh telemetry decides, even against geography",
        Ask(1, players=(PLAYER_UK,)),
        [cand("lon", point=LONDON), cand("tok", point=TOKYO)],
        {"81.2.69.0/24": ranks("tok", "lon")},  # the platform measured Tokyo faster: trust it
        ("tok", "lon"),
        Reason.TELEMETRY,
    ),
    Row(
        "no telemetry: nearest by geography",
        Ask(1, players=(PLAYER_UK,)),
        [cand("tok", point=TOKYO), cand("par", point=PARIS), cand("lon", point=LONDON)],
        {},
        ("lon", "par", "tok"),
        Reason.GEOGRAPHY,
    ),
    Row(
        "partial telemetry falls back to geography",
        Ask(1, players=(PLAYER_UK,)),
        [cand("tok", point=TOKYO), cand("lon", point=LONDON)],
        {"n": ranks("tok", partial=True)},  # only Tokyo reported so far
        ("lon", "tok"),
        Reason.GEOGRAPHY_FALLBACK,
    ),
    Row(
        "telemetry blind to a new deployment falls back to geography",
        Ask(1, players=(PLAYER_UK,)),
        [cand("tok", point=TOKYO), cand("new-lon", point=LONDON)],
        {"n": ranks("tok")},  # measured before new-lon existed
        ("new-lon", "tok"),
        Reason.GEOGRAPHY_FALLBACK,
    ),
    Row(
        "stale telemetry falls back to geography",
        Ask(1, players=(PLAYER_UK,)),
        [cand("tok", point=TOKYO), cand("lon", point=LONDON)],
        {"n": ranks("tok", "lon", age_s=TTL + 1)},
        ("lon", "tok"),
        Reason.GEOGRAPHY_FALLBACK,
    ),
    Row(
        "one of two networks unmeasured: geography decides",
        Ask(1, players=(PLAYER_UK,)),
        [cand("tok", point=TOKYO), cand("lon", point=LONDON)],
        {"a": ranks("tok", "lon"), "b": ranks("tok", "lon", age_s=TTL + 5)},
        ("lon", "tok"),
        Reason.GEOGRAPHY_FALLBACK,
    ),
    Row(
        "two networks: mean position decides (a: x,y,z  b: z,x,y -> x 0.5, z 1.0, y 1.5)",
        Ask(1),
        [cand("x"), cand("y"), cand("z")],
        {"a": ranks("x", "y", "z"), "b": ranks("z", "x", "y")},
        ("x", "z", "y"),
        Reason.TELEMETRY,
    ),
    Row(
        "a deployment without coordinates never ranks first under geography",
        Ask(1, players=(PLAYER_UK,)),
        [cand("nowhere", point=None), cand("tok", point=TOKYO)],
        {},
        ("tok", "nowhere"),
        Reason.GEOGRAPHY,
    ),
    Row(
        "players unlocated, partial telemetry: measured first, unmeasured after",
        Ask(1),
        [cand("a"), cand("b"), cand("c")],
        {"n": ranks("c", partial=True)},
        ("c", "a", "b"),
        Reason.TELEMETRY_PARTIAL,
    ),
    Row(
        "nothing to score with: fullest first (packing), then request id",
        Ask(1),
        [cand("a", free=4), cand("b", free=1), cand("c", free=2)],
        {},
        ("b", "c", "a"),
        Reason.UNSCORED,
    ),
    Row(
        "same city: the fuller deployment wins the tie (packing)",
        Ask(1, players=(PLAYER_UK,)),
        [cand("lon-empty", free=4), cand("lon-busy", free=1)],
        {},
        ("lon-busy", "lon-empty"),
        Reason.GEOGRAPHY,
    ),
    Row(
        "a seat session of 3 skips deployments with fewer free sockets",
        Ask(3, players=(PLAYER_UK,)),
        [cand("lon", free=2), cand("par", free=3, point=PARIS)],
        {},
        ("par",),
        Reason.GEOGRAPHY,
        {Exclusion.FULL: 1},
    ),
    Row(
        "draining, starting and unknown-usage deployments are never candidates",
        Ask(1, players=(PLAYER_UK,)),
        [
            cand("drain", blocked=Exclusion.DRAINING),
            cand("boot", blocked=Exclusion.NOT_READY),
            cand("unknown", blocked=Exclusion.USAGE_UNKNOWN),
            cand("ok", point=TOKYO),
        ],
        {},
        ("ok",),
        Reason.GEOGRAPHY,
        {Exclusion.DRAINING: 1, Exclusion.NOT_READY: 1, Exclusion.USAGE_UNKNOWN: 1},
    ),
    Row(
        "selector tags: all required; tag_only ones are not in the ask",
        Ask(1, tags=frozenset({"ranked", "eu"})),
        [cand("both", tags=frozenset({"ranked", "eu", "x"})), cand("one", tags=frozenset({"ranked"}))],
        {},
        ("both",),
        Reason.UNSCORED,
        {Exclusion.TAGS: 1},
    ),
    Row(
        "no candidate carries the tags: no match",
        Ask(1, tags=frozenset({"ranked"})),
        [cand("a"), cand("b")],
        {},
        (),
        Reason.NO_MATCH,
        {Exclusion.TAGS: 2},
    ),
    Row(
        "all full: no room",
        Ask(2),
        [cand("a", free=1), cand("b", free=0), cand("c", blocked=Exclusion.DRAINING)],
        {},
        (),
        Reason.NO_ROOM,
        {Exclusion.FULL: 2, Exclusion.DRAINING: 1},
    ),
    Row("no deployments at all", Ask(1), [], {}, (), Reason.NO_DEPLOYMENTS),
    Row(
        "pinned deployment with room is the only choice",
        Ask(1, players=(PLAYER_UK,), pinned="tok"),
        [cand("lon"), cand("tok", point=TOKYO)],
        {},
        ("tok",),
        Reason.PINNED,
    ),
    Row(
        "pinned deployment full: unavailable, nothing else offered",
        Ask(1, pinned="tok"),
        [cand("lon"), cand("tok", free=0)],
        {},
        (),
        Reason.PINNED_UNAVAILABLE,
        {Exclusion.FULL: 1},
    ),
    Row(
        "location rule: country any",
        Ask(1, rules=(LocationRule("country", frozenset({"japan"})),)),
        [
            cand("lon", where={"country": frozenset({"united kingdom"})}),
            cand("tok", where={"country": frozenset({"japan"})}),
        ],
        {},
        ("tok",),
        Reason.UNSCORED,
        {Exclusion.LOCATION: 1},
    ),
    Row(
        "location rule: not",
        Ask(1, rules=(LocationRule("city", frozenset({"tokyo"}), "not"),)),
        [
            cand("lon", where={"city": frozenset({"london"})}),
            cand("tok", where={"city": frozenset({"tokyo"})}),
        ],
        {},
        ("lon",),
        Reason.UNSCORED,
        {Exclusion.LOCATION: 1},
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_place(row: Row) -> None:
    result = place(row.ask, row.candidates, row.telemetry, NOW, TTL)
    assert result.order == row.order
    assert result.reason is row.reason
    assert dict(result.excluded) == row.excluded
    assert result.placed == bool(row.order)


def test_limit_keeps_the_best() -> None:
    many = [cand(f"d{i:03d}", free=i % 5 + 1) for i in range(100)]
    result = place(Ask(1), many, {}, NOW, TTL, limit=3)
    assert result.eligible == 100
    # Unscored: fewest free first (free 1 at i % 5 == 0), then request id.
    assert result.order == ("d000", "d005", "d010")


def test_unmeasured_lists_candidates_telemetry_misses() -> None:
    result = place(Ask(1), [cand("a"), cand("b")], {"n": ranks("a")}, NOW, TTL)
    assert result.unmeasured == ("b",)


def test_rtt_estimate_grows_with_distance() -> None:
    assert rtt_ms(LONDON, LONDON) == pytest.approx(4.0)
    # London-Paris ~344 km: 4 + 344 * 0.015 ~ 9.2 ms; London-Tokyo ~9560 km: ~147 ms.
    assert rtt_ms(LONDON, PARIS) == pytest.approx(9.2, abs=0.2)
    assert rtt_ms(LONDON, TOKYO) == pytest.approx(147.4, abs=1.0)


def _dep(**kw: object) -> Deployment:
    base: dict[str, object] = {"request_id": "r1", "status": Status.READY, "sockets": 4, "usage": 1}
    return Deployment.model_validate({**base, **kw})


@pytest.mark.parametrize(
    ("name", "deployment", "blocked", "free"),
    [
        ("ready with room", _dep(), None, 3),  # 4 - max(1, 0) - 0
        ("committed beyond usage counts", _dep(committed=3), None, 1),  # 4 - max(1, 3)
        ("reservations count", _dep(reserved=2), None, 1),  # 4 - 1 - 2
        ("starting", _dep(status=Status.DEPLOYING), Exclusion.NOT_READY, 3),
        ("draining", _dep(draining=True), Exclusion.DRAINING, 3),
        ("unknown usage", _dep(usage=None), Exclusion.USAGE_UNKNOWN, 0),
        ("unknown status", _dep(status=None), Exclusion.NOT_READY, 3),
    ],
)
def test_candidate_of(name: str, deployment: Deployment, blocked: Exclusion | None, free: int) -> None:
    c = candidate_of(deployment)
    assert c.blocked is blocked, name
    assert c.free == free, name


def test_candidate_location_facts() -> None:
    loc = DeploymentLocation(
        city="Tokyo", country="Japan", latitude=35.6, longitude=139.6, tags=("cpu=fast",)
    )
    c = candidate_of(_dep(location=loc, tags=["ranked"]))
    assert c.point == Point(35.6, 139.6)
    assert c.where["city"] == frozenset({"tokyo"})
    assert c.where["location_tags"] == frozenset({"cpu=fast"})
    assert c.tags == frozenset({"ranked"})
