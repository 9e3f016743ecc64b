"""A real `fleet web` (uvicorn in a thread) wired to the simulator and the suite's Redis, for the
allocator's integration tests. Real HTTP both ways: our API is called concurrently over sockets, and
the simulator's session and telemetry webhooks reach our `/webhooks/*` routes.

`fleet_web` (fixture, needs `sim`): a started FleetWeb with the default app version `game v1`
(Seat, 4 sockets) on the simulator. `fleet_web.restart(**settings)` is not offered: build another
with `start_fleet_web(sim, redis_url, prefix, **settings)`.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn

from codema.schemas import DeploymentStatus
from fleet.app import build_app
from fleet.bootstrap import Services, bootstrap
from fleet.models import Fleet, Policy
from fleet.settings import Settings
from fleet.store import Store
from tests.fixtures.sim import RunningSim, wait_for
from tests.fixtures.web import API_TOKEN, WEBHOOK_SECRET, DummyJobs

CITY = {
    "London": {"field": "city", "values": ["London"], "filter_type": "any"},
    "Paris": {"field": "city", "values": ["Paris"], "filter_type": "any"},
    "Tokyo": {"field": "city", "values": ["Tokyo"], "filter_type": "any"},
    "Sydney": {"field": "city", "values": ["Sydney"], "filter_type": "any"},
}
UK_PLAYERS = ["81.2.69.160", "81.2.69.161"]  # the smoke check's players (GB in the GeoLite data)


@dataclass
class FleetWeb:
    url: str
    services: Services
    sim: RunningSim
    server: uvicorn.Server
    thread: threading.Thread
    sock: socket.socket

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {API_TOKEN}"}

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers=self.headers, timeout=30)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        self.sock.close()

    # --- setup helpers (run in the test's loop, with the test's own Store) ----------------------
    async def ready_deployment(
        self, store: Store, city: str = "London", app: str = "game", **body: Any
    ) -> str:
        """A deployment READY on the simulator and known to our Store (as a status poll would)."""
        rid = self.sim.deploy(app, "v1", filters=[CITY[city]], **body)
        self.sim.wait_status(rid, "READY")
        await self.refresh(store, rid)
        return rid

    async def refresh(self, store: Store, rid: str) -> None:
        code, status = self.sim.platform("GET", f"/v1/status/{rid}")
        assert code == 200, status
        await store.deployments.apply(DeploymentStatus.model_validate(status).to_report("poll"), time.time())

    async def fleet_policy(
        self, store: Store, *, maximum: int = 3, minimum: int = 1, app: str = "game"
    ) -> None:
        """An enabled fleet with one enabled policy linking `app v1` (so sessions may wait)."""
        await store.fleets.put_fleet(Fleet(name="f", enabled=True))
        data = {"filters": [{"field": "continent", "values": ["Europe"], "filter_type": "any"}]}
        policy = Policy(name="eu", enabled=True, type="Location", minimum=minimum, maximum=maximum,
                        threshold=0.8, data=data)  # fmt: skip
        await store.fleets.put_policy("f", policy)
        await store.fleets.link("f", app, "v1", {"app": app, "version": "v1"})

    def used(self, rid: str) -> int:
        """The simulator's ground truth: sockets in use on a deployment."""
        d = self.sim.deployment(rid)
        return int(d.get("sockets_usage", d.get("used", 0)))


def start_fleet_web(sim: RunningSim, redis_url: str, prefix: str, **settings: Any) -> FleetWeb:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "redis_prefix": prefix,
        "codema_api_url": sim.base_url,
        "codema_api_token": sim.token,
        "webhook_secret": WEBHOOK_SECRET,
        "api_token": API_TOKEN,
        "public_url": url,
        "codema_max_attempts": 2,
        **settings,
    }
    services = bootstrap(Settings(**values), jobs=DummyJobs())  # type: ignore[arg-type]
    config = uvicorn.Config(build_app(services), log_config=None, access_log=False, lifespan="on",
                            ws="none", timeout_graceful_shutdown=2)  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 10, "fleet web to start")
    return FleetWeb(url, services, sim, server, thread, sock)


@pytest.fixture
def fleet_web(sim: RunningSim, redis_url: str, prefix: str) -> Iterator[FleetWeb]:
    sim.setup_app("game", "v1", kind="Seat", sockets=4)
    web = start_fleet_web(sim, redis_url, prefix)
    yield web
    web.stop()


async def poll(fn: Any, timeout_s: float = 10.0, what: str = "condition") -> Any:
    """Await `fn()` until truthy; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await fn()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.05)
