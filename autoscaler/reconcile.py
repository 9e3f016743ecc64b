"""Repairs what lost webhooks and lost data leave wrong, against the platform's own view.

- `reconcile`: the platform's complete deployment list (complete or nothing: a partial list would
  look like deployments that ended). Deployments carrying our tags that Redis does not know are
  adopted; known ones get fresh usage; known ones missing from the list are checked by status
  and marked terminal when the platform says so (the v1 platform sends no webhook when a
  deployment ends); a drained deployment whose stop has not finished gets its stop re-issued.
- `poll`: status polls of known deployments, a few per tick, within the platform's status rate
  limit: starting ones (a lost READY webhook), stopping ones (confirm gone), adopted ones whose app
  version is not known yet, then whichever we heard from least recently.
- `retire`: deployments an operator asked to stop (delete with `stop_deployments=true`) are
  stopped as soon as each is empty, never before.
- `refresh_facts`: app version facts (sockets, empty_ttl) re-read when the cache lost them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from autoscaler.scaler import Scaler
from autoscaler.tags import owner_of
from codema.errors import NotFound, PlatformError
from codema.schemas import DeploymentListItem
from fleet.bootstrap import Services
from fleet.logging import event
from fleet.metrics import SCALER_RECONCILES
from fleet.models import Deployment, Status, StatusReport
from fleet.store import AppVersionFacts

log = logging.getLogger("autoscaler.reconcile")

LIST_GRACE_S = 2.0  # margin for a deployment recorded just before the list was read
STOP_RETRY_S = 120.0  # a drained deployment still running this long after its stop: stop again
POLL_RATE_PER_S = 10.0  # status polls per second (the platform allows 20/s for everyone)
POLL_FRESH_S = 3.0  # starting or stopping deployments heard from within this are not polled
FACTS_TTL_S = 24 * 3600.0
MAX_CONCURRENT_POLLS = 4


@dataclass(frozen=True)
class ReconcileResult:
    ok: bool
    listed: int = 0
    adopted: int = 0
    suspects: int = 0
    restops: int = 0
    error: str = ""


class Reconciler:
    def __init__(self, services: Services, scaler: Scaler) -> None:
        self.services = services
        self.scaler = scaler
        self.suspects: set[str] = set()  # known live, missing from the last complete list
        self.poll_credit = 0.0
        self.last_poll_at: float | None = None
        self.failing = False

    # --- the full list ------------------------------------------------------------------------------
    async def reconcile(self, token: int, now: float) -> ReconcileResult:
        asked_at = self.services.clock()
        try:
            items = await self.services.client.list_deployments()
        except PlatformError as err:
            SCALER_RECONCILES.labels("platform_error").inc()
            if not self.failing:  # one line when it starts failing, one when it recovers
                event(
                    log, "reconcile_failed", logging.WARNING, error=type(err).__name__, detail=str(err)[:200]
                )
            self.failing = True
            return ReconcileResult(ok=False, error=str(err)[:200])
        if self.failing:
            event(log, "reconcile_recovered")
            self.failing = False
        store = self.services.store
        listed = {item.request_id: item for item in items}
        known = {d.request_id: d for d in await store.deployments.get_many(listed, now)}
        adopted = 0
        for item in items:
            adopted += await self._absorb(item, known.get(item.request_id), now)
        live = await store.deployments.live(now)
        # Recorded before the list was asked for, yet not in it: it ended (to be confirmed by a poll).
        self.suspects = {
            d.request_id
            for d in live
            if d.request_id not in listed and d.created_at < asked_at - LIST_GRACE_S
        }
        restops = await self._redrive_stops(live, token, now)
        SCALER_RECONCILES.labels("ok").inc()
        result = ReconcileResult(True, len(items), adopted, len(self.suspects), restops)
        if adopted or self.suspects or restops:
            event(
                log,
                "reconcile",
                listed=len(items),
                adopted=adopted,
                suspects=len(self.suspects),
                restops=restops,
            )
        return result

    async def _absorb(self, item: DeploymentListItem, known: Deployment | None, now: float) -> int:
        """Fresh facts for a listed deployment; adopt it when it is ours and Redis does not know it."""
        store = self.services.store
        owner = owner_of(item.tags)
        if known is None and owner is None:
            return 0  # not ours (another tool's, or the platform's autodeploy)
        await store.deployments.apply(item.to_report("list"), now)
        if owner is None or (known is not None and known.fleet):
            return 0
        await store.deployments.record_owner(
            item.request_id,
            fleet=owner.fleet,
            policy=owner.policy,
            intent=owner.intent,
            app=owner.app,
            version=owner.version,
            now=now,
        )
        event(log, "adopted", request_id=item.request_id, fleet=owner.fleet, policy=owner.policy)
        return 1

    async def _redrive_stops(self, live: Sequence[Deployment], token: int, now: float) -> int:
        store = self.services.store
        stops = await store.fleets.stop_times()
        live_ids = {d.request_id for d in live}
        for rid in set(stops) - live_ids:
            await store.fleets.forget_stop(rid)  # ended: nothing left to re-issue
        count = 0
        for d in live:
            if not d.draining or (d.status is None and d.status_raw):
                continue
            last = stops.get(d.request_id)
            if last is None or now - last > STOP_RETRY_S:
                await self.scaler.enqueue_stop(d.request_id, d.fleet, d.policy, token, now)
                count += 1
        return count

    # --- status polls -----------------------------------------------------------------------------
    def _budget(self, now: float) -> int:
        if self.last_poll_at is None:
            self.poll_credit = POLL_RATE_PER_S
        else:
            self.poll_credit = min(
                POLL_RATE_PER_S * 5, self.poll_credit + (now - self.last_poll_at) * POLL_RATE_PER_S
            )
        self.last_poll_at = now
        budget = int(self.poll_credit)
        self.poll_credit -= budget
        return budget

    def _poll_order(self, live: Iterable[Deployment], now: float, stale_s: float) -> list[str]:
        urgent: list[tuple[int, float, str]] = []
        for d in live:
            quiet = now - d.last_heard
            if d.request_id in self.suspects:
                rank = 0
            elif (d.status is None or d.status.starting or d.stop_requested_at) and quiet >= POLL_FRESH_S:
                rank = 1
            elif d.fleet and not d.app:
                rank = 2
            elif d.released_at is not None and d.released_at > d.last_heard:
                # A session left since the platform last told us its usage: until we ask again,
                # the stale usage keeps counting that player and the policy looks fuller than it is.
                rank = 2
            elif quiet >= stale_s:
                rank = 3
            else:
                continue
            urgent.append((rank, d.last_heard, d.request_id))
        return [rid for _, _, rid in sorted(urgent)]

    async def poll(self, now: float, stale_s: float) -> int:
        budget = self._budget(now)
        if budget <= 0:
            return 0
        live = await self.services.store.deployments.live(now)
        chosen = self._poll_order(live, now, stale_s)[:budget]
        gate = asyncio.Semaphore(MAX_CONCURRENT_POLLS)

        async def one(rid: str) -> None:
            async with gate:
                await self.poll_one(rid)

        await asyncio.gather(*(one(rid) for rid in chosen))
        return len(chosen)

    async def poll_one(self, rid: str) -> None:
        store = self.services.store
        try:
            status = await self.services.client.status(rid)
        except NotFound:
            report = StatusReport(request_id=rid, status_raw=Status.TERMINATED.wire, source="poll")
            await store.deployments.apply(report, self.services.clock())
            self.suspects.discard(rid)
            return
        except PlatformError:
            return
        await store.deployments.apply(status.to_report("poll"), self.services.clock())
        self.suspects.discard(rid)

    # --- retiring deployments ------------------------------------------------------------------
    async def retire(self, token: int, now: float) -> int:
        store = self.services.store
        stopped = 0
        for rid, doc in (await store.fleets.retiring()).items():
            d = await store.deployments.get(rid, now)
            if d is None or (d.status is not None and d.status.terminal) or d.draining:
                await store.fleets.unretire(rid)
                continue
            drained = await store.deployments.try_drain(
                rid, now, stuck=d.status is not None and d.status.starting
            )
            if drained.ok:
                await self.scaler.enqueue_stop(
                    rid, str(doc.get("fleet", "")), str(doc.get("policy", "")), token, now
                )
                await store.fleets.unretire(rid)
                stopped += 1
        return stopped

    # --- app version facts ---------------------------------------------------------------------
    async def refresh_facts(self) -> int:
        store = self.services.store
        wanted = {(ln.app, ln.version) for _, _, links in await store.fleets.all_policies() for ln in links}
        refreshed = 0
        for app, version in sorted(wanted):
            if await store.fleets.get_app_version(app, version) is not None:
                continue
            try:
                av = await self.services.client.get_app_version(app, version)
            except PlatformError:
                continue
            await store.fleets.put_app_version(facts_of(app, version, av.session_config), ttl_s=FACTS_TTL_S)
            refreshed += 1
        return refreshed


def facts_of(app: str, version: str, session_config: object) -> AppVersionFacts:
    kind = getattr(session_config, "kind", "Default")
    return AppVersionFacts(
        app=app,
        version=version,
        kind=str(kind),
        sockets=getattr(session_config, "sockets", None),
        empty_ttl_min=getattr(session_config, "empty_ttl", None),
    )
