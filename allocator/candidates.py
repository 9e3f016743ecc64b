"""An in-process view of each app version's deployments, so a placement does not read them all.

A placement touches one or two deployments but must rank all of them. So each web process keeps
a snapshot per app version, reloaded in the background when it is older than `max_age_s`
(stale-while-revalidate) and at once after a deployment event. A reload is one Redis round trip
(`PlacementStore.summaries`: status, draining, sockets, usage and held sockets of every deployment);
the facts that never change once a deployment is READY (location, tags) are read once per
deployment. The snapshot only *orders* candidates: the atomic reservation in Redis decides, so a
stale view costs at most a refused reservation and a try of the next candidate, never an
overbooking. This process's own reservations and refusals are applied to the snapshot at once so
its concurrent placements spread instead of piling onto the same full deployment.

`generation` changes only when the set of placeable deployments changes, so rankings computed
for a snapshot (allocator.rankings) stay valid across reloads that only changed free sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
from collections.abc import Callable

from allocator.placement import Candidate, Exclusion, candidate_of, state_of
from fleet.models import Status
from fleet.store.deployments import DeploymentStore
from fleet.store.placement import HoldsSummary, PlacementStore

REFUSAL_BLOCKS = {
    "draining": Exclusion.DRAINING,
    "not_ready": Exclusion.NOT_READY,
    "unknown": Exclusion.USAGE_UNKNOWN,
}
Key = tuple[str, str]


class Snapshot:
    def __init__(self, key: Key, candidates: dict[str, Candidate], loaded_at: float, generation: int) -> None:
        self.key = key
        self.candidates = candidates
        self.loaded_at = loaded_at
        self.generation = generation
        # Deployments telemetry should measure: those that could take a session when loaded.
        self.ready_ids = [c.request_id for c in candidates.values() if c.blocked is None]

    def values(self) -> list[Candidate]:
        return list(self.candidates.values())

    def _replace(self, rid: str, **changes: object) -> None:
        c = self.candidates.get(rid)
        if c is not None:
            self.candidates[rid] = dataclasses.replace(c, **changes)  # type: ignore[arg-type]

    def note_reserved(self, rid: str, size: int) -> None:
        c = self.candidates.get(rid)
        if c is not None:
            self._replace(rid, free=max(0, c.free - size))

    def note_released(self, rid: str, size: int) -> None:
        c = self.candidates.get(rid)
        if c is not None:
            self._replace(rid, free=c.free + size)

    def note_refused(self, rid: str, reason: str) -> None:
        block = REFUSAL_BLOCKS.get(reason)
        if block is None:
            self._replace(rid, free=0)
        else:
            self._replace(rid, blocked=block)


def _refreshed(static: Candidate, row: HoldsSummary, previous: Candidate | None) -> Candidate:
    status = Status(row.rank) if row.rank is not None else None
    blocked, free = state_of(status, row.draining, row.sockets, row.usage, row.committed, row.reserved)
    if previous is not None and previous.free == free and previous.blocked is blocked:
        return previous  # most deployments did not change in a second: no new object
    return Candidate(
        static.request_id, free, blocked, static.tags, static.point, static.where, static.fleet, static.policy
    )


class CandidateCache:
    def __init__(
        self,
        deployments: DeploymentStore,
        placements: PlacementStore,
        clock: Callable[[], float],
        max_age_s: float = 2.0,
        max_stale_s: float = 5.0,
    ) -> None:
        self.deployments = deployments
        self.placements = placements
        self.clock = clock
        self.max_age_s = max_age_s
        self.max_stale_s = max_stale_s
        self._snapshots: dict[Key, Snapshot] = {}
        self._loading: dict[Key, asyncio.Task[Snapshot]] = {}
        self._static: dict[Key, dict[str, Candidate]] = {}  # READY deployments' location and tags
        self._members: dict[Key, tuple[frozenset[str], int]] = {}
        self._generations = itertools.count(1)

    async def get(self, app: str, version: str) -> Snapshot:
        """A recent snapshot; a stale one is returned while a reload runs, a very old one awaited."""
        key = (app, version)
        snap = self._snapshots.get(key)
        age = None if snap is None else self.clock() - snap.loaded_at
        if snap is not None and age is not None and age < self.max_age_s:
            return snap
        task = self._loading.get(key)
        if task is None:
            task = asyncio.create_task(self._load(key))
            self._loading[key] = task
        if snap is not None and age is not None and age < self.max_stale_s:
            return snap
        return await asyncio.shield(task)

    async def fresh(self, app: str, version: str) -> Snapshot:
        """A snapshot read after this call began (the linker, after a deployment event)."""
        return await self._read((app, version))

    def invalidate(self, app: str | None = None, version: str | None = None) -> None:
        """Forget snapshots (all, or one app version): the next `get` reads Redis."""
        if app is None:
            self._snapshots.clear()
        else:
            self._snapshots.pop((app, version or ""), None)

    async def _load(self, key: Key) -> Snapshot:
        try:
            return await self._read(key)
        finally:
            self._loading.pop(key, None)

    async def _read(self, key: Key) -> Snapshot:
        now = self.clock()
        rows = await self.placements.summaries(key[0], key[1], now)
        static = self._static.setdefault(key, {})
        unknown = [r.request_id for r in rows if r.request_id not in static]
        fetched = {d.request_id: candidate_of(d) for d in await self.deployments.get_many(unknown, now)}
        before = self._snapshots.get(key)
        previous = before.candidates if before is not None else {}
        candidates: dict[str, Candidate] = {}
        for row in rows:
            base = static.get(row.request_id) or fetched.get(row.request_id)
            if base is not None:
                candidates[row.request_id] = _refreshed(base, row, previous.get(row.request_id))
        # Location and tags are settled once a deployment is READY; before, read them again.
        self._static[key] = {
            rid: (static.get(rid) or fetched[rid]) for rid, c in candidates.items()
            if rid in static or c.blocked is not Exclusion.NOT_READY
        }  # fmt: skip
        snap = Snapshot(key, candidates, now, self._generation(key, candidates))
        current = self._snapshots.get(key)
        if current is None or current.loaded_at <= now:
            self._snapshots[key] = snap
        return snap

    def _generation(self, key: Key, candidates: dict[str, Candidate]) -> int:
        members = frozenset(rid for rid, c in candidates.items() if c.blocked is None)
        known = self._members.get(key)
        if known is not None and known[0] == members:
            return known[1]
        generation = next(self._generations)
        self._members[key] = (members, generation)
        return generation

    async def aclose(self) -> None:
        for task in list(self._loading.values()):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
