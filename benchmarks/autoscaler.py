"""Autoscaler benchmark: decision time per full pass, and event-to-create latency.

    python -m benchmarks.autoscaler [--quick] [--redis-100k]

1. decision_pass: the pure core (`autoscaler.policy.decide`) over every policy of a fleet, for
   1k, 10k and 100k deployments spread over 100 and 1,000 policies (85 % READY with random usage,
   some idle, 10 % starting, 5 % stopping). Median of several passes; the time per deployment
   shows whether it grows linearly (ratio of the 100k to the 1k figure). Goal: 100k under 1 s.
2. redis_pass: the same pass as the scaler runs it (`Scaler.run_pass`: read every policy's
   deployments, holds, intents, memory and waiting sessions from Redis, decide, record), in
   dry-run, for 1k and 10k deployments (100k with --redis-100k); the baseline is the pure pass of
   the same size from phase 1.
3. latency: a demand step -- a placement reserves the socket that brings a policy to its
   threshold and publishes its event, as the allocator does -- to the platform's deploy call,
   for the event-driven scaler (default settings: 1 s tick, wakes on events) and for a scaler
   that polls every 30 seconds (the Agones default), on the same fleet and the same steps. The
   platform is an in-process fake that timestamps each deploy call; jobs run in-process, so the
   figure is the scaler's own reaction (with RQ add the queue hop, milliseconds). Goal: p99 < 1 s.

Uses FLEET_REDIS_URL (a private redis-server when none answers). Writes
benchmarks/results/autoscaler.json and benchmarks/results/autoscaler.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from autoscaler import policy as core
from autoscaler.jobs import InlineJobs
from autoscaler.loop import ScalerLoop
from autoscaler.scaler import Scaler
from autoscaler.tags import create_tags
from codema.errors import NotFound
from codema.schemas import (
    AppVersion,
    DeploymentListItem,
    DeploymentStatus,
    DeployRequest,
    DeployResponse,
    StopOutcome,
)
from fleet.bootstrap import Services, bootstrap
from fleet.devredis import PrivateRedis
from fleet.models import Fleet, Policy, Status, StatusReport
from fleet.settings import Settings
from fleet.store import AppVersionFacts, Store

RESULTS = Path(__file__).parent / "results"
APP, VERSION, SOCKETS = "bench", "v1", 10
NOW = 1_800_000_000.0


# --- 1. the pure pass ---------------------------------------------------------------------------------
def synthetic_fleet(deployments: int, policies: int, seed: int = 7) -> list[list[core.Observed]]:
    rng = random.Random(seed)
    per = [deployments // policies + (1 if i < deployments % policies else 0) for i in range(policies)]
    fleet: list[list[core.Observed]] = []
    n = 0
    for count in per:
        group = []
        for _ in range(count):
            n += 1
            roll = rng.random()
            rid = f"{n:012x}"
            if roll < 0.10:
                group.append(
                    core.Observed(
                        rid, Status.DEPLOYING, created_at=NOW - rng.uniform(0, 60), last_heard=NOW - 1
                    )
                )
            elif roll < 0.15:
                group.append(
                    core.Observed(
                        rid,
                        Status.READY,
                        sockets=SOCKETS,
                        usage=0,
                        created_at=NOW - 900,
                        last_heard=NOW - 1,
                        draining=True,
                        stop_requested=True,
                    )
                )
            else:
                usage = rng.choice((0, 0, rng.randint(1, SOCKETS)))
                group.append(
                    core.Observed(
                        rid,
                        Status.READY,
                        sockets=SOCKETS,
                        usage=usage,
                        created_at=NOW - 3600,
                        ready_at=NOW - 3500,
                        last_heard=NOW - rng.uniform(0, 10),
                        empty_since=NOW - rng.uniform(0, 900) if usage == 0 else None,
                    )
                )
        fleet.append(group)
    return fleet


def one_pass(fleet: list[list[core.Observed]], spec: core.Spec) -> int:
    acted = 0
    for group in fleet:
        d = core.decide(spec, group, now=NOW, peak=0)
        acted += d.acts
    return acted


def decision_pass(sizes: list[tuple[int, int]], repeats: int) -> list[dict[str, Any]]:
    rows = []
    for deployments, policies in sizes:
        fleet = synthetic_fleet(deployments, policies)
        per_policy = max(len(g) for g in fleet)
        spec = core.Spec(minimum=1, maximum=per_policy * 2, threshold=0.8, idle_s=300, sockets=SOCKETS)
        one_pass(fleet, spec)  # warm-up
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            one_pass(fleet, spec)
            times.append(time.perf_counter() - started)
        median = statistics.median(times)
        rows.append(
            {
                "deployments": deployments,
                "policies": policies,
                "repeats": repeats,
                "median_s": round(median, 5),
                "max_s": round(max(times), 5),
                "us_per_deployment": round(median / deployments * 1e6, 3),
            }
        )
        print(
            f"  pass {deployments:>7} deployments / {policies:>5} policies: {median * 1000:8.1f} ms",
            file=sys.stderr,
        )
    return rows


# --- a platform for the scaler: in-process, timestamps deploy calls ---------------------------------------
@dataclass
class FakeDeployment:
    request_id: str
    tags: list[str]
    usage: int = 0
    status: str = "Status.READY"


@dataclass
class BenchPlatform:
    """The Codema client's interface, in memory: every call answers at once."""

    deployments: dict[str, FakeDeployment] = field(default_factory=dict)
    deploy_times: list[tuple[float, str]] = field(default_factory=list)  # (time.time(), policy)

    async def deploy(self, request: DeployRequest, *, intent: str | None = None) -> DeployResponse:
        tags = list(request.tags or [])
        self.deploy_times.append((time.time(), next((t[7:] for t in tags if t.startswith("policy:")), "")))
        rid = uuid.uuid4().hex[:12]
        self.deployments[rid] = FakeDeployment(rid, [*tags, f"intent:{intent}"], status="Status.DEPLOYING")
        return DeployResponse(request_id=rid)

    async def find_by_intent(self, intent: str) -> DeploymentListItem | None:
        return None

    async def status(self, request_id: str) -> DeploymentStatus:
        d = self.deployments.get(request_id)
        if d is None:
            raise NotFound("no such deployment", endpoint="status", status=404)
        return DeploymentStatus(
            request_id=request_id,
            current_status=d.status,
            sockets=SOCKETS,
            sockets_usage=d.usage,
            app_name=APP,
            app_version=VERSION,
            tags=d.tags,
        )

    async def stop(self, request_id: str) -> StopOutcome:
        self.deployments.pop(request_id, None)
        return StopOutcome.STOPPING

    async def list_deployments(self) -> list[DeploymentListItem]:
        return [
            DeploymentListItem(
                request_id=d.request_id,
                tags=d.tags,
                sockets=SOCKETS,
                sockets_usage=d.usage,
                ready=d.status == "Status.READY",
                status=d.status,
            )
            for d in self.deployments.values()
        ]

    async def get_app_version(self, app: str, version: str) -> AppVersion:
        return AppVersion.model_validate(
            {"name": version, "session_config": {"kind": "Seat", "sockets": SOCKETS}}
        )

    async def aclose(self) -> None:
        return None


def bench_services(redis_url: str, prefix: str, fake: BenchPlatform, **settings: Any) -> Services:
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "redis_prefix": prefix,
        "reconcile_interval_s": 3600.0,
        "account_max_deployments": 10**6,
        "account_max_creates_per_minute": 10**6,
        "public_url": "http://127.0.0.1:9",
        **settings,
    }
    store = Store(Redis.from_url(redis_url, decode_responses=True), prefix)
    jobs = InlineJobs()
    services = bootstrap(Settings(**values), store=store, client=fake, jobs=jobs)  # type: ignore[arg-type]
    jobs.services = services
    return services


async def seed_fleet(
    services: Services,
    fake: BenchPlatform,
    deployments: int,
    policies: int,
    usage: int,
    *,
    our_sessions: bool = False,
) -> list[str]:
    """`policies` policies with `deployments` READY deployments between them, `usage` sockets used on each
    (with `our_sessions`, by `usage` one-player sessions we placed, as when every player comes through
    the allocator). Returns one request id per policy (where the demand step lands)."""
    store, now = services.store, services.clock()
    await store.fleets.put_fleet(Fleet(name="bench", enabled=True))
    await store.fleets.link("bench", APP, VERSION, {"app": APP, "app_version": VERSION, "fleet": "bench"})
    await store.fleets.put_app_version(AppVersionFacts(APP, VERSION, "Seat", SOCKETS, 60), ttl_s=3600)
    per = max(1, deployments // policies)
    firsts = []
    for p in range(policies):
        name = f"p{p:04d}"
        await store.fleets.put_policy(
            "bench",
            Policy(
                name=name,
                enabled=True,
                type="Location",
                minimum=1,
                maximum=per * 4,
                threshold=0.8,
                data={"filters": [{"field": "continent", "values": ["Europe"], "filter_type": "any"}]},
                idle_s=600,
                cooldown_s=60,
            ),
        )
        for i in range(per):
            rid = f"{p:06x}{i:06x}"
            tags = [*create_tags("bench", name, APP, VERSION), f"intent:{rid}"]
            fake.deployments[rid] = FakeDeployment(rid, tags, usage=usage)
            report = StatusReport(
                request_id=rid,
                status_raw="Status.READY",
                sockets=SOCKETS,
                usage=usage,
                app=APP,
                version=VERSION,
                tags=tuple(tags),
                source="poll",
            )
            await store.deployments.apply(report, now)
            await store.deployments.record_owner(
                rid, fleet="bench", policy=name, intent=rid, app=APP, version=VERSION, now=now
            )
            for n in range(usage if our_sessions else 0):
                await store.deployments.confirm(rid, f"seed-{rid}-{n}", 1)
            if i == 0:
                firsts.append(rid)
    await store.coord.mark_rebuilt(now)
    return firsts


# --- 2. the pass with Redis ---------------------------------------------------------------------------------
async def redis_pass(redis_url: str, sizes: list[tuple[int, int]], repeats: int) -> list[dict[str, Any]]:
    rows = []
    for deployments, policies in sizes:
        fake = BenchPlatform()
        prefix = f"bench-as-{uuid.uuid4().hex[:8]}"
        services = bench_services(redis_url, prefix, fake, dry_run=True)
        try:
            await seed_fleet(services, fake, deployments, policies, usage=3)
            lease = await services.store.coord.acquire_lease("bench", 60)
            scaler = Scaler(services)
            await scaler.run_pass(lease.token)  # warm-up (first records)
            times = []
            for _ in range(repeats):
                started = time.perf_counter()
                await scaler.run_pass(lease.token)
                times.append(time.perf_counter() - started)
            median = statistics.median(times)
            rows.append(
                {
                    "deployments": deployments,
                    "policies": policies,
                    "repeats": repeats,
                    "median_s": round(median, 4),
                    "us_per_deployment": round(median / deployments * 1e6, 2),
                }
            )
            print(f"  redis pass {deployments:>7} / {policies:>5}: {median * 1000:8.1f} ms", file=sys.stderr)
        finally:
            await services.store.wipe()
            await services.store.aclose()
    return rows


# --- 3. event-to-create latency -----------------------------------------------------------------------------
class PollingLoop(ScalerLoop):
    """The baseline: looks every `scaler_tick_s` (30 s), whatever happens in between."""

    async def wait_for_events(self, timeout_s: float) -> int:
        await asyncio.sleep(self.settings.scaler_tick_s)
        return 0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


async def latency(redis_url: str, *, polling: bool, steps: int, spread_s: float) -> dict[str, Any]:
    """One scaler, `steps` policies at 7 of 10 sockets; at random times within `spread_s` one
    placement on each brings it to 8 of 10 (threshold 0.8). Latency = deploy call - placement."""
    fake = BenchPlatform()
    prefix = f"bench-lat-{uuid.uuid4().hex[:8]}"
    tick = {"scaler_tick_s": 30.0, "lease_ttl_s": 90.0} if polling else {}
    services = bench_services(redis_url, prefix, fake, **tick)
    # Demand per deployment is the larger of the platform's usage and our sessions plus reservations:
    # the 7 used sockets are sessions of ours, so that the step's reservation is the 8th.
    firsts = await seed_fleet(services, fake, steps, steps, usage=7, our_sessions=True)
    loop = (PollingLoop if polling else ScalerLoop)(services, "bench")
    stop = asyncio.Event()
    task = asyncio.get_running_loop().create_task(loop.run(stop=stop))
    rng = random.Random(11)
    try:
        while not loop.leader:
            await asyncio.sleep(0.01)
        await asyncio.sleep(1.0 if not polling else rng.uniform(0, 1))
        offsets = sorted(rng.uniform(0, spread_s) for _ in range(steps))
        t_start = time.monotonic()
        stepped: dict[str, float] = {}
        for i, (offset, rid) in enumerate(zip(offsets, firsts, strict=True)):
            await asyncio.sleep(max(0.0, t_start + offset - time.monotonic()))
            now = time.time()
            await services.store.deployments.reserve(rid, f"s{i}", 1, now, 600)
            await services.store.coord.publish("placement", request_id=rid, app=APP, version=VERSION)
            stepped[f"p{i:04d}"] = now
        deadline = time.monotonic() + (40 if polling else 10)
        while len({p for _, p in fake.deploy_times}) < steps and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
        await loop.close()
        await services.store.wipe()
        await services.store.aclose()
    first_call: dict[str, float] = {}
    for at, policy in fake.deploy_times:
        first_call.setdefault(policy, at)
    lat = [first_call[p] - t for p, t in stepped.items() if p in first_call]
    missing = steps - len(lat)
    result = {
        "steps": steps,
        "answered": len(lat),
        "missing": missing,
        "p50_s": round(percentile(lat, 50), 4) if lat else None,
        "p99_s": round(percentile(lat, 99), 4) if lat else None,
        "max_s": round(max(lat), 4) if lat else None,
        "extra_creates": len(fake.deploy_times) - len(first_call),
    }
    kind = "polling 30 s" if polling else "event-driven"
    print(
        f"  latency {kind}: p50 {result['p50_s']} s, p99 {result['p99_s']} s ({len(lat)}/{steps})",
        file=sys.stderr,
    )
    return result


# --- running it ---------------------------------------------------------------------------------------------
async def redis_url_or_private() -> tuple[str, PrivateRedis | None]:
    url = os.environ.get("FLEET_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        client = Redis.from_url(url, socket_connect_timeout=1)
        await client.ping()
        await client.aclose()
        return url, None
    except Exception:
        server = PrivateRedis().start()
        return server.url, server


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Autoscaler benchmark",
        "",
        "## Decision time per full pass (pure core)",
        "",
        "| deployments | policies | median | µs / deployment |",
        "|---:|---:|---:|---:|",
    ]
    for r in result["decision_pass"]:
        ms = r["median_s"] * 1000
        lines.append(f"| {r['deployments']:,} | {r['policies']:,} | {ms:.1f} ms | {r['us_per_deployment']} |")
    lines += [
        "",
        f"Growth: {result['linear_growth']}",
        "",
        "## Full pass with Redis (dry-run)",
        "",
        "| deployments | policies | median | ratio to the pure pass |",
        "|---:|---:|---:|---:|",
    ]
    for r in result["redis_pass"]:
        ms = r["median_s"] * 1000
        lines.append(f"| {r['deployments']:,} | {r['policies']:,} | {ms:.1f} ms | {r['ratio_to_pure']} |")
    ev, po = result["latency"]["event_driven"], result["latency"]["polling_30s"]
    lines += [
        "",
        "## Demand step to deploy call",
        "",
        "| scaler | p50 | p99 | steps |",
        "|---|---:|---:|---:|",
        f"| event-driven (1 s tick) | {ev['p50_s']} s | {ev['p99_s']} s | {ev['answered']}/{ev['steps']} |",
        f"| polling every 30 s | {po['p50_s']} s | {po['p99_s']} s | {po['answered']}/{po['steps']} |",
        "",
        f"Ratios (baseline / event-driven): {result['ratios']}",
        "",
        f"Goals: {result['goals']}",
        "",
    ]
    return "\n".join(lines)


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.autoscaler", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="fewer repeats and steps (a smoke run)")
    parser.add_argument(
        "--redis-100k", action="store_true", help="also time the Redis pass at 100k deployments"
    )
    args = parser.parse_args(argv)
    repeats = 2 if args.quick else 5
    sizes = [(n, p) for p in (100, 1000) for n in (1_000, 10_000, 100_000)]
    print("decision pass (pure core)", file=sys.stderr)
    pure = decision_pass(sizes, repeats)
    per = {(r["deployments"], r["policies"]): r for r in pure}
    growth = {
        f"{p}_policies": round(
            per[(100_000, p)]["us_per_deployment"] / per[(1_000, p)]["us_per_deployment"], 2
        )
        for p in (100, 1000)
    }
    url, private = await redis_url_or_private()
    try:
        redis_sizes = [(1_000, 100), (10_000, 100)] + ([(100_000, 1000)] if args.redis_100k else [])
        print("pass with Redis", file=sys.stderr)
        with_redis = await redis_pass(url, redis_sizes, 2 if args.quick else 3)
        for r in with_redis:
            r["ratio_to_pure"] = round(r["median_s"] / per[(r["deployments"], r["policies"])]["median_s"], 1)
        print("latency", file=sys.stderr)
        steps = 10 if args.quick else 40
        event = await latency(url, polling=False, steps=steps, spread_s=steps * 0.25)
        poll = await latency(url, polling=True, steps=steps, spread_s=30.0 if args.quick else 60.0)
    finally:
        if private is not None:
            private.stop()
    result: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "decision_pass": pure,
        "linear_growth": {"us_per_deployment_100k_over_1k": growth},
        "redis_pass": with_redis,
        "latency": {"event_driven": event, "polling_30s": poll},
        "ratios": {
            "p50_polling_over_event": round(poll["p50_s"] / event["p50_s"], 1) if event["p50_s"] else None,
            "p99_polling_over_event": round(poll["p99_s"] / event["p99_s"], 1) if event["p99_s"] else None,
        },
        "goals": {
            "event_to_create_p99_under_1s": bool(
                event["p99_s"] is not None and event["p99_s"] < 1.0 and not event["missing"]
            ),
            "pass_100k_under_1s": all(per[(100_000, p)]["median_s"] < 1.0 for p in (100, 1000)),
            "linear_growth_within_2x": all(v <= 2.0 for v in growth.values()),
        },
        "run": {"quick": args.quick, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "autoscaler.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "autoscaler.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
