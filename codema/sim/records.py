"""The simulator's state as plain records, the inputs the world accepts, and the errors it raises.

Records are mutable dataclasses owned by the `World`; callers read them and must not change them.
Inputs (`DeploySpec`, `SessionSpec`, `LocationFilter`) are frozen: the HTTP facade builds them
from request bodies, the offline replay builds them directly.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from codema.sim.geo import EdgeLocation, Point
from fleet.models import Status

__all__ = ["Status"]


class SimError(Exception):
    """A request the platform refuses; `http_status` is the platform's answer code."""

    http_status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(SimError):
    http_status = 400


class NotFound(SimError):
    http_status = 404


class Conflict(SimError):
    http_status = 409


class Gone(SimError):
    http_status = 410


class Unprocessable(SimError):
    http_status = 422


class Forbidden(SimError):
    http_status = 401


class Kind(enum.Enum):
    """An app version's session kind (its `session_config.kind`)."""

    DEFAULT = "Default"
    SEAT = "Seat"
    MATCH = "Match"

    @property
    def wire(self) -> str:
        """The literal in session responses (the spec's example text is "DEFAULT | SEATS | MATCH")."""
        return {"Default": "DEFAULT", "Seat": "SEATS", "Match": "MATCH"}[self.value]


class SessionStatus(enum.Enum):
    SEEKING = "SEEKING"  # created, not yet decided (never observable: linking is decided at once)
    WAITING = "WAITING"  # waiting for a deployment autodeploy started
    READY = "READY"  # linked to a READY deployment
    UNPROCESSABLE = "UNPROCESSABLE"  # no deployment could take it
    ERROR = "ERROR"  # the deployment it waited for failed

    @property
    def wire(self) -> str:
        return f"Status.{self.value}"


class Fate(enum.Enum):
    """How a deployment's launch ends, drawn at deploy time from the fault settings."""

    READY = "ready"
    ERROR = "error"
    STUCK = "stuck"  # stays DEPLOYING (until the version's time_to_deploy, if it has one)


@dataclass(frozen=True)
class LocationFilter:
    """`{"field", "values", "filter_type"}` of deploy filters, session filters and fleet policies."""

    field: str
    values: tuple[str, ...]
    filter_type: str = "any"  # any | all | not


@dataclass(frozen=True)
class GeoIp:
    ip: str
    latitude: float
    longitude: float


@dataclass(frozen=True)
class DeploySpec:
    """What `POST /v1/deploy` asks for (only the fields the simulator acts on)."""

    app_name: str
    version_name: str | None = None
    ip_list: tuple[str, ...] = ()
    geo_ip_list: tuple[GeoIp, ...] = ()
    location: Point | None = None
    filters: tuple[LocationFilter, ...] = ()
    tags: tuple[str, ...] = ()
    webhook_url: str | None = None
    env_vars: tuple[tuple[str, str], ...] = ()
    container_log_storage: bool = False


@dataclass(frozen=True)
class Selector:
    tag: str
    tag_only: bool = False


@dataclass(frozen=True)
class SessionSpec:
    """What `POST /v1/session` asks for."""

    app_name: str
    version_name: str | None = None
    ip_list: tuple[str, ...] = ()
    geo_ip_list: tuple[GeoIp, ...] = ()
    deployment_request_id: str | None = None
    location: Point | None = None
    filters: tuple[LocationFilter, ...] = ()
    selectors: tuple[Selector, ...] = ()
    webhook_url: str | None = None
    custom_id: str | None = None


@dataclass
class AppRecord:
    name: str
    is_active: bool
    is_telemetry_agent_active: bool
    image: str
    created: float
    updated: float


@dataclass
class VersionRecord:
    app: str
    name: str
    number: int  # the integer the platform reports as a session's `app_version`
    payload: dict[str, Any]  # the stored AppVersionPayload, echoed back by GET
    created: float
    updated: float

    @property
    def session_config(self) -> dict[str, Any]:
        cfg = self.payload.get("session_config")
        return cfg if isinstance(cfg, dict) else {}

    @property
    def kind(self) -> Kind:
        return Kind(self.session_config.get("kind", "Default"))

    @property
    def sockets(self) -> int | None:
        """Capacity of each deployment; None for non-session (Default) versions."""
        if self.kind is Kind.DEFAULT:
            return None
        return int(self.session_config.get("sockets", 1))

    @property
    def autodeploy(self) -> bool:
        return bool(self.session_config.get("autodeploy", False))

    @property
    def empty_ttl_min(self) -> int | None:
        ttl = self.session_config.get("empty_ttl")
        return int(ttl) if ttl else None

    @property
    def max_duration_min(self) -> int | None:
        """Minutes a deployment may live; None (0, negative or absent) = forever."""
        value = self.payload.get("max_duration")
        return int(value) if isinstance(value, int) and value > 0 else None

    @property
    def time_to_deploy_s(self) -> int | None:
        value = self.payload.get("time_to_deploy")
        return int(value) if isinstance(value, int) and value > 0 else None


@dataclass
class DeploymentRecord:
    request_id: str
    app: str
    version: str
    kind: Kind
    sockets: int | None
    location: EdgeLocation
    tags: list[str]
    created: float
    fate: Fate
    public_ip: str
    fqdn: str
    ports: dict[str, dict[str, Any]]
    user_count: int
    webhook_url: str | None
    access_point_id: int  # the self-stop URL's last segment
    delete_token: str  # ARBITRIUM_DELETE_TOKEN: authorises the self-stop call
    security_number: int  # the context URL's last segment
    context_token: str  # ARBITRIUM_CONTEXT_TOKEN
    status: Status = Status.INITIALIZING
    last_status: Status | None = None
    ready_at: float | None = None
    ended_at: float | None = None
    error_detail: str | None = None
    stop_requested: str | None = None  # the reason of a stop waiting for READY or ERROR
    end_reason: str | None = None  # stop, self_stop, bulk_stop, empty_ttl, max_duration, outage, error
    is_joinable: bool = True
    session_ids: list[str] = field(default_factory=list)
    used: int = 0
    empty_since: float | None = None
    env_vars: tuple[tuple[str, str], ...] = ()  # the deploy's env_vars (key, value), as injected

    @property
    def terminal(self) -> bool:
        return self.status.terminal

    @property
    def free(self) -> int:
        return 0 if self.sockets is None else max(0, self.sockets - self.used)

    def accepts_sessions(self) -> bool:
        return self.status is Status.READY and self.stop_requested is None and self.is_joinable


@dataclass(frozen=True)
class SessionUser:
    ip: str
    latitude: float | None = None
    longitude: float | None = None

    @property
    def point(self) -> Point | None:
        if self.latitude is None or self.longitude is None:
            return None
        return Point(self.latitude, self.longitude)


@dataclass
class SessionRecord:
    session_id: str
    custom_id: str | None
    app: str
    version: str
    version_number: int
    kind: Kind
    users: list[SessionUser]
    created: float
    webhook_url: str | None
    selectors: tuple[Selector, ...]
    status: SessionStatus = SessionStatus.SEEKING
    deployment_id: str | None = None  # linked (READY) or awaited (WAITING) deployment
    error: str | None = None

    @property
    def linked(self) -> bool:
        return self.status is SessionStatus.READY

    @property
    def size(self) -> int:
        """Sockets the session takes: one per player for Seat, one per session for Match."""
        if self.kind is Kind.SEAT:
            return len(self.users)
        return 1 if self.kind is Kind.MATCH else 0


@dataclass
class TelemetryRecord:
    retrieval_key: str
    deployments: list[str]
    ips: list[str]
    webhook_url: str | None
    created: float
    done_at: float
    expire_at: float
    # request_id -> (time its measure arrives, estimated RTT ms); deployments absent never report
    measures: dict[str, tuple[float, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class TelemetryResult:
    retrieval_key: str
    ranking: list[str]  # best first
    partial: bool


@dataclass(frozen=True)
class StopResult:
    """Outcome of a stop: `accepted_later` = 202 (carried out at READY/ERROR), else 200."""

    deployment: DeploymentRecord
    accepted_later: bool


@dataclass(frozen=True)
class Webhook:
    """A callback the platform owes someone; the facade delivers it (with the webhook faults)."""

    kind: str  # "deployment" | "session" | "telemetry"
    url: str
    body: dict[str, Any]
    created: float
    subject: str  # request_id, session_id or retrieval_key
