"""`fleet demo`: the whole service end to end against the embedded simulator.

Starts Redis (a private one unless FLEET_REDIS_URL is set), `fleet sim`, `fleet web`,
`fleet scaler` and `fleet worker` as real processes; creates an app version on the simulator and a
fleet with one policy per region through the service's API; replays player demand compressed in
time (players join as one-player Seat sessions from IPs in their region and leave after a while);
and writes `demo-report/` with a JSON summary and a PNG plot of players and deployments over time.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from fleet.dashboard_png import render_recording, start_recording
from fleet.demand import Region, Trace, builtin_trace, load_trace, split
from fleet.procs import Stack

APP, VERSION, FLEET = "demo-game", "v1", "demo"
SOCKETS = 10
STEP_S = 0.5
SAMPLE_S = 1.0
CLOSING_S = 30.0  # players drain away at the end so that scale-in shows in every region
SESSION_MEAN_S = 20.0  # compressed session length
TRACE_WINDOW_H = 48.0


@dataclass(frozen=True)
class DemoRegion:
    region: Region
    policy: str
    continent: str  # the policy's Location filter value
    country_codes: tuple[str, ...]
    prefixes: tuple[str, ...]  # /16 networks whose addresses geolocate in the region


REGIONS = (
    DemoRegion(
        Region("europe", 1.0),
        "europe",
        "Europe",
        ("GB", "IE", "DE", "FR", "NL"),
        ("81.2.", "185.60.", "78.46.", "88.198.", "62.210.", "195.154.", "217.160."),
    ),
    DemoRegion(
        Region("north-america", -6.0),
        "north-america",
        "North America",
        ("US", "CA"),
        ("8.8.", "64.233.", "142.250.", "24.114.", "99.224.", "184.144.", "172.217."),
    ),
)
MINIMUM, MAXIMUM, THRESHOLD = 1, 6, 0.8


def ip_pool(region: DemoRegion, rng: random.Random, size: int = 400) -> list[str]:
    """Public addresses that the geolocation database places in the region."""
    from geoip2fast import GeoIP2Fast

    geo = GeoIP2Fast()
    pool: list[str] = []
    attempts = 0
    while len(pool) < size and attempts < size * 50:
        attempts += 1
        ip = f"{rng.choice(region.prefixes)}{rng.randrange(256)}.{rng.randrange(1, 255)}"
        addr = ipaddress.ip_address(ip)
        if addr.is_global and geo.lookup(ip).country_code in region.country_codes:
            pool.append(ip)
    if not pool:
        raise RuntimeError(f"no address of {region.prefixes} geolocates in {region.continent}")
    return pool


@dataclass
class Player:
    session_id: str
    region: str
    leaves_at: float
    asked_at: float
    linked_at: float | None = None


@dataclass
class Tally:
    placed: int = 0
    refused: int = 0
    waited: int = 0
    latencies_s: list[float] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    created: dict[str, set[str]] = field(default_factory=dict)
    stopped: dict[str, set[str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


class Driver:
    """Turns a demand curve into session creates and deletes through the service's API."""

    def __init__(self, web: httpx.AsyncClient, pools: dict[str, list[str]], rng: random.Random) -> None:
        self.web = web
        self.pools = pools
        self.rng = rng
        self.players: dict[str, list[Player]] = {name: [] for name in pools}
        self.pending: list[Player] = []
        self.tally = Tally()

    async def join(self, region: str, now: float) -> None:
        body = {"app_name": APP, "version_name": VERSION, "ip_list": [self.rng.choice(self.pools[region])]}
        t0 = time.monotonic()
        try:
            r = await self.web.post("/v1/session", json=body)
        except httpx.HTTPError as err:
            self.tally.errors.append(f"POST /v1/session: {type(err).__name__}")
            return
        if r.status_code >= 300:
            self.tally.refused += 1
            return
        data = r.json()
        player = Player(data["session_id"], region, now + self.rng.expovariate(1 / SESSION_MEAN_S), t0)
        self.players[region].append(player)
        if data.get("linked") or data.get("ready"):
            self._linked(player, time.monotonic())
        else:
            self.pending.append(player)

    def _linked(self, player: Player, at: float) -> None:
        player.linked_at = at
        self.tally.placed += 1
        self.tally.latencies_s.append(at - player.asked_at)
        if at - player.asked_at > 1.0:
            self.tally.waited += 1

    async def leave(self, player: Player) -> None:
        self.players[player.region].remove(player)
        if player in self.pending:
            self.pending.remove(player)
        try:
            await self.web.delete(f"/v1/session/{player.session_id}")
        except httpx.HTTPError as err:
            self.tally.errors.append(f"DELETE /v1/session: {type(err).__name__}")

    async def poll_pending(self) -> None:
        for player in list(self.pending):
            try:
                r = await self.web.get(f"/v1/session/{player.session_id}")
            except httpx.HTTPError:
                continue
            if r.status_code != 200:
                continue
            data = r.json()
            status = str(data.get("status", "")).upper()
            if data.get("linked"):
                self.pending.remove(player)
                self._linked(player, time.monotonic())
            elif "UNPROCESSABLE" in status or "ERROR" in status:
                self.pending.remove(player)
                self.players[player.region].remove(player)
                self.tally.refused += 1

    async def step(self, targets: dict[str, int], now: float) -> None:
        for region, target in targets.items():
            for p in [p for p in self.players[region] if p.leaves_at <= now]:
                await self.leave(p)
            current = self.players[region]
            while len(current) > target:
                await self.leave(self.rng.choice(current))
            missing = max(0, target - len(current))
            await asyncio.gather(*(self.join(region, now) for _ in range(min(missing, 25))))
        await self.poll_pending()


def demand_curve(trace_path: str | None) -> tuple[Trace, str]:
    if trace_path:
        full = load_trace(Path(trace_path))
        return full.around_peak(TRACE_WINDOW_H), f"{trace_path} ({TRACE_WINDOW_H:.0f} h around its peak)"
    return builtin_trace(TRACE_WINDOW_H), "built-in curve (48 h with a launch spike)"


def regional_targets(trace: Trace, progress: float, scale: float) -> dict[str, float]:
    """Players per region at a fraction of the compressed run."""
    t = trace.start + progress * (trace.end - trace.start)
    return split(trace.at(t) * scale, t, [r.region for r in REGIONS])


def scale_for(trace: Trace, samples: int = 400) -> float:
    """Scale players so each region's peak needs about MAXIMUM - 1 deployments at the threshold."""
    peak = 0.0
    for i in range(samples + 1):
        peak = max(peak, *regional_targets(trace, i / samples, 1.0).values())
    return (MAXIMUM - 1) * SOCKETS * THRESHOLD / peak


async def setup(stack: Stack, idle_s: float) -> None:
    platform = {"Authorization": f"token {stack.platform_token}"}
    api = {"Authorization": f"token {stack.api_token}"}
    async with httpx.AsyncClient(timeout=10) as c:
        await c.post(
            f"{stack.sim_url}/v1/app", headers=platform, json={"name": APP, "is_active": True, "image": ""}
        )
        r = await c.post(
            f"{stack.sim_url}/v1/app/{APP}/version",
            headers=platform,
            json={
                "name": VERSION,
                "docker_repository": "registry.local",
                "docker_image": APP,
                "docker_tag": "1",
                "req_cpu": 256,
                "req_memory": 256,
                "session_config": {"kind": "Seat", "sockets": SOCKETS, "autodeploy": False, "empty_ttl": 60},
            },
        )
        r.raise_for_status()
        for method, path, body in [
            ("POST", "/v1/fleet", {"name": FLEET, "enabled": True}),
            ("PUT", f"/v1/fleet/{FLEET}/app/{APP}/version/{VERSION}", None),
            *[
                (
                    "POST",
                    f"/v1/fleet/{FLEET}/policies",
                    {
                        "name": reg.policy,
                        "enabled": True,
                        "type": "Location",
                        "minimum": MINIMUM,
                        "maximum": MAXIMUM,
                        "threshold": THRESHOLD,
                        "idle_s": idle_s,
                        "cooldown_s": 5.0,
                        "data": {
                            "filters": [
                                {"field": "continent", "values": [reg.continent], "filter_type": "any"}
                            ]
                        },
                    },
                )
                for reg in REGIONS
            ],
        ]:
            r = await c.request(method, stack.web_url + path, headers=api, json=body)
            if r.status_code >= 300:
                raise RuntimeError(f"{method} {path}: {r.status_code} {r.text[:300]}")


async def sample(web: httpx.AsyncClient, driver: Driver, t: float) -> None:
    r = await web.get("/v1/deployments", params={"limit": 1000})
    if r.status_code != 200:
        driver.tally.errors.append(f"GET /v1/deployments: {r.status_code}")
        return
    row: dict[str, Any] = {"t": round(t, 2)}
    for reg in REGIONS:
        mine = [d for d in r.json()["data"] if d.get("policy") == reg.policy and d.get("fleet") == FLEET]
        status = [str(d.get("current_status", "")) for d in mine]
        row[f"{reg.policy}_ready"] = sum(s.endswith("READY") for s in status)
        row[f"{reg.policy}_live"] = len(mine)
        row[f"{reg.policy}_players"] = sum(1 for p in driver.players[reg.region.name] if p.linked_at)
        ids = {d["request_id"] for d in mine}
        created = driver.tally.created.setdefault(reg.policy, set())
        stopped = driver.tally.stopped.setdefault(reg.policy, set())
        stopped |= {rid for rid in created - ids}
        stopped |= {d["request_id"] for d in mine if d.get("draining") or d.get("stop_requested_at")}
        created |= ids
    driver.tally.samples.append(row)


async def run(args: argparse.Namespace, stack: Stack) -> dict[str, Any]:
    rng = random.Random(args.seed)
    trace, source = demand_curve(args.trace)
    scale = scale_for(trace)
    await setup(stack, idle_s=4.0)
    pools = {reg.region.name: ip_pool(reg, rng) for reg in REGIONS}
    api = {"Authorization": f"token {stack.api_token}"}
    async with httpx.AsyncClient(base_url=stack.web_url, headers=api, timeout=15) as web:
        driver = Driver(web, pools, rng)
        start = time.monotonic()
        await wait_minimum(web, driver, deadline_s=90)
        duration = args.duration
        next_sample = 0.0
        while (elapsed := time.monotonic() - start) < duration + CLOSING_S:
            progress = min(1.0, elapsed / duration)
            fade = max(0.0, 1 - (elapsed - duration) / (CLOSING_S * 0.5)) if elapsed > duration else 1.0
            targets = {
                name: math.floor(v * fade + 0.5)
                for name, v in regional_targets(trace, progress, scale).items()
            }
            await driver.step(targets, elapsed)
            if elapsed >= next_sample:
                await sample(web, driver, elapsed)
                next_sample += SAMPLE_S
            await asyncio.sleep(STEP_S)
        for region in list(driver.players):
            for p in list(driver.players[region]):
                await driver.leave(p)
        await wait_scale_in(web, driver, start, deadline_s=45)
    return summarize(driver.tally, source, scale, trace)


async def wait_minimum(web: httpx.AsyncClient, driver: Driver, deadline_s: float) -> None:
    """Demand starts once every policy has its minimum READY."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        await sample(web, driver, 0.0)
        last = driver.tally.samples.pop()
        if all(last.get(f"{reg.policy}_ready", 0) >= MINIMUM for reg in REGIONS):
            return
        await asyncio.sleep(0.5)
    raise RuntimeError("the policies' minimum deployments were not READY in time")


async def wait_scale_in(web: httpx.AsyncClient, driver: Driver, start: float, deadline_s: float) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        await sample(web, driver, time.monotonic() - start)
        if all(driver.tally.stopped.get(reg.policy) for reg in REGIONS):
            return
        await asyncio.sleep(SAMPLE_S)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def summarize(tally: Tally, source: str, scale: float, trace: Trace) -> dict[str, Any]:
    policies = {}
    for reg in REGIONS:
        live = [row.get(f"{reg.policy}_live", 0) for row in tally.samples]
        policies[reg.policy] = {
            "deployments_created": len(tally.created.get(reg.policy, set())),
            "deployments_stopped": len(tally.stopped.get(reg.policy, set())),
            "max_live": max(live, default=0),
            "maximum": MAXIMUM,
            "scaled_up": max(live, default=0) > MINIMUM,
            "scaled_down": bool(tally.stopped.get(reg.policy)),
        }
    lat = tally.latencies_s
    p50, p99 = percentile(lat, 0.5), percentile(lat, 0.99)
    return {
        "demand": source,
        "player_scale": round(scale, 4),
        "trace_hours": round((trace.end - trace.start) / 3600, 1),
        "players_placed": tally.placed,
        "players_refused": tally.refused,
        "players_waited_over_1s": tally.waited,
        "placement_latency_p50_ms": None if p50 is None else round(p50 * 1000, 1),
        "placement_latency_p99_ms": None if p99 is None else round(p99 * 1000, 1),
        "deployments_created": sum(p["deployments_created"] for p in policies.values()),
        "deployments_stopped": sum(p["deployments_stopped"] for p in policies.values()),
        "policies": policies,
        "never_above_maximum": all(p["max_live"] <= p["maximum"] for p in policies.values()),
        "errors": tally.errors[:20],
        "samples": tally.samples,
    }


def plot(summary: dict[str, Any], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summary["samples"]
    t = [r["t"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    for reg in REGIONS:
        ax1.plot(t, [r.get(f"{reg.policy}_players", 0) for r in rows], label=f"players {reg.policy}")
        ax2.plot(t, [r.get(f"{reg.policy}_live", 0) for r in rows], label=f"deployments {reg.policy}")
        ax2.plot(
            t, [r.get(f"{reg.policy}_ready", 0) for r in rows], linestyle=":", label=f"READY {reg.policy}"
        )
    ax2.axhline(MAXIMUM, color="red", linewidth=0.8, linestyle="--", label="maximum")
    ax1.set_ylabel("players in sessions")
    ax2.set_ylabel("deployments")
    ax2.set_xlabel("seconds since demand started")
    ax1.set_title(f"codema-fleet demo: {summary['demand']}")
    ax1.legend(loc="upper left", fontsize=8)
    ax2.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path = out / "players-and-deployments.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def checks(summary: dict[str, Any]) -> list[str]:
    failed = []
    if summary["players_placed"] <= 0:
        failed.append("no player was placed")
    for name, p in summary["policies"].items():
        if not p["scaled_up"]:
            failed.append(f"policy {name} never scaled up")
        if not p["scaled_down"]:
            failed.append(f"policy {name} never scaled down")
    if not summary["never_above_maximum"]:
        failed.append("a policy went above its maximum")
    return failed


def print_summary(summary: dict[str, Any], report: Path) -> None:
    print("\ncodema-fleet demo")
    print(f"  demand:               {summary['demand']}")
    print(f"  players placed:       {summary['players_placed']}")
    print(f"  players refused:      {summary['players_refused']}")
    print(f"  deployments created:  {summary['deployments_created']}")
    print(f"  deployments stopped:  {summary['deployments_stopped']}")
    print(
        f"  placement latency:    p50 {summary['placement_latency_p50_ms']} ms, "
        f"p99 {summary['placement_latency_p99_ms']} ms"
    )
    for name, p in summary["policies"].items():
        print(
            f"  policy {name}: max live {p['max_live']} of {p['maximum']}, "
            f"created {p['deployments_created']}, stopped {p['deployments_stopped']}"
        )
    print(f"  report:               {report}/")


def main(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stack = Stack(
        redis_url=args.redis_url or None,
        sim_args=("--boot-s", "2", "--seed", str(args.seed)),
        env={"FLEET_REDIS_PREFIX": f"demo{int(time.time())}", "FLEET_LOG_LEVEL": "INFO"},
    )
    started = time.monotonic()
    try:
        stack.start()
        recording = start_recording(stack)  # observability (issue 7): a private Prometheus for the pictures
        print(
            f"demo: processes up in {time.monotonic() - started:.1f} s (logs in {stack.group.dir})"
            if stack.group
            else "demo: started"
        )
        summary = asyncio.run(run(args, stack))
    except Exception as err:
        print(f"demo failed: {err}", file=sys.stderr)
        if stack.group is not None:
            print(stack.group.all_logs(), file=sys.stderr)
        return 1
    finally:
        stack.stop()
    summary["wall_time_s"] = round(time.monotonic() - started, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    plot(summary, out)
    render_recording(recording, out)  # observability (issue 7): demo-report/dashboards/*.png
    print_summary(summary, out)
    failed = checks(summary)
    for f in failed:
        print(f"  CHECK FAILED: {f}", file=sys.stderr)
    return 1 if failed else 0
