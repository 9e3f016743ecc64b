"""Rankings reused between placements: ranking all deployments is the costly part of a decision,
and it depends only on the placeable set (a snapshot's generation), where the players are and
their networks' telemetry. Players of one network share one ranking until one of those changes;
each placement then only walks the top of it (allocator.placement.choose)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

from allocator.candidates import Snapshot
from allocator.insight import Players
from allocator.placement import Ranking, rank

MAX_ENTRIES = 4096


class Rankings:
    def __init__(self, telemetry_ttl_s: float, max_entries: int = MAX_ENTRIES) -> None:
        self.telemetry_ttl_s = telemetry_ttl_s
        self.max_entries = max_entries
        self._data: OrderedDict[Hashable, Ranking] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, snap: Snapshot, players: Players, now: float) -> Ranking:
        key = (snap.key, snap.generation, players.points, players.telemetry_key)
        found = self._data.get(key)
        if found is not None:
            self._data.move_to_end(key)
            self.hits += 1
            return found
        self.misses += 1
        ranking = rank(players.points, snap.candidates.values(), players.ranks, now, self.telemetry_ttl_s)
        self._data[key] = ranking
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)
        return ranking
