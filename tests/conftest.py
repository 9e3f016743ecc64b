"""Shared fixtures. Tests talk to a real Redis: FLEET_REDIS_URL (set by `make test`, which starts
a private redis-server when none is given). Each test gets its own key prefix."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from fleet.store import Store

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"

pytest_plugins = ["tests.fixtures.stack", "tests.fixtures.sim", "tests.fixtures.web"]


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = os.environ.get("FLEET_REDIS_URL")
    if not url:
        pytest.fail("FLEET_REDIS_URL is not set: run the suite with `make test` (it starts a private Redis)")
    return url


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def store(redis: Redis, prefix: str) -> AsyncIterator[Store]:
    s = Store(redis, prefix)
    yield s
    await s.wipe()


def shared_path(*parts: str) -> Path:
    """A file under ../shared (CI always has it; a user's bare clone may not)."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: ../shared is only present beside a development checkout")
    return path
