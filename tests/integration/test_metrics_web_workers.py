"""`fleet web --workers 2`: both uvicorn worker processes count, and /metrics (answered by either)
adds their counters up (prometheus-client multiprocess mode over the instance's directory); the
aggregated exposition passes `promtool check metrics`."""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from fleet.devredis import free_port
from fleet.procs import ProcessGroup, wait_http
from tests.unit.dashboards_promql import run_promtool

REJECTIONS = "fleet_webhook_rejections_total"


def rejections(text: str) -> float:
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == REJECTIONS and s.labels.get("kind") == "deployment"
    )


def per_process(metrics_dir: Path, scratch: Path) -> dict[str, float]:
    """Each worker's own count: its counter file aggregated alone."""
    out = {}
    for db in sorted(metrics_dir.glob("counter_*.db")):
        alone = scratch / db.stem
        alone.mkdir(exist_ok=True)
        shutil.copy(db, alone / db.name)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(alone))  # type: ignore[no-untyped-call]
        out[db.stem] = rejections(generate_latest(registry).decode())
    return out


def web_group(redis_url: str, tmp_path: Path, workers: int) -> Iterator[tuple[str, Path]]:
    port, metrics_dir = free_port(), tmp_path / "metrics"
    group = ProcessGroup(
        {
            "PATH": "/usr/bin:/bin",
            "FLEET_REDIS_URL": redis_url,
            "FLEET_REDIS_PREFIX": f"t{uuid.uuid4().hex[:10]}",
            "FLEET_WEBHOOK_SECRET": "metrics-test-secret-0123456789",
            "FLEET_METRICS_DIR": str(metrics_dir),
            "CODEMA_API_URL": "http://127.0.0.1:9",
        },
        dir=tmp_path / "logs",
    )
    group.dir.mkdir()
    try:
        proc = group.fleet(
            "web", "web", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)
        )
        wait_http(f"http://127.0.0.1:{port}/healthz", proc=proc)
        yield f"http://127.0.0.1:{port}", metrics_dir
    finally:
        group.stop()


@pytest.fixture
def web_two_workers(redis_url: str, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    yield from web_group(redis_url, tmp_path, 2)


@pytest.fixture
def web_one_worker(redis_url: str, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    yield from web_group(redis_url, tmp_path, 1)


def test_one_worker_keeps_its_values_in_memory(web_one_worker: tuple[str, Path]) -> None:
    # No multiprocess files (they cost a file write and a getpid per update), and /metrics
    # renders the process itself: its counters and the process_* families of the default registry.
    url, metrics_dir = web_one_worker
    with httpx.Client(base_url=url, timeout=10) as client:
        for _ in range(3):
            assert client.post("/webhooks/deployments?token=wrong", json={}).status_code == 401
        body = client.get("/metrics").text
    assert not metrics_dir.exists() or not any(metrics_dir.iterdir())
    assert rejections(body) == 3
    assert "process_cpu_seconds_total" in body
    check = run_promtool("check", "metrics", stdin=body)
    assert check.returncode == 0, check.stdout + check.stderr


def test_counters_of_both_workers_add_up(web_two_workers: tuple[str, Path], tmp_path: Path) -> None:
    url, metrics_dir = web_two_workers
    sent = 0
    # No keep-alive: every request is a new connection, which either worker may accept.
    with httpx.Client(base_url=url, limits=httpx.Limits(max_keepalive_connections=0), timeout=10) as client:

        def reject(_: int) -> int:
            return client.post("/webhooks/deployments?token=wrong", json={}).status_code

        deadline = time.monotonic() + 30
        with ThreadPoolExecutor(max_workers=8) as pool:
            while True:
                codes = list(pool.map(reject, range(24)))
                assert all(400 <= c < 500 for c in codes), codes
                sent += len(codes)
                counts = per_process(metrics_dir, tmp_path)
                if sum(1 for v in counts.values() if v > 0) >= 2 or time.monotonic() > deadline:
                    break
        assert sum(1 for v in counts.values() if v > 0) == 2, f"one worker served everything: {counts}"
        assert sum(counts.values()) == sent

        # Whichever worker answers the scrape, it reports the family's total.
        for _ in range(4):
            body = client.get("/metrics").text
            assert rejections(body) == sent

    check = run_promtool("check", "metrics", stdin=body)
    assert check.returncode == 0, check.stdout + check.stderr
