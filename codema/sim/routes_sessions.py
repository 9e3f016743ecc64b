"""Session endpoints of the simulated platform (codema-api.md §1.2)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from codema.sim import views
from codema.sim.bodies import BulkStopBody, SessionBody, UsersBody, body_of
from codema.sim.records import SessionRecord
from codema.sim.routes_deployments import page_args
from codema.sim.runtime import SimHost
from codema.sim.world import World


def routes(host: SimHost) -> list[Route]:
    def world() -> World:  # looked up per call: a reset replaces the host's world
        return host.world

    def users(s: SessionRecord) -> Response:
        return JSONResponse({"session_users": [views.session_user(u) for u in s.users]})

    async def create(request: Request) -> Response:
        s = world().create_session((await body_of(request, SessionBody)).spec())
        return JSONResponse(views.session_request(s))

    async def get(request: Request) -> Response:
        s = world().session(request.path_params["session_id"])
        return JSONResponse(world().session_body(s))

    async def delete(request: Request) -> Response:
        s = world().delete_session(request.path_params["session_id"])
        body = {"message": f"Session {s.session_id} deleted", "session_id": s.session_id}
        if s.custom_id:
            body["custom_id"] = s.custom_id
        return JSONResponse(body)

    async def session_users(request: Request) -> Response:
        sid = request.path_params["session_id"]
        if request.method == "GET":
            return users(world().session(sid))
        ips = (await body_of(request, UsersBody)).ip_list
        if request.method == "PUT":
            return users(world().add_users(sid, ips))
        return users(world().remove_users(sid, ips))

    async def list_sessions(request: Request) -> Response:
        page, limit = page_args(request)
        items = world().list_sessions()
        chunk, pagination = views.paginate(items, page, limit)
        return JSONResponse(
            {
                "data": [views.session_context(s) for s in chunk],
                "total_count": len(items),
                "pagination": pagination,
            }
        )

    async def bulk_stop(request: Request) -> Response:
        stopped = world().bulk_stop_sessions((await body_of(request, BulkStopBody)).specs())
        return JSONResponse({"processable": [{"session_id": sid} for sid in stopped]})

    ep = host.endpoint
    return [
        Route("/v1/session", ep("session_create", create), methods=["POST"]),
        Route("/v1/session/{session_id}", ep("session_get", get), methods=["GET"]),
        Route("/v1/session/{session_id}", ep("session_delete", delete), methods=["DELETE"]),
        Route(
            "/v1/session/{session_id}/users",
            ep("session_users", session_users),
            methods=["GET", "PUT", "DELETE"],
        ),
        Route("/v1/sessions", ep("sessions", list_sessions), methods=["GET"]),
        Route("/v1/sessions/bulk-stop", ep("sessions_bulk_stop", bulk_stop), methods=["POST"]),
    ]
