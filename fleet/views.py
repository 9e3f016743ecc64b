"""Operations routes and the service's own view of deployments.

`GET /v1/deployments` answers the platform's list shape (`data`, `total_count`, `pagination`);
`GET /v1/deployments/{request_id}` the platform's status shape plus what only we know
(reserved sockets, fleet, policy, draining, when we last heard of it).
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from fleet.bootstrap import Services
from fleet.http import HttpError, pagination, query_int
from fleet.models import Deployment


def _ts(epoch: float | None) -> str | None:
    if not epoch:
        return None
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch)) + f".{int((epoch % 1) * 1e6):06d}"


def status_view(d: Deployment, now: float) -> dict[str, Any]:
    """The platform's Status shape, plus our own fields."""
    location = d.location.model_dump(exclude={"tags"}) if d.location else None
    return {
        "request_id": d.request_id,
        "fqdn": d.fqdn,
        "app_name": d.app,
        "app_version": d.version,
        "current_status": d.status.wire if d.status is not None else d.status_raw,
        "running": d.status is not None and d.status.name == "READY",
        "whitelisting_active": False,
        "start_time": _ts(d.ready_at or d.created_at),
        "elapsed_time": int(now - d.ready_at) if d.ready_at else 0,
        "error": d.status is not None and d.status.name == "ERROR",
        "error_detail": d.error_detail or None,
        "ports": d.ports,
        "public_ip": d.public_ip,
        "location": location,
        "tags": d.tags,
        "sockets": d.sockets,
        "sockets_usage": d.usage,
        # ours
        "status_raw": d.status_raw,
        "reserved_sockets": d.reserved,
        "session_sockets": d.committed,
        "sessions": d.sessions,
        "free_sockets": d.free_sockets,
        "fleet": d.fleet or None,
        "policy": d.policy or None,
        "intent": d.intent or None,
        "draining": d.draining,
        "stop_requested_at": _ts(d.stop_requested_at),
        "empty_since": _ts(d.empty_since),
        "last_heard": _ts(d.last_heard),
    }


def list_item_view(d: Deployment, now: float) -> dict[str, Any]:
    """The platform's DeploymentListData shape, plus our own fields."""
    view = status_view(d, now)
    view["ready"] = view["running"]
    view["status"] = view["current_status"]
    view["is_joinable_by_session"] = bool(view["running"]) and not d.draining
    return view


def build_routes(services: Services) -> list[BaseRoute]:
    store = services.store

    async def list_deployments(request: Request) -> Response:
        page = query_int(request, "page", 1, maximum=1_000_000)
        limit = query_int(request, "limit", 100, maximum=1000)
        now = services.clock()
        ids = sorted(await store.deployments.live_ids())
        total = len(ids)
        chunk = ids[(page - 1) * limit : page * limit]
        items = await store.deployments.get_many(chunk, now)
        return JSONResponse(
            {
                "data": [list_item_view(d, now) for d in items],
                "total_count": total,
                "pagination": pagination(page, limit, total),
            }
        )

    async def get_deployment(request: Request) -> Response:
        rid = request.path_params["request_id"]
        d = await store.deployments.get(rid, services.clock())
        if d is None:
            raise HttpError(404, f"deployment {rid} is not known")
        return JSONResponse(status_view(d, services.clock()))

    return [
        Route("/v1/deployments", list_deployments, methods=["GET"]),
        Route("/v1/deployments/{request_id}", get_deployment, methods=["GET"]),
    ]
