"""Fleets, their policies and app-version links, as JSON documents in Redis hashes; and the
scaler's own records: creates in flight, stops asked, deployments retiring, decisions, policy memory.

Writes the scaler leader makes go through `fenced`: one script checks the leader's fencing token
against the latest grant and applies the writes only when it is current, so a deposed leader that
wakes up late changes nothing (design.md §6).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import WatchError

from fleet.models import AppVersionRef, Fleet, Policy
from fleet.store.keys import SEP, Keys

# KEYS[1] = fence, KEYS[2..] = the keys the ops name by index. ARGV[1] = token, ARGV[2] = JSON list
# of ops [command, key index, args...]. Returns 1 when applied, 0 when the token is stale.
_FENCED = """
local fence = redis.call('GET', KEYS[1])
-- No fence at all means Redis lost its data: nothing is written until a leader is granted again
-- (and has rebuilt state from the platform).
if not fence or tonumber(ARGV[1]) < tonumber(fence) then return 0 end
local allowed = {HSET=1, HDEL=1, ZADD=1, ZREM=1, LPUSH=1, LTRIM=1, SADD=1, SREM=1, DEL=1, PEXPIRE=1}
local ops = cjson.decode(ARGV[2])
for _, op in ipairs(ops) do
  if not allowed[op[1]] then return redis.error_reply('fenced: command not allowed ' .. op[1]) end
end
for _, op in ipairs(ops) do
  local args = {}
  for i = 3, #op do args[#args + 1] = tostring(op[i]) end
  redis.call(op[1], KEYS[op[2]], unpack(args))
end
return 1
"""

DECISIONS_KEEP = 200
INTENT_KEEP_S = 24 * 3600  # an intent's record stays readable this long (adoption, diagnosis)


class Ops:
    """A batch of writes for `FleetStore.fenced`: all applied, or none when the token is stale."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.ops: list[list[Any]] = []

    def _key(self, key: str) -> int:
        if key not in self.keys:
            self.keys.append(key)
        return self.keys.index(key) + 2  # KEYS[1] is the fence

    def add(self, command: str, key: str, *args: object) -> Ops:
        self.ops.append([command, self._key(key), *(str(a) for a in args)])
        return self

    def __bool__(self) -> bool:
        return bool(self.ops)


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


class PolicyExists(Exception):
    """A rename would overwrite another policy."""


class FleetStore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._fenced = redis.register_script(_FENCED)

    async def fenced(self, token: int, ops: Ops) -> bool:
        """Apply `ops` atomically if `token` is the latest lease grant (or newer); False if stale or
        if Redis lost the fence with the rest of its data."""
        if not ops:
            return True
        out = await self._fenced(keys=[self.keys.fence(), *ops.keys], args=[token, json.dumps(ops.ops)])
        return bool(int(out))

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
        """Move a fleet with its policies, links, decisions, policy memory and deployment ownership;
        False if the new name is taken."""
        k = self.keys
        if old != fleet.name and await self.redis.hexists(k.fleets(), fleet.name):
            return False
        policies = list(await self.redis.hkeys(k.policies(old))) if old != fleet.name else []
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
        for policy in policies:
            await self._move_policy_records(old, policy, fleet.name, policy)
        return True

    async def _move_policy_records(self, fleet: str, policy: str, new_fleet: str, new_policy: str) -> None:
        """Ownership follows a renamed fleet or policy: deployment set, owner fields, memory, intents."""
        k = self.keys
        if (fleet, policy) == (new_fleet, new_policy):
            return
        rids = list(await self.redis.smembers(k.policy_deployments(fleet, policy)))
        intents = list(await self.redis.zrange(k.pending_intents(fleet, policy), 0, -1))
        async with self.redis.pipeline(transaction=True) as pipe:
            for src, dst in (
                (k.policy_deployments(fleet, policy), k.policy_deployments(new_fleet, new_policy)),
                (k.policy_state(fleet, policy), k.policy_state(new_fleet, new_policy)),
                (k.pending_intents(fleet, policy), k.pending_intents(new_fleet, new_policy)),
            ):
                pipe.copy(src, dst, replace=True)
                pipe.delete(src)
            for rid in rids:
                pipe.hset(k.deployment(rid), mapping={"fleet": new_fleet, "policy": new_policy})
            for intent in intents:
                pipe.hset(k.intent(intent), mapping={"fleet": new_fleet, "policy": new_policy})
            await pipe.execute()

    async def delete_fleet(self, name: str) -> bool:
        """Deletes the fleet, its policies and links; never its deployments (they stay owned, so a
        fleet created again under the same name finds them)."""
        k = self.keys
        policies = list(await self.redis.hkeys(k.policies(name)))
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(k.fleets(), name)
            pipe.delete(k.policies(name), k.links(name))
            for policy in policies:
                pipe.delete(k.policy_state(name, policy), k.pending_intents(name, policy))
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
        await self._move_policy_records(fleet, old_name, fleet, policy.name)

    async def update_policy(
        self, fleet: str, name: str, change: Callable[[Policy], Awaitable[Policy]]
    ) -> Policy | None:
        """Read-modify-write a policy against concurrent writers (WATCH, retried on conflict).
        `change` may raise to abort (nothing is written). None when the policy does not exist."""
        key = self.keys.policies(fleet)
        while True:
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(key)
                    raw = await pipe.hget(key, name)
                    if not raw:
                        return None
                    new = await change(Policy.model_validate_json(raw))
                    if new.name != name and await pipe.hexists(key, new.name):
                        raise PolicyExists(new.name)
                    pipe.multi()
                    if new.name != name:
                        pipe.hdel(key, name)
                    pipe.hset(key, new.name, new.model_dump_json())
                    await pipe.execute()
                except WatchError:
                    continue
            await self._move_policy_records(fleet, name, fleet, new.name)
            return new

    async def all_policies(self) -> list[tuple[Fleet, list[Policy], list[AppVersionRef]]]:
        """Every fleet with its policies and links, in one round trip per fleet."""
        fleets = await self.list_fleets()
        if not fleets:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for f in fleets:
                pipe.hgetall(self.keys.policies(f.name))
                pipe.hkeys(self.keys.links(f.name))
            raw = await pipe.execute()
        out = []
        for i, f in enumerate(fleets):
            policies = sorted(
                (Policy.model_validate_json(v) for v in raw[2 * i].values()), key=lambda p: p.name
            )
            links = sorted(
                (AppVersionRef(app=a, version=v) for a, v in (x.split(SEP, 1) for x in raw[2 * i + 1])),
                key=lambda r: (r.app, r.version),
            )
            out.append((f, policies, links))
        return out

    async def list_policies(self, fleet: str) -> list[Policy]:
        raw = await self.redis.hgetall(self.keys.policies(fleet))
        return sorted((Policy.model_validate_json(v) for v in raw.values()), key=lambda p: p.name)

    async def delete_policy(self, fleet: str, name: str) -> bool:
        """Deletes the policy and the scaler's memory of it; never its deployments."""
        k = self.keys
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(k.policies(fleet), name)
            pipe.delete(k.policy_state(fleet, name), k.pending_intents(fleet, name))
            removed, *_ = await pipe.execute()
        return bool(removed)

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
    async def add_decision(self, fleet: str, record: dict[str, object], keep: int = DECISIONS_KEEP) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.lpush(self.keys.decisions(fleet), json.dumps(record, default=str))
            pipe.ltrim(self.keys.decisions(fleet), 0, keep - 1)
            await pipe.execute()

    async def decisions(self, fleet: str, limit: int = DECISIONS_KEEP) -> list[dict[str, object]]:
        raw = await self.redis.lrange(self.keys.decisions(fleet), 0, limit - 1)
        return [json.loads(x) for x in raw]

    async def policy_state(self, fleet: str, policy: str) -> dict[str, str]:
        return dict(await self.redis.hgetall(self.keys.policy_state(fleet, policy)))

    async def set_policy_state(self, fleet: str, policy: str, values: dict[str, str]) -> None:
        if values:
            await self.redis.hset(self.keys.policy_state(fleet, policy), mapping=values)

    def decision_ops(
        self, ops: Ops, fleet: str, record: dict[str, object], keep: int = DECISIONS_KEEP
    ) -> Ops:
        ops.add("LPUSH", self.keys.decisions(fleet), json.dumps(record, default=str))
        return ops.add("LTRIM", self.keys.decisions(fleet), 0, keep - 1)

    def policy_state_ops(self, ops: Ops, fleet: str, policy: str, values: dict[str, str]) -> Ops:
        if values:
            flat = [x for kv in values.items() for x in kv]
            ops.add("HSET", self.keys.policy_state(fleet, policy), *flat)
        return ops

    async def live_count(self) -> int:
        """Deployments not known to be TERMINATED or ERROR, account-wide (the account cap)."""
        return int(await self.redis.scard(self.keys.live_deployments()))

    async def policy_members(self, pairs: Sequence[tuple[str, str]]) -> list[set[str]]:
        """For each (fleet, policy): the request ids it owns (one round trip for all)."""
        if not pairs:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for fleet, policy in pairs:
                pipe.smembers(self.keys.policy_deployments(fleet, policy))
            return [set(x) for x in await pipe.execute()]

    async def policy_states(self, pairs: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
        if not pairs:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for fleet, policy in pairs:
                pipe.hgetall(self.keys.policy_state(fleet, policy))
            return [dict(x) for x in await pipe.execute()]

    # --- creates in flight (intents) -------------------------------------------------------------
    def intent_ops(
        self, ops: Ops, fleet: str, policy: str, intent: str, doc: dict[str, str], now: float
    ) -> Ops:
        """Record a create intent: pending capacity of the policy until `resolve_intent`."""
        flat = [x for kv in {**doc, "fleet": fleet, "policy": policy, "at": repr(now)}.items() for x in kv]
        ops.add("HSET", self.keys.intent(intent), *flat)
        ops.add("PEXPIRE", self.keys.intent(intent), int(INTENT_KEEP_S * 1000))
        return ops.add("ZADD", self.keys.pending_intents(fleet, policy), repr(now), intent)

    async def intent(self, intent: str) -> dict[str, str]:
        return dict(await self.redis.hgetall(self.keys.intent(intent)))

    async def update_intent(self, intent: str, values: dict[str, str]) -> None:
        await self.redis.hset(self.keys.intent(intent), mapping=values)

    async def pending_intents(self, pairs: Sequence[tuple[str, str]]) -> list[list[tuple[str, float]]]:
        """For each (fleet, policy): its creates in flight as (intent, asked at)."""
        if not pairs:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for fleet, policy in pairs:
                pipe.zrange(self.keys.pending_intents(fleet, policy), 0, -1, withscores=True)
            raw = await pipe.execute()
        return [[(str(m), float(sc)) for m, sc in row] for row in raw]

    async def intent_docs(self, intents: Sequence[str]) -> list[dict[str, str]]:
        if not intents:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for intent in intents:
                pipe.hgetall(self.keys.intent(intent))
            return [dict(x) for x in await pipe.execute()]

    async def is_pending(self, fleet: str, policy: str, intent: str) -> bool:
        return await self.redis.zscore(self.keys.pending_intents(fleet, policy), intent) is not None

    async def resolve_intent(self, fleet: str, policy: str, intent: str, outcome: dict[str, str]) -> None:
        """The create finished (deployment recorded) or failed for good: no longer pending."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self.keys.pending_intents(fleet, policy), intent)
            if outcome:
                pipe.hset(self.keys.intent(intent), mapping=outcome)
            await pipe.execute()

    # --- stops and retiring deployments ---------------------------------------------------------
    def stop_ops(self, ops: Ops, rid: str, now: float) -> Ops:
        return ops.add("HSET", self.keys.stops(), rid, repr(now))

    async def stop_times(self) -> dict[str, float]:
        raw = await self.redis.hgetall(self.keys.stops())
        return {k: float(v) for k, v in raw.items()}

    async def forget_stop(self, rid: str) -> None:
        await self.redis.hdel(self.keys.stops(), rid)

    async def retire(self, rids: Sequence[str], fleet: str, policy: str, now: float) -> None:
        """Stop these deployments as soon as each is empty (the scaler does it; never with players)."""
        if rids:
            doc = json.dumps({"fleet": fleet, "policy": policy, "at": now})
            await self.redis.hset(self.keys.retiring(), mapping=dict.fromkeys(rids, doc))

    async def retiring(self) -> dict[str, dict[str, object]]:
        raw = await self.redis.hgetall(self.keys.retiring())
        return {k: json.loads(v) for k, v in raw.items()}

    async def unretire(self, rid: str) -> None:
        await self.redis.hdel(self.keys.retiring(), rid)
