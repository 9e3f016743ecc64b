"""Deployments in Redis: facts from the platform, ownership, holds (reservations and sessions),
draining. Status only moves forward; every transition appends one event, inside the same script.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from fleet.models import Deployment, DeploymentLocation, Status, StatusReport, parse_count
from fleet.store.keys import Keys

SCRIPT_FILE = "deployments.lua"
TERMINAL_KEEP_S = 24 * 3600  # a terminal deployment's facts stay readable this long


def load_scripts(redis: Redis, filename: str = SCRIPT_FILE) -> dict[str, AsyncScript]:
    """Split a Lua file on `--@ name` markers; the `holds_summary` section is a shared prelude."""
    text = resources.files("fleet.store").joinpath(filename).read_text()
    sections: dict[str, list[str]] = {}
    current = "_header"
    for line in text.splitlines():
        if line.startswith("--@ "):
            current = line[4:].strip()
            sections[current] = []
        else:
            sections.setdefault(current, []).append(line)
    prelude = "\n".join(sections.pop("holds_summary", []))
    sections.pop("_header", None)
    return {name: redis.register_script(prelude + "\n" + "\n".join(body)) for name, body in sections.items()}


@dataclass(frozen=True)
class ReportResult:
    """What one status report changed."""

    transition: bool
    previous: Status | None
    created: bool
    usage_changed: bool


@dataclass(frozen=True)
class HoldResult:
    ok: bool
    reason: str
    free_after: int = 0


@functools.lru_cache(maxsize=1024)
def _location_json(location: DeploymentLocation) -> str:
    return location.model_dump_json()  # frozen, and a fleet has a few dozen: dumped once each


def _encode_report(report: StatusReport, now: float) -> bytes:
    rank: int | None = None
    if report.status_raw is not None:
        status = report.status
        rank = int(status) if status is not None else -1
    facts = {k: v for k, v in (("app", report.app), ("version", report.version)) if v}
    snapshot: dict[str, str] = {}
    for name, value in (
        ("fqdn", report.fqdn),
        ("public_ip", report.public_ip),
        ("error_detail", report.error_detail),
    ):
        if value:
            facts[name] = value
    if report.sockets is not None:
        facts["sockets"] = str(report.sockets)
    if report.ports is not None:
        snapshot["ports"] = _dumps(dict(report.ports), sort_keys=True).decode()
    if report.location is not None:
        snapshot["location"] = _location_json(report.location)
    if report.tags is not None:
        snapshot["tags"] = _dumps(list(report.tags)).decode()
    payload: dict[str, Any] = {
        "request_id": report.request_id,
        "status_raw": report.status_raw or "",
        "source": report.source,
        "now": repr(now),
        "facts": facts or {"request_id": report.request_id},
        "snapshot": snapshot or None,
        "usage": None if report.usage is None else str(report.usage),
    }
    if rank is not None:
        payload["rank"] = rank
    return _dumps(payload)


def _dumps(value: Any, *, sort_keys: bool = False) -> bytes:
    """orjson, or Python's json for what orjson refuses to write: a lone surrogate, which the
    platform client's responses (read by Python's json) may carry; escaped as json.dumps does."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS if sort_keys else None)
    except TypeError:
        return json.dumps(value, sort_keys=sort_keys).encode()


def decode_deployment(raw: Mapping[str, str], holds: Mapping[str, str], now_ms: int) -> Deployment:
    """Build a Deployment from its hash and holds; expired reservations are ignored."""
    committed = reserved = sessions = 0
    for value in holds.values():
        size_s, exp_s, state = ([*value.split("|"), "", "", ""])[:3]
        size = int(size_s or 0)
        if state == "s":
            committed += size
            sessions += 1
        elif int(exp_s or 0) > now_ms:
            reserved += size
    rank = int(raw.get("rank", "-1") or -1)
    location = None
    if raw.get("location"):
        location = DeploymentLocation.model_validate_json(raw["location"])
    return Deployment(
        request_id=raw.get("request_id", ""),
        app=raw.get("app", ""),
        version=raw.get("version", ""),
        status_raw=raw.get("status_raw", ""),
        status=Status(rank) if 0 <= rank <= 8 else None,
        sockets=parse_count(raw.get("sockets")),
        usage=parse_count(raw.get("usage")),
        fqdn=raw.get("fqdn", ""),
        public_ip=raw.get("public_ip", ""),
        ports=json.loads(raw["ports"]) if raw.get("ports") else {},
        location=location,
        tags=json.loads(raw["tags"]) if raw.get("tags") else [],
        fleet=raw.get("fleet", ""),
        policy=raw.get("policy", ""),
        intent=raw.get("intent", ""),
        error_detail=raw.get("error_detail", ""),
        created_at=float(raw.get("created_at", 0) or 0),
        ready_at=float(raw["ready_at"]) if raw.get("ready_at") else None,
        last_heard=float(raw.get("last_heard", 0) or 0),
        empty_since=float(raw["empty_since"]) if raw.get("empty_since") else None,
        draining=raw.get("draining") == "1",
        stop_requested_at=float(raw["stop_requested_at"]) if raw.get("stop_requested_at") else None,
        released_at=float(raw["released_at"]) if raw.get("released_at") else None,
        sessions=sessions,
        committed=committed,
        reserved=reserved,
    )


class DeploymentStore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._scripts = load_scripts(redis)

    async def apply(self, report: StatusReport, now: float) -> ReportResult:
        """Record a status report atomically: forward-only status, one event per transition."""
        (result,) = await self.apply_many([(report, now)])
        if isinstance(result, Exception):
            raise result
        return result

    async def apply_many(
        self, reports: Sequence[tuple[StatusReport, float]]
    ) -> list[ReportResult | Exception]:
        """`apply` for several (report, now) in one script call: each report is applied on its own,
        in order. A report whose part failed gets its exception in its place (the others stand);
        when the call itself fails (Redis unreachable, out of memory) it raises."""
        k = self.keys
        keys = [k.live_deployments(), k.events()]
        args = []
        for report, now in reports:
            rid = report.request_id
            index = k.app_deployments(report.app, report.version) if report.app and report.version else ""
            keys += (k.deployment(rid), k.holds(rid), index)  # '' = no index to keep
            args.append(_encode_report(report, now))
        outs: list[Any] = await self._scripts["apply_reports"](keys=keys, args=args)
        results: list[ReportResult | Exception] = []
        for (report, _now), out in zip(reports, outs, strict=True):
            results.append(out if isinstance(out, Exception) else await self._report_result(report, out))
        return results

    async def _report_result(self, report: StatusReport, out: Sequence[Any]) -> ReportResult:
        transition, previous, created, usage_changed = (int(x) for x in out)
        status = report.status
        if transition and status is not None and status.terminal:
            await self._clean_up_terminal(report.request_id)
        return ReportResult(
            bool(transition),
            Status(previous) if 0 <= previous <= 8 else None,
            bool(created),
            bool(usage_changed),
        )

    async def _clean_up_terminal(self, rid: str) -> None:
        """A deployment that ended leaves the indexes, its holds go, and its facts expire."""
        # Index cleanup happens after the script: readers filter on status anyway, so a member that
        # lingers for a moment is harmless.
        raw = await self.redis.hmget(self.keys.deployment(rid), ["fleet", "policy", "app", "version"])
        fleet, policy, app, version = (v or "" for v in raw)
        async with self.redis.pipeline(transaction=False) as pipe:
            if fleet and policy:
                pipe.srem(self.keys.policy_deployments(fleet, policy), rid)
            if app and version:
                pipe.srem(self.keys.app_deployments(app, version), rid)
            pipe.expire(self.keys.deployment(rid), TERMINAL_KEEP_S)
            pipe.delete(self.keys.holds(rid))
            await pipe.execute()

    async def record_owner(
        self, rid: str, *, fleet: str, policy: str, intent: str, app: str, version: str, now: float
    ) -> None:
        """Tie a deployment to the policy that created (or adopted) it. Keeps any earlier facts."""
        k = self.keys
        await self.apply(StatusReport(request_id=rid, app=app, version=version, source="create"), now)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(k.deployment(rid), mapping={"fleet": fleet, "policy": policy, "intent": intent})
            pipe.sadd(k.policy_deployments(fleet, policy), rid)
            await pipe.execute()
        # A webhook may already have said the deployment ended before we recorded it.
        current = await self.get(rid, now)
        if current is not None and current.status is not None and current.status.terminal:
            await self._clean_up_terminal(rid)

    async def get(self, rid: str, now: float) -> Deployment | None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.deployment(rid))
            pipe.hgetall(self.keys.holds(rid))
            raw, holds = await pipe.execute()
        if not raw:
            return None
        return decode_deployment(raw, holds, int(now * 1000))

    async def get_many(self, rids: Iterable[str], now: float) -> list[Deployment]:
        ids = list(rids)
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for rid in ids:
                pipe.hgetall(self.keys.deployment(rid))
                pipe.hgetall(self.keys.holds(rid))
            raw = await pipe.execute()
        now_ms = int(now * 1000)
        return [decode_deployment(raw[i], raw[i + 1], now_ms) for i in range(0, len(raw), 2) if raw[i]]

    async def live_ids(self) -> set[str]:
        return set(await self.redis.smembers(self.keys.live_deployments()))

    async def live(self, now: float) -> list[Deployment]:
        return await self.get_many(sorted(await self.live_ids()), now)

    async def of_policy(self, fleet: str, policy: str, now: float) -> list[Deployment]:
        ids = await self.redis.smembers(self.keys.policy_deployments(fleet, policy))
        return await self.get_many(sorted(ids), now)

    async def of_app_version(self, app: str, version: str, now: float) -> list[Deployment]:
        ids = await self.redis.smembers(self.keys.app_deployments(app, version))
        return await self.get_many(sorted(ids), now)

    # --- holds --------------------------------------------------------------------------------
    async def reserve(self, rid: str, session_id: str, size: int, now: float, ttl_s: float) -> HoldResult:
        out = await self._scripts["reserve"](
            keys=[self.keys.deployment(rid), self.keys.holds(rid)],
            args=[session_id, size, int(now * 1000), int(ttl_s * 1000)],
        )
        return HoldResult(bool(int(out[0])), str(out[1]), int(out[2]) if len(out) > 2 else 0)

    async def confirm(self, rid: str, session_id: str, size: int) -> None:
        await self._scripts["confirm"](
            keys=[self.keys.deployment(rid), self.keys.holds(rid)], args=[session_id, size]
        )

    async def confirm_held(self, rid: str, session_id: str, size: int, now: float) -> bool:
        """(allocator) Like `confirm`, but only while the reservation is live; False when it expired
        or is gone (its sockets may have been reserved by another session meanwhile)."""
        out = await self._scripts["confirm_held"](
            keys=[self.keys.deployment(rid), self.keys.holds(rid)], args=[session_id, size, int(now * 1000)]
        )
        return bool(int(out))

    async def release(self, rid: str, session_id: str, now: float) -> bool:
        out = await self._scripts["release"](
            keys=[self.keys.deployment(rid), self.keys.holds(rid)], args=[session_id, int(now * 1000)]
        )
        return bool(int(out))

    async def resize(self, rid: str, session_id: str, size: int, now: float) -> HoldResult:
        out = await self._scripts["resize"](
            keys=[self.keys.deployment(rid), self.keys.holds(rid)], args=[session_id, size, int(now * 1000)]
        )
        return HoldResult(bool(int(out[0])), str(out[1]) if len(out) > 1 else "ok")

    # --- draining and stopping ----------------------------------------------------------------
    async def try_drain(self, rid: str, now: float, *, stuck: bool = False) -> HoldResult:
        """Mark for stopping if nothing is on it; atomic against `reserve`."""
        out = await self._scripts["try_drain"](
            keys=[self.keys.deployment(rid), self.keys.holds(rid)],
            args=[int(now * 1000), "1" if stuck else "0"],
        )
        return HoldResult(bool(int(out[0])), str(out[1]))

    async def undrain(self, rid: str) -> None:
        await self._scripts["undrain"](keys=[self.keys.deployment(rid)], args=[])

    async def mark_stop_requested(self, rid: str, now: float) -> None:
        await self.redis.hset(self.keys.deployment(rid), "stop_requested_at", repr(now))

    async def forget(self, rid: str) -> None:
        """Drop a deployment entirely (tests and operator clean-up only)."""
        d = await self.get(rid, 0.0)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.deployment(rid), self.keys.holds(rid))
            pipe.srem(self.keys.live_deployments(), rid)
            if d is not None and d.fleet:
                pipe.srem(self.keys.policy_deployments(d.fleet, d.policy), rid)
            if d is not None and d.app:
                pipe.srem(self.keys.app_deployments(d.app, d.version), rid)
            await pipe.execute()
