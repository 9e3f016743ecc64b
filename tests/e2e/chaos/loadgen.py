"""The soak's load generator: open loop, in processes of its own, cheap per request.

Open loop: request i of a stream is due at `start + i / rate`, whatever happened to the earlier
ones, and its latency is measured from that due time (not from when it was sent), so a slow
service, a full connection pool or a late generator all show in the figures instead of silently
lowering the rate (coordinated omission). The generator's own lateness (`launch_lag`) is reported
separately so that a generator-bound run is recognisable.

Cheap: each stream runs in its own process (`spawn`, so the harness's threads never share its
GIL), with a minimal HTTP/1.1 keep-alive client on asyncio streams (requests are pre-encoded
bytes, answers parsed by status line and Content-Length; no per-request client objects), and
every request body is built before the clock starts: callbacks from tables of encoded bodies,
placements from a list of encoded bodies with addresses never reused. The only JSON parsed per
request is a placement's answer (its session id).

Placements use `POST /v1/session?wait=SECONDS` (the allocator holds the answer until the session
is linked or unprocessable), so a placement needs no polling; a session still waiting when the
answer comes is read back once a second until it is settled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import random
import resource
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

REQUEST_TIMEOUT_S = 60.0
IDLE_CLOSE_S = 3.0  # uvicorn closes a keep-alive connection idle for 5 s: never reuse one that old
DELETE_RETRY_S = 2.0  # a client retries a 409/503 delete after the Retry-After the service sends (2 s)
DELETE_PATIENCE_S = 30.0  # ... for this long, then the last answer stands
WINDOW_S = 30  # answers are also counted per window of the run, to see when errors happened
MAX_INFLIGHT = 20_000  # beyond this the generator sheds (counted): a memory bound, not a pacing one
STEPS = ("INITIALIZING", "SEEKING", "SEEKED", "SCANNING", "DEPLOYING", "READY")
SESSION_STATES = ("Status.READY", "Status.WAITING", "Status.UNPROCESSABLE")
RANK = {name: i for i, name in enumerate((*STEPS, "TERMINATING", "TERMINATED", "ERROR"))}


# --- a minimal HTTP/1.1 client ------------------------------------------------------------------------
class HttpError(Exception):
    pass


# what a request can end in besides an answer (a timeout included); counted, never raised
NET_ERRORS = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, HttpError)


@dataclass
class Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    used_at: float


class Pool:
    """Keep-alive connections to one `host:port`, at most `size` at once (beyond it, requests
    queue here and the queueing counts in their latency)."""

    def __init__(self, host: str, port: int, size: int) -> None:
        self.host, self.port = host, port
        self.slots = asyncio.Semaphore(size)
        self.idle: list[Conn] = []
        self.opened = 0
        self.host_header = f"Host: {host}:{port}\r\n".encode()

    def encode(self, method: str, path: str, body: bytes = b"", headers: str = "") -> bytes:
        """The whole request, built once (callers keep these bytes and send them many times)."""
        head = f"{method} {path} HTTP/1.1\r\n".encode() + self.host_header
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n".encode()
        return head + headers.encode() + b"\r\n" + body

    def _take(self) -> Conn | None:
        now = time.monotonic()
        while self.idle:
            conn = self.idle.pop()
            if now - conn.used_at < IDLE_CLOSE_S:
                return conn
            conn.writer.close()
        return None

    async def send(self, raw: bytes) -> tuple[int, bytes]:
        async with self.slots:
            conn = self._take()
            if conn is None:
                reader, writer = await asyncio.open_connection(self.host, self.port)
                conn = Conn(reader, writer, 0.0)
                self.opened += 1
            try:
                conn.writer.write(raw)
                status, body, keep = await read_response(conn.reader)
            except BaseException:
                conn.writer.close()
                raise
            if keep:
                conn.used_at = time.monotonic()
                self.idle.append(conn)
            else:
                conn.writer.close()
            return status, body

    async def aclose(self) -> None:
        idle, self.idle = self.idle, []
        for conn in idle:
            conn.writer.close()
        for conn in idle:
            with contextlib.suppress(OSError):
                await conn.writer.wait_closed()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1."):
        raise HttpError(f"not an HTTP answer: {head[:40]!r}")
    status = int(head[9:12])
    lower = head.lower()
    keep = b"\r\nconnection: close" not in lower
    at = lower.find(b"\r\ncontent-length:")
    if at >= 0:
        end = lower.index(b"\r\n", at + 2)
        body = await reader.readexactly(int(lower[at + 17 : end]))
    elif b"\r\ntransfer-encoding: chunked" in lower:
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(parts)
    else:
        body, keep = await reader.read(), False
    return status, body, keep


# --- recording ---------------------------------------------------------------------------------------
@dataclass
class Stream:
    """One kind of request: latency from the due time, answers, completions per second."""

    name: str
    latencies: list[float] = field(default_factory=list)
    answers: Counter[str] = field(default_factory=Counter)
    per_second: Counter[int] = field(default_factory=Counter)  # completions by second of the run
    errors: Counter[str] = field(default_factory=Counter)
    windows: dict[int, Counter[str]] = field(default_factory=dict)  # answers by 10-s window of the run
    shed: int = 0

    def done(self, due: float, start: float, status: int | str) -> None:
        now = time.monotonic()
        self.latencies.append(now - due)
        self.answers[str(status)] += 1
        self.per_second[int(now - start)] += 1
        self.windows.setdefault(int(now - start) // WINDOW_S, Counter())[str(status)] += 1

    def failed(self, due: float, start: float, err: BaseException) -> None:
        self.errors[type(err).__name__] += 1
        self.done(due, start, -1)

    def summary(self, duration_s: float) -> dict[str, Any]:
        v = sorted(self.latencies)

        def pick(q: float) -> float | None:
            return round(v[min(len(v) - 1, int(q * len(v)))] * 1000, 1) if v else None

        steady = [self.per_second.get(s, 0) for s in range(5, int(duration_s) - 5)]
        return {
            "count": len(v),
            "per_s": round(len(v) / duration_s, 1) if duration_s else None,
            "ok_per_s": round(self.answers.get("200", 0) / duration_s, 1) if duration_s else None,
            "per_s_steady_min": min(steady) if steady else None,
            "p50_ms": pick(0.50),
            "p90_ms": pick(0.90),
            "p99_ms": pick(0.99),
            "p999_ms": pick(0.999),
            "max_ms": pick(1.0),
            "answers": dict(self.answers),
            "errors": dict(self.errors),
            "shed_by_generator": self.shed,
            f"answers_by_{WINDOW_S}_s": {str(w * WINDOW_S): dict(c) for w, c in sorted(self.windows.items())},
            "latency_from": "scheduled time (open loop)",
        }


@dataclass
class Lag:
    """How late the generator launched requests against their due times."""

    values: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        v = sorted(self.values)
        if not v:
            return {}
        return {
            "p50_ms": round(v[len(v) // 2] * 1000, 2),
            "p99_ms": round(v[min(len(v) - 1, int(0.99 * len(v)))] * 1000, 2),
            "max_ms": round(v[-1] * 1000, 2),
            "late_over_100ms": sum(x > 0.1 for x in v),
        }


async def open_loop(
    rate: float,
    start: float,
    duration_s: float,
    fire: Callable[[int, float], Awaitable[None]],
    stream: Stream,
    lag: Lag,
    drain_s: float,
) -> int:
    """Launch request i at start + i / rate (never waiting for earlier answers). Returns how many
    were still unfinished `drain_s` after the last launch (they are cancelled)."""
    inflight: set[asyncio.Task[None]] = set()
    for i in range(int(rate * duration_s)):
        due = start + i / rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        lag.values.append(max(0.0, time.monotonic() - due))
        if len(inflight) >= MAX_INFLIGHT:
            stream.shed += 1
            continue
        task = asyncio.create_task(fire(i, due))
        inflight.add(task)
        task.add_done_callback(inflight.discard)
    if not inflight:
        return 0
    _, late = await asyncio.wait(inflight, timeout=drain_s)
    for task in late:
        task.cancel()
    return len(late)


def usage() -> dict[str, float]:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"cpu_s": ru.ru_utime + ru.ru_stime, "max_rss_kb": ru.ru_maxrss}


# --- streams -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    web_ports: tuple[int, ...]
    sim_port: int
    api_token: str
    platform_token: str
    webhook_secret: str
    app: str
    version: str


@dataclass(frozen=True)
class Plan:
    kind: str  # "callbacks" or "placements"
    rate: float
    duration_s: float
    seed: int
    drain_s: float = 180.0
    unknown_ids: int = 300
    truth_every_s: float = 5.0
    wait_s: float = 10.0  # ?wait= on session creates
    life_s: tuple[float, float] = (2.0, 6.0)
    pool_size: int = 40_000  # addresses per region, never reused
    conns_per_web: int = 256


class Callbacks:
    """Deployment callbacks for our real deployments (their current state, as the platform would
    send it), for deployments we do not know (stepping forward through the statuses) and session
    callbacks for platform sessions we never made, all with the right secret."""

    def __init__(self, target: Target, plan: Plan) -> None:
        self.t, self.plan = target, plan
        self.rng = random.Random(plan.seed)
        self.pools = [Pool("127.0.0.1", p, plan.conns_per_web) for p in target.web_ports]
        self.sim = Pool("127.0.0.1", target.sim_port, 2)
        self.stream = Stream("callbacks")
        self.known: list[bytes] = []  # encoded per web, refreshed from the platform's truth
        self.accepted_unknown: dict[str, str] = {}
        token = f"?token={target.webhook_secret}"
        ids = [f"soak-unknown-{plan.seed}-{i:04d}" for i in range(plan.unknown_ids)]
        # (web, id index, step) -> request bytes; every body the run can send is built here
        self.unknown = [
            [
                [
                    pool.encode(
                        "POST",
                        f"/webhooks/deployments{token}",
                        json.dumps(
                            {"request_id": rid, "current_status": f"Status.{s}", "sockets": 8}
                            | {"sockets_usage": 0}
                        ).encode(),
                    )
                    for s in STEPS
                ]
                for rid in ids
            ]
            for pool in self.pools
        ]
        self.unknown_ids = ids
        self.sessions = [
            [
                pool.encode(
                    "POST",
                    f"/webhooks/sessions{token}",
                    json.dumps(
                        {
                            "session_id": f"soak-psession-{self.rng.randrange(1_000_000)}",
                            "status": self.rng.choice(SESSION_STATES),
                            "linked": False,
                        }
                    ).encode(),
                )
                for _ in range(4096)
            ]
            for pool in self.pools
        ]
        self.known_by_web: list[list[bytes]] = [[] for _ in self.pools]
        auth = f"Authorization: token {target.platform_token}\r\n"
        self.truth_get = self.sim.encode("GET", "/_sim/state", headers=auth)
        self.truth_reads = 0

    async def follow_truth(self, stop: asyncio.Event) -> None:
        """The platform's deployments, every few seconds, encoded as the callbacks it would send."""
        token = f"?token={self.t.webhook_secret}"
        while not stop.is_set():
            try:
                status, body = await asyncio.wait_for(self.sim.send(self.truth_get), 30)
                if status == 200:
                    deps = json.loads(body)["deployments"]
                    docs = [
                        json.dumps(
                            {
                                "request_id": d["request_id"],
                                "current_status": d["status"],
                                "sockets": d["sockets"],
                                "sockets_usage": d["sockets_usage"],
                                "app_name": self.t.app,
                                "app_version": self.t.version,
                                "tags": d["tags"],
                            }
                        ).encode()
                        for d in deps
                    ]
                    self.known_by_web = [
                        [pool.encode("POST", f"/webhooks/deployments{token}", doc) for doc in docs]
                        for pool in self.pools
                    ]
                    self.truth_reads += 1
            except (OSError, asyncio.IncompleteReadError, TimeoutError, HttpError, ValueError, KeyError):
                pass
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.plan.truth_every_s)

    async def fire(self, i: int, due: float) -> None:
        web = i % len(self.pools)
        roll = self.rng.random()
        track: tuple[str, str] | None = None
        if roll < 0.5 and self.known_by_web[web]:
            raw = self.rng.choice(self.known_by_web[web])
        elif roll < 0.8:
            k = self.rng.randrange(len(self.unknown_ids))
            rid = self.unknown_ids[k]
            have = self.accepted_unknown.get(rid)
            step = min(len(STEPS) - 1, RANK[have] + self.rng.choice((0, 1))) if have else 0
            raw, track = self.unknown[web][k][step], (rid, STEPS[step])
        else:
            raw = self.sessions[web][i % len(self.sessions[web])]
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                status, _ = await self.pools[web].send(raw)
        except NET_ERRORS as err:
            self.stream.failed(due, self.start, err)
            return
        self.stream.done(due, self.start, status)
        if status == 200 and track is not None:
            rid, step_name = track
            current = self.accepted_unknown.get(rid)
            if current is None or RANK[step_name] > RANK[current]:
                self.accepted_unknown[rid] = step_name

    async def run(self, start: float) -> dict[str, Any]:
        self.start = start
        stop = asyncio.Event()
        follower = asyncio.create_task(self.follow_truth(stop))
        lag = Lag()
        cpu0 = usage()["cpu_s"]
        try:
            unfinished = await open_loop(
                self.plan.rate, start, self.plan.duration_s, self.fire, self.stream, lag, self.plan.drain_s
            )
        finally:
            stop.set()
            await follower
        elapsed = time.monotonic() - start
        for pool in (*self.pools, self.sim):
            await pool.aclose()
        return {
            "kind": "callbacks",
            "elapsed_s": elapsed,
            "callbacks": self.stream.summary(self.plan.duration_s),
            "launch_lag": lag.summary(),
            "unfinished": unfinished,
            "accepted_unknown": self.accepted_unknown,
            "truth_reads": self.truth_reads,
            "connections_opened": sum(p.opened for p in self.pools),
            "generator_cpu_s": round(usage()["cpu_s"] - cpu0, 1),
            "generator_max_rss_kb": usage()["max_rss_kb"],
        }


class Placements:
    """Sessions through our API at a fixed rate, each deleted 2-6 s after it was answered."""

    def __init__(self, target: Target, plan: Plan) -> None:
        from tests.e2e.chaos.demand import pools

        self.t, self.plan = target, plan
        self.rng = random.Random(plan.seed)
        self.pools = [Pool("127.0.0.1", p, plan.conns_per_web) for p in target.web_ports]
        self.creates = Stream("placements")
        self.deletes = Stream("session_deletes")
        self.settle = Stream("waiting_settled")  # sessions answered WAITING, until settled
        self.auth = f"Authorization: token {target.api_token}\r\n"
        addresses = pools(plan.pool_size)
        total = int(plan.rate * plan.duration_s)
        if total > min(len(a) for a in addresses.values()):
            raise ValueError("soak: more placements than unique addresses; raise pool_size")
        self.ips: list[str] = []
        self.bodies: list[bytes] = []
        for i in range(total):
            region = "europe" if i % 3 else "north-america"
            ip = addresses[region][i]
            self.ips.append(ip)
            doc = {"app_name": target.app, "version_name": target.version, "ip_list": [ip]}
            body = json.dumps(doc).encode()
            pool = self.pools[i % len(self.pools)]
            self.bodies.append(pool.encode("POST", f"/v1/session?wait={plan.wait_s:g}", body, self.auth))
        self.placed: dict[str, list[str]] = {}
        self.deleted: set[str] = set()
        self.delete_sent: set[str] = set()
        self.refused = 0
        self.answered_waiting = 0
        self.delete_retries: Counter[str] = Counter()

    async def fire(self, i: int, due: float) -> None:
        pool = self.pools[i % len(self.pools)]
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                status, body = await pool.send(self.bodies[i])
        except NET_ERRORS as err:
            self.creates.failed(due, self.start, err)
            return
        self.creates.done(due, self.start, status)
        if status != 200:
            self.refused += 1
            return
        answer = json.loads(body)
        sid = answer["session_id"]
        self.placed[sid] = [self.ips[i]]
        if not answer.get("linked"):
            self.answered_waiting += 1
            await self.until_settled(pool, sid, time.monotonic())
        leave_at = time.monotonic() + self.rng.uniform(*self.plan.life_s)
        await asyncio.sleep(max(0.0, leave_at - time.monotonic()))
        self.delete_sent.add(sid)
        delete = pool.encode("DELETE", f"/v1/session/{sid}", headers=self.auth)
        give_up = time.monotonic() + DELETE_PATIENCE_S
        while True:
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT_S):
                    status, _ = await pool.send(delete)
            except NET_ERRORS as err:
                self.deletes.failed(leave_at, self.start, err)
                return
            # 409 (being changed) and 503 (platform unavailable, with Retry-After) say "again shortly"
            if status not in (409, 503) or time.monotonic() + DELETE_RETRY_S > give_up:
                break
            self.delete_retries[str(status)] += 1
            await asyncio.sleep(DELETE_RETRY_S)
        self.deletes.done(leave_at, self.start, status)
        if status in (200, 410):  # 410: an earlier try deleted it, its answer was lost
            self.deleted.add(sid)

    async def until_settled(self, pool: Pool, sid: str, since: float) -> None:
        """A session answered WAITING (the wait ran out): read it once a second until it is linked
        or final (at most 30 s); only these sessions are ever polled."""
        get = pool.encode("GET", f"/v1/session/{sid}", headers=self.auth)
        deadline = since + 30.0
        while time.monotonic() < deadline:
            await asyncio.sleep(1.0)
            try:
                status, body = await pool.send(get)
            except (OSError, asyncio.IncompleteReadError, HttpError):
                continue
            if status != 200:
                break
            doc = json.loads(body)
            if doc.get("linked") or str(doc.get("status", "")).upper().endswith(("UNPROCESSABLE", "ERROR")):
                break
        self.settle.done(since, self.start, "settled")

    async def run(self, start: float) -> dict[str, Any]:
        self.start = start
        lag = Lag()
        cpu0 = usage()["cpu_s"]
        unfinished = await open_loop(
            self.plan.rate, start, self.plan.duration_s, self.fire, self.creates, lag, self.plan.drain_s
        )
        elapsed = time.monotonic() - start
        for pool in self.pools:
            await pool.aclose()
        return {
            "kind": "placements",
            "elapsed_s": elapsed,
            "placements": self.creates.summary(self.plan.duration_s),
            "session_deletes": self.deletes.summary(self.plan.duration_s),
            "answered_waiting": self.answered_waiting,
            "waiting_settled": self.settle.summary(self.plan.duration_s) if self.settle.latencies else None,
            "launch_lag": lag.summary(),
            "unfinished": unfinished,
            "placed": self.placed,
            "deleted": sorted(self.deleted),
            "delete_sent": sorted(self.delete_sent),
            "refused": self.refused,
            "delete_retries": dict(self.delete_retries),
            "connections_opened": sum(p.opened for p in self.pools),
            "generator_cpu_s": round(usage()["cpu_s"] - cpu0, 1),
            "generator_max_rss_kb": usage()["max_rss_kb"],
        }


# --- processes ---------------------------------------------------------------------------------------
def _child(target: Target, plan: Plan, ready: Any, go: Any, start_at: Any, out: Any) -> None:
    """One stream in its own process: build everything, say ready, wait for the common start."""
    try:
        gen = (Callbacks if plan.kind == "callbacks" else Placements)(target, plan)
        ready.put((plan.kind, os.getpid()))
        go.wait()

        async def main() -> dict[str, Any]:
            return await gen.run(start_at.value)

        out.put(asyncio.run(main()))
    except BaseException as err:  # the parent must hear of it, not wait forever
        out.put({"kind": plan.kind, "failed": f"{type(err).__name__}: {err}"})
        raise


@dataclass
class Generators:
    """Each plan in its own process; `start()` returns once all are built and running."""

    target: Target
    plans: tuple[Plan, ...]
    procs: list[Any] = field(default_factory=list)
    pids: dict[str, int] = field(default_factory=dict)  # kind -> process id

    def start(self, lead_s: float = 0.5) -> float:
        ctx = mp.get_context("spawn")
        self.ready, self.out, self.go = ctx.Queue(), ctx.Queue(), ctx.Event()
        self.start_at = ctx.Value("d", 0.0)
        for plan in self.plans:
            proc = ctx.Process(
                target=_child,
                args=(self.target, plan, self.ready, self.go, self.start_at, self.out),
                name=f"soak-{plan.kind}",
                daemon=True,
            )
            proc.start()
            self.procs.append(proc)
        for _ in self.plans:
            kind, pid = self.ready.get(timeout=120)
            self.pids[kind] = pid
        self.start_at.value = time.monotonic() + lead_s  # CLOCK_MONOTONIC is shared by processes
        self.go.set()
        return float(self.start_at.value)

    def results(self, timeout_s: float) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout_s
        while len(found) < len(self.plans):
            doc = self.out.get(timeout=max(1.0, deadline - time.monotonic()))
            found[doc["kind"]] = doc
        for proc in self.procs:
            proc.join(timeout=30)
        return found

    def stop(self) -> None:
        for proc in self.procs:
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=10)
