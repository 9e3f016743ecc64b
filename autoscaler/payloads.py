"""The Fleet API's request payloads (the seed's shapes plus our optional tuning), validated strictly
and shared by the HTTP routes and the YAML config: the same input is refused the same way.

Every error names its field: `threshold: Input should be less than or equal to 1`. Types are
strict (JSON `true` is not the integer 1, `"3"` is not a number); cross-field rules (`maximum >=
minimum`, `data` shaped for `type`) are checked after the fields themselves.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
)

from fleet.models import Fleet, Policy, PolicyType, validate_policy_data
from fleet.store.keys import SEP

NAME_MAX = 64


def _name(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    if any(c in value for c in ("/", SEP)) or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("must not contain '/' or control characters")
    return value


Name = Annotated[str, Field(min_length=1, max_length=NAME_MAX, strict=True), AfterValidator(_name)]
Seconds = Annotated[StrictFloat, Field(ge=0, allow_inf_nan=False)]


class FieldErrors(Exception):
    """Validation failed; `errors` lists {"field", "error"} for every bad field."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['error']}" for e in errors))
        self.errors = errors


def _errors(err: ValidationError, prefix: str = "") -> list[dict[str, str]]:
    out = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        out.append({"field": f"{prefix}{loc}" if loc else prefix.rstrip(".") or "body", "error": e["msg"]})
    return out


class _Payload(BaseModel):
    # Timestamps a client copies back from a GET are accepted and ignored.
    model_config = ConfigDict(extra="forbid")

    create_time: Any = None
    last_updated: Any = None


class FleetCreate(_Payload):
    name: Name
    enabled: StrictBool = False
    dry_run: StrictBool = False


class FleetPatch(_Payload):
    name: Name | None = None
    enabled: StrictBool | None = None
    dry_run: StrictBool | None = None


class PolicyFields(_Payload):
    """Every field optional: PATCH uses it as is, create requires the seed's fields."""

    name: Name | None = None
    enabled: StrictBool | None = None
    type: PolicyType | None = None
    minimum: Annotated[StrictInt, Field(ge=1)] | None = None
    maximum: Annotated[StrictInt, Field(ge=1)] | None = None
    threshold: Annotated[StrictFloat, Field(ge=0.1, le=1.0, allow_inf_nan=False)] | None = None
    data: dict[str, Any] | None = None
    idle_s: Seconds | None = None
    cooldown_s: Seconds | None = None
    hysteresis: Annotated[StrictFloat, Field(ge=0, le=0.9, allow_inf_nan=False)] | None = None
    dry_run: StrictBool | None = None


REQUIRED_ON_CREATE = ("name", "enabled", "type", "minimum", "maximum", "threshold", "data")
TUNING = ("idle_s", "cooldown_s", "hysteresis", "dry_run")


def parse_fleet_create(body: Any) -> FleetCreate:
    try:
        return FleetCreate.model_validate(body)
    except ValidationError as err:
        raise FieldErrors(_errors(err)) from err


def parse_fleet_patch(body: Any) -> FleetPatch:
    try:
        return FleetPatch.model_validate(body)
    except ValidationError as err:
        raise FieldErrors(_errors(err)) from err


def _fields(body: Any) -> PolicyFields:
    try:
        return PolicyFields.model_validate(body)
    except ValidationError as err:
        raise FieldErrors(_errors(err)) from err


def _build(values: dict[str, Any]) -> Policy:
    """Cross-field rules on a complete set of fields, then the kernel model."""
    errors: list[dict[str, str]] = []
    if values["maximum"] < values["minimum"]:
        errors.append({"field": "maximum", "error": "must be greater than or equal to minimum"})
    try:
        values["data"] = validate_policy_data(values["type"], values["data"])
    except ValidationError as err:
        errors.extend(_errors(err, "data."))
    except ValueError as err:
        errors.append({"field": "data", "error": str(err)})
    if errors:
        raise FieldErrors(errors)
    try:
        return Policy.model_validate(values)
    except ValidationError as err:  # pragma: no cover - the checks above mirror the model's
        raise FieldErrors(_errors(err)) from err


def parse_policy_create(body: Any) -> Policy:
    fields = _fields(body)
    given = fields.model_dump(exclude_none=True, exclude={"create_time", "last_updated"})
    missing = [{"field": f, "error": "Field required"} for f in REQUIRED_ON_CREATE if f not in given]
    if missing:
        raise FieldErrors(missing)
    return _build(given)


def parse_policy_patch(current: Policy, body: Any) -> Policy:
    """The current policy with the patch applied, validated as a whole; the current one is kept
    unchanged when anything is wrong."""
    fields = _fields(body)
    patch = fields.model_dump(exclude_unset=True, exclude={"create_time", "last_updated"})
    nulls = [
        {"field": k, "error": "must not be null"} for k, v in patch.items() if v is None and k != "idle_s"
    ]
    if nulls:
        raise FieldErrors(nulls)
    values = current.model_dump(exclude={"create_time", "last_updated"})
    values.update(patch)
    values["create_time"], values["last_updated"] = current.create_time, current.last_updated
    return _build(values)


def fleet_view(fleet: Fleet) -> dict[str, Any]:
    return {
        "name": fleet.name,
        "enabled": fleet.enabled,
        "create_time": fleet.create_time,
        "last_updated": fleet.last_updated,
        "dry_run": fleet.dry_run,
    }


def policy_view(policy: Policy) -> dict[str, Any]:
    return {
        "name": policy.name,
        "enabled": policy.enabled,
        "type": policy.type,
        "minimum": policy.minimum,
        "maximum": policy.maximum,
        "threshold": policy.threshold,
        "data": policy.data,
        "create_time": policy.create_time,
        "last_updated": policy.last_updated,
        "idle_s": policy.idle_s,
        "cooldown_s": policy.cooldown_s,
        "hysteresis": policy.hysteresis,
        "dry_run": policy.dry_run,
    }
