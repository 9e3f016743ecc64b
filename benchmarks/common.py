"""Helpers every benchmark may use: the machine it ran on, percentiles, writing results.

Each benchmark module (`python -m benchmarks.<name>`) writes `benchmarks/results/<name>.json`
with at least `ratios` (each figure against a baseline measured in the same run) and `goals`
(name -> bool); `python -m benchmarks` runs them all and writes `benchmarks/RESULTS.md`.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).parent / "results"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def redis_version() -> str:
    """The server's version: the one FLEET_REDIS_URL points at, else the installed binary's."""
    url = os.environ.get("FLEET_REDIS_URL")
    if url:
        try:
            import redis

            info = redis.Redis.from_url(url, socket_timeout=2).info("server")
            return str(info.get("redis_version", "unknown"))
        except Exception:  # any failure: fall back to the binary
            pass
    try:
        out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return "not installed"
    for part in out.split():
        if part.startswith("v="):
            return part[2:]
    return out.strip() or "unknown"


def machine() -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "redis": redis_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of unsorted values; 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    k = max(1, math.ceil(q / 100 * len(ordered))) - 1
    return float(ordered[k])


def percentiles(values: Iterable[float], qs: Sequence[float] = (50, 90, 99)) -> dict[str, float]:
    data = list(values)
    return {f"p{q:g}": percentile(data, q) for q in qs}


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path
