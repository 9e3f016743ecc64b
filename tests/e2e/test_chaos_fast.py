"""The fast subset of the chaos run (issue 9) for `make test`: one seed of the scaler leader killed,
Redis restarted without its data, and lost, duplicated and reordered webhooks, each on the real
processes (two web, two scaler, two worker) under demand, checked against the simulator's ground
truth (tests/e2e/chaos/invariants.py). `make chaos` runs every fault with three seeds."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.chaos.harness import ChaosStack
from tests.e2e.chaos.scenarios import SCENARIOS, run_scenario

pytestmark = pytest.mark.e2e

SEED = 7
FAST = ("leader_kill", "redis_restart_empty", "webhook_chaos")


@pytest.fixture(scope="module")
def chaos() -> Iterator[ChaosStack]:
    stack = ChaosStack(seed=SEED).start()
    try:
        stack.wait_ready()
        yield stack
    finally:
        stack.stop()


@pytest.mark.parametrize("name", FAST)
def test_fault_keeps_the_invariants(chaos: ChaosStack, name: str) -> None:
    index, scenario = next((i, s) for i, s in enumerate(SCENARIOS) if s.name == name)
    result = run_scenario(chaos, scenario, SEED, index)
    assert result["passed"], (result["violations"], result["notes"], chaos.group.all_logs(tail=3000))
    # the run did something: players were placed and linked on the platform
    assert result["requests"]["answers"].get("200", 0) > 5, result["requests"]
    if name == "leader_kill":
        assert result["notes"]["handover_s"] <= 4.0, result["notes"]
    if name == "redis_restart_empty":
        assert result["notes"]["rebuilt_after_s"] < 30, result["notes"]
