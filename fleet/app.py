"""The ASGI application of `fleet web`: every room's routes behind one auth and error policy."""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from fleet.bootstrap import Services, bootstrap
from fleet.http import HttpError, check_api_token, error_response
from fleet.logging import event
from fleet.observability import process_collectors, render_metrics
from fleet.settings import Settings

log = logging.getLogger("fleet.web")

PUBLIC_PATHS = ("/metrics", "/healthz", "/readyz", "/openapi.json", "/webhooks/")
REDIS_RETRY_AFTER_S = "2"


class ApiAuth:
    """Requires `Authorization: token <FLEET_API_TOKEN>` on the service API (everything under /v1)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1/") and self.token:
            try:
                check_api_token(Request(scope), self.token)
            except HttpError as err:
                await error_response(err.status, err.message)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class FleetApp(Starlette):
    """The Starlette app, with a front door for the platform's callbacks: a POST to one of their
    paths goes straight to its endpoint, past the middleware stack and the router. Callbacks are
    the busiest path (thousands a second), the stack and the router were ~8 % of the process's CPU
    under callback load, and none of it applies to them: the API token is not theirs to carry, and
    each endpoint answers its own errors. A callback URL with a trailing slash is the same
    callback (the router would answer a 307 before any token check, and few platforms follow a
    redirected POST). Any other method or path takes the usual way (a GET there gets the router's
    405)."""

    def __init__(self, *, front_door: Mapping[str, ASGIApp], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.front_door = dict(front_door)
        self.front_door.update({path + "/": endpoint for path, endpoint in front_door.items()})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint = self.front_door.get(scope["path"])
            if endpoint is not None:
                scope["app"] = self
                await endpoint(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def _ops_routes(services: Services) -> list[BaseRoute]:
    scrape_collectors = process_collectors(services.settings, "web")

    async def metrics(request: Request) -> Response:
        # In a thread: the scrape-time collectors (Redis probe) use a blocking client.
        body, content_type = await run_in_threadpool(
            render_metrics, services.settings.metrics_dir, scrape_collectors
        )
        return Response(body, media_type=content_type)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        try:
            await services.store.ping()
        except (RedisConnectionError, RedisTimeoutError, OSError):
            return error_response(503, "redis unreachable", {"Retry-After": REDIS_RETRY_AFTER_S})
        return JSONResponse({"status": "ready"})

    async def openapi(request: Request) -> Response:
        from fleet.openapi import openapi_document

        return JSONResponse(openapi_document())

    return [
        Route("/metrics", metrics),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/openapi.json", openapi),
    ]


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HttpError)
    return error_response(exc.status, exc.message, exc.headers, **exc.extra)


async def _starlette_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, str(exc.detail), dict(exc.headers or {}))


async def _redis_down(request: Request, exc: Exception) -> Response:
    event(log, "redis_unavailable", logging.WARNING, path=request.url.path, error=type(exc).__name__)
    return error_response(503, "state store unavailable, retry shortly", {"Retry-After": REDIS_RETRY_AFTER_S})


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", extra={"fleet_fields": {"path": request.url.path}})
    return error_response(500, "internal error")


def build_app(services: Services) -> FleetApp:
    from allocator.api import build_routes as allocator_routes
    from autoscaler.api import build_routes as autoscaler_routes
    from fleet.views import build_routes as view_routes
    from webhooks.routes import build_routes as webhook_routes

    callbacks = webhook_routes(services)
    routes = [
        *callbacks,
        *_ops_routes(services),
        *autoscaler_routes(services),
        *allocator_routes(services),
        *view_routes(services),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        starters: list[Callable[[], Awaitable[None]]] = list(services.extras.get("on_start", []))  # type: ignore[call-overload]
        for start in starters:
            await start()
        try:
            yield
        finally:
            stoppers: list[Callable[[], Awaitable[None]]] = list(services.extras.get("on_stop", []))  # type: ignore[call-overload]
            for stop in stoppers:
                with contextlib.suppress(Exception):
                    await stop()
            await services.aclose()

    app = FleetApp(
        front_door={r.path: r.app for r in callbacks if isinstance(r, Route)},
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            HttpError: _http_error,
            HTTPException: _starlette_error,
            RedisConnectionError: _redis_down,
            RedisTimeoutError: _redis_down,
            Exception: _unexpected,
        },
    )
    app.state.services = services
    api_token = services.settings.api_token.get_secret_value()
    app.add_middleware(ApiAuth, token=api_token)
    return app


def create_app() -> FleetApp:
    """uvicorn factory (`fleet.app:create_app`): settings are read here, in each worker process."""
    from fleet.runners import setup_logging

    settings = Settings()
    setup_logging(settings)
    app = build_app(bootstrap(settings))
    # What was made to start (modules, the app, pydantic's validators: most of the process's
    # objects) lives as long as the process: out of the collector's way, a full collection under
    # callback load takes ~6 ms instead of ~28 ms, and stalls every request in flight for it.
    gc.collect()
    gc.freeze()
    return app
