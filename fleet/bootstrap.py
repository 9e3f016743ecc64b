"""The composition root: builds the object graph from settings. Nothing connects until used.

Procfile commands call `bootstrap(settings)` with real adapters; tests pass fakes or their own
store/client/clock.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from fleet.jobs import JobQueue
from fleet.settings import Settings
from fleet.store import Retention, Store

if TYPE_CHECKING:
    from codema.client import CodemaClient

Clock = Callable[[], float]
# A step the scaler runs after Redis lost its data, once the deployments are rebuilt and before it
# acts: `await step(now)` -> True when done, False to run the whole rebuild again later.
RebuildStep = Callable[[float], Awaitable[bool]]
# A check the scaler leader runs every `session_audit_interval_s`: `await step(now)` -> how many
# things it put right.
AuditStep = Callable[[float], Awaitable[int]]


@dataclass
class Services:
    settings: Settings
    store: Store
    client: CodemaClient
    jobs: JobQueue
    clock: Clock = time.time
    extras: dict[str, object] = field(default_factory=dict)  # per-process helpers (caches, waiters)
    rebuild_steps: list[RebuildStep] = field(default_factory=list)
    audit_steps: list[AuditStep] = field(default_factory=list)

    async def aclose(self) -> None:
        await self.client.aclose()
        await self.store.aclose()
        self.jobs.close()


REDIS_CONNECT_TIMEOUT_S = 2.0
# One quick retry only: a Redis that is down must turn into a fast 503 / a skipped tick, not a
# request stuck in redis-py 8's default of several exponential retries.
REDIS_RETRY = Retry(ExponentialBackoff(cap=0.25, base=0.05), retries=1)


def redis_client(settings: Settings, *, socket_timeout_s: float | None = 5.0) -> Redis:
    """An async Redis client; blocking readers pass a socket timeout longer than their block."""
    return Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        socket_timeout=socket_timeout_s,
        socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S,
        health_check_interval=30,
        retry=REDIS_RETRY,
    )


def build_client(settings: Settings, store: Store, clock: Clock = time.time) -> CodemaClient:
    from codema.client import CodemaClient
    from fleet.store.limits import RedisPlatformLimits

    return CodemaClient(
        settings.codema_api_url,
        settings.codema_api_token.get_secret_value(),
        limits=RedisPlatformLimits(store.redis, store.keys),
        timeout_s=settings.codema_timeout_s,
        max_attempts=settings.codema_max_attempts,
        clock=clock,
    )


def retention_of(settings: Settings) -> Retention:
    return Retention(
        ended_session_s=settings.ended_session_keep_s,
        telemetry_s=settings.telemetry_keep_s,
        early_callback_s=settings.early_callback_keep_s,
    )


def bootstrap(
    settings: Settings,
    *,
    store: Store | None = None,
    client: CodemaClient | None = None,
    jobs: JobQueue | None = None,
    clock: Clock = time.time,
) -> Services:
    store = store or Store(redis_client(settings), settings.redis_prefix, retention_of(settings))
    services = Services(
        settings=settings,
        store=store,
        client=client or build_client(settings, store, clock),
        jobs=jobs or JobQueue.from_url(settings.redis_url, store.keys.queue_name()),
        clock=clock,
    )
    # The scaler (which may not import the allocator) rebuilds the allocator's sessions this way.
    services.rebuild_steps.append(_sessions_rebuild(services))
    services.audit_steps.append(_sessions_audit(services))
    return services


def _sessions_rebuild(services: Services) -> RebuildStep:
    async def step(now: float) -> bool:
        from allocator.rebuild import rebuild_sessions  # imported when used: allocator imports us

        return await rebuild_sessions(services, now)

    return step


def _sessions_audit(services: Services) -> AuditStep:
    async def step(now: float) -> int:
        from allocator.audit import audit_sessions

        return await audit_sessions(services, now)

    return step
