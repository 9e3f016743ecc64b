"""The Store operations the webhooks rely on, against a real Redis: usage precedence of unordered
reports, telemetry results and their wake-up, platform session reports applied forward only."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from fleet.models import SessionRecord, SessionState, Status
from fleet.store import StatusReport, Store
from fleet.store import telemetry as telemetry_module
from fleet.store.session_reports import SessionReport

NOW = 1_000_000.0


def hook(status: str | None, usage: int | None = None, **kw: object) -> StatusReport:
    return StatusReport("d1", status, usage=usage, source="webhook", **kw)  # type: ignore[arg-type]


async def usage_after(store: Store, reports: list[StatusReport]) -> int | None:
    for r in reports:
        await store.deployments.apply(r, NOW)
    dep = await store.deployments.get("d1", NOW)
    assert dep is not None
    return dep.usage


# --- deployments: what unordered webhooks leave -----------------------------------------------------
# name: reports in delivery order -> usage stored
USAGE = {
    # READY u0 then a session's READY u2 (the session webhook carries the newer usage)
    "same status, higher usage wins": ([hook("READY", 0), hook("READY", 2)], 2),
    "same status, in the other order": ([hook("READY", 2), hook("READY", 0)], 2),
    "a transition always writes": ([hook("READY", 3), hook("TERMINATING", 0)], 0),
    "a late earlier status never writes": ([hook("TERMINATING", 0), hook("READY", 3)], 0),
    "a late earlier status fills unknown usage": ([hook("TERMINATING"), hook("READY", 3)], 3),
    "an unknown status only fills": ([hook("READY", 1), hook("Status.HIBERNATING", 4)], 1),
    "unknown usage never overwrites": ([hook("READY", 2), hook("READY")], 2),
}


@pytest.mark.parametrize("reports, usage", list(USAGE.values()), ids=list(USAGE))
async def test_webhook_usage_precedence(store: Store, reports: list[StatusReport], usage: int) -> None:
    assert await usage_after(store, reports) == usage


async def test_a_poll_stays_authoritative_until_a_transition(store: Store) -> None:
    d = store.deployments
    await d.apply(hook("READY", 0), NOW)
    await d.apply(StatusReport("d1", "Status.READY", usage=1, source="poll"), NOW)
    await d.apply(hook("READY", 4), NOW)  # a delayed session webhook: not fresher than the poll
    assert (await d.get("d1", NOW)).usage == 1  # type: ignore[union-attr]
    await d.apply(hook("TERMINATING", 0), NOW)
    assert (await d.get("d1", NOW)).usage == 0  # type: ignore[union-attr]


async def test_late_reports_fill_missing_facts_and_ready_time(store: Store) -> None:
    d = store.deployments
    await d.apply(hook("TERMINATED"), NOW)
    await d.apply(hook("READY", 2, ports={"game": {"external": 1}}, tags=("eu",), fqdn="x.example"), NOW + 1)
    dep = await d.get("d1", NOW + 1)
    assert dep is not None and dep.status is Status.TERMINATED
    assert dep.ports == {"game": {"external": 1}} and dep.tags == ["eu"] and dep.fqdn == "x.example"
    assert dep.ready_at == NOW + 1


async def test_a_terminal_deployment_is_not_indexed_again(store: Store) -> None:
    d = store.deployments
    await d.apply(hook("TERMINATED", app="game", version="v1"), NOW)
    await d.apply(hook("READY", app="game", version="v1"), NOW)
    assert await store.redis.smembers(store.keys.app_deployments("game", "v1")) == set()


# --- telemetry ----------------------------------------------------------------------------------
async def test_telemetry_results_move_forward(store: Store) -> None:
    t = store.telemetry
    assert await t.record_result("k", ["a"], True, NOW)
    assert not await t.record_result("k", ["a"], True, NOW)  # duplicate
    assert await t.record_result("k", ["a", "b"], True, NOW)  # a partial ranking more deployments
    assert await t.record_result("k", ["b", "a"], False, NOW + 1)  # complete
    assert not await t.record_result("k", ["a"], True, NOW + 2)  # late partial
    assert not await t.record_result("k", ["a", "b", "c"], False, NOW + 2)  # complete is final
    result = await t.get_result("k")
    assert result is not None and result.scores == ("b", "a") and not result.partial
    assert result.received_at == NOW + 1
    assert 0 < await store.redis.ttl(store.keys.telemetry("k")) <= telemetry_module.TELEMETRY_KEEP_S


@pytest.fixture
async def other_process(redis_url: str, prefix: str) -> AsyncIterator[Store]:
    """A second Store on its own connection: another web process of the same installation."""
    other = Store(Redis.from_url(redis_url, decode_responses=True), prefix)
    yield other
    await other.aclose()


async def test_waiters_are_woken_by_a_result_stored_elsewhere(
    store: Store, other_process: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Re-reads are pushed out of the test's reach, so only the pub/sub wake-up can end the waits.
    monkeypatch.setattr(telemetry_module, "RECHECK_S", 120.0)
    waiters = [asyncio.create_task(store.telemetry.wait_for("k", 120.0)) for _ in range(3)]
    other_waiter = asyncio.create_task(store.telemetry.wait_for("other", 0.2))
    while len(store.telemetry._wakeups.waiters.get("k", ())) < 3:  # all registered
        await asyncio.sleep(0.01)
    assert await other_process.telemetry.record_result("k", ["d2", "d1"], False, NOW)
    results = await asyncio.wait_for(asyncio.gather(*waiters), timeout=30)
    assert [r.scores for r in results if r] == [("d2", "d1")] * 3
    assert await other_waiter is None  # a result for another key wakes nobody else
    assert store.telemetry._wakeups.task is None  # the listener stops with the last waiter


async def test_wait_returns_a_stored_result_at_once_and_times_out_without(store: Store) -> None:
    await store.telemetry.record_result("k", ["d1"], True, NOW)
    result = await store.telemetry.wait_for("k", 30.0)
    assert result is not None and result.partial
    assert await store.telemetry.wait_for("missing", 0.05) is None


# --- platform session reports ---------------------------------------------------------------------
def record(state: SessionState = SessionState.WAITING, **kw: object) -> SessionRecord:
    return SessionRecord(session_id="ours", app="game", version="v1", state=state, **kw)  # type: ignore[arg-type]


def report(state: SessionState | None, **kw: object) -> SessionReport:
    return SessionReport("plat-s", state, received_at=NOW, **kw)  # type: ignore[arg-type]


async def session_events(store: Store) -> list[dict[str, str]]:
    return [f for _id, f in await store.redis.xrange(store.keys.events()) if f.get("kind") == "session"]


async def test_concurrent_deliveries_make_one_transition(store: Store) -> None:
    await store.sessions.put(record())
    results = await asyncio.gather(
        *(store.sessions.apply_platform_report("ours", report(SessionState.LINKED), NOW) for _ in range(8))
    )
    assert sum(r.transition for r in results) == 1
    events = await session_events(store)
    assert [e["state"] for e in events] == ["READY"]


@pytest.mark.parametrize(
    "start, new, moves",
    [
        (SessionState.WAITING, SessionState.LINKED, True),
        (SessionState.WAITING, SessionState.UNPROCESSABLE, True),
        (SessionState.LINKED, SessionState.ERROR, True),
        (SessionState.LINKED, SessionState.LINKED, False),
        (SessionState.ERROR, SessionState.LINKED, False),
        (SessionState.UNPROCESSABLE, SessionState.ERROR, False),
        (SessionState.TERMINATING, SessionState.LINKED, False),
    ],
)
async def test_session_state_moves_forward_only(
    store: Store, start: SessionState, new: SessionState, moves: bool
) -> None:
    await store.sessions.put(record(start))
    out = await store.sessions.apply_platform_report("ours", report(new, error="no capacity"), NOW)
    assert out.transition is moves
    stored = await store.sessions.get("ours")
    assert stored is not None and stored.state is (new if moves else start)


async def test_an_early_callback_is_parked_and_applied_when_the_mapping_appears(store: Store) -> None:
    await store.sessions.put(record(deployment_request_id="d1"))
    early = report(SessionState.LINKED, deployment_request_id="d1")
    assert await store.sessions.resolve_platform_report(early) is None  # parked
    assert await store.sessions.resolve_platform_report(early) is None  # a duplicate, parked once
    assert await store.redis.hlen(store.keys.platform_session_pending("plat-s")) == 1
    applied = await store.sessions.link_platform_id("plat-s", "ours")
    assert [(a.transition, a.state) for a in applied] == [(True, SessionState.LINKED)]
    stored = await store.sessions.get("ours")
    assert stored is not None and stored.state is SessionState.LINKED and stored.linked_at == NOW
    assert stored.platform_session_id == "plat-s"
    assert not await store.redis.exists(store.keys.platform_session_pending("plat-s"))
    assert await store.sessions.resolve_platform_report(early) == "ours"  # later ones resolve at once


async def test_parking_races_linking_without_loss(store: Store, other_process: Store) -> None:
    # Each pair runs a park (webhook) and a link (allocator) at the same time, from two connections;
    # whichever wins, the report ends applied exactly once.
    for i in range(30):
        await store.sessions.put(record().model_copy(update={"session_id": f"o{i}"}))
        r = SessionReport(f"p{i}", SessionState.LINKED, received_at=NOW)

        async def webhook(r: SessionReport = r) -> None:
            ours = await store.sessions.resolve_platform_report(r)
            if ours is not None:
                await store.sessions.apply_platform_report(ours, r, NOW)

        await asyncio.gather(webhook(), other_process.sessions.link_platform_id(f"p{i}", f"o{i}"))
        stored = await store.sessions.get(f"o{i}")
        assert stored is not None and stored.state is SessionState.LINKED, i
    assert len(await session_events(store)) == 30
