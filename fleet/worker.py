"""The RQ worker's runtime: one asyncio loop in a background thread, shared by every job.

RQ job functions are synchronous; they hand their coroutine to `run_job`, which runs it on the
worker's loop with the worker's services (Redis, Codema client). The worker class does not fork
(`SimpleWorker`), so connections, rate-limit state and metrics live as long as the process.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

from fleet.bootstrap import Services

T = TypeVar("T")

_runtime: WorkerRuntime | None = None


class WorkerRuntime:
    def __init__(self, services_factory: Callable[[], Services]) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="fleet-worker-loop", daemon=True)
        self._thread.start()
        # Services are built on the loop's thread so their connections belong to that loop.
        self.services: Services = self.call(self._build(services_factory))

    @staticmethod
    async def _build(factory: Callable[[], Services]) -> Services:
        return factory()

    def call(self, coro: Awaitable[T]) -> T:
        async def wrap() -> T:
            return await coro

        return asyncio.run_coroutine_threadsafe(wrap(), self.loop).result()

    def close(self) -> None:
        self.call(self.services.aclose())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)


def install(runtime: WorkerRuntime | None) -> None:
    global _runtime
    _runtime = runtime


def run_job(job: Callable[[Services], Awaitable[T]]) -> T:
    """Run a job's coroutine on the worker loop with the worker's services."""
    if _runtime is None:
        raise RuntimeError("no worker runtime installed: jobs run inside `fleet worker`")
    return _runtime.call(job(_runtime.services))
