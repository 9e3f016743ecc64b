"""Start the service's real processes (simulator, web, scaler, worker) as a group, the way the
Procfile does, for `fleet demo`, end-to-end tests and chaos runs."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fleet.devredis import PrivateRedis, free_port

HEALTH_TIMEOUT_S = 60.0
STOP_GRACE_S = 8.0


def fleet_command() -> list[str]:
    """`fleet` from this interpreter's environment (works inside and outside a virtualenv)."""
    exe = Path(sys.executable).with_name("fleet")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "fleet.cli"]


def http_ok(url: str, timeout_s: float = 1.0, *, any_answer: bool = False) -> bool:
    """A 2xx from `url` (or, with any_answer, any HTTP answer at all: the server is up)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            return 200 <= int(r.status) < 300
    except urllib.error.HTTPError:
        return any_answer
    except (urllib.error.URLError, OSError, ValueError):
        return False


@dataclass
class Proc:
    name: str
    args: list[str]
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None


@dataclass
class ProcessGroup:
    """A set of named processes sharing one environment; logs go to `dir/<name>.log`."""

    env: dict[str, str]
    dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="fleet-procs-")))
    procs: dict[str, Proc] = field(default_factory=dict)

    def spawn(self, name: str, args: list[str], extra_env: Mapping[str, str] | None = None) -> Proc:
        log = self.dir / f"{name}.log"
        with open(log, "ab") as out:
            popen = subprocess.Popen(
                args,
                env={**self.env, **(extra_env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proc = Proc(name, args, popen, log)
        self.procs[name] = proc
        return proc

    def fleet(self, name: str, *args: str, extra_env: Mapping[str, str] | None = None) -> Proc:
        return self.spawn(name, [*fleet_command(), *args], extra_env)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(timeout=STOP_GRACE_S)

    def logs(self, name: str, tail: int = 4000) -> str:
        proc = self.procs.get(name)
        if proc is None or not proc.log.exists():
            return ""
        return proc.log.read_text(errors="replace")[-tail:]

    def all_logs(self, tail: int = 1500) -> str:
        return "\n".join(f"--- {n} ---\n{self.logs(n, tail)}" for n in self.procs)

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
        for proc in self.procs.values():
            if proc.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.popen.wait()


def wait_http(
    url: str, timeout_s: float = HEALTH_TIMEOUT_S, proc: Proc | None = None, *, any_answer: bool = False
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if http_ok(url, any_answer=any_answer):
            return
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode} before {url} answered")
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout_s:.0f} s")


@dataclass
class Stack:
    """Redis (private unless given), the simulator, and the Procfile processes on free ports."""

    redis_url: str | None = None
    sim_args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    platform_token: str = "sim-platform-token"
    api_token: str = "fleet-api-token"
    webhook_secret: str = "fleet-webhook-secret-0123456789"
    redis: PrivateRedis | None = None
    group: ProcessGroup | None = None
    sim_port: int = field(default_factory=free_port)
    web_ports: list[int] = field(default_factory=list)
    # `--metrics-port` of each scaler and worker (they serve their own registry, see observability)
    scaler_metrics_ports: list[int] = field(default_factory=list)
    worker_metrics_ports: list[int] = field(default_factory=list)

    @property
    def sim_url(self) -> str:
        return f"http://127.0.0.1:{self.sim_port}"

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_ports[0]}"

    def start_redis(self) -> str:
        if self.redis_url:
            return self.redis_url
        self.redis = PrivateRedis().start()
        self.redis_url = self.redis.url
        return self.redis_url

    def base_env(self) -> dict[str, str]:
        return {
            **os.environ,
            "FLEET_REDIS_URL": self.start_redis(),
            "CODEMA_API_URL": self.sim_url,
            "CODEMA_API_TOKEN": self.platform_token,
            "FLEET_API_TOKEN": self.api_token,
            "FLEET_WEBHOOK_SECRET": self.webhook_secret,
            **self.env,
        }

    def metrics_targets(self) -> dict[str, list[str]]:
        """`host:port` of every process's /metrics, by Procfile name (a Prometheus scrape config)."""
        return {
            "web": [f"127.0.0.1:{p}" for p in self.web_ports],
            "scaler": [f"127.0.0.1:{p}" for p in self.scaler_metrics_ports],
            "worker": [f"127.0.0.1:{p}" for p in self.worker_metrics_ports],
        }

    def start(self, *, webs: int = 1, scalers: int = 1, workers: int = 1, web_workers: int = 1) -> Stack:
        try:
            env = self.base_env()
            self.web_ports = [free_port() for _ in range(webs)]
            env.setdefault("FLEET_PUBLIC_URL", f"http://127.0.0.1:{self.web_ports[0]}")
            self.group = ProcessGroup(env)
            sim = self.group.fleet(
                "sim", "sim", "--host", "127.0.0.1", "--port", str(self.sim_port), *self.sim_args
            )
            wait_http(f"{self.sim_url}/v1/locations", proc=sim, any_answer=True)
            for i, port in enumerate(self.web_ports):
                web = self.group.fleet(
                    f"web{i}",
                    "web",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--workers",
                    str(web_workers),
                    extra_env={"FLEET_METRICS_DIR": str(self.group.dir / f"metrics-web{i}")},
                )
                wait_http(f"http://127.0.0.1:{port}/healthz", proc=web)
            self.scaler_metrics_ports = [free_port() for _ in range(scalers)]
            for i, port in enumerate(self.scaler_metrics_ports):
                self.group.fleet(f"scaler{i}", "scaler", "--metrics-port", str(port))
            self.worker_metrics_ports = [free_port() for _ in range(workers)]
            for i, port in enumerate(self.worker_metrics_ports):
                self.group.fleet(f"worker{i}", "worker", "--metrics-port", str(port))
            return self
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.group is not None:
            self.group.stop()
        if self.redis is not None:
            self.redis.stop()

    def cleanup(self) -> None:
        self.stop()
        if self.group is not None:
            shutil.rmtree(self.group.dir, ignore_errors=True)

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
