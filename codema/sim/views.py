"""The platform's JSON shapes built from the world's records (codema-api.md §1, the Swagger spec)."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import Any, TypeVar

from codema.sim.records import (
    AppRecord,
    DeploymentRecord,
    SessionRecord,
    SessionUser,
    Status,
    TelemetryResult,
    VersionRecord,
)

T = TypeVar("T")
DEFAULT_LIMIT = 10
MAX_LIMIT = 100


def fmt_time(ts: float) -> str:
    """`2024-05-26 12:00:45.831041`: UTC, space-separated, microseconds (codema-api.md §0.6)."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def application(app: AppRecord) -> dict[str, Any]:
    return {
        "name": app.name,
        "is_active": app.is_active,
        "is_telemetry_agent_active": app.is_telemetry_agent_active,
        "image": app.image,
        "create_time": fmt_time(app.created),
        "last_updated": fmt_time(app.updated),
    }


def version(v: VersionRecord) -> dict[str, Any]:
    body = dict(v.payload)
    if "private_token" in body:
        body["private_token"] = "********"  # the platform never echoes registry credentials
    return body


def _counts(d: DeploymentRecord) -> dict[str, Any]:
    # Non-session (Default) versions have no sockets; session ones report integers, 0 while starting.
    return {} if d.sockets is None else {"sockets": d.sockets, "sockets_usage": d.used}


def status(d: DeploymentRecord, now: float, sessions: Sequence[SessionRecord] = ()) -> dict[str, Any]:
    """`GET /v1/status/{request_id}`, also the deployment webhook's body."""
    end = d.ended_at if d.ended_at is not None else now
    body: dict[str, Any] = {
        "request_id": d.request_id,
        "fqdn": d.fqdn,
        "app_name": d.app,
        "app_version": d.version,
        "current_status": d.status.wire,
        "running": d.status is Status.READY,
        "whitelisting_active": False,
        "start_time": fmt_time(d.created),
        "elapsed_time": max(0, int(end - d.created)),
        "error": d.status is Status.ERROR,
        "public_ip": d.public_ip,
        "ports": d.ports,
        "location": d.location.wire(),
        "tags": list(d.tags),
        "sessions": [session_context(s, deployment_view=True) for s in sessions],
        **_counts(d),
    }
    if d.last_status is not None:
        body["last_status"] = d.last_status.wire
    if d.ended_at is not None:
        body["removal_time"] = fmt_time(d.ended_at)
    if d.error_detail:
        body["error_detail"] = d.error_detail
    return body


def list_item(d: DeploymentRecord) -> dict[str, Any]:
    """An element of `GET /v1/deployments` `data` (plus `status`, which newer platforms send)."""
    return {
        "request_id": d.request_id,
        "fqdn": d.fqdn,
        "start_time": fmt_time(d.created),
        "ready": d.status is Status.READY,
        "public_ip": d.public_ip,
        "ports": d.ports,
        "tags": list(d.tags),
        "is_joinable_by_session": d.is_joinable,
        "status": d.status.wire,
        **_counts(d),
    }


def deployment(d: DeploymentRecord) -> dict[str, Any]:
    """The `Deployment` model: the context endpoint and a session's `deployment`."""
    return {
        "request_id": d.request_id,
        "public_ip": d.public_ip,
        "status": d.status.wire,
        "ready": d.status is Status.READY,
        "whitelisting_active": False,
        "fqdn": d.fqdn,
        "ports": d.ports,
        "location": d.location.wire(),
        "tags": list(d.tags),
        "is_joinable_by_session": d.is_joinable,
        **_counts(d),
    }


def session_user(u: SessionUser) -> dict[str, Any]:
    body: dict[str, Any] = {"ip": u.ip}
    if u.latitude is not None and u.longitude is not None:
        body.update(latitude=u.latitude, longitude=u.longitude)
    return body


def session_request(s: SessionRecord) -> dict[str, Any]:
    """`POST /v1/session` answer."""
    body: dict[str, Any] = {
        "session_id": s.session_id,
        "app": s.app,
        "version": s.version,
        "selectors": [{"tag": sel.tag, "tag_only": sel.tag_only} for sel in s.selectors],
    }
    if s.custom_id:
        body["custom_id"] = s.custom_id
    if s.deployment_id and s.linked:
        body["deployment_request_id"] = s.deployment_id
    if s.webhook_url:
        body["webhook_url"] = s.webhook_url
    return body


def session_context(s: SessionRecord, deployment_view: bool = False) -> dict[str, Any]:
    """`SessionContext` (sessions list) or, with `deployment_view`, `DeploymentSessionContext`."""
    body: dict[str, Any] = {
        "session_id": s.session_id,
        "status": s.status.wire,
        "ready": s.linked,
        "linked": s.linked,
        "kind": s.kind.wire,
        "user_count": len(s.users),
    }
    if deployment_view:
        return body
    if s.custom_id:
        body["custom_id"] = s.custom_id
    if s.deployment_id and s.linked:
        body["deployment_request_id"] = s.deployment_id
    if s.webhook_url:
        body["webhook_url"] = s.webhook_url
    return body


def session_get(s: SessionRecord, now: float, d: DeploymentRecord | None) -> dict[str, Any]:
    """`GET /v1/session/{id}`, also the session webhook's body."""
    users = [session_user(u) for u in s.users]
    body: dict[str, Any] = {
        "session_id": s.session_id,
        "status": s.status.wire,
        "ready": s.linked,
        "linked": s.linked,
        "kind": s.kind.wire,
        "user_count": len(s.users),
        "app_version": s.version_number,
        "create_time": fmt_time(s.created),
        "elapsed": max(0, int(now - s.created)),
        "session_users": users,
        "session_ips": users,
    }
    if s.custom_id:
        body["custom_id"] = s.custom_id
    if s.error:
        body["error"] = s.error
    if d is not None and s.linked:
        body["deployment"] = deployment(d)
    if s.webhook_url:
        body["webhook_url"] = s.webhook_url
    return body


def telemetry(result: TelemetryResult) -> dict[str, Any]:
    return {
        "retrieval_key": result.retrieval_key,
        "scores": [{"request_id": rid} for rid in result.ranking],
        "partial_result": result.partial,
    }


def parse_page(page: object, limit: object) -> tuple[int, int]:
    """Validated `page` (1-based) and `limit` query values; ValueError names the parameter."""
    try:
        p = int(str(page)) if page not in (None, "") else 1
    except ValueError:
        raise ValueError("page: expected an integer >= 1") from None
    try:
        n = int(str(limit)) if limit not in (None, "") else DEFAULT_LIMIT
    except ValueError:
        raise ValueError(f"limit: expected an integer in 1..{MAX_LIMIT}") from None
    if p < 1:
        raise ValueError("page: expected an integer >= 1")
    if not 1 <= n <= MAX_LIMIT:
        raise ValueError(f"limit: expected an integer in 1..{MAX_LIMIT}")
    return p, n


def paginate(items: Sequence[T], page: int, limit: int) -> tuple[list[T], dict[str, Any]]:
    """One page of `items` and the platform's `Pagination` object."""
    num_pages = max(1, math.ceil(len(items) / limit))
    chunk = list(items[(page - 1) * limit : page * limit])
    has_next, has_previous = page < num_pages, page > 1
    return chunk, {
        "number": page,
        "next_page_number": page + 1 if has_next else None,
        "previous_page_number": page - 1 if has_previous else None,
        "paginator": {"num_pages": num_pages},
        "has_next": has_next,
        "has_previous": has_previous,
    }
