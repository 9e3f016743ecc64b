"""Routes of this room (placeholder until the room lands)."""

from __future__ import annotations

from starlette.routing import BaseRoute

from fleet.bootstrap import Services


def build_routes(services: Services) -> list[BaseRoute]:
    return []
