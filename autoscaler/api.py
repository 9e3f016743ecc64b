"""The Fleet API, with the seed's paths and payloads (codema-api.md §1.7) plus documented extras.

Fleets: `POST /v1/fleet`, `GET /v1/fleets`, `GET|PATCH|DELETE /v1/fleet/{fleet}`; app-version links:
`PUT|DELETE /v1/fleet/{fleet}/app/{app}/version/{version}`; policies: `GET|POST
/v1/fleet/{fleet}/policies`, `GET|PATCH|DELETE /v1/fleet/{fleet}/policies/{policy}`; our decision
log: `GET /v1/fleet/{fleet}/decisions`.

Bad values get 422 naming every bad field, and nothing changes: the previous policy stays in
force. Deleting a fleet or a policy never stops its deployments unless asked with
`?stop_deployments=true`; even then a deployment is stopped only once it is empty. Linking fetches
the app version from the platform and refuses versions that are not session-based (422), as the
platform's fleets do. Every change publishes a `fleet` event, so the scaler looks at once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from autoscaler.payloads import (
    FieldErrors,
    fleet_view,
    parse_fleet_create,
    parse_fleet_patch,
    parse_policy_create,
    parse_policy_patch,
    policy_view,
)
from autoscaler.reconcile import FACTS_TTL_S, facts_of
from codema.errors import NotFound, PlatformRejected, PlatformUnavailable
from fleet.bootstrap import Services
from fleet.http import HttpError, pagination, query_int, read_json_object
from fleet.models import Fleet, Policy
from fleet.store.fleets import PolicyExists

Handler = Callable[[Request], Awaitable[Response]]
PLATFORM_RETRY_AFTER_S = "5"
DECISIONS_DEFAULT = 50


def timestamp(epoch: float) -> str:
    """The platform's time format: `2022-01-01 00:00:00.000000` (UTC)."""
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _invalid(err: FieldErrors) -> HttpError:
    return HttpError(422, str(err), extra={"errors": err.errors})


def flag(request: Request, name: str) -> bool:
    raw = request.query_params.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no"):
        return False
    if raw in ("1", "true", "yes"):
        return True
    raise HttpError(
        422,
        f"{name}: must be true or false",
        extra={"errors": [{"field": name, "error": "must be true or false"}]},
    )


def _page(request: Request, items: list[Any]) -> tuple[list[Any], dict[str, Any]]:
    page = query_int(request, "page", 1, 1, 1_000_000)
    limit = query_int(request, "limit", 10, 1, 1000)
    start = (page - 1) * limit
    return items[start : start + limit], pagination(page, limit, len(items))


class FleetApi:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.store = services.store

    def now(self) -> str:
        return timestamp(self.services.clock())

    async def _changed(self, fleet: str) -> None:
        await self.store.coord.publish("fleet", fleet=fleet)

    async def _fleet(self, name: str) -> Fleet:
        fleet = await self.store.fleets.get_fleet(name)
        if fleet is None:
            raise HttpError(404, f"fleet '{name}' not found")
        return fleet

    async def _policy(self, fleet: str, name: str) -> Policy:
        policy = await self.store.fleets.get_policy(fleet, name)
        if policy is None:
            raise HttpError(404, f"policy '{name}' not found in fleet '{fleet}'")
        return policy

    # --- fleets ------------------------------------------------------------------------------------
    async def fleets(self, request: Request) -> Response:
        if request.method == "POST":
            return await self.create_fleet(request)
        listed, pages = _page(request, await self.store.fleets.list_fleets())
        return JSONResponse({"fleets": [fleet_view(f) for f in listed], "pagination": pages})

    async def create_fleet(self, request: Request) -> Response:
        try:
            payload = parse_fleet_create(await read_json_object(request))
        except FieldErrors as err:
            raise _invalid(err) from err
        now = self.now()
        fleet = Fleet(
            name=payload.name,
            enabled=payload.enabled,
            dry_run=payload.dry_run,
            create_time=now,
            last_updated=now,
        )
        if not await self.store.fleets.create_fleet(fleet):
            raise HttpError(409, f"fleet '{fleet.name}' already exists")
        await self._changed(fleet.name)
        return JSONResponse(fleet_view(fleet))

    async def fleet(self, request: Request) -> Response:
        name = request.path_params["fleet"]
        if request.method == "GET":
            return JSONResponse(fleet_view(await self._fleet(name)))
        if request.method == "PATCH":
            return await self.patch_fleet(request, name)
        return await self.delete_fleet(request, name)

    async def patch_fleet(self, request: Request, name: str) -> Response:
        try:
            patch = parse_fleet_patch(await read_json_object(request, allow_empty=True))
        except FieldErrors as err:
            raise _invalid(err) from err
        fleet = await self._fleet(name)
        changes = patch.model_dump(exclude_none=True, exclude={"create_time", "last_updated"})
        updated = fleet.model_copy(update={**changes, "last_updated": self.now()})
        if updated.name != name:
            if not await self.store.fleets.rename_fleet(name, updated):
                raise HttpError(409, f"fleet '{updated.name}' already exists")
        else:
            await self.store.fleets.put_fleet(updated)
        await self._changed(updated.name)
        return JSONResponse(fleet_view(updated))

    async def _retire_policy(self, fleet: str, policy: str) -> int:
        now = self.services.clock()
        live = [
            d.request_id
            for d in await self.store.deployments.of_policy(fleet, policy, now)
            if not (d.status is not None and d.status.terminal)
        ]
        await self.store.fleets.retire(live, fleet, policy, now)
        return len(live)

    async def delete_fleet(self, request: Request, name: str) -> Response:
        stop = flag(request, "stop_deployments")
        await self._fleet(name)
        retiring = 0
        if stop:
            for policy in await self.store.fleets.list_policies(name):
                retiring += await self._retire_policy(name, policy.name)
        await self.store.fleets.delete_fleet(name)
        await self._changed(name)
        body: dict[str, Any] = {"message": f"Fleet {name} deleted"}
        if stop:
            body["stopping_deployments"] = retiring
        return JSONResponse(body)

    # --- app version links ----------------------------------------------------------------------------
    async def link(self, request: Request) -> Response:
        fleet, app, version = (request.path_params[k] for k in ("fleet", "app", "version"))
        await self._fleet(fleet)
        if request.method == "DELETE":
            if not await self.store.fleets.unlink(fleet, app, version):
                raise HttpError(404, f"app version {app}/{version} is not linked to fleet '{fleet}'")
            await self._changed(fleet)
            return Response(status_code=204)
        try:
            av = await self.services.client.get_app_version(app, version)
        except NotFound as err:
            raise HttpError(404, f"app version {app}/{version} not found on the platform") from err
        except PlatformUnavailable as err:
            raise HttpError(
                503, "the platform is unavailable, retry shortly", {"Retry-After": PLATFORM_RETRY_AFTER_S}
            ) from err
        except PlatformRejected as err:
            raise HttpError(422, f"the platform refused to read app version {app}/{version}: {err}") from err
        if av.session_config.kind not in ("Seat", "Match"):
            message = "only session-based (Seat or Match) app versions can be linked to a fleet"
            raise HttpError(
                422,
                f"session_config.kind: {message}",
                extra={"errors": [{"field": "session_config.kind", "error": message}]},
            )
        await self.store.fleets.put_app_version(facts_of(app, version, av.session_config), ttl_s=FACTS_TTL_S)
        now = self.now()
        existing = await self.store.fleets.get_link(fleet, app, version) or {}
        doc = {
            "app": app,
            "app_version": version,
            "fleet": fleet,
            "create_time": existing.get("create_time", now),
            "last_updated": now,
        }
        await self.store.fleets.link(fleet, app, version, doc)
        await self._changed(fleet)
        return JSONResponse(doc)

    # --- policies -------------------------------------------------------------------------------------
    async def policies(self, request: Request) -> Response:
        fleet = request.path_params["fleet"]
        await self._fleet(fleet)
        if request.method == "POST":
            return await self.create_policy(request, fleet)
        listed, pages = _page(request, await self.store.fleets.list_policies(fleet))
        return JSONResponse({"policies": [policy_view(p) for p in listed], "pagination": pages})

    async def create_policy(self, request: Request, fleet: str) -> Response:
        try:
            policy = parse_policy_create(await read_json_object(request))
        except FieldErrors as err:
            raise _invalid(err) from err
        now = self.now()
        policy = policy.model_copy(update={"create_time": now, "last_updated": now})
        if not await self.store.fleets.create_policy(fleet, policy):
            raise HttpError(409, f"policy '{policy.name}' already exists in fleet '{fleet}'")
        await self._changed(fleet)
        return JSONResponse(policy_view(policy))

    async def policy(self, request: Request) -> Response:
        fleet, name = request.path_params["fleet"], request.path_params["policy"]
        await self._fleet(fleet)
        if request.method == "GET":
            view = policy_view(await self._policy(fleet, name))
            view["status"] = await self._status(fleet, name)
            return JSONResponse(view)
        if request.method == "PATCH":
            return await self.patch_policy(request, fleet, name)
        stop = flag(request, "stop_deployments")
        await self._policy(fleet, name)
        if stop:
            await self._retire_policy(fleet, name)
        await self.store.fleets.delete_policy(fleet, name)
        await self._changed(fleet)
        return Response(status_code=204)

    async def patch_policy(self, request: Request, fleet: str, name: str) -> Response:
        body = await read_json_object(request, allow_empty=True)
        now = self.now()

        async def change(current: Policy) -> Policy:
            updated = parse_policy_patch(current, body)
            return updated.model_copy(update={"last_updated": now})

        try:
            updated = await self.store.fleets.update_policy(fleet, name, change)
        except FieldErrors as err:
            raise _invalid(err) from err
        except PolicyExists as err:
            raise HttpError(409, f"policy '{err}' already exists in fleet '{fleet}'") from err
        if updated is None:
            raise HttpError(404, f"policy '{name}' not found in fleet '{fleet}'")
        await self._changed(fleet)
        return JSONResponse(policy_view(updated))

    async def _status(self, fleet: str, policy: str) -> dict[str, Any]:
        state = await self.store.fleets.policy_state(fleet, policy)
        return {
            "degraded": state.get("degraded") == "1",
            "last_error": state.get("last_error") or None,
            "error_streak": int(state.get("error_streak") or 0),
        }

    # --- decisions ----------------------------------------------------------------------------------
    async def decisions(self, request: Request) -> Response:
        fleet = request.path_params["fleet"]
        await self._fleet(fleet)
        limit = query_int(request, "limit", DECISIONS_DEFAULT, 1, 200)
        policy = request.query_params.get("policy")
        records = await self.store.fleets.decisions(fleet)
        if policy:
            records = [r for r in records if r.get("policy") == policy]
        return JSONResponse({"fleet": fleet, "decisions": records[:limit]})


def build_routes(services: Services) -> list[BaseRoute]:
    api = FleetApi(services)
    return [
        Route("/v1/fleet", api.create_fleet, methods=["POST"]),
        Route("/v1/fleets", api.fleets, methods=["GET"]),
        Route("/v1/fleet/{fleet}", api.fleet, methods=["GET", "PATCH", "DELETE"]),
        Route("/v1/fleet/{fleet}/app/{app}/version/{version}", api.link, methods=["PUT", "DELETE"]),
        Route("/v1/fleet/{fleet}/policies", api.policies, methods=["GET", "POST"]),
        Route("/v1/fleet/{fleet}/policies/{policy}", api.policy, methods=["GET", "PATCH", "DELETE"]),
        Route("/v1/fleet/{fleet}/decisions", api.decisions, methods=["GET"]),
    ]
