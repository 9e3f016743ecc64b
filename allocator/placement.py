"""Which deployments may take a session, best first (design.md §4 "Placement"). Pure.

Inputs are plain values: the ask (size, selector tags, where the players are), the candidate
deployments, and the cached telemetry ranking of each player network. The clock is a
parameter. The result is a frozen `Placement` whose `reason` says what decided the order.

Ranking, in order of trust:
1. Telemetry: when every eligible candidate has a fresh, measured position for every player
   network, the mean position decides (the platform measured real latency).
2. Geography: otherwise, when the players are located, the estimated round-trip time from their
   points to the deployment's coordinates decides; telemetry only breaks ties.
3. Partial telemetry without geography: measured candidates first, in telemetry order.
A candidate with no score of any kind never ranks above a scored one: an unmeasured deployment
could be on the other side of the world. Ties go to the fuller deployment (fewer free sockets),
which packs sessions and leaves empty deployments free to be scaled in.
"""

from __future__ import annotations

import enum
import heapq
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fleet.models import Deployment, Status

EARTH_RADIUS_KM = 6371.0
# Light in fibre covers ~100 km per ms of round trip; real routes are ~1.5x the great circle.
RTT_BASE_MS = 4.0
RTT_MS_PER_KM = 1.5 / 100.0
DEFAULT_LIMIT = 8
INF = math.inf


class Reason(enum.StrEnum):
    TELEMETRY = "telemetry"  # fresh telemetry covered every candidate
    GEOGRAPHY = "geography"  # no telemetry yet: the geographic estimate decided
    GEOGRAPHY_FALLBACK = "geography_fallback"  # telemetry partial, stale or incomplete: geography decided
    TELEMETRY_PARTIAL = "telemetry_partial"  # players not located: measured candidates first
    UNSCORED = "unscored"  # nothing to score with: fullest first
    PINNED = "pinned"  # the client named the deployment
    NO_DEPLOYMENTS = "no_deployments"  # no live deployment of the app version
    NO_MATCH = "no_match"  # none carries the selector tags or sits where the client asked
    NO_ROOM = "no_room"  # matching ones are full, starting, draining or of unknown usage
    PINNED_UNAVAILABLE = "pinned_unavailable"  # the named deployment cannot take the session


class Exclusion(enum.StrEnum):
    NOT_READY = "not_ready"
    DRAINING = "draining"
    USAGE_UNKNOWN = "usage_unknown"
    FULL = "full"
    TAGS = "tags"
    LOCATION = "location"


@dataclass(frozen=True, slots=True)
class Point:
    latitude: float
    longitude: float


@dataclass(frozen=True, slots=True)
class Candidate:
    """What placement needs from one deployment; `blocked` says why it can take nothing now."""

    request_id: str
    free: int
    blocked: Exclusion | None = None
    tags: frozenset[str] = frozenset()
    point: Point | None = None
    # Lower-cased location values by field (city, country, continent, administrative_division,
    # location_tags) for the session's location constraints.
    where: Mapping[str, frozenset[str]] = field(default_factory=dict)


SortKey = Callable[[Candidate], tuple[Any, ...]]


@dataclass(frozen=True)
class LocationRule:
    """A session location constraint: `field` values compared case-insensitively."""

    field: str
    values: frozenset[str]
    filter_type: str = "any"  # any | all | not


@dataclass(frozen=True)
class Ask:
    size: int
    tags: frozenset[str] = frozenset()  # selector tags that filter (tag_only ones excluded)
    players: tuple[Point, ...] = ()
    pinned: str = ""
    rules: tuple[LocationRule, ...] = ()


@dataclass(frozen=True)
class Ranks:
    """One player network's telemetry: deployment -> position (0 = best) from one measurement."""

    positions: Mapping[str, int]
    partial: bool
    measured_at: float


@dataclass(frozen=True)
class Placement:
    order: tuple[str, ...]  # best first, at most `limit`
    reason: Reason
    eligible: int
    excluded: Mapping[Exclusion, int]
    unmeasured: tuple[str, ...] = ()  # eligible candidates telemetry does not cover yet
    best_rtt_ms: float | None = None  # geographic estimate of the first choice, when known

    @property
    def placed(self) -> bool:
        return bool(self.order)


def candidate_of(d: Deployment) -> Candidate:
    """The placement view of a stored deployment."""
    blocked: Exclusion | None = None
    if d.status is not Status.READY:
        blocked = Exclusion.NOT_READY
    elif d.draining:
        blocked = Exclusion.DRAINING
    elif d.sockets is None or d.usage is None:
        blocked = Exclusion.USAGE_UNKNOWN
    loc = d.location
    point = None
    where: dict[str, frozenset[str]] = {}
    if loc is not None:
        if loc.latitude is not None and loc.longitude is not None:
            point = Point(loc.latitude, loc.longitude)
        for name in ("city", "country", "continent", "administrative_division"):
            value = getattr(loc, name)
            if value:
                where[name] = frozenset((value.lower(),))
        where["location_tags"] = frozenset(t.lower() for t in loc.tags)
    return Candidate(d.request_id, d.free_sockets, blocked, frozenset(d.tags), point, where)


def rtt_ms(a: Point, b: Point) -> float:
    """Estimated round-trip time between two points (haversine distance, fibre speed, detour)."""
    la1, lo1, la2, lo2 = map(math.radians, (a.latitude, a.longitude, b.latitude, b.longitude))
    h = math.sin((la2 - la1) / 2) ** 2 + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2
    return RTT_BASE_MS + RTT_MS_PER_KM * 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def mean_rtt_ms(players: Sequence[Point], target: Point) -> float:
    return sum(rtt_ms(p, target) for p in players) / len(players)


def _rule_holds(rule: LocationRule, c: Candidate) -> bool:
    have = c.where.get(rule.field)
    if have is None:
        return rule.filter_type == "not"  # a deployment without that fact cannot prove a match
    if rule.filter_type == "all":
        return rule.values <= have
    if rule.filter_type == "not":
        return not (rule.values & have)
    return bool(rule.values & have)


def exclusion(ask: Ask, c: Candidate) -> Exclusion | None:
    """Why this candidate cannot take the session, or None when it can."""
    if c.blocked is not None:
        return c.blocked
    if not ask.tags <= c.tags:
        return Exclusion.TAGS
    if ask.rules and not all(_rule_holds(r, c) for r in ask.rules):
        return Exclusion.LOCATION
    if c.free < ask.size:
        return Exclusion.FULL
    return None


def _empty_reason(excluded: Mapping[Exclusion, int]) -> Reason:
    if not excluded:
        return Reason.NO_DEPLOYMENTS
    if set(excluded) <= {Exclusion.TAGS, Exclusion.LOCATION}:
        return Reason.NO_MATCH
    return Reason.NO_ROOM


def _telemetry_positions(
    eligible: Sequence[Candidate], telemetry: Mapping[str, Ranks], now: float, ttl_s: float
) -> tuple[dict[str, float], bool]:
    """Mean position per candidate measured in every fresh network; and whether that covers all."""
    fresh = [r for r in telemetry.values() if now - r.measured_at <= ttl_s]
    if not fresh:
        return {}, False
    positions: dict[str, float] = {}
    for c in eligible:
        total = 0
        for ranks in fresh:
            pos = ranks.positions.get(c.request_id)
            if pos is None:
                break
            total += pos
        else:
            positions[c.request_id] = total / len(fresh)
    complete = len(fresh) == len(telemetry) and len(positions) == len(eligible)
    return positions, complete


def _geography(eligible: Sequence[Candidate], players: Sequence[Point]) -> dict[str, float]:
    """Estimated mean RTT per candidate; computed once per distinct location (deployments cluster)."""
    if not players:
        return {}
    by_point: dict[Point, float] = {}
    out: dict[str, float] = {}
    for c in eligible:
        if c.point is None:
            continue
        rtt = by_point.get(c.point)
        if rtt is None:
            rtt = by_point[c.point] = round(mean_rtt_ms(players, c.point), 1)
        out[c.request_id] = rtt
    return out


def place(
    ask: Ask,
    candidates: Iterable[Candidate],
    telemetry: Mapping[str, Ranks],
    now: float,
    telemetry_ttl_s: float,
    limit: int = DEFAULT_LIMIT,
) -> Placement:
    """Filter the candidates for this ask and rank the eligible ones (module docstring)."""
    excluded: dict[Exclusion, int] = {}
    eligible: list[Candidate] = []
    for c in candidates:
        if ask.pinned and c.request_id != ask.pinned:
            continue
        why = exclusion(ask, c)
        if why is None:
            eligible.append(c)
        else:
            excluded[why] = excluded.get(why, 0) + 1
    if not eligible:
        reason = Reason.PINNED_UNAVAILABLE if ask.pinned else _empty_reason(excluded)
        return Placement((), reason, 0, excluded)
    positions, complete = _telemetry_positions(eligible, telemetry, now, telemetry_ttl_s)
    geo = _geography(eligible, ask.players)
    unmeasured = tuple(c.request_id for c in eligible if c.request_id not in positions)
    key: SortKey
    if ask.pinned:
        reason = Reason.PINNED
        key = _key_pinned
    elif complete:
        reason = Reason.TELEMETRY
        key = _key_telemetry(positions, geo)
    elif geo:
        reason = Reason.GEOGRAPHY_FALLBACK if telemetry else Reason.GEOGRAPHY
        key = _key_geography(positions, geo)
    elif positions:
        reason = Reason.TELEMETRY_PARTIAL
        key = _key_partial(positions)
    else:
        reason = Reason.UNSCORED
        key = _key_pinned
    order = tuple(c.request_id for c in heapq.nsmallest(limit, eligible, key=key))
    return Placement(order, reason, len(eligible), excluded, unmeasured, geo.get(order[0]))


# Sort keys: every one ends with (free sockets, request id) so equal scores pack and stay stable.
def _key_pinned(c: Candidate) -> tuple[Any, ...]:
    return (c.free, c.request_id)


def _key_telemetry(positions: Mapping[str, float], geo: Mapping[str, float]) -> SortKey:
    return lambda c: (positions[c.request_id], geo.get(c.request_id, INF), c.free, c.request_id)


def _key_geography(positions: Mapping[str, float], geo: Mapping[str, float]) -> SortKey:
    return lambda c: (geo.get(c.request_id, INF), positions.get(c.request_id, INF), c.free, c.request_id)


def _key_partial(positions: Mapping[str, float]) -> SortKey:
    return lambda c: (positions.get(c.request_id, INF), c.free, c.request_id)
