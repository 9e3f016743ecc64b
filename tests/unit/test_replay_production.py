"""The replay runs the production decision code, not a copy: change the core, the replay changes."""

from __future__ import annotations

from typing import Any

import pytest

import allocator.placement
import autoscaler.policy
from fleet.demand import builtin_trace
from fleet.replay.inputs import REGIONS, ReplayInputs, default_config
from fleet.replay.players import Players, generate
from fleet.replay.run import run_policy
from fleet.replay.units import plan_of

REGION_SET = (REGIONS["europe"], REGIONS["north-america"])


@pytest.fixture(scope="module")
def setting() -> tuple[ReplayInputs, Players]:
    # Ten hours of the built-in curve around its launch-event spike, players x2: scale-ups and
    # scale-ins in both regions.
    trace = builtin_trace().around_peak(10).scaled(2)
    replay_inputs = ReplayInputs(trace=trace, config=default_config(REGION_SET), regions=REGION_SET)
    return replay_inputs, generate(replay_inputs)


def ours(setting: tuple[ReplayInputs, Players]) -> dict[str, Any]:
    replay_inputs, players = setting
    return run_policy(replay_inputs, plan_of(replay_inputs.config), players, "ours")


def test_every_decision_comes_from_autoscaler_policy_decide(
    setting: tuple[ReplayInputs, Players], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = autoscaler.policy.decide
    calls: list[autoscaler.policy.Decision] = []

    def counting(*args: Any, **kwargs: Any) -> autoscaler.policy.Decision:
        decision = real(*args, **kwargs)
        calls.append(decision)
        return decision

    monkeypatch.setattr(autoscaler.policy, "decide", counting)
    result = ours(setting)
    assert result["scaler"]["decide_calls"] == len(calls) > 0
    # What the replay did is what the core asked for.
    assert result["creates"] <= sum(d.create for d in calls)
    assert sum(1 for d in calls if d.create or d.stop) == result["scaler"]["acting_decisions"]


def test_a_changed_scale_up_rule_changes_the_replay(
    setting: tuple[ReplayInputs, Players], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = ours(setting)
    real = autoscaler.policy.deployments_to_add

    def one_more(*args: Any) -> int:
        n = real(*args)
        return n + 1 if n else 0

    monkeypatch.setattr(autoscaler.policy, "deployments_to_add", one_more)
    after = ours(setting)
    assert after["creates"] > before["creates"]
    assert after["deployment_hours"] > before["deployment_hours"]


def test_a_core_that_never_scales_in_keeps_every_deployment(
    setting: tuple[ReplayInputs, Players], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = ours(setting)
    assert before["stops"] > 0
    monkeypatch.setattr(autoscaler.policy, "is_idle", lambda *args: False)
    after = ours(setting)
    assert after["stops"] == 0
    assert after["deployment_hours"] > before["deployment_hours"]


def test_a_changed_placement_rule_changes_the_replay(
    setting: tuple[ReplayInputs, Players], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = ours(setting)
    # Spread instead of pack: the emptiest deployment first among equal scores.
    monkeypatch.setattr(allocator.placement, "_pack", lambda c: (-c.free, c.request_id))
    after = ours(setting)
    # Spreading keeps deployments from emptying: fewer of them can be stopped.
    assert after["stops"] < before["stops"]
    assert after["deployment_hours"] > before["deployment_hours"]
