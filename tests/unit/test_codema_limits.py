"""In-memory platform limits, the circuit breaker and the retry arithmetic, on virtual time."""

from __future__ import annotations

import random

import pytest

from codema.circuit import CircuitBreaker, CircuitState
from codema.limits import DOCUMENTED_RATES, InMemoryPlatformLimits, PlatformLimits, Rate
from codema.transport import DEFAULT_RETRY_AFTER_S, MAX_RETRY_AFTER_S, RetryPolicy, parse_retry_after


class Clock:
    def __init__(self) -> None:
        self.t = 500.0

    def __call__(self) -> float:
        return self.t


def test_documented_rates() -> None:
    assert {name: rate.per_s for name, rate in DOCUMENTED_RATES.items()} == {
        "deploy": 40.0,
        "status": 20.0,
        "list_deployments": 10.0,
    }
    with pytest.raises(ValueError):
        Rate(per_s=0, burst=1)


def test_in_memory_limits_satisfy_the_protocol() -> None:
    assert isinstance(InMemoryPlatformLimits(), PlatformLimits)


async def test_bucket_gives_the_burst_then_paces_at_the_rate() -> None:
    clock = Clock()
    limits = InMemoryPlatformLimits(clock=clock)
    assert [await limits.admit("status", 20.0, 20.0) for _ in range(20)] == [0.0] * 20
    assert await limits.admit("status", 20.0, 20.0) == pytest.approx(0.05)  # 1 token / 20 per s
    clock.t += 0.05
    assert await limits.admit("status", 20.0, 20.0) == 0.0
    assert await limits.admit("deploy", 40.0, 40.0) == 0.0  # buckets are per endpoint


async def test_back_off_blocks_every_endpoint_and_only_extends() -> None:
    clock = Clock()
    limits = InMemoryPlatformLimits(clock=clock)
    await limits.back_off(5.0)
    await limits.back_off(2.0)  # shorter: ignored
    assert await limits.backoff_remaining() == pytest.approx(5.0)
    assert await limits.admit("deploy", 40.0, 40.0) == pytest.approx(5.0)
    clock.t += 5.0
    assert await limits.backoff_remaining() == 0.0
    assert await limits.admit("deploy", 40.0, 40.0) == 0.0


# name: (header, expected seconds); "now" is 1_000_000 s after the epoch.
RETRY_AFTER_ROWS = {
    "absent": (None, DEFAULT_RETRY_AFTER_S),
    "delta seconds": ("3", 3.0),
    "fractional": ("1.5", 1.5),
    "negative": ("-4", 0.0),
    "http date 10 s ahead": ("Mon, 12 Jan 1970 13:46:50 GMT", 10.0),
    "garbage": ("soon", DEFAULT_RETRY_AFTER_S),
    "capped": ("86400", MAX_RETRY_AFTER_S),
}


@pytest.mark.parametrize("row", RETRY_AFTER_ROWS.values(), ids=RETRY_AFTER_ROWS.keys())
def test_parse_retry_after(row: tuple[str | None, float]) -> None:
    header, expected = row
    assert parse_retry_after(header, now=1_000_000.0) == pytest.approx(expected)


def test_retry_delays_grow_and_are_capped() -> None:
    policy = RetryPolicy(max_attempts=10, base_delay_s=0.1, max_delay_s=1.0)
    rng = random.Random(1)
    delays = [policy.delay(n, rng) for n in range(1, 9)]
    # steps 0.1, 0.2, 0.4, 0.8, then capped at 1.0: each delay in [step/2, step].
    for n, delay in enumerate(delays, start=1):
        step = min(1.0, 0.1 * 2 ** (n - 1))
        assert step / 2 <= delay <= step
    assert delays[:4] == sorted(delays[:4])
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


def test_circuit_opens_half_opens_and_closes() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=3, reset_after_s=10.0, clock=clock)
    assert [breaker.record_failure() for _ in range(3)] == [False, False, True]
    assert breaker.state is CircuitState.OPEN and breaker.allow() == pytest.approx(10.0)
    clock.t += 10.0
    assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.allow() == 0.0  # the probe
    assert breaker.allow() > 0  # only one probe at a time
    breaker.record_success()
    assert breaker.state is CircuitState.CLOSED and breaker.allow() == 0.0


def test_success_resets_the_failure_streak() -> None:
    breaker = CircuitBreaker(failure_threshold=2, reset_after_s=1.0, clock=Clock())
    breaker.record_failure()
    breaker.record_success()
    assert breaker.record_failure() is False and breaker.state is CircuitState.CLOSED


def test_a_lost_probe_does_not_keep_the_circuit_half_open_forever() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, reset_after_s=4.0, clock=clock)
    breaker.record_failure()
    clock.t += 4.0
    assert breaker.allow() == 0.0  # probe sent, then cancelled: never reports back
    clock.t += 4.0
    assert breaker.allow() == 0.0  # another probe may go


def test_failed_probe_reopens_for_a_full_cooldown() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=5, reset_after_s=4.0, clock=clock)
    for _ in range(5):
        breaker.record_failure()
    clock.t += 4.0
    assert breaker.allow() == 0.0
    assert breaker.record_failure() is True
    assert breaker.state is CircuitState.OPEN and breaker.allow() == pytest.approx(4.0)
