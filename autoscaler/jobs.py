"""The scaler's platform calls, run as RQ jobs by `fleet worker`: create and stop a deployment.

Both carry the fencing token of the leader that asked. A job whose token is older than the latest
lease grant comes from a deposed leader and does nothing (design.md §6). Retries have one owner per
layer: the Codema client retries one call; a job raises `PlatformUnavailable` so that RQ re-runs it
later; a refusal (`PlatformRejected`) is final and recorded; the scaler never retries, it
recomputes.

Create: one intent makes at most one deployment. The intent id is tagged on the deploy; a re-run
first looks for a deployment carrying it before it deploys again.

Stop: only a deployment the scaler drained (atomically empty, so no reservation can land on it)
is stopped, and only after a fresh status poll still shows it empty: a player who joined through
the platform directly in between is never dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from autoscaler.tags import create_tags
from codema.errors import NotFound, PlatformRejected, PlatformUnavailable
from codema.schemas import DeployRequest, EnvVar, LocationPoint, StopOutcome
from fleet.bootstrap import Services
from fleet.callbacks import callback_url
from fleet.logging import event
from fleet.metrics import SCALER_ACTIONS
from fleet.models import LocationFilter, Status, StatusReport
from fleet.worker import run_job

log = logging.getLogger("autoscaler.jobs")

CREATE_JOB = "autoscaler.jobs.create_deployment_job"
STOP_JOB = "autoscaler.jobs.stop_deployment_job"


# --- RQ entry points (synchronous; the coroutine runs on the worker's loop) --------------------------
def create_deployment_job(payload: dict[str, Any]) -> str:
    return run_job(lambda services: create_deployment(services, payload))


def stop_deployment_job(payload: dict[str, Any]) -> str:
    return run_job(lambda services: stop_deployment(services, payload))


# --- create -----------------------------------------------------------------------------------------
def deploy_tags(payload: dict[str, Any], fleet: str, policy: str) -> list[str]:
    """Our ownership tags, then the selector tags of the waiting sessions it is created for."""
    tags = create_tags(fleet, policy, payload["app"], payload["version"])
    return list(dict.fromkeys([*tags, *(str(t) for t in payload.get("selector_tags") or [])]))


def deploy_request(payload: dict[str, Any], fleet: str, policy: str, services: Services) -> DeployRequest:
    filters = [LocationFilter.model_validate(f) for f in payload.get("filters") or []]
    location = payload.get("location")
    env = [EnvVar(key=str(e["key"]), value=str(e["value"])) for e in payload.get("env") or []]
    return DeployRequest(
        app_name=payload["app"],
        version_name=payload["version"],
        tags=deploy_tags(payload, fleet, policy),
        env_vars=env or None,
        filters=filters or None,
        location=LocationPoint.model_validate(location) if location else None,
        webhook_url=callback_url(services.settings, "deployments"),
    )


async def _current(services: Services, payload: dict[str, Any]) -> bool:
    """The asking leader still leads, and Redis did not lose its data since (after a loss, state is
    rebuilt from the platform before anything is created or stopped)."""
    coord = services.store.coord
    return await coord.is_rebuilt() and await coord.token_is_current(int(payload["token"]))


async def _record(services: Services, fleet: str, kind: str, result: str, **fields: Any) -> str:
    SCALER_ACTIONS.labels(kind, result).inc()
    event(log, "scaler_action", kind=kind, result=result, fleet=fleet, **fields)
    record: dict[str, object] = {"at": services.clock(), "kind": "action", "action": kind, "outcome": result}
    record.update(fields)
    if fleet:
        await services.store.fleets.add_decision(fleet, record)
    return result


async def create_deployment(services: Services, payload: dict[str, Any]) -> str:
    store = services.store
    intent = str(payload["intent"])
    doc = await store.fleets.intent(intent)
    fleet, policy = doc.get("fleet") or payload["fleet"], doc.get("policy") or payload["policy"]
    if not await _current(services, payload):
        await store.fleets.resolve_intent(fleet, policy, intent, {"outcome": "stale_token"})
        return await _record(services, fleet, "create", "stale_token", policy=policy, intent=intent)
    if doc.get("request_id") or not await store.fleets.is_pending(fleet, policy, intent):
        return await _record(services, fleet, "create", "not_pending", policy=policy, intent=intent)
    attempts = int(doc.get("attempts") or 0)
    await store.fleets.update_intent(intent, {"attempts": str(attempts + 1)})
    rid, tags = "", deploy_tags(payload, fleet, policy)
    if attempts:
        # An earlier run may have created it before failing: the intent tag says.
        found = await services.client.find_by_intent(intent)
        if found is not None:
            rid, tags = found.request_id, list(found.tags or tags)
    if not rid:
        try:
            created = await services.client.deploy(
                deploy_request(payload, fleet, policy, services), intent=intent
            )
        except PlatformRejected as err:
            # Final: the scaler folds it into the policy's ERROR back-off, then forgets the intent.
            await store.fleets.update_intent(intent, {"outcome": "rejected", "error": str(err)[:300]})
            return await _record(services, fleet, "create", "rejected", policy=policy, error=str(err)[:300])
        rid, tags = created.request_id, list(created.tags or tags)
    # Its tags now, not at its first status report: until then the scaler would not see it as
    # room for the waiting sessions whose selector tags it carries, and would create another.
    report = StatusReport(request_id=rid, tags=tuple(tags), source="create")
    await store.deployments.apply(report, services.clock())
    await store.deployments.record_owner(
        rid,
        fleet=fleet,
        policy=policy,
        intent=intent,
        app=payload["app"],
        version=payload["version"],
        now=services.clock(),
    )
    await store.fleets.resolve_intent(fleet, policy, intent, {"request_id": rid, "outcome": "created"})
    return await _record(services, fleet, "create", "created", policy=policy, request_id=rid)


# --- stop -------------------------------------------------------------------------------------------
async def _terminated(services: Services, rid: str) -> None:
    report = StatusReport(request_id=rid, status_raw=Status.TERMINATED.wire, source="poll")
    await services.store.deployments.apply(report, services.clock())


async def stop_deployment(services: Services, payload: dict[str, Any]) -> str:
    store = services.store
    rid, fleet, policy = str(payload["request_id"]), payload.get("fleet", ""), payload.get("policy", "")
    if not await _current(services, payload):
        # The deployment stays drained; the current leader re-issues the stop with its own token.
        return await _record(services, fleet, "stop", "stale_token", policy=policy, request_id=rid)
    d = await store.deployments.get(rid, services.clock())
    if d is None or (d.status is not None and d.status.terminal):
        await store.fleets.forget_stop(rid)
        return await _record(services, fleet, "stop", "gone", policy=policy, request_id=rid)
    if not d.draining:
        await store.fleets.forget_stop(rid)
        return await _record(services, fleet, "stop", "not_draining", policy=policy, request_id=rid)
    if d.status is Status.READY and not await _still_empty(services, rid):
        await store.deployments.undrain(rid)
        await store.fleets.forget_stop(rid)
        return await _record(services, fleet, "stop", "in_use", policy=policy, request_id=rid)
    try:
        outcome = await services.client.stop(rid)
    except NotFound:
        outcome = StopOutcome.GONE
    except PlatformRejected as err:
        await store.deployments.undrain(rid)
        await store.fleets.forget_stop(rid)
        return await _record(
            services, fleet, "stop", "rejected", policy=policy, request_id=rid, error=str(err)[:300]
        )
    await store.deployments.mark_stop_requested(rid, services.clock())
    if outcome is StopOutcome.GONE:
        await _terminated(services, rid)
    return await _record(services, fleet, "stop", f"stop_{outcome.value}", policy=policy, request_id=rid)


async def _still_empty(services: Services, rid: str) -> bool:
    """A fresh look: the platform's usage and sessions, plus our holds."""
    try:
        status = await services.client.status(rid)
    except NotFound:
        return True
    await services.store.deployments.apply(status.to_report("poll"), services.clock())
    d = await services.store.deployments.get(rid, services.clock())
    used = status.sockets_usage
    return (
        used == 0
        and not status.sessions
        and d is not None
        and d.sessions == 0
        and d.reserved == 0
        and d.committed == 0
    )


# --- running jobs without RQ (tests, benchmarks, `fleet scaler --inline-jobs`) ------------------------
Body = Callable[[Services, dict[str, Any]], Awaitable[str]]
BODIES: dict[str, Body] = {CREATE_JOB: create_deployment, STOP_JOB: stop_deployment}


class InlineJobs:
    """`JobQueue.enqueue` stand-in that runs job bodies as tasks on the current loop, with the same
    retry rule as RQ (retryable errors re-run after a short delay, up to `max_runs`)."""

    def __init__(
        self, services: Services | None = None, *, retry_delays_s: tuple[float, ...] = (0.2, 0.5, 1.0)
    ) -> None:
        self.services = services
        self.retry_delays_s = retry_delays_s
        self.tasks: set[asyncio.Task[None]] = set()
        self.results: list[tuple[str, dict[str, Any], str]] = []
        self.paused = False
        self.held: list[tuple[str, dict[str, Any]]] = []

    def enqueue(self, func: str, payload: dict[str, Any], *, job_id: str | None = None) -> str:
        if self.paused:
            self.held.append((func, payload))
        else:
            self._start(func, payload)
        return job_id or func

    def _start(self, func: str, payload: dict[str, Any]) -> None:
        task = asyncio.get_running_loop().create_task(self._run(func, payload))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def resume(self) -> None:
        self.paused = False
        held, self.held = self.held, []
        for func, payload in held:
            self._start(func, payload)

    async def _run(self, func: str, payload: dict[str, Any]) -> None:
        assert self.services is not None, "InlineJobs needs its services before jobs run"
        for delay in (*self.retry_delays_s, None):
            try:
                result = await BODIES[func](self.services, payload)
            except PlatformUnavailable as err:
                if delay is None:
                    self.results.append((func, payload, f"failed: {err}"))
                    return
                await asyncio.sleep(delay)
                continue
            self.results.append((func, payload, result))
            return

    async def drain(self, timeout_s: float = 10.0) -> None:
        """Wait for the jobs started so far."""
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=timeout_s)

    def depth(self) -> int:
        return len(self.tasks) + len(self.held)

    def close(self) -> None:
        for task in self.tasks:
            task.cancel()
