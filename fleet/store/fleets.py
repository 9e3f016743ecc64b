"""Fleets, their policies and app-version links, as JSON documents in Redis hashes."""

from __future__ import annotations

import json
from dataclasses import dataclass

from redis.asyncio import Redis

from fleet.models import AppVersionRef, Fleet, Policy
from fleet.store.keys import SEP, Keys


@dataclass(frozen=True)
class AppVersionFacts:
    """What the scaler and allocator need from an app version's session_config."""

    app: str
    version: str
    kind: str = "Seat"
    sockets: int | None = None
    empty_ttl_min: int | None = None

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, text: str) -> AppVersionFacts:
        return cls(**json.loads(text))


class FleetStore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    # --- fleets -------------------------------------------------------------------------------
    async def get_fleet(self, name: str) -> Fleet | None:
        raw = await self.redis.hget(self.keys.fleets(), name)
        return Fleet.model_validate_json(raw) if raw else None

    async def put_fleet(self, fleet: Fleet) -> None:
        await self.redis.hset(self.keys.fleets(), fleet.name, fleet.model_dump_json())

    async def create_fleet(self, fleet: Fleet) -> bool:
        """False when a fleet of that name exists."""
        return bool(await self.redis.hsetnx(self.keys.fleets(), fleet.name, fleet.model_dump_json()))

    async def list_fleets(self) -> list[Fleet]:
        raw = await self.redis.hgetall(self.keys.fleets())
        return sorted((Fleet.model_validate_json(v) for v in raw.values()), key=lambda f: f.name)

    async def rename_fleet(self, old: str, fleet: Fleet) -> bool:
        """Move a fleet with its policies, links and decisions; False if the new name is taken."""
        k = self.keys
        if old != fleet.name and await self.redis.hexists(k.fleets(), fleet.name):
            return False
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(k.fleets(), old)
            pipe.hset(k.fleets(), fleet.name, fleet.model_dump_json())
            for src, dst in (
                (k.policies(old), k.policies(fleet.name)),
                (k.links(old), k.links(fleet.name)),
                (k.decisions(old), k.decisions(fleet.name)),
            ):
                if src != dst:
                    pipe.copy(src, dst, replace=True)
                    pipe.delete(src)
            await pipe.execute()
        return True

    async def delete_fleet(self, name: str) -> bool:
        k = self.keys
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(k.fleets(), name)
            pipe.delete(k.policies(name), k.links(name))
            removed, *_ = await pipe.execute()
        return bool(removed)

    # --- policies -----------------------------------------------------------------------------
    async def get_policy(self, fleet: str, name: str) -> Policy | None:
        raw = await self.redis.hget(self.keys.policies(fleet), name)
        return Policy.model_validate_json(raw) if raw else None

    async def put_policy(self, fleet: str, policy: Policy) -> None:
        await self.redis.hset(self.keys.policies(fleet), policy.name, policy.model_dump_json())

    async def create_policy(self, fleet: str, policy: Policy) -> bool:
        return bool(await self.redis.hsetnx(self.keys.policies(fleet), policy.name, policy.model_dump_json()))

    async def replace_policy(self, fleet: str, old_name: str, policy: Policy) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            if old_name != policy.name:
                pipe.hdel(self.keys.policies(fleet), old_name)
            pipe.hset(self.keys.policies(fleet), policy.name, policy.model_dump_json())
            await pipe.execute()

    async def list_policies(self, fleet: str) -> list[Policy]:
        raw = await self.redis.hgetall(self.keys.policies(fleet))
        return sorted((Policy.model_validate_json(v) for v in raw.values()), key=lambda p: p.name)

    async def delete_policy(self, fleet: str, name: str) -> bool:
        return bool(await self.redis.hdel(self.keys.policies(fleet), name))

    # --- links --------------------------------------------------------------------------------
    async def link(self, fleet: str, app: str, version: str, doc: dict[str, str]) -> None:
        await self.redis.hset(self.keys.links(fleet), app + SEP + version, json.dumps(doc))

    async def unlink(self, fleet: str, app: str, version: str) -> bool:
        return bool(await self.redis.hdel(self.keys.links(fleet), app + SEP + version))

    async def get_link(self, fleet: str, app: str, version: str) -> dict[str, str] | None:
        raw = await self.redis.hget(self.keys.links(fleet), app + SEP + version)
        return json.loads(raw) if raw else None

    async def links(self, fleet: str) -> list[AppVersionRef]:
        raw = await self.redis.hkeys(self.keys.links(fleet))
        return sorted(
            (AppVersionRef(app=a, version=v) for a, v in (x.split(SEP, 1) for x in raw)),
            key=lambda r: (r.app, r.version),
        )

    # --- app version facts (cached from the platform) -----------------------------------------
    async def get_app_version(self, app: str, version: str) -> AppVersionFacts | None:
        raw = await self.redis.get(self.keys.app_version(app, version))
        return AppVersionFacts.from_json(raw) if raw else None

    async def put_app_version(self, facts: AppVersionFacts, ttl_s: float = 600.0) -> None:
        await self.redis.set(
            self.keys.app_version(facts.app, facts.version), facts.to_json(), px=int(ttl_s * 1000)
        )

    # --- decisions and policy memory ------------------------------------------------------------
    async def add_decision(self, fleet: str, record: dict[str, object], keep: int = 200) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.lpush(self.keys.decisions(fleet), json.dumps(record, default=str))
            pipe.ltrim(self.keys.decisions(fleet), 0, keep - 1)
            await pipe.execute()

    async def decisions(self, fleet: str, limit: int = 200) -> list[dict[str, object]]:
        raw = await self.redis.lrange(self.keys.decisions(fleet), 0, limit - 1)
        return [json.loads(x) for x in raw]

    async def policy_state(self, fleet: str, policy: str) -> dict[str, str]:
        return dict(await self.redis.hgetall(self.keys.policy_state(fleet, policy)))

    async def set_policy_state(self, fleet: str, policy: str, values: dict[str, str]) -> None:
        if values:
            await self.redis.hset(self.keys.policy_state(fleet, policy), mapping=values)
