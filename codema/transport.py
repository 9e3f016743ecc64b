"""One platform call, done carefully: shared admission (429 back-off and token buckets), a circuit
breaker per endpoint, bounded retries with jittered exponential back-off, and the mapping of every
HTTP failure to `codema.errors` (this is the one place it happens).

Which failures are retried inside the call depends on what the endpoint does (`Effect`): a read is
always safe to resend; an idempotent write too; a create is resent only when the platform cannot
have acted (connect error, 429), otherwise the caller gets `PlatformUnavailable(ambiguous=True)`
and must look its intent up first (`CodemaClient.deploy` does).
"""

from __future__ import annotations

import asyncio
import email.utils
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from codema.circuit import CircuitBreaker, CircuitState
from codema.errors import (
    AlreadyTerminated,
    CircuitOpen,
    Conflict,
    NotFound,
    PlatformError,
    PlatformRejected,
    PlatformUnavailable,
    RateLimited,
    Unauthorized,
    redact,
)
from codema.limits import DOCUMENTED_RATES, InMemoryPlatformLimits, PlatformLimits, Rate
from fleet.logging import event
from fleet.metrics import (
    PLATFORM_BACKOFF,
    PLATFORM_CALLS,
    PLATFORM_CIRCUIT_OPEN,
    PLATFORM_LATENCY,
    PLATFORM_RETRIES,
    PLATFORM_WAIT,
)

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]

DEFAULT_RETRY_AFTER_S = 1.0  # a 429 without Retry-After still stops everyone this long
MAX_RETRY_AFTER_S = 300.0  # a runaway Retry-After must not silence the service for hours
MESSAGE_EXCERPT_CHARS = 200


class Effect(enum.Enum):
    """What an endpoint does to the platform, which decides what may be resent after a failure."""

    READ = "read"  # never acts: nothing ambiguous, always safe to resend
    IDEMPOTENT = "idempotent"  # may act, but acting twice is the same as once (stop, delete)
    CREATE = "create"  # acting twice makes two things: resend only if it cannot have acted


@dataclass(frozen=True)
class Endpoint:
    """A route template: `name` is the metric label and the rate-limit bucket, never an id."""

    name: str
    method: str
    effect: Effect


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 4
    base_delay_s: float = 0.2
    max_delay_s: float = 5.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")

    def delay(self, retry: int, rng: random.Random) -> float:
        """Equal jitter: half the exponential step plus a random half, so that concurrent callers
        spread out while each retry still waits at least as long as the previous one could have."""
        ceiling = min(self.max_delay_s, self.base_delay_s * 2.0 ** (retry - 1))
        return ceiling / 2 + rng.uniform(0.0, ceiling / 2)


def parse_retry_after(value: str | None, now: float) -> float:
    """Seconds from a Retry-After header (delta seconds or an HTTP date); a default when absent."""
    if not value:
        return DEFAULT_RETRY_AFTER_S
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(text).timestamp() - now
        except (TypeError, ValueError, IndexError):
            return DEFAULT_RETRY_AFTER_S
    return min(MAX_RETRY_AFTER_S, max(0.0, seconds))


def _platform_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:MESSAGE_EXCERPT_CHARS]
    message = body.get("message") if isinstance(body, dict) else None
    if isinstance(message, str):
        return message[:MESSAGE_EXCERPT_CHARS]
    return str(body)[:MESSAGE_EXCERPT_CHARS]


_REJECTIONS: Mapping[int, type[PlatformRejected]] = {
    401: Unauthorized,
    403: Unauthorized,
    404: NotFound,
    409: Conflict,
    410: AlreadyTerminated,
}


def error_for_response(
    endpoint: Endpoint, response: httpx.Response, *, now: float, secrets: tuple[str, ...]
) -> PlatformError:
    """The error for a non-2xx answer: 429 and 5xx (and 408) are retryable, other 4xx terminal."""
    code = response.status_code
    text = redact(f"{endpoint.name}: HTTP {code}: {_platform_message(response)}", secrets)
    if code == 429:
        retry_after = parse_retry_after(response.headers.get("retry-after"), now)
        return RateLimited(text, endpoint=endpoint.name, status=code, retry_after_s=retry_after)
    if code >= 500 or code == 408:
        retry_after = response.headers.get("retry-after")
        return PlatformUnavailable(
            text,
            endpoint=endpoint.name,
            status=code,
            retry_after_s=parse_retry_after(retry_after, now) if retry_after else None,
            ambiguous=endpoint.effect is not Effect.READ,
        )
    return _REJECTIONS.get(code, PlatformRejected)(text, endpoint=endpoint.name, status=code)


def error_for_exception(
    endpoint: Endpoint, exc: httpx.RequestError, secrets: tuple[str, ...]
) -> PlatformError:
    """Connect errors and connect/pool timeouts never reached the platform; anything after the
    request was written (read timeout, dropped connection) may have acted."""
    unsent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    text = redact(f"{endpoint.name}: {type(exc).__name__}: {exc}", secrets)
    return PlatformUnavailable(
        text, endpoint=endpoint.name, ambiguous=not unsent and endpoint.effect is not Effect.READ
    )


def result_label(error: PlatformError | None, exc: BaseException | None = None) -> str:
    """Bounded values of the `result` label of PLATFORM_CALLS."""
    if error is None:
        return "ok"
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.RequestError):
        return "connect_error" if isinstance(exc, httpx.ConnectError) else "transport_error"
    for cls, label in (
        (CircuitOpen, "circuit_open"),
        (RateLimited, "rate_limited"),
        (AlreadyTerminated, "gone"),
        (NotFound, "not_found"),
        (Unauthorized, "unauthorized"),
        (Conflict, "conflict"),
        (PlatformRejected, "rejected"),
    ):
        if isinstance(error, cls):
            return label
    return "server_error" if error.status is not None else "invalid_response"


class PlatformTransport:
    """Sends one call with everything around it. Holds the token only inside the httpx client."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        limits: PlatformLimits,
        policy: RetryPolicy,
        rates: Mapping[str, Rate] = DOCUMENTED_RATES,
        secrets: tuple[str, ...],
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        clock: Clock = time.time,
        max_wait_s: float = 10.0,
        circuit_failures: int = 5,
        circuit_reset_s: float = 10.0,
    ) -> None:
        self._http = http
        self._limits = limits
        self._fallback = InMemoryPlatformLimits(clock=clock)
        self._rates = dict(rates)
        self.policy = policy
        self._secrets = secrets
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._clock = clock
        self._max_wait_s = max_wait_s
        self._circuit_failures = circuit_failures
        self._circuit_reset_s = circuit_reset_s
        self._circuits: dict[str, CircuitBreaker] = {}

    def circuit(self, name: str) -> CircuitBreaker:
        if name not in self._circuits:
            self._circuits[name] = CircuitBreaker(
                failure_threshold=self._circuit_failures,
                reset_after_s=self._circuit_reset_s,
                clock=self._clock,
            )
        return self._circuits[name]

    async def send(
        self, endpoint: Endpoint, path: str, *, params: Mapping[str, str] | None = None, body: Any = None
    ) -> httpx.Response:
        """The 2xx answer, or the mapped error once retries are spent or not allowed."""
        attempt = 0
        while True:
            attempt += 1
            self._check_circuit(endpoint)
            await self._admit(endpoint)
            outcome = await self._attempt(endpoint, path, params, body)
            if isinstance(outcome, httpx.Response):
                return outcome
            if not self._may_retry(endpoint, outcome, attempt):
                # A rejection is the platform's answer (often expected, e.g. 404); only say
                # WARNING when the platform could not be reached or failed.
                level = logging.WARNING if isinstance(outcome, PlatformUnavailable) else logging.INFO
                event(
                    log,
                    "platform_call_failed",
                    level,
                    endpoint=endpoint.name,
                    attempt=attempt,
                    status=outcome.status,
                    outcome=result_label(outcome, outcome.__cause__),
                    ambiguous=getattr(outcome, "ambiguous", False),
                )
                raise outcome
            delay = self._retry_delay(outcome, attempt)
            reason = result_label(outcome, outcome.__cause__)
            PLATFORM_RETRIES.labels(endpoint.name, reason).inc()
            event(
                log,
                "platform_retry",
                endpoint=endpoint.name,
                attempt=attempt,
                status=outcome.status,
                outcome=reason,
                delay_s=round(delay, 3),
            )
            if delay > 0:
                await self._sleep(delay)

    async def _attempt(
        self, endpoint: Endpoint, path: str, params: Mapping[str, str] | None, body: Any
    ) -> httpx.Response | PlatformError:
        """One HTTP exchange: the 2xx response, or the error it maps to (recorded, not raised)."""
        breaker = self.circuit(endpoint.name)
        started = time.perf_counter()
        try:
            response = await self._http.request(endpoint.method, path, params=params, json=body)
        except httpx.RequestError as exc:  # transport errors, undecodable bodies, redirect loops
            PLATFORM_LATENCY.labels(endpoint.name).observe(time.perf_counter() - started)
            error = error_for_exception(endpoint, exc, self._secrets)
            error.__cause__ = exc
            PLATFORM_CALLS.labels(endpoint.name, result_label(error, exc)).inc()
            self._record_failure(endpoint, breaker)
            return error
        PLATFORM_LATENCY.labels(endpoint.name).observe(time.perf_counter() - started)
        if response.is_success:
            PLATFORM_CALLS.labels(endpoint.name, "ok").inc()
            self._record_success(endpoint, breaker)
            return response
        error = error_for_response(endpoint, response, now=self._clock(), secrets=self._secrets)
        PLATFORM_CALLS.labels(endpoint.name, result_label(error)).inc()
        if isinstance(error, RateLimited):
            # An answer, so the platform is up; everyone waits out the window (admission sleeps).
            self._record_success(endpoint, breaker)
            await self._back_off(endpoint, error.retry_after_s or DEFAULT_RETRY_AFTER_S)
        elif isinstance(error, PlatformRejected):
            self._record_success(endpoint, breaker)
        else:
            self._record_failure(endpoint, breaker)
        return error

    def _retry_delay(self, error: PlatformError, attempt: int) -> float:
        if isinstance(error, RateLimited):
            return 0.0  # the shared back-off is waited out at admission, by every caller alike
        hinted = error.retry_after_s if isinstance(error, PlatformUnavailable) else None
        return max(self.policy.delay(attempt, self._rng), min(hinted or 0.0, self._max_wait_s))

    def _may_retry(self, endpoint: Endpoint, error: PlatformError, attempt: int) -> bool:
        if attempt >= self.policy.max_attempts or not isinstance(error, PlatformUnavailable):
            return False
        if error.ambiguous and endpoint.effect is Effect.CREATE:
            return False
        # Once this call's failures opened the circuit, report the real failure, not CircuitOpen.
        return self.circuit(endpoint.name).state is not CircuitState.OPEN

    def _check_circuit(self, endpoint: Endpoint) -> None:
        wait = self.circuit(endpoint.name).allow()
        if wait > 0:
            PLATFORM_CALLS.labels(endpoint.name, "circuit_open").inc()
            raise CircuitOpen(
                f"{endpoint.name}: circuit open, no request sent", endpoint=endpoint.name, retry_after_s=wait
            )

    def _record_success(self, endpoint: Endpoint, breaker: CircuitBreaker) -> None:
        breaker.record_success()
        PLATFORM_CIRCUIT_OPEN.labels(endpoint.name).set(0)

    def _record_failure(self, endpoint: Endpoint, breaker: CircuitBreaker) -> None:
        if breaker.record_failure():
            PLATFORM_CIRCUIT_OPEN.labels(endpoint.name).set(1)
            event(
                log,
                "platform_circuit_open",
                logging.WARNING,
                endpoint=endpoint.name,
                cooldown_s=round(self._circuit_reset_s, 1),
            )

    async def _admit(self, endpoint: Endpoint) -> None:
        """Wait for the shared back-off and a token, within the call's waiting budget."""
        waited = 0.0
        while True:
            wait = await self._limits_admit(endpoint.name, self._rates.get(endpoint.name))
            if wait <= 0:
                if waited > 0:
                    PLATFORM_BACKOFF.set(0)  # admitted: whatever window held us has ended
                return
            backoff = await self._limits_backoff_remaining()
            reason = "backoff" if backoff > 0 else "bucket"
            PLATFORM_BACKOFF.set(backoff)
            if waited + wait > self._max_wait_s:
                PLATFORM_CALLS.labels(endpoint.name, "rate_limited").inc()
                raise RateLimited(
                    f"{endpoint.name}: {reason} wait {wait:.2f}s exceeds the call's budget",
                    endpoint=endpoint.name,
                    retry_after_s=wait,
                )
            PLATFORM_WAIT.labels(endpoint.name, reason).observe(wait)
            await self._sleep(wait)
            waited += wait

    async def _back_off(self, endpoint: Endpoint, seconds: float) -> None:
        event(log, "platform_backoff", logging.WARNING, endpoint=endpoint.name, delay_s=round(seconds, 2))
        PLATFORM_BACKOFF.set(seconds)
        try:
            await self._limits.back_off(seconds)
        except Exception as exc:  # the shared store is down: at least this process backs off
            error = type(exc).__name__
            event(log, "platform_limits_unavailable", logging.WARNING, op="back_off", error=error)
        await self._fallback.back_off(seconds)

    async def _limits_admit(self, name: str, rate: Rate | None) -> float:
        try:
            if rate is None:
                return await self._limits.backoff_remaining()
            return await self._limits.admit(name, rate.per_s, rate.burst)
        except Exception as exc:  # Redis down must not stop every platform call: limit locally
            event(log, "platform_limits_unavailable", logging.WARNING, op="admit", error=type(exc).__name__)
            if rate is None:
                return await self._fallback.backoff_remaining()
            return await self._fallback.admit(name, rate.per_s, rate.burst)

    async def _limits_backoff_remaining(self) -> float:
        try:
            return await self._limits.backoff_remaining()
        except Exception:
            return await self._fallback.backoff_remaining()
