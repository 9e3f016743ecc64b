"""`fleet.app:create_app`, the factory each uvicorn worker of `fleet web` calls, in a process of its own."""

from __future__ import annotations

import subprocess
import sys
import uuid

PROBE = """
import gc
from fleet.app import create_app
before = gc.get_freeze_count()
app = create_app()
print(before, gc.get_freeze_count(), sorted(p for p in app.front_door if not p.endswith("/")))
"""


def test_the_factory_freezes_what_start_up_made_and_opens_the_front_door(redis_url: str) -> None:
    # Frozen objects are never scanned by the collector: a full collection under callback load is
    # then a few ms instead of tens (benchmarks/webhooks.py), and nothing from start-up is garbage.
    env = {
        "PATH": "/usr/bin:/bin",
        "FLEET_REDIS_URL": redis_url,
        "FLEET_REDIS_PREFIX": f"t{uuid.uuid4().hex[:10]}",
        "FLEET_WEBHOOK_SECRET": "factory-test-secret-0123456789",
        "CODEMA_API_URL": "http://127.0.0.1:9",
    }
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60, check=True
    ).stdout.split(maxsplit=2)
    before, after, paths = int(out[0]), int(out[1]), out[2].strip()
    assert before == 0 and after > 10_000, out  # the modules and the app: tens of thousands of objects
    assert paths == "['/webhooks/deployments', '/webhooks/sessions', '/webhooks/telemetry']"
