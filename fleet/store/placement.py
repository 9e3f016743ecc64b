"""The allocator's caches in Redis: telemetry rankings and IP locations per player network.

A telemetry ranking is stored whole (one JSON string per network, with a TTL): positions from one
measurement are comparable with each other, positions from two measurements are not, so a newer
result replaces the older one rather than merging into it. Locations are cached per network too,
unknown ones included (as `{}`), so a network the platform cannot place costs one lookup a TTL.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from fleet.store.keys import Keys


@dataclass(frozen=True)
class RanksDoc:
    """Deployments best first, as the platform's telemetry ranked them for one network."""

    order: tuple[str, ...]
    partial: bool
    measured_at: float


@dataclass(frozen=True)
class GeoFact:
    """Where a player network is; all None/"" when the platform could not tell."""

    latitude: float | None = None
    longitude: float | None = None
    country: str = ""
    continent: str = ""

    @property
    def located(self) -> bool:
        return self.latitude is not None and self.longitude is not None


def _ranks(raw: str | bytes | None) -> RanksDoc | None:
    if not raw:
        return None
    doc = json.loads(raw)
    return RanksDoc(tuple(doc.get("order", ())), bool(doc.get("partial")), float(doc.get("at", 0.0)))


def _geo(raw: str | bytes | None) -> GeoFact | None:
    if raw is None:
        return None
    doc = json.loads(raw)
    return GeoFact(doc.get("lat"), doc.get("lon"), doc.get("country", ""), doc.get("continent", ""))


class PlacementStore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    # --- telemetry rankings -------------------------------------------------------------------
    async def get_ranks(self, networks: Sequence[str]) -> dict[str, RanksDoc]:
        if not networks:
            return {}
        raw = await self.redis.mget([self.keys.telemetry_ranks(n) for n in networks])
        return {n: doc for n, r in zip(networks, raw, strict=True) if (doc := _ranks(r)) is not None}

    async def put_ranks(self, network: str, doc: RanksDoc, ttl_s: float) -> None:
        body = json.dumps({"order": list(doc.order), "partial": doc.partial, "at": doc.measured_at})
        await self.redis.set(self.keys.telemetry_ranks(network), body, px=max(1, int(ttl_s * 1000)))

    async def begin_warming(self, network: str, ttl_s: float) -> bool:
        """True for the one caller that should ask the platform for this network now."""
        key = self.keys.telemetry_warming(network)
        return bool(await self.redis.set(key, "1", nx=True, px=max(1, int(ttl_s * 1000))))

    # --- player network locations -------------------------------------------------------------
    async def get_geo(self, networks: Sequence[str]) -> dict[str, GeoFact]:
        if not networks:
            return {}
        raw = await self.redis.mget([self.keys.geo_point(n) for n in networks])
        return {n: fact for n, r in zip(networks, raw, strict=True) if (fact := _geo(r)) is not None}

    async def put_geo(self, facts: Mapping[str, GeoFact], ttl_s: float, unknown_ttl_s: float) -> None:
        if not facts:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for network, f in facts.items():
                doc = {"lat": f.latitude, "lon": f.longitude, "country": f.country, "continent": f.continent}
                body = json.dumps(doc) if f.located else "{}"
                ttl = ttl_s if f.located else unknown_ttl_s
                pipe.set(self.keys.geo_point(network), body, px=max(1, int(ttl * 1000)))
            await pipe.execute()

    # --- a waiting session's location constraints ----------------------------------------------
    async def put_ask(self, session_id: str, doc: Mapping[str, object], ttl_s: float) -> None:
        await self.redis.set(self.keys.session_ask(session_id), json.dumps(doc), px=max(1, int(ttl_s * 1000)))

    async def get_ask(self, session_id: str) -> dict[str, object]:
        raw = await self.redis.get(self.keys.session_ask(session_id))
        return dict(json.loads(raw)) if raw else {}

    async def forget_ask(self, session_id: str) -> None:
        await self.redis.delete(self.keys.session_ask(session_id))
