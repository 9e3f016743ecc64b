"""One scaler pass: read the world, decide every policy with the pure core, apply the difference.

The leader's writes (creates asked, stops asked, policy memory, decision records) go through the
store's fenced script with the leader's token: a deposed leader that wakes up late writes nothing
and enqueues nothing. Jobs carry the same token and the worker checks it again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from autoscaler import policy as core
from autoscaler import selectors
from autoscaler.jobs import CREATE_JOB, STOP_JOB
from autoscaler.snapshot import PolicyUnit, Snapshot, read_snapshot
from autoscaler.tags import create_tags
from autoscaler.view import memory_fields, observed, rooms_of, spec_of
from codema.errors import NotFound, PlatformError
from fleet.bootstrap import Services
from fleet.logging import event
from fleet.metrics import (
    SCALER_ACTIONS,
    SCALER_CURRENT,
    SCALER_DECISIONS,
    SCALER_DEGRADED,
    SCALER_DESIRED,
    SCALER_LIMITED,
    SCALER_PASS_SECONDS,
    SCALER_PENDING,
    SCALER_THRESHOLD,
    SCALER_UTILISATION,
)
from fleet.models import Deployment, Status, StatusReport
from fleet.store.fleets import Ops

log = logging.getLogger("autoscaler.scaler")

# Creates go first to policies under their minimum, then to threshold scale-ups, when the
# account-wide caps cannot serve every policy.
PRIORITY = {core.Reason.MINIMUM: 0, core.Reason.STUCK: 0, core.Reason.THRESHOLD: 1}


class StaleLeader(Exception):
    """A fenced write was refused: another scaler holds a newer lease."""


@dataclass
class Planned:
    unit: PolicyUnit
    spec: core.Spec
    decision: core.Decision
    memory_before: core.Memory
    create: int = 0
    limited: core.Limit | None = None
    outcome: list[str] = field(default_factory=list)
    # What the first creates carry for waiting sessions' selectors (autoscaler.selectors).
    tagged: tuple[selectors.Tagged, ...] = ()


class Scaler:
    """The leader's decision maker. Keeps a little memory between passes (what it saw and logged)."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.seen: dict[tuple[str, str], set[str]] = {}
        self.last_logged: dict[tuple[str, str, str, str], tuple[Any, ...]] = {}
        self.exported: set[tuple[str, str]] = set()
        self.backoff_base_s = core.BACKOFF_BASE_S
        self.backoff_cap_s = core.BACKOFF_CAP_S
        # Demand seen per unit over its stabilisation window (the idle time); lost on handover.
        self.windows: dict[tuple[str, str, str, str], core.PeakWindow] = {}

    def _error(self, memory: core.Memory, now: float, detail: str) -> core.Memory:
        return core.after_error(memory, now, detail, self.backoff_base_s, self.backoff_cap_s)

    def forget(self) -> None:
        """Leadership changed: what this process saw before may be out of date."""
        self.seen.clear()
        self.last_logged.clear()
        self.windows.clear()

    @property
    def settings(self) -> Any:
        return self.services.settings

    # --- the pass ------------------------------------------------------------------------------------
    async def run_pass(self, token: int) -> list[Planned]:
        started = time.perf_counter()
        now = self.services.clock()
        snap = await read_snapshot(self.services, now)
        memories = await self._update_memories(snap, token)
        plans = self._decide(snap, memories)
        self._apply_account_caps(plans, snap)
        await self._act(plans, memories, token, now)
        self._export(plans, memories)
        SCALER_PASS_SECONDS.observe(time.perf_counter() - started)
        return plans

    def _decide(self, snap: Snapshot, memories: dict[tuple[str, str], core.Memory]) -> list[Planned]:
        plans = []
        for unit in snap.units:
            spec = spec_of(unit.fleet, unit.policy, unit.facts, self.settings, linked=unit.linked)
            memory = memories.get(unit.owner, core.Memory())
            window = self.windows.setdefault(unit.key, core.PeakWindow())
            tagged = self._selector_plan(unit, spec, snap.now)
            decision = core.decide(
                spec,
                [observed(d) for d in unit.deployments],
                now=snap.now,
                memory=memory,
                in_flight=len(unit.intents),
                waiting=unit.waiting,
                peak=window.peak(snap.now, spec.idle_s),
                tagged=len(tagged),
            )
            window.add(snap.now, decision.counts.used + decision.counts.waiting)
            plans.append(
                Planned(unit, spec, decision, memory, decision.create, decision.limited, tagged=tagged)
            )
        for gone in set(self.windows) - {u.key for u in snap.units}:
            del self.windows[gone]
        return plans

    @staticmethod
    def _selector_plan(unit: PolicyUnit, spec: core.Spec, now: float) -> tuple[selectors.Tagged, ...]:
        if not unit.needs:
            return ()
        rooms = rooms_of(unit.deployments, unit.intent_tags, spec, now)
        return selectors.plan(unit.needs, rooms, spec.sockets).creates

    def _apply_account_caps(self, plans: Sequence[Planned], snap: Snapshot) -> None:
        room = max(0, self.settings.account_max_deployments - snap.live_total - snap.in_flight_total)
        for plan in sorted(plans, key=lambda p: PRIORITY.get(p.decision.reason, 2)):
            if plan.create > room:
                plan.create, plan.limited = room, core.Limit.ACCOUNT_DEPLOYMENTS
            room -= plan.create

    # --- memory: errors, readiness, failed creates ----------------------------------------------------
    async def _update_memories(self, snap: Snapshot, token: int) -> dict[tuple[str, str], core.Memory]:
        store = self.services.store
        memories = dict(snap.memories)
        ops = Ops()
        for failure in snap.failed_creates:
            pair = (failure.fleet, failure.policy)
            if failure.refused:
                memories[pair] = self._error(memories.get(pair, core.Memory()), snap.now, failure.error)
            ops.add("ZREM", store.keys.pending_intents(*pair), failure.intent)
        for pair, ids in snap.policy_ids.items():
            gone = self.seen.get(pair, set()) - ids
            for d in await store.deployments.get_many(sorted(gone), snap.now) if gone else []:
                if d.status is Status.ERROR:
                    memories[pair] = self._error(memories.get(pair, core.Memory()), snap.now, d.error_detail)
            self.seen[pair] = ids
        for unit in snap.units:
            memory = memories.get(unit.owner, core.Memory())
            latest = max(
                (d.ready_at or 0.0 for d in unit.deployments if d.status is Status.READY), default=0.0
            )
            memories[unit.owner] = core.after_ready(memory, latest or None)
        for pair, memory in memories.items():
            if memory != snap.memories.get(pair, core.Memory()):
                store.fleets.policy_state_ops(ops, *pair, memory_fields(memory))
                if memory.error_streak > snap.memories.get(pair, core.Memory()).error_streak:
                    event(
                        log,
                        "policy_degraded",
                        logging.WARNING,
                        fleet=pair[0],
                        policy=pair[1],
                        errors=memory.error_streak,
                        backoff_until=round(memory.backoff_until, 3),
                        last_error=memory.last_error,
                    )
        if not await store.fleets.fenced(token, ops):
            raise StaleLeader("policy memory")
        return memories

    # --- acting ----------------------------------------------------------------------------------
    def _dry_run(self, unit: PolicyUnit) -> bool:
        return bool(self.settings.dry_run or unit.fleet.dry_run or unit.policy.dry_run)

    async def _act(
        self, plans: Sequence[Planned], memories: dict[tuple[str, str], core.Memory], token: int, now: float
    ) -> None:
        for plan in plans:
            if self._dry_run(plan.unit):
                if plan.decision.acts or plan.create:
                    plan.outcome.append("dry_run")
                    SCALER_ACTIONS.labels("decision", "dry_run").inc()
                await self._record(plan, memories, token, now)
                continue
            if plan.create:
                await self._create(plan, memories, token, now)
            for rid in plan.decision.stuck:
                await self._stop_stuck(plan, rid, token, now)
            for rid in plan.decision.stop:
                await self._stop(plan, rid, token, now, stuck=False)
            await self._record(plan, memories, token, now)

    async def _create(
        self, plan: Planned, memories: dict[tuple[str, str], core.Memory], token: int, now: float
    ) -> None:
        store, unit = self.services.store, plan.unit
        intents: list[str] = []
        for _ in range(plan.create):
            intent = uuid.uuid4().hex[:16]
            if not await store.coord.admit_create(now, self.settings.account_max_creates_per_minute, intent):
                plan.limited = core.Limit.ACCOUNT_RATE
                break
            intents.append(intent)
        if not intents:
            plan.outcome.append("limited")
            return
        ops = Ops()
        # The first creates carry what waiting sessions' selectors need; the rest are plain.
        carries = [plan.tagged[i] if i < len(plan.tagged) else None for i in range(len(intents))]
        plain = create_tags(unit.fleet.name, unit.policy.name, unit.app, unit.version)
        for intent, tagged in zip(intents, carries, strict=True):
            tags = list(dict.fromkeys([*plain, *(tagged.tags if tagged else ())]))
            # The intent keeps its tags: while it is in flight it is room for sessions with them.
            doc = {"app": unit.app, "version": unit.version, "token": str(token), "tags": json.dumps(tags)}
            store.fleets.intent_ops(ops, unit.fleet.name, unit.policy.name, intent, doc, now)
        memory = core.after_scale_up(memories.get(unit.owner, core.Memory()), now)
        memories[unit.owner] = memory
        store.fleets.policy_state_ops(ops, *unit.owner, memory_fields(memory))
        if not await store.fleets.fenced(token, ops):
            raise StaleLeader("create")
        payload_base = self._deploy_payload(unit, token)
        for intent, tagged in zip(intents, carries, strict=True):
            payload = {**payload_base, "intent": intent}
            if tagged is not None:
                payload["selector_tags"] = list(tagged.tags)
                payload["env"] = [{"key": k, "value": v} for k, v in tagged.env]
            self.services.jobs.enqueue(CREATE_JOB, payload, job_id=f"create-{intent}")
            SCALER_ACTIONS.labels("create", "enqueued").inc()
        plan.create = len(intents)
        plan.outcome.append(f"create_enqueued={len(intents)}")
        with_tags = sum(1 for tagged in carries if tagged is not None)
        if with_tags:
            plan.outcome.append(f"create_tagged={with_tags}")

    @staticmethod
    def _deploy_payload(unit: PolicyUnit, token: int) -> dict[str, Any]:
        filters = unit.policy.filter_data()
        point = unit.policy.point()
        return {
            "token": token,
            "fleet": unit.fleet.name,
            "policy": unit.policy.name,
            "app": unit.app,
            "version": unit.version,
            "filters": [f.model_dump() for f in filters.filters] if filters else [],
            "location": point.model_dump() if point else None,
        }

    async def _stop_stuck(self, plan: Planned, rid: str, token: int, now: float) -> None:
        """A fresh look first: a lost READY webhook must not get a healthy deployment stopped."""
        store, client = self.services.store, self.services.client
        try:
            status = await client.status(rid)
        except NotFound:
            await store.deployments.apply(
                StatusReport(request_id=rid, status_raw=Status.TERMINATED.wire, source="poll"), now
            )
            plan.outcome.append(f"stuck_gone={rid}")
            return
        except PlatformError:
            plan.outcome.append(f"stuck_unchecked={rid}")
            return
        await store.deployments.apply(status.to_report("poll"), now)
        current = status.parsed_status
        if current is not None and not current.starting:
            plan.outcome.append(f"stuck_recovered={rid}")
            return
        await self._stop(plan, rid, token, now, stuck=True)

    async def _stop(self, plan: Planned, rid: str, token: int, now: float, *, stuck: bool) -> None:
        store = self.services.store
        if not await store.coord.token_is_current(token):
            raise StaleLeader("stop")
        drained = await store.deployments.try_drain(rid, now, stuck=stuck)
        if not drained.ok:
            # A placement won the race, or the data says it is not safe: keep it.
            plan.outcome.append(f"kept={rid}:{drained.reason}")
            SCALER_ACTIONS.labels("stop", f"kept_{drained.reason}").inc()
            return
        await self.enqueue_stop(rid, plan.unit.fleet.name, plan.unit.policy.name, token, now)
        plan.outcome.append(f"stop_enqueued={rid}")

    async def enqueue_stop(self, rid: str, fleet: str, policy: str, token: int, now: float) -> None:
        store = self.services.store
        if not await store.fleets.fenced(token, store.fleets.stop_ops(Ops(), rid, now)):
            raise StaleLeader("stop")
        payload = {"token": token, "request_id": rid, "fleet": fleet, "policy": policy}
        self.services.jobs.enqueue(STOP_JOB, payload, job_id=f"stop-{rid}-{int(now * 1000)}")
        SCALER_ACTIONS.labels("stop", "enqueued").inc()

    # --- records, logs, metrics -----------------------------------------------------------------------
    async def _record(
        self, plan: Planned, memories: dict[tuple[str, str], core.Memory], token: int, now: float
    ) -> None:
        d, unit = plan.decision, plan.unit
        limited = plan.limited.value if plan.limited else ""
        held = d.held.value if d.held else ""
        signature = (d.reason, d.desired, limited, held, d.counts.live, d.counts.pending)
        acted = bool(plan.outcome)
        if not acted and self.last_logged.get(unit.key) == signature:
            return
        self.last_logged[unit.key] = signature
        SCALER_DECISIONS.labels(unit.fleet.name, unit.policy.name, d.reason.value).inc()
        c = d.counts
        action = {"create": plan.create, "stop": list(d.stop), "stuck": list(d.stuck)}
        outcome = ",".join(plan.outcome) or "none"
        memory = memories.get(unit.owner, core.Memory())
        record: dict[str, object] = {
            "at": now,
            "kind": "decision",
            "fleet": unit.fleet.name,
            "policy": unit.policy.name,
            "app": unit.app,
            "version": unit.version,
            "inputs": {
                "live": c.live,
                "serving": c.serving,
                "pending": c.pending,
                "stopping": c.stopping,
                "stuck": c.stuck,
                "unknown": c.unknown,
                "capacity": c.capacity,
                "used": float(c.used),
                "waiting": c.waiting,
                "tagged": c.tagged,
                "utilisation": round(c.utilisation, 4),
                "threshold": plan.spec.threshold,
                "minimum": plan.spec.minimum,
                "maximum": plan.spec.maximum,
                "linked": unit.linked,
                "degraded": memory.degraded,
            },
            "desired": d.desired,
            "reason": d.reason.value,
            "limited": limited or None,
            "held": held or None,
            "action": action,
            "outcome": outcome,
            "dry_run": self._dry_run(unit),
        }
        ops = self.services.store.fleets.decision_ops(Ops(), unit.fleet.name, record)
        if not await self.services.store.fleets.fenced(token, ops):
            raise StaleLeader("decision")
        event(
            log,
            "decision",
            fleet=unit.fleet.name,
            policy=unit.policy.name,
            app=unit.app,
            version=unit.version,
            reason=d.reason.value,
            action=f"create={plan.create} stop={len(d.stop)} stuck={len(d.stuck)}",
            outcome=outcome,
            desired=d.desired,
            live=c.live,
            pending=c.pending,
            used=float(c.used),
            waiting=c.waiting,
            tagged=c.tagged,
            capacity=c.capacity,
            limited=limited or None,
            held=held or None,
        )

    def _export(self, plans: Sequence[Planned], memories: dict[tuple[str, str], core.Memory]) -> None:
        totals: dict[tuple[str, str], list[float]] = {}
        for plan in plans:
            c, d = plan.decision.counts, plan.decision
            row = totals.setdefault(plan.unit.owner, [0, 0, 0, 0, 0.0, 0, plan.spec.threshold])
            row[0] += c.live
            row[1] += d.desired
            row[2] += c.pending
            row[3] = max(row[3], 1 if plan.limited else 0)
            row[4] += float(c.used) + c.waiting
            row[5] += c.capacity
        for (fleet, policy), (live, desired, pending, limited, used, capacity, threshold) in totals.items():
            SCALER_CURRENT.labels(fleet, policy).set(live)
            SCALER_DESIRED.labels(fleet, policy).set(desired)
            SCALER_PENDING.labels(fleet, policy).set(pending)
            SCALER_LIMITED.labels(fleet, policy).set(limited)
            SCALER_UTILISATION.labels(fleet, policy).set(used / capacity if capacity else 0.0)
            SCALER_THRESHOLD.labels(fleet, policy).set(threshold)
            SCALER_DEGRADED.labels(fleet, policy).set(
                1 if memories.get((fleet, policy), core.Memory()).degraded else 0
            )
        for fleet, policy in self.exported - set(totals):
            for gauge in (
                SCALER_CURRENT,
                SCALER_DESIRED,
                SCALER_PENDING,
                SCALER_LIMITED,
                SCALER_UTILISATION,
                SCALER_THRESHOLD,
                SCALER_DEGRADED,
            ):
                with contextlib.suppress(KeyError):
                    gauge.remove(fleet, policy)
        self.exported = set(totals)


def owned_live(deployments: Sequence[Deployment]) -> list[Deployment]:
    return [d for d in deployments if d.fleet and not (d.status is not None and d.status.terminal)]
