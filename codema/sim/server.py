"""`fleet sim`: the embedded Codema simulator as an HTTP server (Starlette + uvicorn).

`create_app(host)` builds the ASGI app for a `SimHost` (tests run it in a thread); `main(args)`
is the command: settings are read once, the token is CODEMA_API_TOKEN, and uvicorn's access log
is off (the simulator logs its own lines, never a token or a callback URL's query).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import socket
import sys
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from codema.sim import routes_control, routes_deployments, routes_platform, routes_sessions
from codema.sim.faults import FaultError
from codema.sim.options import SimOptions, options_from_args
from codema.sim.records import SimError
from codema.sim.runtime import SimHost, error
from fleet.logging import configure, event
from fleet.settings import Settings

log = logging.getLogger("codema.sim")


def create_app(host: SimHost) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(host.run())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await host.deliverer.close()

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
        return error(status, str(detail))

    routes = [
        *routes_deployments.routes(host),
        *routes_sessions.routes(host),
        *routes_platform.routes(host),
        *routes_control.routes(host),
    ]
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error})


def build_host(options: SimOptions, token: str) -> SimHost:
    """The host for `options`; ValueError / SimError explain a bad setting."""
    return SimHost(options, token)


def main(args: argparse.Namespace, sock: socket.socket | None = None) -> int:
    """Run until stopped; `sock` is a listening socket opened early by the caller (fleet.cli)."""
    import uvicorn

    settings = Settings()  # every field has a default; read from the env
    token = settings.codema_api_token.get_secret_value()
    configure(settings.log_level, settings.log_format, [token])
    if not token:
        print("fleet sim: CODEMA_API_TOKEN is empty; set it to the token clients must send", file=sys.stderr)
        return 2
    try:
        options = options_from_args(args)
        host = build_host(options, token)
    except (FaultError, SimError, ValueError) as err:
        print(f"fleet sim: {err}", file=sys.stderr)
        return 2
    event(
        log, "sim_start", host=args.host, port=args.port, boot_s=options.world.boot_s, seed=options.seed,
        faults=options.faults.to_json(),
    )  # fmt: skip
    config = uvicorn.Config(
        create_app(host),
        host=args.host,
        port=args.port,
        access_log=False,
        log_config=None,
        lifespan="on",
        ws="none",
        timeout_graceful_shutdown=2,
    )
    uvicorn.Server(config).run(sockets=[sock] if sock is not None else None)
    return 0
