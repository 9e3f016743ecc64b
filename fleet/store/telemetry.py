"""Active-deployment telemetry results, stored under the platform's retrieval key, and the wake-up
of placements waiting for them.

Interface (used by the webhook ingest and the allocator):

- `record_result(retrieval_key, scores, partial, now) -> bool`: store a result (request ids best
  first). Results only move forward: nothing < partial < complete; a partial result is replaced
  only by a complete one or by a partial one ranking more deployments; a complete one is final.
  True exactly once per change (so a duplicate delivery wakes nobody and counts no transition);
  the store and the wake-up (Redis PUBLISH) happen in one script. Results expire after `keep_s`.
- `get_result(retrieval_key) -> StoredTelemetry | None`.
- `async wait_for(retrieval_key, timeout_s) -> StoredTelemetry | None`: the stored result as soon as
  there is one (partial or complete: the platform sends its webhook once, when it is done), or None
  at the deadline. Works across processes and hosts: any web process may receive the webhook.
- `aclose()`: stop this process's listener (Store.aclose calls it).

One pub/sub connection per process serves every waiter (a listener task that runs only while
someone waits). A waiter registers before it reads the stored value, so a result that lands in
between is not missed; it also re-reads every `RECHECK_S`, so a wake-up lost while the listener
reconnects costs at most that long, never the whole wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from fleet.aio import cancel_within, wait_at_most
from fleet.store.keys import Keys

log = logging.getLogger("fleet.store.telemetry")

TELEMETRY_KEEP_S = 600.0  # a result stays readable this long (the platform's keys live ~5 min)
RECHECK_S = 1.0  # a waiter re-reads at least this often, whatever happens to the listener
SUBSCRIBE_WAIT_S = 0.5  # how long a waiter waits for the listener's subscription before reading
STOP_WAIT_S = 5.0  # a stopping listener gets this long to end
LISTEN_POLL_S = 1.0  # listener read timeout; below redis-py's default 5 s socket timeout

# KEYS: result hash   ARGV: retrieval_key, scores JSON, count, partial (0/1), now, keep_ms, channel
# -> 1 when stored (and published), 0 when the stored result is as good or final.
_RECORD = """
local cur_partial = redis.call('HGET', KEYS[1], 'partial')
if cur_partial then
  if cur_partial == '0' then return 0 end
  if ARGV[4] == '1' and tonumber(ARGV[3]) <= tonumber(redis.call('HGET', KEYS[1], 'count') or '0') then
    return 0
  end
end
redis.call('HSET', KEYS[1], 'scores', ARGV[2], 'count', ARGV[3], 'partial', ARGV[4], 'received_at', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('PUBLISH', ARGV[7], ARGV[1])
return 1
"""


@dataclass(frozen=True)
class StoredTelemetry:
    """A telemetry result: deployments best first; `partial` when some had not reported yet."""

    retrieval_key: str
    scores: tuple[str, ...]
    partial: bool
    received_at: float


class _Wakeups:
    """Per-process fan-out of the telemetry channel to the futures of local waiters."""

    def __init__(self, redis: Redis, channel: str) -> None:
        self.redis = redis
        self.channel = channel
        self.waiters: dict[str, set[asyncio.Future[None]]] = {}
        self.task: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()

    async def register(self, key: str) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.setdefault(key, set()).add(fut)
        self.ensure_listening()
        await wait_at_most(self.subscribed.wait(), SUBSCRIBE_WAIT_S)
        return fut

    def ensure_listening(self) -> None:
        if self.task is None or self.task.done():
            self.subscribed = asyncio.Event()
            self.task = asyncio.get_running_loop().create_task(self._listen(self.subscribed))

    async def unregister(self, key: str, fut: asyncio.Future[None]) -> None:
        group = self.waiters.get(key)
        if group is not None:
            group.discard(fut)
            if not group:
                del self.waiters[key]
        if not self.waiters:
            await self.stop()

    async def stop(self) -> None:
        task, self.task = self.task, None
        if task is not None and not task.done() and not await cancel_within(task, STOP_WAIT_S):
            log.warning("telemetry listener outlived its cancellation")

    async def _listen(self, subscribed: asyncio.Event) -> None:
        pubsub = self.redis.pubsub()
        try:
            await pubsub.subscribe(self.channel)
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=False, timeout=LISTEN_POLL_S)
                if message is None:
                    continue
                if message["type"] == "subscribe":
                    subscribed.set()
                elif message["type"] == "message":
                    self._wake(str(message["data"]))
        except (RedisError, OSError) as err:
            # Waiters fall back to re-reading every RECHECK_S; the next one restarts the listener.
            log.warning("telemetry listener stopped", extra={"fleet_fields": {"error": type(err).__name__}})
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()

    def _wake(self, key: str) -> None:
        for fut in self.waiters.get(key, ()):
            if not fut.done():
                fut.set_result(None)


class TelemetryStore:
    def __init__(self, redis: Redis, keys: Keys, keep_s: float = TELEMETRY_KEEP_S) -> None:
        self.redis = redis
        self.keys = keys
        self.keep_s = keep_s
        self._record = redis.register_script(_RECORD)
        self._wakeups = _Wakeups(redis, keys.telemetry_wake())

    async def record_result(
        self, retrieval_key: str, scores: Sequence[str], partial: bool, now: float
    ) -> bool:
        """Store a result if it is better than the stored one; True once per change."""
        out = await self._record(
            keys=[self.keys.telemetry(retrieval_key)],
            args=[
                retrieval_key,
                json.dumps(list(scores)),
                len(scores),
                "1" if partial else "0",
                repr(now),
                max(1, int(self.keep_s * 1000)),
                self.keys.telemetry_wake(),
            ],
        )
        return bool(int(out))

    async def get_result(self, retrieval_key: str) -> StoredTelemetry | None:
        raw = await self.redis.hgetall(self.keys.telemetry(retrieval_key))
        if not raw or "partial" not in raw:
            return None
        return StoredTelemetry(
            retrieval_key=retrieval_key,
            scores=tuple(json.loads(raw.get("scores") or "[]")),
            partial=raw["partial"] == "1",
            received_at=float(raw.get("received_at") or 0.0),
        )

    async def wait_for(self, retrieval_key: str, timeout_s: float) -> StoredTelemetry | None:
        """The result as soon as one is stored, or None after `timeout_s`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout_s)
        fut = await self._wakeups.register(retrieval_key)
        try:
            while True:
                result = await self.get_result(retrieval_key)
                remaining = deadline - loop.time()
                if result is not None or remaining <= 0:
                    return result
                if fut.done():  # woken, yet nothing readable (e.g. it expired): wait for the next one
                    await self._wakeups.unregister(retrieval_key, fut)
                    fut = await self._wakeups.register(retrieval_key)
                await wait_at_most(asyncio.shield(fut), min(remaining, RECHECK_S))
                self._wakeups.ensure_listening()
        finally:
            await self._wakeups.unregister(retrieval_key, fut)

    async def aclose(self) -> None:
        await self._wakeups.stop()
