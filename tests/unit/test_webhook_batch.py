"""Group commit of deployment reports (webhooks.batch) with a fake store: batching, per-report
results and failures, and nobody left waiting."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from fleet.models import StatusReport
from fleet.store.deployments import ReportResult
from webhooks.batch import ReportBatcher

OK = ReportResult(transition=True, previous=None, created=True, usage_changed=False)


class FakeStore:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail_ids: set[str] = set()
        self.down = False

    async def apply_many(self, items: Sequence[tuple[StatusReport, float]]) -> list[ReportResult | Exception]:
        self.calls.append([r.request_id for r, _now in items])
        await self.gate.wait()
        if self.down:
            raise ConnectionError("redis down")
        return [RuntimeError("script error") if r.request_id in self.fail_ids else OK for r, _now in items]


def report(rid: str) -> StatusReport:
    return StatusReport(rid, "Status.READY")


async def test_callbacks_arriving_during_a_write_share_the_next_one() -> None:
    store = FakeStore()
    batcher = ReportBatcher(store.apply_many)
    store.gate.clear()
    first = asyncio.create_task(batcher.apply(report("a"), 1.0))
    await asyncio.sleep(0)  # the writer took "a" and waits on Redis
    rest = [asyncio.create_task(batcher.apply(report(r), 1.0)) for r in "bcd"]
    await asyncio.sleep(0)
    store.gate.set()
    assert await asyncio.gather(first, *rest) == [OK] * 4
    assert store.calls == [["a"], ["b", "c", "d"]]


async def test_batches_are_bounded() -> None:
    store = FakeStore()
    batcher = ReportBatcher(store.apply_many, max_batch=2)
    results = await asyncio.gather(*(batcher.apply(report(str(i)), 1.0) for i in range(5)))
    assert results == [OK] * 5
    assert [len(c) for c in store.calls] == [2, 2, 1]


async def test_a_failed_report_fails_only_its_own_callback() -> None:
    store = FakeStore()
    store.fail_ids = {"b"}
    batcher = ReportBatcher(store.apply_many)
    out = await asyncio.gather(*(batcher.apply(report(r), 1.0) for r in "abc"), return_exceptions=True)
    assert out[0] == OK and out[2] == OK and isinstance(out[1], RuntimeError)


async def test_redis_down_fails_the_whole_batch_and_the_next_one_retries() -> None:
    store = FakeStore()
    store.down = True
    batcher = ReportBatcher(store.apply_many)
    with pytest.raises(ConnectionError):
        await batcher.apply(report("a"), 1.0)
    store.down = False
    assert await batcher.apply(report("b"), 2.0) == OK


async def test_a_caller_that_gives_up_does_not_break_the_others() -> None:
    store = FakeStore()
    batcher = ReportBatcher(store.apply_many)
    store.gate.clear()
    impatient = asyncio.create_task(batcher.apply(report("a"), 1.0))
    patient = asyncio.create_task(batcher.apply(report("b"), 1.0))
    await asyncio.sleep(0)
    impatient.cancel()
    store.gate.set()
    assert await patient == OK
    assert impatient.cancelled()


@pytest.mark.parametrize("turns", [1, 3], ids=["before it ran", "while writing"])
async def test_stopping_the_writer_leaves_nobody_waiting(turns: int) -> None:
    store = FakeStore()
    batcher = ReportBatcher(store.apply_many)
    store.gate.clear()
    waiting = [asyncio.create_task(batcher.apply(report(r), 1.0)) for r in "ab"]
    for _ in range(turns):
        await asyncio.sleep(0)
    assert batcher._writer is not None
    assert bool(store.calls) is (turns > 1)
    batcher._writer.cancel()
    out = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(o, RuntimeError) for o in out)


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


async def test_a_write_slower_than_the_deadline_fails_its_batch_in_time() -> None:
    store = FakeStore()
    store.gate.clear()  # Redis never answers
    batcher = ReportBatcher(store.apply_many, deadline_s=0.05)
    started = asyncio.get_running_loop().time()
    out = await asyncio.gather(*(batcher.apply(report(r), 1.0) for r in "ab"), return_exceptions=True)
    assert all(isinstance(o, TimeoutError) for o in out), out
    assert asyncio.get_running_loop().time() - started < 2.0  # wide margin: the deadline is 0.05 s
    store.gate.set()  # the next one is written normally
    assert await batcher.apply(report("c"), 2.0) == OK


async def test_a_report_that_waited_past_its_deadline_is_not_written() -> None:
    store = FakeStore()
    clock = Clock()
    batcher = ReportBatcher(store.apply_many, deadline_s=5.0, monotonic=clock)
    store.gate.clear()
    first = asyncio.create_task(batcher.apply(report("a"), 1.0))
    await asyncio.sleep(0)  # "a" is being written
    queued = asyncio.create_task(batcher.apply(report("b"), 1.0))
    await asyncio.sleep(0)
    clock.t += 6.0  # "b" has now waited longer than its deadline
    store.gate.set()
    assert await first == OK
    with pytest.raises(TimeoutError):
        await queued
    assert store.calls == [["a"]]


async def test_each_caller_fails_at_its_own_deadline_and_the_write_is_never_cut() -> None:
    # "b" queued behind a slow write and became old; "c" came later. Their write outlives b's
    # deadline only: b gets TimeoutError (a 503), c its result, and the write runs to the end.
    written: list[str] = []

    async def apply_many(items: Sequence[tuple[StatusReport, float]]) -> list[ReportResult | Exception]:
        ids = [r.request_id for r, _now in items]
        await asyncio.sleep(0.2 if ids == ["a"] else 0.1)
        written.extend(ids)
        return [OK] * len(items)

    batcher = ReportBatcher(apply_many, deadline_s=0.25)
    a = asyncio.create_task(batcher.apply(report("a"), 1.0))
    await asyncio.sleep(0)
    b = asyncio.create_task(batcher.apply(report("b"), 1.0))
    await asyncio.sleep(0.1)
    c = asyncio.create_task(batcher.apply(report("c"), 1.0))
    out = await asyncio.gather(a, b, c, return_exceptions=True)
    assert out[0] == OK and isinstance(out[1], TimeoutError) and out[2] == OK, out
    assert written == ["a", "b", "c"]
