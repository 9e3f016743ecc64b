"""The simulator's control endpoint, `/_sim/...`: ground truth, call counts, faults, reset.

Same token as the platform endpoints. Not part of the platform: only tests, the demo and chaos
runs use it.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from codema.sim.bodies import read_json
from codema.sim.faults import FaultError
from codema.sim.records import BadRequest, SimError
from codema.sim.runtime import Handler, SimHost, error


def routes(host: SimHost) -> list[Route]:
    def guarded(handler: Handler) -> Handler:
        async def run(request: Request) -> Response:
            if not host.authorized(request):
                return error(401, "missing or invalid Authorization header (expected 'token <api token>')")
            try:
                return await handler(request)
            except SimError as err:
                return error(err.http_status, err.message)

        return run

    async def state(request: Request) -> Response:
        return JSONResponse({**host.world.snapshot(), "faults": host.world.faults.to_json()})

    async def calls(request: Request) -> Response:
        return JSONResponse(
            {
                "calls": dict(host.calls),
                "responses": {name: dict(codes) for name, codes in host.responses.items()},
                "total": sum(host.calls.values()),
            }
        )

    async def faults(request: Request) -> Response:
        if request.method == "POST":
            changes = await read_json(request)
            if not isinstance(changes, dict):
                raise BadRequest("body: expected a JSON object of fault settings")
            try:
                host.world.set_faults(host.world.faults.updated(changes))
            except FaultError as err:
                raise BadRequest(str(err)) from None
        return JSONResponse(host.world.faults.to_json())

    async def reset(request: Request) -> Response:
        await host.deliverer.close()
        host.reset()
        return JSONResponse({"message": "simulator reset", "faults": host.world.faults.to_json()})

    async def webhooks(request: Request) -> Response:
        return JSONResponse({"webhooks": list(host.deliverer.log), "pending": len(host.deliverer.pending)})

    return [
        Route("/_sim/state", guarded(state), methods=["GET"]),
        Route("/_sim/calls", guarded(calls), methods=["GET"]),
        Route("/_sim/faults", guarded(faults), methods=["GET", "POST"]),
        Route("/_sim/reset", guarded(reset), methods=["POST"]),
        Route("/_sim/webhooks", guarded(webhooks), methods=["GET"]),
    ]
