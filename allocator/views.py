"""The platform's session shapes (codema-api.md §1.2), built from our records.

`session_id` is ours; the platform's id is not shown (clients never need it). Extra fields beyond
the platform's shapes are documented in the README (allocator section).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fleet.models import Deployment, SessionRecord, SessionState, Status

KIND_WIRE = {"Seat": "SEATS", "Match": "MATCH", "Default": "DEFAULT"}


def fmt_time(ts: float) -> str:
    """`2024-05-26 12:00:45.831041`: UTC, space-separated, microseconds (codema-api.md §0.6)."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def linked(r: SessionRecord) -> bool:
    return r.state is SessionState.LINKED


def session_request(r: SessionRecord) -> dict[str, Any]:
    """`POST /v1/session` answer (`SessionRequest`) plus `status` and `linked`."""
    body: dict[str, Any] = {
        "session_id": r.session_id,
        "app": r.app,
        "version": r.version,
        "selectors": r.selectors,
        "status": r.state.wire,
        "linked": linked(r),
    }
    if r.custom_id:
        body["custom_id"] = r.custom_id
    if r.deployment_request_id or r.requested_deployment:
        body["deployment_request_id"] = r.deployment_request_id or r.requested_deployment
    if r.webhook_url:
        body["webhook_url"] = r.webhook_url
    if r.error:
        body["error"] = r.error
    return body


def deployment_view(d: Deployment) -> dict[str, Any]:
    """The platform's `Deployment` model, as in a session's `deployment`."""
    body: dict[str, Any] = {
        "request_id": d.request_id,
        "public_ip": d.public_ip,
        "status": d.status.wire if d.status is not None else d.status_raw,
        "ready": d.status is Status.READY,
        "whitelisting_active": False,
        "fqdn": d.fqdn,
        "ports": d.ports,
        "tags": list(d.tags),
    }
    if d.location is not None:
        body["location"] = d.location.model_dump(exclude={"tags"})
    if d.sockets is not None:
        body["sockets"] = d.sockets
    if d.usage is not None:
        body["sockets_usage"] = d.usage
    return body


def users(r: SessionRecord) -> list[dict[str, Any]]:
    return [{"ip": ip} for ip in r.ips] + [dict(g) for g in r.geo]


def session_get(r: SessionRecord, d: Deployment | None, now: float) -> dict[str, Any]:
    """`GET /v1/session/{id}` (`SessionGet`), also the body POSTed to the client's webhook_url."""
    on = linked(r) and d is not None
    people = users(r)
    body: dict[str, Any] = {
        "session_id": r.session_id,
        "status": r.state.wire,
        "ready": on and d is not None and d.status is Status.READY,
        "linked": on,
        "kind": KIND_WIRE.get(r.kind, r.kind.upper()),
        "user_count": len(people),
        "app_version": 0,  # the platform's internal version number; we only know the name
        "create_time": fmt_time(r.create_time),
        "elapsed": max(0, int(now - r.create_time)),
        "session_users": people,
        "session_ips": people,
        "app": r.app,
        "version": r.version,
        "sockets": r.size,
        "selectors": r.selectors,
    }
    if r.custom_id:
        body["custom_id"] = r.custom_id
    if r.error:
        body["error"] = r.error
    if on and d is not None:
        body["deployment"] = deployment_view(d)
    if r.state is SessionState.WAITING and r.deadline is not None:
        body["wait_deadline"] = fmt_time(r.deadline)
    if r.webhook_url:
        body["webhook_url"] = r.webhook_url
    return body


def session_context(r: SessionRecord) -> dict[str, Any]:
    """An element of `GET /v1/sessions` `data` (`SessionContext`)."""
    body: dict[str, Any] = {
        "session_id": r.session_id,
        "status": r.state.wire,
        "ready": linked(r),
        "linked": linked(r),
        "kind": KIND_WIRE.get(r.kind, r.kind.upper()),
        "user_count": len(r.ips) + len(r.geo),
    }
    if r.custom_id:
        body["custom_id"] = r.custom_id
    if r.deployment_request_id:
        body["deployment_request_id"] = r.deployment_request_id
    if r.webhook_url:
        body["webhook_url"] = r.webhook_url
    return body
