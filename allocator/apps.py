"""The session kind and socket count of an app version: process memory, then Redis (shared with
the scaler), then the platform once. Seat sessions take a socket per player, Match ones one."""

from __future__ import annotations

from collections.abc import Callable

from allocator.insight import LocalCache
from codema.client import CodemaClient
from codema.errors import NotFound, PlatformRejected, PlatformUnavailable
from fleet.http import HttpError
from fleet.models import normalise_kind
from fleet.store.fleets import AppVersionFacts, FleetStore

LOCAL_TTL_S = 30.0
RETRY_AFTER_S = "2"


class AppFacts:
    def __init__(self, fleets: FleetStore, client: CodemaClient, clock: Callable[[], float]) -> None:
        self.fleets = fleets
        self.client = client
        self._local: LocalCache[tuple[str, str], AppVersionFacts] = LocalCache(LOCAL_TTL_S, clock, 10_000)

    async def get(self, app: str, version: str) -> AppVersionFacts:
        """Facts of a session-based version; HttpError 422 (unknown, not session-based) or 503."""
        facts = self._local.get((app, version)) or await self.fleets.get_app_version(app, version)
        if facts is None:
            facts = await self._from_platform(app, version)
            await self.fleets.put_app_version(facts)
        if normalise_kind(facts.kind) == "Default":
            raise HttpError(422, f"version_name: {app} {version} is not session-based (session kind Default)")
        self._local.put((app, version), facts)
        return facts

    async def _from_platform(self, app: str, version: str) -> AppVersionFacts:
        try:
            found = await self.client.get_app_version(app, version)
        except NotFound:
            raise HttpError(422, f"version_name: no version {version!r} of app {app!r}") from None
        except PlatformRejected as err:
            raise HttpError(422, f"version_name: the platform refused {app} {version}: {err}") from None
        except PlatformUnavailable:
            raise HttpError(
                503, "platform unavailable, retry shortly", {"Retry-After": RETRY_AFTER_S}
            ) from None
        cfg = found.session_config
        return AppVersionFacts(app, version, normalise_kind(cfg.kind), cfg.sockets, cfg.empty_ttl)
