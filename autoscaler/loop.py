"""The scaler process: one leader at a time, woken by events within a second, plus a short tick.

Each iteration renews the lease (a standby polls for it and takes over within the lease TTL when
the leader dies), rebuilds state from the platform first when Redis lost its data, runs one pass
(`autoscaler.scaler`), then housekeeping: the periodic reconcile against the platform's full list,
retiring deployments, app-version facts, a few status polls. It then blocks on the event stream
for at most one tick; any event (a webhook's transition, a placement, a session ending, capacity
wanted) ends the wait at once, so the next pass starts within milliseconds of the event.

Fail-static: platform errors, stale data, an empty policy store and lost Redis data never cause a
stop. After Redis lost its data (the "rebuilt" marker is gone) nothing is created or stopped until
the declarative config (FLEET_CONFIG) was re-applied and the platform's list was read completely.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from pathlib import Path

from redis.asyncio import ConnectionPool, Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from autoscaler.reconcile import Reconciler
from autoscaler.scaler import Scaler, StaleLeader
from autoscaler.view import stale_after_s
from fleet.aio import wait_at_most
from fleet.bootstrap import Services
from fleet.logging import event
from fleet.metrics import SCALER_EVENT_LAG_SECONDS, SCALER_IS_LEADER, SCALER_LEADER_CHANGES

log = logging.getLogger("autoscaler.loop")

STANDBY_POLLS_PER_TTL = 10  # a standby asks for the lease this often per TTL
ERROR_PAUSE_S = 0.5


def default_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class ScalerLoop:
    def __init__(self, services: Services, holder: str | None = None) -> None:
        self.services = services
        self.settings = services.settings
        self.holder = holder or default_holder()
        self.scaler = Scaler(services)
        self.reconciler = Reconciler(services, self.scaler)
        self.token = 0
        self.leader = False
        self.after = "0-0"
        self.next_reconcile = 0.0
        self.next_audit = 0.0
        self.pending_events_at: float | None = None  # epoch of the oldest event not yet handled
        self._events: Redis | None = None

    # --- leadership ---------------------------------------------------------------------------------
    async def renew(self) -> bool:
        lease = await self.services.store.coord.acquire_lease(self.holder, self.settings.lease_ttl_s)
        if not lease.held:
            if self.leader:
                event(log, "leader_lost", holder=self.holder)
            self._set_leader(False)
            return False
        if not self.leader or lease.token != self.token:
            self.token = lease.token
            self.scaler.forget()
            self.next_reconcile = 0.0
            self.after = await self.services.store.coord.last_event_id()
            SCALER_LEADER_CHANGES.inc()
            event(log, "leader_acquired", holder=self.holder, token=lease.token)
        self._set_leader(True)
        return True

    def _set_leader(self, leader: bool) -> None:
        self.leader = leader
        SCALER_IS_LEADER.set(1 if leader else 0)

    async def release(self) -> None:
        if self.leader:
            with contextlib.suppress(RedisError, OSError):
                await self.services.store.coord.release_lease(self.holder)
            self._set_leader(False)

    # --- one iteration --------------------------------------------------------------------------------
    async def step(self) -> bool:
        """Renew, rebuild if needed, pass, housekeeping. True while this process leads."""
        if not await self.renew():
            return False
        store, now = self.services.store, self.services.clock()
        if not await store.coord.is_rebuilt() and not await self.rebuild(now):
            return True
        await self.scaler.run_pass(self.token)
        self._observe_event_lag()
        if now >= self.next_reconcile and await self.renew():
            self.next_reconcile = now + self.settings.reconcile_interval_s
            await self.reconciler.reconcile(self.token, now)
            await self.reconciler.retire(self.token, now)
            await self.reconciler.refresh_facts()
        await self.reconciler.poll(self.services.clock(), stale_after_s(self.settings))
        if now >= self.next_audit:
            self.next_audit = now + self.settings.session_audit_interval_s
            for audit_step in self.services.audit_steps:  # the composition's (fleet.bootstrap): sessions
                await audit_step(now)
        return True

    async def rebuild(self, now: float) -> bool:
        """After Redis lost its data: config first, then the platform's list, then act."""
        config = self.settings.config
        # Once per loss: the re-applied fleets survive the next attempt if the list is still down.
        if config and not await self.services.store.fleets.list_fleets():
            from autoscaler.config import apply_file

            try:
                summary = await apply_file(self.services, Path(config))
                event(log, "config_reapplied", path=config, summary=summary)
            except Exception as err:
                event(log, "config_reapply_failed", logging.ERROR, path=config, error=str(err)[:300])
        result = await self.reconciler.reconcile(self.token, now)
        if not result.ok:
            event(log, "rebuild_waiting", logging.WARNING, reason="platform list unavailable")
            return False
        await self.reconciler.refresh_facts()
        for rebuild_step in self.services.rebuild_steps:  # the composition's (fleet.bootstrap): sessions
            if not await rebuild_step(now):
                event(log, "rebuild_waiting", logging.WARNING, reason="a rebuild step is not done")
                return False
        await self.services.store.coord.mark_rebuilt(now)
        self.next_reconcile = now + self.settings.reconcile_interval_s
        event(log, "state_rebuilt", listed=result.listed, adopted=result.adopted)
        return True

    def _observe_event_lag(self) -> None:
        if self.pending_events_at is not None:
            SCALER_EVENT_LAG_SECONDS.observe(max(0.0, time.time() - self.pending_events_at))
            self.pending_events_at = None

    # --- waiting for events ---------------------------------------------------------------------------
    def _events_connection(self) -> Redis:
        if self._events is None:
            # Same server and options as the store's client, but no socket timeout (redis-py's
            # default 5 s would break a long XREAD): read_events bounds the read itself.
            pool = self.services.store.redis.connection_pool
            kwargs = {**pool.connection_kwargs, "socket_timeout": None}
            own = ConnectionPool(connection_class=pool.connection_class, max_connections=2, **kwargs)
            self._events = Redis.from_pool(own)  # closing the client closes its pool
        return self._events

    async def wait_for_events(self, timeout_s: float) -> int:
        """Block until an event arrives or the tick ends; returns how many arrived."""
        block_ms = max(1, int(timeout_s * 1000))
        events = await self.services.store.coord.read_events(self._events_connection(), self.after, block_ms)
        if events:
            self.after = events[-1].id
            first_ms = int(events[0].id.split("-", 1)[0])
            if self.pending_events_at is None:
                self.pending_events_at = first_ms / 1000.0
        return len(events)

    # --- the process --------------------------------------------------------------------------------
    async def run(self, *, once: bool = False, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        standby_s = max(0.05, self.settings.lease_ttl_s / STANDBY_POLLS_PER_TTL)
        while not stop.is_set():
            try:
                leading = await self.step()
            except StaleLeader as err:
                event(log, "stale_leader", logging.WARNING, holder=self.holder, where=str(err))
                self._set_leader(False)
                leading = False
            except (RedisConnectionError, RedisTimeoutError, OSError) as err:
                event(log, "scaler_redis_error", logging.WARNING, error=type(err).__name__)
                self._set_leader(False)
                leading = False
            except Exception:
                # A bug or a record we cannot read must not stop the scaling of every other policy.
                if once:
                    raise
                log.exception("scaler_step_failed")
                await asyncio.sleep(ERROR_PAUSE_S)
                leading = self.leader
            if once:
                return
            try:
                if leading:
                    await self.wait_for_events(min(self.settings.scaler_tick_s, standby_s * 5))
                else:
                    await wait_at_most(stop.wait(), standby_s)
            except (RedisConnectionError, RedisTimeoutError, OSError):
                await asyncio.sleep(ERROR_PAUSE_S)

    async def close(self) -> None:
        await self.release()
        if self._events is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._events.aclose()
            self._events = None


async def run_scaler(
    services: Services, *, once: bool = False, holder: str | None = None, stop: asyncio.Event | None = None
) -> None:
    """`fleet scaler`: run until cancelled or `stop` is set; `once`: one iteration, then exit."""
    loop = ScalerLoop(services, holder)
    try:
        await loop.run(once=once, stop=stop)
    finally:
        await loop.close()
