"""The Store: the only code that knows Redis keys. One object per process, built by bootstrap."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from fleet.models import StatusReport
from fleet.store.coord import Coordination, Event, Lease
from fleet.store.deployments import DeploymentStore, HoldResult, ReportResult
from fleet.store.fleets import AppVersionFacts, FleetStore
from fleet.store.keys import Keys
from fleet.store.session_reports import PENDING_KEEP_S
from fleet.store.sessions import ENDED_KEEP_S, SessionStore
from fleet.store.telemetry import TELEMETRY_KEEP_S, StoredTelemetry, TelemetryStore

__all__ = [
    "AppVersionFacts",
    "Event",
    "HoldResult",
    "Keys",
    "Lease",
    "ReportResult",
    "Retention",
    "StatusReport",
    "Store",
    "StoredTelemetry",
]


@dataclass(frozen=True)
class Retention:
    """How long records that are no longer live stay in Redis. Each bounds one family of keys: at
    a steady rate r, about r x keep_s of them exist (50 sessions/s ended and kept an hour: 180,000
    records, about 100 MB)."""

    ended_session_s: float = ENDED_KEEP_S  # GET/DELETE of an ended session, late callbacks' mapping
    telemetry_s: float = TELEMETRY_KEEP_S  # a telemetry result under its retrieval key
    early_callback_s: float = PENDING_KEEP_S  # a session callback waiting for its mapping


class Store:
    """Facade over the Redis-backed parts; each part owns its keys through `Keys`."""

    def __init__(self, redis: Redis, prefix: str = "fleet", retention: Retention | None = None) -> None:
        retention = retention or Retention()
        self.redis = redis
        self.keys = Keys(prefix)
        self.deployments = DeploymentStore(redis, self.keys)
        self.fleets = FleetStore(redis, self.keys)
        self.sessions = SessionStore(redis, self.keys, retention.ended_session_s, retention.early_callback_s)
        self.coord = Coordination(redis, self.keys)
        self.telemetry = TelemetryStore(redis, self.keys, retention.telemetry_s)

    async def ping(self) -> bool:
        return bool(await self.redis.ping())

    async def aclose(self) -> None:
        await self.telemetry.aclose()
        await self.redis.aclose()

    async def wipe(self) -> None:
        """Delete every key under this store's prefix (tests and `fleet` operators only)."""
        async for key in self.redis.scan_iter(match=f"{self.keys.prefix}:*", count=1000):
            await self.redis.delete(key)
