"""The bounded soak: the whole stack for `duration_s` (10 minutes in `make chaos`) at a fixed
rate of platform callbacks (200/s) and placements (50/s, each session deleted a few seconds
later), on loopback.

Callbacks are synthetic but carry the right secret: deployment callbacks for our real deployments
(their current status and usage, as the platform would send them) and for a bounded set of
deployments we do not know (stepping forward through the statuses), and session callbacks for
platform sessions we never made. Afterwards: every accepted deployment callback is reflected
(our view holds that deployment at that status or further), every placement is linked or
accounted for, and memory is compared between the end of the warm-up and the end of the run:
resident memory of each process (its whole process group) and Redis `used_memory`. Redis keeps
ended sessions for an hour and terminal deployments for a day by design (`fleet.store`), so its
memory is also given net of keys that carry a TTL (`INFO keyspace` expires x sampled
`MEMORY USAGE`): that part is bounded by its retention, the rest must stay flat.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.chaos.demand import pools
from tests.e2e.chaos.harness import APP, VERSION, ChaosStack, PolicySpec
from tests.e2e.chaos.invariants import Sampler, status_name, truth_violations

CALLBACKS_PER_S = 200
PLACEMENTS_PER_S = 50
SESSION_LIFE_S = (2.0, 6.0)
UNKNOWN_IDS = 300
WARM_UP_FRACTION = 0.2  # memory is compared from the end of the warm-up (2 minutes of 10)
GROWTH_LIMIT = 0.10
MEMORY_EVERY_S = 10.0
TRUTH_EVERY_S = 5.0  # the simulator's full state is large: read it rarely, it competes with the load
LATE_WAIT_S = 180.0
SOAK_POOL_SIZE = 40_000  # addresses per region, never reused within a soak
SOAK_POLICIES = (
    PolicySpec("europe", "Europe", 3, 12),
    PolicySpec("north-america", "North America", 2, 10),
)
SOAK_SOCKETS = 40
STEPS = ("INITIALIZING", "SEEKING", "SEEKED", "SCANNING", "DEPLOYING", "READY")
RANK = {name: i for i, name in enumerate((*STEPS, "TERMINATING", "TERMINATED", "ERROR"))}


@dataclass
class Latencies:
    values: list[float] = field(default_factory=list)
    answers: dict[str, int] = field(default_factory=dict)

    def add(self, seconds: float, status: int) -> None:
        self.values.append(seconds)
        self.answers[str(status)] = self.answers.get(str(status), 0) + 1

    def summary(self, duration_s: float) -> dict[str, Any]:
        v = sorted(self.values)
        pick = (lambda q: round(v[min(len(v) - 1, int(q * len(v)))] * 1000, 1)) if v else (lambda q: None)
        return {
            "count": len(v),
            "per_s": round(len(v) / duration_s, 1),
            "p50_ms": pick(0.50),
            "p99_ms": pick(0.99),
            "max_ms": pick(1.0),
            "answers": self.answers,
        }


@dataclass
class SoakState:
    callbacks: Latencies = field(default_factory=Latencies)
    placements: Latencies = field(default_factory=Latencies)
    deletes: Latencies = field(default_factory=Latencies)
    accepted_unknown: dict[str, str] = field(default_factory=dict)  # request id -> highest status accepted
    placed: dict[str, list[str]] = field(default_factory=dict)  # our session id -> players
    deleted: set[str] = field(default_factory=set)
    delete_sent: set[str] = field(default_factory=set)  # the answer may have been lost
    refused: int = 0
    errors: list[str] = field(default_factory=list)
    truth: dict[str, Any] = field(default_factory=dict)
    dropped_ticks: int = 0
    unfinished: int = 0


# --- memory ---------------------------------------------------------------------------------------------
def group_rss_kb(pgid: int) -> int:
    """Resident memory of every process in a process group (a `fleet web` may fork its workers)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[2]) != pgid:
                continue
            for line in Path(f"/proc/{entry}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def redis_memory(chaos: ChaosStack) -> dict[str, float]:
    with chaos.redis() as r:
        used = float(r.info("memory")["used_memory"])
        keyspace = r.info("keyspace").get("db0", {})
        keys, expires = int(keyspace.get("keys", 0)), int(keyspace.get("expires", 0))
        sampled = []
        for _ in range(min(60, keys)):
            key = r.randomkey()
            if key is not None and r.ttl(key) > 0:
                sampled.append(int(r.memory_usage(key) or 0))
    bounded = expires * statistics.mean(sampled) if sampled else 0.0
    return {
        "used": used,
        "keys": keys,
        "expires": expires,
        "ttl_bound": bounded,
        "net": max(0.0, used - bounded),
    }


def memory_sample(chaos: ChaosStack) -> dict[str, Any]:
    rss = {name: group_rss_kb(proc.pid) for name, proc in chaos.group.procs.items() if proc.alive()}
    return {"at": time.monotonic(), "rss_kb": rss, "redis": redis_memory(chaos)}


def growth(samples: list[dict[str, Any]], start: float) -> dict[str, Any]:
    """Per process and for Redis: the mean of the two samples after the warm-up against the mean
    of the last two (single samples jitter with the allocator's arenas and GC timing)."""
    after = [s for s in samples if s["at"] >= start]
    if len(after) < 4:
        return {}
    first, last = after[:2], after[-2:]

    def ratio(get: Any) -> float:
        a = statistics.mean(get(s) for s in first)
        b = statistics.mean(get(s) for s in last)
        return round((b - a) / a, 4) if a else 0.0

    out: dict[str, Any] = {
        name: ratio(lambda s, n=name: s["rss_kb"].get(n, 0)) for name in first[0]["rss_kb"] if name != "sim"
    }
    out["sim (simulator, not the service)"] = ratio(lambda s: s["rss_kb"].get("sim", 0))
    out["redis_used_memory"] = ratio(lambda s: s["redis"]["used"])
    out["redis_without_ttl_bound_keys"] = ratio(lambda s: s["redis"]["net"])
    return out


# --- load ------------------------------------------------------------------------------------------------
async def paced(rate: float, duration_s: float, fire: Any, state: SoakState, cap: int) -> None:
    """Open loop: `rate` calls per second for `duration_s`, at most `cap` in flight (beyond it a
    tick is dropped and counted: the load generator never hides a slow service by waiting)."""
    start = time.monotonic()
    inflight: set[asyncio.Task[None]] = set()
    n = 0
    while (elapsed := time.monotonic() - start) < duration_s:
        due = int(elapsed * rate)
        while n < due:
            n += 1
            if len(inflight) >= cap:
                state.dropped_ticks += 1
                continue
            task = asyncio.create_task(fire(n))
            inflight.add(task)
            task.add_done_callback(inflight.discard)
        await asyncio.sleep(0.005)
    if inflight:  # placements still to be deleted; a stuck one is cancelled after the wait
        _, late = await asyncio.wait(inflight, timeout=LATE_WAIT_S)
        state.unfinished += len(late)
        for task in late:
            task.cancel()


class Load:
    def __init__(self, chaos: ChaosStack, state: SoakState, seed: int) -> None:
        self.chaos = chaos
        self.state = state
        self.rng = random.Random(seed)
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(30.0, pool=60.0), limits=httpx.Limits(max_connections=400)
        )
        self.hook = [f"http://127.0.0.1:{p}/webhooks" for p in chaos.stack.web_ports]
        self.web = [f"http://127.0.0.1:{p}" for p in chaos.stack.web_ports]
        self.secret = chaos.stack.webhook_secret
        self.api_headers = chaos.api_headers
        self.unknown = [f"soak-unknown-{seed}-{i:04d}" for i in range(UNKNOWN_IDS)]
        self.ip_pools = pools(SOAK_POOL_SIZE)  # players are matched to platform sessions by address
        self.ip_next = 0

    async def callback(self, n: int) -> None:
        roll = self.rng.random()
        if roll < 0.5 and self.state.truth.get("deployments"):
            kind, body, track = "deployments", self._known(), None
        elif roll < 0.8:
            kind, (body, track) = "deployments", self._unknown()
        else:
            kind, body, track = "sessions", self._session(), None
        url = f"{self.hook[n % len(self.hook)]}/{kind}"
        t0 = time.perf_counter()
        try:
            r = await self.http.post(url, params={"token": self.secret}, json=body)
        except httpx.HTTPError as err:
            self.state.errors.append(f"callback {type(err).__name__}")
            self.state.callbacks.add(time.perf_counter() - t0, -1)
            return
        self.state.callbacks.add(time.perf_counter() - t0, r.status_code)
        if r.status_code == 200 and track is not None:
            rid, status = track
            current = self.state.accepted_unknown.get(rid)
            if current is None or RANK[status] > RANK[current]:
                self.state.accepted_unknown[rid] = status

    def _known(self) -> dict[str, Any]:
        d = self.rng.choice(self.state.truth["deployments"])
        return {
            "request_id": d["request_id"],
            "current_status": d["status"],
            "sockets": d["sockets"],
            "sockets_usage": d["sockets_usage"],
            "app_name": APP,
            "app_version": VERSION,
            "tags": d["tags"],
        }

    def _unknown(self) -> tuple[dict[str, Any], tuple[str, str]]:
        rid = self.rng.choice(self.unknown)
        have = self.state.accepted_unknown.get(rid)
        step = STEPS[min(len(STEPS) - 1, (RANK[have] + self.rng.choice((0, 1))) if have else 0)]
        body = {"request_id": rid, "current_status": f"Status.{step}", "sockets": 8, "sockets_usage": 0}
        return body, (rid, step)

    def _session(self) -> dict[str, Any]:
        return {
            "session_id": f"soak-psession-{self.rng.randrange(1_000_000)}",
            "status": self.rng.choice(("Status.READY", "Status.WAITING", "Status.UNPROCESSABLE")),
            "linked": False,
        }

    async def placement(self, n: int) -> None:
        region = "europe" if n % 3 else "north-america"
        pool = self.ip_pools[region]
        self.ip_next += 1
        ips = [pool[self.ip_next % len(pool)]]
        body = {"app_name": APP, "version_name": VERSION, "ip_list": ips}
        t0 = time.perf_counter()
        try:
            r = await self.http.post(
                f"{self.web[n % len(self.web)]}/v1/session", json=body, headers=self.api_headers
            )
        except httpx.HTTPError as err:
            self.state.errors.append(f"placement {type(err).__name__}")
            self.state.placements.add(time.perf_counter() - t0, -1)
            return
        self.state.placements.add(time.perf_counter() - t0, r.status_code)
        if r.status_code != 200:
            self.state.refused += 1
            return
        sid = r.json()["session_id"]
        self.state.placed[sid] = ips
        await asyncio.sleep(self.rng.uniform(*SESSION_LIFE_S))
        t1 = time.perf_counter()
        self.state.delete_sent.add(sid)
        with contextlib.suppress(httpx.HTTPError):
            d = await self.http.delete(
                f"{self.web[n % len(self.web)]}/v1/session/{sid}", headers=self.api_headers
            )
            self.state.deletes.add(time.perf_counter() - t1, d.status_code)
            if d.status_code == 200:
                self.state.deleted.add(sid)

    async def follow_truth(self, stop: asyncio.Event) -> None:
        """The platform's deployments, refreshed every few seconds, for the known-id callbacks."""
        while not stop.is_set():
            with contextlib.suppress(httpx.HTTPError, ValueError):
                r = await self.http.get(
                    f"{self.chaos.stack.sim_url}/_sim/state", headers=self.chaos.platform_headers
                )
                self.state.truth = r.json()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), TRUTH_EVERY_S)


async def drive(chaos: ChaosStack, state: SoakState, duration_s: float, memory: list[dict[str, Any]]) -> None:
    load = Load(chaos, state, seed=11)
    stop = asyncio.Event()

    async def watch_memory() -> None:
        while not stop.is_set():
            memory.append(await asyncio.to_thread(memory_sample, chaos))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), MEMORY_EVERY_S)

    follower = asyncio.create_task(load.follow_truth(stop))
    watcher = asyncio.create_task(watch_memory())
    try:
        await asyncio.gather(
            paced(CALLBACKS_PER_S, duration_s, load.callback, state, cap=256),
            paced(PLACEMENTS_PER_S, duration_s, load.placement, state, cap=1024),
        )
    finally:
        stop.set()
        await asyncio.gather(follower, watcher)
        await load.http.aclose()


# --- after the run -----------------------------------------------------------------------------------------
def unreflected(chaos: ChaosStack, accepted: dict[str, str]) -> list[str]:
    """Accepted callbacks for unknown deployments our view does not hold at that status or further."""
    missing = []
    for rid, status in accepted.items():
        r = chaos.api("GET", f"/v1/deployments/{rid}")
        if r.status_code != 200:
            missing.append(f"{rid}: {r.status_code}")
            continue
        have = status_name(r.json().get("current_status"))
        if RANK.get(have, -1) < RANK[status]:
            missing.append(f"{rid}: {have} < {status}")
    return missing


def unaccounted(chaos: ChaosStack, state: SoakState) -> dict[str, Any]:
    """Every placement answered 200: deleted (and gone from the platform) or linked on both sides."""
    truth = chaos.truth()
    platform_ips = {s["ips"][0]: s for s in truth["sessions"] if s.get("ips")}
    lost, leaked, linked = [], [], 0
    for sid, ips in state.placed.items():
        on_platform = ips[0] in platform_ips
        if sid in state.deleted:
            if on_platform and platform_ips[ips[0]].get("linked"):
                leaked.append(sid)
            continue
        r = chaos.api("GET", f"/v1/session/{sid}")
        if sid in state.delete_sent and r.status_code in (404, 410):
            if on_platform and platform_ips[ips[0]].get("linked"):
                leaked.append(sid)
            continue  # deleted, though its answer never reached the client
        ok = r.status_code == 200 and r.json().get("linked") and on_platform
        if ok:
            linked += 1
        elif r.status_code == 200 and status_name(r.json().get("status")) in ("UNPROCESSABLE", "ERROR"):
            continue  # answered, then the platform refused: told to the client, not lost
        else:
            lost.append(
                f"{sid}: ours {r.status_code} {r.text[:80]}, platform {'yes' if on_platform else 'no'}"
            )
    return {"lost": lost, "deleted_but_on_platform": leaked, "still_linked": linked}


def run_soak(duration_s: float = 600.0, seed: int = 5) -> dict[str, Any]:
    chaos = ChaosStack(
        seed=seed, policies=SOAK_POLICIES, sockets=SOAK_SOCKETS, sim_extra=("--telemetry-delay-s", "0.5")
    )
    chaos.start()
    state = SoakState()
    memory: list[dict[str, Any]] = []
    sampler = Sampler(chaos, every_s=TRUTH_EVERY_S, policies=SOAK_POLICIES)
    try:
        chaos.wait_ready()
        sampler.start()
        started = time.monotonic()
        asyncio.run(drive(chaos, state, duration_s, memory))
        elapsed = time.monotonic() - started
        time.sleep(8)  # reservations expire, deletes settle, a reconcile passes
        missing = unreflected(chaos, state.accepted_unknown)
        sessions = unaccounted(chaos, state)
        sampler.stop()
        safety = list(sampler.violations.values()) + truth_violations(chaos.truth(), SOAK_POLICIES)
        grew = growth(memory, started + WARM_UP_FRACTION * duration_s)
        service_growth = {k: v for k, v in grew.items() if not k.startswith(("sim", "redis_used"))}
        lost = len(missing) + len(sessions["lost"]) + len(sessions["deleted_but_on_platform"])
        passed = (
            lost == 0
            and not safety
            and bool(service_growth)
            and all(v < GROWTH_LIMIT for v in service_growth.values())
            and not state.errors
        )
        return {
            "passed": passed,
            "duration_s": round(elapsed, 1),
            "target": {"callbacks_per_s": CALLBACKS_PER_S, "placements_per_s": PLACEMENTS_PER_S},
            "callbacks": state.callbacks.summary(elapsed),
            "placements": state.placements.summary(elapsed),
            "session_deletes": state.deletes.summary(elapsed),
            "load_generator_dropped_ticks": state.dropped_ticks,
            "placements_not_finished": state.unfinished,
            "lost": lost,
            "unreflected_callbacks": missing[:20],
            "unknown_deployments_tracked": len(state.accepted_unknown),
            "sessions": {**sessions, "lost": sessions["lost"][:20], "placed": len(state.placed)},
            "refused_placements": state.refused,
            "client_errors": sorted(set(state.errors))[:20],
            "safety_violations": [list(v) for v in safety][:20],
            "memory_growth_after_warm_up": grew,
            "memory_growth_limit": GROWTH_LIMIT,
            "memory_first_last": {
                "first": memory[0] if memory else None,
                "last": memory[-1] if memory else None,
            },
            "memory_samples": len(memory),
            "peak_live_deployments": sampler.peak_live,
        }
    finally:
        sampler.stop()
        chaos.stop()
