"""`fleet apply FILE` against the suite's Redis and the simulator: applied as a whole or not at all,
re-applying updates in place (creation times kept), `--prune` removes what the file dropped."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from autoscaler.config import ConfigError, apply_file
from fleet.bootstrap import Services
from tests.conftest import ROOT
from tests.fixtures.sim import RunningSim
from tests.integration.autoscaler_harness import close_services, services_for, settings_for

FILE = """
fleets:
  - name: demo
    enabled: true
    apps: [{{app: game, version: {version}}}]
    policies:
      - {{name: eu, enabled: true, type: Location, minimum: 1, maximum: 6, threshold: {threshold},
         data: {{filters: [{{field: continent, values: [Europe], filter_type: any}}]}}}}
{extra}
"""


@pytest.fixture
async def services(redis_url: str, prefix: str, sim: RunningSim) -> AsyncIterator[Services]:
    sim.setup_app("game", "v1", sockets=8, empty_ttl=3)
    sim.setup_app("game", "plain", kind="Default", sockets=1)
    s = services_for(settings_for(redis_url, prefix), sim)
    yield s
    await s.store.wipe()
    await close_services(s)


def write(tmp_path: Path, version: str = "v1", threshold: float = 0.8, extra: str = "") -> Path:
    path = tmp_path / "fleets.yaml"
    path.write_text(FILE.format(version=version, threshold=threshold, extra=extra))
    return path


async def test_apply_then_reapply_then_prune(services: Services, tmp_path: Path) -> None:
    store = services.store.fleets
    extra = "  - {name: old, enabled: false}"
    summary = await apply_file(services, write(tmp_path, extra=extra))
    assert summary == "applied: 2 fleets, 1 policies, 1 links"
    policy = await store.get_policy("demo", "eu")
    assert policy is not None and policy.threshold == 0.8 and policy.create_time
    facts = await store.get_app_version("game", "v1")
    assert facts is not None and (facts.sockets, facts.empty_ttl_min) == (8, 3)

    await apply_file(services, write(tmp_path, threshold=0.6), prune=True)
    updated = await store.get_policy("demo", "eu")
    assert updated is not None and updated.threshold == 0.6 and updated.create_time == policy.create_time
    assert [f.name for f in await store.list_fleets()] == ["demo"]


async def test_a_bad_file_changes_nothing(services: Services, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not session-based"):
        await apply_file(services, write(tmp_path, version="plain"))
    with pytest.raises(ConfigError, match="not found on the platform"):
        await apply_file(services, write(tmp_path, version="nope"))
    with pytest.raises(ConfigError, match="threshold"):
        await apply_file(services, write(tmp_path, threshold=7))
    assert await services.store.fleets.list_fleets() == []


def test_fleet_apply_command(redis_url: str, prefix: str, sim: RunningSim, tmp_path: Path) -> None:
    sim.setup_app("game", "v1", sockets=8)
    env = {
        **os.environ,
        "FLEET_REDIS_URL": redis_url,
        "FLEET_REDIS_PREFIX": prefix,
        "CODEMA_API_URL": sim.base_url,
        "CODEMA_API_TOKEN": sim.token,
    }
    cmd = [sys.executable, "-m", "fleet.cli", "apply", str(write(tmp_path))]
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "applied: 1 fleets, 1 policies, 1 links" in done.stdout
