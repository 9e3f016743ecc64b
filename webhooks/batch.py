"""Group commit of deployment reports: callbacks that arrive while a write is in flight go to
Redis together, in one script call (`DeploymentStore.apply_many`), as soon as it returns.

Each report is still applied on its own, by the same rules, and each callback is answered only
after its own report is acknowledged, so batching loses nothing and changes no rule; it saves the
per-command client work and round trips that dominate ingest under load (benchmarks/webhooks.py).
There is no timer: a lone callback is written at once; batches only form while Redis is busy.

Each report carries its deadline (`deadline_s` after it was queued). While a batch is written, one
timer fails each of its callers whose deadline passes (TimeoutError: a 503, and the platform tries
again), and a report whose deadline passed while it queued fails without being written. The write
itself is never cancelled: its report may already be in Redis, and what follows the script (the
index cleanup after a terminal status) must still run; the Redis client's socket timeout bounds it.
One timer per batch instead of one per callback: a per-request `asyncio.timeout` was ~5 % of
ingest CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence

from fleet.models import StatusReport
from fleet.store.deployments import ReportResult

# Reports per script call. Not larger: while Redis runs one batch this process answers the callbacks
# of the previous one, which a single batch of everything would serialise (64 concurrent callbacks:
# 32 per call gave ~6 % more throughput than 128; the call's own cost is about 2 µs per report).
MAX_BATCH = 32
DEADLINE_S = 5.0  # half the platform's 10 s timeout: a slow Redis gets a 503, not a hang

ApplyMany = Callable[[Sequence[tuple[StatusReport, float]]], Awaitable[list[ReportResult | Exception]]]
Pending = tuple[StatusReport, float, asyncio.Future[ReportResult], float]  # ..., due (monotonic)


class ReportBatcher:
    def __init__(
        self,
        apply_many: ApplyMany,
        max_batch: int = MAX_BATCH,
        deadline_s: float = DEADLINE_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._apply_many = apply_many
        self._max_batch = max_batch
        self._deadline_s = deadline_s
        self._monotonic = monotonic
        self._queue: list[Pending] = []
        self._writer: asyncio.Task[None] | None = None

    async def apply(self, report: StatusReport, now: float) -> ReportResult:
        """The report's result once it is in Redis; TimeoutError when that took past the deadline."""
        fut: asyncio.Future[ReportResult] = asyncio.get_running_loop().create_future()
        self._queue.append((report, now, fut, self._monotonic() + self._deadline_s))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._drain())
            self._writer.add_done_callback(self._writer_done)
        return await fut

    def _writer_done(self, writer: asyncio.Task[None]) -> None:
        if writer.cancelled():  # also before it ever ran: nobody may be left waiting
            queued, self._queue = self._queue, []
            _fail(queued, RuntimeError("the report writer stopped"))

    async def _drain(self) -> None:
        batch: list[Pending] = []
        try:
            while self._queue:
                batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
                batch = self._drop_late(batch)
                if not batch:
                    continue
                timer = self._expire_in_time(batch)
                try:
                    await self._write(batch)
                except Exception as err:  # Redis unreachable, a script error: this batch fails
                    _fail(batch, err)
                finally:
                    timer.cancel()
        except BaseException:  # cancelled (shutdown): nobody may be left waiting
            queued, self._queue = self._queue, []
            _fail(batch + queued, RuntimeError("the report writer stopped"))
            raise

    def _expire_in_time(self, batch: list[Pending]) -> _Expiry:
        expiry = _Expiry(batch, self._monotonic)
        expiry.arm()
        return expiry

    def _drop_late(self, batch: list[Pending]) -> list[Pending]:
        """Fail the reports whose deadline passed while they queued (they were never written)."""
        now = self._monotonic()
        late = [p for p in batch if p[3] <= now]
        if not late:
            return batch
        _fail(late, TimeoutError("the report waited past its deadline for Redis"))
        return [p for p in batch if p[3] > now]

    async def _write(self, batch: list[Pending]) -> None:
        results = await self._apply_many([(report, now) for report, now, _fut, _due in batch])
        for (_report, _now, fut, _due), result in zip(batch, results, strict=True):
            if fut.done():  # the caller went away (cancelled); its report is stored anyway
                continue
            if isinstance(result, Exception):
                fut.set_exception(result)
            else:
                fut.set_result(result)

    async def aclose(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None and not writer.done():
            with contextlib.suppress(Exception):
                await writer


class _Expiry:
    """Fails each caller of a batch being written when its own deadline passes (the batch's reports
    were queued in order, so their deadlines come in order: one timer at a time)."""

    def __init__(self, batch: list[Pending], monotonic: Callable[[], float]) -> None:
        self._batch = batch
        self._monotonic = monotonic
        self._next = 0
        self._handle: asyncio.TimerHandle | None = None

    def arm(self) -> None:
        now = self._monotonic()
        while self._next < len(self._batch) and self._batch[self._next][3] <= now:
            _fail([self._batch[self._next]], TimeoutError("Redis did not acknowledge the report in time"))
            self._next += 1
        if self._next < len(self._batch):
            delay = self._batch[self._next][3] - now
            self._handle = asyncio.get_running_loop().call_later(delay, self.arm)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()


def _fail(pending: list[Pending], err: Exception) -> None:
    for _report, _now, fut, _due in pending:
        if not fut.done():
            fut.set_exception(err)
