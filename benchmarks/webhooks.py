"""Webhook ingest benchmark: deployment callbacks through `fleet web` against a bare endpoint.

    python -m benchmarks.webhooks [--requests N] [--concurrency 64] [--rounds 7] [--quick]

Real uvicorn servers on loopback, one at a time, same uvicorn settings, one worker each:
- bare (the baseline): a Starlette app whose only route answers 200 without reading the body;
- store-one (a reference): a Starlette route that reads the JSON body and writes one Redis hash
  field per callback, one command each: roughly the least any endpoint that stores callbacks
  costs on this stack;
- fleet: `fleet web` itself (production runner, logging and metrics included), receiving
  `POST /webhooks/deployments?token=...` with the platform's status body, each with its own
  request id, so every callback makes a transition, an event and a Redis write.

Load: `--concurrency` keep-alive connections from a small asyncio HTTP/1.1 client in this process
(much cheaper per request than httpx, so that the servers, not the client, are measured). Each
round runs every server once, back to back, in an order that reverses from one round to the next
(a slow drift of the machine then favours none). The throughput ratio is the median over the rounds
of fleet / bare within the round: on a shared 2-core machine whose speed changes over tens of
seconds, a pair measured seconds apart is far steadier than the ratio of two medians (which is
reported too). Latency percentiles are over all requests. Afterwards every callback that was
answered 2xx is looked up in Redis (its hash, with the status sent): `lost` must be 0.

Uses FLEET_REDIS_URL (a private redis-server when none answers), under a fresh key prefix that is
deleted at the end. Writes benchmarks/results/webhooks.json and webhooks.md. Goal (issue 4): fleet
throughput at least half the bare endpoint's, p99 well under 1 s, nothing lost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleet.devredis import PrivateRedis, free_port
from fleet.procs import ProcessGroup, fleet_command, wait_http
from fleet.settings import Settings

RESULTS_DIR = Path(__file__).parent / "results"
GOAL_RATIO = 0.5
GOAL_P99_MS = 1000.0
SECRET = "bench-" + secrets.token_hex(16)
CHECK_BATCH = 1000


# --- the bare endpoint (run in its own process: `python -m benchmarks.webhooks bare PORT`) --------
def serve_bare(port: int) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def ok(request: Request) -> Response:
        return Response(b'{"result":"ok"}', media_type="application/json")

    app = Starlette(routes=[Route("/webhooks/deployments", ok, methods=["POST"])])
    uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, access_log=False, server_header=False)


def serve_store_one(port: int) -> None:
    import uvicorn
    from redis.asyncio import Redis
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    settings = Settings()
    redis = Redis.from_url(settings.redis_url, decode_responses=True)

    async def store_one(request: Request) -> Response:
        body = json.loads(await request.body())
        await redis.hset(
            f"{settings.redis_prefix}:ref:{body['request_id']}", "status", body["current_status"]
        )
        return Response(b'{"result":"ok"}', media_type="application/json")

    app = Starlette(routes=[Route("/webhooks/deployments", store_one, methods=["POST"])])
    uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, access_log=False, server_header=False)


# --- load ---------------------------------------------------------------------------------------
@dataclass
class Round:
    target: str
    requests: int
    seconds: float
    latencies_s: list[float]
    statuses: dict[int, int]
    accepted_ids: list[str] = field(default_factory=list)

    @property
    def per_s(self) -> float:
        return self.requests / self.seconds


def status_body(rid: str) -> bytes:
    return json.dumps(
        {
            "request_id": rid,
            "fqdn": f"{rid}.bench.example",
            "app_name": "bench",
            "app_version": "v1",
            "current_status": "Status.READY",
            "running": True,
            "whitelisting_active": False,
            "start_time": "2026-12-03 12:00:45.831041",
            "elapsed_time": 3,
            "error": False,
            "public_ip": "100.10.0.85",
            "ports": {"game": {"external": 31500, "internal": 7777, "protocol": "UDP", "name": "game"}},
            "location": {"city": "Montreal", "country": "Canada", "continent": "North America",
                         "latitude": 45.5, "longitude": -73.5},
            "tags": ["fleet:bench", "policy:bench"],
            "sockets": "8",
            "sockets_usage": "0",
        }
    ).encode()  # fmt: skip


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    for line in lines[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def load(port: int, target: str, total: int, concurrency: int, tag: str) -> Round:
    """`total` callbacks over `concurrency` keep-alive connections; each with a fresh request id."""
    counter = iter(range(total))
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    accepted: list[str] = []
    path = f"/webhooks/deployments?token={SECRET}".encode()

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for i in counter:
                rid = f"{tag}{i:07x}"
                body = status_body(rid)
                request = (
                    b"POST " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
                )
                started = time.perf_counter()
                writer.write(request)
                status = await _read_response(reader)
                latencies.append(time.perf_counter() - started)
                statuses[status] = statuses.get(status, 0) + 1
                if 200 <= status < 300:
                    accepted.append(rid)
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(concurrency)))
    return Round(target, total, time.perf_counter() - started, latencies, statuses, accepted)


def paired_ratios(measured: list[Round]) -> dict[str, list[float]]:
    """Per round: fleet / bare and fleet / store-one, from runs seconds apart."""
    per_round: dict[str, list[float]] = {t: [r.per_s for r in measured if r.target == t] for t in TARGETS}
    pairs = zip(per_round["bare"], per_round["store-one"], per_round["fleet"], strict=True)
    rows = [(f / b, f / s) for b, s, f in pairs]
    return {
        "fleet_over_bare": [round(x, 3) for x, _ in rows],
        "fleet_over_store_one": [round(y, 3) for _, y in rows],
    }


def percentile_ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


# --- verification -------------------------------------------------------------------------------
def lost_callbacks(url: str, prefix: str, ids: list[str]) -> int:
    """Accepted callbacks whose deployment is not in Redis with the status that was sent."""
    import redis

    client = redis.Redis.from_url(url, decode_responses=True)
    lost = 0
    try:
        for start in range(0, len(ids), CHECK_BATCH):
            batch = ids[start : start + CHECK_BATCH]
            with client.pipeline(transaction=False) as pipe:
                for rid in batch:
                    pipe.hget(f"{prefix}:dep:{rid}", "status_raw")
                stored = pipe.execute()
            lost += sum(1 for s in stored if s != "Status.READY")
    finally:
        client.close()
    return lost


def wipe(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=5000))
        for start in range(0, len(keys), 5000):
            client.delete(*keys[start : start + 5000])
    finally:
        client.close()


def redis_url() -> tuple[str, PrivateRedis | None]:
    url = Settings().redis_url
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
        return url, None
    except Exception:
        server = PrivateRedis().start()
        return server.url, server


# --- the run --------------------------------------------------------------------------------------
TARGETS = ("bare", "store-one", "fleet")


def start_servers(group: ProcessGroup, url: str, prefix: str) -> dict[str, int]:
    ports = {target: free_port() for target in TARGETS}
    env = {
        "FLEET_REDIS_URL": url,
        "FLEET_REDIS_PREFIX": prefix,
        "FLEET_WEBHOOK_SECRET": SECRET,
        "FLEET_API_TOKEN": "bench-api-" + secrets.token_hex(8),
        "FLEET_METRICS_DIR": str(group.dir / "metrics"),
    }
    bare = group.spawn("bare", [sys.executable, "-m", "benchmarks.webhooks", "bare", str(ports["bare"])])
    store_one = group.spawn(
        "store-one", [sys.executable, "-m", "benchmarks.webhooks", "store-one", str(ports["store-one"])], env
    )
    web = group.spawn(
        "web", [*fleet_command(), "web", "--host", "127.0.0.1", "--port", str(ports["fleet"])], env
    )
    wait_http(f"http://127.0.0.1:{ports['fleet']}/healthz", proc=web)
    wait_http(f"http://127.0.0.1:{ports['bare']}/webhooks/deployments", proc=bare, any_answer=True)
    wait_http(f"http://127.0.0.1:{ports['store-one']}/webhooks/deployments", proc=store_one, any_answer=True)
    return ports


async def run(args: argparse.Namespace, url: str, prefix: str, ports: dict[str, int]) -> dict[str, Any]:
    run_tag = secrets.token_hex(2)
    rounds: list[Round] = []
    for target in TARGETS:  # warm-up: imports, connections, script loading
        rounds.append(
            await load(ports[target], target, args.warmup, args.concurrency, f"w{run_tag}{target[0]}")
        )
    warmup_ids = [rid for r in rounds if r.target == "fleet" for rid in r.accepted_ids]
    measured: list[Round] = []
    for n in range(args.rounds):
        for target in TARGETS if n % 2 == 0 else TARGETS[::-1]:
            tag = f"m{run_tag}{n:x}{target[0]}"
            measured.append(await load(ports[target], target, args.requests, args.concurrency, tag))
    report: dict[str, Any] = {"paired": paired_ratios(measured)}
    for target in TARGETS:
        mine = [r for r in measured if r.target == target]
        latencies = [lat for r in mine for lat in r.latencies_s]
        statuses: dict[str, int] = {}
        for r in mine:
            for code, count in r.statuses.items():
                statuses[str(code)] = statuses.get(str(code), 0) + count
        report[target] = {
            "per_s": round(statistics.median(r.per_s for r in mine), 1),
            "per_s_rounds": [round(r.per_s, 1) for r in mine],
            "p50_ms": percentile_ms(latencies, 0.50),
            "p99_ms": percentile_ms(latencies, 0.99),
            "max_ms": round(1000 * max(latencies), 2),
            "requests": sum(r.requests for r in mine),
            "statuses": statuses,
        }
    accepted = warmup_ids + [rid for r in measured if r.target == "fleet" for rid in r.accepted_ids]
    report["fleet"]["accepted"] = len(accepted)
    report["fleet"]["lost"] = lost_callbacks(url, prefix, accepted)
    return report


def table(report: dict[str, Any]) -> str:
    b, s, f, r = report["bare"], report["store-one"], report["fleet"], report["ratios"]
    args = report["run"]["args"]
    rows = [
        "# Webhook ingest benchmark",
        "",
        f"Deployment callbacks at concurrency {args['concurrency']}, {args['rounds']} rounds of "
        f"{args['requests']:,} requests per endpoint, the order reversed every round (one uvicorn worker "
        f"each, loopback, {report['machine']['cpus']} CPUs).",
        "",
        "| endpoint | requests/s (median) | p50 | p99 | max | answers |",
        "|---|---:|---:|---:|---:|---|",
        f"| bare Starlette 200 | {b['per_s']:,.0f} | {b['p50_ms']} ms | {b['p99_ms']} ms | {b['max_ms']} ms "
        f"| {b['statuses']} |",
        f"| reference: read body, one Redis write | {s['per_s']:,.0f} | {s['p50_ms']} ms | {s['p99_ms']} ms "
        f"| {s['max_ms']} ms | {s['statuses']} |",
        f"| `fleet web` /webhooks/deployments | {f['per_s']:,.0f} | {f['p50_ms']} ms | {f['p99_ms']} ms "
        f"| {f['max_ms']} ms | {f['statuses']} |",
        "",
        f"Throughput ratio fleet / bare: **{r['fleet_per_s_over_bare_per_s']}** (goal >= {GOAL_RATIO}), the "
        f"median of the rounds' {report['paired']['fleet_over_bare']}; the ratio of the medians above: "
        f"{r['fleet_median_per_s_over_bare_median_per_s']}. p99 ratio: {r['fleet_p99_over_bare_p99']}. "
        f"Fleet / the store-one reference: {r['fleet_per_s_over_store_one_per_s']}.",
        f"Accepted callbacks: {f['accepted']:,}; not found in Redis afterwards: **{f['lost']}** (goal 0).",
    ]
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["bare"]:
        serve_bare(int(argv[1]))
        return 0
    if argv[:1] == ["store-one"]:
        serve_store_one(int(argv[1]))
        return 0
    parser = argparse.ArgumentParser(prog="python -m benchmarks.webhooks", description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=8_000, help="requests per round and endpoint")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=7, help="rounds of every endpoint (median kept)")
    parser.add_argument("--warmup", type=int, default=1_000, help="requests per endpoint before measuring")
    parser.add_argument("--quick", action="store_true", help="small numbers, for a smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.rounds, args.warmup = 2_000, 1, 300
    url, private = redis_url()
    prefix = f"benchwh{secrets.token_hex(3)}"
    group = ProcessGroup(env=dict(os.environ))
    try:
        ports = start_servers(group, url, prefix)
        load_at_start = os.getloadavg()
        report = asyncio.run(run(args, url, prefix, ports))
    finally:
        group.stop()
        wipe(url, prefix)
        if private is not None:
            private.stop()
    b, f, paired = report["bare"], report["fleet"], report["paired"]
    report["ratios"] = {
        "fleet_per_s_over_bare_per_s": round(statistics.median(paired["fleet_over_bare"]), 3),
        "fleet_median_per_s_over_bare_median_per_s": round(f["per_s"] / b["per_s"], 3),
        "fleet_per_s_over_store_one_per_s": round(statistics.median(paired["fleet_over_store_one"]), 3),
        "store_one_per_s_over_bare_per_s": round(report["store-one"]["per_s"] / b["per_s"], 3),
        "fleet_p50_over_bare_p50": round(f["p50_ms"] / b["p50_ms"], 2),
        "fleet_p99_over_bare_p99": round(f["p99_ms"] / b["p99_ms"], 2),
    }
    report["goals"] = {
        f"fleet_per_s_over_bare_per_s>={GOAL_RATIO}": report["ratios"]["fleet_per_s_over_bare_per_s"]
        >= GOAL_RATIO,
        f"fleet_p99_ms<{GOAL_P99_MS:g}": f["p99_ms"] < GOAL_P99_MS,
        "lost==0": f["lost"] == 0 and f["accepted"] == f["requests"] + args.warmup,
    }
    report["machine"] = {
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "load_average_at_start": load_at_start,
    }
    report["run"] = {
        "id": secrets.token_hex(4),
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "args": vars(args),
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "webhooks.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS_DIR / "webhooks.md").write_text(table(report))
    print(table(report))
    print(json.dumps({"goals": report["goals"], "ratios": report["ratios"]}, indent=2))
    return 0 if report["goals"]["lost==0"] else 1


if __name__ == "__main__":
    sys.exit(main())
