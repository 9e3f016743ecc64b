"""The chaos stack: a private Redis, the simulator, two web, two scaler and two worker processes
sharing one fleet configuration (`FLEET_CONFIG`, so the scaler re-applies it after Redis loses its
data), plus the handles a fault needs (kill a named process, restart it, restart Redis empty)."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import redis
import yaml

from fleet.devredis import PrivateRedis
from fleet.procs import Stack, wait_http

T = TypeVar("T")

APP, VERSION, FLEET = "chaos-game", "v1", "chaos"
SOCKETS = 4


@dataclass(frozen=True)
class PolicySpec:
    name: str
    continent: str
    minimum: int
    maximum: int


POLICIES = (
    PolicySpec("europe", "Europe", 2, 8),
    PolicySpec("north-america", "North America", 1, 5),
)

# Short timings so that a fault and its recovery fit in seconds (defaults are minutes).
SERVICE_ENV = {
    "FLEET_LEASE_TTL_S": "3",
    "FLEET_RECONCILE_INTERVAL_S": "5",
    "FLEET_DEPLOY_TIMEOUT_S": "8",
    "FLEET_RESERVATION_TTL_S": "5",
    "FLEET_SESSION_WAIT_S": "25",
    "FLEET_CODEMA_TIMEOUT_S": "2",
    "FLEET_SCALER_TICK_S": "0.5",
    "FLEET_LOG_LEVEL": "INFO",
}


def fleet_config(policies: tuple[PolicySpec, ...] = POLICIES) -> dict[str, Any]:
    return {
        "fleets": [
            {
                "name": FLEET,
                "enabled": True,
                "apps": [{"app": APP, "version": VERSION}],
                "policies": [
                    {
                        "name": p.name,
                        "enabled": True,
                        "type": "Location",
                        "minimum": p.minimum,
                        "maximum": p.maximum,
                        "threshold": 0.8,
                        "data": {
                            "filters": [{"field": "continent", "values": [p.continent], "filter_type": "any"}]
                        },
                        "idle_s": 8.0,
                        "cooldown_s": 5.0,
                        "hysteresis": 0.1,
                    }
                    for p in policies
                ],
            }
        ]
    }


def poll(what: str, fn: Callable[[], T | None], timeout_s: float, every_s: float = 0.2) -> T:
    """The first truthy value of fn() within the deadline, else AssertionError naming `what`."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, redis.RedisError):
            last = fn()
            if last:
                return last
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what} (last: {last!r})")


@dataclass
class ChaosStack:
    seed: int
    webs: int = 2
    scalers: int = 2
    workers: int = 2
    sim_extra: tuple[str, ...] = ()
    policies: tuple[PolicySpec, ...] = POLICIES
    sockets: int = SOCKETS
    env: dict[str, str] = field(default_factory=dict)
    prefix: str = field(default_factory=lambda: f"chaos{uuid.uuid4().hex[:6]}")
    redis_lost: bool = False  # Redis was restarted without its data at least once
    stack: Stack = field(init=False)
    config_path: Path = field(init=False)
    _rr: itertools.cycle[int] = field(init=False)

    # --- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> ChaosStack:
        self.config_path = Path(tempfile.mkstemp(prefix="chaos-fleet-", suffix=".yaml")[1])
        self.config_path.write_text(yaml.safe_dump(fleet_config(self.policies)))
        sim_args = ("--boot-s", "1", "--stop-s", "0.5", "--seed", str(self.seed), "--tick-s", "0.05")
        self.stack = Stack(
            sim_args=(*sim_args, *self.sim_extra),
            env={
                **SERVICE_ENV,
                "FLEET_REDIS_PREFIX": self.prefix,
                "FLEET_CONFIG": str(self.config_path),
                **self.env,
            },
        )
        try:
            self.stack.start(webs=self.webs, scalers=0, workers=0)
            self._rr = itertools.cycle(range(len(self.stack.web_ports)))
            self.create_app_version()
            for i in range(self.scalers):
                self.stack.scaler_metrics_ports.append(_free_port())
                self.spawn_scaler(i)
            for i in range(self.workers):
                self.stack.worker_metrics_ports.append(_free_port())
                self.spawn_worker(i)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, keep_logs: Path | None = None) -> None:
        if keep_logs is not None and self.stack.group is not None:
            self.stack.stop()
            shutil.copytree(self.stack.group.dir, keep_logs, dirs_exist_ok=True)
        self.stack.cleanup()
        with contextlib.suppress(OSError):
            self.config_path.unlink()

    def __enter__(self) -> ChaosStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def group(self) -> Any:
        assert self.stack.group is not None
        return self.stack.group

    def spawn_scaler(self, i: int) -> None:
        self.group.fleet(f"scaler{i}", "scaler", "--metrics-port", str(self.stack.scaler_metrics_ports[i]))

    def spawn_worker(self, i: int) -> None:
        self.group.fleet(f"worker{i}", "worker", "--metrics-port", str(self.stack.worker_metrics_ports[i]))

    def restart(self, name: str) -> None:
        """Start a killed scaler or worker again under the same name and metrics port."""
        kind, i = name.rstrip("0123456789"), int(name[len(name.rstrip("0123456789")) :])
        {"scaler": self.spawn_scaler, "worker": self.spawn_worker}[kind](i)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        self.group.kill(name, sig)

    # --- HTTP --------------------------------------------------------------------------------------
    @property
    def api_headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.stack.api_token}"}

    @property
    def platform_headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.stack.platform_token}"}

    def web_url(self) -> str:
        """The web processes in turn, as a load balancer would."""
        return f"http://127.0.0.1:{self.stack.web_ports[next(self._rr)]}"

    def api(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return httpx.request(method, self.web_url() + path, headers=self.api_headers, timeout=15, **kw)

    def sim(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return httpx.request(
            method, self.stack.sim_url + path, headers=self.platform_headers, timeout=15, **kw
        )

    def truth(self) -> dict[str, Any]:
        r = self.sim("GET", "/_sim/state")
        r.raise_for_status()
        return dict(r.json())

    def faults(self, **changes: Any) -> dict[str, Any]:
        r = self.sim("POST", "/_sim/faults", json=changes)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def calls(self) -> dict[str, Any]:
        return dict(self.sim("GET", "/_sim/calls").json())

    def our_deployments(self) -> dict[str, dict[str, Any]]:
        r = self.api("GET", "/v1/deployments", params={"limit": 1000})
        r.raise_for_status()
        return {d["request_id"]: d for d in r.json()["data"]}

    def create_app_version(self) -> None:
        self.sim("POST", "/v1/app", json={"name": APP, "is_active": True, "image": ""})
        r = self.sim(
            "POST",
            f"/v1/app/{APP}/version",
            json={
                "name": VERSION,
                "docker_repository": "registry.local",
                "docker_image": APP,
                "docker_tag": "1",
                "req_cpu": 256,
                "req_memory": 256,
                # a stuck deployment ends in ERROR after this (the platform's own limit)
                "time_to_deploy": 15,
                "session_config": {
                    "kind": "Seat",
                    "sockets": self.sockets,
                    "autodeploy": False,
                    "empty_ttl": 60,
                },
            },
        )
        assert r.status_code == 200, r.text

    # --- Redis ---------------------------------------------------------------------------------------
    def redis(self, *, decode: bool = True) -> redis.Redis:
        assert self.stack.redis_url is not None
        return redis.Redis.from_url(self.stack.redis_url, decode_responses=decode, socket_timeout=2)

    def leader(self) -> str | None:
        """The Procfile name of the scaler holding the lease (its pid is in the lease's holder)."""
        with self.redis() as r:
            raw = r.get(f"{self.prefix}:scaler:lease")
        if not raw:
            return None
        holder = raw.rpartition("|")[0]
        pid = holder.split(":")[1] if holder.count(":") >= 2 else ""
        for name, proc in self.group.procs.items():
            if name.startswith("scaler") and str(proc.pid) == pid and proc.alive():
                return str(name)
        return None

    def restart_redis_empty(self, down_s: float) -> None:
        """Redis goes away for `down_s`, then comes back on the same port without any data."""
        old = self.stack.redis
        assert old is not None
        with contextlib.suppress(ProcessLookupError):
            assert old.proc is not None
            os.kill(old.proc.pid, signal.SIGKILL)
        old.stop()
        self.redis_lost = True
        time.sleep(down_s)
        self.stack.redis = PrivateRedis(port=old.port).start()

    def wait_ready(self, timeout_s: float = 60) -> None:
        """Every web answers /readyz, a leader leads, and each policy has its minimum READY."""
        for port in self.stack.web_ports:
            wait_http(f"http://127.0.0.1:{port}/readyz", timeout_s=timeout_s)
        poll("a scaler leader", self.leader, timeout_s)

        def minimums() -> bool:
            ready = [d for d in self.truth()["deployments"] if d["status"].endswith("READY")]
            return all(
                sum(f"policy:{p.name}" in d["tags"] for d in ready) >= p.minimum for p in self.policies
            )

        poll("each policy's minimum READY", minimums, timeout_s)


def _free_port() -> int:
    from fleet.devredis import free_port

    return free_port()
