"""The soak's load generator (tests/e2e/chaos/loadgen.py): its HTTP client reads answers right and
reuses connections, and its open loop measures latency from the scheduled time, so a late
generator or a slow answer shows in the figures instead of lowering the rate."""

from __future__ import annotations

import asyncio
import time

from tests.e2e.chaos.loadgen import Lag, Pool, Stream, open_loop, read_response


def reader_of(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


async def test_reads_content_length_chunked_and_close_delimited_answers() -> None:
    fixed = b'HTTP/1.1 200 OK\r\ncontent-length: 11\r\ncontent-type: application/json\r\n\r\n{"ok": true}'
    assert await read_response(reader_of(fixed)) == (200, b'{"ok": true', True)
    chunked = (
        b"HTTP/1.1 503 Service Unavailable\r\ntransfer-encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    assert await read_response(reader_of(chunked)) == (503, b"abcde", True)
    closing = b"HTTP/1.1 404 Not Found\r\nconnection: close\r\n\r\nbye"
    assert await read_response(reader_of(closing)) == (404, b"bye", False)


async def test_pool_keeps_connections_alive_and_sends_the_encoded_request() -> None:
    seen: list[bytes] = []
    finished = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                break
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            body = await reader.readexactly(length)
            seen.append(head.split(b"\r\n")[0] + b" " + body)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()
        writer.close()
        await writer.wait_closed()
        finished.set()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = Pool("127.0.0.1", port, size=4)
    raw = pool.encode("POST", "/webhooks/x?token=t", b'{"a": 1}')
    for _ in range(5):
        assert await pool.send(raw) == (200, b"ok")
    assert pool.opened == 1  # one keep-alive connection served all five
    assert seen == [b'POST /webhooks/x?token=t HTTP/1.1 {"a": 1}'] * 5
    await pool.aclose()
    await asyncio.wait_for(finished.wait(), 5)  # the client closed its connection
    server.close()
    await server.wait_closed()


async def test_open_loop_measures_from_the_scheduled_time_and_never_waits_for_answers() -> None:
    stream, lag = Stream("t"), Lag()
    start = time.monotonic() + 0.05
    launched: list[float] = []

    async def fire(i: int, due: float) -> None:
        launched.append(time.monotonic())
        if i == 0:
            time.sleep(0.1)  # the generator itself stalls: requests due meanwhile are launched late
        await asyncio.sleep(0.05)  # a slow answer
        stream.done(due, start, 200)

    unfinished = await open_loop(100.0, start, 0.2, fire, stream, lag, drain_s=5)
    assert unfinished == 0 and len(stream.latencies) == 20 and stream.shed == 0
    assert min(stream.latencies) >= 0.05  # the answer time is in every latency
    # Requests due during the stall were launched up to 0.1 s late; their latency includes that.
    assert max(stream.latencies) >= 0.14
    assert lag.summary()["max_ms"] >= 90
    assert launched[1] - launched[0] >= 0.1  # ... rather than silently skipped
