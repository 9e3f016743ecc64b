"""Properties of the pure placement core (hypothesis): a cached ranking chooses exactly what a fresh
placement would after free sockets changed, nothing chosen is unfit, and an unscored deployment
never comes before a scored one."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from allocator.placement import Ask, Candidate, Exclusion, Point, Ranks, Reason, choose, place, rank

NOW = 10_000.0
TTL = 300.0
POINTS = [Point(51.5, -0.1), Point(35.7, 139.7), Point(40.7, -74.0), None]
TAGS = ["ranked", "eu", "x"]


@st.composite
def candidates(draw: st.DrawFn) -> list[Candidate]:
    n = draw(st.integers(0, 12))
    out = []
    for i in range(n):
        out.append(
            Candidate(
                f"d{i:02d}",
                free=draw(st.integers(0, 5)),
                blocked=draw(st.sampled_from([None, None, None, Exclusion.DRAINING, Exclusion.NOT_READY])),
                tags=frozenset(draw(st.lists(st.sampled_from(TAGS), max_size=3))),
                point=draw(st.sampled_from(POINTS)),
            )
        )
    return out


@st.composite
def telemetry(draw: st.DrawFn, ids: list[str]) -> dict[str, Ranks]:
    out = {}
    for net in range(draw(st.integers(0, 2))):
        measured = draw(st.permutations(ids))
        measured = measured[: draw(st.integers(0, len(measured)))]
        age = draw(st.sampled_from([0.0, 10.0, TTL + 1]))
        out[f"n{net}"] = Ranks({rid: i for i, rid in enumerate(measured)}, draw(st.booleans()), NOW - age)
    return out


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Ask, list[Candidate], dict[str, Ranks], list[Candidate]]:
    cands = draw(candidates())
    tele = draw(telemetry([c.request_id for c in cands]))
    players = tuple(draw(st.lists(st.sampled_from([p for p in POINTS if p is not None]), max_size=2)))
    ask = Ask(draw(st.integers(1, 3)), frozenset(draw(st.lists(st.sampled_from(TAGS), max_size=1))), players)
    later = [dataclasses.replace(c, free=draw(st.integers(0, 5))) for c in cands]  # others placed meanwhile
    return ask, cands, tele, later


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_a_cached_ranking_chooses_what_a_fresh_placement_would(
    scenario: tuple[Ask, list[Candidate], dict[str, Ranks], list[Candidate]],
) -> None:
    ask, before, tele, later = scenario
    ranking = rank(ask.players, before, tele, NOW, TTL)  # made before free sockets changed
    cached = choose(ask, ranking, {c.request_id: c for c in later})
    fresh = place(ask, later, tele, NOW, TTL)
    assert cached.order == fresh.order
    if fresh.order:
        assert cached.reason is fresh.reason
    else:
        assert cached.reason is fresh.reason in (Reason.NO_ROOM, Reason.NO_MATCH, Reason.NO_DEPLOYMENTS)


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_nothing_unfit_is_chosen_and_unscored_never_leads(
    scenario: tuple[Ask, list[Candidate], dict[str, Ranks], list[Candidate]],
) -> None:
    ask, cands, tele, _ = scenario
    result = place(ask, cands, tele, NOW, TTL)
    by_id = {c.request_id: c for c in cands}
    for rid in result.order:
        c = by_id[rid]
        assert c.blocked is None and c.free >= ask.size and ask.tags <= c.tags
    if result.reason in (Reason.GEOGRAPHY, Reason.GEOGRAPHY_FALLBACK):
        located = [by_id[r].point is not None for r in result.order]
        assert located == sorted(located, reverse=True)  # every located one before any unlocated
    if result.reason is Reason.TELEMETRY_PARTIAL:
        fresh = [r for r in tele.values() if NOW - r.measured_at <= TTL]
        measured = [all(rid in r.positions for r in fresh) for rid in result.order]
        assert measured == sorted(measured, reverse=True)
    fits = [c for c in cands if c.blocked is None and c.free >= ask.size and ask.tags <= c.tags]
    assert bool(result.order) == bool(fits)
