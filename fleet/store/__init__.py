"""The Store: the only code that knows Redis keys. One object per process, built by bootstrap."""

from __future__ import annotations

from redis.asyncio import Redis

from fleet.models import StatusReport
from fleet.store.coord import Coordination, Event, Lease
from fleet.store.deployments import DeploymentStore, HoldResult, ReportResult
from fleet.store.fleets import AppVersionFacts, FleetStore
from fleet.store.keys import Keys
from fleet.store.sessions import SessionStore
from fleet.store.telemetry import StoredTelemetry, TelemetryStore

__all__ = [
    "AppVersionFacts",
    "Event",
    "HoldResult",
    "Keys",
    "Lease",
    "ReportResult",
    "StatusReport",
    "Store",
    "StoredTelemetry",
]


class Store:
    """Facade over the Redis-backed parts; each part owns its keys through `Keys`."""

    def __init__(self, redis: Redis, prefix: str = "fleet") -> None:
        self.redis = redis
        self.keys = Keys(prefix)
        self.deployments = DeploymentStore(redis, self.keys)
        self.fleets = FleetStore(redis, self.keys)
        self.sessions = SessionStore(redis, self.keys)
        self.coord = Coordination(redis, self.keys)
        self.telemetry = TelemetryStore(redis, self.keys)

    async def ping(self) -> bool:
        return bool(await self.redis.ping())

    async def aclose(self) -> None:
        await self.telemetry.aclose()
        await self.redis.aclose()

    async def wipe(self) -> None:
        """Delete every key under this store's prefix (tests and `fleet` operators only)."""
        async for key in self.redis.scan_iter(match=f"{self.keys.prefix}:*", count=1000):
            await self.redis.delete(key)
