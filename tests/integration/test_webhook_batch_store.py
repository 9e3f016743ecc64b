"""The report batcher over the real Store: a caller that gives up at its deadline never cuts short
the work that follows its report's script.

Found in review: the batch's deadline once cancelled the whole write, so after a TERMINATED report
was stored its index cleanup (`_clean_up_terminal`) could be cut off; the platform's retry is then a
duplicate (no transition), so the deployment stayed in its policy's index and never expired."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis

from fleet.models import StatusReport
from fleet.store import Store
from webhooks.batch import ReportBatcher


async def test_a_late_answer_still_leaves_the_terminal_cleanup_done(
    store: Store, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    deps, rid = store.deployments, "dep-1"
    await deps.record_owner(rid, fleet="f", policy="p", intent="i", app="a", version="v", now=1.0)
    await deps.apply(StatusReport(rid, "Status.READY", sockets=4, usage=0, app="a", version="v"), 2.0)
    real_hmget = deps.redis.hmget

    async def slow_hmget(*args: Any, **kwargs: Any) -> Any:  # Redis slow just after the script
        await asyncio.sleep(0.3)
        return await real_hmget(*args, **kwargs)

    monkeypatch.setattr(deps.redis, "hmget", slow_hmget)
    batcher = ReportBatcher(deps.apply_many, deadline_s=0.1)
    with pytest.raises(TimeoutError):  # the callback is answered 503 in time ...
        await batcher.apply(StatusReport(rid, "Status.TERMINATED"), 3.0)
    await batcher.aclose()  # ... and the write it started runs to its end
    monkeypatch.setattr(deps.redis, "hmget", real_hmget)
    k = deps.keys
    assert not (await batcher.apply(StatusReport(rid, "Status.TERMINATED"), 4.0)).transition  # the retry
    assert await redis.ttl(k.deployment(rid)) > 0
    assert rid not in await redis.smembers(k.policy_deployments("f", "p"))
    assert rid not in await redis.smembers(k.app_deployments("a", "v"))
