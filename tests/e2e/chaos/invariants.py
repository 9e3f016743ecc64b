"""design.md §5 checked against the simulator's ground truth: during the run (a sampler thread
that looks every half second, because some violations only exist for a moment) and after it (a
final check once the fault is cleared and the system had time to converge).

Each violation is `(kind, subject, detail)`; the kinds:

- `policy_over_maximum`: a policy had more live deployments on the platform (starting, READY or
  TERMINATING) than its maximum (invariant 2).
- `stopped_with_players`: a deployment was stopping (by our stop) while it had sessions, or a
  player of ours vanished because we stopped the deployment (invariant 1).
- `overbooked`: the platform's usage, or our sessions plus reservations, above `sockets` (5).
- `reservation_leak`: reserved sockets left once nothing was being placed (5).
- `usage_mismatch`: after convergence, our usage of a READY deployment differs from the platform's.
- `hold_mismatch`: our confirmed sessions' sockets differ from the platform's usage (only where
  Redis kept its data: after Redis loss the service forgets sessions and relies on usage).
- `unknown_deployment` / `stale_deployment`: a live deployment of ours on the platform that our
  view does not have (orphan not adopted), or one our view keeps live that the platform ended.
- `duplicate_intent`: one intent tag on two deployments (3).
- `not_linked`, `lost`, `phantom`, `delete_leak`, `refused_but_placed`, `orphan_session`: a session
  we were told was placed that is not linked on the platform, one linked on the platform but not
  for us, a deleted or refused one still holding sockets, a platform session nobody asked for.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.e2e.chaos.demand import DemandDriver, Placement
from tests.e2e.chaos.harness import FLEET, POLICIES, ChaosStack, PolicySpec

Violation = tuple[str, str, str]
STOPS_BY_US = ("stop", "bulk_stop")
SAFETY = ("policy_over_maximum", "stopped_with_players", "overbooked", "duplicate_intent")


def status_name(raw: object) -> str:
    return str(raw or "").rsplit(".", 1)[-1].upper()


def terminal(d: dict[str, Any]) -> bool:
    return status_name(d.get("status")) in ("TERMINATED", "ERROR")


def ours(d: dict[str, Any]) -> bool:
    return f"fleet:{FLEET}" in (d.get("tags") or [])


def intent_of(d: dict[str, Any]) -> str:
    return next((t[len("intent:") :] for t in d.get("tags") or [] if t.startswith("intent:")), "")


def truth_violations(truth: dict[str, Any], policies: tuple[PolicySpec, ...] = POLICIES) -> list[Violation]:
    """What is wrong in one snapshot of the platform, whatever happened before."""
    found: list[Violation] = []
    deps = truth["deployments"]
    for p in policies:
        live = [
            d["request_id"] for d in deps if ours(d) and f"policy:{p.name}" in d["tags"] and not terminal(d)
        ]
        if len(live) > p.maximum:
            found.append(("policy_over_maximum", p.name, f"{len(live)} live > maximum {p.maximum}: {live}"))
    for d in deps:
        rid = d["request_id"]
        if status_name(d["status"]) == "TERMINATING" and d.get("end_reason") in STOPS_BY_US and d["sessions"]:
            found.append(("stopped_with_players", rid, f"stopping with sessions {d['sessions']}"))
        if d.get("sockets") is not None and int(d.get("sockets_usage") or 0) > int(d["sockets"]):
            found.append(("overbooked", rid, f"platform usage {d['sockets_usage']} > {d['sockets']}"))
    intents = Counter(intent_of(d) for d in deps if intent_of(d))
    for intent, n in intents.items():
        if n > 1:
            rids = [d["request_id"] for d in deps if intent_of(d) == intent]
            found.append(("duplicate_intent", intent, f"{n} deployments: {rids}"))
    return found


def view_violations(view: dict[str, dict[str, Any]]) -> list[Violation]:
    """Our own books never hold more than a deployment has: confirmed sessions plus unexpired
    reservations. The platform's usage is not added: a session created but not yet confirmed is in
    both the platform's usage report and our reservations, so the sum counts it twice (which makes
    placement refuse early, never overbook). Overbooking itself is checked on the platform's
    ground truth (`truth_violations`)."""
    found: list[Violation] = []
    for rid, d in view.items():
        sockets = d.get("sockets")
        if sockets is None:
            continue
        booked = int(d.get("session_sockets") or 0)
        reserved = int(d.get("reserved_sockets") or 0)
        if booked + reserved > int(sockets):
            found.append(("overbooked", rid, f"ours: sessions {booked} + reserved {reserved} > {sockets}"))
    return found


@dataclass
class Sampler:
    """Looks at the platform (and our view) every `every_s` while the run goes on."""

    chaos: ChaosStack
    every_s: float = 0.5
    policies: tuple[PolicySpec, ...] = POLICIES
    violations: dict[tuple[str, str], Violation] = field(default_factory=dict)
    where: dict[str, tuple[str, str]] = field(default_factory=dict)  # first ip -> (deployment, session)
    ended: dict[str, dict[str, Any]] = field(default_factory=dict)  # request id -> last truth
    samples: int = 0
    peak_live: dict[str, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, name="chaos-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        tick = 0
        while not self._stop.is_set():
            with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                self.observe(self.chaos.truth())
            if tick % 2 == 0:  # our view every second (it answers 503 while Redis is away)
                with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                    self.record(view_violations(self.chaos.our_deployments()))
            tick += 1
            self._stop.wait(self.every_s)

    def observe(self, truth: dict[str, Any]) -> None:
        self.samples += 1
        self.record(truth_violations(truth, self.policies))
        for s in truth["sessions"]:
            if s.get("linked") and s.get("ips"):
                self.where[s["ips"][0]] = (str(s.get("deployment_request_id") or ""), s["session_id"])
        for d in truth["deployments"]:
            self.ended[d["request_id"]] = d
        for p in self.policies:
            live = sum(
                1
                for d in truth["deployments"]
                if ours(d) and f"policy:{p.name}" in d["tags"] and not terminal(d)
            )
            self.peak_live[p.name] = max(self.peak_live.get(p.name, 0), live)

    def record(self, found: Iterable[Violation]) -> None:
        for v in found:
            self.violations.setdefault((v[0], v[1]), v)


@dataclass
class Verdict:
    violations: list[Violation]
    accounted: dict[str, int]

    @property
    def ok(self) -> bool:
        return not self.violations

    def kinds(self) -> dict[str, int]:
        return dict(Counter(v[0] for v in self.violations))


def session_violations(
    placements: list[Placement], truth: dict[str, Any], sampler: Sampler, *, redis_lost: bool
) -> tuple[list[Violation], dict[str, int]]:
    """Every placement we were told about, against the platform's sessions (matched by players)."""
    found: list[Violation] = []
    tally: Counter[str] = Counter()
    by_ip = {s["ips"][0]: s for s in truth["sessions"] if s.get("ips")}
    deps = {d["request_id"]: d for d in truth["deployments"]}
    asked = {p.ips[0] for p in placements}
    for p in placements:
        s = by_ip.get(p.ips[0])
        on_platform = s is not None and bool(s.get("linked"))
        if not p.placed:
            tally["refused" if p.status == 503 else f"answer_{p.status}"] += 1
            if on_platform and p.status != 0:
                found.append(
                    ("refused_but_placed", p.ips[0], f"answered {p.status} but linked on the platform")
                )
            continue
        last_dep = sampler.where.get(p.ips[0], ("", ""))[0] or p.deployment
        ended = deps.get(last_dep) or sampler.ended.get(last_dep) or {}
        reason = ended.get("end_reason") if ended and terminal(ended) else None
        if p.deleted_at is not None:
            if p.delete_status == 200:
                tally["deleted"] += 1
                if on_platform:
                    found.append(("delete_leak", p.session_id, "deleted, still linked on the platform"))
            elif on_platform and redis_lost:
                tally["forgotten_after_redis_loss"] += 1  # our API lost it; the platform still holds it
            elif reason in STOPS_BY_US:
                found.append(
                    ("stopped_with_players", p.session_id, f"gone before it left: {last_dep} {reason}")
                )
            else:
                tally[f"deleted_{p.delete_status}_{reason or p.answer_state or 'gone'}"] += 1
            continue
        state = status_name(p.answer_state)
        if on_platform:
            if state == "HTTP_404" and redis_lost:
                tally["forgotten_after_redis_loss"] += 1
            elif p.deployment and p.deployment == s["deployment_request_id"]:
                tally["linked"] += 1
            else:
                found.append(
                    (
                        "phantom",
                        p.session_id,
                        f"ours {state} {p.deployment!r}, platform linked to {s['deployment_request_id']}",
                    )
                )
            continue
        if reason == "outage":
            tally["ended_by_outage"] += 1
        elif reason in STOPS_BY_US:
            found.append(
                ("stopped_with_players", p.session_id, f"player dropped: {last_dep} ended by {reason}")
            )
        elif state in ("UNPROCESSABLE", "ERROR"):
            tally[f"unprocessable_{reason or 'no_capacity'}"] += 1
        elif state == "HTTP_404" and redis_lost:
            tally["forgotten_after_redis_loss"] += 1
        elif reason in ("error", "empty_ttl", "max_duration"):
            tally[f"ended_by_{reason}"] += 1
        elif state == "WAITING" or (state == "READY" and not last_dep):
            found.append(("not_linked", p.session_id, f"still {state} after convergence"))
        else:
            found.append(("lost", p.session_id, f"ours {state} on {p.deployment!r}; platform has no session"))
    for ip, s in by_ip.items():
        if ip not in asked and s.get("app") == "chaos-game" and ip.count(".") == 3 and s.get("linked"):
            tally["other_sessions"] += 1
    return found, dict(tally)


def deployment_violations(
    truth: dict[str, Any], view: dict[str, dict[str, Any]], *, redis_lost: bool
) -> list[Violation]:
    found: list[Violation] = []
    deps = {d["request_id"]: d for d in truth["deployments"]}
    for rid, d in deps.items():
        if not ours(d) or terminal(d):
            continue
        mine = view.get(rid)
        if mine is None:
            found.append(
                (
                    "unknown_deployment",
                    rid,
                    f"live on the platform ({status_name(d['status'])}), not in our view",
                )
            )
            continue
        if status_name(d["status"]) != "READY" or status_name(mine.get("current_status")) != "READY":
            continue
        platform_used = int(d.get("sockets_usage") or 0)
        if int(mine.get("sockets_usage") or 0) != platform_used:
            found.append(
                ("usage_mismatch", rid, f"ours {mine.get('sockets_usage')} != platform {platform_used}")
            )
        ours_held = int(mine.get("session_sockets") or 0)
        # After Redis lost its data the service forgets the sessions it had (the platform keeps them),
        # so from then on ours may be fewer than the platform's, never more.
        if ours_held > platform_used or (not redis_lost and ours_held != platform_used):
            found.append(("hold_mismatch", rid, f"our sessions {ours_held} != platform {platform_used}"))
        if int(mine.get("reserved_sockets") or 0):
            found.append(
                ("reservation_leak", rid, f"{mine.get('reserved_sockets')} reserved with nothing placing")
            )
    for rid, mine in view.items():
        d = deps.get(rid)
        if (
            d is not None
            and terminal(d)
            and status_name(mine.get("current_status")) not in ("TERMINATED", "ERROR")
        ):
            found.append(
                ("stale_deployment", rid, f"ours {mine.get('current_status')}, platform {d['status']}")
            )
    return found


def final_check(
    chaos: ChaosStack, driver: DemandDriver, sampler: Sampler, *, redis_lost: bool, settle_s: float = 40
) -> Verdict:
    """Once the fault is cleared and demand stopped: poll until the convergence checks pass or
    `settle_s` is over, then report everything (sampled safety violations included)."""
    deadline = time.monotonic() + settle_s
    while True:
        driver.refresh()
        truth = chaos.truth()
        sampler.observe(truth)
        view = chaos.our_deployments()
        sessions, tally = session_violations(driver.placements, truth, sampler, redis_lost=redis_lost)
        converging = sessions + deployment_violations(truth, view, redis_lost=redis_lost or chaos.redis_lost)
        if not converging or time.monotonic() > deadline:
            break
        time.sleep(2)
    found = list(sampler.violations.values()) + truth_violations(truth) + view_violations(view) + converging
    unique = list({(v[0], v[1]): v for v in found}.values())
    return Verdict(unique, tally)
