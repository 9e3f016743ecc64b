"""Bodies the session API accepts: the platform's `SessionModel` and `PatchSessionModel`, unchanged.

Fields the platform defines and we do not act on (`skip_telemetry`, `region`) are accepted and
ignored so that existing clients work as they are; unknown fields are ignored like the platform
does. Player addresses are checked here (allocator.ips) so a refusal names the field and address.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from allocator.ips import BadAddress, check_all, player_ip

MAX_PLAYERS = 1000


class BadField(ValueError):
    """A well-formed value that is not acceptable; the message starts with the field's name."""


class SelectorEnvIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    key: str = Field(min_length=1, max_length=255)
    value: str = Field(min_length=1, max_length=1024)


class SelectorIn(BaseModel):
    """`SelectorModel`: a tag the deployment must carry (unless `tag_only`), and an env value
    passed to deployments created for the session."""

    model_config = ConfigDict(extra="ignore")

    tag: str = Field(min_length=1, max_length=20)
    tag_only: bool = False
    env: SelectorEnvIn | None = None


class GeoIpIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    ip: str
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)


class LocationIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)


class FilterIn(BaseModel):
    """`SessionFilterModel`, applied to the deployment's location (fields in LOCATION_FIELDS)."""

    model_config = ConfigDict(extra="ignore")

    field: Literal["city", "country", "continent", "administrative_division", "location_tags"]
    values: list[str] = Field(min_length=1, max_length=100)
    filter_type: Literal["any", "all", "not"]


def _check_webhook(url: str | None) -> str | None:
    if url is None or url == "":
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http or https URL")
    return url


class SessionCreateIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    app_name: str = Field(min_length=1, max_length=64)
    version_name: str = Field(min_length=1, max_length=64)
    ip_list: list[str] = Field(default_factory=list, max_length=MAX_PLAYERS)
    geo_ip_list: list[GeoIpIn] = Field(default_factory=list, max_length=MAX_PLAYERS)
    deployment_request_id: str | None = Field(default=None, max_length=64)
    location: LocationIn | None = None
    city: str | None = None
    country: str | None = None
    continent: str | None = None
    administrative_division: str | None = None
    region: str | None = None  # accepted; deployment locations carry no region to match
    selectors: list[SelectorIn] = Field(default_factory=list, max_length=50)
    webhook_url: str | None = Field(default=None, max_length=2048)
    filters: list[FilterIn] = Field(default_factory=list, max_length=20)
    skip_telemetry: bool | None = None

    @field_validator("webhook_url")
    @classmethod
    def _webhook(cls, v: str | None) -> str | None:
        return _check_webhook(v)

    def checked_ips(self) -> tuple[list[str], list[dict[str, Any]]]:
        """Canonical player addresses; BadField names `ip_list[i]`, `geo_ip_list[i].ip` or `ip_list`."""
        if not self.ip_list and not self.geo_ip_list:
            raise BadField("ip_list: at least one player IP (ip_list or geo_ip_list) is required")
        if len(self.ip_list) + len(self.geo_ip_list) > MAX_PLAYERS:
            raise BadField(f"ip_list: at most {MAX_PLAYERS} players per session")
        ips = check_all(self.ip_list, "ip_list")
        geo = []
        for i, g in enumerate(self.geo_ip_list):
            ip = str(player_ip(g.ip, f"geo_ip_list[{i}].ip"))
            geo.append({"ip": ip, "latitude": g.latitude, "longitude": g.longitude})
        return ips, geo


class UsersIn(BaseModel):
    """`PatchSessionModel`."""

    model_config = ConfigDict(extra="ignore")

    ip_list: list[str] = Field(min_length=1, max_length=MAX_PLAYERS)

    def checked_ips(self) -> list[str]:
        return check_all(self.ip_list, "ip_list")


__all__ = ["BadAddress", "BadField", "SelectorIn", "SessionCreateIn", "UsersIn"]
