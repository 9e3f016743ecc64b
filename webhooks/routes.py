"""Platform callbacks: `POST /webhooks/deployments`, `/webhooks/sessions`, `/webhooks/telemetry`.

Each request: the secret (before the body is read), the body (capped while reading), the parse
(422 naming the subject's id field), then one short Store write, and the answer. A 2xx means the
fact is in Redis; nothing slow runs before the answer (no platform call, no waiting), and the Store
write is bounded by `INGEST_DEADLINE_S` (for deployment callbacks, by the report batcher, which
holds each report's deadline) so the platform, which gives up after 10 s, always gets an answer.
Rejected requests change nothing.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from fleet.bootstrap import Services
from fleet.http import HttpError, error_response, read_json_object
from fleet.logging import event
from fleet.metrics import (
    WEBHOOK_CALLBACKS,
    WEBHOOK_LATENCY,
    WEBHOOK_REJECTIONS,
    WEBHOOK_TRANSITIONS,
    WEBHOOK_USAGE_ANOMALIES,
)
from fleet.store.session_reports import SessionContended
from webhooks.auth import AuthFailure, SecretGuard, client_address
from webhooks.batch import DEADLINE_S
from webhooks.ingest import Ingest, Outcome, Result
from webhooks.parse import FieldError, deployment_body, session_body, telemetry_body
from webhooks.throttle import FailureThrottle

log = logging.getLogger("webhooks")

INGEST_DEADLINE_S = DEADLINE_S  # half the platform's 10 s timeout: a slow Redis gets a 503, not a hang
RETRY_AFTER_S = "2"

Handler = Callable[[dict[str, Any]], Awaitable[Outcome]]


class _Accepted:
    """The 200 answer of one result, built once: `{"result": "transition"}`, ..."""

    def __init__(self, result: Result) -> None:
        self._body = json.dumps({"result": result.value}).encode()
        self._headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(self._body))]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Fresh messages each time: a server or middleware may change what it is sent.
        await send({"type": "http.response.start", "status": 200, "headers": list(self._headers)})
        await send({"type": "http.response.body", "body": self._body})


_ANSWERS = {r: _Accepted(r) for r in Result}


@functools.lru_cache(maxsize=256)
def _transitions(kind: str, state: str) -> Any:
    return WEBHOOK_TRANSITIONS.labels(kind, state)  # the labelled child, looked up once


class Rejected(Exception):
    """A refused callback: `reason` is the metric label; `quiet` skips the log line (repeats)."""

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        headers: dict[str, str] | None = None,
        *,
        quiet: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.headers = headers or {}
        self.quiet = quiet


def _body_rejection(err: HttpError) -> Rejected:
    return Rejected(err.status, "too_large" if err.status == 413 else "malformed", err.message)


class WebhookEndpoint:
    """One callback kind: authenticate, read, parse, ingest, answer; metrics on every path."""

    def __init__(
        self, kind: str, guard: SecretGuard, handler: Handler, deadline_s: float | None = INGEST_DEADLINE_S
    ) -> None:
        """`deadline_s` None: the handler bounds its own Store writes (deployment callbacks)."""
        self.kind = kind
        self.guard = guard
        self.handler = handler
        self.deadline_s = deadline_s
        self._latency = WEBHOOK_LATENCY.labels(kind)
        self._accepted = {r: WEBHOOK_CALLBACKS.labels(kind, r.value) for r in Result}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A plain ASGI endpoint: callbacks are the service's busiest path, and Starlette's
        per-request wrapper (exception context, send wrapper, Response object) is skipped. The
        app's front door (`fleet.app.FleetApp`) calls it without the middleware stack, so every
        error up to the answer is answered here."""
        request = Request(scope, receive)
        try:
            answer = self._answer(request, await self._outcome(request))
        except Exception:
            answer = self._internal_error(request)
        await answer(scope, receive, send)

    async def _outcome(self, request: Request) -> Outcome | Rejected:
        started = time.perf_counter()
        try:
            return await self._handle(request)
        except Rejected as rej:
            return rej
        finally:
            self._latency.observe(time.perf_counter() - started)

    def _answer(self, request: Request, outcome: Outcome | Rejected) -> ASGIApp:
        if isinstance(outcome, Rejected):
            return self._reject(request, outcome)
        self._accepted[outcome.result].inc()
        for kind, state in outcome.transitions:
            _transitions(kind, state).inc()
        for note in outcome.usage_notes:
            WEBHOOK_USAGE_ANOMALIES.labels(note.value).inc()
        return _ANSWERS[outcome.result]

    async def _handle(self, request: Request) -> Outcome:
        failure = self.guard.check(request, time.monotonic())
        if failure is not None:
            raise self._auth_rejection(failure)
        try:
            body = await read_json_object(request)
        except HttpError as err:
            raise _body_rejection(err) from err
        except ClientDisconnect as err:
            # The caller gave up (the platform waits 10 s): counted, but nobody reads the answer.
            raise Rejected(499, "client_disconnect", "the caller went away before its body was read") from err
        try:
            if self.deadline_s is None:
                return await self.handler(body)
            async with asyncio.timeout(self.deadline_s):
                return await self.handler(body)
        except FieldError as err:
            raise Rejected(422, "missing_field" if err.missing else "invalid_field", str(err)) from err
        except (RedisError, OSError, TimeoutError, SessionContended) as err:
            raise Rejected(
                503,
                "store_unavailable",
                "state store unavailable, retry shortly",
                {"Retry-After": RETRY_AFTER_S},
            ) from err

    def _internal_error(self, request: Request) -> Response:
        """A bug, not bad input: logged with its traceback (what the app's `Exception` handler does
        for every other route) and answered 500: never a 2xx for a callback that was not stored."""
        WEBHOOK_CALLBACKS.labels(self.kind, "rejected").inc()
        WEBHOOK_REJECTIONS.labels(self.kind, "internal_error").inc()
        log.exception("unhandled error", extra={"fleet_fields": {"path": request.url.path}})
        return error_response(500, "internal error")

    @staticmethod
    def _auth_rejection(failure: AuthFailure) -> Rejected:
        headers = {"Retry-After": str(failure.retry_after_s)} if failure.retry_after_s else {}
        return Rejected(failure.status, failure.reason, failure.message, headers, quiet=not failure.log_it)

    def _reject(self, request: Request, rej: Rejected) -> Response:
        WEBHOOK_CALLBACKS.labels(self.kind, "rejected").inc()
        WEBHOOK_REJECTIONS.labels(self.kind, rej.reason).inc()
        if not rej.quiet:
            level = logging.WARNING if rej.status >= 500 else logging.INFO
            cause = type(rej.__cause__).__name__ if rej.__cause__ is not None and rej.status >= 500 else None
            event(
                log,
                "webhook_rejected",
                level,
                kind=self.kind,
                status=rej.status,
                reason=rej.reason,
                client=client_address(request),
                detail=rej.message,
                error=cause,
            )
        return error_response(rej.status, rej.message, rej.headers)


def build_routes(services: Services) -> list[BaseRoute]:
    settings = services.settings
    guard = SecretGuard(
        settings.webhook_secrets(),
        allow_insecure=settings.allow_insecure_webhooks,
        throttle=FailureThrottle(),
    )
    ingest = Ingest(services.store, services.clock)

    async def deployments(body: dict[str, Any]) -> Outcome:
        return await ingest.deployment(deployment_body(body))

    async def sessions(body: dict[str, Any]) -> Outcome:
        return await ingest.session(session_body(body, services.clock()))

    async def telemetry(body: dict[str, Any]) -> Outcome:
        return await ingest.telemetry(telemetry_body(body))

    return [
        Route(
            "/webhooks/deployments",
            WebhookEndpoint("deployment", guard, deployments, deadline_s=None),
            methods=["POST"],
        ),
        Route("/webhooks/sessions", WebhookEndpoint("session", guard, sessions), methods=["POST"]),
        Route("/webhooks/telemetry", WebhookEndpoint("telemetry", guard, telemetry), methods=["POST"]),
    ]
