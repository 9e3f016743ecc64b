"""Prometheus exposition for every process.

Scrape scheme (one target per process family, see the README's metrics section):
- web: uvicorn workers are separate processes. They share one PROMETHEUS_MULTIPROC_DIR per web
  instance, wiped at start; `/metrics` on the web port aggregates the directory on every scrape
  (counters and histograms add up over the workers).
- scaler and worker do not fork (the worker is RQ's SimpleWorker): each serves its own default
  registry on `--metrics-port`.
- Values that live in Redis are read at scrape time by collectors (`fleet.collectors`): the Redis
  probe in every process, the RQ queue in the scaler.

This module must not import prometheus_client at import time: prometheus_client chooses between
in-memory and multiprocess values when it is first imported, and `fleet web` imports this module
before it points PROMETHEUS_MULTIPROC_DIR at the fresh directory.
"""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from fleet.settings import Settings

if TYPE_CHECKING:
    from prometheus_client.core import Metric
    from prometheus_client.registry import Collector, CollectorRegistry

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
Role = Literal["web", "scaler", "worker"]


def prepare_multiprocess_dir(path: str) -> None:
    """Wipe and create the directory, then point prometheus-client at it.

    Must run before prometheus_client is first imported (before fleet.metrics), in the parent
    process, so that every worker process writes there.
    """
    shutil.rmtree(path, ignore_errors=True)
    Path(path).mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = path  # read by prometheus_client itself, not by our code


def use_in_memory_metrics() -> None:
    """A single-process `fleet web`: no multiprocess directory, /metrics renders this process."""
    os.environ.pop(MULTIPROC_ENV, None)
    os.environ.pop("FLEET_METRICS_DIR", None)


def process_collectors(settings: Settings, role: Role) -> list[Collector]:
    """The scrape-time collectors a process of this role exports."""
    from fleet.collectors import RedisProbe, RqQueueCollector, probe_connection
    from fleet.store.keys import Keys

    connect = functools.partial(probe_connection, settings.redis_url)
    collectors: list[Collector] = [RedisProbe(connect)]
    if role == "scaler":
        collectors.append(RqQueueCollector(connect, Keys(settings.redis_prefix).queue_name()))
    return collectors


def install_collectors(settings: Settings, role: Role) -> None:
    """Register the role's collectors with the default registry (scaler and worker)."""
    from prometheus_client import REGISTRY

    for collector in process_collectors(settings, role):
        REGISTRY.register(collector)


def _registry(multiproc_dir: str | None, extra: Sequence[Collector]) -> CollectorRegistry:
    from prometheus_client import REGISTRY, CollectorRegistry
    from prometheus_client.registry import Collector

    registry = CollectorRegistry()
    if multiproc_dir:
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry, path=multiproc_dir)  # type: ignore[no-untyped-call]
    else:

        class _Default(Collector):
            def collect(self) -> Iterable[Metric]:
                return REGISTRY.collect()

        registry.register(_Default())
    for collector in extra:
        registry.register(collector)
    return registry


def render_metrics(multiproc_dir: str | None, extra: Iterable[Collector] = ()) -> tuple[bytes, str]:
    """The exposition text of this process family (aggregated over `multiproc_dir` when given),
    plus the scrape-time collectors in `extra`. Blocking (the collectors talk to Redis): run it in
    a thread from async code."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return generate_latest(_registry(multiproc_dir, list(extra))), CONTENT_TYPE_LATEST
