"""Callback bodies -> normalised reports. Pure: no I/O, never raises anything but `FieldError`.

Strict only where a callback is useless without it: the subject's id (`request_id`, `session_id`,
`retrieval_key`) must be a short printable string, else 422 naming the field. Everything else is
lenient, as the platform's own examples disagree on types (codema-api.md §0.6, §4):
- `sockets` / `sockets_usage`: numbers or numeric strings; missing, null, negative, fractional,
  out-of-range or non-numeric values are *unknown* (None, never 0) and noted for the log;
  usage above sockets is clamped to sockets and noted; sockets 0 is a valid capacity.
- a status string of any case, with or without the `Status.` prefix; unknown ones are kept raw.
- ports, location and tags are normalised like the platform client's (codema.schemas), and a
  malformed one is dropped, not fatal.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from codema.schemas import WireLocation, lenient_bool, status_name
from fleet.models import DeploymentLocation, SessionState, StatusReport, parse_count
from fleet.store.session_reports import SessionReport

MAX_ID_CHARS = 128
MAX_STATUS_CHARS = 64
MAX_SOCKETS = 1_000_000  # far above any real deployment; larger numbers are garbage, not capacity


class FieldError(Exception):
    """A field the callback cannot do without is missing or unusable (422 naming it)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem

    @property
    def missing(self) -> bool:
        return self.problem == "field required"


class CountNote(enum.StrEnum):
    """Why a socket count was not taken as given."""

    MISSING = "missing"
    NULL = "null"
    INVALID = "invalid"
    CLAMPED = "clamped"


@dataclass(frozen=True)
class ParsedDeployment:
    report: StatusReport
    usage_note: CountNote | None = None
    sockets_note: CountNote | None = None
    raw_usage: str = ""  # what the platform sent, for the log line when it was not usable


@dataclass(frozen=True)
class ParsedSession:
    report: SessionReport
    status_known: bool  # a status we understand (pending ones included), or none at all
    deployment: ParsedDeployment | None
    deployment_problem: str = ""  # why an embedded deployment object was ignored


@dataclass(frozen=True)
class ParsedTelemetry:
    retrieval_key: str
    scores: tuple[str, ...]
    partial: bool
    skipped: int  # score entries without a usable request_id


# --- fields -------------------------------------------------------------------------------------
def _valid_id(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    text = value.strip()
    # Every whitespace character but the space is unprintable, so this also refuses all of them.
    if not text or len(text) > MAX_ID_CHARS or not text.isprintable() or " " in text:
        return None
    return text


def required_id(body: Mapping[str, Any], field: str) -> str:
    if body.get(field) is None:
        raise FieldError(field, "field required")
    value = _valid_id(body[field])
    if value is None:
        raise FieldError(field, f"must be a non-empty string of at most {MAX_ID_CHARS} printable characters")
    return value


def status_field(body: Mapping[str, Any], field: str) -> str | None:
    raw = body.get(field)
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise FieldError(field, "must be a string")
    text = raw.strip()
    if len(text) > MAX_STATUS_CHARS or not text.isprintable():
        raise FieldError(field, f"must be at most {MAX_STATUS_CHARS} printable characters")
    return text or None


def count_field(body: Mapping[str, Any], field: str) -> tuple[int | None, CountNote | None]:
    if field not in body:
        return None, CountNote.MISSING
    if body[field] is None:
        return None, CountNote.NULL
    value = parse_count(body[field])
    if value is None or value > MAX_SOCKETS:
        return None, CountNote.INVALID
    return value, None


def _text(body: Mapping[str, Any], field: str) -> str:
    value = body.get(field)
    return value.strip() if isinstance(value, str) else ""


def _flag(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return value is True or (isinstance(value, int) and value == 1)


def _ports(value: object) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        return None
    ports: dict[str, Any] = {}
    for name, raw in value.items():
        port = _port(raw)
        if port is not None:  # a malformed port is dropped, the others kept
            ports[str(name)] = port
    return ports


_PORT_COUNTS = ("external", "internal")


def _port(raw: object) -> dict[str, Any] | None:
    """One port as `codema.schemas.PortMapping` normalises it (validated, then dumped without
    defaults), written out: every deployment callback carries ports, and pydantic's validate and
    dump was the largest part of parsing one. A property test holds it equal to the model."""
    if not isinstance(raw, dict):
        return None
    out: dict[str, Any] = {}
    for field in _PORT_COUNTS:
        count = parse_count(raw.get(field))
        if count is not None:
            out[field] = count
    for field in ("protocol", "name"):
        _put_text(out, field, raw.get(field))
    flag = raw.get("tls_upgrade")
    if flag is not None and lenient_bool(flag):
        out["tls_upgrade"] = True
    _put_text(out, "link", raw.get("link"))
    proxy = parse_count(raw.get("proxy"))
    if proxy is not None:
        out["proxy"] = proxy
    return out


def _put_text(out: dict[str, Any], field: str, value: object) -> None:
    if value is not None:
        text = str(value)
        if text:
            out[field] = text


def _location(value: object) -> DeploymentLocation | None:
    if not isinstance(value, dict):
        return None
    types = tuple(map(type, value.values()))
    if _CACHEABLE.issuperset(types):  # a fleet runs in a few dozen places: each parsed once
        return _location_of(tuple(value.items()), types)
    return _location_of_dict(value)


_CACHEABLE = frozenset({str, int, float, bool, type(None)})  # hashable JSON values


@functools.lru_cache(maxsize=1024)
def _location_of(fields: tuple[tuple[str, Any], ...], types: tuple[type, ...]) -> DeploymentLocation | None:
    # The types are part of the key: 1 == 1.0 == True, but "1", "1.0" and no coordinate differ.
    return _location_of_dict(dict(fields))  # DeploymentLocation is frozen: safe to share


def _location_of_dict(value: dict[str, Any]) -> DeploymentLocation | None:
    try:
        return WireLocation.model_validate(value).to_kernel()
    except ValidationError:
        return None


def _tags(value: object) -> tuple[str, ...] | None:
    if not isinstance(value, list):
        return None
    return tuple(t for t in value if isinstance(t, str))


# --- bodies ---------------------------------------------------------------------------------------
def deployment_body(body: Mapping[str, Any], status_key: str = "current_status") -> ParsedDeployment:
    """The `Status` shape (deployment webhook), or with status_key="status" the `Deployment`
    shape embedded in a session callback."""
    request_id = required_id(body, "request_id")
    status_raw = status_field(body, status_key)
    sockets, sockets_note = count_field(body, "sockets")
    usage, usage_note = count_field(body, "sockets_usage")
    if usage is not None and sockets is not None and usage > sockets:
        usage, usage_note = sockets, CountNote.CLAMPED
    report = StatusReport(
        request_id=request_id,
        status_raw=status_raw,
        sockets=sockets,
        usage=usage,
        app=_text(body, "app_name"),
        version=_text(body, "app_version"),
        fqdn=_text(body, "fqdn"),
        public_ip=_text(body, "public_ip"),
        ports=_ports(body.get("ports")),
        location=_location(body.get("location")),
        tags=_tags(body.get("tags")),
        error_detail=_text(body, "error_detail"),
        source="webhook",
    )
    raw_usage = "" if usage_note is None else repr(body.get("sockets_usage"))[:40]
    return ParsedDeployment(report, usage_note, sockets_note, raw_usage)


_SESSION_STATES = {
    "READY": SessionState.LINKED,
    "LINKED": SessionState.LINKED,
    "UNPROCESSABLE": SessionState.UNPROCESSABLE,
    "ERROR": SessionState.ERROR,
    "TERMINATING": SessionState.TERMINATING,
    "TERMINATED": SessionState.TERMINATING,
}
# The platform's pending statuses: known, but they change nothing of ours.
_SESSION_PENDING = frozenset({"INITIALIZING", "SEEKING", "SEEKED", "SCANNING", "DEPLOYING", "WAITING"})


def session_state(status_raw: str | None, body: Mapping[str, Any]) -> tuple[SessionState | None, bool]:
    """(state, known). Without a status, the `linked` and `ready` flags still say READY."""
    if status_raw is None:
        linked = _flag(body.get("linked")) and _flag(body.get("ready"))
        return (SessionState.LINKED if linked else None), True
    name = status_name(status_raw)
    if name in _SESSION_STATES:
        return _SESSION_STATES[name], True
    return None, name in _SESSION_PENDING


def session_body(body: Mapping[str, Any], now: float) -> ParsedSession:
    """The `SessionGet` shape: the session webhook's body."""
    platform_id = required_id(body, "session_id")
    status_raw = status_field(body, "status")
    state, known = session_state(status_raw, body)
    deployment: ParsedDeployment | None = None
    problem = ""
    nested = body.get("deployment")
    if isinstance(nested, dict):
        try:
            deployment = deployment_body(nested, status_key="status")
        except FieldError as err:  # the session's own fact still counts
            problem = f"deployment.{err}"
    elif nested is not None:
        problem = "deployment: not an object"
    linked_to = (
        deployment.report.request_id if deployment else (_valid_id(body.get("deployment_request_id")) or "")
    )
    error = body.get("error")
    report = SessionReport(
        platform_session_id=platform_id,
        state=state,
        status_raw=status_raw or "",
        error=error.strip()[:500] if isinstance(error, str) else "",
        deployment_request_id=linked_to,
        received_at=now,
    )
    return ParsedSession(report, known, deployment, problem)


def telemetry_body(body: Mapping[str, Any]) -> ParsedTelemetry:
    """`{"retrieval_key", "scores": [{"request_id"}...], "partial_result"}`, best first."""
    key = required_id(body, "retrieval_key")
    raw_scores = body.get("scores")
    if raw_scores is None:
        raw_scores = []
    if not isinstance(raw_scores, list):
        raise FieldError("scores", "must be a list")
    scores: dict[str, None] = {}  # ordered and de-duplicated: the first position counts
    skipped = 0
    for entry in raw_scores:
        rid = _valid_id(entry.get("request_id") if isinstance(entry, dict) else entry)
        if rid is None:
            skipped += 1
        else:
            scores.setdefault(rid)
    return ParsedTelemetry(key, tuple(scores), _flag(body.get("partial_result")), skipped)
