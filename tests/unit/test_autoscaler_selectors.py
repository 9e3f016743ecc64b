"""Which deployments waiting sessions with selectors need (autoscaler.selectors), table-driven: each
row is the waiting sessions (oldest first) / the unit's live and pending deployments / what to
create, with the arithmetic next to the expected value."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from autoscaler.demand import Target, Waiting, assign, assign_each
from autoscaler.policy import Spec
from autoscaler.selectors import UNKNOWN_ROOM, Need, Room, SelectorPlan, Tagged, need_of, plan
from autoscaler.view import rooms_of
from fleet.models import Deployment, Status

RANKED = frozenset({"ranked"})


def need(sockets: int, *tags: str, tag_only: tuple[str, ...] = (), **env: str) -> Need:
    return Need(sockets, frozenset(tags), frozenset(tag_only), tuple(sorted(env.items())))


def room(free: int, *tags: str) -> Room:
    return Room(frozenset(tags), free)


@dataclass(frozen=True)
class Row:
    name: str
    needs: tuple[Need, ...]
    rooms: tuple[Room, ...]
    expect: tuple[Tagged, ...]
    sockets: int | None = 4
    too_large: int = 0


ROWS = [
    Row("nothing waits", (), (room(0),), ()),
    Row(
        "no filtering tag: nothing here (the threshold rule counts it)",
        (need(1), need(2, tag_only=("casual",), MAP="2")),
        (room(0, "f", "eu"),),
        (),
    ),
    Row(
        "a tag no deployment carries: one deployment with the tag and the env",
        (need(1, "ranked", MAP="1"),),
        (room(3, "f", "eu"),),
        (Tagged(("ranked",), (("MAP", "1"),)),),
    ),
    Row(
        "a READY deployment carrying the tag with room: nothing to create",
        (need(2, "ranked"),),
        (room(0, "f"), room(2, "f", "ranked")),
        (),
    ),
    Row(
        "carrying the tag but full: a new one",
        (need(2, "ranked"),),
        (room(1, "f", "ranked"),),  # 2 > 1 free
        (Tagged(("ranked",)),),
    ),
    Row(
        "a pending create carrying the tag is room: nothing more",
        (need(1, "ranked"), need(1, "ranked")),
        (room(4, "f", "policy:eu", "ranked"),),
        (),
    ),
    Row(
        "sessions share a planned deployment while it has room",
        tuple(need(1, "ranked") for _ in range(5)),
        (),
        # 5 sessions of 1 on deployments of 4: ceil(5 / 4) = 2
        (Tagged(("ranked",)), Tagged(("ranked",))),
    ),
    Row(
        "all the session's tags, not any: a deployment with one of them does not do",
        (need(1, "ranked", "eu-only"),),
        (room(4, "ranked"),),
        (Tagged(("eu-only", "ranked")),),
    ),
    Row(
        "a later session with fewer tags joins the planned deployment",
        (need(1, "ranked", "pro"), need(1, "ranked")),
        (),
        (Tagged(("pro", "ranked")),),
    ),
    Row(
        "tag_only tags are applied to the deployment created for the session, never required",
        (need(1, "ranked", tag_only=("season-3",)),),
        (),
        (Tagged(("ranked", "season-3")),),
    ),
    Row(
        "different env values of one key: separate deployments",
        (need(1, "ranked", MAP="1"), need(1, "ranked", MAP="2"), need(1, "ranked", MAP="1")),
        (),
        (Tagged(("ranked",), (("MAP", "1"),)), Tagged(("ranked",), (("MAP", "2"),))),
    ),
    Row(
        "env of other keys merge",
        (need(1, "ranked", MAP="1"), need(1, "ranked", MODE="duo")),
        (),
        (Tagged(("ranked",), (("MAP", "1"), ("MODE", "duo"))),),
    ),
    Row(
        "a session bigger than a whole deployment: no create can help it",
        (need(5, "ranked"),),
        (),
        (),
        too_large=1,
    ),
    Row(
        "capacity of a new deployment unknown: one, and look again once it reports",
        (need(3, "ranked"), need(3, "ranked")),
        (),
        (Tagged(("ranked",)),),
        sockets=None,
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_plan(row: Row) -> None:
    assert plan(row.needs, row.rooms, row.sockets) == SelectorPlan(row.expect, row.too_large)


@pytest.mark.parametrize(
    ("selectors", "expected"),
    [
        ([], need(2)),
        ([{"tag": "ranked", "env": {"key": "MAP", "value": "1"}}], need(2, "ranked", MAP="1")),
        ([{"tag": "casual", "tag_only": True}], need(2, tag_only=("casual",))),
        # A tag both filtering and tag_only filters; the first value of a key wins.
        (
            [
                {"tag": "x", "env": {"key": "K", "value": "a"}},
                {"tag": "x", "tag_only": True, "env": {"key": "K", "value": "b"}},
            ],
            need(2, "x", K="a"),
        ),
        ([{"tag": "", "env": {"key": "", "value": "v"}}], need(2)),  # nothing usable
    ],
)
def test_need_of_session_selectors(selectors: list[dict[str, Any]], expected: Need) -> None:
    assert need_of(2, selectors) == expected


def test_each_waiting_session_goes_to_one_unit_with_its_selectors() -> None:
    eu = Target(("f", "eu", "game", "v1"), (), (50.1, 8.7))
    ranked = Waiting("game", "v1", 1, {"latitude": 48.9, "longitude": 2.3}, need(1, "ranked"))
    plain = Waiting("game", "v1", 2, {"latitude": 48.9, "longitude": 2.3})
    other = Waiting("other", "v1", 3, {})
    assert assign_each([ranked, plain, other], [eu]) == {eu.unit: [ranked, plain]}
    assert assign([ranked, plain, other], [eu]) == {eu.unit: 3}


NOW = 10_000.0
SPEC = Spec(minimum=1, maximum=5, threshold=0.8, sockets=4, deploy_timeout_s=300)


def dep(rid: str, status: Status | None, **kw: Any) -> Deployment:
    base: dict[str, Any] = {"request_id": rid, "status": status, "sockets": 4, "created_at": NOW - 10}
    return Deployment.model_validate({**base, **kw})


def test_rooms_of_a_unit() -> None:
    deployments = [
        dep("ready", Status.READY, usage=1, tags=["ranked"], status_raw="Status.READY"),  # 3 free
        dep("starting", Status.DEPLOYING, tags=["a"], status_raw="Status.DEPLOYING"),  # all 4 to come
        dep("unknown-sockets", Status.SEEKING, sockets=None, tags=["b"]),
        dep("stuck", Status.DEPLOYING, created_at=NOW - 600),  # past the deploy timeout
        dep("draining", Status.READY, usage=0, draining=True),
        dep("stopping", Status.READY, usage=0, stop_requested_at=NOW - 1),
        dep("odd", None, status_raw="Status.SOMETHING"),  # an unknown status is no room
    ]
    rooms = rooms_of(deployments, [frozenset({"ranked", "f"})], SPEC, NOW)
    assert rooms == [
        room(3, "ranked"),
        room(4, "a"),
        room(4, "b"),  # the app version's sockets
        room(4, "ranked", "f"),  # a create in flight: a whole deployment to come
    ]
    unknown = rooms_of([], [frozenset()], Spec(minimum=1, maximum=1, threshold=0.8), NOW)
    assert unknown == [room(UNKNOWN_ROOM)]
