"""The simulator's real-time host: the world behind HTTP, call accounting, faults, webhook delivery.

One asyncio loop owns everything (no threads touch the world). A background task advances the
world every `tick_s` and hands due webhooks to the `Deliverer`, which applies the webhook faults
(loss, duplicates, reordering, delay) and POSTs them with httpx (10 s timeout). Telemetry webhooks
are retried up to 5 times on a non-2xx answer or a transport error, as the platform documents;
deployment and session webhooks are sent once.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import hmac
import logging
import random
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from codema.sim.faults import RateLimiter, Verdict, decide, plan_delivery
from codema.sim.options import SimOptions
from codema.sim.records import SimError, Webhook
from codema.sim.world import World
from fleet.logging import event

log = logging.getLogger("codema.sim")
TELEMETRY_RETRIES = 5
WEBHOOK_LOG_SIZE = 2000

Handler = Callable[[Request], Awaitable[Response]]


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status, headers=headers)


def safe_url(url: str) -> str:
    """The URL without query or credentials: callback URLs carry secrets in `?token=`."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"


class Deliverer:
    """Sends webhooks at their planned times; keeps a log of what happened to each."""

    def __init__(self, host: SimHost) -> None:
        self.host = host
        self.pending: list[tuple[float, int, Webhook, int, int]] = []  # (at, seq, hook, attempt, copy)
        self.log: deque[dict[str, Any]] = deque(maxlen=WEBHOOK_LOG_SIZE)
        self._seq = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None

    def submit(self, hook: Webhook) -> None:
        plan = plan_delivery(self.host.world.faults, self.host.rng, self.host.clock())
        if not plan:
            self._record(hook, "lost", copy=0, attempt=1)
        for d in plan:
            self._push(d.at, hook, 1, d.copy)

    def _push(self, at: float, hook: Webhook, attempt: int, copy: int) -> None:
        self._seq += 1
        heapq.heappush(self.pending, (at, self._seq, hook, attempt, copy))

    def pump(self) -> None:
        now = self.host.clock()
        while self.pending and self.pending[0][0] <= now:
            _, _, hook, attempt, copy = heapq.heappop(self.pending)
            task = asyncio.create_task(self._send(hook, attempt, copy))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, hook: Webhook, attempt: int, copy: int) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.host.options.webhook_timeout_s)
        status: int | None = None
        try:
            resp = await self._client.post(hook.url, json=hook.body)
            status = resp.status_code
        except httpx.HTTPError as err:
            event(log, "webhook_failed", kind=hook.kind, subject=hook.subject, error=type(err).__name__)
        ok = status is not None and 200 <= status < 300
        self._record(hook, "sent" if ok else "failed", copy=copy, attempt=attempt, status=status)
        if not ok and hook.kind == "telemetry" and attempt <= TELEMETRY_RETRIES:
            backoff = self.host.options.webhook_retry_s * 2 ** (attempt - 1)
            self._push(self.host.clock() + backoff, hook, attempt + 1, copy)

    def _record(
        self, hook: Webhook, result: str, *, copy: int, attempt: int, status: int | None = None
    ) -> None:
        self.log.append(
            {
                "kind": hook.kind,
                "subject": hook.subject,
                "url": safe_url(hook.url),
                "result": result,
                "status": status,
                "copy": copy,
                "attempt": attempt,
                "at": self.host.clock(),
            }
        )

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        if self._client is not None:
            await self._client.aclose()
            self._client = None


class SimHost:
    """The world plus what only exists at run time: token, call counts, HTTP faults, delivery."""

    def __init__(self, options: SimOptions, token: str, clock: Callable[[], float] = time.time) -> None:
        if not token:
            raise ValueError("the simulator needs a non-empty API token (CODEMA_API_TOKEN)")
        self.options = options
        self.clock = clock
        self._token = token.encode()
        self.reset()

    def reset(self) -> None:
        """A fresh world with the start-up faults; call counts and webhook log cleared."""
        self.rng = random.Random(self.options.seed + 1)  # fault draws, apart from the world's stream
        self.world = World(
            self.clock, random.Random(self.options.seed), self.options.world, self.options.faults
        )
        self.world.set_faults(self.options.faults)
        self.world.geo.warm()
        self.limiter = RateLimiter()
        self.calls: Counter[str] = Counter()
        self.responses: dict[str, Counter[str]] = {}
        self.deliverer = Deliverer(self)

    def authorized(self, request: Request) -> bool:
        """Exactly `Authorization: token <CODEMA_API_TOKEN>`, compared in constant time."""
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        return scheme == "token" and hmac.compare_digest(value.encode(), self._token)

    def record(self, name: str, status: int) -> None:
        self.calls[name] += 1
        self.responses.setdefault(name, Counter())[str(status)] += 1

    def step(self) -> None:
        """Advance the world to now and send what is due."""
        self.world.advance()
        for hook in self.world.drain_outbox():
            self.deliverer.submit(hook)
        self.deliverer.pump()

    async def run(self) -> None:
        while True:
            try:
                self.step()
            except Exception:  # the loop must survive anything one step does
                log.exception("sim_step_failed")
            await asyncio.sleep(self.options.tick_s)

    def endpoint(self, name: str, handler: Handler, *, account_auth: bool = True) -> Handler:
        """Wrap a platform handler with auth, call counting and the per-endpoint faults."""

        async def run(request: Request) -> Response:
            if account_auth and not self.authorized(request):
                self.record(name, 401)
                return error(401, "missing or invalid Authorization header (expected 'token <api token>')")
            response = await self._faulted(name, handler, request)
            self.record(name, response.status_code)
            self.step()  # webhooks caused by this call leave without waiting for the next tick
            return response

        return run

    async def _faulted(self, name: str, handler: Handler, request: Request) -> Response:
        decision = decide(name, self.world.faults, self.rng, self.limiter, self.clock())
        if decision.latency_s:
            await asyncio.sleep(decision.latency_s)
        if decision.verdict is Verdict.THROTTLE:
            return error(429, "Too Many Requests", {"Retry-After": str(decision.retry_after_s)})
        if decision.verdict is Verdict.ERROR:
            return error(503, "simulated platform error")
        try:
            response = await handler(request)
        except SimError as err:
            response = error(err.http_status, err.message)
        if decision.hold_s:
            # The action happened; the answer comes too late for the client, which times out.
            await asyncio.sleep(decision.hold_s)
        return response
