"""Domain models shared by every room: deployment status, deployments, fleets, policies, sessions.

Pure data and parsing; no I/O. The wire shapes of the platform live in `codema.schemas`.
"""

from __future__ import annotations

import enum
import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Status(enum.IntEnum):
    """Deployment status in its only allowed order (design.md §4). Value = rank."""

    INITIALIZING = 0
    SEEKING = 1
    SEEKED = 2
    SCANNING = 3
    DEPLOYING = 4
    READY = 5
    TERMINATING = 6
    TERMINATED = 7
    ERROR = 8

    @property
    def wire(self) -> str:
        return f"Status.{self.name}"

    @property
    def terminal(self) -> bool:
        return self in (Status.TERMINATED, Status.ERROR)

    @property
    def starting(self) -> bool:
        return self < Status.READY

    @property
    def live(self) -> bool:
        """Counts against a policy's maximum: starting, ready, or stopping but not yet gone."""
        return not self.terminal


def parse_status(raw: object) -> Status | None:
    """`Status.READY`, `ready`, `status.Ready` -> Status.READY; anything else -> None (unknown)."""
    if not isinstance(raw, str):
        return None
    return _status_of_text(raw)


@functools.lru_cache(maxsize=256)
def _status_of_text(raw: str) -> Status | None:
    # Cached: every callback and every stored deployment is parsed, with a handful of strings.
    name = raw.strip().rsplit(".", 1)[-1].upper()
    return Status.__members__.get(name)


def may_advance(current: Status | None, new: Status | None) -> bool:
    """Whether a status report may replace the stored one: forward only, terminal states final.

    TERMINATED and ERROR are both final; neither replaces the other. An unknown status never
    replaces a known one, and a known one always replaces an unknown one.
    """
    if new is None:
        return current is None
    if current is None:
        return True
    if current.terminal:
        return False
    return new > current


MAX_COUNT_DIGITS = 18


def parse_count(raw: object) -> int | None:
    """Sockets and usage arrive as ints or numeric strings; anything else is unknown (None)."""
    if isinstance(raw, bool) or raw is None:
        return None
    if isinstance(raw, int):
        return raw if raw >= 0 else None
    if isinstance(raw, float):
        return int(raw) if math.isfinite(raw) and raw >= 0 and raw == int(raw) else None
    if isinstance(raw, str):
        text = raw.strip()
        if text.isascii() and text.isdigit():  # not str.isdigit alone: "¹" is a digit int() refuses
            # Python refuses to read an int of more than 4,300 digits; no count has 19.
            return int(text) if len(text) <= MAX_COUNT_DIGITS else None
        try:
            value = float(text)
        except ValueError:
            return None
        return int(value) if math.isfinite(value) and value >= 0 and value == int(value) else None
    return None


class GeoPoint(BaseModel):
    model_config = ConfigDict(frozen=True)

    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)


class DeploymentLocation(BaseModel):
    """Where a deployment runs (the platform's DeploymentLocation, all fields optional here)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    city: str = ""
    country: str = ""
    continent: str = ""
    administrative_division: str = ""
    timezone: str = ""
    latitude: float | None = None
    longitude: float | None = None
    tags: tuple[str, ...] = ()  # location tags as "key=value"


class Deployment(BaseModel):
    """What the service knows about one platform deployment (stored by `Store`)."""

    model_config = ConfigDict(extra="ignore")

    request_id: str
    app: str = ""
    version: str = ""
    status_raw: str = ""  # exactly what the platform said, unknown strings included
    status: Status | None = None
    sockets: int | None = None
    usage: int | None = None  # None = unknown, never 0
    fqdn: str = ""
    public_ip: str = ""
    ports: dict[str, Any] = Field(default_factory=dict)
    location: DeploymentLocation | None = None
    tags: list[str] = Field(default_factory=list)
    fleet: str = ""
    policy: str = ""
    intent: str = ""
    error_detail: str = ""
    created_at: float = 0.0
    ready_at: float | None = None
    last_heard: float = 0.0  # last time the platform told us anything about it
    empty_since: float | None = None  # since when usage is known 0 with no session or reservation
    draining: bool = False
    stop_requested_at: float | None = None
    released_at: float | None = None  # a session left after the platform's last usage report
    sessions: int = 0  # our sessions holding sockets on it
    committed: int = 0  # sockets held by our confirmed sessions
    reserved: int = 0  # sockets held by live reservations (filled in on read)

    @property
    def free_sockets(self) -> int:
        """Sockets that a new reservation may take; 0 when capacity or usage is unknown."""
        if self.sockets is None or self.usage is None:
            return 0
        used = max(self.usage, self.committed)
        return max(0, self.sockets - used - self.reserved)


PolicyType = Literal["Location", "Tag", "Coordinates"]
FilterType = Literal["any", "all", "not"]
LocationField = Literal["city", "country", "continent", "region", "administrative_division", "location_tags"]


class LocationFilter(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    field: LocationField
    values: list[str] = Field(min_length=1)
    filter_type: FilterType


class FilterData(BaseModel):
    """`data` of Location and Tag policies."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    filters: list[LocationFilter] = Field(min_length=1)


class Policy(BaseModel):
    """A fleet policy: the seed's fields plus optional tuning (documented in the README)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    enabled: bool
    type: PolicyType
    minimum: int = Field(ge=1)
    maximum: int = Field(ge=1)
    threshold: float = Field(ge=0.1, le=1.0)
    data: dict[str, Any]
    # Tuning the seed lacks; all optional.
    idle_s: float | None = Field(default=None, ge=0, description="empty time before a stop")
    cooldown_s: float = Field(default=60.0, ge=0, description="no scale-in this long after a scale-up")
    hysteresis: float = Field(default=0.05, ge=0, le=0.9, description="scale-in margin below threshold")
    dry_run: bool = False
    create_time: str = ""
    last_updated: str = ""

    @field_validator("threshold")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("threshold must be a finite number")
        return v

    @model_validator(mode="after")
    def _check(self) -> Policy:
        if self.maximum < self.minimum:
            raise ValueError("maximum must be >= minimum")
        self.data = validate_policy_data(self.type, self.data)
        return self

    def filter_data(self) -> FilterData | None:
        return FilterData.model_validate(self.data) if self.type in ("Location", "Tag") else None

    def point(self) -> GeoPoint | None:
        return GeoPoint.model_validate(self.data) if self.type == "Coordinates" else None


def validate_policy_data(kind: str, data: Any) -> dict[str, Any]:
    """Check `data` against its type's shape (design.md §4) and return it normalised."""
    if not isinstance(data, dict):
        raise ValueError("data must be an object")
    if kind == "Coordinates":
        return GeoPoint.model_validate(data).model_dump()
    parsed = FilterData.model_validate(data)
    if kind == "Tag" and any(f.field != "location_tags" for f in parsed.filters):
        raise ValueError("Tag policies filter on field 'location_tags'")
    if kind == "Location" and any(f.field == "location_tags" for f in parsed.filters):
        raise ValueError("Location policies filter on city, country, continent, region or division")
    return parsed.model_dump()


class Fleet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    enabled: bool = False
    dry_run: bool = False
    create_time: str = ""
    last_updated: str = ""


class AppVersionRef(BaseModel):
    """An app version linked to a fleet, with what the scaler needs from its session_config."""

    model_config = ConfigDict(frozen=True)

    app: str
    version: str


SessionKind = Literal["Seat", "Match", "Default"]


def normalise_kind(raw: object) -> SessionKind:
    """`SEATS`, `seat`, `Seat` -> Seat; `MATCH` -> Match; anything else -> Default."""
    text = str(raw or "").strip().lower()
    if text in ("seat", "seats"):
        return "Seat"
    if text in ("match", "matches"):
        return "Match"
    return "Default"


def session_size(kind: SessionKind, players: int) -> int:
    """Sockets a session uses: one per player for Seat, one per session for Match."""
    return players if kind == "Seat" else 1


class SessionState(enum.StrEnum):
    """Our session's life: waiting for capacity, linked, or ended without a deployment."""

    WAITING = "WAITING"
    LINKED = "READY"
    UNPROCESSABLE = "UNPROCESSABLE"
    ERROR = "ERROR"
    TERMINATING = "TERMINATING"

    @property
    def wire(self) -> str:
        return f"Status.{self.value}"


class SessionRecord(BaseModel):
    """A session as the service keeps it. `session_id` is ours; the platform's id sits beside it."""

    model_config = ConfigDict(extra="ignore")

    session_id: str
    platform_session_id: str = ""
    custom_id: str = ""
    app: str
    version: str
    kind: SessionKind = "Seat"
    ips: list[str] = Field(default_factory=list)
    geo: list[dict[str, Any]] = Field(default_factory=list)  # GeoIpListModel entries
    selectors: list[dict[str, Any]] = Field(default_factory=list)
    webhook_url: str = ""
    requested_deployment: str = ""  # deployment_request_id asked for by the client
    deployment_request_id: str = ""  # where it landed
    state: SessionState = SessionState.WAITING
    size: int = 0
    error: str = ""
    create_time: float = 0.0
    linked_at: float | None = None
    deadline: float | None = None  # a waiting session becomes unprocessable after this
    # Where the players are (from the platform's IP lookup or geo_ip_list), so the scaler can add
    # capacity near them: {"latitude", "longitude", "country", "continent"}.
    origin: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True)
class StatusReport:
    """A normalised report about one deployment, from a webhook, a status poll or the list.

    `usage` None means the report said nothing usable about usage (unknown, not 0).
    """

    request_id: str
    status_raw: str | None = None
    sockets: int | None = None
    usage: int | None = None
    app: str = ""
    version: str = ""
    fqdn: str = ""
    public_ip: str = ""
    ports: Mapping[str, Any] | None = None
    location: DeploymentLocation | None = None
    tags: tuple[str, ...] | None = None
    error_detail: str = ""
    source: str = "webhook"  # webhook | poll | list | create

    # Not functools.cached_property: on Python 3.11 its first read takes a lock, and every report
    # is new (a callback's report is read a few times); parse_status is cached per string.
    @property
    def status(self) -> Status | None:
        return parse_status(self.status_raw) if self.status_raw is not None else None
