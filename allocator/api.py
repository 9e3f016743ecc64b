"""Session API routes: the platform's paths and payloads (codema-api.md §1.2), our session ids.

Additions, all optional (README, allocator section): `POST /v1/session?wait=SECONDS` holds the
answer until the session is linked or unprocessable (at most `FLEET_SESSION_WAIT_S`); answers
carry `status`/`linked` on create and `app`, `version`, `sockets`, `selectors` on read.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any, cast

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from allocator.ips import BadAddress
from allocator.lifecycle import Sessions
from allocator.linker import Linker
from allocator.schemas import BadField, SessionCreateIn, UsersIn
from allocator.service import Allocator
from allocator.views import session_context, session_get, session_request, users
from fleet.bootstrap import Services
from fleet.http import HttpError, pagination, parse_model, query_int, read_json_object

MAX_PAGE_LIMIT = 100
DEFAULT_PAGE_LIMIT = 10


def wait_param(request: Request, cap_s: float) -> float:
    raw = request.query_params.get("wait")
    if raw is None or raw == "":
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        raise HttpError(422, "wait: must be a number of seconds") from None
    if not math.isfinite(value) or not 0 <= value <= cap_s:
        raise HttpError(422, f"wait: must be between 0 and {cap_s:g} seconds")
    return value


def _hooks(services: Services, name: str) -> list[Callable[[], Awaitable[None]]]:
    return cast(list[Callable[[], Awaitable[None]]], services.extras.setdefault(name, []))


def build_routes(services: Services) -> list[BaseRoute]:
    allocator = Allocator(services)
    sessions = Sessions(allocator)
    linker = Linker(allocator)
    services.extras["allocator"] = allocator
    services.extras["linker"] = linker

    async def stop() -> None:
        await linker.stop()
        await allocator.aclose()

    _hooks(services, "on_start").append(linker.start)
    _hooks(services, "on_stop").append(stop)
    cap_s = services.settings.session_wait_s

    async def create(request: Request) -> Response:
        wait_s = wait_param(request, cap_s)
        body = parse_model(SessionCreateIn, await read_json_object(request))
        try:
            record = await sessions.create(body, wait_s)
        except (BadAddress, BadField) as err:
            raise HttpError(422, str(err)) from None
        return JSONResponse(session_request(record))

    async def get_one(request: Request) -> Response:
        record, deployment = await sessions.get(request.path_params["session_id"])
        return JSONResponse(session_get(record, deployment, services.clock()))

    async def delete_one(request: Request) -> Response:
        sid = request.path_params["session_id"]
        record = await sessions.delete(sid)
        body: dict[str, Any] = {"message": f"Session {sid} will be deleted", "session_id": sid}
        if record.custom_id:
            body["custom_id"] = record.custom_id
        return JSONResponse(body)

    async def session_users(request: Request) -> Response:
        sid = request.path_params["session_id"]
        if request.method == "GET":
            record, _ = await sessions.get(sid)
            return JSONResponse({"session_users": users(record)})
        change = parse_model(UsersIn, await read_json_object(request))
        try:
            ips = change.checked_ips()
        except BadAddress as err:
            raise HttpError(422, str(err)) from None
        if request.method == "PUT":
            record = await sessions.add_users(sid, ips)
        else:
            record = await sessions.remove_users(sid, ips)
        return JSONResponse({"session_users": users(record)})

    async def list_all(request: Request) -> Response:
        page = query_int(request, "page", 1, 1, 1_000_000)
        limit = query_int(request, "limit", DEFAULT_PAGE_LIMIT, 1, MAX_PAGE_LIMIT)
        records, total = await services.store.sessions.page((page - 1) * limit, limit)
        return JSONResponse(
            {
                "data": [session_context(r) for r in records],
                "total_count": total,
                "pagination": pagination(page, limit, total),
            }
        )

    return [
        Route("/v1/session", create, methods=["POST"]),
        Route("/v1/sessions", list_all, methods=["GET"]),
        Route("/v1/session/{session_id}", get_one, methods=["GET"]),
        Route("/v1/session/{session_id}", delete_one, methods=["DELETE"]),
        Route("/v1/session/{session_id}/users", session_users, methods=["GET", "PUT", "DELETE"]),
    ]
