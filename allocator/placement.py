"""Which deployments may take a session, best first (design.md §4 "Placement"). Pure.

Inputs are plain values: the ask (size, selector tags, where the players are), the candidate
deployments, and the cached telemetry ranking of each player network. The clock is a
parameter. The result is a frozen `Placement` whose `reason` says what decided the order.

Two steps, so the expensive one can be reused: `rank` orders the placeable candidates (READY,
not draining, usage known) from static facts and telemetry; `choose` walks that order and keeps
those that fit the ask now (free sockets, selector tags, location rules). `place` does both.

Ranking, in order of trust:
1. Telemetry: when every placeable candidate has a fresh, measured position for every player
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
import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from fleet.models import Deployment, Status

EARTH_RADIUS_KM = 6371.0
# Light in fibre covers ~100 km per ms of round trip; real routes are ~1.5x the great circle.
RTT_BASE_MS = 4.0
RTT_MS_PER_KM = 1.5 / 100.0
DEFAULT_LIMIT = 4  # candidates returned: the best, and a few to try if its reservation is refused
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
    # Who created it (the store's record), for the placement log line; placement ignores them.
    fleet: str = ""
    policy: str = ""


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


def state_of(
    status: Status | None,
    draining: bool,
    sockets: int | None,
    usage: int | None,
    committed: int,
    reserved: int,
) -> tuple[Exclusion | None, int]:
    """Why a deployment can take nothing now (or None) and its free sockets, as
    `Deployment.free_sockets` counts them: 0 while capacity or usage is unknown."""
    blocked: Exclusion | None = None
    if status is not Status.READY:
        blocked = Exclusion.NOT_READY
    elif draining:
        blocked = Exclusion.DRAINING
    elif sockets is None or usage is None:
        blocked = Exclusion.USAGE_UNKNOWN
    free = 0 if sockets is None or usage is None else max(0, sockets - max(usage, committed) - reserved)
    return blocked, free


def candidate_of(d: Deployment) -> Candidate:
    """The placement view of a stored deployment."""
    blocked, free = state_of(d.status, d.draining, d.sockets, d.usage, d.committed, d.reserved)
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
    return Candidate(d.request_id, free, blocked, frozenset(d.tags), point, where, d.fleet, d.policy)


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
    if ask.tags and not ask.tags <= c.tags:
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


@dataclass(frozen=True)
class Ranking:
    """The placeable candidates of a snapshot in score order, from static facts and telemetry only.

    Free sockets, tags and location rules are checked when choosing, so one ranking serves every
    ask from the same players while the deployments and telemetry stay the same. Equal scores
    form tie groups that `choose` packs by free sockets."""

    entries: tuple[tuple[str, tuple[float, ...]], ...]  # (request id, score), best first
    reason: Reason
    blocked: Mapping[Exclusion, int]  # left out: not ready, draining, usage unknown
    unmeasured: tuple[str, ...] = ()
    rtt_ms: Mapping[str, float] = field(default_factory=dict)


def rank(
    players: Sequence[Point],
    candidates: Iterable[Candidate],
    telemetry: Mapping[str, Ranks],
    now: float,
    telemetry_ttl_s: float,
) -> Ranking:
    """Order the placeable candidates (module docstring: telemetry, else geography, else partial)."""
    blocked: dict[Exclusion, int] = {}
    placeable: list[Candidate] = []
    for c in candidates:
        if c.blocked is None:
            placeable.append(c)
        else:
            blocked[c.blocked] = blocked.get(c.blocked, 0) + 1
    positions, complete = _telemetry_positions(placeable, telemetry, now, telemetry_ttl_s)
    geo = _geography(placeable, players)
    score: Callable[[str], tuple[float, ...]]
    if complete:
        reason, score = Reason.TELEMETRY, lambda r: (positions[r], geo.get(r, INF))
    elif geo:
        reason = Reason.GEOGRAPHY_FALLBACK if telemetry else Reason.GEOGRAPHY
        score = lambda r: (geo.get(r, INF), positions.get(r, INF))  # noqa: E731
    elif positions:
        reason, score = Reason.TELEMETRY_PARTIAL, lambda r: (positions.get(r, INF),)
    else:
        reason, score = Reason.UNSCORED, lambda r: ()
    scored = sorted((score(c.request_id), c.request_id) for c in placeable)
    unmeasured = tuple(c.request_id for c in placeable if c.request_id not in positions)
    return Ranking(tuple((rid, sc) for sc, rid in scored), reason, blocked, unmeasured, geo)


def choose(
    ask: Ask,
    ranking: Ranking,
    current: Mapping[str, Candidate],
    limit: int = DEFAULT_LIMIT,
    skip: Collection[str] = (),
) -> Placement:
    """The best `limit` candidates that fit this ask now, walking the ranking best first.

    `current` holds the candidates' present state (free sockets may have changed since the
    ranking was made); `skip` the ones already tried for this session. Counts in the result
    cover the candidates examined (all of them when nothing fits) and those the ranking left out."""
    if ask.pinned:
        return _choose_pinned(ask, current)
    excluded: dict[Exclusion, int] = {}
    order: list[str] = []
    eligible = 0
    entries = ranking.entries
    n = len(entries)
    i = 0
    while i < n and len(order) < limit:
        score = entries[i][1]
        j = i + 1
        while j < n and entries[j][1] == score:
            j += 1
        fits: list[Candidate] = []
        for rid, _ in entries[i:j]:
            if rid in skip:
                continue
            c = current.get(rid)
            why = Exclusion.NOT_READY if c is None else exclusion(ask, c)
            if why is None and c is not None:
                fits.append(c)
            else:
                excluded[why or Exclusion.NOT_READY] = excluded.get(why or Exclusion.NOT_READY, 0) + 1
        eligible += len(fits)
        if len(fits) > 1:
            fits.sort(key=_pack)
        order.extend(c.request_id for c in fits[: limit - len(order)])
        i = j
    for why, count in ranking.blocked.items():
        excluded[why] = excluded.get(why, 0) + count
    if not order:
        return Placement((), _empty_reason(excluded), 0, excluded, ranking.unmeasured)
    best_rtt = ranking.rtt_ms.get(order[0])
    return Placement(tuple(order), ranking.reason, eligible, excluded, ranking.unmeasured, best_rtt)


def _pack(c: Candidate) -> tuple[int, str]:
    """Within equal scores: the fuller deployment first, then the request id (stable)."""
    return (c.free, c.request_id)


def _choose_pinned(ask: Ask, current: Mapping[str, Candidate]) -> Placement:
    c = current.get(ask.pinned)
    if c is None:
        return Placement((), Reason.PINNED_UNAVAILABLE, 0, {})
    why = exclusion(ask, c)
    if why is not None:
        return Placement((), Reason.PINNED_UNAVAILABLE, 0, {why: 1})
    return Placement((c.request_id,), Reason.PINNED, 1, {})


def place(
    ask: Ask,
    candidates: Iterable[Candidate],
    telemetry: Mapping[str, Ranks],
    now: float,
    telemetry_ttl_s: float,
    limit: int = DEFAULT_LIMIT,
) -> Placement:
    """Rank and choose in one step (the allocator caches the ranking between placements)."""
    current = {c.request_id: c for c in candidates}
    if ask.pinned:
        return _choose_pinned(ask, current)
    return choose(ask, rank(ask.players, current.values(), telemetry, now, telemetry_ttl_s), current, limit)
