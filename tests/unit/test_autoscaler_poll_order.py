"""Which deployments the scaler asks the platform about first, within its status-poll budget."""

from __future__ import annotations

from typing import Any, cast

from autoscaler.reconcile import Reconciler
from fleet.models import Deployment, Status

NOW = 10_000.0


def dep(rid: str, **kw: Any) -> Deployment:
    base: dict[str, Any] = {
        "request_id": rid,
        "app": "a",
        "version": "v",
        "fleet": "f",
        "policy": "p",
        "status": Status.READY,
        "sockets": 4,
        "usage": 1,
        "last_heard": NOW - 1,
    }
    return Deployment(**{**base, **kw})


def order(*deps: Deployment) -> list[str]:
    r = Reconciler(cast(Any, None), cast(Any, None))
    return r._poll_order(deps, NOW, stale_s=35.0)


def test_fresh_ready_deployments_are_not_polled() -> None:
    assert order(dep("a"), dep("b")) == []


def test_a_released_session_makes_usage_worth_asking_for() -> None:
    released = dep("r", released_at=NOW - 0.5, last_heard=NOW - 2)  # a player left after the last report
    answered = dep("q", released_at=NOW - 5, last_heard=NOW - 2)  # the platform answered since
    stale = dep("s", last_heard=NOW - 60)
    assert order(stale, answered, released) == ["r", "s"]
