"""Applications and app versions (`/v1/app...`); a version's `session_config` tells kind, sockets
and `empty_ttl`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr, field_serializer

from codema.schemas.base import Count, Flag, Kind, Received, Sent, Text
from fleet.models import SessionKind


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
