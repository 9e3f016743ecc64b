"""The faults, one at a time. Each scenario: demand starts, the fault is injected, held, cleared,
demand goes on a little, stops, and the invariants are checked once the system converged; then
the scenario's own sessions are deleted so the next one starts from a quiet fleet.

Scenarios share one stack per seed (as a long-running installation meets one fault after another);
a process killed by a scenario is started again before the scenario is checked.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from rq import Queue, Worker

from tests.e2e.chaos.demand import DemandDriver, Placement
from tests.e2e.chaos.harness import APP, VERSION, ChaosStack, poll
from tests.e2e.chaos.invariants import Sampler, Verdict, Violation, final_check, status_name, terminal

WARM_S = 4.0
AFTER_S = 4.0
OUTAGE_RELOCATION_GOAL_S = 5.0


@dataclass
class Run:
    """What a scenario sees and leaves behind: the stack, the demand, the sampler, its notes."""

    chaos: ChaosStack
    driver: DemandDriver
    sampler: Sampler
    rng: random.Random
    notes: dict[str, Any] = field(default_factory=dict)
    extra: list[Violation] = field(default_factory=list)


@dataclass(frozen=True)
class Scenario:
    name: str
    inject: Callable[[Run], None]
    clear: Callable[[Run], None]
    fault_s: float = 10.0
    redis_lost: bool = False


# --- kill -9 of the scaler leader --------------------------------------------------------------------
def kill_leader(run: Run) -> None:
    leader = poll("a leader", run.chaos.leader, 15)
    run.notes["killed"] = leader
    t0 = time.monotonic()
    run.chaos.kill(leader)
    successor = poll("a new leader", run.chaos.leader, 20, every_s=0.05)
    run.notes["handover_s"] = round(time.monotonic() - t0, 2)
    run.notes["successor"] = successor
    ttl = float(run.chaos.stack.env.get("FLEET_LEASE_TTL_S", "3"))
    if run.notes["handover_s"] > ttl + 1.0:
        run.extra.append(
            ("slow_handover", successor, f"{run.notes['handover_s']} s > lease TTL {ttl} s + 1 s")
        )


def restart_killed(run: Run) -> None:
    if "killed" in run.notes:
        run.chaos.restart(run.notes["killed"])


# --- kill -9 of a worker in the middle of a create ------------------------------------------------------
def kill_worker_mid_create(run: Run) -> None:
    chaos = run.chaos
    # Deploy answers are held after the deployment was made, so the create call is long enough for a
    # kill to land in it; more demand makes the scaler create.
    chaos.faults(hold_rate={"deploy": 1.0}, hold_s=8)
    run.driver.scale = 2.0
    known = {d["request_id"] for d in chaos.truth()["deployments"]}

    def new_create() -> str | None:
        # The platform acted at once (the answer is what is held): a new deployment is the signal.
        fresh = [d for d in chaos.truth()["deployments"] if d["request_id"] not in known]
        return fresh[0]["request_id"] if fresh else None

    made = poll("a deploy call", new_create, 30, every_s=0.05)
    victim = poll("the worker running the create", lambda: _busy_worker(chaos), 3, every_s=0.02)
    chaos.kill(victim)
    run.notes.update(killed=victim, created_during_kill=made)


def _busy_worker(chaos: ChaosStack) -> str | None:
    with chaos.redis(decode=False) as r:  # RQ reads bytes
        queue = Queue(f"{chaos.prefix}-platform", connection=r)
        pids = {str(w.pid) for w in Worker.all(queue=queue) if w.get_current_job_id()}
    for name, proc in chaos.group.procs.items():
        if name.startswith("worker") and str(proc.pid) in pids and proc.alive():
            return str(name)
    return None


def clear_hold_and_restart(run: Run) -> None:
    run.chaos.faults(hold_rate={}, hold_s=30)
    run.driver.scale = 1.0
    if "killed" in run.notes:
        run.chaos.restart(run.notes["killed"])


# --- Redis restarted without its data ----------------------------------------------------------------
def restart_redis(run: Run) -> None:
    t0 = time.monotonic()
    run.chaos.restart_redis_empty(down_s=3.0)

    def rebuilt() -> bool:
        return bool(run.chaos.redis().get(f"{run.chaos.prefix}:rebuilt"))

    poll("state rebuilt from the platform", rebuilt, 60)
    run.notes["rebuilt_after_s"] = round(time.monotonic() - t0, 2)


def nothing(run: Run) -> None:
    return None


# --- platform faults set on the simulator -------------------------------------------------------------
def faults(**changes: Any) -> Callable[[Run], None]:
    def apply(run: Run) -> None:
        run.chaos.faults(**changes)

    return apply


def faults_with_demand(scale: float, **changes: Any) -> Callable[[Run], None]:
    def apply(run: Run) -> None:
        run.driver.scale = scale
        run.chaos.faults(**changes)

    return apply


def clear_faults(**changes: Any) -> Callable[[Run], None]:
    def apply(run: Run) -> None:
        run.driver.scale = 1.0
        run.chaos.faults(**changes)

    return apply


# --- a location outage: placements go elsewhere within 5 s -----------------------------------------
def outage(run: Run) -> None:
    chaos = run.chaos
    truth = chaos.truth()
    cities: dict[str, int] = {}
    for d in truth["deployments"]:
        if "policy:europe" in d["tags"] and status_name(d["status"]) == "READY":
            cities[d["location"]["city"]] = cities.get(d["location"]["city"], 0) + 1
    city = max(cities, key=lambda c: cities[c])
    run.notes.update(outage_city=city, europe_ready_by_city=cities)
    t0 = time.monotonic()
    chaos.faults(outages=[city])
    relocated: float | None = None
    probes = 0
    while time.monotonic() - t0 < 12.0:
        probes += 1
        p = Placement("europe", run.driver.unique_ips("europe", 1), time.monotonic(), leaves_at=1e18)
        run.driver.placements.append(p)
        try:
            r = chaos.api("POST", "/v1/session", params={"wait": "5"}, json=_session(p))
        except httpx.HTTPError as err:
            p.status, p.error = -1, str(err)[:200]
            continue
        p.status = r.status_code
        if r.status_code == 200:
            body = r.json()
            p.session_id = body["session_id"]
            p.answer_state = str(body.get("status"))
            rid = body.get("deployment_request_id") or ""
            if body.get("linked") and rid:
                p.linked_at, p.deployment = time.monotonic(), rid
                where = _city(chaos, rid)
                if where and where != city and relocated is None:
                    relocated = p.linked_at - t0
                    break
        time.sleep(0.3)
    run.notes.update(relocated_after_s=None if relocated is None else round(relocated, 2), probes=probes)
    if relocated is None or relocated > OUTAGE_RELOCATION_GOAL_S:
        run.extra.append(("outage_slow_relocation", city, f"first placement elsewhere after {relocated} s"))


def _session(p: Placement) -> dict[str, Any]:
    return {"app_name": APP, "version_name": VERSION, "ip_list": p.ips}


def _city(chaos: ChaosStack, rid: str) -> str:
    for d in chaos.truth()["deployments"]:
        if d["request_id"] == rid:
            return str(d["location"]["city"])
    return ""


def end_outage(run: Run) -> None:
    run.chaos.faults(outages=[])


def outage_check(run: Run) -> list[Violation]:
    """No deployment of the outage city is still live in our view once the fault was noticed."""
    city = run.notes.get("outage_city")
    view = run.chaos.our_deployments()
    found: list[Violation] = []
    for rid, d in view.items():
        loc = d.get("location") or {}
        if loc.get("city") == city and status_name(d.get("current_status")) == "READY":
            truth = next((t for t in run.chaos.truth()["deployments"] if t["request_id"] == rid), None)
            if truth is not None and terminal(truth):
                found.append(("outage_deployment_still_ready", rid, f"{city}: platform {truth['status']}"))
    return found


def recovered_check(run: Run) -> list[Violation]:
    """After every new deployment failed, the policies get back to their minimum READY."""
    from tests.e2e.chaos.harness import POLICIES

    try:
        poll(
            "each policy's minimum READY again",
            lambda: all(
                sum(
                    1
                    for d in run.chaos.truth()["deployments"]
                    if f"policy:{p.name}" in d["tags"] and status_name(d["status"]) == "READY"
                )
                >= p.minimum
                for p in POLICIES
            ),
            90,
            every_s=1,
        )
    except AssertionError as err:
        return [("not_recovered", "policies", str(err)[:300])]
    return []


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("leader_kill", kill_leader, restart_killed, fault_s=6),
    Scenario("worker_kill_mid_create", kill_worker_mid_create, clear_hold_and_restart, fault_s=6),
    Scenario("redis_restart_empty", restart_redis, nothing, fault_s=4, redis_lost=True),
    Scenario("rate_limit_storm", faults(rate_limit={"*": 3}), clear_faults(rate_limit={}), fault_s=12),
    Scenario(
        "errors_and_timeouts",
        faults(
            error_rate={"*": 0.25}, hold_rate={"deploy": 0.2, "stop": 0.2, "session_create": 0.1}, hold_s=5
        ),
        clear_faults(error_rate={}, hold_rate={}, hold_s=30),
        fault_s=12,
    ),
    Scenario(
        "webhook_chaos",
        faults(webhook_loss=0.2, webhook_dup=0.2, webhook_reorder=0.2, reorder_window_s=2),
        clear_faults(webhook_loss=0, webhook_dup=0, webhook_reorder=0),
        fault_s=12,
    ),
    Scenario("location_outage", outage, end_outage, fault_s=2),
    Scenario(
        "stuck_deploys", faults_with_demand(1.6, stuck_deploys=1.0), clear_faults(stuck_deploys=0), fault_s=14
    ),
    Scenario(
        "failing_deploys", faults_with_demand(1.6, fail_deploys=1.0), clear_faults(fail_deploys=0), fault_s=12
    ),
)
EXTRA_CHECKS: dict[str, Callable[[Run], list[Violation]]] = {
    "location_outage": outage_check,
    "failing_deploys": recovered_check,
    "stuck_deploys": recovered_check,
}


def run_scenario(chaos: ChaosStack, scenario: Scenario, seed: int, index: int) -> dict[str, Any]:
    started = time.monotonic()
    driver = DemandDriver(chaos, seed * 1000 + index, ip_offset=index * 400)
    sampler = Sampler(chaos)
    run = Run(chaos, driver, sampler, random.Random(seed * 1000 + index))
    calls_before = chaos.calls()
    sampler.start()
    driver.start()
    errors: list[str] = []
    try:
        time.sleep(WARM_S)
        fault_start = time.monotonic()
        _guarded(errors, "inject", scenario.inject, run)
        time.sleep(max(0.0, scenario.fault_s - (time.monotonic() - fault_start)))
        _guarded(errors, "clear", scenario.clear, run)
        time.sleep(AFTER_S)
    finally:
        driver.stop()
    verdict = final_check(chaos, driver, sampler, redis_lost=scenario.redis_lost)
    extra = run.extra + (EXTRA_CHECKS[scenario.name](run) if scenario.name in EXTRA_CHECKS else [])
    extra += [("scenario_error", scenario.name, e) for e in errors]
    sampler.stop()
    violations = verdict.violations + extra
    result = {
        "scenario": scenario.name,
        "seed": seed,
        "passed": not violations,
        "violations": [{"kind": k, "subject": s, "detail": d} for k, s, d in violations],
        "violation_kinds": Verdict(violations, {}).kinds(),
        "sessions": verdict.accounted,
        "requests": driver.summary(),
        "notes": run.notes,
        "platform_answers": answers_between(calls_before, chaos.calls()),
        "peak_live": sampler.peak_live,
        "samples": sampler.samples,
        "duration_s": round(time.monotonic() - started, 1),
    }
    _tidy(chaos, driver)
    return result


def answers_between(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    """The simulator's answers by status code during the scenario (shows the fault took effect)."""
    out: dict[str, int] = {}
    for endpoint, codes in after.get("responses", {}).items():
        for code, n in codes.items():
            delta = n - before.get("responses", {}).get(endpoint, {}).get(code, 0)
            if delta:
                out[code] = out.get(code, 0) + delta
    return dict(sorted(out.items()))


def _guarded(errors: list[str], step: str, fn: Callable[[Run], None], run: Run) -> None:
    """A step that fails (no leader found, a fault not accepted) is a violation, not a crash."""
    try:
        fn(run)
    except Exception as err:
        errors.append(f"{step}: {type(err).__name__}: {err}"[:500])


def _tidy(chaos: ChaosStack, driver: DemandDriver) -> None:
    """Delete what the scenario left placed, so the next one starts from a quieter fleet."""
    for p in driver.placements:
        if p.placed and p.deleted_at is None:
            with contextlib.suppress(httpx.HTTPError):
                chaos.api("DELETE", f"/v1/session/{p.session_id}")
