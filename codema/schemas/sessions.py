"""Sessions: create, get (also the session webhook body), delete, users, list."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, Field

from codema.schemas.base import (
    Count,
    DeploymentFacts,
    Flag,
    Float,
    GeoIp,
    Kind,
    LocationPoint,
    Received,
    Sent,
    Text,
    status_name,
)
from fleet.models import StatusReport


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


class SessionDeployment(DeploymentFacts):
    """The context `Deployment` model inside a session answer (and the session webhook)."""

    status: str | None = None
    ready: Flag = False
    whitelisting_active: Flag = False
    is_joinable_by_session: bool | None = None

    def to_report(self, source: str) -> StatusReport:
        return self._report(self.status or None, source)


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
    # Our callback URL with its secret: hidden in reprs. The allocator finds its sessions by it.
    webhook_url: Text = Field(default="", repr=False)

    @property
    def status_name(self) -> str:
        return status_name(self.status)


class SessionUsersChange(Sent):
    ip_list: list[str] = Field(min_length=1)
