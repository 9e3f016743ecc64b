"""Deployments: placement, the status lifecycle, stops of every kind, and the platform's own endings.

Lifecycle: INITIALIZING -> SEEKING -> SEEKED -> SCANNING -> DEPLOYING spread over `boot_s`, then
READY (or ERROR / stuck in DEPLOYING by fault). A stop of a READY deployment moves it to
TERMINATING and, `stop_s` later, TERMINATED. A stop before READY answers 202 and is carried out
when the deployment reaches READY or ERROR. The platform also ends deployments by itself, with no
webhook: `empty_ttl` minutes without a session, `max_duration` minutes after the deploy, the
server's self-stop call, and a location outage.
"""

from __future__ import annotations

import hmac

from codema.sim.apps import AppsPart
from codema.sim.geo import LOCATIONS, EdgeLocation, Point
from codema.sim.placement import check_filters, choose_location, matches_filters
from codema.sim.records import (
    BadRequest,
    DeploymentRecord,
    DeploySpec,
    Fate,
    Forbidden,
    Gone,
    LocationFilter,
    Status,
    StopResult,
    Unprocessable,
    VersionRecord,
)
from codema.sim.state import PHASE_FRACTIONS
from codema.sim.views import status as status_view

STARTING_PHASES = (Status.SEEKING, Status.SEEKED, Status.SCANNING, Status.DEPLOYING)
BULK_FIELDS = ("request_id", "deployment_tags")


class DeploymentsPart(AppsPart):
    # -- hooks the sessions part fills in ---------------------------------------------------------

    def _sessions_on_ready(self, d: DeploymentRecord) -> None:
        """Link the sessions that waited for `d` (autodeploy)."""

    def _sessions_on_end(self, d: DeploymentRecord) -> None:
        """`d` ended: its sessions are gone, sessions waiting for it fail."""

    def status_body(self, d: DeploymentRecord) -> dict[str, object]:
        return status_view(d, self.now)

    # -- create ------------------------------------------------------------------------------------

    def in_outage(self, loc: EdgeLocation) -> bool:
        return loc.city.lower() in {c.lower() for c in self.faults.outages}

    def deploy(self, spec: DeploySpec) -> DeploymentRecord:
        """`POST /v1/deploy`: place and start a deployment. Unprocessable when no location fits."""
        self.advance()
        version = self.resolve_version(spec.app_name, spec.version_name)
        if version.payload.get("is_active") is False:
            raise BadRequest(f"version_name: version {version.name} is not active")
        check_filters(spec.filters, "filters", strict_fields=True)
        users = self.users_of(spec.ip_list, spec.geo_ip_list, "ip_list")
        players = [spec.location] if spec.location else self.points_of(users)
        loc = self.place(spec.filters, players)
        d = self.start_deployment(version, loc, list(spec.tags), spec.webhook_url, len(users))
        d.env_vars = spec.env_vars
        return d

    def place(self, filters: tuple[LocationFilter, ...], players: list[Point]) -> EdgeLocation:
        """The location for a new deployment: matching the filters, not in outage, nearest the players."""
        candidates = [loc for loc in LOCATIONS if matches_filters(loc, filters) and not self.in_outage(loc)]
        if not candidates:
            raise Unprocessable("Couldn't allocate server: no available location matches the filters")
        return choose_location(candidates, players, self.rng)

    def _fate(self) -> Fate:
        draw = self.rng.random()
        if draw < self.faults.fail_deploys:
            return Fate.ERROR
        if draw < self.faults.fail_deploys + self.faults.stuck_deploys:
            return Fate.STUCK
        return Fate.READY

    def start_deployment(
        self, version: VersionRecord, loc: EdgeLocation, tags: list[str], webhook_url: str | None, users: int
    ) -> DeploymentRecord:
        rid = self.new_hex(12)
        while rid in self.deployments:
            rid = self.new_hex(12)
        fqdn = f"{rid}.sim.codema.invalid"
        d = DeploymentRecord(
            request_id=rid,
            app=version.app,
            version=version.name,
            kind=version.kind,
            sockets=version.sockets,
            location=loc,
            tags=tags,
            created=self.now,
            fate=self._fate(),
            public_ip=f"203.0.113.{self.rng.randint(1, 254)}",
            fqdn=fqdn,
            ports=self._ports(version, fqdn),
            user_count=users,
            webhook_url=webhook_url,
            access_point_id=self.rng.randint(1, 99999),
            delete_token=self.new_hex(32),
            security_number=self.rng.randint(1, 99999),
            context_token=self.new_hex(32),
        )
        self.deployments[rid] = self.live[rid] = d
        boot = self.config.boot_s
        for phase, frac in zip(STARTING_PHASES, PHASE_FRACTIONS, strict=True):
            self.schedule(d.created + boot * frac, f"phase:{phase.name}", rid)
        if d.fate is Fate.STUCK:
            if version.time_to_deploy_s:
                self.schedule(d.created + version.time_to_deploy_s, "launch_end", rid)
        else:
            self.schedule(d.created + boot, "launch_end", rid)
        if version.max_duration_min:
            self.schedule(d.created + version.max_duration_min * self.config.minute_s, "max_duration", rid)
        return d

    def _ports(self, version: VersionRecord, fqdn: str) -> dict[str, dict[str, object]]:
        declared = version.payload.get("ports") or [{"port": 7777, "protocol": "UDP"}]
        ports: dict[str, dict[str, object]] = {}
        for p in declared:
            if not isinstance(p, dict):
                continue
            external = self.rng.randint(30000, 60000)
            internal = int(p.get("port") or 0) or external  # port 0 = 1:1 mapping
            name = str(p.get("name") or internal)
            proto = str(p.get("protocol", "UDP"))
            scheme = proto.lower() + "://" if proto.upper() in ("HTTP", "HTTPS", "WS", "WSS") else ""
            ports[name] = {
                "external": external,
                "internal": internal,
                "protocol": proto,
                "name": name,
                "tls_upgrade": bool(p.get("tls_upgrade", False)),
                "link": f"{scheme}{fqdn}:{external}",
                "proxy": self.rng.randint(60001, 65000),
            }
        return ports

    # -- timeline ---------------------------------------------------------------------------------

    def _set_status(self, d: DeploymentRecord, new: Status) -> None:
        d.last_status, d.status = d.status, new

    def _on_phase(self, d: DeploymentRecord, phase: Status) -> None:
        if d.status < phase and d.status < Status.READY:
            self._set_status(d, phase)

    def _on_launch_end(self, d: DeploymentRecord) -> None:
        if d.status >= Status.READY:
            return
        if d.fate is Fate.READY:
            self._become_ready(d)
        else:
            detail = "deployment did not become ready within time_to_deploy" if d.fate is Fate.STUCK else None
            self.fail(d, detail or "container failed to start (simulated fault)")

    def _become_ready(self, d: DeploymentRecord) -> None:
        self._set_status(d, Status.READY)
        d.ready_at = self.now
        self.emit("deployment", d.webhook_url, self.status_body(d), d.request_id)
        self._sessions_on_ready(d)
        if d.stop_requested:
            self.begin_stop(d, d.stop_requested)
        elif not d.session_ids:
            self.mark_empty(d)

    def fail(self, d: DeploymentRecord, detail: str) -> None:
        """Launch failure: ERROR (terminal), webhook, waiting sessions fail."""
        self._set_status(d, Status.ERROR)
        self.live.pop(d.request_id, None)
        d.error_detail, d.ended_at = detail, self.now
        d.end_reason = d.end_reason or "error"
        self.emit("deployment", d.webhook_url, self.status_body(d), d.request_id)
        self._sessions_on_end(d)

    def mark_empty(self, d: DeploymentRecord) -> None:
        """`d` has no session from now on: the version's empty_ttl clock starts."""
        d.empty_since = self.now
        version = self.versions.get((d.app, d.version))
        ttl = version.empty_ttl_min if version else None
        if ttl:
            self.schedule(self.now + ttl * self.config.minute_s, "empty_ttl", d.request_id)

    def _on_empty_ttl(self, d: DeploymentRecord) -> None:
        version = self.versions.get((d.app, d.version))
        ttl = version.empty_ttl_min if version else None
        if d.status is not Status.READY or d.session_ids or d.empty_since is None or not ttl:
            return
        if self.now + 1e-9 >= d.empty_since + ttl * self.config.minute_s:
            self.begin_stop(d, "empty_ttl")

    def _on_max_duration(self, d: DeploymentRecord) -> None:
        if d.status < Status.READY:
            d.stop_requested = d.stop_requested or "max_duration"
        elif d.status is Status.READY:
            self.begin_stop(d, "max_duration")

    def begin_stop(self, d: DeploymentRecord, reason: str) -> None:
        self._set_status(d, Status.TERMINATING)
        d.end_reason = reason
        self.schedule(self.now + self.config.stop_s, "terminated", d.request_id)

    def finish(self, d: DeploymentRecord, reason: str | None = None) -> None:
        if d.terminal:
            return
        self._set_status(d, Status.TERMINATED)
        self.live.pop(d.request_id, None)
        d.ended_at = self.now
        d.end_reason = reason or d.end_reason or "stop"
        self._sessions_on_end(d)

    # -- stops ------------------------------------------------------------------------------------

    def stop(self, request_id: str, reason: str = "stop") -> StopResult:
        """`DELETE /v1/stop/{id}`: 200 (now), 202 (when READY/ERROR is reached), Gone when ended."""
        d = self.deployment(request_id)
        if d.terminal:
            raise Gone(f"Instance {request_id} already terminated")
        if d.status is Status.READY:
            self.begin_stop(d, reason)
            return StopResult(d, accepted_later=False)
        if d.status < Status.READY:
            d.stop_requested = d.stop_requested or reason
        return StopResult(d, accepted_later=True)

    def self_stop(self, request_id: str, access_point_id: str, token: str) -> StopResult:
        """The in-container `DELETE /v1/self/stop/{id}/{access_point_id}` with ARBITRIUM_DELETE_TOKEN."""
        d = self.deployment(request_id)
        if str(d.access_point_id) != access_point_id or not hmac.compare_digest(token, d.delete_token):
            raise Forbidden("invalid delete token or access point")
        return self.stop(request_id, reason="self_stop")

    def bulk_stop(self, filters: list[LocationFilter]) -> list[str]:
        """`POST /v1/deployments/bulk-stop`: stop every live deployment matching all filters."""
        for i, f in enumerate(filters):
            if f.field not in BULK_FIELDS:
                raise BadRequest(f"filters[{i}].field: expected one of {', '.join(BULK_FIELDS)}")
            if f.filter_type not in ("any", "all", "not"):
                raise BadRequest(f"filters[{i}].filter_type: expected one of any, all, not")
        self.advance()
        live = [d for d in self.live.values() if d.status is not Status.TERMINATING]
        chosen = [d for d in live if all(_bulk_match(d, f) for f in filters)]
        for d in chosen:
            self.stop(d.request_id, reason="bulk_stop")
        return [d.request_id for d in chosen]

    def list_deployments(self) -> list[DeploymentRecord]:
        """The platform's active deployments (terminated and failed ones are not listed), oldest first."""
        self.advance()
        return list(self.live.values())

    def set_joinable(self, request_id: str, joinable: bool) -> DeploymentRecord:
        d = self.deployment(request_id)
        d.is_joinable = joinable
        return d

    def apply_outages(self) -> None:
        """Deployments in a city with an outage end at once, without webhook for running ones:
        starting ones fail (ERROR + webhook), READY and TERMINATING ones are TERMINATED."""
        for d in list(self.live.values()):
            if not self.in_outage(d.location):
                continue
            if d.status < Status.READY:
                d.end_reason = "outage"
                self.fail(d, f"location outage in {d.location.city}")
            else:
                self.finish(d, "outage")


def _bulk_match(d: DeploymentRecord, f: LocationFilter) -> bool:
    have = {d.request_id} if f.field == "request_id" else set(d.tags)
    wanted = set(f.values)
    if f.filter_type == "all":
        return wanted <= have
    if f.filter_type == "not":
        return not (wanted & have)
    return bool(wanted & have)
