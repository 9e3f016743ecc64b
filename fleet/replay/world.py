"""The simulator's world model as the replay drives it.

`ReplayWorld` is `codema.sim.world.World` with these changes:

- it records which deployment each timed transition touched (`touched`), so the replay learns of
  READY, ERROR, the platform's own endings (empty_ttl, max_duration) and TERMINATED the moment the
  world applies them, without scanning every deployment;
- `seat` / `unseat`: one player's Seat session of one socket, pinned to a READY deployment, with
  exactly the socket accounting of `create_session(..., deployment_request_id=...)` and
  `delete_session` (usage, the empty clock the platform's empty_ttl runs on) but without a session
  record, its id and its webhook body: a four-month trace has two million of them.
  `tests/unit/test_replay_fast_path.py` checks both paths leave deployments in the same state;
- it remembers which locations match a deploy's filters (the same answers, checked by the same test);
- a starting deployment skips the intermediate phases (SEEKING ... DEPLOYING): it is INITIALIZING
  until READY, the same to everything the replay measures; webhook bodies are not built (the
  replay's deployments have no webhook URL).

`SessionSeats` does the same through the world's public session calls, for checking.
"""

from __future__ import annotations

import random
from typing import Protocol

from codema.sim.geo import LOCATIONS, EdgeLocation, Point
from codema.sim.placement import choose_location, matches_filters
from codema.sim.records import DeploymentRecord, GeoIp, LocationFilter, SessionSpec, Status, Unprocessable
from codema.sim.state import Clock
from codema.sim.world import World, WorldConfig

__all__ = ["ReplayWorld", "Seats", "SessionSeats"]


class ReplayWorld(World):
    def __init__(self, clock: Clock, rng: random.Random, config: WorldConfig | None = None) -> None:
        self.touched: list[str] = []
        self.scheduled = 0
        self._matching: dict[tuple[LocationFilter, ...], list[EdgeLocation]] = {}
        super().__init__(clock, rng, config)

    def place(self, filters: tuple[LocationFilter, ...], players: list[Point]) -> EdgeLocation:
        """World.place with the locations matching each filter set remembered (the platform's
        places never change; a replay deploys hundreds of thousands of times). Outages, which do
        change, are still checked at every call."""
        matching = self._matching.get(filters)
        if matching is None:
            matching = self._matching[filters] = [loc for loc in LOCATIONS if matches_filters(loc, filters)]
        candidates = [loc for loc in matching if not self.in_outage(loc)] if self.faults.outages else matching
        if not candidates:
            return super().place(filters, players)  # the world's own refusal
        return choose_location(candidates, players, self.rng)

    def schedule(self, due: float, action: str, key: str) -> None:
        if action.startswith("phase:"):
            # SEEKING ... DEPLOYING: nothing the replay measures or decides on tells them apart
            # (every starting status is pending capacity; a stop asked while starting waits for
            # READY in any of them), so a deployment stays INITIALIZING until READY.
            return
        super().schedule(due, action, key)
        self.scheduled += 1  # the engine re-reads next_due() only after this moved

    def status_body(self, d: DeploymentRecord) -> dict[str, object]:
        # The body only matters to a webhook; the replay's deployments have none.
        return super().status_body(d) if d.webhook_url else {}

    def _apply(self, action: str, key: str) -> None:
        super()._apply(action, key)
        if not action.startswith("telemetry_"):
            self.touched.append(key)

    def take_touched(self) -> list[str]:
        out, self.touched = self.touched, []
        return out

    # The engine applies the world's due transitions before every event, so these two only bring the
    # world's clock along when they need it (the empty clock). `player` is not used: a fast seat has
    # no session record.
    def seat(self, player: int, request_id: str) -> None:
        d = self.deployments[request_id]
        if (
            d.status is not Status.READY
            or d.stop_requested is not None
            or not d.is_joinable
            or (d.sockets is not None and d.used >= d.sockets)
        ):
            raise Unprocessable(f"deployment {request_id} has no free socket")
        d.used += 1
        d.empty_since = None

    def unseat(self, player: int, request_id: str) -> None:
        d = self.deployments[request_id]
        if d.status is not Status.READY and d.status.terminal:
            return  # its sessions ended with it
        d.used = max(0, d.used - 1)
        if d.used == 0 and not d.session_ids and d.status is Status.READY:
            self.advance()
            self.mark_empty(d)


class Seats(Protocol):
    def take(self, player: int, request_id: str) -> None: ...

    def release(self, player: int, request_id: str) -> None: ...


class SessionSeats:
    """Each player a real one-player Seat session of the world (slow; for checking FastSeats)."""

    def __init__(self, world: ReplayWorld, app: str, version: str) -> None:
        self.world = world
        self.app = app
        self.version = version
        self.sessions: dict[int, str] = {}

    def take(self, player: int, request_id: str) -> None:
        spec = SessionSpec(
            self.app,
            self.version,
            geo_ip_list=(GeoIp("198.51.100.7", 0.0, 0.0),),
            deployment_request_id=request_id,
        )
        s = self.world.create_session(spec)
        if not s.linked:
            raise Unprocessable(s.error or "session not linked")
        self.sessions[player] = s.session_id

    def release(self, player: int, request_id: str) -> None:
        sid = self.sessions.pop(player, None)
        if sid is not None and sid in self.world.sessions:
            self.world.delete_session(sid)
