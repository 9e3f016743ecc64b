"""Fault settings of the simulator and the pure per-request decision they imply.

Faults are set at start by `fleet sim` flags and changed at run time through `POST /_sim/faults`
(same field names as JSON). Per-endpoint maps use the endpoint names in `ENDPOINTS` plus `*` for
every endpoint; the CLI form is `deploy=0.2,status=0.1`.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

# Every platform endpoint the simulator serves, by the name used in faults and in GET /_sim/calls.
ENDPOINTS = (
    "deploy", "status", "stop", "deployments", "bulk_stop", "self_stop", "context", "deployment_update",
    "session_create", "session_get", "session_delete", "session_users", "sessions", "sessions_bulk_stop",
    "telemetry_create", "telemetry_get", "locations", "beacons", "ip", "ip_lookup", "ips_lookup",
    "app_create", "app_get", "app_update", "app_delete", "apps",
    "version_create", "version_get", "version_update", "version_delete", "versions",
)  # fmt: skip
RATE_MAPS = ("error_rate", "hold_rate")
PROBABILITIES = ("fail_deploys", "stuck_deploys", "webhook_loss", "webhook_dup", "webhook_reorder")


class FaultError(ValueError):
    """A fault setting is malformed; the message names the field."""


@dataclass(frozen=True)
class Faults:
    latency_ms: float = 0.0  # added to every platform response
    error_rate: dict[str, float] = field(default_factory=dict)  # endpoint -> P(503 before acting)
    rate_limit: dict[str, float] = field(default_factory=dict)  # endpoint -> requests/s, then 429
    hold_rate: dict[str, float] = field(default_factory=dict)  # endpoint -> P(answer held after acting)
    hold_s: float = 30.0  # how long a held answer waits (past any sane client timeout)
    fail_deploys: float = 0.0  # fraction of new deployments that end in ERROR instead of READY
    stuck_deploys: float = 0.0  # fraction that stay in DEPLOYING
    webhook_loss: float = 0.0  # P(a webhook is never sent)
    webhook_dup: float = 0.0  # P(a webhook is sent twice)
    webhook_reorder: float = 0.0  # P(a webhook is held back by reorder_window_s, so later ones overtake it)
    reorder_window_s: float = 1.0
    webhook_delay_s: float = 0.0  # added before every webhook
    outages: tuple[str, ...] = ()  # cities with an outage (see World.set_faults)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["outages"] = list(self.outages)
        return data

    def updated(self, changes: Mapping[str, Any]) -> Faults:
        """A copy with `changes` applied (JSON values or CLI strings); FaultError names a bad field."""
        known = {f.name for f in fields(self)}
        values: dict[str, Any] = {}
        for name, raw in changes.items():
            if name not in known:
                raise FaultError(f"unknown fault {name!r}; known: {', '.join(sorted(known))}")
            values[name] = _coerce(name, raw)
        return replace(self, **values)


def _coerce(name: str, raw: Any) -> Any:
    if name in RATE_MAPS or name == "rate_limit":
        table = parse_endpoint_map(raw, name)
        if name in RATE_MAPS:
            for endpoint, p in table.items():
                _check_probability(f"{name}.{endpoint}", p)
        return table
    if name == "outages":
        items = raw.split(",") if isinstance(raw, str) else raw
        if not isinstance(items, list | tuple) or not all(isinstance(c, str) for c in items):
            raise FaultError("outages: expected a list of city names")
        return tuple(c.strip() for c in items if c.strip())
    value = _number(name, raw)
    if name in PROBABILITIES:
        _check_probability(name, value)
    elif value < 0:
        raise FaultError(f"{name}: must be >= 0, got {value}")
    return value


def _number(name: str, raw: Any) -> float:
    if isinstance(raw, bool):
        raise FaultError(f"{name}: expected a number, got {raw!r}")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise FaultError(f"{name}: expected a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise FaultError(f"{name}: expected a finite number")
    return value


def _check_probability(name: str, p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise FaultError(f"{name}: expected a probability in [0, 1], got {p}")


def parse_endpoint_map(raw: Any, name: str) -> dict[str, float]:
    """`"deploy=0.2,status=0.1"` or `{"deploy": 0.2}` -> {"deploy": 0.2, ...}; `*` = every endpoint."""
    if isinstance(raw, str):
        pairs: list[tuple[str, Any]] = []
        for part in filter(None, (p.strip() for p in raw.split(","))):
            key, sep, value = part.partition("=")
            if not sep:
                raise FaultError(f"{name}: expected ENDPOINT=VALUE, got {part!r}")
            pairs.append((key.strip(), value.strip()))
    elif isinstance(raw, Mapping):
        pairs = list(raw.items())
    else:
        raise FaultError(f"{name}: expected an object of endpoint -> number")
    table: dict[str, float] = {}
    for key, value in pairs:
        if key != "*" and key not in ENDPOINTS:
            raise FaultError(f"{name}: unknown endpoint {key!r}; known: *, {', '.join(ENDPOINTS)}")
        table[str(key)] = _number(f"{name}.{key}", value)
        if table[str(key)] < 0:
            raise FaultError(f"{name}.{key}: must be >= 0")
    return table


def for_endpoint(table: Mapping[str, float], endpoint: str) -> float:
    return table.get(endpoint, table.get("*", 0.0))


class Verdict(enum.Enum):
    PASS = "pass"
    ERROR = "error"  # answer 503 without acting
    THROTTLE = "throttle"  # answer 429 with Retry-After without acting


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    latency_s: float = 0.0
    hold_s: float = 0.0  # wait this long after acting before answering
    retry_after_s: int = 0


class RateLimiter:
    """Token buckets per endpoint (capacity = one second of requests). Time is a parameter."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}  # endpoint -> (tokens, at)

    def take(self, endpoint: str, rate: float, now: float) -> float:
        """0 when a token was taken, else the seconds until one is available."""
        if rate <= 0:
            return 0.0
        tokens, at = self._buckets.get(endpoint, (rate, now))
        tokens = min(rate, tokens + (now - at) * rate)
        if tokens >= 1.0:
            self._buckets[endpoint] = (tokens - 1.0, now)
            return 0.0
        self._buckets[endpoint] = (tokens, now)
        return (1.0 - tokens) / rate


def decide(endpoint: str, faults: Faults, rng: random.Random, limiter: RateLimiter, now: float) -> Decision:
    """What the fault settings do to one call of `endpoint` at `now`."""
    latency_s = faults.latency_ms / 1000.0
    rate = for_endpoint(faults.rate_limit, endpoint)
    wait = limiter.take(endpoint, rate, now) if rate > 0 else 0.0
    if wait > 0:
        return Decision(Verdict.THROTTLE, latency_s, retry_after_s=max(1, math.ceil(wait)))
    if rng.random() < for_endpoint(faults.error_rate, endpoint):
        return Decision(Verdict.ERROR, latency_s)
    hold = faults.hold_s if rng.random() < for_endpoint(faults.hold_rate, endpoint) else 0.0
    return Decision(Verdict.PASS, latency_s, hold_s=hold)


@dataclass(frozen=True)
class Delivery:
    """One planned POST of a webhook: `at` is when to send it."""

    at: float
    copy: int  # 0 = original, 1 = duplicate


def plan_delivery(faults: Faults, rng: random.Random, now: float) -> list[Delivery]:
    """When (and how often) to send one webhook under the webhook faults; [] = lost."""
    if rng.random() < faults.webhook_loss:
        return []
    at = now + faults.webhook_delay_s
    if rng.random() < faults.webhook_reorder:
        at += faults.reorder_window_s * (0.5 + rng.random() / 2)
    plan = [Delivery(at, 0)]
    if rng.random() < faults.webhook_dup:
        plan.append(Delivery(at + 0.05 + rng.random() * 0.2, 1))
    return plan
