"""A private Prometheus (Debian's binary) scraping a running stack, for `fleet demo` and e2e tests.

It gets a free port, its own temporary storage, a generated scrape config with one job per
process family (`fleet-web`, `fleet-scaler`, `fleet-worker`, as in dashboards/prometheus.example.yml)
and the alert rules; `query` and `query_range` read its HTTP API. Never used by the service itself.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import yaml

from fleet.devredis import free_port

START_TIMEOUT_S = 30.0
STOP_GRACE_S = 5.0
RULES = Path(__file__).resolve().parents[1] / "dashboards" / "alerts.yml"


def prometheus_binary() -> str | None:
    return shutil.which("prometheus") or next(
        (p for p in ("/usr/bin/prometheus", "/usr/sbin/prometheus") if Path(p).exists()), None
    )


def scrape_config(
    targets: Mapping[str, Sequence[str]], interval_s: float, rules: Sequence[str] = ()
) -> dict[str, Any]:
    """One job per process family (`fleet-<name>`); families without targets are left out."""
    interval = f"{max(1, round(interval_s))}s"
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval, "scrape_timeout": interval},
        "rule_files": list(rules),
        "scrape_configs": [
            {"job_name": f"fleet-{name}", "static_configs": [{"targets": list(hosts)}]}
            for name, hosts in targets.items()
            if hosts
        ],
    }


class PrometheusError(RuntimeError):
    pass


class PrivatePrometheus:
    """`prometheus` on a free loopback port with its own storage directory, stopped on close."""

    def __init__(
        self,
        targets: Mapping[str, Sequence[str]],
        *,
        scrape_interval_s: float = 1.0,
        rules: Path | None = RULES,
        port: int | None = None,
    ) -> None:
        self.targets = {k: list(v) for k, v in targets.items()}
        self.scrape_interval_s = scrape_interval_s
        self.rules_file = rules if rules is not None and rules.exists() else None
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="fleet-prometheus-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self._http = httpx.Client(base_url=self.url, timeout=10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.dir / "prometheus.log"

    def start(self) -> PrivatePrometheus:
        binary = prometheus_binary()
        if binary is None:
            raise PrometheusError("prometheus not found: install Debian's prometheus package")
        config = self.dir / "prometheus.yml"
        rules = [str(self.rules_file)] if self.rules_file else []
        config.write_text(yaml.safe_dump(scrape_config(self.targets, self.scrape_interval_s, rules)))
        args = [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={self.dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=1d",
            "--log.level=warn",
        ]
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.started_at = time.time()
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise PrometheusError(f"prometheus exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                if self._http.get("/-/ready").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise PrometheusError(f"prometheus not ready within {START_TIMEOUT_S:.0f} s: {self.log_tail()}")

    def log_tail(self, chars: int = 2000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def _api(self, path: str, params: Mapping[str, str | float]) -> Any:
        r = self._http.get(f"/api/v1/{path}", params=dict(params))
        body = r.json()
        if r.status_code != 200 or body.get("status") != "success":
            raise PrometheusError(f"{path} {params.get('query')!r}: {body.get('error', r.text[:300])}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant vector: `[{"metric": {...}, "value": [t, "v"]}, ...]`."""
        return list(self._api("query", {"query": expr})["result"])

    def query_range(self, expr: str, start: float, end: float, step_s: float) -> list[dict[str, Any]]:
        """Range matrix: `[{"metric": {...}, "values": [[t, "v"], ...]}, ...]`."""
        params: dict[str, str | float] = {"query": expr, "start": start, "end": end, "step": step_s}
        return list(self._api("query_range", params)["result"])

    def targets_health(self) -> dict[str, str]:
        """`job instance` -> health (up, down, unknown) of every active target."""
        active = self._api("targets", {"state": "active"})["activeTargets"]
        return {f"{t['labels']['job']} {t['labels']['instance']}": t["health"] for t in active}

    def rules(self) -> dict[str, str]:
        """Alert name -> health (ok, err, unknown) of every loaded alerting rule."""
        groups = self._api("rules", {"type": "alert"})["groups"]
        return {r["name"]: r["health"] for g in groups for r in g["rules"]}

    def stop(self) -> None:
        self._http.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PrivatePrometheus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
