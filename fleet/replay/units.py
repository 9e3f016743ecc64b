"""The fleet configuration as the replay uses it: one `Unit` per policy x linked app version, the unit
the production scaler decides on (`autoscaler.snapshot.PolicyUnit`), with its `Spec` built by the
scaler's own `autoscaler.view.spec_of`, the deploy request its creates send, and its counters.

The configuration file is parsed by `autoscaler.config.parse_config`, the parser of `fleet apply`:
the replay reads exactly the format the service applies.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from autoscaler import policy as core
from autoscaler.config import ConfigError, parse_config
from autoscaler.demand import Target
from autoscaler.tags import create_tags
from autoscaler.view import spec_of
from codema.sim.geo import Point as SimPoint
from codema.sim.records import DeploySpec, LocationFilter
from fleet.models import AppVersionRef, Fleet, Policy, Status
from fleet.replay.inputs import ReplayInputs
from fleet.replay.window import DemandWindow
from fleet.settings import Settings
from fleet.store import AppVersionFacts

# Buckets a deployment moves through, in the scaler's terms.
PENDING, SERVING, STOPPING, ENDED = 0, 1, 2, 3


class Dep:
    """The replay's view of one deployment (what the store would hold about it)."""

    __slots__ = (
        "bucket",
        "created_at",
        "empty_since",
        "indexed",
        "obs",
        "players",
        "point",
        "ready_at",
        "rid",
        "sockets",
        "status",
        "stopping",
        "unit",
    )

    def __init__(
        self, rid: str, unit: Unit, point: tuple[float, float], sockets: int, status: Status, now: float
    ):
        self.rid = rid
        self.unit = unit
        self.point = point
        self.sockets = sockets
        self.status = status
        self.bucket = PENDING
        self.players = 0
        self.created_at = now
        self.ready_at: float | None = None
        self.empty_since: float | None = None
        self.stopping = False  # we asked the platform to stop it
        self.indexed = 0  # free sockets it is indexed under for placement (0: not placeable)
        self.obs: core.Observed | None = None  # cached scaler input, dropped on every change


class Unit:
    """One policy x one linked app version, with the counters every scaler reads."""

    def __init__(
        self,
        index: int,
        fleet: Fleet,
        policy: Policy,
        ref: AppVersionRef,
        spec: core.Spec,
        deploy: DeploySpec,
        now: float,
    ) -> None:
        self.index = index
        self.fleet = fleet
        self.policy = policy
        self.ref = ref
        self.spec = spec
        self.deploy = deploy
        self.active = fleet.enabled and policy.enabled and not (fleet.dry_run or policy.dry_run)
        self.deps: dict[str, Dep] = {}  # live ones
        self.n_pending = self.n_serving = self.n_stopping = 0
        self.cap_pending = self.cap_serving = 0
        self.used = 0  # players on serving deployments
        # Demand at which: time over threshold starts (READY sockets); a scale-up may be due (a
        # float bound looser than the core's exact rule); and whether under minimum. See recount.
        self.over_level = 0.0
        self.up_level = -1e-9
        self.under_minimum = spec.minimum > 0
        self.waiting = 0  # waiting players whose demand this unit carries
        self.empty_ready: dict[str, float] = {}  # serving, empty, not stopping: rid -> empty since
        # Scaler state (each scaler uses what it needs).
        self.memory = core.Memory()
        self.window = DemandWindow(now)
        self.probe_at: float | None = None
        self.probe_token = 0
        self.replan = True  # something a scale-in depends on changed (idle deployments, waiting, state)
        self.plan_level = 1 << 62  # demand crossing this moves the planned scale-in
        self.flag = False  # the platform baseline: over its threshold at the last look
        self.levels: dict[int, int] = {}
        # Measurements.
        self.live_s = 0.0
        self.live_t = now
        # Where the deployment-seconds went (fleet.replay.engine._account): starting (deploy call to
        # READY), stopping (stop asked to TERMINATED), READY and empty, and of that, the part of each
        # empty stretch past the policy's idle time; READY with players is the rest.
        self.starting_s = 0.0
        self.stopping_s = 0.0
        self.empty_s = 0.0
        self.empty_past_idle_s = 0.0
        self.over_s = 0.0
        self.over_since: float | None = None
        self.creates = 0
        self.stops = 0
        self.peak_live = 0
        self.recreates = 0
        self.last_stop_at: float | None = None

    def recount(self) -> None:
        """Refresh the levels read at every player event, after capacity or counts changed."""
        threshold = self.spec.threshold
        self.over_level = threshold * self.cap_serving
        self.up_level = threshold * (self.cap_pending + self.cap_serving) - 1e-9
        self.under_minimum = self.n_pending + self.n_serving < self.spec.minimum

    @property
    def key(self) -> tuple[str, str, str, str]:
        return self.fleet.name, self.policy.name, self.ref.app, self.ref.version

    @property
    def label(self) -> str:
        return self.policy.name if self.fleet.name == "replay" else f"{self.fleet.name}/{self.policy.name}"

    @property
    def effective(self) -> int:
        return self.n_pending + self.n_serving

    @property
    def live(self) -> int:
        return self.n_pending + self.n_serving + self.n_stopping

    @property
    def capacity(self) -> int:
        return self.cap_pending + self.cap_serving

    def target(self, points: Sequence[tuple[float, float]]) -> Target:
        """This unit as `autoscaler.demand` sees it (as `autoscaler.snapshot.targets_of` builds it)."""
        point = self.policy.point()
        where: tuple[float, float] | None
        if point is not None:
            where = (point.latitude, point.longitude)
        elif points:
            where = (sum(p[0] for p in points) / len(points), sum(p[1] for p in points) / len(points))
        else:
            where = None
        filters = self.policy.filter_data()
        return Target(self.key, tuple(filters.filters) if filters else (), where)


@dataclasses.dataclass(frozen=True)
class FleetPlan:
    """The parsed configuration: units in file order and the app version players ask for."""

    fleets: tuple[tuple[Fleet, tuple[Policy, ...], tuple[AppVersionRef, ...]], ...]
    player_version: AppVersionRef

    @property
    def versions(self) -> tuple[AppVersionRef, ...]:
        seen: dict[tuple[str, str], AppVersionRef] = {}
        for _, _, links in self.fleets:
            for ref in links:
                seen.setdefault((ref.app, ref.version), ref)
        return tuple(seen.values())


def plan_of(document: Any, player_version: str | None = None) -> FleetPlan:
    """Validate the configuration with `fleet apply`'s parser; raise ValueError listing problems."""
    try:
        parsed = parse_config(document)
    except ConfigError as err:
        raise ValueError(str(err)) from err
    fleets = tuple(
        (fleet, tuple(policies), tuple(AppVersionRef(app=ln.app, version=ln.version) for ln in links))
        for fleet, policies, links in parsed.fleets
    )
    refs = [ref for _, _, links in fleets for ref in links]
    if not refs:
        raise ValueError("the configuration links no app version to any fleet: players have nothing to play")
    if player_version:
        app, _, version = player_version.partition("/")
        chosen = next((r for r in refs if (r.app, r.version) == (app, version)), None)
        if chosen is None:
            raise ValueError(f"--app {player_version}: no fleet of the configuration links this app version")
        return FleetPlan(fleets, chosen)
    return FleetPlan(fleets, refs[0])


def replay_settings(inputs: ReplayInputs) -> Settings:
    return Settings(default_idle_s=inputs.default_idle_s, deploy_timeout_s=inputs.deploy_timeout_s)


def facts_of(ref: AppVersionRef, inputs: ReplayInputs, empty_ttl_min: int | None) -> AppVersionFacts:
    return AppVersionFacts(ref.app, ref.version, "Seat", inputs.sockets, empty_ttl_min)


def deploy_spec(fleet: Fleet, policy: Policy, ref: AppVersionRef) -> DeploySpec:
    """What the scaler's create job sends: the policy's filters or point, and the intent tags."""
    filters = policy.filter_data()
    point = policy.point()
    return DeploySpec(
        app_name=ref.app,
        version_name=ref.version,
        filters=tuple(LocationFilter(f.field, tuple(f.values), f.filter_type) for f in filters.filters)
        if filters
        else (),
        location=SimPoint(point.latitude, point.longitude) if point else None,
        tags=tuple(create_tags(fleet.name, policy.name, ref.app, ref.version)),
    )


def build_units(plan: FleetPlan, inputs: ReplayInputs, empty_ttl_min: int | None, now: float) -> list[Unit]:
    """One unit per policy x linked version, in file order. The Spec is the scaler's own, except
    that the replay's data is never stale (no webhook is lost in virtual time)."""
    settings = replay_settings(inputs)
    units: list[Unit] = []
    for fleet, policies, links in plan.fleets:
        for policy in policies:
            for ref in links:
                spec = spec_of(fleet, policy, facts_of(ref, inputs, empty_ttl_min), settings)
                spec = dataclasses.replace(spec, stale_after_s=math.inf)
                units.append(Unit(len(units), fleet, policy, ref, spec, deploy_spec(fleet, policy, ref), now))
    return units
