"""Reads the world the scaler decides on: every fleet policy, per linked app version, with its live
deployments, creates in flight, waiting demand, facts and memory. One read, then pure decisions."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from autoscaler.demand import Target, Unit, Waiting, assign_each, centre
from autoscaler.policy import Memory
from autoscaler.selectors import Need, need_of
from autoscaler.tags import create_tags
from autoscaler.view import memory_of
from fleet.bootstrap import Services
from fleet.models import AppVersionRef, Deployment, Fleet, Policy, SessionState, session_size
from fleet.store import AppVersionFacts

WAITING_READ_LIMIT = 5000


@dataclass
class PolicyUnit:
    """One policy x one app version: the unit the core decides on."""

    fleet: Fleet
    policy: Policy
    app: str
    version: str
    linked: bool
    facts: AppVersionFacts | None = None
    deployments: list[Deployment] = field(default_factory=list)
    intents: list[str] = field(default_factory=list)  # creates in flight for this version
    intent_tags: list[frozenset[str]] = field(default_factory=list)  # the tags each one carries
    waiting: int = 0
    needs: list[Need] = field(default_factory=list)  # waiting sessions with selectors, oldest first

    @property
    def key(self) -> Unit:
        return self.fleet.name, self.policy.name, self.app, self.version

    @property
    def owner(self) -> tuple[str, str]:
        return self.fleet.name, self.policy.name


@dataclass(frozen=True)
class FailedCreate:
    """A create that will not happen: refused by the platform (an error: the policy backs off), or
    never finished (lost with a worker or a stale leader: not the platform's fault)."""

    fleet: str
    policy: str
    intent: str
    error: str
    at: float
    refused: bool = True


@dataclass
class Snapshot:
    now: float
    units: list[PolicyUnit]
    memories: dict[tuple[str, str], Memory]
    policy_ids: dict[tuple[str, str], set[str]]  # live request ids per policy, for ERROR detection
    failed_creates: list[FailedCreate]
    live_total: int  # account-wide live deployments we know
    in_flight_total: int  # account-wide creates in flight


def _group(
    fleet: Fleet, policy: Policy, links: Sequence[AppVersionRef], deployments: Sequence[Deployment]
) -> list[PolicyUnit]:
    units = {(ln.app, ln.version): PolicyUnit(fleet, policy, ln.app, ln.version, linked=True) for ln in links}
    first = next(iter(units.values()), None)
    for d in deployments:
        if d.status is not None and d.status.terminal:
            continue
        if (not d.app or not d.version) and first is not None:
            # Adopted before its status told us the version: count it (safely) under the first link.
            first.deployments.append(d)
            continue
        unit = units.get((d.app, d.version))
        if unit is None:
            unit = units[(d.app, d.version)] = PolicyUnit(fleet, policy, d.app, d.version, linked=False)
        unit.deployments.append(d)
    return list(units.values())


async def read_snapshot(services: Services, now: float) -> Snapshot:
    """A handful of round trips whatever the size: every policy's members, then every deployment,
    every creates-in-flight record, memory and facts, each in one pipeline."""
    store = services.store
    catalogue = await store.fleets.all_policies()
    pairs = [(f.name, p.name) for f, policies, _ in catalogue for p in policies]
    states = await store.fleets.policy_states(pairs)
    pendings = await store.fleets.pending_intents(pairs)
    members = await store.fleets.policy_members(pairs)
    everyone = sorted(set().union(*members)) if members else []
    deployments = {d.request_id: d for d in await store.deployments.get_many(everyone, now)}
    docs = await store.fleets.intent_docs([x for row in pendings for x, _ in row])
    doc_of = dict(zip((x for row in pendings for x, _ in row), docs, strict=True))
    units: list[PolicyUnit] = []
    policy_ids: dict[tuple[str, str], set[str]] = {}
    failed: list[FailedCreate] = []
    in_flight_total = 0
    i = 0
    for fleet, policies, links in catalogue:
        for policy in policies:
            live = [
                d
                for rid in sorted(members[i])
                if (d := deployments.get(rid)) is not None
                and not (d.status is not None and d.status.terminal)
            ]
            policy_ids[(fleet.name, policy.name)] = {d.request_id for d in live}
            grouped = _group(fleet, policy, links, live)
            for intent, asked_at in pendings[i]:
                doc = doc_of[intent]
                if doc.get("outcome") == "rejected":
                    failed.append(
                        FailedCreate(fleet.name, policy.name, intent, doc.get("error", ""), asked_at)
                    )
                    continue
                if now - asked_at > services.settings.deploy_timeout_s:
                    # The job never finished (worker down, platform unreachable): stop counting it.
                    # A deployment it made after all carries the intent tag and is adopted.
                    failed.append(
                        FailedCreate(
                            fleet.name, policy.name, intent, "create expired", asked_at, refused=False
                        )
                    )
                    continue
                unit = next(
                    (u for u in grouped if (u.app, u.version) == (doc.get("app"), doc.get("version"))), None
                )
                if unit is not None:
                    unit.intents.append(intent)
                    plain = frozenset(create_tags(fleet.name, policy.name, unit.app, unit.version))
                    unit.intent_tags.append(intent_tags(doc) or plain)
                    in_flight_total += 1
            units.extend(grouped)
            i += 1
    await _attach_facts(services, units)
    await _attach_waiting(services, units, now)
    return Snapshot(
        now=now,
        units=units,
        memories={pair: memory_of(raw) for pair, raw in zip(pairs, states, strict=True)},
        policy_ids=policy_ids,
        failed_creates=failed,
        live_total=await store.fleets.live_count(),
        in_flight_total=in_flight_total,
    )


def intent_tags(doc: Mapping[str, str]) -> frozenset[str]:
    """The tags a create in flight asked for (its intent record keeps them as a JSON list)."""
    try:
        tags = json.loads(doc.get("tags") or "[]")
    except ValueError:
        return frozenset()
    return frozenset(str(t) for t in tags) if isinstance(tags, list) else frozenset()


async def _attach_facts(services: Services, units: Sequence[PolicyUnit]) -> None:
    cache: dict[tuple[str, str], AppVersionFacts | None] = {}
    for u in units:
        key = (u.app, u.version)
        if key not in cache:
            cache[key] = await services.store.fleets.get_app_version(u.app, u.version)
        u.facts = cache[key]


def targets_of(units: Sequence[PolicyUnit]) -> list[Target]:
    """Units that can take waiting demand: linked versions of enabled policies of enabled fleets."""
    out = []
    for u in units:
        if not (u.linked and u.fleet.enabled and u.policy.enabled):
            continue
        point = u.policy.point()
        if point is not None:
            where: tuple[float, float] | None = (point.latitude, point.longitude)
        else:
            where = centre(
                (d.location.latitude, d.location.longitude)
                for d in u.deployments
                if d.location is not None
                and d.location.latitude is not None
                and d.location.longitude is not None
            )
        filters = u.policy.filter_data()
        out.append(Target(u.key, tuple(filters.filters) if filters else (), where))
    return out


async def _attach_waiting(services: Services, units: Sequence[PolicyUnit], now: float) -> None:
    """Sessions waiting for capacity are demand near their players (see autoscaler.demand)."""
    store = services.store
    waiting = await store.sessions.waiting(limit=WAITING_READ_LIMIT)
    ids = [sid for sid, deadline in waiting if deadline > now]
    if not ids:
        return
    records = await store.sessions.get_many(ids)
    waiting_now = []
    for r in records:
        if r.state is not SessionState.WAITING:
            continue
        size = max(r.size or session_size(r.kind, len(r.ips)), 1)
        need = need_of(size, r.selectors) if r.selectors else None
        waiting_now.append(Waiting(r.app, r.version, size, r.origin, need))
    assigned = assign_each(waiting_now, targets_of(units))
    for u in units:
        mine = assigned.get(u.key, [])
        u.waiting = sum(w.sockets for w in mine)
        u.needs = [w.need for w in mine if w.need is not None]
