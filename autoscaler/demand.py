"""Waiting sessions as demand: which policy should add capacity for players nobody could place.

Pure. The allocator keeps each waiting session with its app version, its size in sockets and the
players' `origin` ({"latitude", "longitude", "country", "country_code", "continent"}, any may be
missing). Each session's sockets count as demand for exactly one policy (never several, or the
fleet would scale up once per policy for the same players):

1. among the enabled policies of enabled fleets linking the session's app version,
2. the Location/Tag policies whose filters the origin satisfies (country and continent are
   decidable from an origin; a filter on anything else is not, so such a policy never matches by
   filters) -- the nearest of them when distances are known, else the first by name;
3. otherwise the policy nearest the players: a Coordinates policy's point, or the centre of a
   policy's current deployments;
4. otherwise (no origin, no known places) the first eligible policy by (fleet, policy) name.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from autoscaler.selectors import Need
from fleet.models import LocationFilter

CONTINENTS = {
    "af": "africa",
    "an": "antarctica",
    "as": "asia",
    "eu": "europe",
    "na": "north america",
    "oc": "oceania",
    "sa": "south america",
}

Unit = tuple[str, str, str, str]  # fleet, policy, app, version


@dataclass(frozen=True)
class Target:
    """One policy x linked app version that can take demand."""

    unit: Unit
    filters: tuple[LocationFilter, ...] = ()  # Location and Tag policies
    point: tuple[float, float] | None = None  # Coordinates point, or the centre of its deployments

    @property
    def app_version(self) -> tuple[str, str]:
        return self.unit[2], self.unit[3]


@dataclass(frozen=True)
class Waiting:
    app: str
    version: str
    sockets: int
    origin: Mapping[str, Any]
    need: Need | None = None  # its selectors (autoscaler.selectors), None without any


def _norm(text: object) -> str:
    return str(text or "").strip().lower()


def _origin_values(origin: Mapping[str, Any], field: str) -> set[str] | None:
    """What the origin says for a filter field; None when it cannot say (undecidable)."""
    if field == "country":
        values = {_norm(origin.get(k)) for k in ("country", "country_code", "country_name")}
    elif field == "continent":
        raw = {_norm(origin.get(k)) for k in ("continent", "continent_code", "continent_name")}
        values = raw | {CONTINENTS[v] for v in raw if v in CONTINENTS}
    else:
        return None
    values.discard("")
    return values or None


def filters_match(filters: Iterable[LocationFilter], origin: Mapping[str, Any]) -> bool:
    """All filters decidably satisfied by the origin (any / all / not, as the platform applies them)."""
    checked = False
    for f in filters:
        have = _origin_values(origin, f.field)
        if have is None:
            return False
        want = {_norm(v) for v in f.values}
        hit = want & have
        if (f.filter_type == "any" and not hit) or (f.filter_type == "all" and want - have):
            return False
        if f.filter_type == "not" and hit:
            return False
        checked = True
    return checked


def origin_point(origin: Mapping[str, Any]) -> tuple[float, float] | None:
    try:
        lat, lon = float(origin["latitude"]), float(origin["longitude"])
    except (KeyError, TypeError, ValueError):
        return None
    if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    return lat, lon


def distance_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance (haversine)."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371.0 * math.asin(min(1.0, math.sqrt(h)))


def choose(targets: Sequence[Target], origin: Mapping[str, Any]) -> Target | None:
    """The one target a session's demand goes to (see the module docstring for the order)."""
    if not targets:
        return None
    here = origin_point(origin)

    def nearest(candidates: Sequence[Target]) -> Target | None:
        placed = [t for t in candidates if t.point is not None]
        if here is None or not placed:
            return None
        return min(placed, key=lambda t: (distance_km(here, t.point or here), t.unit))

    matching = sorted(
        (t for t in targets if t.filters and filters_match(t.filters, origin)), key=lambda t: t.unit
    )
    if matching:
        return nearest(matching) or matching[0]
    return nearest(targets) or min(targets, key=lambda t: t.unit)


def assign_each(waiting: Iterable[Waiting], targets: Sequence[Target]) -> dict[Unit, list[Waiting]]:
    """The waiting sessions each target unit takes, in the order given (oldest first)."""
    by_version: dict[tuple[str, str], list[Target]] = {}
    for t in targets:
        by_version.setdefault(t.app_version, []).append(t)
    out: dict[Unit, list[Waiting]] = {}
    for w in waiting:
        if w.sockets <= 0:
            continue
        target = choose(by_version.get((w.app, w.version), []), w.origin)
        if target is not None:
            out.setdefault(target.unit, []).append(w)
    return out


def assign(waiting: Iterable[Waiting], targets: Sequence[Target]) -> dict[Unit, int]:
    """Waiting sockets per target unit."""
    return {unit: sum(w.sockets for w in ws) for unit, ws in assign_each(waiting, targets).items()}


def centre(points: Iterable[tuple[float, float]]) -> tuple[float, float] | None:
    """The mean position of deployments (good enough at the scale of regions)."""
    pts = list(points)
    if not pts:
        return None
    return sum(p[0] for p in pts) / len(pts), sum(p[1] for p in pts) / len(pts)
