"""The replay engine: players, the world and one scaler in virtual time, event by event.

Events, in time order (ties: the world first, then timers, then departures, then arrivals):
- the world's own transitions (`World.next_due`): deployments becoming READY, ending in ERROR,
  ended by the platform (empty_ttl, max_duration), TERMINATED after a stop;
- player arrivals and departures (`fleet.replay.players`);
- timers: a waiting player's deadline, the scaler's own wake-ups, plot samples.
Nothing happens between events, so the clock jumps from one to the next: a four-month trace is a
few million events, not ten million seconds.

Players are placed exactly as the allocator places a session: `allocator.placement.place` ranks the
READY deployments with a free socket for the player's position, and the best one takes the player.
A player nobody can take waits, if `allocator.outlook.outlook` says capacity can still come (else
is refused at once, as the service answers 503); waiting players are demand for one policy, chosen
by `autoscaler.demand.choose`; each deployment that becomes READY takes waiting players oldest
first; a player still waiting `max_wait_s` after asking is refused (the service's
`session_wait_s`, 120 s by default). Session length counts from placement.

Two shortcuts keep a long replay fast, both exact and both checked by `exact=True` in the tests:
- placement reads from `place`, once per player position, the order in which it prefers the
  platform's places, then takes the deployment `place` prefers at the first place with room
  (`Engine.place`); a setup check falls back to asking `place` when that order is not all that
  decides;
- the scaler is only consulted when its answer can change (see `fleet.replay.scalers`).
"""

from __future__ import annotations

import heapq
import math
import random
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from allocator import placement
from allocator.outlook import PolicyRoom, outlook
from allocator.placement import Ask, Candidate, Exclusion
from allocator.placement import Point as AskPoint
from autoscaler.demand import choose
from codema.sim.geo import LOCATIONS
from codema.sim.state import WorldConfig
from fleet.models import Status
from fleet.replay.inputs import ReplayInputs
from fleet.replay.players import Players
from fleet.replay.units import ENDED, PENDING, SERVING, STOPPING, Dep, FleetPlan, Unit, build_units
from fleet.replay.world import ReplayWorld, SessionSeats

INF = math.inf
NO_TELEMETRY: dict[str, Any] = {}
TELEMETRY_TTL_S = 300.0

# Player states; the last one of each player says what happened to it (counted at the end).
NEW, SEATED, WAITING, SEATED_LATE, REFUSED_AT_ONCE, REFUSED_AFTER_WAIT, LEFT, LEFT_LATE = range(8)
# How placement reads `place` (Engine._mode).
BY_ORDER, BY_PLACE, EVERY = range(3)
# A create this soon after a stop of the same policy buys back what was just given away (flapping).
RECREATE_S = 300.0
# Timer kinds.
T_DEPART, T_DEADLINE, T_SAMPLE, T_SCALER, T_RECHECK = 0, 1, 2, 3, 4


class Scaler(Protocol):
    name: str

    def empty_ttl_min(self, inputs: ReplayInputs) -> int | None: ...

    def attach(self, engine: Engine) -> None: ...

    def start(self) -> None: ...

    def changed(self, unit: Unit) -> None: ...

    def structural(self, unit: Unit, dep: Dep, old: int, new: int) -> None: ...

    def timer(self, payload: Any) -> None: ...

    def stats(self) -> dict[str, Any]: ...


@dataclass
class Tally:
    """What one run measured inside the window."""

    arrived: int = 0
    seated_now: int = 0
    waited: int = 0
    refused_at_once: int = 0
    refused_after_wait: int = 0
    still_waiting: int = 0
    dropped: int = 0
    waits_s: list[float] = field(default_factory=list)  # players placed after waiting
    creates: int = 0
    stops: int = 0
    errors: int = 0
    limited_creates: int = 0
    recreates: int = 0  # creates within RECREATE_S of a stop of the same policy: capacity bought back
    samples: list[dict[str, Any]] = field(default_factory=list)


def bucket_of(status: Status, stopping: bool) -> int:
    if status.terminal:
        return ENDED
    if stopping or status is Status.TERMINATING:
        return STOPPING
    if status is Status.READY:
        return SERVING
    return PENDING


class Engine:
    def __init__(
        self,
        inputs: ReplayInputs,
        plan: FleetPlan,
        players: Players,
        scaler: Scaler,
        *,
        exact: bool = False,
        world_sessions: bool = False,
        on_decision: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.inputs = inputs
        self.players = players
        self.scaler = scaler
        self.exact = exact
        self.on_decision = on_decision
        self.t0, self.t1 = inputs.start, inputs.end
        self.now = inputs.start - inputs.warmup_s
        self.world = ReplayWorld(
            lambda: self.now,
            random.Random(inputs.seed),
            WorldConfig(boot_s=inputs.boot_s, stop_s=inputs.stop_s),
        )
        ttl = scaler.empty_ttl_min(inputs)
        self._create_versions(plan, ttl)
        self.units = build_units(plan, inputs, ttl, self.now)
        self.version = plan.player_version
        if world_sessions:
            seats = SessionSeats(self.world, self.version.app, self.version.version)
            self._take, self._release = seats.take, seats.release
        else:
            self._take, self._release = self.world.seat, self.world.unseat
        self.heap: list[tuple[float, int, int, Any]] = []
        self._seq = 0
        self.deps: dict[str, Dep] = {}
        self.live_total = 0
        self.recent_creates: deque[float] = deque()
        self.tally = Tally()
        # Placement: deployments with room, per place: sorted ids by free sockets; places with room.
        self.rooms: dict[tuple[float, float], list[list[str]]] = {}
        self.room_count: dict[tuple[float, float], int] = {}
        self.asks = [Ask(1, players=(AskPoint(r.latitude, r.longitude),)) for r in inputs.regions]
        self._points: dict[tuple[float, float], AskPoint] = {}
        modes = [(EVERY, None) if exact else self._mode(a) for a in self.asks]
        self.modes = [m for m, _ in modes]
        self.preference = [order for _, order in modes]
        # Players.
        n = len(players)
        self.state = bytearray(n)
        self.seat_of: list[Dep | None] = [None] * n
        self.arrived = 0  # players who arrived so far (index of the next one)
        self.waiting: deque[int] = deque()
        self.wait_by_region = [0] * len(inputs.regions)
        self.online_by_region = [0] * len(inputs.regions)
        self._region_unit: list[Unit | None] | None = None  # None: to recompute
        self._last_mapping: list[Unit | None] | None = None
        self.serving_units = [u for u in self.units if u.ref == self.version]
        scaler.attach(self)

    # --- setup -----------------------------------------------------------------------------------
    def _create_versions(self, plan: FleetPlan, ttl: int | None) -> None:
        apps: set[str] = set()
        for ref in plan.versions:
            if ref.app not in apps:
                self.world.create_app(ref.app)
                apps.add(ref.app)
            config: dict[str, Any] = {"kind": "Seat", "sockets": self.inputs.sockets}
            if ttl:
                config["empty_ttl"] = ttl
            self.world.create_version(
                ref.app,
                {
                    "name": ref.version,
                    "docker_repository": "replay",
                    "docker_image": "game",
                    "docker_tag": "1",
                    "req_cpu": 256,
                    "req_memory": 256,
                    "session_config": config,
                },
            )

    def _place(self, region: int, candidates: list[Candidate], limit: int = 1) -> Dep | None:
        decision = placement.place(
            self.asks[region], candidates, NO_TELEMETRY, self.now, TELEMETRY_TTL_S, limit
        )
        return self.deps[decision.order[0]] if decision.order else None

    def _mode(self, ask: Ask) -> tuple[int, tuple[tuple[float, float], ...] | None]:
        """How much of `place`'s answer for this player position can be read in advance, asked
        of `place` itself:
        - BY_ORDER: at one place the fuller deployment wins, then the lower id; and between two
          places the same one always wins, whatever their free sockets and ids. Then the answer is
          the preferred deployment of the first place with room in a fixed order of places.
        - BY_PLACE: the first holds but two places tie: `place` is shown the preferred deployment
          of each place with room.
        - EVERY: `place` is shown every deployment at every placement."""
        points = sorted({(loc.latitude, loc.longitude) for loc in LOCATIONS})

        def first(*cands: tuple[str, int, tuple[float, float]]) -> tuple[float, float]:
            decision = placement.place(
                ask,
                [Candidate(r, f, point=self._point(p)) for r, f, p in cands],
                NO_TELEMETRY,
                0.0,
                TELEMETRY_TTL_S,
                1,
            )
            return next(p for r, _, p in cands if r == decision.order[0])

        here = points[0]
        at_here = [Candidate(r, f, point=self._point(here)) for r, f in (("b", 2), ("a", 5), ("c", 2))]
        if placement.place(ask, at_here, NO_TELEMETRY, 0.0, TELEMETRY_TTL_S, 1).order != ("b",):
            return EVERY, None
        order: list[tuple[float, float]] = []
        left = list(points)
        while left:
            best = first(*((f"d{i}", 1, p) for i, p in enumerate(left)))
            order.append(best)
            left.remove(best)
        for i, p in enumerate(order):
            for q in order[i + 1 :]:
                for cands in (
                    (("a", 9, p), ("b", 1, q)),
                    (("b", 1, p), ("a", 9, q)),
                    (("b", 9, p), ("a", 1, q)),
                ):
                    if first(*cands) != p:
                        return BY_PLACE, None
        return BY_ORDER, tuple(order)

    # --- timers ----------------------------------------------------------------------------------
    def push(self, at: float, kind: int, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self.heap, (at, self._seq, kind, payload))

    # --- the loop --------------------------------------------------------------------------------
    def run(self) -> Tally:
        p = self.players
        arrive, region = p.arrive, p.region
        leave_at, leave_order = p.leave_at, p.leave_order
        n = len(p)
        state = self.state
        heap = self.heap
        world = self.world
        end = self.t1
        self.push(self.t0, T_SAMPLE, None)
        self.scaler.start()
        i = j = 0
        ta = arrive[0] if n else INF
        td = leave_at[0] if n else INF
        arrive_, leave_ = self._arrive, self._leave
        seen = -1  # world.scheduled when next_due() was last read
        tw = INF
        while True:
            if world.scheduled != seen or tw <= self.now:
                seen = world.scheduled
                due = world.next_due()
                tw = INF if due is None else due
            th = heap[0][0] if heap else INF
            t = ta if ta < td else td
            other = th if th < tw else tw
            if other <= t:
                t = other
            if t > end:
                break
            self.now = t
            if tw == t:
                self._world_step()
            elif th == t:
                _, _, kind, payload = heapq.heappop(heap)
                self._timer(kind, payload)
            elif td == t:
                who = leave_order[j]
                j += 1
                td = leave_at[j] if j < n else INF
                if state[who] == SEATED:
                    leave_(who, False)
            else:
                arrive_(i, region[i])
                i += 1
                ta = arrive[i] if i < n else INF
        self.arrived = i
        self.now = end
        self._finish()
        return self.tally

    def _timer(self, kind: int, payload: Any) -> None:
        if kind == T_DEPART:
            if self.state[payload] == SEATED_LATE:
                self._leave(payload, True)
        elif kind == T_DEADLINE:
            if self.state[payload] == WAITING:
                self._refuse_waiting(payload)
        elif kind == T_SCALER:
            self.scaler.timer(payload)
        elif kind == T_RECHECK:
            self.scaler.changed(payload)
        elif kind == T_SAMPLE:
            self._sample()
            if self.now < self.t1:
                self.push(min(self.now + self.inputs.sample_every_s, self.t1), T_SAMPLE, None)

    # --- players ---------------------------------------------------------------------------------
    def _arrive(self, who: int, region: int) -> None:
        """A player asks for a session: placed at once, or waiting, or refused."""
        rooms = self.room_count
        order = self.preference[region]
        if rooms and order is not None:
            # `place`'s choice: the fullest (then lowest id) deployment at the first place with room.
            for point in order:
                if point in rooms:
                    for ids in self.rooms[point]:
                        if ids:
                            self.state[who] = SEATED
                            self._seat(who, region, self.deps[ids[0]])
                            return
        dep = self.place(region) if rooms else None
        if dep is not None:
            self.state[who] = SEATED
            self._seat(who, region, dep)
        elif not self._can_wait():
            self.state[who] = REFUSED_AT_ONCE
        else:
            self.state[who] = WAITING
            self.waiting.append(who)
            self.wait_by_region[region] += 1
            self.push(self.players.arrive[who] + self.inputs.max_wait_s, T_DEADLINE, who)
            unit = self.unit_of_region(region)
            if unit is not None:
                unit.waiting += 1
                unit.replan = True
                self._changed(unit)

    def _seat(self, who: int, region: int, dep: Dep) -> None:
        """The player takes one socket of `dep` (READY, with room)."""
        rid = dep.rid
        self._take(who, rid)
        self.seat_of[who] = dep
        self.online_by_region[region] += 1
        free = dep.sockets - dep.players
        dep.players += 1
        dep.obs = None
        # One socket fewer at its place, in the placement index.
        lists = self.rooms[dep.point]
        ids = lists[free]
        del ids[bisect_left(ids, rid)]
        if free > 1:
            insort(lists[free - 1], rid)
            dep.indexed = free - 1
        else:
            self._unroom(dep.point)
            dep.indexed = 0
        unit = dep.unit
        unit.used += 1
        if free == dep.sockets:
            self._account(unit)
            self._empty_stretch(dep)
            dep.empty_since = None
            del unit.empty_ready[rid]
            unit.replan = True
        if unit.over_since is None and unit.used + unit.waiting >= unit.over_level:
            self._utilisation(unit)
        self.scaler.changed(unit)

    def _leave(self, who: int, late: bool) -> None:
        dep = self.seat_of[who]
        self.seat_of[who] = None
        self.state[who] = LEFT_LATE if late else LEFT
        self.online_by_region[self.players.region[who]] -= 1
        if dep is None or dep.bucket != SERVING:
            return  # its deployment ended under it (counted as dropped then)
        rid = dep.rid
        self._release(who, rid)
        dep.players -= 1
        dep.obs = None
        free = dep.sockets - dep.players
        lists = self.rooms[dep.point]
        if dep.indexed:
            ids = lists[dep.indexed]
            del ids[bisect_left(ids, rid)]
        else:
            self.room_count[dep.point] = self.room_count.get(dep.point, 0) + 1
        insort(lists[free], rid)
        dep.indexed = free
        unit = dep.unit
        unit.used -= 1
        if free == dep.sockets and not dep.stopping:
            self._account(unit)
            dep.empty_since = self.now
            unit.empty_ready[rid] = self.now
            unit.replan = True
        if unit.over_since is not None:
            self._utilisation(unit)
        self.scaler.changed(unit)

    def _seat_waiting(self, who: int, dep: Dep) -> None:
        region = self.players.region[who]
        self.state[who] = SEATED_LATE
        self._unwait(who, region)
        if self.players.arrive[who] >= self.t0:
            self.tally.waits_s.append(self.now - self.players.arrive[who])
        self._seat(who, region, dep)
        self.push(self.now + self.players.length[who], T_DEPART, who)

    def _refuse_waiting(self, who: int) -> None:
        self.state[who] = REFUSED_AFTER_WAIT
        self._unwait(who, self.players.region[who])

    def _unwait(self, who: int, region: int) -> None:
        self.wait_by_region[region] -= 1
        unit = self.unit_of_region(region)
        if unit is not None:
            unit.waiting -= 1
            unit.replan = True
            self._changed(unit)

    def _link_waiting(self) -> None:
        """A deployment became READY: waiting players, oldest first, as the allocator's linker."""
        waiting = self.waiting
        while waiting:
            who = waiting[0]
            if self.state[who] != WAITING:
                waiting.popleft()
                continue
            dep = self.place(self.players.region[who])
            if dep is None:
                return
            waiting.popleft()
            self._seat_waiting(who, dep)

    def _can_wait(self) -> bool:
        """`allocator.outlook`: can the policies still bring a socket for one more waiting player?"""
        rooms = [
            PolicyRoom(
                u.fleet.name, u.policy.name, u.spec.maximum, u.live, u.cap_pending + u.cap_serving - u.used
            )
            for u in self.serving_units
            if u.active
        ]
        return outlook(rooms, self.inputs.sockets, sum(self.wait_by_region), 1).can_wait

    def unit_of_region(self, region: int) -> Unit | None:
        """The unit a region's waiting players count for (`autoscaler.demand.choose`)."""
        mapping = self._region_unit
        if mapping is None:
            mapping = self._assign()
        return mapping[region]

    def _assign(self) -> list[Unit | None]:
        """Recompute which unit carries each region's waiting players (after creates and endings:
        a policy's place is the centre of its deployments), moving the waiting counts if it changed."""
        by_key = {u.key: u for u in self.serving_units}
        targets = [u.target([d.point for d in u.deps.values()]) for u in self.serving_units if u.active]
        mapping = [
            by_key[t.unit] if (t := choose(targets, r.origin)) is not None else None
            for r in self.inputs.regions
        ]
        old, self._last_mapping, self._region_unit = self._last_mapping, mapping, mapping
        if old is None or old == mapping or not sum(self.wait_by_region):
            return mapping
        before = {u.index: u.waiting for u in self.serving_units}
        for u in self.serving_units:
            u.waiting = 0
        for region, count in enumerate(self.wait_by_region):
            unit = mapping[region]
            if unit is not None:
                unit.waiting += count
        for u in self.serving_units:
            if u.waiting != before[u.index]:
                u.replan = True
                self._changed(u)
        return mapping

    # --- placement -------------------------------------------------------------------------------
    def _reclass(self, dep: Dep) -> None:
        """Put a deployment in the placement index (per place: sorted ids by free sockets) or take
        it out, after it changed state."""
        free = dep.sockets - dep.players if dep.bucket == SERVING else 0
        if free == dep.indexed:
            return
        if dep.indexed:
            ids = self.rooms[dep.point][dep.indexed]
            del ids[bisect_left(ids, dep.rid)]
            self._unroom(dep.point)
        if free:
            lists = self.rooms.get(dep.point)
            if lists is None:
                lists = self.rooms[dep.point] = [[] for _ in range(dep.sockets + 1)]
            insort(lists[free], dep.rid)
            self.room_count[dep.point] = self.room_count.get(dep.point, 0) + 1
        dep.indexed = free

    def _unroom(self, point: tuple[float, float]) -> None:
        count = self.room_count[point] - 1
        if count:
            self.room_count[point] = count
        else:
            del self.room_count[point]

    def _representative(self, point: tuple[float, float]) -> tuple[str, int]:
        """The deployment `place` prefers among those with room at one place: fewest free, lowest id."""
        for free, ids in enumerate(self.rooms[point]):
            if ids:
                return ids[0], free
        raise LookupError(point)

    def _point(self, xy: tuple[float, float]) -> AskPoint:
        p = self._points.get(xy)
        if p is None:
            p = self._points[xy] = AskPoint(*xy)
        return p

    def place(self, region: int) -> Dep | None:
        """The deployment `allocator.placement.place` picks for one player of `region`, or None.

        Deployments at one place score the same (geography: there is no telemetry in virtual time)
        and among equal scores `place` packs: fewest free sockets, then lowest id. So, in mode
        BY_ORDER (see `_mode`), the answer is the preferred deployment of the first place with
        room in the region's order of places."""
        mode = self.modes[region]
        if mode == EVERY:
            return self._place_all(region)
        rooms = self.room_count
        if not rooms:
            return None
        if mode == BY_ORDER:
            for point in self.preference[region] or ():
                if point in rooms:
                    return self.deps[self._representative(point)[0]]
            return None
        reps = []
        for point in rooms:
            rid, free = self._representative(point)
            reps.append(Candidate(rid, free, None, frozenset(), self._point(point)))
        return self._place(region, reps)

    def _place_all(self, region: int) -> Dep | None:
        """Every live deployment as the allocator's candidate cache shows it."""
        candidates = []
        for d in self.deps.values():
            blocked = None
            if d.bucket == PENDING:
                blocked = Exclusion.NOT_READY
            elif d.bucket == STOPPING:
                blocked = Exclusion.DRAINING
            candidates.append(
                Candidate(d.rid, d.sockets - d.players, blocked, frozenset(), self._point(d.point))
            )
        return self._place(region, candidates, placement.DEFAULT_LIMIT)

    # --- deployments -----------------------------------------------------------------------------
    def account_room(self) -> int:
        """Creates the account-wide caps allow now (live deployments; creates per minute)."""
        recent = self.recent_creates
        while recent and recent[0] <= self.now - 60.0:
            recent.popleft()
        return max(
            0,
            min(
                self.inputs.account_max_deployments - self.live_total,
                self.inputs.account_max_creates_per_minute - len(recent),
            ),
        )

    def create(self, unit: Unit, count: int) -> int:
        """Deploy up to `count` deployments for the unit within the account caps; how many were made."""
        room = self.account_room()
        made = min(count, room)
        if made < count:
            if self.now >= self.t0:
                self.tally.limited_creates += count - made
            if self.recent_creates:
                self.push(self.recent_creates[0] + 60.0 + 1e-3, T_RECHECK, unit)
        for _ in range(made):
            rec = self.world.deploy(unit.deploy)
            dep = Dep(
                rec.request_id,
                unit,
                (rec.location.latitude, rec.location.longitude),
                rec.sockets or self.inputs.sockets,
                rec.status,
                self.now,
            )
            self._account(unit)
            self.deps[dep.rid] = unit.deps[dep.rid] = dep
            unit.n_pending += 1
            unit.cap_pending += dep.sockets
            unit.recount()
            unit.replan = True
            self.live_total += 1
            unit.peak_live = max(unit.peak_live, unit.live)
            self.recent_creates.append(self.now)
            if self.now >= self.t0:
                unit.creates += 1
                self.tally.creates += 1
                if unit.last_stop_at is not None and self.now - unit.last_stop_at <= RECREATE_S:
                    unit.recreates += 1
                    self.tally.recreates += 1
        if made:
            self._region_unit = None
        return made

    def stop(self, rid: str) -> None:
        """Ask the platform to stop a deployment (the scaler's stop job after draining it)."""
        dep = self.deps.get(rid)
        if dep is None or dep.stopping or dep.bucket == ENDED:
            return
        dep.stopping = True
        dep.obs = None
        dep.unit.last_stop_at = self.now
        self.world.stop(rid)
        if self.now >= self.t0:
            dep.unit.stops += 1
            self.tally.stops += 1
        self._sync(dep, notify=False)

    def _world_step(self) -> None:
        self.world.advance()
        for rid in self.world.take_touched():
            dep = self.deps.get(rid)
            if dep is not None:
                self._sync(dep, notify=True)

    def _sync(self, dep: Dep, *, notify: bool) -> None:
        status = self.world.deployments[dep.rid].status
        if status is dep.status and dep.bucket == bucket_of(status, dep.stopping):
            return
        dep.status = status
        dep.obs = None
        old, new = dep.bucket, bucket_of(status, dep.stopping)
        if old == new:
            return
        self._move(dep, old, new)
        if notify or new == ENDED:
            self.scaler.structural(dep.unit, dep, old, new)
        if new == SERVING:
            self._link_waiting()

    def _move(self, dep: Dep, old: int, new: int) -> None:
        unit = dep.unit
        self._account(unit)  # bill the live deployments up to now, this one included
        unit.replan = True
        dep.bucket = new
        if old == PENDING:
            unit.n_pending -= 1
            unit.cap_pending -= dep.sockets
        elif old == SERVING:
            unit.n_serving -= 1
            unit.cap_serving -= dep.sockets
            unit.used -= dep.players
            if unit.empty_ready.pop(dep.rid, None) is not None:
                self._empty_stretch(dep)
            if dep.players and self.now >= self.t0:
                self.tally.dropped += dep.players
            self._reclass(dep)
        elif old == STOPPING:
            unit.n_stopping -= 1
        if new == SERVING:
            unit.n_serving += 1
            unit.cap_serving += dep.sockets
            dep.ready_at = self.now
            dep.empty_since = self.now
            unit.empty_ready[dep.rid] = self.now
            self._reclass(dep)
        elif new == STOPPING:
            unit.n_stopping += 1
            if not dep.stopping:
                unit.last_stop_at = self.now
                if self.now >= self.t0:
                    unit.stops += 1  # the platform ended it by itself (empty_ttl, max_duration)
                    self.tally.stops += 1
        elif new == ENDED:
            del unit.deps[dep.rid]
            del self.deps[dep.rid]
            self.live_total -= 1
            self._region_unit = None
            if dep.status is Status.ERROR and self.now >= self.t0:
                self.tally.errors += 1
        unit.recount()
        self._utilisation(unit)

    # --- measurements ----------------------------------------------------------------------------
    def _changed(self, unit: Unit) -> None:
        demand = unit.used + unit.waiting
        if (demand > 0 and demand >= unit.over_level) is (unit.over_since is None):
            self._utilisation(unit)
        self.scaler.changed(unit)

    def _span(self, since: float) -> float:
        return max(0.0, min(self.now, self.t1) - max(since, self.t0))

    def _account(self, unit: Unit) -> None:
        """Integrate live deployments (billed from the deploy call until TERMINATED) up to now, and
        how many of them were starting, stopping or READY and empty. Called before any of these
        counts changes."""
        span = self._span(unit.live_t)
        if span:
            unit.live_s += unit.live * span
            unit.starting_s += unit.n_pending * span
            unit.stopping_s += unit.n_stopping * span
            unit.empty_s += len(unit.empty_ready) * span
        unit.live_t = self.now

    def _empty_stretch(self, dep: Dep) -> None:
        """A READY deployment's empty stretch ends: count the part of it past the policy's idle time
        (what only the scale-in rules, not the idle time, kept running)."""
        if dep.empty_since is not None:
            dep.unit.empty_past_idle_s += self._span(dep.empty_since + dep.unit.spec.idle_s)

    def _utilisation(self, unit: Unit) -> None:
        """Time over threshold: demand (placed + waiting players) at or above `threshold` of READY sockets."""
        demand = unit.used + unit.waiting
        over = demand > 0 and demand >= unit.over_level
        if over and unit.over_since is None:
            unit.over_since = self.now
        elif not over and unit.over_since is not None:
            unit.over_s += self._span(unit.over_since)
            unit.over_since = None

    def _count_players(self) -> None:
        """What happened to the players who arrived in the window, from their last state."""
        first = bisect_left(self.players.arrive, self.t0)
        outcome = self.state[first : self.arrived]
        t = self.tally
        t.arrived = len(outcome)
        t.seated_now = outcome.count(SEATED) + outcome.count(LEFT)
        t.waited = outcome.count(SEATED_LATE) + outcome.count(LEFT_LATE)
        t.refused_at_once = outcome.count(REFUSED_AT_ONCE)
        t.refused_after_wait = outcome.count(REFUSED_AFTER_WAIT)
        t.still_waiting = outcome.count(WAITING)

    def _sample(self) -> None:
        self.tally.samples.append(
            {
                "t": self.now,
                "units": [[u.capacity, u.live, u.used] for u in self.units],
                "regions": [
                    [self.online_by_region[r], self.wait_by_region[r]]
                    for r in range(len(self.inputs.regions))
                ],
            }
        )

    def _finish(self) -> None:
        for unit in self.units:
            self._account(unit)
            for rid in unit.empty_ready:
                self._empty_stretch(self.deps[rid])
            if unit.over_since is not None:
                unit.over_s += self._span(unit.over_since)
                unit.over_since = None
        self._count_players()
        if self.exact:
            # The ground truth agrees with what the replay believed (sockets, live deployments).
            truth = {d.request_id: d for d in self.world.list_deployments()}
            assert set(truth) == set(self.deps), "replay and world disagree on live deployments"
            for rid, dep in self.deps.items():
                assert truth[rid].used == dep.players, f"{rid}: world has {truth[rid].used} players"
