"""Where a replay's deployment-hours went (starting, READY with players, READY and empty within and
past the idle time, stopping) and the re-create count, on hand-checked runs."""

from __future__ import annotations

import pytest

from fleet.replay.engine import Engine
from fleet.replay.run import hours_by_state, run_policy
from fleet.replay.scalers import SCALERS
from fleet.replay.units import plan_of
from tests.unit.test_replay_bound import inputs, players


def test_hours_by_state_by_hand() -> None:
    # sockets 2, minimum 1, idle 30 s, window [0, 3600], no warm-up, 30 s boot.
    # t=0 the minimum's deployment A is deployed: starting [0, 30).
    # One player [100, 300): 1 of 2 sockets < 0.9 x 2, no scale-up; A is never stopped (minimum).
    # A empty [30, 100) = 70 s (30 within the idle time, 40 past it) and [300, 3600) = 3,300 s
    # (30 within, 3,270 past); with players 200 s. 30 + 200 + 70 + 3,300 = 3,600 s.
    replay_inputs = inputs(3600.0, sockets=2, idle_s=30.0, cooldown_s=5.0)
    engine = Engine(
        replay_inputs,
        plan_of(replay_inputs.config),
        players([(100.0, 200.0)], 0.0, 3600.0),
        SCALERS["ours"](),
    )
    engine.run()
    hours = {k: v * 3600 for k, v in hours_by_state(engine).items()}
    assert hours == pytest.approx(
        {
            "starting": 30.0,
            "with_players": 200.0,
            "empty_within_idle": 60.0,
            "empty_past_idle": 3310.0,
            "stopping": 0.0,
        }
    )


@pytest.mark.parametrize("policy", sorted(SCALERS))
def test_hours_by_state_add_up_to_what_the_world_billed(policy: str) -> None:
    rows = [(700.0 + 7 * k, 200.0 + 37 * (k % 11)) for k in range(120)]
    replay_inputs = inputs(3000.0, 4, 600.0, threshold=0.9, hysteresis=0.05, idle_s=30.0, cooldown_s=5.0)
    result = run_policy(replay_inputs, plan_of(replay_inputs.config), players(rows, 600.0, 3000.0), policy)
    hours = result["hours_by_state"]
    assert sum(hours.values()) == pytest.approx(result["deployment_hours"])
    assert all(v >= 0 for v in hours.values())
    assert hours["starting"] > 0 and hours["with_players"] > 0


@pytest.mark.parametrize(("third_arrives", "recreated"), [(200.0, 1), (600.0, 0)])
def test_a_create_soon_after_a_stop_is_a_recreate(third_arrives: float, recreated: int) -> None:
    # sockets 2, threshold 0.9, hysteresis 0, idle and window 30 s, cooldown 5 s.
    # A READY at 30. p1 [100, 1100), p2 [101, 151): 2 >= 0.9 x 2 at 101 -> B, READY at 131.
    # B empty since 131; the window's peak is 2 until 151 + 30 = 181; then 1 < 0.9 x (4 - 2) = 1.8:
    # B stops at 181. p3 at 200: 2 >= 1.8 -> C, 19 s after the stop: re-created. At 600, 419 s after
    # the stop: not.
    rows = [(100.0, 1000.0), (101.0, 50.0), (third_arrives, 1000.0)]
    replay_inputs = inputs(3600.0, sockets=2, threshold=0.9, hysteresis=0.0, idle_s=30.0, cooldown_s=5.0)
    result = run_policy(replay_inputs, plan_of(replay_inputs.config), players(rows, 0.0, 3600.0), "ours")
    assert result["creates"] == 3 and result["stops"] >= 1
    assert result["recreates_within_5min"] == recreated
