"""Deployments: deploy, status (also the deployment webhook body), list, stop, bulk stop."""

from __future__ import annotations

import enum
from typing import Literal

from pydantic import Field

from codema.schemas.base import (
    INTENT_TAG_PREFIX,
    Count,
    DeploymentFacts,
    Flag,
    GeoIp,
    Kind,
    LocationPoint,
    Received,
    Sent,
    Text,
)
from fleet.models import LocationFilter, Status, StatusReport, parse_status


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


class DeploymentSessionContext(Received):
    session_id: str
    status: Text = ""
    ready: Flag = False
    linked: Flag = False
    kind: Kind = "Default"
    user_count: Count = None


class DeploymentStatus(DeploymentFacts):
    """`Status`: the answer of GET /v1/status/{id} and the body of the deployment webhook."""

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
    sessions: list[DeploymentSessionContext] = Field(default_factory=list)
    max_duration: int | None = None

    @property
    def parsed_status(self) -> Status | None:
        return parse_status(self.current_status)

    def to_report(self, source: str) -> StatusReport:
        return self._report(
            self.current_status or None,
            source,
            app=self.app_name,
            version=self.app_version,
            error_detail=self.error_detail,
        )


class DeploymentListItem(DeploymentFacts):
    """`DeploymentListData`; `status` is read when the platform sends it (newer versions do)."""

    start_time: Text = ""
    ready: Flag = False
    is_joinable_by_session: bool | None = None
    status: str | None = None

    @property
    def status_raw(self) -> str | None:
        """`status` when present; else READY when `ready`; else nothing is said about status."""
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
        return self._report(self.status_raw, source)


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
