"""`fleet apply FILE` as a user runs it: a bad file is refused with each problem named, and
nothing is stored."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from fleet.store import Store

BAD = """
fleets:
  - name: f1
    enabled: true
    policies:
      - name: p1
        enabled: true
        type: Location
        minimum: 3
        maximum: 2
        threshold: 1.5
        data: {filters: [{field: continent, values: [Europe], filter_type: any}]}
"""


async def test_bad_file_is_refused_with_its_problems(
    tmp_path: Path, redis_url: str, prefix: str, store: Store
) -> None:
    f = tmp_path / "fleets.yaml"
    f.write_text(BAD)
    env = dict(os.environ, FLEET_REDIS_URL=redis_url, FLEET_REDIS_PREFIX=prefix)
    out = subprocess.run(
        [sys.executable, "-m", "fleet.cli", "apply", str(f)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert "was not applied" in out.stderr and "threshold" in out.stderr
    assert "Traceback" not in out.stderr
    assert await store.fleets.list_fleets() == []
