"""The allocator's reads and caches in Redis: telemetry rankings and IP locations per player
network, and a compact summary of an app version's deployments for the placement snapshot.

A telemetry ranking is stored whole (one hash per network, with a TTL): positions from one
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
    country: str = ""  # ISO code
    continent: str = ""
    country_name: str = ""

    @property
    def located(self) -> bool:
        return self.latitude is not None and self.longitude is not None


def _geo(raw: str | bytes | None) -> GeoFact | None:
    if raw is None:
        return None
    doc = json.loads(raw)
    return GeoFact(
        doc.get("lat"),
        doc.get("lon"),
        doc.get("country", ""),
        doc.get("continent", ""),
        doc.get("country_name", ""),
    )


@dataclass(frozen=True)
class HoldsSummary:
    """The changing part of one deployment, as placement needs it (see `summaries`)."""

    request_id: str
    rank: int | None  # fleet.models.Status value; None unknown
    draining: bool
    sockets: int | None
    usage: int | None
    committed: int
    reserved: int  # live reservations only


# Deployments in chunks, each chunk one round trip answered as one string (a line per deployment):
# parsing thousands of small replies would cost the client far more than this costs Redis, and
# a chunk keeps each script short so other clients' commands are not held up behind it. Reads only.
# ARGV: deployment key prefix, holds key prefix, now_ms, request ids...
_SUMMARIES = """
local now = tonumber(ARGV[3])
local out = {}
for a = 4, #ARGV do
  local rid = ARGV[a]
  local f = redis.call('HMGET', ARGV[1] .. rid, 'rank', 'draining', 'sockets', 'usage')
  local committed, reserved = 0, 0
  local flat = redis.call('HGETALL', ARGV[2] .. rid)
  for i = 2, #flat, 2 do
    local size, exp, state = string.match(flat[i], '^(%d+)|(%d+)|(%a)$')
    if state == 's' then
      committed = committed + tonumber(size)
    elseif state == 'r' and tonumber(exp) > now then
      reserved = reserved + tonumber(size)
    end
  end
  if f[1] then
    local row = {rid, f[1], f[2] or '', f[3] or '', f[4] or '', committed, reserved}
    out[#out + 1] = table.concat(row, '|')
  end
end
return table.concat(out, '\\n')
"""
SUMMARY_CHUNK = 100

# A platform session that exists becomes one of our sessions on the deployment (state `s`) only
# if the accounting stays within the deployment's sockets (design.md §5 invariant 5): at once
# while its reservation is live and as large (its sockets were set aside), or, once it expired
# (the platform call outlived it), only if the session fits as things stand now. Usage the
# platform reported may already count this session, so the check is
# max(usage, committed + size) + reserved, not reserve's max(usage, committed) + reserved + size.
# Same hold format as fleet/store/deployments.lua.
# KEYS: deployment, holds   ARGV: session id, size, now_ms
# -> {1, 'held'} | {1, 'fits'} | {0, 'not_ready' | 'draining' | 'unknown' | 'full'}
_ADOPT = """
local dep, holds = KEYS[1], KEYS[2]
local sid, size, now = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local function take()
  redis.call('HSET', holds, sid, tostring(size) .. '|0|s')
  redis.call('HDEL', dep, 'empty_since')
end
local cur = redis.call('HGET', holds, sid)
if cur then
  local n, exp, state = string.match(cur, '^(%d+)|(%d+)|(%a)$')
  if (state == 's' or (tonumber(exp) or 0) > now) and size <= (tonumber(n) or 0) then
    take()
    return {1, 'held'}
  end
  redis.call('HDEL', holds, sid)  -- expired, or smaller than this session: it must fit on its own
end
if redis.call('HGET', dep, 'rank') ~= '5' then return {0, 'not_ready'} end
if redis.call('HGET', dep, 'draining') == '1' then return {0, 'draining'} end
local sockets = tonumber(redis.call('HGET', dep, 'sockets') or '')
local usage = tonumber(redis.call('HGET', dep, 'usage') or '')
if not sockets or not usage then return {0, 'unknown'} end
local committed, reserved = 0, 0
local flat = redis.call('HGETALL', holds)
for i = 2, #flat, 2 do
  local n, exp, state = string.match(flat[i], '^(%d+)|(%d+)|(%a)$')
  if state == 's' then
    committed = committed + tonumber(n)
  elseif state == 'r' and tonumber(exp) > now then
    reserved = reserved + tonumber(n)
  end
end
if math.max(usage, committed + size) + reserved > sockets then return {0, 'full'} end
take()
return {1, 'fits'}
"""


def _count(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def _summary(line: str) -> HoldsSummary:
    rid, rank, draining, sockets, usage, committed, reserved = line.split("|")
    parsed = int(rank) if rank.lstrip("-").isdigit() else -1
    return HoldsSummary(
        rid, parsed if 0 <= parsed <= 8 else None, draining == "1", _count(sockets), _count(usage),
        int(committed), int(reserved),
    )  # fmt: skip


class PlacementStore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._summaries = redis.register_script(_SUMMARIES)
        self._adopt = redis.register_script(_ADOPT)

    async def summaries(self, app: str, version: str, now: float) -> list[HoldsSummary]:
        """Status, draining, sockets, usage and held sockets of every deployment of an app version."""
        k = self.keys
        ids = sorted(str(i) for i in await self.redis.smembers(k.app_deployments(app, version)))
        prefixes: list[str | int] = [k.deployment(""), k.holds(""), int(now * 1000)]
        out: list[HoldsSummary] = []
        for start in range(0, len(ids), SUMMARY_CHUNK):
            text = await self._summaries(keys=[], args=[*prefixes, *ids[start : start + SUMMARY_CHUNK]])
            out.extend(_summary(line) for line in str(text).split("\n") if line)
        return out

    async def adopt_session(self, rid: str, session_id: str, size: int, now: float) -> tuple[bool, str]:
        """(allocator) Make a session the platform created ours on `rid`: (True, 'held') while its
        reservation is live, (True, 'fits') when it expired but the session fits, else (False, why)
        and its reservation is gone. Never lets reserved plus used exceed the sockets."""
        out = await self._adopt(
            keys=[self.keys.deployment(rid), self.keys.holds(rid)], args=[session_id, size, int(now * 1000)]
        )
        return bool(int(out[0])), str(out[1])

    # --- telemetry rankings -------------------------------------------------------------------
    # One hash per network: `at` and `partial` are read every second by each web process to see
    # whether its copy is current; the `order` (a kilobyte per hundred deployments) only on change.
    async def get_ranks_meta(self, networks: Sequence[str]) -> dict[str, tuple[float, bool]]:
        """Network -> (measured at, partial) of the stored ranking, for those that have one."""
        if not networks:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for n in networks:
                pipe.hmget(self.keys.telemetry_ranks(n), ["at", "partial"])
            raw = await pipe.execute()
        return {n: (float(at), partial == "1") for n, (at, partial) in zip(networks, raw, strict=True) if at}

    async def get_ranks(self, networks: Sequence[str]) -> dict[str, RanksDoc]:
        if not networks:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for n in networks:
                pipe.hmget(self.keys.telemetry_ranks(n), ["at", "partial", "order"])
            raw = await pipe.execute()
        return {
            n: RanksDoc(tuple(json.loads(order)), partial == "1", float(at))
            for n, (at, partial, order) in zip(networks, raw, strict=True)
            if at and order
        }

    async def put_ranks(self, network: str, doc: RanksDoc, ttl_s: float) -> None:
        key = self.keys.telemetry_ranks(network)
        fields = {
            "at": repr(doc.measured_at),
            "partial": "1" if doc.partial else "0",
            "order": json.dumps(doc.order),
        }
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.hset(key, mapping=fields)
            pipe.pexpire(key, max(1, int(ttl_s * 1000)))
            await pipe.execute()

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
                doc = {
                    "lat": f.latitude,
                    "lon": f.longitude,
                    "country": f.country,
                    "continent": f.continent,
                    "country_name": f.country_name,
                }
                body = json.dumps(doc) if f.located else "{}"
                ttl = ttl_s if f.located else unknown_ttl_s
                pipe.set(self.keys.geo_point(network), body, px=max(1, int(ttl * 1000)))
            await pipe.execute()

    # --- notices to clients ---------------------------------------------------------------------
    async def first_notice(self, session_id: str, state: str, ttl_s: float = 3600.0) -> bool:
        """True for the one process that should tell the client about this state (every web
        process reads the same event)."""
        key = self.keys.session_notice(session_id, state)
        return bool(await self.redis.set(key, "1", nx=True, px=int(ttl_s * 1000)))

    # --- a waiting session's location constraints ----------------------------------------------
    async def put_ask(self, session_id: str, doc: Mapping[str, object], ttl_s: float) -> None:
        await self.redis.set(self.keys.session_ask(session_id), json.dumps(doc), px=max(1, int(ttl_s * 1000)))

    async def get_ask(self, session_id: str) -> dict[str, object]:
        raw = await self.redis.get(self.keys.session_ask(session_id))
        return dict(json.loads(raw)) if raw else {}

    async def forget_ask(self, session_id: str) -> None:
        await self.redis.delete(self.keys.session_ask(session_id))
