"""Deployment endpoints of the simulated platform (codema-api.md §1.1)."""

from __future__ import annotations

import hmac

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from codema.sim import views
from codema.sim.bodies import BulkStopBody, DeployBody, JoinableBody, body_of
from codema.sim.records import BadRequest, Forbidden
from codema.sim.runtime import SimHost
from codema.sim.world import World


def page_args(request: Request) -> tuple[int, int]:
    try:
        return views.parse_page(request.query_params.get("page"), request.query_params.get("limit"))
    except ValueError as err:
        raise BadRequest(str(err)) from None


def container_token(request: Request) -> str:
    """The per-deployment token of the in-container calls, sent raw (a `token ` prefix is tolerated)."""
    value = request.headers.get("authorization", "")
    return value[6:] if value.startswith("token ") else value


def routes(host: SimHost) -> list[Route]:
    def world() -> World:  # looked up per call: a reset replaces the host's world
        return host.world

    async def deploy(request: Request) -> Response:
        d = world().deploy((await body_of(request, DeployBody)).spec())
        return JSONResponse(
            {
                "request_id": d.request_id,
                "request_dns": d.fqdn,
                "request_app": d.app,
                "request_version": d.version,
                "request_user_count": d.user_count,
                "city": d.location.city,
                "country": d.location.country,
                "continent": d.location.continent,
                "administrative_division": d.location.administrative_division,
                "tags": list(d.tags),
                "container_log_storage": {"enabled": False},
            }
        )

    async def status(request: Request) -> Response:
        d = world().deployment(request.path_params["request_id"])
        return JSONResponse(world().status_body(d))

    def _stop_answer(request_id: str, later: bool, summary: dict[str, object]) -> Response:
        if later:
            return JSONResponse({"message": f"{request_id} - Delete request will be processed soon"}, 202)
        return JSONResponse(
            {"message": f"Instance {request_id} will be deleted", "deployment_summary": summary}
        )

    async def stop(request: Request) -> Response:
        rid = request.path_params["request_id"]
        result = world().stop(rid)
        return _stop_answer(rid, result.accepted_later, world().status_body(result.deployment))

    async def self_stop(request: Request) -> Response:
        rid, ap = request.path_params["request_id"], request.path_params["access_point_id"]
        result = world().self_stop(rid, ap, container_token(request))
        return _stop_answer(rid, result.accepted_later, world().status_body(result.deployment))

    async def context(request: Request) -> Response:
        d = world().deployment(request.path_params["request_id"])
        token = container_token(request)
        if str(d.security_number) != request.path_params["security_number"] or not hmac.compare_digest(
            token, d.context_token
        ):
            raise Forbidden("invalid context token")
        return JSONResponse(views.deployment(d))

    async def list_deployments(request: Request) -> Response:
        page, limit = page_args(request)
        items = world().list_deployments()
        chunk, pagination = views.paginate(items, page, limit)
        return JSONResponse(
            {
                "data": [views.list_item(d) for d in chunk],
                "total_count": len(items),
                "pagination": pagination,
                "message": [],
            }
        )

    async def bulk_stop(request: Request) -> Response:
        stopped = world().bulk_stop((await body_of(request, BulkStopBody)).specs())
        return JSONResponse({"processable": [{"request_id": rid} for rid in stopped]})

    async def update(request: Request) -> Response:
        body = await body_of(request, JoinableBody)
        d = world().set_joinable(request.path_params["request_id"], body.is_joinable_by_session)
        return JSONResponse({"is_joinable_by_session": d.is_joinable})

    ep = host.endpoint
    return [
        Route("/v1/deploy", ep("deploy", deploy), methods=["POST"]),
        Route("/v1/status/{request_id}", ep("status", status), methods=["GET"]),
        Route("/v1/stop/{request_id}", ep("stop", stop), methods=["DELETE"]),
        Route("/v1/deployments", ep("deployments", list_deployments), methods=["GET"]),
        Route("/v1/deployments/bulk-stop", ep("bulk_stop", bulk_stop), methods=["POST"]),
        Route("/v1/deployments/{request_id}", ep("deployment_update", update), methods=["PATCH"]),
        Route(
            "/v1/self/stop/{request_id}/{access_point_id}",
            ep("self_stop", self_stop, account_auth=False),
            methods=["DELETE"],
        ),
        Route(
            "/v1/context/{request_id}/{security_number}",
            ep("context", context, account_auth=False),
            methods=["GET"],
        ),
    ]
