"""Wire shapes of the Codema v1 API (codema-api.md), as pydantic models.

Lenient on what we receive: unknown fields are ignored, `null` means "not said" (the default),
`sockets`/`sockets_usage` may be numbers or numeric strings and anything else is unknown (None,
never 0), status strings of any case, the seed's `app_id` or the spec's `app_version`.
Strict on what we send: unknown fields are refused and None is left out of the body.
"""

from __future__ import annotations

import enum
import math
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_serializer,
    model_validator,
)

from fleet.models import (
    DeploymentLocation as KernelLocation,
)
from fleet.models import (
    LocationFilter,
    SessionKind,
    Status,
    StatusReport,
    normalise_kind,
    parse_count,
    parse_status,
)

INTENT_TAG_PREFIX = "intent:"


def intent_tag(intent: str) -> str:
    """The deployment tag that carries a create intent, so the platform's list can find it."""
    return INTENT_TAG_PREFIX + intent


def _lenient_float(raw: object) -> float | None:
    if isinstance(raw, bool) or raw is None:
        return None
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _lenient_bool(raw: object) -> object:
    if isinstance(raw, str):
        return raw.strip().lower() in ("true", "1", "yes")
    return bool(raw) if raw is not None else False


Count = Annotated[int | None, BeforeValidator(parse_count)]
Float = Annotated[float | None, BeforeValidator(_lenient_float)]
Flag = Annotated[bool, BeforeValidator(_lenient_bool)]
Kind = Annotated[SessionKind, BeforeValidator(normalise_kind)]
Text = Annotated[str, BeforeValidator(lambda raw: "" if raw is None else str(raw))]


class Received(BaseModel):
    """Base of every response model: ignore what we do not know, treat null as absent."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _drop_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None}
        return data


class Sent(BaseModel):
    """Base of every request model: unknown fields are a programming error."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


# --- shared pieces ---------------------------------------------------------------------------------
class PortMapping(Received):
    external: Count = None
    internal: Count = None
    protocol: Text = ""
    name: Text = ""
    tls_upgrade: Flag = False
    link: Text = ""
    proxy: Count = None


class WireLocation(Received):
    """The platform's DeploymentLocation."""

    city: Text = ""
    country: Text = ""
    continent: Text = ""
    administrative_division: Text = ""
    timezone: Text = ""
    latitude: Float = None
    longitude: Float = None

    def to_kernel(self, tags: tuple[str, ...] = ()) -> KernelLocation:
        return KernelLocation(**self.model_dump(), tags=tags)


class Pagination(Received):
    number: Count = None
    next_page_number: Count = None
    previous_page_number: Count = None
    num_pages: Count = None
    has_next: Flag = False
    has_previous: Flag = False

    @model_validator(mode="before")
    @classmethod
    def _flatten(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("paginator"), dict):
            return {**data, "num_pages": data["paginator"].get("num_pages")}
        return data


# --- apps and versions -----------------------------------------------------------------------------
class Application(Received):
    name: str
    is_active: Flag = True
    is_telemetry_agent_active: Flag = False
    image: Text = ""
    create_time: Text = ""
    last_updated: Text = ""


class ApplicationCreate(Sent):
    name: str = Field(min_length=1, max_length=64)
    is_active: bool = True
    is_telemetry_agent_active: bool | None = None
    image: str = ""


class SessionConfig(Received):
    """`session_config` of an app version; a version without one is `Default` (not session-based)."""

    kind: Kind = "Default"
    sockets: Count = None
    autodeploy: Flag = False
    empty_ttl: Count = None  # minutes
    session_max_duration: Count = None


class AppVersion(Received):
    name: str
    is_active: Flag = True
    docker_repository: Text = ""
    docker_image: Text = ""
    docker_tag: Text = ""
    req_cpu: Count = None
    req_memory: Count = None
    req_video: Count = None
    max_duration: int | None = None  # minutes; 0 (or -1 in later specs) = forever
    time_to_deploy: Count = None
    session_config: SessionConfig = Field(default_factory=SessionConfig)
    ports: list[dict[str, Any]] = Field(default_factory=list)


class SessionConfigCreate(Sent):
    kind: SessionKind
    sockets: int = Field(ge=1)
    autodeploy: bool | None = None
    empty_ttl: int | None = Field(default=None, ge=1)
    session_max_duration: int | None = Field(default=None, ge=60)


class AppVersionPort(Sent):
    port: int = Field(ge=0, le=59999)
    protocol: Literal["TCP", "UDP", "TCP/UDP", "HTTP", "HTTPS", "WS", "WSS"]
    to_check: bool | None = None
    tls_upgrade: bool | None = None
    name: str | None = None


class AppVersionProbe(Sent):
    optimal_ping: int = Field(ge=1)
    rejected_ping: int = Field(ge=1)


class AppVersionEnv(Sent):
    key: str
    value: str = Field(repr=False)
    is_secret: bool | None = None


class AppVersionCreate(Sent):
    """AppVersionPayload. `private_token` is a registry credential: hidden in reprs."""

    name: str = Field(min_length=1, max_length=64)
    docker_repository: str
    docker_image: str
    docker_tag: str
    req_cpu: int = Field(ge=100)
    req_memory: int = Field(ge=100)
    is_active: bool | None = None
    private_username: str | None = None
    private_token: SecretStr | None = None
    req_video: int | None = Field(default=None, ge=0)
    max_duration: int | None = None
    use_telemetry: bool | None = None
    whitelisting_active: bool | None = None
    force_cache: bool | None = None
    cache_min_hour: int | None = Field(default=None, ge=0, le=23)
    cache_max_hour: int | None = Field(default=None, ge=0, le=23)
    time_to_deploy: int | None = Field(default=None, ge=15)
    enable_all_locations: bool | None = None
    session_config: SessionConfigCreate | None = None
    ports: list[AppVersionPort] | None = None
    probe: AppVersionProbe | None = None
    envs: list[AppVersionEnv] | None = None
    verify_image: bool | None = None
    termination_grace_period_seconds: int | None = Field(default=None, ge=5, le=3600)
    endpoint_storage: str | None = None

    @field_serializer("private_token", when_used="json")
    def _reveal(self, token: SecretStr | None) -> str | None:
        return token.get_secret_value() if token is not None else None


# --- deployments -----------------------------------------------------------------------------------
class GeoIp(Sent):
    ip: str
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)


class LocationPoint(Sent):
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)


class EnvVar(Sent):
    key: str
    value: str = Field(repr=False)
    is_hidden: bool | None = None


class ContainerLogStorage(Sent):
    enabled: bool
    endpoint_storage: str | None = None


class DeployRequest(Sent):
    """DeployModel. `webhook_url` carries our webhook secret, so it is hidden in reprs."""

    app_name: str = Field(min_length=1)
    version_name: str | None = None
    is_public_app: bool | None = None
    ip_list: list[str] | None = None
    geo_ip_list: list[GeoIp] | None = None
    telemetry_profile_uuid_list: list[str] | None = None
    env_vars: list[EnvVar] | None = None
    skip_telemetry: bool | None = None
    location: LocationPoint | None = None
    webhook_url: str | None = Field(default=None, repr=False)
    tags: list[str] | None = None
    container_log_storage: ContainerLogStorage | None = None
    filters: list[LocationFilter] | None = None
    ap_sort_strategy: Literal["basic", "weighted"] | None = None
    command: str | None = None  # seed only
    arguments: str | None = None  # seed only

    def with_tag(self, tag: str) -> DeployRequest:
        tags = list(self.tags or [])
        return self if tag in tags else self.model_copy(update={"tags": [*tags, tag]})


class DeployResponse(Received):
    """`Request`: the platform accepted the deploy. `recovered` is ours: True when the deployment
    was found by its intent tag after an ambiguous failure instead of from this answer."""

    request_id: str
    request_dns: Text = ""
    request_app: Text = ""
    request_version: Text = ""
    request_user_count: Count = None
    city: Text = ""
    country: Text = ""
    continent: Text = ""
    administrative_division: Text = ""
    tags: list[str] = Field(default_factory=list)
    recovered: bool = False


def _to_report(
    request_id: str,
    status_raw: str | None,
    item: DeploymentStatus | DeploymentListItem | SessionDeployment,
    source: str,
    **extra: Any,
) -> StatusReport:
    location = item.location.to_kernel() if item.location is not None else None
    return StatusReport(
        request_id=request_id,
        status_raw=status_raw,
        sockets=item.sockets,
        usage=item.sockets_usage,
        fqdn=item.fqdn,
        public_ip=item.public_ip,
        ports={k: v.model_dump(exclude_defaults=True) for k, v in item.ports.items()},
        location=location,
        tags=tuple(item.tags) if item.tags is not None else None,
        source=source,
        **extra,
    )


class DeploymentSessionContext(Received):
    session_id: str
    status: Text = ""
    ready: Flag = False
    linked: Flag = False
    kind: Kind = "Default"
    user_count: Count = None


class DeploymentStatus(Received):
    """`Status`: the answer of GET /v1/status/{id} and the body of the deployment webhook."""

    request_id: str = Field(min_length=1)
    fqdn: Text = ""
    app_name: Text = ""
    app_version: Text = ""
    current_status: str | None = None
    last_status: str | None = None
    running: Flag = False
    whitelisting_active: Flag = False
    start_time: Text = ""
    removal_time: str | None = None
    elapsed_time: Count = None
    error: Flag = False
    error_detail: Text = ""
    ports: dict[str, PortMapping] = Field(default_factory=dict)
    public_ip: Text = ""
    sessions: list[DeploymentSessionContext] = Field(default_factory=list)
    location: WireLocation | None = None
    tags: list[str] | None = None
    sockets: Count = None
    sockets_usage: Count = None
    max_duration: int | None = None

    @property
    def parsed_status(self) -> Status | None:
        return parse_status(self.current_status)

    def to_report(self, source: str) -> StatusReport:
        return _to_report(
            self.request_id,
            self.current_status or None,
            self,
            source,
            app=self.app_name,
            version=self.app_version,
            error_detail=self.error_detail,
        )


class DeploymentListItem(Received):
    """`DeploymentListData`; `status` is read when the platform sends it (newer versions do)."""

    request_id: str = Field(min_length=1)
    fqdn: Text = ""
    start_time: Text = ""
    ready: Flag = False
    public_ip: Text = ""
    ports: dict[str, PortMapping] = Field(default_factory=dict)
    tags: list[str] | None = None
    sockets: Count = None
    sockets_usage: Count = None
    is_joinable_by_session: bool | None = None
    status: str | None = None
    location: WireLocation | None = None

    @property
    def status_raw(self) -> str | None:
        if self.status:
            return self.status
        return Status.READY.wire if self.ready else None

    @property
    def parsed_status(self) -> Status | None:
        return parse_status(self.status_raw)

    @property
    def intent(self) -> str | None:
        """The create intent this deployment carries as a tag, if any."""
        for tag in self.tags or ():
            if tag.startswith(INTENT_TAG_PREFIX):
                return tag[len(INTENT_TAG_PREFIX) :]
        return None

    def to_report(self, source: str) -> StatusReport:
        return _to_report(self.request_id, self.status_raw, self, source)


class StopOutcome(enum.StrEnum):
    """What DELETE /v1/stop said: stopping now (200), queued until the deployment is READY or in
    ERROR (202), or already terminated (410, success for an idempotent stop)."""

    STOPPING = "stopping"
    ACCEPTED = "accepted"
    GONE = "gone"


class StopFilter(Sent):
    field: Literal["request_id", "deployment_tags"]
    values: list[str] = Field(min_length=1)
    filter_type: Literal["any", "all", "not"]


class BulkStopRequest(Sent):
    filters: list[StopFilter] = Field(min_length=1)


# --- sessions --------------------------------------------------------------------------------------
class SelectorEnv(Sent):
    key: str = Field(min_length=1, max_length=255)
    value: str = Field(min_length=1, max_length=1024, repr=False)


class Selector(Sent):
    tag: str = Field(min_length=1, max_length=20)
    tag_only: bool | None = None
    env: SelectorEnv | None = None


class SessionFilter(Sent):
    field: str = Field(min_length=1)
    values: list[str] = Field(min_length=1)
    filter_type: Literal["any", "all", "not"]


class SessionCreate(Sent):
    """SessionModel. `webhook_url` carries our webhook secret, so it is hidden in reprs."""

    app_name: str = Field(min_length=1)
    version_name: str | None = None
    ip_list: list[str] | None = None
    geo_ip_list: list[GeoIp] | None = None
    deployment_request_id: str | None = None
    location: LocationPoint | None = None
    city: str | None = None
    country: str | None = None
    continent: str | None = None
    administrative_division: str | None = None
    region: str | None = None
    selectors: list[Selector] | None = None
    webhook_url: str | None = Field(default=None, repr=False)
    filters: list[SessionFilter] | None = None
    skip_telemetry: bool | None = None


class SessionCreated(Received):
    """`SessionRequest`: created, not yet linked."""

    session_id: str
    custom_id: Text = ""
    app: Text = ""
    version: Text = ""
    deployment_request_id: Text = ""
    selectors: list[dict[str, Any]] = Field(default_factory=list)


class SessionUser(Received):
    ip: str
    latitude: Float = None
    longitude: Float = None


class SessionDeployment(Received):
    """The context `Deployment` model inside a session answer."""

    request_id: str
    public_ip: Text = ""
    status: str | None = None
    ready: Flag = False
    whitelisting_active: Flag = False
    fqdn: Text = ""
    ports: dict[str, PortMapping] = Field(default_factory=dict)
    location: WireLocation | None = None
    tags: list[str] | None = None
    sockets: Count = None
    sockets_usage: Count = None
    is_joinable_by_session: bool | None = None

    def to_report(self, source: str) -> StatusReport:
        return _to_report(self.request_id, self.status, self, source)


def status_name(raw: str) -> str:
    """`Status.READY`, `ready` -> READY: session statuses are matched on the upper-case suffix."""
    return raw.strip().rsplit(".", 1)[-1].upper()


class SessionInfo(Received):
    """`SessionGet`: the answer of GET /v1/session/{id} and the body of the session webhook."""

    session_id: str
    custom_id: Text = ""
    status: Text = ""
    ready: Flag = False
    linked: Flag = False
    kind: Kind = "Default"
    user_count: Count = None
    app_version: Count = Field(default=None, validation_alias=AliasChoices("app_version", "app_id"))
    create_time: Text = ""
    elapsed: Count = None
    error: Text = ""
    session_users: list[SessionUser] = Field(default_factory=list)
    session_ips: list[SessionUser] = Field(default_factory=list)
    deployment: SessionDeployment | None = None

    @property
    def status_name(self) -> str:
        return status_name(self.status)

    @property
    def deployment_request_id(self) -> str:
        return self.deployment.request_id if self.deployment is not None else ""


class SessionSummary(Received):
    """`SessionContext`: one entry of GET /v1/sessions."""

    session_id: str
    custom_id: Text = ""
    status: Text = ""
    ready: Flag = False
    linked: Flag = False
    kind: Kind = "Default"
    user_count: Count = None
    deployment_request_id: Text = ""

    @property
    def status_name(self) -> str:
        return status_name(self.status)


class SessionUsersChange(Sent):
    ip_list: list[str] = Field(min_length=1)


# --- telemetry, locations, ip lookup ---------------------------------------------------------------
class TelemetryRequest(Sent):
    deployments: list[str] = Field(min_length=1)
    ips: list[str] = Field(min_length=1)
    webhook_url: str | None = Field(default=None, repr=False)


class TelemetryTicket(Received):
    retrieval_key: str
    expire: Text = ""


def _score_ids(raw: object) -> object:
    if not isinstance(raw, list):
        return raw
    ids: list[str] = []
    for entry in raw:
        value = entry.get("request_id") if isinstance(entry, dict) else entry
        if isinstance(value, str) and value:
            ids.append(value)
    return ids


class TelemetryResult(Received):
    """Active-deployment telemetry (GET result and webhook body): request ids, best first."""

    retrieval_key: Text = ""
    scores: Annotated[list[str], BeforeValidator(_score_ids)] = Field(default_factory=list)
    partial_result: Flag = False


class LocationTag(Received):
    key: Text = ""
    value: Text = ""


class Location(Received):
    city: Text = ""
    continent: Text = ""
    country: Text = ""
    timezone: Text = ""
    administrative_division: Text = ""
    latitude: Float = None
    longitude: Float = None
    type: Text = ""
    tags: list[LocationTag] = Field(default_factory=list)

    def tag_strings(self) -> tuple[str, ...]:
        """Location tags as `key=value`, the form Tag policies filter on."""
        return tuple(f"{t.key}={t.value}" for t in self.tags)


class IpLookup(Received):
    """IPAddressLookupResponse flattened: coordinates are None when the platform does not know."""

    ip_address: str
    type: Text = ""
    latitude: Float = None
    longitude: Float = None
    country_code: Text = ""
    continent: Text = ""

    @model_validator(mode="before")
    @classmethod
    def _flatten(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("location"), dict):
            return data
        loc = data["location"]
        country = loc.get("country") if isinstance(loc.get("country"), dict) else {}
        continent = loc.get("continent") if isinstance(loc.get("continent"), dict) else {}
        return {
            **data,
            "latitude": loc.get("latitude"),
            "longitude": loc.get("longitude"),
            "country_code": country.get("code"),
            "continent": continent.get("name") or continent.get("code"),
        }


class IpsLookupRequest(Sent):
    addresses: list[str] = Field(min_length=1, max_length=20)
