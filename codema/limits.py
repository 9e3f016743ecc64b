"""Platform-wide call limits shared by every caller: the 429 back-off window and per-endpoint token
buckets at the platform's documented rates (codema-api.md §0.4).

`PlatformLimits` is what the client needs; `InMemoryPlatformLimits` serves tests, offline replays
and a single process. The Redis implementation (`fleet.store.limits.RedisPlatformLimits`) shares
both across every process of an installation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Rate:
    """A token bucket: `per_s` tokens a second, at most `burst` saved up."""

    per_s: float
    burst: float

    def __post_init__(self) -> None:
        if self.per_s <= 0 or self.burst < 1:
            raise ValueError("a rate needs per_s > 0 and burst >= 1")


# Documented limits, by the client's endpoint label. Other endpoints have no documented limit.
DOCUMENTED_RATES: Mapping[str, Rate] = {
    "deploy": Rate(per_s=40.0, burst=40.0),
    "status": Rate(per_s=20.0, burst=20.0),
    "list_deployments": Rate(per_s=10.0, burst=10.0),
}


@runtime_checkable
class PlatformLimits(Protocol):
    """Admission to the platform, shared by every caller that holds the same limits. The rates
    are the client's to choose; the limits only keep the shared state."""

    async def admit(self, endpoint: str, per_s: float, burst: float) -> float:
        """0.0: go now (one token taken from the endpoint's bucket of `per_s` tokens a second, at
        most `burst` saved). Otherwise the seconds to wait before asking again, either for the
        shared back-off to end or for a token; nothing was taken."""
        ...

    async def back_off(self, seconds: float) -> None:
        """Nobody may call the platform for `seconds` from now. Extends, never shortens, the window."""
        ...

    async def backoff_remaining(self) -> float:
        """Seconds left of the shared back-off window (0.0 when none)."""
        ...


@dataclass
class _Bucket:
    tokens: float
    updated: float


class InMemoryPlatformLimits:
    """`PlatformLimits` for one process; the clock is a parameter so tests can drive it."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._backoff_until = 0.0

    async def admit(self, endpoint: str, per_s: float, burst: float) -> float:
        now = self._clock()
        if self._backoff_until > now:
            return self._backoff_until - now
        bucket = self._buckets.setdefault(endpoint, _Bucket(tokens=burst, updated=now))
        elapsed = max(0.0, now - bucket.updated)
        bucket.tokens = min(burst, bucket.tokens + elapsed * per_s)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / per_s

    async def back_off(self, seconds: float) -> None:
        self._backoff_until = max(self._backoff_until, self._clock() + max(0.0, seconds))

    async def backoff_remaining(self) -> float:
        return max(0.0, self._backoff_until - self._clock())
