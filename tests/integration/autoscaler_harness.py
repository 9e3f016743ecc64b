"""Helpers for the autoscaler's integration tests: services on the suite's Redis and a running
simulator, in-process scaler loops with in-process jobs, fleet setup, polling with a deadline.

Webhooks go to an address nobody listens on, so every test also shows the scaler works on status
polls and the platform's list alone (the v1 platform sends no webhook when a deployment ends).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from redis.asyncio import Redis

from autoscaler.jobs import InlineJobs
from autoscaler.loop import ScalerLoop
from codema.client import CodemaClient
from fleet.bootstrap import Services, bootstrap
from fleet.models import Fleet, Policy
from fleet.settings import Settings
from fleet.store import AppVersionFacts, Store
from tests.fixtures.sim import RunningSim

T = TypeVar("T")

FAST = {
    "scaler_tick_s": 0.1,
    "lease_ttl_s": 2.0,
    "reconcile_interval_s": 0.5,
    "deploy_timeout_s": 30.0,
    "default_idle_s": 1.0,
    "public_url": "http://127.0.0.1:9",  # nobody listens: no webhooks reach us
    "webhook_secret": "whsec-autoscaler-tests-0123456789",
    "account_max_deployments": 100,
    "account_max_creates_per_minute": 600,
}


def settings_for(redis_url: str, prefix: str, **overrides: Any) -> Settings:
    return Settings(redis_url=redis_url, redis_prefix=prefix, **{**FAST, **overrides})


def services_for(settings: Settings, sim: RunningSim) -> Services:
    store = Store(Redis.from_url(settings.redis_url, decode_responses=True), settings.redis_prefix)
    client = CodemaClient(
        sim.base_url, sim.token, timeout_s=3.0, max_attempts=2, base_delay_s=0.05, circuit_reset_s=1.0
    )
    jobs = InlineJobs()
    services = bootstrap(settings, store=store, client=client, jobs=jobs)  # type: ignore[arg-type]
    jobs.services = services
    return services


def jobs_of(services: Services) -> InlineJobs:
    jobs = services.jobs
    assert isinstance(jobs, InlineJobs)
    return jobs


@dataclass
class RunningScaler:
    loop: ScalerLoop
    task: asyncio.Task[None]
    stop_event: asyncio.Event

    @property
    def services(self) -> Services:
        return self.loop.services

    async def stop(self) -> None:
        self.stop_event.set()
        await asyncio.wait_for(self.task, 10)
        await self.loop.close()
        await jobs_of(self.services).drain()

    async def kill(self) -> None:
        """Dies without a word: the lease is not released, queued jobs are lost. Bounded: a task
        that outlives its cancellation fails the test here, with its stack, instead of hanging it."""
        self.task.cancel()
        jobs_of(self.services).close()
        done, _ = await asyncio.wait({self.task}, timeout=10)
        if not done:
            self.task.print_stack()
            raise AssertionError("the scaler task outlived its cancellation by 10 s")
        if self.loop._events is not None:
            await self.loop._events.aclose()


def start_scaler(services: Services, holder: str) -> RunningScaler:
    loop = ScalerLoop(services, holder)
    stop = asyncio.Event()
    task = asyncio.get_running_loop().create_task(loop.run(stop=stop))
    return RunningScaler(loop, task, stop)


async def close_services(*all_services: Services) -> None:
    for services in all_services:
        jobs_of(services).close()
        await services.client.aclose()
        await services.store.aclose()


POLICY: dict[str, Any] = {
    "name": "eu",
    "enabled": True,
    "type": "Location",
    "minimum": 1,
    "maximum": 4,
    "threshold": 0.5,
    "data": {"filters": [{"field": "continent", "values": ["Europe"], "filter_type": "any"}]},
    "idle_s": 1.0,
    "cooldown_s": 0.5,
}


async def setup_fleet(
    store: Store,
    *,
    fleet: str = "f",
    app: str = "game",
    version: str = "v1",
    sockets: int = 4,
    fleet_fields: dict[str, Any] | None = None,
    **policy: Any,
) -> Policy:
    await store.fleets.put_fleet(Fleet(name=fleet, enabled=True, **(fleet_fields or {})))
    await store.fleets.link(fleet, app, version, {"app": app, "app_version": version, "fleet": fleet})
    await store.fleets.put_app_version(AppVersionFacts(app, version, "Seat", sockets, 60), ttl_s=3600)
    p = Policy.model_validate({**POLICY, **policy})
    await store.fleets.put_policy(fleet, p)
    return p


async def eventually(
    check: Callable[[], Awaitable[T | None]] | Callable[[], T | None], timeout_s: float = 10.0, what: str = ""
) -> T:
    """Poll until `check()` is truthy (sync or async); fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what or check}")
        await asyncio.sleep(0.05)


def live_on_platform(sim: RunningSim, *, policy: str | None = None) -> list[dict[str, Any]]:
    """The simulator's ground truth: deployments not TERMINATED/ERROR (optionally of one policy)."""
    out = []
    for d in sim.state()["deployments"]:
        status = str(d.get("status") or d.get("current_status") or "")
        if status.endswith(("TERMINATED", "ERROR")):
            continue
        if policy is not None and f"policy:{policy}" not in (d.get("tags") or []):
            continue
        out.append(d)
    return out


def calls(sim: RunningSim, endpoint: str) -> int:
    return int(sim.calls()["calls"].get(endpoint, 0))


def add_players(sim: RunningSim, request_id: str, n: int, app: str = "game", version: str = "v1") -> str:
    ips = [f"81.2.69.{160 + i}" for i in range(n)]
    code, body = sim.platform(
        "POST",
        "/v1/session",
        {"app_name": app, "version_name": version, "ip_list": ips, "deployment_request_id": request_id},
    )
    assert code == 200, body
    return str(body["session_id"])
