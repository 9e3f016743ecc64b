"""Placing sessions: decide, reserve, create the platform session with one short call, confirm.

Safety lives in one place: the reservation script in Redis (fleet.store.deployments `reserve`),
which admits a session only while reserved plus used sockets fit the deployment and the deployment
is READY and not draining. Everything before it (snapshot, caches, ranking) only orders the
candidates, so any number of processes may place at once without overbooking. A reservation that
is never confirmed (process died, platform call hung) frees itself after `reservation_ttl_s`.

A create whose answer is lost (a timeout after sending, a 5xx) may still have made the platform
session. Every session we create carries our session id in its callback URL (allocator.marks), so
the platform's session list tells: found on the deployment, it is linked as if the answer had come;
not found, or the list unreadable, the reservation is released and the client gets 503 as before,
and the stray sweeper (allocator.strays) looks again later and deletes whatever the platform made
for a session we did not link.

When nothing has room the session waits (answered at once, as the platform does), its size is
added to the app version's waiting demand and a `capacity` event wakes the scaler; the linker
(allocator.linker) places it when a deployment becomes READY or sockets are freed.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from allocator.apps import AppFacts
from allocator.background import Background
from allocator.candidates import CandidateCache, Snapshot
from allocator.insight import Insight, Players
from allocator.marks import marked_url
from allocator.notify import Notifier
from allocator.outlook import Outlook, PolicyRoom, outlook
from allocator.placement import Ask, LocationRule, Placement, Point, choose
from allocator.rankings import Rankings
from allocator.strays import PlatformSessions, StraySweeper, is_linked
from allocator.views import session_get
from allocator.waiters import Waiters
from codema.errors import PlatformError, PlatformRejected, PlatformUnavailable, Unauthorized
from codema.schemas import GeoIp, Selector, SessionCreate
from fleet import metrics
from fleet.bootstrap import Services
from fleet.callbacks import callback_url
from fleet.logging import event
from fleet.models import Deployment, SessionRecord, SessionState, Status
from fleet.store.placement import PlacementStore

log = logging.getLogger(__name__)

# Platform answers that mean "not this deployment" (gone, full, refused): try the next candidate.
NEXT_CANDIDATE_STATUSES = frozenset({404, 409, 410, 422})
MAX_LINK_TRIES = 4
RESERVE_ROUNDS = 6  # rounds of `choose` (4 candidates each) before a session is said to find no room


@dataclass(frozen=True)
class Chosen:
    """The deployment an attempt chose last (or was asked for) and who created it, as the snapshot
    read them from the store; all "" when none was chosen or it is not ours."""

    deployment: str = ""
    fleet: str = ""
    policy: str = ""


@dataclass(frozen=True)
class Attempt:
    """How one placement attempt ended."""

    linked: bool
    placement: Placement | None
    platform_down: bool = False
    refused: str = ""  # the platform's message when it refused the session itself
    ended: bool = False  # the platform already called it unprocessable or in error (record updated)
    chosen: Chosen = Chosen()


@dataclass
class PlacementLine:
    """The one `event=placement` log line of a placement attempt (issue 7), whatever path the
    attempt ends on: `emit` writes it the first time and ignores later calls, so an error raised
    after an outcome was logged does not log a second one. How many players, never their addresses.

    `outcome` is the `fleet_allocator_placements_total` result (linked, waiting, refused,
    unprocessable, error); `reason` the ranking source when something was chosen (telemetry,
    geography, ..., pinned), else why not (no_room, no_match, pinned_unavailable, wait_expired,
    platform_unavailable, ...). `latency_ms` is this attempt's own time, platform call included."""

    record: SessionRecord
    started: float = field(default_factory=time.perf_counter)
    done: bool = False

    def emit(self, outcome: str, reason: str, attempt: Attempt | None = None, **extra: Any) -> None:
        if self.done:
            return
        self.done = True
        r = self.record
        chosen = attempt.chosen if attempt is not None else Chosen()
        event(
            log,
            "placement",
            logging.WARNING if outcome == "error" else logging.INFO,
            session=r.session_id,
            app=r.app,
            version=r.version,
            fleet=chosen.fleet,
            policy=chosen.policy,
            deployment=chosen.deployment,
            outcome=outcome,
            reason=reason,
            players=len(r.ips) + len(r.geo),
            size=r.size,
            latency_ms=round((time.perf_counter() - self.started) * 1000, 1),
            **extra,
        )


def ranking_reason(attempt: Attempt, default: str = "no_deployments") -> str:
    return attempt.placement.reason.value if attempt.placement is not None else default


def new_session_id() -> str:
    return f"{secrets.token_hex(8)}-s"


def ask_of(record: SessionRecord, players: Players, constraints: Mapping[str, Any]) -> Ask:
    tags = frozenset(str(s["tag"]) for s in record.selectors if not s.get("tag_only"))
    rules: list[LocationRule] = []
    for name in ("city", "country", "continent", "administrative_division"):
        if constraints.get(name):
            rules.append(LocationRule(name, frozenset({str(constraints[name]).lower()})))
    for f in constraints.get("filters", ()):
        rules.append(LocationRule(f["field"], frozenset(v.lower() for v in f["values"]), f["filter_type"]))
    return Ask(record.size, tags, players.points, record.requested_deployment, tuple(rules))


def centroid_of(constraints: Mapping[str, Any]) -> Point | None:
    loc = constraints.get("location")
    return Point(loc["latitude"], loc["longitude"]) if isinstance(loc, dict) else None


def _chosen(snap: Snapshot, rid: str) -> Chosen:
    c = snap.candidates.get(rid) if rid else None
    return Chosen(rid, c.fleet, c.policy) if c is not None else Chosen(rid)


class Allocator:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.settings = services.settings
        self.store = services.store
        self.client = services.client
        self.clock = services.clock
        self.background = Background()
        self.placements = PlacementStore(self.store.redis, self.store.keys)
        self.candidates = CandidateCache(self.store.deployments, self.placements, self.clock)
        self.rankings = Rankings(self.settings.telemetry_ttl_s)
        self.insight = Insight(
            self.placements, self.client, self.settings, self.clock, self.background, self.store.telemetry
        )
        self.apps = AppFacts(self.store.fleets, self.client, self.clock)
        self.notifier = Notifier(self.background)
        self.waiters = Waiters()
        self.holder = f"alloc-{secrets.token_hex(6)}"
        self.session_callback = callback_url(self.settings, "sessions")
        self.platform_sessions = PlatformSessions(self.client, self.session_callback)
        self.sweeper = StraySweeper(self.platform_sessions, self.store, self.holder, self.background)
        self._unsettled: set[str] = set()  # ids whose platform session may exist unlinked (this attempt)
        self.wake_linker: Callable[[], None] = lambda: None  # set by the linker of this process

    async def aclose(self) -> None:
        self.sweeper.abandon()
        await self.background.aclose()
        await self.candidates.aclose()
        await self.notifier.aclose()

    # --- decide and reserve -------------------------------------------------------------------
    async def reserve_best(
        self, record: SessionRecord, ask: Ask, players: Players, snap: Snapshot, tried: set[str]
    ) -> tuple[Placement, str | None]:
        """Choose from the (cached) ranking for these players and reserve the first candidate the
        script admits. Refused ones are noted in the snapshot and skipped; after a round of
        refusals (a stale view under contention) the next best are tried, a bounded number."""
        now = self.clock()
        ranking = self.rankings.get(snap, players, now)
        first: Placement | None = None
        for _ in range(RESERVE_ROUNDS):
            decision = choose(ask, ranking, snap.candidates, skip=tried)
            if first is None:
                first = decision
                metrics.ALLOC_RANK_REASON.labels(decision.reason.value).inc()
                self.insight.warm(players, decision, snap.ready_ids)
            for rid in decision.order:
                tried.add(rid)
                hold = await self.store.deployments.reserve(
                    rid, record.session_id, record.size, now, self.settings.reservation_ttl_s
                )
                if hold.ok:
                    snap.note_reserved(rid, record.size)
                    return decision, rid
                snap.note_refused(rid, hold.reason)
                metrics.ALLOC_RESERVE_REFUSED.labels(hold.reason).inc()
            if not decision.order:
                break
        assert first is not None
        return first, None

    async def attempt(
        self, record: SessionRecord, constraints: Mapping[str, Any], snap: Snapshot | None = None
    ) -> Attempt:
        """Place now if anything has room: reserve, create the platform session, confirm."""
        try:
            return await self._attempt(record, constraints, snap)
        finally:
            # Only now: while the attempt runs, a platform session it is about to link must stay.
            if record.session_id in self._unsettled:
                self._unsettled.discard(record.session_id)
                self.sweeper.note(record.session_id)

    async def _attempt(
        self, record: SessionRecord, constraints: Mapping[str, Any], snap: Snapshot | None
    ) -> Attempt:
        players = await self.insight.players(record.ips, record.geo, centroid_of(constraints))
        ask = ask_of(record, players, constraints)
        snap = snap or await self.candidates.get(record.app, record.version)
        tried: set[str] = set()
        first: Placement | None = None
        for _ in range(MAX_LINK_TRIES):
            started = time.perf_counter()
            decision, rid = await self.reserve_best(record, ask, players, snap, tried)
            first = first or decision
            if rid is None:
                record.origin = record.origin or players.origin()  # where capacity should come
                return Attempt(False, first, chosen=_chosen(snap, record.requested_deployment))
            metrics.ALLOC_DECISION.observe(time.perf_counter() - started)
            outcome = await self._link(record, rid, snap)
            chosen = _chosen(snap, rid)
            if outcome == "linked":
                return Attempt(True, decision, chosen=chosen)
            if outcome == "down":
                return Attempt(False, decision, platform_down=True, chosen=chosen)
            if outcome == "ended":
                return Attempt(False, decision, ended=True, chosen=chosen)
            if outcome != "next":
                return Attempt(False, decision, refused=outcome, chosen=chosen)
        return Attempt(False, first)

    async def _link(self, record: SessionRecord, rid: str, snap: Snapshot) -> str:
        """'linked', 'next' (this deployment refused), 'down' (platform unavailable), 'ended' (the
        platform's callback, applied now, says it failed) or the platform's refusal."""
        try:
            created = await self.client.create_session(self._platform_request(record, rid))
            platform_id = created.session_id
        except Unauthorized:
            await self._release(rid, record, snap)
            event(log, "session_create_unauthorized", logging.ERROR, deployment=rid)
            return "down"
        except PlatformRejected as err:
            await self._release(rid, record, snap)
            if err.status in NEXT_CANDIDATE_STATUSES:
                snap.note_refused(rid, "full")
                event(log, "session_create_refused", logging.INFO, deployment=rid, status=err.status)
                return "next"
            return f"the platform refused the session: {err}"
        except PlatformUnavailable as err:
            found = await self._look_up_after(err, record, rid) if err.ambiguous else None
            if found is None:
                await self._release(rid, record, snap)
                event(
                    log,
                    "session_create_unavailable",
                    logging.WARNING,
                    deployment=rid,
                    error=type(err).__name__,
                    ambiguous=err.ambiguous,
                )
                return "down"
            platform_id = found
        return await self._confirm(record, rid, snap, platform_id)

    async def _look_up_after(self, err: PlatformUnavailable, record: SessionRecord, rid: str) -> str | None:
        """After a create whose answer was lost: the platform's id of the session it made on `rid`
        for us, or None (not made, or the list cannot be read: then it counts as not made, the
        client gets 503, and the sweeper deletes it if it appears)."""
        sid = record.session_id
        try:
            mine = (await self.platform_sessions.ours()).get(sid, [])
        except PlatformError as look:
            self._unsettled.add(sid)
            why = type(look).__name__
            event(
                log,
                "session_create_unknown",
                logging.WARNING,
                session=sid,
                deployment=rid,
                status=err.status,
                error=why,
            )
            return None
        placed = [s for s in mine if is_linked(s, rid)]
        found = bool(placed)
        event(
            log,
            "session_create_ambiguous",
            logging.WARNING,
            session=sid,
            deployment=rid,
            status=err.status,
            found=found,
        )
        if not placed:  # the platform may still act on the request: look again later
            self._unsettled.add(sid)
        return placed[0].session_id if placed else None

    async def _confirm(self, record: SessionRecord, rid: str, snap: Snapshot, platform_id: str) -> str:
        """The platform made the session on `rid`: make it ours, or undo it when its sockets are no
        longer ours to take (the reservation expired and the session does not fit any more)."""
        sid = record.session_id
        now = self.clock()
        adopted, how = await self.placements.adopt_session(rid, sid, record.size, now)
        if not adopted:
            event(
                log, "platform_session_not_adopted", logging.WARNING, deployment=rid, session=sid, reason=how
            )
            snap.note_refused(rid, how)
            await self._drop_platform_session(sid, platform_id)
            return "next"
        if how == "fits":  # the platform call outlived the reservation, but the session still fits
            event(log, "reservation_expired_session_kept", deployment=rid, session=sid)
        record.platform_session_id = platform_id
        record.deployment_request_id = rid
        record.state = SessionState.LINKED
        record.linked_at = now
        record.error = ""
        await self.store.sessions.put(record)
        # The platform may have called back before it told us its id: those reports apply now
        # (forward only: a failure is final, and the store releases the hold with it).
        for result in await self.store.sessions.link_platform_id(platform_id, sid):
            if result.state in (SessionState.UNPROCESSABLE, SessionState.ERROR):
                await self._release(rid, record, snap)
                record.state = result.state
        return "linked" if record.state is SessionState.LINKED else "ended"

    async def _drop_platform_session(self, session_id: str, platform_session_id: str) -> None:
        try:
            await self.client.delete_session(platform_session_id)
        except PlatformError as err:  # the platform's usage keeps counting it: safe; the sweeper retries
            event(
                log, "orphan_platform_session", logging.WARNING, session=session_id, error=type(err).__name__
            )
            self._unsettled.add(session_id)

    async def _release(self, rid: str, record: SessionRecord, snap: Snapshot) -> None:
        await self.store.deployments.release(rid, record.session_id, self.clock())
        snap.note_released(rid, record.size)

    def _platform_request(self, record: SessionRecord, rid: str) -> SessionCreate:
        return SessionCreate(
            app_name=record.app,
            version_name=record.version,
            ip_list=record.ips or None,
            geo_ip_list=[GeoIp(**g) for g in record.geo] or None,
            deployment_request_id=rid,
            selectors=[Selector.model_validate(s) for s in record.selectors] or None,
            webhook_url=marked_url(self.session_callback, record.session_id),
        )

    async def platform_failed(self, session_id: str) -> None:
        """The platform said a session we linked is unprocessable or in error (the webhook ingest
        recorded it and released its hold): make sure the sockets are free here too and tell the
        client, once across all web processes."""
        record = await self.store.sessions.get(session_id)
        if record is None or record.state not in (SessionState.UNPROCESSABLE, SessionState.ERROR):
            return
        rid = record.deployment_request_id
        if rid:
            await self.store.deployments.release(rid, session_id, self.clock())  # idempotent
            self.candidates.invalidate(record.app, record.version)
        event(log, "session_failed_on_platform", session=session_id, deployment=rid, state=record.state.value)
        await self.notify_once(record)

    # --- waiting --------------------------------------------------------------------------------
    async def capacity_outlook(self, record: SessionRecord, sockets: int | None) -> Outlook:
        """Whether the fleet policies linked to this app version can still bring room."""
        rooms: list[PolicyRoom] = []
        now = self.clock()
        fleets = self.store.fleets
        if not self.settings.dry_run:
            for fleet in await fleets.list_fleets():
                if not fleet.enabled or fleet.dry_run:
                    continue
                if await fleets.get_link(fleet.name, record.app, record.version) is None:
                    continue
                for policy in await fleets.list_policies(fleet.name):
                    if policy.enabled and not policy.dry_run:
                        deps = await self.store.deployments.of_policy(fleet.name, policy.name, now)
                        rooms.append(
                            self._room(fleet.name, policy.name, policy.maximum, deps, record, sockets)
                        )
        waiting = await self.store.sessions.waiting_demand(record.app, record.version)
        return outlook(rooms, sockets, waiting, record.size)

    @staticmethod
    def _room(
        fleet: str,
        policy: str,
        maximum: int,
        deps: list[Deployment],
        record: SessionRecord,
        sockets: int | None,
    ) -> PolicyRoom:
        live = [d for d in deps if d.status is None or d.status.live]
        open_sockets = 0
        for d in live:
            if d.app != record.app or d.version != record.version or d.draining:
                continue
            if d.status is None or d.status.starting:
                open_sockets += d.sockets or sockets or 0  # a deployment on its way: all of it
            elif d.status is Status.READY:
                open_sockets += d.free_sockets  # free now, about to be taken by waiting sessions
        return PolicyRoom(fleet, policy, maximum, len(live), open_sockets)

    async def start_waiting(
        self, record: SessionRecord, constraints: Mapping[str, Any], cap: int | None
    ) -> bool:
        """Queue the session for capacity unless the waiting demand would exceed `cap` sockets."""
        now = self.clock()
        record.state = SessionState.WAITING
        record.deadline = now + self.settings.session_wait_s
        if constraints:
            await self.placements.put_ask(record.session_id, constraints, self.settings.session_wait_s + 60)
        await self.store.sessions.put(record)  # before the queue entry: the linker reads both
        if not await self.store.sessions.enqueue_waiting(record, cap):
            await self.store.sessions.delete(record.session_id)
            await self.placements.forget_ask(record.session_id)
            return False
        await self.store.coord.publish(
            "capacity",
            app=record.app,
            version=record.version,
            session_id=record.session_id,
            size=str(record.size),
        )
        metrics.ALLOC_WAITS.labels("started").inc()
        return True

    def notify(self, record: SessionRecord, deployment: Deployment | None) -> None:
        self.notifier.send(record.webhook_url, session_get(record, deployment, self.clock()))

    async def notify_once(self, record: SessionRecord) -> None:
        """Tell the client about a state the platform reported: every web process sees the
        same event, one of them calls the webhook."""
        if await self.placements.first_notice(record.session_id, record.state.value):
            await self.notify_current(record)

    async def notify_current(self, record: SessionRecord) -> None:
        if record.webhook_url:
            d = None
            if record.deployment_request_id:
                d = await self.store.deployments.get(record.deployment_request_id, self.clock())
            self.notify(record, d)
