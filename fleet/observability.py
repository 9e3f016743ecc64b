"""Prometheus exposition for every process: multiprocess aggregation when the process family
shares a PROMETHEUS_MULTIPROC_DIR (web with several workers), the default registry otherwise."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client import REGISTRY as DEFAULT_REGISTRY

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_multiprocess_dir(path: str) -> None:
    """Wipe and create the directory, then point prometheus-client at it.

    Must run before `prometheus_client` values are created (before importing fleet.metrics), in
    the parent process, so that every forked worker writes there.
    """
    shutil.rmtree(path, ignore_errors=True)
    Path(path).mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = path  # read by prometheus_client itself, not by our code


def render_metrics(multiproc_dir: str | None) -> tuple[bytes, str]:
    """The exposition text of this process family (aggregated over `multiproc_dir` when given)."""
    if multiproc_dir:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=multiproc_dir)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(DEFAULT_REGISTRY), CONTENT_TYPE_LATEST
