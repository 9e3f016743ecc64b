"""Platform limits shared through a real Redis: token buckets and the 429 back-off window, across
connections and across OS processes (the Retry-After of one process holds back another)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from codema.client import CodemaClient
from codema.errors import RateLimited
from codema.limits import PlatformLimits
from fleet.store import Store
from fleet.store.limits import RedisPlatformLimits
from tests.conftest import ROOT

STATUS_BODY = {"request_id": "abc", "current_status": "Status.READY", "sockets": 4, "sockets_usage": 1}


@pytest.fixture
def limits(store: Store) -> RedisPlatformLimits:
    return RedisPlatformLimits(store.redis, store.keys)


@pytest.fixture
async def other_connection(redis_url: str) -> Any:
    client = Redis.from_url(redis_url, decode_responses=False)  # the other decoding mode, on purpose
    yield client
    await client.aclose()


def test_redis_limits_satisfy_the_protocol(limits: RedisPlatformLimits) -> None:
    assert isinstance(limits, PlatformLimits)


async def test_bucket_gives_the_burst_then_paces(limits: RedisPlatformLimits) -> None:
    admitted = [await limits.admit("status", 20.0, 20.0) for _ in range(20)]
    assert admitted == [0.0] * 20
    wait = await limits.admit("status", 20.0, 20.0)
    assert 0.0 < wait <= 0.05 + 1e-6  # one token every 1/20 s
    assert await limits.admit("list_deployments", 10.0, 10.0) == 0.0  # other endpoint, other bucket


async def test_bucket_is_shared_across_connections(
    store: Store, limits: RedisPlatformLimits, other_connection: Redis
) -> None:
    other = RedisPlatformLimits(other_connection, store.keys)
    results = [await (limits if i % 2 else other).admit("deploy", 0.001, 6.0) for i in range(8)]
    assert results[:6] == [0.0] * 6 and all(w > 0 for w in results[6:])


async def test_concurrent_admission_never_exceeds_the_burst(store: Store, redis_url: str) -> None:
    connections = [Redis.from_url(redis_url, decode_responses=True) for _ in range(3)]
    try:
        shared = [RedisPlatformLimits(c, store.keys) for c in connections]
        waits = await asyncio.gather(*(shared[i % 3].admit("deploy", 0.001, 25.0) for i in range(60)))
    finally:
        for c in connections:
            await c.aclose()
    assert sum(1 for w in waits if w == 0.0) == 25


async def test_back_off_is_shared_and_only_extends(
    store: Store, limits: RedisPlatformLimits, other_connection: Redis
) -> None:
    other = RedisPlatformLimits(other_connection, store.keys)
    await limits.back_off(5.0)
    await other.back_off(1.0)  # shorter: never shortens the window
    remaining = await other.backoff_remaining()
    assert 4.5 < remaining <= 5.0
    assert 4.5 < await other.admit("status", 20.0, 20.0) <= 5.0  # no token is taken meanwhile
    ttl_ms = await store.redis.pttl(store.keys.platform_backoff())
    assert 0 < ttl_ms <= 6000  # the key goes away with the window


async def test_no_back_off_means_zero(limits: RedisPlatformLimits) -> None:
    assert await limits.backoff_remaining() == 0.0
    await limits.back_off(0.0)
    assert await limits.backoff_remaining() == 0.0


async def test_a_429_in_one_client_holds_back_another(
    store: Store, limits: RedisPlatformLimits, other_connection: Redis
) -> None:
    sent: list[float] = []

    def limited(request: httpx.Request) -> httpx.Response:
        sent.append(time.monotonic())
        return httpx.Response(429, headers={"Retry-After": "1"}, json={"message": "slow down"})

    def fine(request: httpx.Request) -> httpx.Response:
        sent.append(time.monotonic())
        return httpx.Response(200, json=STATUS_BODY)

    first = CodemaClient(
        "http://codema.test", "tok", limits=limits, transport=httpx.MockTransport(limited), max_attempts=1
    )
    second = CodemaClient(
        "http://codema.test",
        "tok",
        limits=RedisPlatformLimits(other_connection, store.keys),
        transport=httpx.MockTransport(fine),
    )
    async with first, second:
        with pytest.raises(RateLimited):
            await first.status("abc")
        assert (await second.status("abc")).request_id == "abc"
    assert len(sent) == 2 and sent[1] - sent[0] >= 0.95


async def test_client_limits_locally_when_redis_is_down(store: Store) -> None:
    dead = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    limits = RedisPlatformLimits(dead, store.keys)
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=STATUS_BODY))
    async with CodemaClient("http://codema.test", "tok", limits=limits, transport=transport) as client:
        assert (await client.status("abc")).sockets == 4
    await dead.aclose()


# --- two OS processes ------------------------------------------------------------------------------
CHILD = r"""
import asyncio, json, sys, time
import httpx
from redis.asyncio import Redis
from codema.client import CodemaClient
from codema.errors import RateLimited
from fleet.store.keys import Keys
from fleet.store.limits import RedisPlatformLimits

url, prefix, role, retry_after = sys.argv[1:5]
signal = prefix + ":test:first-done"

async def main():
    redis = Redis.from_url(url, decode_responses=True)
    sent = []

    def handler(request):
        sent.append(time.time())
        if role == "first":
            return httpx.Response(429, headers={"Retry-After": retry_after}, json={"message": "slow down"})
        return httpx.Response(200, json={"request_id": "abc", "current_status": "Status.READY"})

    client = CodemaClient("http://codema.test", "tok", limits=RedisPlatformLimits(redis, Keys(prefix)),
                          transport=httpx.MockTransport(handler), max_attempts=1, max_wait_s=30)
    if role == "second":
        deadline = time.time() + 60
        while not await redis.get(signal):
            if time.time() > deadline:
                raise SystemExit("the first process never signalled")
            await asyncio.sleep(0.005)
    started = time.time()
    outcome = "ok"
    try:
        await client.status("abc")
    except RateLimited:
        outcome = "rate_limited"
    if role == "first":
        await redis.set(signal, "1")
    print(json.dumps({"started": started, "sent": sent, "outcome": outcome}))
    await client.aclose()
    await redis.aclose()

asyncio.run(main())
"""


def spawn(redis_url: str, prefix: str, role: str, retry_after: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, redis_url, prefix, role, retry_after],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def result(process: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return dict(json.loads(out.strip().splitlines()[-1]))


async def test_retry_after_is_honoured_across_two_processes(store: Store, redis_url: str) -> None:
    retry_after = 3.0
    # Both start together so their imports overlap; the second calls as soon as the first got its 429.
    second = spawn(redis_url, store.keys.prefix, "second", str(retry_after))
    first = spawn(redis_url, store.keys.prefix, "first", str(retry_after))
    got_429 = result(first)
    waited = result(second)
    assert got_429["outcome"] == "rate_limited" and len(got_429["sent"]) == 1
    window_end = got_429["sent"][0] + retry_after
    assert waited["started"] < window_end - 0.5  # the second really called inside the window
    assert waited["outcome"] == "ok" and len(waited["sent"]) == 1
    assert waited["sent"][0] >= window_end - 0.05  # and its request waited the window out
