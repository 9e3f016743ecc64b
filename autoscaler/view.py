"""Translations between the store's records and the pure core's inputs (no I/O here either)."""

from __future__ import annotations

from collections.abc import Mapping

from autoscaler.policy import Memory, Observed, Spec
from fleet.models import Deployment, Fleet, Policy
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
