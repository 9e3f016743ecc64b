"""The one error hierarchy for platform calls. Every HTTP failure maps to one of these, in one place.

Callers decide with `isinstance(err, PlatformUnavailable)`: retry later (RQ re-runs the job, the
scaler recomputes); `PlatformRejected` is terminal for that request. Messages never carry the
API token or any other credential.
"""

from __future__ import annotations


class PlatformError(Exception):
    """A platform call did not succeed."""

    def __init__(self, message: str, *, endpoint: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.endpoint = endpoint
        self.status = status


class PlatformUnavailable(PlatformError):
    """Retryable: connect error, timeout, 5xx, 429, open circuit. The platform may have acted."""

    def __init__(
        self,
        message: str,
        *,
        endpoint: str = "",
        status: int | None = None,
        retry_after_s: float | None = None,
        ambiguous: bool = False,
    ) -> None:
        super().__init__(message, endpoint=endpoint, status=status)
        self.retry_after_s = retry_after_s
        # True when the request reached the platform and may have taken effect (timeout after send,
        # 5xx): a create must be looked up by its intent before it is tried again.
        self.ambiguous = ambiguous


class RateLimited(PlatformUnavailable):
    """429 from the platform, or our shared back-off window still in force."""


class CircuitOpen(PlatformUnavailable):
    """The endpoint's circuit breaker is open; no request was sent."""


class PlatformRejected(PlatformError):
    """Terminal: 4xx other than 429. Retrying the same request will not help."""


class NotFound(PlatformRejected):
    """404: the deployment, session, app or key does not exist."""


class AlreadyTerminated(PlatformRejected):
    """410: the deployment or session is already gone (success for an idempotent stop)."""


class Unauthorized(PlatformRejected):
    """401/403: the token was refused."""


class Conflict(PlatformRejected):
    """409: the app, version or session already exists."""


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """`text` with every non-trivial secret replaced: for messages built from platform answers."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text
