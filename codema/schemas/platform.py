"""Active-deployment telemetry, locations and IP lookup."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field, model_validator

from codema.schemas.base import Flag, Float, Received, Sent, Text


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
    country_name: Text = ""  # the platform's own spelling, as Location policies filter on it
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
            "country_name": country.get("name"),
            "continent": continent.get("name") or continent.get("code"),
        }


class IpsLookupRequest(Sent):
    addresses: list[str] = Field(min_length=1, max_length=20)
