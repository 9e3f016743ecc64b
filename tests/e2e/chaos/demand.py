"""Players joining and leaving through the session API, in two regions, with a seeded random
demand that rises and falls (so the fleet scales up and, when players leave, in).

Every request is recorded: what was asked (our session id, the players' addresses), what the
service answered, when the session was seen linked, and whether (and how) we deleted it. The
invariant checker compares these records with the simulator's ground truth.
"""

from __future__ import annotations

import contextlib
import math
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from fleet.demo import REGIONS, ip_pool
from tests.e2e.chaos.harness import APP, VERSION, ChaosStack

# Players wanted per region: base + swing * sin(...), so demand crosses thresholds both ways.
DEMAND = {"europe": (10.0, 7.0), "north-america": (5.0, 4.0)}
PERIOD_S = 40.0
TICK_S = 0.25
MAX_STARTS_PER_TICK = 2
POOL_SIZE = 6000


_POOLS: dict[int, dict[str, list[str]]] = {}


def pools(size: int = POOL_SIZE) -> dict[str, list[str]]:
    """Public addresses that geolocate in each region, each once (built once per process and size)."""
    if size not in _POOLS:
        _POOLS[size] = {
            r.policy: list(dict.fromkeys(ip_pool(r, random.Random(7), size=size))) for r in REGIONS
        }
    return _POOLS[size]


@dataclass
class Placement:
    region: str
    ips: list[str]
    asked_at: float
    status: int = 0  # HTTP answer of the create (0: no answer)
    session_id: str = ""
    answer_state: str = ""
    error: str = ""
    linked_at: float | None = None
    deployment: str = ""
    deleted_at: float | None = None
    delete_status: int = 0
    leaves_at: float = 0.0

    @property
    def placed(self) -> bool:
        return self.status == 200 and bool(self.session_id)


@dataclass
class DemandDriver:
    chaos: ChaosStack
    seed: int
    placements: list[Placement] = field(default_factory=list)
    ip_offset: int = 0  # where this run starts in the address pools (runs never share players)
    scale: float = 1.0  # multiplies the demand (a scenario may push it up)
    _rng: random.Random = field(init=False)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None
    _pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(8, "chaos-demand"))
    _ip_counter: int = 0
    _pools: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._pools = pools()
        self._ip_counter = self.ip_offset
        self._started = time.monotonic()

    # --- the loop ------------------------------------------------------------------------------------
    def start(self) -> DemandDriver:
        self._thread = threading.Thread(target=self._run, name="chaos-demand", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._pool.shutdown(wait=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            for region, (base, swing) in DEMAND.items():
                phase = 2 * math.pi * (now - self._started) / PERIOD_S + (0 if region == "europe" else 1.5)
                wanted = max(0, round(self.scale * (base + swing * math.sin(phase))))
                self._steer(region, wanted, now)
            self._stop.wait(TICK_S)

    def _live(self, region: str) -> list[Placement]:
        with self._lock:
            return [
                p
                for p in self.placements
                if p.region == region and p.deleted_at is None and (p.status in (0, 200))
            ]

    def _steer(self, region: str, wanted: int, now: float) -> None:
        live = self._live(region)
        players = sum(len(p.ips) for p in live)
        for p in live:
            if p.leaves_at and now >= p.leaves_at and p.placed:
                self._leave(p)
        if players < wanted:
            for _ in range(min(MAX_STARTS_PER_TICK, wanted - players)):
                self._join(region)
        elif players > wanted + 2:
            placed = [p for p in live if p.placed]
            if placed:
                self._leave(self._rng.choice(placed))

    def unique_ips(self, region: str, n: int) -> list[str]:
        """Addresses never used before in this run, so each platform session is recognisable."""
        pool = self._pools[region]
        with self._lock:
            start = self._ip_counter
            self._ip_counter += n
        return [pool[(start + i) % len(pool)] for i in range(n)]

    def _join(self, region: str) -> None:
        n = 1 if self._rng.random() < 0.8 else 2
        p = Placement(region, self.unique_ips(region, n), time.monotonic())
        p.leaves_at = p.asked_at + self._rng.uniform(5, 25)
        with self._lock:
            self.placements.append(p)
        self._pool.submit(self._create, p)

    def _leave(self, p: Placement) -> None:
        with self._lock:
            if p.deleted_at is not None:
                return
            p.deleted_at = time.monotonic()
        self._pool.submit(self._delete, p)

    # --- requests --------------------------------------------------------------------------------------
    def _create(self, p: Placement) -> None:
        body = {"app_name": APP, "version_name": VERSION, "ip_list": p.ips}
        try:
            r = self.chaos.api("POST", "/v1/session", json=body)
        except httpx.HTTPError as err:
            p.error = f"{type(err).__name__}: {err}"[:200]
            p.status = -1
            return
        p.status = r.status_code
        if r.status_code == 200:
            data = r.json()
            p.session_id = data["session_id"]
            p.answer_state = str(data.get("status", ""))
            if data.get("linked"):
                p.linked_at = time.monotonic()
        else:
            p.error = r.text[:200]

    def _delete(self, p: Placement) -> None:
        for attempt in range(5):
            try:
                r = self.chaos.api("DELETE", f"/v1/session/{p.session_id}")
            except httpx.HTTPError:
                time.sleep(0.5 * (attempt + 1))
                continue
            p.delete_status = r.status_code
            if r.status_code in (409, 503):  # being changed / unavailable: retry as a client would
                time.sleep(0.5 * (attempt + 1))
                continue
            return

    # --- after the run ---------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Read back every placed, undeleted session from the service (its current view)."""
        for p in list(self.placements):
            if not p.placed or p.deleted_at is not None:
                continue
            with contextlib.suppress(httpx.HTTPError):
                r = self.chaos.api("GET", f"/v1/session/{p.session_id}")
                if r.status_code == 200:
                    data = r.json()
                    p.answer_state = str(data.get("status", ""))
                    dep = data.get("deployment") or {}
                    if data.get("linked"):
                        p.deployment = str(dep.get("request_id") or "")
                        p.linked_at = p.linked_at or time.monotonic()
                    else:
                        p.deployment = ""
                else:
                    p.answer_state = f"http_{r.status_code}"

    def summary(self) -> dict[str, Any]:
        with self._lock:
            ps = list(self.placements)
        by: dict[str, int] = {}
        for p in ps:
            by[str(p.status)] = by.get(str(p.status), 0) + 1
        return {
            "requests": len(ps),
            "answers": by,
            "deleted": sum(p.deleted_at is not None for p in ps),
        }
