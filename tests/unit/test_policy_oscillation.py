"""Stability over time: the pure core and its stabilisation window (`PeakWindow`) driven second by
second, as the scaler loop drives them, with the default tuning (hysteresis 0.05, idle 300 s,
cooldown 60 s) at the seed's default threshold 0.9.

Deployments of 10 sockets; players fill them in order (the allocator packs); a create is READY 30 s
later. Demand oscillates around the threshold for half an hour, then really falls."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from autoscaler.policy import Memory, Observed, PeakWindow, Spec, after_scale_up, decide
from fleet.models import Status

SPEC = Spec(minimum=1, maximum=20, threshold=0.9, sockets=10)
BOOT_S = 30.0


@dataclass
class Dep:
    rid: str
    created_at: float
    usage: int = 0
    empty_since: float | None = None

    def observed(self, now: float) -> Observed:
        ready = now - self.created_at >= BOOT_S
        return Observed(
            request_id=self.rid,
            status=Status.READY if ready else Status.DEPLOYING,
            sockets=10,
            usage=self.usage if ready else None,
            created_at=self.created_at,
            last_heard=now,
            empty_since=self.empty_since if ready else None,
        )


def run(
    demand_at: Callable[[int], int], seconds: int, spec: Spec = SPEC
) -> tuple[list[tuple[int, str]], list[Dep]]:
    """Drive the core once a second; return the actions [(t, "create" | "stop")] and what is left."""
    deps = [Dep(f"d{i:02d}", -3600.0, empty_since=-3600.0) for i in range(5)]
    window, memory, actions, made = PeakWindow(), Memory(), [], 5
    for t in range(-600, seconds):  # ten minutes before the oscillation: a whole window watched
        now = float(t)
        demand = demand_at(t)
        left = demand
        for d in deps:  # pack: in order, READY ones only
            ready = now - d.created_at >= BOOT_S
            d.usage = min(10, left) if ready else 0
            left -= d.usage
            if d.usage == 0 and ready and d.empty_since is None:
                d.empty_since = now
            elif d.usage:
                d.empty_since = None
        decision = decide(
            spec, [d.observed(now) for d in deps], now=now, memory=memory, peak=window.peak(now, spec.idle_s)
        )
        window.add(now, decision.counts.used + decision.counts.waiting)
        for _ in range(decision.create):
            deps.append(Dep(f"d{made:02d}", now))
            made += 1
            actions.append((t, "create"))
        if decision.create:
            memory = after_scale_up(memory, now)
        for rid in decision.stop:
            deps = [d for d in deps if d.rid != rid]
            actions.append((t, "stop"))
    return actions, deps


def oscillating_then_falling(t: int) -> int:
    """40 players for the first ten minutes (under the threshold of 5 deployments, 0.9 x 50 = 45);
    then 45 +- 3, period 60 s, for 30 min; then 20."""
    if t < 0:
        return 40
    if t < 1800:
        return 45 + round(3 * math.sin(2 * math.pi * t / 60))
    return 20


def test_one_up_step_and_no_stop_until_the_load_really_falls() -> None:
    actions, deps = run(oscillating_then_falling, 3600)
    # The first high (45 >= 45, at t=0) adds one: floor((45 / 0.9 - 50) / 10) + 1 = 1; then every
    # high is 48 < 0.9 x 60 = 54. The new deployment stays empty (48 players fill five) and idle from
    # READY on, but a stop needs the window's peak 48 < (0.9 - 0.05) x 50 = 42.5: never while
    # demand oscillates, though its lows (42) are under that line.
    assert [a for a in actions if a[0] < 1800] == [(0, "create")]
    # Then 20 players: a stop needs 20 < 0.85 x the capacity left, so 3 deployments stay (20 < 25.5;
    # 2 would give 17), once the window no longer holds 48: 300 s after the fall.
    after = [a for a in actions if a[0] >= 1800]
    assert [kind for _, kind in after] == ["stop"] * 3
    assert min(t for t, _ in after) >= 1800 + 300
    assert len(deps) == 3


def test_without_the_window_the_same_demand_flaps() -> None:
    """What the window is for: with an idle time of zero (the window is the idle time, so the peak is
    the demand now) the same policy stops at each low (42 < 42.5) and buys it back at the next high."""
    actions, _ = run(
        oscillating_then_falling, 1800, Spec(minimum=1, maximum=20, threshold=0.9, sockets=10, idle_s=0.0)
    )
    kinds = [kind for _, kind in actions]
    assert kinds.count("create") > 3 and kinds.count("stop") > 3
