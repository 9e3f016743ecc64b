"""Bases and lenient field types shared by every wire model."""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from fleet.models import DeploymentLocation, SessionKind, StatusReport, normalise_kind, parse_count

INTENT_TAG_PREFIX = "intent:"


def intent_tag(intent: str) -> str:
    """The deployment tag that carries a create intent, so the platform's list can find it."""
    return INTENT_TAG_PREFIX + intent


def status_name(raw: str) -> str:
    """`Status.READY`, `ready` -> READY: session statuses are matched on the upper-case suffix."""
    return raw.strip().rsplit(".", 1)[-1].upper()


def _lenient_float(raw: object) -> float | None:
    if isinstance(raw, bool) or raw is None:
        return None
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def lenient_bool(raw: object) -> object:
    if isinstance(raw, str):
        return raw.strip().lower() in ("true", "1", "yes")
    return bool(raw) if raw is not None else False


# Counts: an int or a numeric string; anything else is unknown (None), never 0.
Count = Annotated[int | None, BeforeValidator(parse_count)]
Float = Annotated[float | None, BeforeValidator(_lenient_float)]
Flag = Annotated[bool, BeforeValidator(lenient_bool)]
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


class GeoIp(Sent):
    ip: str
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)


class LocationPoint(Sent):
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)


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

    def to_kernel(self) -> DeploymentLocation:
        return DeploymentLocation(**self.model_dump())


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


class DeploymentFacts(Received):
    """What status, list items and a session's deployment all say about a deployment."""

    request_id: str = Field(min_length=1)
    fqdn: Text = ""
    public_ip: Text = ""
    ports: dict[str, PortMapping] = Field(default_factory=dict)
    location: WireLocation | None = None
    tags: list[str] | None = None  # None: said nothing about tags (the store keeps its own)
    sockets: Count = None
    sockets_usage: Count = None

    def _report(self, status_raw: str | None, source: str, **extra: Any) -> StatusReport:
        return StatusReport(
            request_id=self.request_id,
            status_raw=status_raw,
            sockets=self.sockets,
            usage=self.sockets_usage,
            fqdn=self.fqdn,
            public_ip=self.public_ip,
            ports={name: port.model_dump(exclude_defaults=True) for name, port in self.ports.items()},
            location=self.location.to_kernel() if self.location is not None else None,
            tags=tuple(self.tags) if self.tags is not None else None,
            source=source,
            **extra,
        )
