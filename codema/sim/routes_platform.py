"""Apps, app versions, telemetry, locations and IP lookup endpoints (codema-api.md §1.4-1.6, §1.8)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from codema.sim import views
from codema.sim.bodies import (
    AddressesBody,
    AppBody,
    AppPatchBody,
    TelemetryBody,
    VersionBody,
    VersionPatchBody,
    body_of,
    parse,
    read_json,
)
from codema.sim.geo import LOCATIONS, EdgeLocation, ip_version, valid_ip
from codema.sim.records import BadRequest
from codema.sim.runtime import SimHost
from codema.sim.world import World


def lookup_body(world: World, ip: str) -> dict[str, Any]:
    """`IPAddressLookupResponse` from the packaged geolocation; no `location` when unknown."""
    if not valid_ip(ip):
        raise BadRequest(f"ip: {ip!r} is not an IP address")
    body: dict[str, Any] = {"type": ip_version(ip), "ip_address": ip}
    found = world.geo.lookup(ip)
    if found is not None:
        body["location"] = {
            "continent": {"code": found.continent_code, "name": found.continent_name},
            "country": {"code": found.country_code, "name": found.country_name},
            "latitude": found.point.latitude,
            "longitude": found.point.longitude,
        }
    return body


def location_body(loc: EdgeLocation, with_tags: bool) -> dict[str, Any]:
    body = {**loc.wire(), "type": "standard"}
    if with_tags:
        body["tags"] = loc.tag_pairs()
    return body


def routes(host: SimHost) -> list[Route]:
    def world() -> World:  # looked up per call: a reset replaces the host's world
        return host.world

    async def app_create(request: Request) -> Response:
        b = await body_of(request, AppBody)
        return JSONResponse(
            views.application(world().create_app(b.name, b.is_active, b.image, b.is_telemetry_agent_active))
        )

    async def app_get(request: Request) -> Response:
        return JSONResponse(views.application(world().app(request.path_params["app_name"])))

    async def app_update(request: Request) -> Response:
        changes = (await body_of(request, AppPatchBody)).model_dump(exclude_none=True)
        return JSONResponse(views.application(world().update_app(request.path_params["app_name"], changes)))

    async def app_delete(request: Request) -> Response:
        name = request.path_params["app_name"]
        world().delete_app(name)
        return JSONResponse({"message": f"Application {name} deleted"})

    async def apps(request: Request) -> Response:
        return JSONResponse({"applications": [views.application(a) for a in world().list_apps()]})

    async def version_create(request: Request) -> Response:
        data = await read_json(request)
        parse(VersionBody, data)
        v = world().create_version(request.path_params["app_name"], data)
        return JSONResponse({"success": True, "version": views.version(v)})

    async def version_get(request: Request) -> Response:
        p = request.path_params
        return JSONResponse(views.version(world().version(p["app_name"], p["version_name"])))

    async def version_update(request: Request) -> Response:
        data = await read_json(request)
        parse(VersionPatchBody, data)
        p = request.path_params
        v = world().update_version(p["app_name"], p["version_name"], data)
        return JSONResponse({"success": True, "version": views.version(v)})

    async def version_delete(request: Request) -> Response:
        p = request.path_params
        world().delete_version(p["app_name"], p["version_name"])
        return JSONResponse({"success": True, "message": f"Version {p['version_name']} deleted"})

    async def versions(request: Request) -> Response:
        found = world().list_versions(request.path_params["app_name"])
        return JSONResponse({"versions": [views.version(v) for v in found], "total_count": len(found)})

    async def telemetry_create(request: Request) -> Response:
        b = await body_of(request, TelemetryBody)
        rec = world().request_telemetry(b.deployments, b.ips, b.webhook_url)
        return JSONResponse({"retrieval_key": rec.retrieval_key, "expire": views.fmt_time(rec.expire_at)})

    async def telemetry_get(request: Request) -> Response:
        return JSONResponse(views.telemetry(world().telemetry_result(request.path_params["retrieval_key"])))

    def available(request: Request) -> list[EdgeLocation]:
        q = request.query_params
        if q.get("app") and q.get("version"):
            world().version(q["app"], q["version"])
            return [loc for loc in LOCATIONS if not world().in_outage(loc)]
        return list(LOCATIONS)

    async def locations(request: Request) -> Response:
        with_tags = request.query_params.get("tags", "").lower() == "true"
        kind = request.query_params.get("type")
        found = [loc for loc in available(request) if kind in (None, "", "standard")]
        return JSONResponse({"locations": [location_body(loc, with_tags) for loc in found], "messages": []})

    async def beacons(request: Request) -> Response:
        found = [
            {"host": f"198.51.100.{i + 1}", "fqdn": f"b-{i + 1}.beacons.sim.codema.invalid",
             "udp_port": 32167, "tcp_port": 32561, "location": loc.wire()}
            for i, loc in enumerate(LOCATIONS)
        ]  # fmt: skip
        return JSONResponse({"locations": found, "count": len(found)})

    async def my_ip(request: Request) -> Response:
        return JSONResponse({"public_ip": request.client.host if request.client else "127.0.0.1"})

    async def ip_lookup(request: Request) -> Response:
        return JSONResponse(lookup_body(world(), request.path_params["ip"]))

    async def ips_lookup(request: Request) -> Response:
        b = await body_of(request, AddressesBody)
        return JSONResponse({"addresses": [lookup_body(world(), ip) for ip in b.addresses]})

    ep = host.endpoint
    return [
        Route("/v1/app", ep("app_create", app_create), methods=["POST"]),
        Route("/v1/app/{app_name}", ep("app_get", app_get), methods=["GET"]),
        Route("/v1/app/{app_name}", ep("app_update", app_update), methods=["PATCH"]),
        Route("/v1/app/{app_name}", ep("app_delete", app_delete), methods=["DELETE"]),
        Route("/v1/apps", ep("apps", apps), methods=["GET"]),
        Route("/v1/app/{app_name}/version", ep("version_create", version_create), methods=["POST"]),
        Route("/v1/app/{app_name}/version/{version_name}", ep("version_get", version_get), methods=["GET"]),
        Route(
            "/v1/app/{app_name}/version/{version_name}",
            ep("version_update", version_update),
            methods=["PATCH"],
        ),
        Route(
            "/v1/app/{app_name}/version/{version_name}",
            ep("version_delete", version_delete),
            methods=["DELETE"],
        ),
        Route("/v1/app/{app_name}/versions", ep("versions", versions), methods=["GET"]),
        Route("/v1/telemetry/active-deployments", ep("telemetry_create", telemetry_create), methods=["POST"]),
        Route(
            "/v1/telemetry/active-deployments/{retrieval_key}",
            ep("telemetry_get", telemetry_get),
            methods=["GET"],
        ),
        Route("/v1/locations", ep("locations", locations), methods=["GET"]),
        Route("/v1/locations/beacons", ep("beacons", beacons), methods=["GET"]),
        Route("/v1/ip", ep("ip", my_ip), methods=["GET"]),
        Route("/v1/ip/{ip}/lookup", ep("ip_lookup", ip_lookup), methods=["GET"]),
        Route("/v1/ips/lookup", ep("ips_lookup", ips_lookup), methods=["POST"]),
    ]
