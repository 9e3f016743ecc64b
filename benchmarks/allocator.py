"""Allocator benchmark: placement throughput and latency, and overbooking under contention.

    python -m benchmarks.allocator [--placements N] [--deployments N] [--concurrency N] [--quick]

Uses FLEET_REDIS_URL (a private redis-server when none answers) and starts the embedded simulator
(`fleet sim`) as its own process. Four phases, each a ratio against a baseline of the same run:

1. redis: a bare Redis round trip (PING) at the same concurrency, the floor of any placement;
2. decide_reserve: the allocator's own path in-process, without the platform call: read the
   players' cached location and telemetry, rank 1,000 READY deployments, reserve atomically;
3. end_to_end: the same plus the simulator's session create and the confirm (`Allocator.attempt`);
4. four_processes: four OS processes place mixed Seat sessions at once on scarce capacity (far
   more demand than sockets); afterwards every deployment is checked against the simulator's
   ground truth: sockets_usage <= sockets, every session we linked is linked on the platform, and
   our committed sockets equal the platform's usage (overbooked must be 0).

Writes benchmarks/results/allocator.json and prints a markdown table. Goals (issue 6): at least
1,000 placements/s and p99 under 20 ms for decide_reserve.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import random
import secrets
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis

from allocator.placement import Point, rtt_ms
from allocator.service import Allocator, ask_of, new_session_id
from codema.schemas import DeploymentStatus
from codema.sim.geo import LOCATIONS
from fleet.bootstrap import bootstrap
from fleet.callbacks import callback_url
from fleet.devredis import PrivateRedis
from fleet.models import DeploymentLocation, SessionRecord, StatusReport
from fleet.procs import ProcessGroup, wait_http
from fleet.settings import Settings
from fleet.store import Store
from fleet.store.placement import GeoFact, PlacementStore, RanksDoc

RESULTS = Path(__file__).parent / "results" / "allocator.json"
APP, VERSION = "bench", "v1"
NETWORKS = 256  # distinct player /24s
PLAYER_CENTRES = [
    (51.5, -0.1, "GB", "Europe"), (48.9, 2.3, "FR", "Europe"), (40.7, -74.0, "US", "North America"),
    (35.7, 139.7, "JP", "Asia"), (-23.5, -46.6, "BR", "South America"), (52.5, 13.4, "DE", "Europe"),
    (-33.9, 151.2, "AU", "Oceania"), (19.1, 72.9, "IN", "Asia"),
]  # fmt: skip
SIM_TOKEN = "bench-sim-token"
GOAL_PER_S = 1000.0
GOAL_P99_MS = 20.0


def player_ip(net: int, host: int = 10) -> str:
    return f"81.{net // 256}.{net % 256}.{host}"


def network(net: int) -> str:
    return f"81.{net // 256}.{net % 256}.0/24"


@dataclass
class Run:
    count: int
    seconds: float
    latencies_s: list[float]
    outcomes: Counter[str]

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies_s)
        q = statistics.quantiles(lat, n=100, method="inclusive") if len(lat) > 1 else lat * 99
        return {
            "operations": self.count,
            "seconds": round(self.seconds, 3),
            "per_s": round(self.count / self.seconds, 1),
            "p50_ms": round(q[49] * 1000, 3),
            "p99_ms": round(q[98] * 1000, 3),
            "max_ms": round(lat[-1] * 1000, 3),
            "outcomes": dict(self.outcomes),
        }


async def load(n: int, concurrency: int, op: Callable[[int], Awaitable[str]]) -> Run:
    """Run `op(i)` for i < n with `concurrency` workers; per-op latency and outcome."""
    latencies: list[float] = []
    outcomes: Counter[str] = Counter()
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            t0 = time.perf_counter()
            outcome = await op(i)
            latencies.append(time.perf_counter() - t0)
            outcomes[outcome] += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Run(n, time.perf_counter() - started, latencies, outcomes)


# --- setup ---------------------------------------------------------------------------------------
def redis_url() -> tuple[str, PrivateRedis | None]:
    url = Settings().redis_url
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
        return url, None
    except Exception:
        server = PrivateRedis().start()
        return server.url, server


def settings_for(url: str, prefix: str, sim_url: str) -> Settings:
    return Settings(redis_url=url, redis_prefix=prefix, codema_api_url=sim_url, codema_api_token=SIM_TOKEN,
                    reservation_ttl_s=60.0, telemetry_ttl_s=3600.0)  # fmt: skip


def location_of(i: int) -> DeploymentLocation:
    loc = LOCATIONS[i % len(LOCATIONS)]
    return DeploymentLocation(city=loc.city, country=loc.country, continent=loc.continent,
                              latitude=loc.latitude, longitude=loc.longitude)  # fmt: skip


async def seed_synthetic(store: Store, n: int, sockets: int) -> list[tuple[str, Point]]:
    """`n` READY deployments in our Store only (phase 2 never calls the platform)."""
    out = []
    for start in range(0, n, 100):
        batch = []
        for i in range(start, min(n, start + 100)):
            rid, loc = f"{i:012x}", location_of(i)
            report = StatusReport(rid, "Status.READY", sockets=sockets, usage=0, app=APP, version=VERSION,
                                  location=loc, source="poll")  # fmt: skip
            batch.append(store.deployments.apply(report, time.time()))
            out.append((rid, Point(loc.latitude or 0, loc.longitude or 0)))
        await asyncio.gather(*batch)
    return out


async def warm_caches(store: Store, deployments: list[tuple[str, Point]], seed: int) -> None:
    """Every player network located and measured (complete telemetry, geography plus jitter)."""
    rng = random.Random(seed)
    cache = PlacementStore(store.redis, store.keys)
    geo, now = {}, time.time()
    for net in range(NETWORKS):
        lat, lon, cc, cont = PLAYER_CENTRES[net % len(PLAYER_CENTRES)]
        here = Point(lat + rng.uniform(-2, 2), lon + rng.uniform(-2, 2))
        geo[network(net)] = GeoFact(here.latitude, here.longitude, cc, cont)
        order = sorted(deployments, key=lambda d: rtt_ms(here, d[1]) + rng.uniform(0, 5))
        await cache.put_ranks(network(net), RanksDoc(tuple(r for r, _ in order), False, now), 3600)
    await cache.put_geo(geo, 3600, 3600)


def record_for(i: int, rng: random.Random, max_players: int = 1) -> SessionRecord:
    net = i % NETWORKS
    players = [player_ip(net, 10 + k) for k in range(rng.randint(1, max_players))]
    return SessionRecord(session_id=new_session_id(), app=APP, version=VERSION, kind="Seat", ips=players,
                         size=len(players), create_time=time.time())  # fmt: skip


async def decide_and_reserve(alloc: Allocator, record: SessionRecord) -> str:
    """Exactly the allocator's path up to the reservation (service.Allocator.attempt, first step)."""
    players = await alloc.insight.players(record.ips, record.geo)
    snap = await alloc.candidates.get(record.app, record.version)
    decision, rid = await alloc.reserve_best(record, ask_of(record, players, {}), players, snap, set())
    return decision.reason.value if rid else "no_room"


# --- phases --------------------------------------------------------------------------------------
async def phase_redis(url: str, n: int, concurrency: int) -> dict[str, Any]:
    redis = Redis.from_url(url, decode_responses=True)
    try:
        await redis.ping()

        async def ping(i: int) -> str:
            await redis.ping()
            return "ok"

        return (await load(n, concurrency, ping)).summary()
    finally:
        await redis.aclose()


async def phase_decide(
    url: str, sim_url: str, n: int, deployments: int, concurrency: int, repeats: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """`repeats` measurements, each right after its own Redis baseline (this machine is shared:
    the ratio to the baseline of the same moment is the figure that travels). The median run by
    p99 is the result; every run is kept."""
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    services = bootstrap(settings_for(url, prefix, sim_url))
    alloc = Allocator(services)
    try:
        deps = await seed_synthetic(services.store, deployments, sockets=64)
        await warm_caches(services.store, deps, seed=1)
        rng = random.Random(2)
        await load(500, concurrency, lambda i: decide_and_reserve(alloc, record_for(i, rng)))  # warm-up
        runs = []
        for _ in range(repeats):
            base = await phase_redis(url, n, concurrency)
            run = (
                await load(n, concurrency, lambda i: decide_and_reserve(alloc, record_for(i, rng)))
            ).summary()
            runs.append((run, base))
        runs.sort(key=lambda rb: rb[0]["p99_ms"])
        run, base = runs[len(runs) // 2]
        extra = {
            "deployments": deployments,
            "concurrency": concurrency,
            "rankings_reused": alloc.rankings.hits,
            "rankings_computed": alloc.rankings.misses,
            "background_tasks_started": len(alloc.background),
            "runs": [{"per_s": r["per_s"], "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"],
                      "redis_per_s": b["per_s"], "redis_p50_ms": b["p50_ms"]} for r, b in runs],
        }  # fmt: skip
        return {**extra, **run}, base
    finally:
        await alloc.aclose()
        await services.store.wipe()
        await services.aclose()


# --- the simulator -------------------------------------------------------------------------------
def start_sim() -> tuple[ProcessGroup, str]:
    from fleet.devredis import free_port

    port = free_port()
    group = ProcessGroup(env={**os.environ, "CODEMA_API_TOKEN": SIM_TOKEN})
    proc = group.fleet("sim", "sim", "--host", "127.0.0.1", "--port", str(port), "--boot-s", "0.2",
                       "--tick-s", "0.02")  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/v1/locations", proc=proc, any_answer=True)
    return group, url


async def sim_deployments(sim_url: str, app: str, n: int, sockets: int) -> list[dict[str, Any]]:
    """An app version and `n` READY deployments on the simulator, spread over its cities."""
    headers = {"Authorization": f"token {SIM_TOKEN}"}
    async with httpx.AsyncClient(base_url=sim_url, headers=headers, timeout=30) as sim:
        await sim.post("/v1/app", json={"name": app, "is_active": True, "image": ""})
        version = {
            "name": VERSION, "docker_repository": "registry.local", "docker_image": app, "docker_tag": "1",
            "req_cpu": 256, "req_memory": 256,
            "session_config": {"kind": "Seat", "sockets": sockets, "autodeploy": False},
        }  # fmt: skip
        r = await sim.post(f"/v1/app/{app}/version", json=version)
        assert r.status_code == 200, r.text
        sem = asyncio.Semaphore(16)

        async def deploy(i: int) -> str:
            city = LOCATIONS[i % len(LOCATIONS)].city
            body = {"app_name": app, "version_name": VERSION,
                    "filters": [{"field": "city", "values": [city], "filter_type": "any"}]}  # fmt: skip
            async with sem:
                r = await sim.post("/v1/deploy", json=body)
            assert r.status_code == 200, r.text
            return str(r.json()["request_id"])

        rids = await asyncio.gather(*(deploy(i) for i in range(n)))

        async def status(rid: str) -> dict[str, Any]:
            while True:
                async with sem:
                    body = (await sim.get(f"/v1/status/{rid}")).json()
                if body.get("current_status") == "Status.READY":
                    return dict(body)
                await asyncio.sleep(0.1)

        return list(await asyncio.gather(*(status(r) for r in rids)))


async def ingest(store: Store, statuses: list[dict[str, Any]]) -> list[tuple[str, Point]]:
    out = []
    for body in statuses:
        report = DeploymentStatus.model_validate(body).to_report("poll")
        await store.deployments.apply(report, time.time())
        loc = body["location"]
        out.append((body["request_id"], Point(loc["latitude"], loc["longitude"])))
    return out


async def phase_end_to_end(
    url: str, sim_url: str, n: int, deployments: int, concurrency: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Placements through `Allocator.attempt` (decide, reserve, the simulator's session create,
    confirm, record), and as its baseline the bare session create on the simulator (a direct
    HTTP call naming the deployment) at the same concurrency."""
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    services = bootstrap(settings_for(url, prefix, sim_url))
    alloc = Allocator(services)
    try:
        statuses = await sim_deployments(sim_url, APP, deployments, sockets=64)
        deps = await ingest(services.store, statuses)
        await warm_caches(services.store, deps, seed=3)
        rng = random.Random(4)

        async def place(i: int) -> str:
            attempt = await alloc.attempt(record_for(i, rng), {})
            return "linked" if attempt.linked else ("platform_down" if attempt.platform_down else "no_room")

        await load(200, concurrency, place)  # warm-up
        run = await load(n, concurrency, place)
        hook = callback_url(services.settings, "sessions")  # the simulator calls it back, as for ours
        base = await _bare_session_creates(sim_url, [r for r, _ in deps], n, concurrency, hook)
        return {"deployments": deployments, "concurrency": concurrency, **run.summary()}, base
    finally:
        await alloc.aclose()
        await services.store.wipe()
        await services.aclose()


async def _bare_session_creates(
    sim_url: str, rids: list[str], n: int, concurrency: int, webhook_url: str
) -> dict[str, Any]:
    headers = {"Authorization": f"token {SIM_TOKEN}"}
    async with httpx.AsyncClient(base_url=sim_url, headers=headers, timeout=30) as sim:

        async def create(i: int) -> str:
            body = {"app_name": APP, "version_name": VERSION, "ip_list": [player_ip(i % NETWORKS, 200)],
                    "deployment_request_id": rids[i % len(rids)], "webhook_url": webhook_url}  # fmt: skip
            r = await sim.post("/v1/session", json=body)
            return "ok" if r.status_code == 200 else str(r.status_code)

        return (await load(n, concurrency, create)).summary()


# --- four processes ------------------------------------------------------------------------------
def _placer(args: tuple[str, str, str, int, int, int]) -> dict[str, Any]:
    url, prefix, sim_url, n, concurrency, seed = args
    return asyncio.run(_place_many(url, prefix, sim_url, n, concurrency, seed))


async def _place_many(
    url: str, prefix: str, sim_url: str, n: int, concurrency: int, seed: int
) -> dict[str, Any]:
    services = bootstrap(settings_for(url, prefix, sim_url))
    alloc = Allocator(services)
    rng = random.Random(seed)
    linked: dict[str, str] = {}  # platform session id -> deployment

    async def place(i: int) -> str:
        record = record_for(i + seed * 100_000, rng, max_players=3)
        record.app = "contended"
        attempt = await alloc.attempt(record, {})
        if attempt.linked:
            linked[record.platform_session_id] = record.deployment_request_id
            return "linked"
        return "platform_down" if attempt.platform_down else "no_room"

    try:
        run = await load(n, concurrency, place)
        return {"summary": run.summary(), "linked": linked}
    finally:
        await alloc.aclose()
        await services.aclose()


async def phase_processes(
    url: str, sim_url: str, per_process: int, deployments: int, sockets: int
) -> dict[str, Any]:
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    store = Store(Redis.from_url(url, decode_responses=True), prefix)
    try:
        deps = await ingest(store, await sim_deployments(sim_url, "contended", deployments, sockets=sockets))
        await warm_caches(store, deps, seed=5)
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(4) as pool:
            started = time.perf_counter()
            results = pool.map(_placer, [(url, prefix, sim_url, per_process, 16, s) for s in range(4)])
            seconds = time.perf_counter() - started
        return await _check_truth(store, sim_url, results, seconds, [r for r, _ in deps], sockets)
    finally:
        await store.wipe()
        await store.aclose()


async def _check_truth(store: Store, sim_url: str, results: list[dict[str, Any]], seconds: float,
                       rids: list[str], sockets: int) -> dict[str, Any]:  # fmt: skip
    headers = {"Authorization": f"token {SIM_TOKEN}"}
    async with httpx.AsyncClient(base_url=sim_url, headers=headers, timeout=30) as sim:
        truth = (await sim.get("/_sim/state")).json()
    ours = {d.request_id: d for d in await store.deployments.get_many(rids, time.time())}
    mine = set(rids)
    platform = [d for d in truth["deployments"] if d["request_id"] in mine]
    sessions = {s["session_id"]: s for s in truth["sessions"]}
    linked = {sid: rid for r in results for sid, rid in r["linked"].items()}
    over = [d["request_id"] for d in platform if d["sockets_usage"] > d["sockets"]]
    refused = [
        sid for sid, rid in linked.items()
        if not sessions.get(sid, {}).get("linked") or sessions[sid]["deployment_request_id"] != rid
    ]  # fmt: skip
    mismatch = [d["request_id"] for d in platform if ours[d["request_id"]].committed != d["sockets_usage"]]
    outcomes: Counter[str] = Counter()
    for r in results:
        outcomes.update(r["summary"]["outcomes"])
    attempted = sum(outcomes.values())
    return {
        "processes": len(results),
        "deployments": len(platform),
        "sockets_each": sockets,
        "capacity": sum(d["sockets"] for d in platform),
        "attempted": attempted,
        "outcomes": dict(outcomes),
        "placements_per_s_all": round(attempted / seconds, 1),
        "platform_usage": sum(d["sockets_usage"] for d in platform),
        "our_committed": sum(d.committed for d in ours.values()),
        "overbooked_deployments": len(over),
        "linked_but_not_on_platform": len(refused),
        "committed_mismatch_deployments": len(mismatch),
        "per_process": [r["summary"] for r in results],
    }


# --- report --------------------------------------------------------------------------------------
def table(report: dict[str, Any]) -> str:
    rows = ["| phase | ops | per s | p50 ms | p99 ms | vs redis p50 |", "|---|---|---|---|---|---|"]
    base = report["redis"]["p50_ms"]
    for name in ("redis", "decide_reserve", "sim_session_create", "end_to_end"):
        r = report[name]
        rows.append(f"| {name} | {r['operations']} | {r['per_s']} | {r['p50_ms']} | {r['p99_ms']} | "
                    f"{r['p50_ms'] / base:.1f}x |")  # fmt: skip
    p = report["four_processes"]
    rows.append(
        f"\nfour processes: {p['attempted']} attempts on {p['capacity']} sockets, {p['outcomes']}, "
        f"platform usage {p['platform_usage']}, ours {p['our_committed']}, "
        f"overbooked {p['overbooked_deployments']}, "
        f"linked-but-refused {p['linked_but_not_on_platform']}, "
        f"mismatched {p['committed_mismatch_deployments']}"
    )
    return "\n".join(rows)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    url, private = redis_url()
    group, sim_url = start_sim()
    try:
        report: dict[str, Any] = {
            "machine": {
                "python": sys.version.split()[0],
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
                "load_average_at_start": os.getloadavg(),
            },
        }
        report["decide_reserve"], report["redis"] = await phase_decide(
            url, sim_url, args.placements, args.deployments, args.concurrency, args.repeats
        )
        report["end_to_end"], report["sim_session_create"] = await phase_end_to_end(
            url, sim_url, args.e2e_placements, args.deployments, args.concurrency
        )
        report["four_processes"] = await phase_processes(url, sim_url, args.per_process, 40, 8)
    finally:
        group.stop()
        if private is not None:
            private.stop()
    d = report["decide_reserve"]
    p = report["four_processes"]
    report["ratios"] = {
        "decide_reserve_p50_over_redis_p50": round(d["p50_ms"] / report["redis"]["p50_ms"], 2),
        "decide_reserve_per_s_over_redis_per_s": round(d["per_s"] / report["redis"]["per_s"], 3),
        "end_to_end_p50_over_decide_reserve_p50": round(report["end_to_end"]["p50_ms"] / d["p50_ms"], 2),
        "end_to_end_per_s_over_bare_sim_create_per_s": round(
            report["end_to_end"]["per_s"] / report["sim_session_create"]["per_s"], 3
        ),
    }
    report["goals"] = {
        f"decide_reserve_per_s>={GOAL_PER_S:g}": d["per_s"] >= GOAL_PER_S,
        f"decide_reserve_p99_ms<{GOAL_P99_MS:g}": d["p99_ms"] < GOAL_P99_MS,
        "overbooked==0": p["overbooked_deployments"] == 0 and p["linked_but_not_on_platform"] == 0
        and p["committed_mismatch_deployments"] == 0,
    }  # fmt: skip
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.allocator", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--placements", type=int, default=10_000, help="decide+reserve placements")
    parser.add_argument("--e2e-placements", type=int, default=3_000, help="end-to-end placements")
    parser.add_argument("--per-process", type=int, default=300, help="attempts per process (phase 4)")
    parser.add_argument("--deployments", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="decide+reserve measurements (median kept)")
    parser.add_argument("--quick", action="store_true", help="small numbers, for a smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.placements, args.e2e_placements, args.per_process, args.deployments = 1000, 300, 60, 200
        args.repeats = 1
    report = asyncio.run(main_async(args))
    report["run"] = {"id": secrets.token_hex(4), "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                     "args": vars(args)}  # fmt: skip
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    print(json.dumps({"goals": report["goals"], "ratios": report["ratios"]}, indent=2))
    return 0 if report["goals"]["overbooked==0"] else 1


if __name__ == "__main__":
    sys.exit(main())
