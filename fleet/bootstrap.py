"""The composition root: builds the object graph from settings. Nothing connects until used.

Procfile commands call `bootstrap(settings)` with real adapters; tests pass fakes or their own
store/client/clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from redis.asyncio import Redis

from fleet.jobs import JobQueue
from fleet.settings import Settings
from fleet.store import Store

if TYPE_CHECKING:
    from codema.client import CodemaClient

Clock = Callable[[], float]


@dataclass
class Services:
    settings: Settings
    store: Store
    client: CodemaClient
    jobs: JobQueue
    clock: Clock = time.time
    extras: dict[str, object] = field(default_factory=dict)  # per-process helpers (caches, waiters)

    async def aclose(self) -> None:
        await self.client.aclose()
        await self.store.aclose()
        self.jobs.close()


def redis_client(settings: Settings, *, socket_timeout_s: float | None = 5.0) -> Redis:
    """An async Redis client; blocking readers pass a socket timeout longer than their block."""
    return Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        socket_timeout=socket_timeout_s,
        socket_connect_timeout=5.0,
        health_check_interval=30,
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


def bootstrap(
    settings: Settings,
    *,
    store: Store | None = None,
    client: CodemaClient | None = None,
    jobs: JobQueue | None = None,
    clock: Clock = time.time,
) -> Services:
    store = store or Store(redis_client(settings), settings.redis_prefix)
    return Services(
        settings=settings,
        store=store,
        client=client or build_client(settings, store, clock),
        jobs=jobs or JobQueue.from_url(settings.redis_url, store.keys.queue_name()),
        clock=clock,
    )
