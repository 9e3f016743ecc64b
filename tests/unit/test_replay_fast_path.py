"""The replay's shortcuts change nothing: consulting the core only when it can act, reading
`place`'s preference once, and seating players without session records."""

from __future__ import annotations

import random
from typing import Any

import pytest

from codema.sim.records import DeploySpec, LocationFilter, Status
from codema.sim.world import World, WorldConfig
from fleet.demand import builtin_trace
from fleet.replay.engine import Engine
from fleet.replay.inputs import REGIONS, ReplayInputs, default_config
from fleet.replay.players import generate
from fleet.replay.scalers import Ours
from fleet.replay.units import plan_of
from fleet.replay.world import ReplayWorld, SessionSeats

REGION_SET = (REGIONS["europe"], REGIONS["north-america"], REGIONS["asia"])

TUNINGS = {
    "defaults": {},
    # Tight: scale-ins whenever the window allows, so the scale-in wake-ups are exercised hard.
    "tight": {"threshold": 0.95, "hysteresis": 0.05, "idle_s": 30.0, "cooldown_s": 10.0},
    # Small maximum: scale-ups limited, players waiting and refused.
    "capped": {"maximum": 3, "threshold": 0.7},
}


def run(tuning: dict[str, Any], exhaustive: bool) -> tuple[list[dict[str, Any]], Engine]:
    document = default_config(REGION_SET)
    for policy in document["fleets"][0]["policies"]:
        policy.update(tuning)
    trace = builtin_trace().around_peak(6).scaled(1.5)
    replay_inputs = ReplayInputs(trace=trace, config=document, regions=REGION_SET)
    decisions: list[dict[str, Any]] = []
    engine = Engine(
        replay_inputs,
        plan_of(document),
        generate(replay_inputs),
        Ours(exhaustive=exhaustive),
        exact=exhaustive,
        on_decision=decisions.append,
    )
    engine.run()
    return decisions, engine


@pytest.mark.parametrize("tuning", sorted(TUNINGS))
def test_fast_path_equals_deciding_and_ranking_everything_every_time(tuning: str) -> None:
    fast, fast_engine = run(TUNINGS[tuning], exhaustive=False)
    slow, slow_engine = run(TUNINGS[tuning], exhaustive=True)
    assert fast  # something was decided
    assert fast == slow
    assert fast_engine.tally.waits_s == slow_engine.tally.waits_s
    assert [u.live_s for u in fast_engine.units] == [u.live_s for u in slow_engine.units]
    assert fast_engine.state == slow_engine.state
    # The shortcut consulted the core far less often.
    assert fast_engine.scaler.stats()["decide_calls"] < slow_engine.scaler.stats()["decide_calls"]
    if tuning == "capped":
        assert (
            fast_engine.tally.waits_s
            or fast_engine.tally.refused_at_once
            or fast_engine.tally.refused_after_wait
        )


def world(seed: int) -> ReplayWorld:
    clock = [0.0]
    w = ReplayWorld(lambda: clock[0], random.Random(seed), WorldConfig(boot_s=30.0))
    w.clock_cell = clock  # type: ignore[attr-defined]
    w.create_app("game")
    w.create_version(
        "game",
        {
            "name": "v1",
            "docker_repository": "r",
            "docker_image": "i",
            "docker_tag": "1",
            "req_cpu": 256,
            "req_memory": 256,
            "session_config": {"kind": "Seat", "sockets": 4, "empty_ttl": 2},
        },
    )
    return w


def test_fast_seats_account_sockets_like_one_player_sessions() -> None:
    """The same joins and leaves, as fast seats and as real one-player Seat sessions, leave every
    deployment in the same state at every step, including the empty_ttl endings."""
    fast, slow = world(7), world(7)
    spec = DeploySpec("game", "v1", filters=(LocationFilter("continent", ("Europe",)),))
    ids = [fast.deploy(spec).request_id for _ in range(3)]
    assert [slow.deploy(spec).request_id for _ in range(3)] == ids  # same seed, same deployments
    sessions = SessionSeats(slow, "game", "v1")
    rng = random.Random(3)
    seated: dict[int, str] = {}
    t = 31.0
    for step in range(400):
        t += rng.choice((1.0, 5.0, 30.0))
        for w in (fast, slow):
            w.clock_cell[0] = t  # type: ignore[attr-defined]
            w.advance()
        ready = [
            rid for rid in ids if fast.deployments[rid].accepts_sessions() and fast.deployments[rid].free
        ]
        if ready and (not seated or rng.random() < 0.55):
            rid = rng.choice(ready)
            fast.seat(step, rid)
            sessions.take(step, rid)
            seated[step] = rid
        elif seated:
            who = rng.choice(sorted(seated))
            rid = seated.pop(who)
            fast.unseat(who, rid)
            sessions.release(who, rid)
        for rid in ids:
            a, b = fast.deployments[rid], slow.deployments[rid]
            assert (a.status, a.used, a.empty_since, a.end_reason) == (
                b.status,
                b.used,
                b.empty_since,
                b.end_reason,
            )
        seated = {who: rid for who, rid in seated.items() if fast.deployments[rid].status is Status.READY}
    # The empty_ttl (2 "minutes") ended some of them along the way, the same way in both.
    assert any(fast.deployments[rid].end_reason == "empty_ttl" for rid in ids)


def test_replay_world_places_deployments_as_the_world_does() -> None:
    clock = [0.0]
    filters_sets = [
        (LocationFilter("continent", ("Europe",)),),
        (LocationFilter("continent", ("North America", "Asia")),),
        (LocationFilter("country", ("Japan",), "not"), LocationFilter("continent", ("Asia",))),
        (),
    ]
    plain = World(lambda: clock[0], random.Random(11), WorldConfig())
    cached = ReplayWorld(lambda: clock[0], random.Random(11), WorldConfig())
    for w in (plain, cached):
        w.create_app("game")
        w.create_version("game", {"name": "v1", "session_config": {"kind": "Seat", "sockets": 4}})
    for k in range(60):
        spec = DeploySpec("game", "v1", filters=filters_sets[k % len(filters_sets)])
        a, b = plain.deploy(spec), cached.deploy(spec)
        assert (a.request_id, a.location) == (b.request_id, b.location)
