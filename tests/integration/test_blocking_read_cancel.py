"""A task blocked reading the event stream ends when it is cancelled, at any moment (suite finding:
with redis-py's socket timeout on the blocking connection, a cancel that met it could leave the task
waiting for ever, on Python 3.11 with redis-py 7 and 8; a stopping web process and a killed scaler
hung the suite for 300 s). The blocking readers now have no socket timeout and
`Coordination.read_events` bounds the read with its own `asyncio.timeout`."""

from __future__ import annotations

import asyncio
import random

import pytest

import fleet.store.coord as coord
from fleet.bootstrap import redis_client
from fleet.settings import Settings
from fleet.store import Store


async def test_a_blocked_event_reader_always_ends_when_cancelled(redis_url: str, store: Store) -> None:
    conn = redis_client(Settings(redis_url=redis_url), socket_timeout_s=None)  # as the linker's
    rng = random.Random(7)

    async def reader() -> None:
        while True:
            await store.coord.read_events(conn, "$", block_ms=50)

    try:
        for attempt in range(200):
            task = asyncio.create_task(reader())
            await asyncio.sleep(rng.uniform(0.0, 0.12))  # anywhere in or between blocking reads
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=3.0)
            assert done, f"attempt {attempt}: the reader outlived its cancellation"
    finally:
        await conn.aclose()


async def test_a_silent_redis_ends_the_read_after_block_and_margin(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a socket timeout the read is still bounded: block + READ_MARGIN_S, here against a
    server that accepts and never answers."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(-1)  # take everything, answer nothing
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    monkeypatch.setattr(coord, "READ_MARGIN_S", 0.3)
    conn = redis_client(Settings(redis_url=f"redis://127.0.0.1:{port}/0"), socket_timeout_s=None)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        with pytest.raises(TimeoutError):
            await store.coord.read_events(conn, "$", block_ms=100)
        assert loop.time() - started < 2.0
    finally:
        server.close()
        await conn.aclose()
