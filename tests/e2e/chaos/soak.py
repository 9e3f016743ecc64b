"""The bounded soak: the whole stack for `duration_s` (10 minutes in `make chaos`) at a fixed
rate of platform callbacks (200/s) and placements (50/s, each session deleted a few seconds
later), on loopback.

    python -m tests.e2e.chaos.soak [--duration-s 600] [--warm-up-s 180] [--out benchmarks/results/soak.json]

The load comes from `tests.e2e.chaos.loadgen`: open loop (latency from each request's scheduled
time), one process per stream. Callbacks are synthetic but carry the right secret: deployment
callbacks for our real deployments (their current status and usage, as the platform would send
them) and for a bounded set of deployments we do not know (stepping forward through the
statuses), and session callbacks for platform sessions we never made. Afterwards: every accepted
deployment callback is reflected (our view holds that deployment at that status or further),
every placement is linked or accounted for, no safety invariant was broken.

Memory is sampled every few seconds: resident memory of each process (its whole process group,
split into anonymous and file-backed pages), the machine's load average, the CPU each process
used, and Redis: `used_memory`, and the keys grouped by family with their count and size
(`MEMORY USAGE`, sampled) and whether they carry a TTL. Growth is compared between the end of
the warm-up and the end of the run, and a slope is fitted over the second half of the run, so a
cache filling up to its cap (a plateau) and a leak (a steady slope) can be told apart. Redis
keeps ended sessions for an hour, telemetry results and early session callbacks for 10 minutes by
default (`fleet.store.Retention`): each family with a TTL grows until rate x keep, then stays. The
soak sets those retentions to 60 s (`RETENTION_ENV`), below its 4-minute warm-up, so Redis as a
whole (resident memory and `used_memory`) must be flat like every process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tests.e2e.chaos.harness import APP, VERSION, ChaosStack, PolicySpec
from tests.e2e.chaos.invariants import Sampler, status_name, truth_violations
from tests.e2e.chaos.loadgen import RANK, Generators, Plan, Target

CALLBACKS_PER_S = 200
PLACEMENTS_PER_S = 50
SESSION_LIFE_S = (2.0, 6.0)
PLACEMENT_WAIT_S = 10.0  # `?wait=` on each create: the answer comes once the session is linked
UNKNOWN_IDS = 300
WARM_UP_S = 240.0  # memory is compared from here (4 minutes of 10): in-process caches have filled
# Retention of ended records, shorter than the warm-up so that every family with a TTL has reached
# its steady size (rate x keep) before memory is compared, and Redis as a whole must stay flat. At
# the defaults (an hour for ended sessions, 10 minutes for telemetry results and early callbacks)
# the same families level out later, at rate x keep (fleet.store.Retention).
SOAK_RETENTION_S = 60
RETENTION_ENV = {
    "FLEET_ENDED_SESSION_KEEP_S": str(SOAK_RETENTION_S),
    "FLEET_TELEMETRY_KEEP_S": str(SOAK_RETENTION_S),
    "FLEET_EARLY_CALLBACK_KEEP_S": str(SOAK_RETENTION_S),
}
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
FAMILY_SAMPLE = 40  # keys per family whose MEMORY USAGE is read at each sample
ROOT = Path(__file__).resolve().parents[3]


# --- processes: memory and CPU ----------------------------------------------------------------------------
def _proc_status(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "RssAnon:", "RssFile:", "RssShmem:")):
                name, value = line.split(":", 1)
                out[name] = int(value.split()[0])
    return out


def group_pids(pgid: int) -> list[int]:
    """Every process in a process group (a `fleet web` may fork its workers)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            if int(stat[stat.rindex(")") + 2 :].split()[2]) == pgid:
                pids.append(int(entry))
    return pids


def cpu_seconds(pid: int) -> float:
    with contextlib.suppress(OSError, ValueError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


def process_sample(pids: dict[str, list[int]]) -> dict[str, dict[str, float]]:
    out = {}
    for name, members in pids.items():
        mem = [_proc_status(p) for p in members]
        out[name] = {
            "rss_kb": sum(m.get("VmRSS", 0) for m in mem),
            "anon_kb": sum(m.get("RssAnon", 0) for m in mem),
            "file_kb": sum(m.get("RssFile", 0) + m.get("RssShmem", 0) for m in mem),
            "cpu_s": round(sum(cpu_seconds(p) for p in members), 2),
        }
    return out


# --- Redis -------------------------------------------------------------------------------------------------
def family(key: str, prefix: str) -> str:
    """`dep`, `session`, `alloc:geo`, `rq:job`...: what a key is, without its id."""
    rest = key[len(prefix) + 1 :] if key.startswith(prefix + ":") else key
    parts = rest.split(":")
    head = parts[0]
    if head in ("alloc", "deps", "scaler", "platform", "rq", "sessions", "account") and len(parts) > 1:
        return f"{head}:{parts[1]}"
    return head


def redis_memory(chaos: ChaosStack, rng: random.Random) -> dict[str, Any]:
    with chaos.redis() as r:
        used = float(r.info("memory")["used_memory"])
        by_family: dict[str, list[str]] = {}
        for key in r.scan_iter(count=2000):
            by_family.setdefault(family(key, chaos.prefix), []).append(key)
        families: dict[str, dict[str, float]] = {}
        for name, keys in by_family.items():
            sample = keys if len(keys) <= FAMILY_SAMPLE else rng.sample(keys, FAMILY_SAMPLE)
            with r.pipeline(transaction=False) as pipe:
                for key in sample:
                    pipe.memory_usage(key, samples=0)
                    pipe.ttl(key)
                got = pipe.execute()
            sizes = [int(x or 0) for x in got[0::2]]
            with_ttl = sum(1 for t in got[1::2] if t is not None and t > 0) / max(1, len(sample))
            size = statistics.mean(sizes) * len(keys) if sizes else 0.0
            families[name] = {"keys": len(keys), "bytes": round(size), "ttl_fraction": round(with_ttl, 3)}
    no_ttl = sum(f["bytes"] * (1 - f["ttl_fraction"]) for f in families.values())
    ttl = sum(f["bytes"] * f["ttl_fraction"] for f in families.values())
    return {
        "used": used,
        "keys": sum(int(f["keys"]) for f in families.values()),
        "keys_bytes_without_ttl": round(no_ttl),
        "keys_bytes_with_ttl": round(ttl),
        "families": families,
    }


@contextlib.contextmanager
def watching(chaos: ChaosStack, extra: dict[str, int], out: list[dict[str, Any]]) -> Any:
    """Samples memory, CPU, Redis and the load average every MEMORY_EVERY_S in a thread."""
    stop = threading.Event()
    rng = random.Random(3)

    def pids() -> dict[str, list[int]]:
        found = {name: group_pids(p.pid) for name, p in chaos.group.procs.items() if p.alive()}
        redis_proc = chaos.stack.redis.proc if chaos.stack.redis is not None else None
        if redis_proc is not None:
            found["redis"] = [redis_proc.pid]
        for name, pid in extra.items():
            found[name] = [pid]
        return found

    def run() -> None:
        while not stop.is_set():
            with contextlib.suppress(Exception):  # a failed sample is a gap, not a failed soak
                out.append(
                    {
                        "at": time.monotonic(),
                        "load_average": os.getloadavg(),
                        "procs": process_sample(pids()),
                        "redis": redis_memory(chaos, rng),
                    }
                )
            stop.wait(MEMORY_EVERY_S)

    thread = threading.Thread(target=run, name="soak-memory", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=60)


# --- figures -----------------------------------------------------------------------------------------------
def slope_per_min(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) in value per minute."""
    if len(points) < 3:
        return 0.0
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.mean(xs), statistics.mean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return 60.0 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def memory_figures(
    samples: list[dict[str, Any]], started: float, warm_up_end: float, ended: float
) -> dict[str, Any]:
    """Per process: RSS at the end of the warm-up and at the end (each the mean of two samples,
    single samples jitter with the allocator's arenas and GC timing), growth, and the slope over
    the second half of the run; the same for Redis."""
    after = [s for s in samples if warm_up_end <= s["at"] <= ended + 1]
    if len(after) < 4:
        return {}
    first, last = after[:2], after[-2:]
    half = [s for s in after if s["at"] >= (warm_up_end + ended) / 2]

    def figure(get: Any, unit: str) -> dict[str, Any]:
        a = statistics.mean(get(s) for s in first)
        b = statistics.mean(get(s) for s in last)
        return {
            f"after_warm_up_{unit}": round(a),
            f"end_{unit}": round(b),
            "growth": round((b - a) / a, 4) if a else 0.0,
            f"slope_second_half_{unit}_per_min": round(slope_per_min([(s["at"], get(s)) for s in half]), 1),
        }

    out: dict[str, Any] = {}
    for name in first[0]["procs"]:
        if all(name in s["procs"] for s in after):
            out[name] = figure(lambda s, n=name: s["procs"][n]["rss_kb"], "kb")
            out[name]["anon"] = figure(lambda s, n=name: s["procs"][n]["anon_kb"], "kb")
    out["redis_used_memory"] = figure(lambda s: s["redis"]["used"], "bytes")
    out["redis_keys_without_ttl"] = figure(lambda s: s["redis"]["keys_bytes_without_ttl"], "bytes")
    out["redis_keys_with_ttl"] = figure(lambda s: s["redis"]["keys_bytes_with_ttl"], "bytes")
    fams = sorted(set(first[0]["redis"]["families"]) | set(last[-1]["redis"]["families"]))

    def fam(s: dict[str, Any], n: str, what: str) -> float:
        return float(s["redis"]["families"].get(n, {}).get(what, 0))

    out["redis_families"] = {
        n: {
            what: [round(statistics.mean(fam(s, n, what) for s in first)), round(fam(last[-1], n, what))]
            for what in ("keys", "bytes")
        }
        | {
            "ttl_fraction": fam(last[-1], n, "ttl_fraction"),
        }
        for n in fams
    }
    return out


def cpu_figures(samples: list[dict[str, Any]], start: float, end: float) -> dict[str, float]:
    """Share of one core each process used while the load ran."""
    inside = [s for s in samples if start <= s["at"] <= end + 1]
    if len(inside) < 2:
        return {}
    a, b = inside[0], inside[-1]
    span = b["at"] - a["at"]
    return {
        name: round((b["procs"][name]["cpu_s"] - a["procs"][name]["cpu_s"]) / span, 3)
        for name in a["procs"]
        if name in b["procs"] and span > 0
    }


def load_figures(samples: list[dict[str, Any]], start: float, end: float) -> dict[str, Any]:
    inside = [s["load_average"][0] for s in samples if start <= s["at"] <= end + 1]
    return {
        "one_minute_at_start": round(inside[0], 2) if inside else None,
        "one_minute_mean": round(statistics.mean(inside), 2) if inside else None,
        "one_minute_max": round(max(inside), 2) if inside else None,
        "cpus": os.cpu_count(),
    }


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


def unaccounted(
    chaos: ChaosStack, placed: dict[str, list[str]], deleted: set[str], sent: set[str]
) -> dict[str, Any]:
    """Every placement answered 200: deleted (and gone from the platform) or linked on both sides."""
    truth = chaos.truth()
    platform_ips = {s["ips"][0]: s for s in truth["sessions"] if s.get("ips")}
    lost, leaked, linked = [], [], 0
    for sid, ips in placed.items():
        on_platform = ips[0] in platform_ips
        if sid in deleted:
            if on_platform and platform_ips[ips[0]].get("linked"):
                leaked.append(sid)
            continue
        r = chaos.api("GET", f"/v1/session/{sid}")
        if sid in sent and r.status_code in (404, 410):
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


# --- diagnostic: where the web processes' Python memory goes -----------------------------------------
PROBE_DIR = Path(__file__).resolve().parent / "memprobe"


def probe_env(trace_dir: Path) -> dict[str, str]:
    """Environment that makes `fleet web` run under tracemalloc (tests/e2e/chaos/memprobe)."""
    trace_dir.mkdir(parents=True, exist_ok=True)
    path = os.pathsep.join(p for p in (str(PROBE_DIR), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, "SOAK_TRACEMALLOC_DIR": str(trace_dir)}


@contextlib.contextmanager
def snapshots_at(chaos: ChaosStack, times: list[float]) -> Any:
    """SIGUSR2 to every web process at each monotonic time (each writes a tracemalloc snapshot)."""
    stop = threading.Event()

    def run() -> None:
        for at in times:
            if stop.wait(max(0.0, at - time.monotonic())):
                return
            for name, proc in chaos.group.procs.items():
                if name.startswith("web") and proc.alive():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(proc.pid, signal.SIGUSR2)

    thread = threading.Thread(target=run, name="soak-snapshots", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)


def snapshot_growth(trace_dir: Path, top: int = 25) -> dict[str, Any]:
    """Per web process: what grew between its first and last snapshot, by line and by traceback."""
    import tracemalloc

    out: dict[str, Any] = {}
    pids = sorted({p.name.split("-")[1] for p in trace_dir.glob("web-*-*.snap")})
    for pid in pids:
        snaps = sorted(trace_dir.glob(f"web-{pid}-*.snap"), key=lambda p: int(p.stem.split("-")[2]))
        if len(snaps) < 2:
            continue
        loaded = [tracemalloc.Snapshot.load(str(p)) for p in snaps]
        first, last = loaded[0], loaded[-1]
        by_line = last.compare_to(first, "lineno")
        by_trace = last.compare_to(first, "traceback")
        out[pid] = {
            "traced_kb": [round(sum(st.size for st in s.statistics("filename")) / 1024) for s in loaded],
            "by_line": [
                {
                    "where": str(d.traceback[0]),
                    "size_diff_kb": round(d.size_diff / 1024, 1),
                    "count_diff": d.count_diff,
                }
                for d in by_line[:top]
            ],
            "by_traceback": [
                {
                    "size_diff_kb": round(d.size_diff / 1024, 1),
                    "count_diff": d.count_diff,
                    "traceback": [str(f) for f in d.traceback][-8:],
                }
                for d in by_trace[:8]
            ],
        }
    return out


def run_soak(
    duration_s: float = 600.0,
    seed: int = 5,
    warm_up_s: float = WARM_UP_S,
    keep_logs: Path | None = None,
    trace_memory: Path | None = None,
    rates: tuple[float, float] = (CALLBACKS_PER_S, PLACEMENTS_PER_S),
) -> dict[str, Any]:
    callbacks_per_s, placements_per_s = rates
    chaos = ChaosStack(
        seed=seed,
        policies=SOAK_POLICIES,
        sockets=SOAK_SOCKETS,
        sim_extra=("--telemetry-delay-s", "0.5"),
        env={**RETENTION_ENV, **(probe_env(trace_memory) if trace_memory is not None else {})},
    )
    chaos.start()
    samples: list[dict[str, Any]] = []
    sampler = Sampler(chaos, every_s=TRUTH_EVERY_S, policies=SOAK_POLICIES)
    stack = chaos.stack
    target = Target(
        web_ports=tuple(stack.web_ports),
        sim_port=stack.sim_port,
        api_token=stack.api_token,
        platform_token=stack.platform_token,
        webhook_secret=stack.webhook_secret,
        app=APP,
        version=VERSION,
    )
    plans = (
        Plan("callbacks", callbacks_per_s, duration_s, seed=11, drain_s=LATE_WAIT_S, unknown_ids=UNKNOWN_IDS),
        Plan(
            "placements",
            placements_per_s,
            duration_s,
            seed=12,
            drain_s=LATE_WAIT_S,
            wait_s=PLACEMENT_WAIT_S,
            life_s=SESSION_LIFE_S,
            pool_size=SOAK_POOL_SIZE,
        ),
    )
    gens = Generators(target, plans)
    try:
        chaos.wait_ready()
        sampler.start()
        started = gens.start()
        generators = {f"loadgen-{kind}": pid for kind, pid in gens.pids.items()}
        marks = [started + warm_up_s, started + (warm_up_s + duration_s) / 2, started + duration_s - 5]
        probing = snapshots_at(chaos, marks) if trace_memory is not None else contextlib.nullcontext()
        with watching(chaos, generators, samples), probing:
            results = gens.results(timeout_s=duration_s + LATE_WAIT_S + 120)
            ended = time.monotonic()
        time.sleep(8)  # reservations expire, deletes settle, a reconcile passes
        failed = {k: v["failed"] for k, v in results.items() if "failed" in v}
        if failed:
            raise RuntimeError(f"load generator failed: {failed}")
        cb, pl = results["callbacks"], results["placements"]
        missing = unreflected(chaos, cb["accepted_unknown"])
        sessions = unaccounted(chaos, pl["placed"], set(pl["deleted"]), set(pl["delete_sent"]))
        sampler.stop()
        platform = chaos.calls()
        safety = list(sampler.violations.values()) + truth_violations(chaos.truth(), SOAK_POLICIES)
        memory = memory_figures(samples, started, started + warm_up_s, started + duration_s)
        cpu = cpu_figures(samples, started, started + duration_s)
        service = {k: v for k, v in memory.items() if k.startswith(("web", "scaler", "worker"))}
        lost = len(missing) + len(sessions["lost"]) + len(sessions["deleted_but_on_platform"])
        rates_met = (
            cb["callbacks"]["ok_per_s"] >= 0.98 * callbacks_per_s
            and pl["placements"]["ok_per_s"] >= 0.98 * placements_per_s
            and (callbacks_per_s, placements_per_s) == (CALLBACKS_PER_S, PLACEMENTS_PER_S)
        )
        client_errors = {
            f"{kind} {name}": n
            for kind, doc in (("callback", cb["callbacks"]), ("placement", pl["placements"]))
            for name, n in doc["errors"].items()
        } | {f"delete {name}": n for name, n in pl["session_deletes"]["errors"].items()}
        checks = {
            "nothing_lost": lost == 0,
            "no_safety_violation": not safety,
            "service_memory_growth_under_limit": bool(service)
            and all(v["growth"] < GROWTH_LIMIT for v in service.values()),
            "redis_memory_growth_under_limit": bool(memory)
            and memory.get("redis", {}).get("growth", float("inf")) < GROWTH_LIMIT
            and memory["redis_used_memory"]["growth"] < GROWTH_LIMIT,
            "target_rates_answered_200": rates_met,
            "no_client_errors": not client_errors,
        }
        return {
            "passed": all(checks.values()) and trace_memory is None,
            "diagnostic_run_under_tracemalloc": trace_memory is not None,
            "checks": checks,
            "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "duration_s": duration_s,
            "warm_up_s": warm_up_s,
            "retention_s": {k.removeprefix("FLEET_").lower(): int(v) for k, v in RETENTION_ENV.items()},
            "load_average": load_figures(samples, started, ended),
            "target": {"callbacks_per_s": CALLBACKS_PER_S, "placements_per_s": PLACEMENTS_PER_S},
            "offered": {"callbacks_per_s": callbacks_per_s, "placements_per_s": placements_per_s},
            "callbacks": cb["callbacks"],
            "placements": pl["placements"],
            "session_deletes": pl["session_deletes"],
            "placements_answered_waiting": pl["answered_waiting"],
            "generator": {
                "design": "open loop, one process per stream, pre-encoded requests, keep-alive pools",
                "launch_lag": {"callbacks": cb["launch_lag"], "placements": pl["launch_lag"]},
                "cpu_s": {"callbacks": cb["generator_cpu_s"], "placements": pl["generator_cpu_s"]},
                "connections_opened": {
                    "callbacks": cb["connections_opened"],
                    "placements": pl["connections_opened"],
                },
                "unfinished_after_drain": {"callbacks": cb["unfinished"], "placements": pl["unfinished"]},
                "truth_reads": cb["truth_reads"],
            },
            "cpu_share_of_one_core": cpu,
            "platform_calls": {"total": platform.get("total"), "by_endpoint": platform.get("responses")},
            "lost": lost,
            "unreflected_callbacks": missing[:20],
            "unknown_deployments_tracked": len(cb["accepted_unknown"]),
            "sessions": {**sessions, "lost": sessions["lost"][:20], "placed": len(pl["placed"])},
            "refused_placements": pl["refused"],
            "session_delete_retries": pl["delete_retries"],
            "client_errors": client_errors,
            "safety_violations": [list(v) for v in safety][:20],
            "memory_growth_limit": GROWTH_LIMIT,
            "memory": memory,
            "memory_samples": len(samples),
            "memory_series": series(samples, started),
            "peak_live_deployments": sampler.peak_live,
            **({"tracemalloc": snapshot_growth(trace_memory)} if trace_memory is not None else {}),
        }
    finally:
        gens.stop()
        sampler.stop()
        chaos.stop(keep_logs=keep_logs)


def series(samples: list[dict[str, Any]], started: float) -> dict[str, Any]:
    """Compact time series for plots: seconds since the start, RSS (kB) per process, Redis bytes."""
    return {
        "t_s": [round(s["at"] - started) for s in samples],
        "rss_kb": {n: [s["procs"].get(n, {}).get("rss_kb") for s in samples] for n in samples[0]["procs"]}
        if samples
        else {},
        "redis_used": [round(s["redis"]["used"]) for s in samples],
        "redis_keys_without_ttl_bytes": [s["redis"]["keys_bytes_without_ttl"] for s in samples],
        "load_average_1m": [round(s["load_average"][0], 2) for s in samples],
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.e2e.chaos.soak")
    parser.add_argument("--duration-s", type=float, default=600.0)
    parser.add_argument("--warm-up-s", type=float, default=WARM_UP_S)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--callbacks-per-s", type=float, default=CALLBACKS_PER_S, help="diagnostic runs only")
    parser.add_argument(
        "--placements-per-s", type=float, default=PLACEMENTS_PER_S, help="diagnostic runs only"
    )
    parser.add_argument("--keep-logs", type=Path, default=None, help="copy the processes' logs here")
    parser.add_argument(
        "--trace-memory",
        type=Path,
        default=None,
        help="diagnostic: run the web processes under tracemalloc, snapshots in this directory",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "soak.json")
    args = parser.parse_args()
    result = run_soak(
        args.duration_s,
        args.seed,
        args.warm_up_s,
        args.keep_logs,
        args.trace_memory,
        (args.callbacks_per_s, args.placements_per_s),
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    keep = ("passed", "checks", "callbacks", "placements", "load_average", "cpu_share_of_one_core")
    brief = {k: result[k] for k in keep}
    print(f"[soak] {json.dumps(brief)}", flush=True)
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
