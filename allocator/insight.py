"""What the allocator knows about the players of a request: where they are and how each player
network measured the deployments. Both come from caches, per network (/24, /48):

- locations: process memory, then Redis, then one platform IP lookup for the networks missing
  (bounded by a short timeout: a slow lookup leaves those players unlocated, it never fails the
  request);
- telemetry: process memory, checked against Redis every few seconds (a small read; the ranking is
  read again only when another process stored a newer one).
  Telemetry is never awaited by a placement: when it is missing, partial, aging or does not cover
  a candidate, a background task measures the network (one in flight per network across all
  processes) and the next placement uses it. Until then geography decides (allocator.placement).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import Counter as Tally
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from allocator.background import Background
from allocator.ips import network_of
from allocator.placement import Placement, Point, Ranks
from codema.client import CodemaClient
from codema.errors import PlatformError
from fleet import metrics
from fleet.callbacks import callback_url
from fleet.logging import event
from fleet.settings import Settings
from fleet.store.placement import GeoFact, PlacementStore, RanksDoc
from fleet.store.telemetry import TelemetryStore

log = logging.getLogger(__name__)

GEO_TTL_S = 7 * 24 * 3600.0  # where a network is changes rarely
GEO_UNKNOWN_TTL_S = 3600.0
GEO_LOCAL_TTL_S = 600.0
GEO_LOOKUP_TIMEOUT_S = 1.5
TELEMETRY_LOCAL_TTL_S = 5.0  # another process's measurement shows here within this
WARM_LOCK_S = 10.0  # at most one measurement per network this often, across processes
TELEMETRY_POLLS_S = (1.0, 0.5, 1.0, 1.5, 2.0, 3.0)  # waits between result reads (~9 s in all)
MAX_TELEMETRY_DEPLOYMENTS = 500
LOCAL_ENTRIES = 50_000

K = TypeVar("K")
V = TypeVar("V")


class LocalCache(Generic[K, V]):
    """A small in-process cache with a TTL per entry and oldest-first eviction."""

    def __init__(self, ttl_s: float, clock: Callable[[], float], max_entries: int = LOCAL_ENTRIES) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self.max_entries = max_entries
        self._data: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> V | None:
        return self.lookup(key)[1]

    def lookup(self, key: K) -> tuple[bool, V | None]:
        """(True, value) for a fresh entry, even when the cached value is None (known absent)."""
        hit = self._data.get(key)
        if hit is None or self.clock() - hit[0] > self.ttl_s:
            return False, None
        return True, hit[1]

    def put(self, key: K, value: V) -> None:
        self._data[key] = (self.clock(), value)
        self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    def clear(self) -> None:
        self._data.clear()


@dataclass(frozen=True)
class Players:
    """The players of one request, as placement and the scaler need them."""

    points: tuple[Point, ...]
    ranks: dict[str, Ranks]  # player network -> telemetry
    sample_ip: dict[str, str]  # player network -> one of its players' addresses
    facts: tuple[GeoFact, ...] = ()  # the located networks of ip_list players, one per player

    def origin(self) -> dict[str, Any]:
        """Where the players are, for the scaler (computed only for sessions that wait)."""
        return origin_of(self.facts, self.points)

    @property
    def telemetry_key(self) -> tuple[tuple[str, float, bool], ...]:
        """Which measurements these are (rankings computed from them can be reused)."""
        return tuple(sorted((n, r.measured_at, r.partial) for n, r in self.ranks.items()))


def _version(ranks: Ranks | None) -> tuple[float, bool] | None:
    return None if ranks is None else (ranks.measured_at, ranks.partial)


def origin_of(facts: Sequence[GeoFact], points: Sequence[Point]) -> dict[str, Any]:
    """Where the players are, for the scaler: centre of their points, most common country."""
    if not points:
        return {}
    x = y = z = 0.0
    for p in points:
        la, lo = math.radians(p.latitude), math.radians(p.longitude)
        x, y, z = x + math.cos(la) * math.cos(lo), y + math.cos(la) * math.sin(lo), z + math.sin(la)
    origin: dict[str, Any] = {
        "latitude": round(math.degrees(math.atan2(z, math.hypot(x, y))), 4),
        "longitude": round(math.degrees(math.atan2(y, x)), 4),
    }
    countries = Tally(f.country for f in facts if f.country)
    names = Tally(f.country_name for f in facts if f.country_name)
    continents = Tally(f.continent for f in facts if f.continent)
    if countries:
        origin["country"] = countries.most_common(1)[0][0]
    if names:
        # Location policies name countries as the platform spells them ("Canada"), not by code.
        origin["country_name"] = names.most_common(1)[0][0]
    if continents:
        origin["continent"] = continents.most_common(1)[0][0]
    return origin


class Insight:
    def __init__(
        self,
        store: PlacementStore,
        client: CodemaClient,
        settings: Settings,
        clock: Callable[[], float],
        background: Background,
        telemetry: TelemetryStore | None = None,
    ) -> None:
        self.store = store
        self.telemetry = telemetry
        self.client = client
        self.settings = settings
        self.clock = clock
        self.background = background
        self._geo: LocalCache[str, GeoFact] = LocalCache(GEO_LOCAL_TTL_S, clock)
        # network -> (when this copy was last checked against Redis, its ranking or None)
        self._ranks: OrderedDict[str, tuple[float, Ranks | None]] = OrderedDict()
        self._warming: LocalCache[str, bool] = LocalCache(WARM_LOCK_S, clock)
        self._checking: dict[str, asyncio.Future[None]] = {}  # network -> revalidation in flight
        self.telemetry_local_ttl_s = TELEMETRY_LOCAL_TTL_S

    async def players(
        self, ips: Sequence[str], geo: Sequence[dict[str, Any]], centroid: Point | None = None
    ) -> Players:
        """Points (given coordinates win over lookups; a request `location` wins over both)."""
        ip_nets = [network_of(ip) for ip in ips]
        sample: dict[str, str] = {}
        for ip, net in zip(ips, ip_nets, strict=True):
            sample.setdefault(net, ip)
        for g in geo:
            sample.setdefault(network_of(g["ip"]), g["ip"])
        located = await self._locate(ip_nets, sample)
        facts = [located[n] for n in ip_nets if n in located]
        points = [
            Point(f.latitude, f.longitude)
            for f in facts
            if f.latitude is not None and f.longitude is not None
        ]
        points += [Point(g["latitude"], g["longitude"]) for g in geo]
        if centroid is not None:
            points = [centroid]
        ranks = await self._telemetry(list(sample))
        return Players(tuple(points), ranks, sample, tuple(facts))

    # --- locations ----------------------------------------------------------------------------
    async def _locate(self, networks: list[str], sample: dict[str, str]) -> dict[str, GeoFact]:
        wanted = list(dict.fromkeys(networks))
        found: dict[str, GeoFact] = {}
        for n in wanted:
            hit = self._geo.get(n)
            if hit is not None:
                found[n] = hit
        missing = [n for n in wanted if n not in found]
        if missing:
            stored = await self.store.get_geo(missing)
            for n, fact in stored.items():
                self._geo.put(n, fact)
            found.update(stored)
            missing = [n for n in missing if n not in stored]
        metrics.ALLOC_GEO_CACHE.labels("hit").inc(len(wanted) - len(missing))
        if missing:
            metrics.ALLOC_GEO_CACHE.labels("miss").inc(len(missing))
            found.update(await self._lookup(missing, sample))
        return found

    async def _lookup(self, networks: list[str], sample: dict[str, str]) -> dict[str, GeoFact]:
        by_ip = {sample[n]: n for n in networks}
        try:
            async with asyncio.timeout(GEO_LOOKUP_TIMEOUT_S):  # not wait_for: see fleet.aio
                answers = await self.client.lookup_ips(list(by_ip))
        except (PlatformError, TimeoutError) as err:
            event(log, "ip_lookup_failed", logging.WARNING, networks=len(networks), error=type(err).__name__)
            return {}
        facts: dict[str, GeoFact] = {n: GeoFact() for n in networks}  # unanswered = unknown
        for a in answers:
            n = by_ip.get(a.ip_address)
            if n is not None:
                facts[n] = GeoFact(a.latitude, a.longitude, a.country_code, a.continent, a.country_name)
        for n, f in facts.items():
            self._geo.put(n, f)
        await self.store.put_geo(facts, GEO_TTL_S, GEO_UNKNOWN_TTL_S)
        return facts

    # --- telemetry ----------------------------------------------------------------------------
    async def _telemetry(self, networks: list[str]) -> dict[str, Ranks]:
        """Each network's ranking: this process's copy, checked against Redis every few seconds
        (a small read, one in flight per network); the ranking is read again only when it changed."""
        now = self.clock()
        ttl = self.telemetry_local_ttl_s
        due = [n for n in networks if now - self._ranks.get(n, (-math.inf, None))[0] > ttl]
        if due:
            mine = [n for n in due if n not in self._checking]
            if mine:
                check = asyncio.ensure_future(self._revalidate(mine, now))
                for n in mine:
                    self._checking[n] = check
            await asyncio.gather(*{self._checking[n] for n in due if n in self._checking})
        return {n: r for n in networks if (r := self._ranks.get(n, (0.0, None))[1]) is not None}

    async def _revalidate(self, networks: list[str], now: float) -> None:
        try:
            meta = await self.store.get_ranks_meta(networks)
            changed = [
                n for n in networks if n in meta and _version(self._ranks.get(n, (0.0, None))[1]) != meta[n]
            ]
            docs = await self.store.get_ranks(changed) if changed else {}
            for n in networks:
                old = self._ranks.get(n, (0.0, None))[1]
                doc = docs.get(n)
                if doc is not None:
                    old = Ranks({rid: i for i, rid in enumerate(doc.order)}, doc.partial, doc.measured_at)
                self._ranks[n] = (now, old if n in meta else None)
                self._ranks.move_to_end(n)
            while len(self._ranks) > LOCAL_ENTRIES:
                self._ranks.popitem(last=False)
        finally:
            for n in networks:
                self._checking.pop(n, None)

    def warm(self, players: Players, placement: Placement, deployments: Sequence[str]) -> None:
        """Measure in the background every network whose telemetry is missing, partial, aging or
        blind to a candidate. Never awaited by the placement."""
        if not deployments:
            return
        now = self.clock()
        half_life = self.settings.telemetry_ttl_s / 2
        for network, ip in players.sample_ip.items():
            ranks = players.ranks.get(network)
            if ranks is None:
                result = "miss"
            elif ranks.partial or placement.unmeasured:
                result = "partial"
            elif now - ranks.measured_at > half_life:
                result = "stale"
            else:
                metrics.ALLOC_TELEMETRY_CACHE.labels("hit").inc()
                continue
            metrics.ALLOC_TELEMETRY_CACHE.labels(result).inc()
            if self._warming.get(network) is None:
                self._warming.put(network, True)
                self.background.spawn(self._warm(network, ip, list(deployments)), f"telemetry:{network}")

    async def _warm(self, network: str, ip: str, deployments: list[str]) -> None:
        if not await self.store.begin_warming(network, WARM_LOCK_S):
            return
        try:
            hook = callback_url(self.settings, "telemetry")
            ticket = await self.client.request_telemetry(deployments[:MAX_TELEMETRY_DEPLOYMENTS], [ip], hook)
            scores, partial = await self._result(ticket.retrieval_key)
        except PlatformError as err:
            metrics.ALLOC_TELEMETRY_REQUESTS.labels("error").inc()
            event(log, "telemetry_failed", logging.INFO, network=network, error=type(err).__name__)
            return
        if not scores:
            metrics.ALLOC_TELEMETRY_REQUESTS.labels("empty").inc()
            return
        doc = RanksDoc(scores, partial, self.clock())
        await self.store.put_ranks(network, doc, self.settings.telemetry_ttl_s)
        self._ranks.pop(network, None)  # read it back with the next placement
        metrics.ALLOC_TELEMETRY_REQUESTS.labels("partial" if doc.partial else "complete").inc()
        event(log, "telemetry_measured", network=network, ranked=len(doc.order), partial=doc.partial)

    async def _result(self, key: str) -> tuple[tuple[str, ...], bool]:
        """The measurement: from the telemetry webhook when it arrives (fleet.store.telemetry),
        else by reading the result after each pause; the last partial one when time runs out."""
        scores: tuple[str, ...] = ()
        partial = True
        for pause in TELEMETRY_POLLS_S:
            pushed = await self.telemetry.wait_for(key, pause) if self.telemetry is not None else None
            if pushed is None:
                if self.telemetry is None:
                    await asyncio.sleep(pause)
                pulled = await self.client.telemetry_result(key)
                scores, partial = tuple(pulled.scores), pulled.partial_result
            else:
                scores, partial = pushed.scores, pushed.partial
            if not partial:
                break
        return scores, partial
