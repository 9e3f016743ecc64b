"""An in-process view of each app version's deployments, so a placement does not read them all.

Reading 1,000 deployments with their holds from Redis takes tens of milliseconds; a placement has
one or two. So each web process keeps a snapshot per app version, reloaded in the background when
it is older than `max_age_s` (stale-while-revalidate) and at once after a deployment event. The
snapshot only *orders* candidates: the atomic reservation in Redis decides, so a stale view costs
at most a refused reservation and a try of the next candidate, never an overbooking. Our own
reservations and refusals are applied to the snapshot at once so concurrent placements in this
process spread instead of piling onto the same full deployment.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable

from allocator.placement import Candidate, Exclusion, candidate_of
from fleet.store.deployments import DeploymentStore

REFUSAL_BLOCKS = {
    "draining": Exclusion.DRAINING,
    "not_ready": Exclusion.NOT_READY,
    "unknown": Exclusion.USAGE_UNKNOWN,
}


class Snapshot:
    def __init__(self, candidates: dict[str, Candidate], loaded_at: float) -> None:
        self.candidates = candidates
        self.loaded_at = loaded_at
        # Deployments telemetry should measure: those that could take a session when loaded.
        self.ready_ids = [c.request_id for c in candidates.values() if c.blocked is None]

    def values(self) -> list[Candidate]:
        return list(self.candidates.values())

    def note_reserved(self, rid: str, size: int) -> None:
        c = self.candidates.get(rid)
        if c is not None:
            self.candidates[rid] = dataclasses.replace(c, free=max(0, c.free - size))

    def note_released(self, rid: str, size: int) -> None:
        c = self.candidates.get(rid)
        if c is not None:
            self.candidates[rid] = dataclasses.replace(c, free=c.free + size)

    def note_refused(self, rid: str, reason: str) -> None:
        c = self.candidates.get(rid)
        if c is None:
            return
        block = REFUSAL_BLOCKS.get(reason)
        self.candidates[rid] = (
            dataclasses.replace(c, free=0) if block is None else dataclasses.replace(c, blocked=block)
        )


class CandidateCache:
    def __init__(
        self,
        deployments: DeploymentStore,
        clock: Callable[[], float],
        max_age_s: float = 1.0,
        max_stale_s: float = 5.0,
    ) -> None:
        self.deployments = deployments
        self.clock = clock
        self.max_age_s = max_age_s
        self.max_stale_s = max_stale_s
        self._snapshots: dict[tuple[str, str], Snapshot] = {}
        self._loading: dict[tuple[str, str], asyncio.Task[Snapshot]] = {}

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

    async def _load(self, key: tuple[str, str]) -> Snapshot:
        try:
            return await self._read(key)
        finally:
            self._loading.pop(key, None)

    async def _read(self, key: tuple[str, str]) -> Snapshot:
        now = self.clock()
        found = await self.deployments.of_app_version(key[0], key[1], now)
        snap = Snapshot({d.request_id: candidate_of(d) for d in found}, now)
        current = self._snapshots.get(key)
        if current is None or current.loaded_at <= now:
            self._snapshots[key] = snap
        return snap

    async def aclose(self) -> None:
        for task in list(self._loading.values()):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
