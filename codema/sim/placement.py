"""Where the simulated platform puts a deployment and which deployment takes a session. Pure."""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

from codema.sim.geo import EdgeLocation, Point, location_point, mean_rtt_ms
from codema.sim.records import BadRequest, DeploymentRecord, LocationFilter, Selector

DEPLOY_FILTER_FIELDS = ("city", "country", "continent", "region", "administrative_division", "location_tags")
FILTER_TYPES = ("any", "all", "not")


def location_values(loc: EdgeLocation, field: str) -> set[str] | None:
    """The location's values for a filter field, lower-cased; None for a field locations lack."""
    if field == "location_tags":
        return {t.lower() for t in loc.tags}
    value = {
        "city": loc.city,
        "country": loc.country,
        "continent": loc.continent,
        "region": loc.region,
        "administrative_division": loc.administrative_division,
    }.get(field)
    return None if value is None else {value.lower()}


def _matches(have: set[str], f: LocationFilter) -> bool:
    wanted = {v.lower() for v in f.values}
    if f.filter_type == "all":
        return wanted <= have
    if f.filter_type == "not":
        return not (wanted & have)
    return bool(wanted & have)


def matches_filters(loc: EdgeLocation, filters: Iterable[LocationFilter]) -> bool:
    """Every filter holds; a filter on a field locations do not have is ignored."""
    for f in filters:
        have = location_values(loc, f.field)
        if have is not None and not _matches(have, f):
            return False
    return True


def check_filters(filters: Iterable[LocationFilter], name: str, strict_fields: bool) -> None:
    for i, f in enumerate(filters):
        if f.filter_type not in FILTER_TYPES:
            raise BadRequest(f"{name}[{i}].filter_type: expected one of {', '.join(FILTER_TYPES)}")
        if strict_fields and f.field not in DEPLOY_FILTER_FIELDS:
            raise BadRequest(f"{name}[{i}].field: expected one of {', '.join(DEPLOY_FILTER_FIELDS)}")


def choose_location(
    candidates: Sequence[EdgeLocation], players: Sequence[Point], rng: random.Random
) -> EdgeLocation:
    """The candidate with the lowest mean estimated RTT to the players; a random one without players."""
    if not players:
        return rng.choice(list(candidates))
    return min(candidates, key=lambda loc: (mean_rtt_ms(list(players), location_point(loc)), loc.city))


def selectors_match(deployment: DeploymentRecord, selectors: Iterable[Selector]) -> bool:
    """A session goes only to a deployment carrying every (filtering) selector tag."""
    tags = set(deployment.tags)
    return all(s.tag in tags for s in selectors if not s.tag_only)


def rank_deployments(
    deployments: Iterable[DeploymentRecord], players: Sequence[Point]
) -> list[DeploymentRecord]:
    """Best first: lowest mean RTT to the players, then the fullest (pack), then request_id."""
    return sorted(
        deployments,
        key=lambda d: (
            round(mean_rtt_ms(list(players), location_point(d.location)), 3),
            d.free,
            d.request_id,
        ),
    )
