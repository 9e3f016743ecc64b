"""The scaling policies a replay compares, all driving the same world with the same placement.

- `Ours`: the production core, `autoscaler.policy.decide`, called as the scaler loop calls it
  (`autoscaler.scaler.Scaler._decide`): the unit's Spec from `autoscaler.view.spec_of`, every live
  deployment observed, waiting players as demand, the window's peak, the policy's memory
  (`after_scale_up`, `after_ready`, `after_error`). Its creates and stops are applied at once.
- `Platform`: the platform's own fleet behaviour -- one deployment per threshold crossing (demand
  going from under to at-or-over `threshold` of capacity), the policy's minimum kept, scale-down
  only by the app version's `empty_ttl` (the world ends deployments empty that long by itself).
- `Agones`: an Agones-style buffer autoscaler that syncs every 30 s: capacity for the used sockets
  plus a buffer (20% of the total by default), clamped to minimum/maximum deployments; excess
  deployments that are empty are stopped at the sync.

When `Ours` is consulted. The production scaler runs a pass within a second of any event and at
least every second. A pass whose decision does not act changes nothing, so the replay only calls
`decide` at the instants where it can act, which follow from the core's contract (design.md §4):
- a scale-up needs demand at the threshold of capacity, or fewer than `minimum` deployments: the
  replay checks that (a float test, looser than the core's exact one) on every change of demand;
- deployments changing state (READY, ERROR, ended) are changes like any other (capacity, the
  room under `maximum`, the ERROR back-off);
- a scale-in needs an idle deployment (empty for `idle_s`), no waiting player, more than `minimum`,
  the cooldown over, a whole window watched, and the window's peak demand below
  `(threshold - hysteresis) x (capacity - one deployment)`: the replay computes when all of these
  will hold if nothing else changes, and wakes the core then (`probe`).
`exhaustive=True` calls `decide` on every change instead; the tests check both give the same run.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from autoscaler import policy as core
from fleet.models import Status
from fleet.replay.engine import T_RECHECK, T_SCALER, Engine
from fleet.replay.inputs import ReplayInputs, parse_buffer
from fleet.replay.units import ENDED, SERVING, Dep, Unit
from fleet.replay.window import FOREVER

EPS = 1e-9
NO_LEVEL = 1 << 62  # no scale-in planned on demand: no crossing to watch


class Ours:
    name = "ours"

    def __init__(self, *, exhaustive: bool = False) -> None:
        self.exhaustive = exhaustive
        self.calls = 0
        self.acted = 0
        self.idle_probes = 0  # probes whose decision did not stop anything
        self.reasons: Counter[str] = Counter()
        self.held: Counter[str] = Counter()
        self.engine: Engine | None = None

    @property
    def e(self) -> Engine:
        assert self.engine is not None
        return self.engine

    def empty_ttl_min(self, inputs: ReplayInputs) -> int | None:
        return None  # the platform does not end deployments by itself: our scaler decides

    def attach(self, engine: Engine) -> None:
        self.engine = engine

    def start(self) -> None:
        for unit in self.e.units:
            self.decide(unit)

    # --- when to decide --------------------------------------------------------------------------
    def changed(self, unit: Unit) -> None:
        window = unit.window
        before = window.current
        demand = unit.used + unit.waiting
        if demand != before:
            window.set(self.engine.now, demand)  # type: ignore[union-attr]
        if self.exhaustive or (
            ((demand > 0 and demand >= unit.up_level) or unit.under_minimum) and self._may_scale_up(unit)
        ):
            self.decide(unit)
        elif unit.replan or (before >= unit.plan_level) is not (demand >= unit.plan_level):
            # Only these can move the instant a scale-in becomes possible: what `_scale_in_at`
            # reads changed (the engine flags it), or demand crossed the level that blocks stops.
            self._plan(unit, decided=False)

    def structural(self, unit: Unit, dep: Dep, old: int, new: int) -> None:
        """A deployment changed state. The core can only act on it through what `changed` and
        `_plan` watch -- capacity, the room under `maximum`, the back-off the policy's memory holds,
        idle deployments -- so this is a change like any other, after the memory is updated."""
        now = self.e.now
        if new == SERVING:
            unit.memory = core.after_ready(unit.memory, dep.ready_at)
        elif new == ENDED and dep.status is Status.ERROR:
            unit.memory = core.after_error(unit.memory, now, "deployment ended in ERROR")
        unit.replan = True
        self.changed(unit)

    def timer(self, payload: Any) -> None:
        unit, token = payload
        if token != unit.probe_token:
            return
        unit.probe_at = None
        before = self.acted
        self.decide(unit)
        if self.acted == before:
            self.idle_probes += 1

    def _may_scale_up(self, unit: Unit) -> bool:
        spec = unit.spec
        if not spec.enabled or unit.live >= spec.maximum:
            return False
        if self.e.now < unit.memory.backoff_until:
            self.e.push(unit.memory.backoff_until, T_RECHECK, unit)
            return False
        if unit.effective < spec.minimum:
            return True
        demand = unit.used + unit.waiting
        return demand > 0 and demand >= spec.threshold * unit.capacity - EPS

    def _level(self, unit: Unit) -> int:
        """The lowest peak demand that keeps every idle deployment: a stop needs the peak under
        (threshold - hysteresis) x (capacity - one deployment) (`core.under_after_removal`)."""
        capacity_left = unit.capacity - unit.spec.sockets if unit.spec.sockets else unit.capacity
        level = unit.levels.get(capacity_left)
        if level is None:
            bound = (core.exact(unit.spec.threshold) - core.exact(unit.spec.hysteresis)) * capacity_left
            level = unit.levels[capacity_left] = max(1, math.ceil(bound)) if bound > 0 else 1
        return level

    def _plan(self, unit: Unit, *, decided: bool) -> None:
        """Wake the core when a scale-in becomes possible, if nothing else happens before."""
        unit.replan = False
        at = self._scale_in_at(unit)
        if at is None or (decided and at <= self.e.now):
            self._cancel(unit)
        elif at <= self.e.now:
            self.decide(unit)
        elif at != unit.probe_at:
            unit.probe_token += 1
            unit.probe_at = at
            self.e.push(at, T_SCALER, (unit, unit.probe_token))

    def _scale_in_at(self, unit: Unit) -> float | None:
        spec = unit.spec
        unit.plan_level = NO_LEVEL
        if not unit.empty_ready or unit.waiting or not spec.enabled:
            return None
        over_maximum = unit.live > spec.maximum
        if unit.effective <= spec.minimum and not over_maximum:
            return None
        at = next(iter(unit.empty_ready.values())) + spec.idle_s
        if over_maximum:
            return at
        if unit.memory.last_scale_up_at is not None:
            at = max(at, unit.memory.last_scale_up_at + spec.cooldown_s)
        at = max(at, unit.window.since + spec.idle_s)
        level = unit.plan_level = self._level(unit)
        below = unit.window.below_from(level, self.e.now, spec.idle_s)
        if below == FOREVER or below is None:
            return None
        return max(at, below)

    def _cancel(self, unit: Unit) -> None:
        if unit.probe_at is not None:
            unit.probe_token += 1
            unit.probe_at = None

    # --- the decision ----------------------------------------------------------------------------
    def decide(self, unit: Unit) -> core.Decision:
        e = self.e
        now = e.now
        spec = unit.spec
        observed = []
        for dep in unit.deps.values():
            obs = dep.obs
            if obs is None:
                obs = dep.obs = observe(dep)
            observed.append(obs)
        decision = core.decide(
            spec,
            observed,
            now=now,
            memory=unit.memory,
            in_flight=0,
            waiting=unit.waiting,
            peak=unit.window.peak(now, spec.idle_s),
        )
        self.calls += 1
        if decision.held is not None:
            self.held[decision.held.value] += 1
        made = e.create(unit, decision.create) if decision.create else 0
        if made:
            unit.memory = core.after_scale_up(unit.memory, now)
        for rid in (*decision.stuck, *decision.stop):
            e.stop(rid)
        if made or decision.stop or decision.stuck:
            self.acted += 1
            self.reasons[decision.reason.value] += 1
            if e.on_decision is not None:
                e.on_decision(
                    {
                        "t": now,
                        "unit": unit.label,
                        "reason": decision.reason.value,
                        "create": made,
                        "stop": len(decision.stop) + len(decision.stuck),
                        "live": unit.live,
                        "used": unit.used,
                        "waiting": unit.waiting,
                        "capacity": unit.capacity,
                    }
                )
        self._plan(unit, decided=True)
        return decision

    def stats(self) -> dict[str, Any]:
        return {
            "decide_calls": self.calls,
            "acting_decisions": self.acted,
            "idle_probes": self.idle_probes,
            "reasons": dict(self.reasons),
            "held": dict(self.held),
        }


def observe(dep: Dep) -> core.Observed:
    """What the store would tell the scaler about a deployment (`autoscaler.view.observed`): each
    player a confirmed one-socket session; usage known; never draining (stops are immediate)."""
    return core.Observed(
        request_id=dep.rid,
        status=dep.status,
        sockets=dep.sockets,
        usage=dep.players,
        sessions=dep.players,
        committed=dep.players,
        reserved=0,
        created_at=dep.created_at,
        ready_at=dep.ready_at,
        last_heard=dep.created_at,
        empty_since=dep.empty_since,
        draining=False,
        stop_requested=dep.stopping,
    )


class Platform:
    """One deployment per threshold crossing; the policy's minimum; scale-down by empty_ttl only."""

    name = "platform"

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self.crossings = 0

    @property
    def e(self) -> Engine:
        assert self.engine is not None
        return self.engine

    def empty_ttl_min(self, inputs: ReplayInputs) -> int | None:
        return inputs.empty_ttl_min

    def attach(self, engine: Engine) -> None:
        self.engine = engine

    def start(self) -> None:
        for unit in self.e.units:
            self._minimum(unit)

    def _over(self, unit: Unit) -> bool:
        demand = unit.used + unit.waiting
        return demand > 0 and demand >= unit.up_level  # threshold x (READY + starting) capacity

    def _minimum(self, unit: Unit) -> None:
        if unit.spec.enabled and unit.effective < unit.spec.minimum:
            self.e.create(unit, unit.spec.minimum - unit.effective)
        unit.flag = self._over(unit)

    def changed(self, unit: Unit) -> None:
        over = self._over(unit)
        if over and not unit.flag and unit.spec.enabled and unit.live < unit.spec.maximum:
            self.crossings += 1
            self.e.create(unit, 1)
            over = self._over(unit)
        unit.flag = over

    def structural(self, unit: Unit, dep: Dep, old: int, new: int) -> None:
        if unit.spec.enabled and unit.effective < unit.spec.minimum:
            self.e.create(unit, unit.spec.minimum - unit.effective)
        self.changed(unit)  # losing capacity can cross the threshold too

    def timer(self, payload: Any) -> None:
        return None

    def stats(self) -> dict[str, Any]:
        return {"threshold_crossings": self.crossings}


class Agones:
    """Agones' buffer policy, in sockets: every sync, capacity = used / (1 - buffer%) (or used +
    buffer), in whole deployments within minimum..maximum; scale-down stops empty READY ones."""

    name = "agones"

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self.syncs = 0

    @property
    def e(self) -> Engine:
        assert self.engine is not None
        return self.engine

    def empty_ttl_min(self, inputs: ReplayInputs) -> int | None:
        return None

    def attach(self, engine: Engine) -> None:
        self.engine = engine
        self.buffer, self.percent = parse_buffer(engine.inputs.agones_buffer)
        self.sync_s = engine.inputs.agones_sync_s

    def start(self) -> None:
        self.timer(None)

    def desired(self, unit: Unit) -> int:
        used = unit.used + unit.waiting  # generous: Agones itself never sees players still waiting
        capacity = math.ceil(used / (1 - self.buffer) - EPS) if self.percent else used + int(self.buffer)
        sockets = unit.spec.sockets or self.e.inputs.sockets
        return min(unit.spec.maximum, max(unit.spec.minimum, math.ceil(capacity / sockets)))

    def timer(self, payload: Any) -> None:
        self.syncs += 1
        for unit in self.e.units:
            if unit.spec.enabled:
                self._sync(unit)
        self.e.push(self.e.now + self.sync_s, T_SCALER, None)

    def _sync(self, unit: Unit) -> None:
        want = self.desired(unit)
        have = unit.effective
        if want > have:
            self.e.create(unit, max(0, min(want, unit.spec.maximum - unit.n_stopping) - have))
        elif want < have:
            for rid in list(unit.empty_ready)[: have - want]:
                self.e.stop(rid)

    def changed(self, unit: Unit) -> None:
        return None

    def structural(self, unit: Unit, dep: Dep, old: int, new: int) -> None:
        return None

    def stats(self) -> dict[str, Any]:
        return {"syncs": self.syncs}


SCALERS = {"ours": Ours, "platform": Platform, "agones": Agones}
