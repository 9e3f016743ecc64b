"""The world's state and its timeline, shared by the apps, deployments, sessions and telemetry parts.

`WorldState` owns every record, the random generator, the clock and a heap of timed transitions.
Parts (mixins) add behaviour; `codema.sim.world.World` puts them together.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from codema.sim.faults import Faults
from codema.sim.geo import Geolocator, Point, valid_ip
from codema.sim.records import (
    AppRecord,
    BadRequest,
    DeploymentRecord,
    GeoIp,
    NotFound,
    SessionRecord,
    SessionUser,
    TelemetryRecord,
    VersionRecord,
    Webhook,
)

Clock = Callable[[], float]

# Where, within the boot time, each starting phase begins (fractions of boot_s); READY is at 1.0.
PHASE_FRACTIONS = (0.1, 0.25, 0.4, 0.6)


@dataclass(frozen=True)
class WorldConfig:
    """Knobs of the model (not faults). Times in seconds of the world's clock."""

    boot_s: float = 3.0  # deploy -> READY; the starting phases are spread over it
    stop_s: float = 1.0  # TERMINATING -> TERMINATED
    telemetry_delay_s: float = 1.0  # telemetry answers partial_result until then
    telemetry_ttl_s: float = 300.0  # a retrieval key expires this long after its result is complete
    minute_s: float = 60.0  # seconds per platform "minute" (empty_ttl, max_duration); lower it to compress


class WorldState:
    def __init__(
        self,
        clock: Clock,
        rng: random.Random,
        config: WorldConfig | None = None,
        faults: Faults | None = None,
        geolocator: Geolocator | None = None,
    ) -> None:
        self.clock = clock
        self.rng = rng
        self.config = config or WorldConfig()
        self.faults = faults or Faults()
        self.geo = geolocator or Geolocator()
        self.apps: dict[str, AppRecord] = {}
        self.versions: dict[tuple[str, str], VersionRecord] = {}
        self.deployments: dict[str, DeploymentRecord] = {}  # every deployment ever made
        self.live: dict[str, DeploymentRecord] = {}  # the ones not yet TERMINATED or ERROR
        self.sessions: dict[str, SessionRecord] = {}
        self.telemetry: dict[str, TelemetryRecord] = {}
        self.gone_sessions: set[str] = set()  # deleted or ended with their deployment: 410, not 404
        self.outbox: list[Webhook] = []
        self._version_numbers = 0
        self._timeline: list[tuple[float, int, str, str]] = []
        self._seq = 0
        self._t = clock()

    # -- time ------------------------------------------------------------------------------------

    @property
    def now(self) -> float:
        """The world's current time: the clock at the last advance, or the due time of the transition
        being applied (so transitions carry their exact time even when virtual time jumps)."""
        return self._t

    def schedule(self, due: float, action: str, key: str) -> None:
        self._seq += 1
        heapq.heappush(self._timeline, (due, self._seq, action, key))

    def next_due(self) -> float | None:
        """When the next timed transition is due (None: nothing scheduled). A replay may jump to it."""
        return self._timeline[0][0] if self._timeline else None

    def advance(self) -> float:
        """Apply, in time order, every transition due up to `clock()`; return the new time.

        Every public method calls this first, so callers only move the clock. Time never goes
        backwards: a clock behind the last advance is ignored.
        """
        target = max(self._t, self.clock())
        while self._timeline and self._timeline[0][0] <= target:
            due, _, action, key = heapq.heappop(self._timeline)
            self._t = max(self._t, due)
            self._apply(action, key)
        self._t = target
        return target

    def _apply(self, action: str, key: str) -> None:
        raise NotImplementedError

    # -- ids and helpers -------------------------------------------------------------------------

    def new_hex(self, n: int) -> str:
        return f"{self.rng.getrandbits(4 * n):0{n}x}"

    def next_version_number(self) -> int:
        self._version_numbers += 1
        return self._version_numbers

    def emit(self, kind: str, url: str | None, body: dict[str, object], subject: str) -> None:
        if url:
            self.outbox.append(Webhook(kind, url, dict(body), self._t, subject))

    def drain_outbox(self) -> list[Webhook]:
        """Webhooks due since the last drain, oldest first; the caller delivers (or drops) them."""
        out, self.outbox = self.outbox, []
        return out

    def users_of(self, ip_list: Iterable[str], geo_ip_list: Iterable[GeoIp], name: str) -> list[SessionUser]:
        """Players with their points: given coordinates win over IP geolocation; unknown IPs have none."""
        users: list[SessionUser] = []
        for i, ip in enumerate(ip_list):
            if not isinstance(ip, str):
                raise BadRequest(f"{name}[{i}]: expected an IP address string")
            if not valid_ip(ip):
                raise BadRequest(f"{name}[{i}]: {ip!r} is not an IP address")
            found = self.geo.lookup(ip)
            point = found.point if found else None
            users.append(
                SessionUser(ip, point.latitude if point else None, point.longitude if point else None)
            )
        users.extend(SessionUser(g.ip, g.latitude, g.longitude) for g in geo_ip_list)
        return users

    @staticmethod
    def points_of(users: Iterable[SessionUser]) -> list[Point]:
        return [p for p in (u.point for u in users) if p is not None]

    def deployment(self, request_id: str) -> DeploymentRecord:
        """The deployment (any status, terminated ones included); NotFound otherwise."""
        self.advance()
        d = self.deployments.get(request_id)
        if d is None:
            raise NotFound(f"deployment {request_id} not found")
        return d
