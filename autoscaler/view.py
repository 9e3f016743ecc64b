"""Translations between the store's records and the pure core's inputs (no I/O here either)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from autoscaler.policy import Memory, Observed, Spec
from autoscaler.selectors import UNKNOWN_ROOM, Room
from fleet.models import Deployment, Fleet, Policy, Status
from fleet.settings import Settings
from fleet.store import AppVersionFacts

STALE_RECONCILES = 3  # data older than this many reconcile intervals is stale (no scale-in on it)


def observed(d: Deployment) -> Observed:
    return Observed(
        request_id=d.request_id,
        status=d.status,
        unknown_status=d.status is None and bool(d.status_raw),
        sockets=d.sockets,
        usage=d.usage,
        sessions=d.sessions,
        committed=d.committed,
        reserved=d.reserved,
        created_at=d.created_at,
        ready_at=d.ready_at,
        last_heard=d.last_heard,
        empty_since=d.empty_since,
        draining=d.draining,
        stop_requested=d.stop_requested_at is not None,
    )


def rooms_of(
    deployments: Iterable[Deployment], intent_tags: Sequence[frozenset[str]], spec: Spec, now: float
) -> list[Room]:
    """Where a unit's waiting sessions could still go: READY deployments' free sockets, and all the
    sockets of deployments starting (not stuck) and of creates in flight, each with its tags.
    Deployments on their way out, stuck or of an unknown status take nobody."""
    rooms: list[Room] = []
    for d in deployments:
        if d.draining or d.stop_requested_at is not None:
            continue
        if d.status is Status.READY:
            rooms.append(Room(frozenset(d.tags), d.free_sockets))
            continue
        starting = (d.status is None and not d.status_raw) or (d.status is not None and d.status.starting)
        if starting and now - d.created_at <= spec.deploy_timeout_s:
            rooms.append(Room(frozenset(d.tags), d.sockets or spec.sockets or UNKNOWN_ROOM))
    rooms.extend(Room(tags, spec.sockets or UNKNOWN_ROOM) for tags in intent_tags)
    return rooms


def idle_s(policy: Policy, facts: AppVersionFacts | None, settings: Settings) -> float:
    """The policy's idle_s, else the app version's empty_ttl (minutes), else the default."""
    if policy.idle_s is not None:
        return policy.idle_s
    if facts is not None and facts.empty_ttl_min:
        return facts.empty_ttl_min * 60.0
    return settings.default_idle_s


def stale_after_s(settings: Settings) -> float:
    return STALE_RECONCILES * settings.reconcile_interval_s + 5.0


def spec_of(
    fleet: Fleet, policy: Policy, facts: AppVersionFacts | None, settings: Settings, *, linked: bool = True
) -> Spec:
    """A linked version gets the policy's range; a version no longer linked keeps what it has
    (minimum 0, no creates) and only loses idle deployments, as unlinking does on the platform."""
    return Spec(
        minimum=policy.minimum if linked else 0,
        maximum=policy.maximum if linked else 0,
        threshold=policy.threshold,
        hysteresis=policy.hysteresis,
        idle_s=idle_s(policy, facts, settings),
        cooldown_s=policy.cooldown_s,
        deploy_timeout_s=settings.deploy_timeout_s,
        stale_after_s=stale_after_s(settings),
        sockets=facts.sockets if facts is not None else None,
        enabled=fleet.enabled and policy.enabled,
    )


def memory_of(raw: Mapping[str, str]) -> Memory:
    def num(key: str) -> float:
        try:
            return float(raw.get(key) or 0.0)
        except ValueError:
            return 0.0

    last_up = raw.get("last_scale_up_at")
    return Memory(
        last_scale_up_at=float(last_up) if last_up else None,
        error_streak=int(num("error_streak")),
        last_error=raw.get("last_error", ""),
        last_error_at=num("last_error_at"),
        backoff_until=num("backoff_until"),
    )


def memory_fields(m: Memory) -> dict[str, str]:
    return {
        "last_scale_up_at": repr(m.last_scale_up_at) if m.last_scale_up_at is not None else "",
        "error_streak": str(m.error_streak),
        "last_error": m.last_error,
        "last_error_at": repr(m.last_error_at),
        "backoff_until": repr(m.backoff_until),
        "degraded": "1" if m.degraded else "0",
    }
