"""Who may call the webhooks: the platform signs nothing, so the secret travels in the callback
URL as the `token` query parameter (design.md §3). Several secrets are accepted at once, so a
secret can be rotated while the platform still holds URLs with the old one.

The secret is checked before the body is read; every accepted secret is compared, in constant
time, whatever the outcome. A wrong or missing secret is answered 401 (429 once its address failed
too often, see `throttle`) and changes nothing. Secrets never reach a log line or an error message.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote_plus

from starlette.requests import Request

from webhooks.throttle import FailureThrottle


@dataclass(frozen=True)
class AuthFailure:
    """Why a request was refused: `reason` is a metric label, never the secret."""

    status: int
    reason: str  # missing_secret | bad_secret | throttled | not_configured
    message: str
    retry_after_s: int = 0
    log_it: bool = True


def token_of(query_string: bytes) -> str | None:
    """The `token` query parameter, decoded like Starlette's query_params (without parsing the rest)."""
    for part in query_string.split(b"&"):
        name, _, value = part.partition(b"=")
        if name == b"token":
            return unquote_plus(value.decode("latin-1"))
    return None


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


class SecretGuard:
    def __init__(self, secrets: Sequence[str], *, allow_insecure: bool, throttle: FailureThrottle) -> None:
        self._secrets = tuple(s.encode() for s in secrets if s)
        self._open = allow_insecure and not self._secrets  # FLEET_ALLOW_INSECURE_WEBHOOKS=1, no secret
        self.throttle = throttle

    def matches(self, token: str) -> bool:
        given = token.encode()
        ok = False
        for secret in self._secrets:  # no early exit: the time does not say which one matched
            ok |= hmac.compare_digest(given, secret)
        return ok

    def check(self, request: Request, now: float) -> AuthFailure | None:
        """None when the request may proceed."""
        if self._open:
            return None
        token = token_of(request.scope.get("query_string", b""))
        if token and self.matches(token):
            return None
        if not self._secrets:
            return AuthFailure(
                503, "not_configured", "webhooks are disabled: FLEET_WEBHOOK_SECRET is not set"
            )
        reason = "bad_secret" if token else "missing_secret"
        verdict = self.throttle.fail(client_address(request), now)
        if verdict.throttled:
            return AuthFailure(
                429,
                "throttled",
                "too many failed authentications from this address",
                retry_after_s=verdict.retry_after_s,
                log_it=verdict.first_throttled,
            )
        return AuthFailure(401, reason, "missing or wrong webhook token")
