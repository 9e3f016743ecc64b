"""Request bodies of the simulated platform, validated, and their conversion to world inputs."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, ValidationError
from starlette.requests import Request

from codema.sim.geo import Point
from codema.sim.records import BadRequest, DeploySpec, GeoIp, LocationFilter, Selector, SessionSpec

M = TypeVar("M", bound=BaseModel)
MAX_LOOKUP_ADDRESSES = 20
SIMPLE_LOCATION_FIELDS = ("city", "country", "continent", "region", "administrative_division")


class Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class FilterBody(Body):
    field: StrictStr
    values: list[StrictStr]
    filter_type: StrictStr

    def spec(self) -> LocationFilter:
        return LocationFilter(self.field, tuple(self.values), self.filter_type)


class GeoIpBody(Body):
    ip: StrictStr
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)


class LocationBody(Body):
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)


class EnvBody(Body):
    key: StrictStr
    value: StrictStr
    is_hidden: StrictBool = False


class _Placed(Body):
    """Fields deploy and session share: players, centroid, simple location constraints, filters."""

    app_name: StrictStr = Field(min_length=1)
    version_name: StrictStr | None = None
    ip_list: list[StrictStr] = []
    geo_ip_list: list[GeoIpBody] = []
    location: LocationBody | None = None
    filters: list[FilterBody] = []
    city: StrictStr | None = None
    country: StrictStr | None = None
    continent: StrictStr | None = None
    region: StrictStr | None = None
    administrative_division: StrictStr | None = None
    webhook_url: StrictStr | None = None

    def location_filters(self) -> tuple[LocationFilter, ...]:
        simple = [
            LocationFilter(name, (value,), "any")
            for name in SIMPLE_LOCATION_FIELDS
            if (value := getattr(self, name))
        ]
        return tuple([f.spec() for f in self.filters] + simple)

    def geo(self) -> tuple[GeoIp, ...]:
        return tuple(GeoIp(g.ip, g.latitude, g.longitude) for g in self.geo_ip_list)

    def centroid(self) -> Point | None:
        return Point(self.location.latitude, self.location.longitude) if self.location else None


class DeployBody(_Placed):
    tags: list[StrictStr] = []
    env_vars: list[EnvBody] = []

    def spec(self) -> DeploySpec:
        return DeploySpec(
            app_name=self.app_name,
            version_name=self.version_name,
            ip_list=tuple(self.ip_list),
            geo_ip_list=self.geo(),
            location=self.centroid(),
            filters=self.location_filters(),
            tags=tuple(self.tags),
            webhook_url=self.webhook_url,
            env_vars=tuple((e.key, e.value) for e in self.env_vars),
        )


class SelectorBody(Body):
    tag: StrictStr = Field(min_length=1, max_length=20)
    tag_only: StrictBool = False
    env: dict[str, Any] | None = None


class SessionBody(_Placed):
    deployment_request_id: StrictStr | None = None
    selectors: list[SelectorBody] = []

    def spec(self) -> SessionSpec:
        return SessionSpec(
            app_name=self.app_name,
            version_name=self.version_name,
            ip_list=tuple(self.ip_list),
            geo_ip_list=self.geo(),
            deployment_request_id=self.deployment_request_id,
            location=self.centroid(),
            filters=self.location_filters(),
            selectors=tuple(Selector(s.tag, s.tag_only) for s in self.selectors),
            webhook_url=self.webhook_url,
        )


class UsersBody(Body):
    ip_list: list[StrictStr]


class TelemetryBody(Body):
    deployments: list[StrictStr]
    ips: list[StrictStr]
    webhook_url: StrictStr | None = None


class AddressesBody(Body):
    addresses: list[StrictStr] = Field(max_length=MAX_LOOKUP_ADDRESSES)


class BulkStopBody(Body):
    filters: list[FilterBody]

    def specs(self) -> list[LocationFilter]:
        return [f.spec() for f in self.filters]


class AppBody(Body):
    name: StrictStr = Field(min_length=1, max_length=64)
    is_active: StrictBool
    image: StrictStr
    is_telemetry_agent_active: StrictBool = False


class AppPatchBody(Body):
    name: StrictStr | None = Field(None, min_length=3, max_length=64)
    is_active: StrictBool | None = None
    image: StrictStr | None = None
    is_telemetry_agent_active: StrictBool | None = None


class VersionBody(Body):
    """Required fields of `AppVersionPayload`; the whole payload is stored as sent."""

    name: StrictStr = Field(min_length=1, max_length=64)
    docker_repository: StrictStr
    docker_image: StrictStr
    docker_tag: StrictStr
    req_cpu: int = Field(ge=100)
    req_memory: int = Field(ge=100)
    max_duration: int | None = None
    time_to_deploy: int | None = Field(None, ge=15)
    session_config: dict[str, Any] | None = None


class VersionPatchBody(Body):
    name: StrictStr | None = Field(None, min_length=1, max_length=64)
    req_cpu: int | None = Field(None, ge=100)
    req_memory: int | None = Field(None, ge=100)
    max_duration: int | None = None
    time_to_deploy: int | None = Field(None, ge=15)
    session_config: dict[str, Any] | None = None


class JoinableBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    is_joinable_by_session: StrictBool


async def read_json(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        raise BadRequest("body: a JSON object is required")
    try:
        return json.loads(raw)
    except ValueError:
        raise BadRequest("body: not valid JSON") from None


def parse(model: type[M], data: Any) -> M:
    """Validate `data`; BadRequest names the first offending field."""
    if not isinstance(data, dict):
        raise BadRequest("body: expected a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise BadRequest(f"{where}: {first['msg']}") from None


async def body_of(request: Request, model: type[M]) -> M:
    return parse(model, await read_json(request))
