"""Test-only memory probe for the soak's diagnostic runs (`python -m tests.e2e.chaos.soak
--trace-memory DIR`); never on a production path: it is only importable when this directory is
put on PYTHONPATH, which only that option does.

In a `fleet web` process started with SOAK_TRACEMALLOC_DIR set, tracemalloc runs from start-up
(SOAK_TRACEMALLOC_FRAMES frames per allocation) and each SIGUSR2 writes a snapshot, after a full
collection, to `<dir>/web-<pid>-<n>.snap`. Other processes are left alone.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import tracemalloc
from pathlib import Path
from types import FrameType

_DIR = os.environ.get("SOAK_TRACEMALLOC_DIR", "")


def _is_web() -> bool:
    return len(sys.argv) > 1 and Path(sys.argv[0]).name == "fleet" and sys.argv[1] == "web"


def _dump(signum: int, frame: FrameType | None) -> None:
    gc.collect()
    n = len(list(Path(_DIR).glob(f"web-{os.getpid()}-*.snap")))
    tracemalloc.take_snapshot().dump(str(Path(_DIR) / f"web-{os.getpid()}-{n}.snap"))


if _DIR and _is_web():
    tracemalloc.start(int(os.environ.get("SOAK_TRACEMALLOC_FRAMES", "8")))
    signal.signal(signal.SIGUSR2, _dump)
