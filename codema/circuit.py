"""A circuit breaker per endpoint and process: after repeated failures stop calling for a while,
then let one probe through; its outcome closes the circuit or opens it again."""

from __future__ import annotations

import enum
from collections.abc import Callable


class CircuitState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Failures are what says the platform is unwell (connect errors, timeouts, 5xx); a 4xx or a
    429 is an answer, so it counts as a success here."""

    def __init__(
        self, *, failure_threshold: int = 5, reset_after_s: float = 10.0, clock: Callable[[], float]
    ) -> None:
        if failure_threshold < 1 or reset_after_s <= 0:
            raise ValueError("failure_threshold must be >= 1 and reset_after_s > 0")
        self._threshold = failure_threshold
        self._reset_after_s = reset_after_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        # When the single half-open probe was let through; it expires so that a cancelled probe
        # cannot keep the circuit half-open forever.
        self._probe_at: float | None = None

    @property
    def state(self) -> CircuitState:
        if self._opened_at is None:
            return CircuitState.CLOSED
        if self._clock() - self._opened_at < self._reset_after_s:
            return CircuitState.OPEN
        return CircuitState.HALF_OPEN

    def allow(self) -> float:
        """0.0 when a call may go now (in half-open, this call is the probe); else seconds to wait."""
        now = self._clock()
        if self._opened_at is None:
            return 0.0
        reopen_at = self._opened_at + self._reset_after_s
        if now < reopen_at:
            return reopen_at - now
        if self._probe_at is not None and now - self._probe_at < self._reset_after_s:
            return self._probe_at + self._reset_after_s - now
        self._probe_at = now
        return 0.0

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._probe_at = None

    def record_failure(self) -> bool:
        """Count a failure; True when this failure opened (or re-opened) the circuit."""
        self._failures += 1
        half_open_probe_failed = self._opened_at is not None
        if half_open_probe_failed or self._failures >= self._threshold:
            self._opened_at = self._clock()
            self._probe_at = None
            return True
        return False
