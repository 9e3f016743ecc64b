"""Run a replay: draw the players once, compute the lower bound, run each policy (in parallel
processes when asked), and gather what each measured into plain, JSON-ready dictionaries."""

from __future__ import annotations

import math
import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from fleet.replay.engine import Engine, Tally
from fleet.replay.inputs import ReplayInputs
from fleet.replay.players import Players, generate, lower_bound
from fleet.replay.scalers import SCALERS, Ours
from fleet.replay.units import FleetPlan

POLICIES = ("ours", "platform", "agones")

# What forked workers inherit (set just before the pool starts): the players and the tasks.
_SHARED: tuple[Players, dict[str, Task]] | None = None

# A run: the inputs and configuration it uses and the policy it runs.
Task = tuple[ReplayInputs, FleetPlan, str]


def quantile(sorted_values: Sequence[float], q: float, zeros: int = 0) -> float:
    """Nearest-rank quantile of `zeros` zeros followed by `sorted_values` (ascending)."""
    n = zeros + len(sorted_values)
    if n == 0:
        return 0.0
    k = max(1, math.ceil(q * n)) - 1
    return 0.0 if k < zeros else float(sorted_values[k - zeros])


def distribution(sorted_values: Sequence[float], zeros: int = 0) -> dict[str, float]:
    n = zeros + len(sorted_values)
    return {
        "count": n,
        "mean": (sum(sorted_values) / n) if n else 0.0,
        "p50": quantile(sorted_values, 0.5, zeros),
        "p90": quantile(sorted_values, 0.9, zeros),
        "p99": quantile(sorted_values, 0.99, zeros),
        "p999": quantile(sorted_values, 0.999, zeros),
        "max": float(sorted_values[-1]) if sorted_values else 0.0,
    }


def run_policy(
    inputs: ReplayInputs,
    plan: FleetPlan,
    players: Players,
    name: str,
    *,
    exhaustive: bool = False,
) -> dict[str, Any]:
    """One policy over the whole replay; the result is plain data (it crosses process boundaries)."""
    scaler = Ours(exhaustive=exhaustive) if name == "ours" else SCALERS[name]()
    decisions: list[dict[str, Any]] = []
    started = time.perf_counter()
    engine = Engine(inputs, plan, players, scaler, exact=exhaustive, on_decision=decisions.append)
    tally = engine.run()
    wall_s = time.perf_counter() - started
    return summarise(name, engine, tally, scaler.stats(), decisions, wall_s)


def summarise(
    name: str,
    engine: Engine,
    tally: Tally,
    scaler_stats: dict[str, Any],
    decisions: list[dict[str, Any]],
    wall_s: float,
) -> dict[str, Any]:
    waits = sorted(tally.waits_s)
    refused = tally.refused_at_once + tally.refused_after_wait
    units = {
        u.label: {
            "deployment_hours": u.live_s / 3600,
            "creates": u.creates,
            "stops": u.stops,
            "recreates_within_5min": u.recreates,
            "over_threshold_h": u.over_s / 3600,
        }
        for u in engine.units
    }
    mapping = engine.unit_of_region
    return {
        "policy": name,
        "deployment_hours": sum(u.live_s for u in engine.units) / 3600,
        "hours_by_state": hours_by_state(engine),
        "creates": tally.creates,
        "stops": tally.stops,
        "errors": tally.errors,
        "limited_creates": tally.limited_creates,
        "recreates_within_5min": tally.recreates,
        "over_threshold_h": sum(u.over_s for u in engine.units) / 3600,
        "players": {
            "arrived": tally.arrived,
            "placed_at_once": tally.seated_now,
            "waited": tally.waited,
            "refused": refused,
            "refused_at_once": tally.refused_at_once,
            "refused_after_wait": tally.refused_after_wait,
            "still_waiting_at_end": tally.still_waiting,
            "dropped": tally.dropped,
        },
        "wait_s": distribution(waits),
        "time_to_session_s": distribution(waits, zeros=tally.seated_now),
        "units": units,
        "scaler": scaler_stats,
        "wall_s": wall_s,
        "samples": tally.samples,
        "unit_labels": [u.label for u in engine.units],
        "region_units": [
            (lambda u: u.index if u is not None else None)(mapping(r))
            for r in range(len(engine.inputs.regions))
        ],
        "decisions": decisions,
    }


def hours_by_state(engine: Engine) -> dict[str, float]:
    """Where the deployment-hours went: starting (boot), READY with players, READY and empty (within
    the policy's idle time, and past it), stopping. They add up to the deployment-hours."""
    units = engine.units
    live = sum(u.live_s for u in units)
    starting = sum(u.starting_s for u in units)
    stopping = sum(u.stopping_s for u in units)
    empty = sum(u.empty_s for u in units)
    past = sum(u.empty_past_idle_s for u in units)
    return {
        "starting": starting / 3600,
        "with_players": (live - starting - stopping - empty) / 3600,
        "empty_within_idle": (empty - past) / 3600,
        "empty_past_idle": past / 3600,
        "stopping": stopping / 3600,
    }


def _run_shared(label: str) -> dict[str, Any]:
    assert _SHARED is not None
    players, tasks = _SHARED
    inputs, plan, name = tasks[label]
    return run_policy(inputs, plan, players, name)


def run_tasks(
    players: Players,
    tasks: dict[str, Task],
    *,
    jobs: int | None = None,
    exhaustive: bool = False,
    meanwhile: Callable[[], None] = lambda: None,
) -> dict[str, dict[str, Any]]:
    """Run every task on the same players: in forked processes (they inherit the players) or here.
    `meanwhile` runs in this process while the others work."""
    global _SHARED
    # One process per run by default, even on fewer cores: the OS shares them out evenly.
    jobs = max(1, min(jobs or len(tasks), len(tasks)))
    if jobs == 1 or exhaustive:
        meanwhile()
        return {
            label: run_policy(inputs, plan, players, name, exhaustive=exhaustive)
            for label, (inputs, plan, name) in tasks.items()
        }
    _SHARED = (players, tasks)
    try:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            futures = {label: pool.submit(_run_shared, label) for label in tasks}
            meanwhile()
            return {label: f.result() for label, f in futures.items()}
    finally:
        _SHARED = None


def replay(
    inputs: ReplayInputs,
    plan: FleetPlan,
    policies: Sequence[str] = POLICIES,
    *,
    jobs: int | None = None,
    exhaustive: bool = False,
) -> dict[str, Any]:
    """Every policy asked for, the lower bound, and the players they all served."""
    started = time.perf_counter()
    players = generate(inputs)
    drawn = time.perf_counter()
    bound: dict[str, Any] = {}
    results = run_tasks(
        players,
        {name: (inputs, plan, name) for name in policies},
        jobs=jobs,
        exhaustive=exhaustive,
        meanwhile=lambda: bound.update(lower_bound(players, inputs)),
    )
    for result in results.values():
        result["vs_lower_bound"] = (
            result["deployment_hours"] / bound["deployment_hours"] if bound["deployment_hours"] else None
        )
    return {
        "players_drawn_s": drawn - started,
        "wall_s": time.perf_counter() - started,
        "lower_bound": bound,
        "policies": results,
        "players": players,
    }
