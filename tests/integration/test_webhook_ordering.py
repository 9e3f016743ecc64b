"""Invariant 4 (design.md §5) through the real app and Redis, as properties (hypothesis).

A scenario is one deployment's status callbacks, one of our sessions' platform callbacks (which
carry the deployment's facts too), our own create being recorded (`record_owner`) and the
platform's session id being mapped to ours (`link_platform_id`). Each example delivers it twice,
to two copies with their own ids: in order, and as a drawn permutation with drawn duplicates
(callbacks may come before the create or the mapping). Then:

- the stored state of both copies is the same (deployment hash, holds, indexes, session record,
  parked callbacks, TTLs; the clock is fixed);
- no transition is announced twice; the shuffled copy's transitions are in-order ones;
- when every status reached a copy in the order of its life (duplicates and interleaving across the
  deployment and the session are free), the transitions are exactly the in-order ones. A status
  overtaken by a later one never happens at all (forward only): that is the only difference.
- for the callbacks the v1 platform really sends (the deployment webhook once, on READY, and the
  session webhook once, on linking), every permutation and duplication gives the in-order
  transitions exactly.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from fleet.models import SessionRecord, SessionState, Status, parse_status
from fleet.store.session_reports import SESSION_RANK
from tests.fixtures.web import WEBHOOK_SECRET, WebApp, WebFactory
from webhooks.parse import session_state

NOW = 1_700_000_000.0
PRE_READY = ["Status.INITIALIZING", "Status.SEEKING", "Status.SEEKED", "Status.SCANNING", "Status.DEPLOYING"]
PENDING_SESSION = ["Status.INITIALIZING", "Status.SEEKING", "Status.WAITING"]
# Each example is ~30 requests through the app; shrinking a failure would take minutes, so a
# failure is reported as drawn (the steps are short enough to read).
SETTINGS = settings(
    max_examples=40,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
_ids = itertools.count()


@dataclass(frozen=True)
class Step:
    kind: str  # dep | session | link | owner
    body: dict[str, Any] | None = None


@dataclass(frozen=True)
class Ids:
    rid: str
    psid: str
    ours: str


# --- scenarios -----------------------------------------------------------------------------------
USAGE = st.one_of(st.integers(0, 8), st.sampled_from(["absent", None, "n/a", "3"]))


@st.composite
def facts(draw: st.DrawFn, sockets: int) -> dict[str, Any]:
    """A deployment's facts for one body: the values never change, any of them may be left out."""
    everything: dict[str, Any] = {
        "app_name": "game",
        "app_version": "v1",
        "fqdn": "RID.example",
        "public_ip": "100.10.0.85",
        "sockets": sockets,
        "ports": {"game": {"external": 31000, "internal": 7777, "protocol": "UDP"}},
        "location": {"city": "Montreal", "latitude": 45.5, "longitude": -73.5},
        "tags": ["fleet:f"],
    }
    keep = draw(st.lists(st.sampled_from(sorted(everything)), unique=True))
    body = {k: everything[k] for k in keep}
    usage = draw(USAGE)
    if usage != "absent":
        body["sockets_usage"] = usage
    return body


def dep_step(status: str, extra: dict[str, Any]) -> Step:
    return Step("dep", {"request_id": "RID", "current_status": status, **extra})


def session_step(status: str, deployment: dict[str, Any] | None) -> Step:
    body: dict[str, Any] = {"session_id": "PSID", "status": status, "kind": "SEAT", "user_count": 1}
    if status == "Status.READY":
        body.update(ready=True, linked=True)
    if deployment is not None:
        body["deployment"] = {"request_id": "RID", "status": "Status.READY", **deployment}
    if status in ("Status.ERROR", "Status.UNPROCESSABLE"):
        body["error"] = "no deployment could be linked"
    return Step("session", body)


@st.composite
def life(draw: st.DrawFn) -> list[Step]:
    """The in-order callbacks of a deployment and of a session placed on it, plus our own steps."""
    sockets = draw(st.integers(1, 8))
    pre = [s for s in PRE_READY if draw(st.booleans())]
    ready = draw(st.booleans())
    after: list[str] = []
    if ready and draw(st.booleans()):
        after.append("Status.TERMINATING")
    end = draw(
        st.sampled_from([None, "Status.TERMINATED", "Status.ERROR"] if ready else [None, "Status.ERROR"])
    )
    if end:
        after.append(end)
    steps = [Step("owner"), Step("link")]
    if draw(st.booleans()):
        steps.append(dep_step("Status.HIBERNATING", draw(facts(sockets))))  # unknown: kept raw
    steps += [dep_step(s, draw(facts(sockets))) for s in pre]
    if ready:
        steps.append(dep_step("Status.READY", draw(facts(sockets))))
        steps += [session_step(s, None) for s in PENDING_SESSION if draw(st.booleans())]
        outcome = draw(st.sampled_from(["Status.READY", "Status.UNPROCESSABLE", "Status.ERROR"]))
        embedded = draw(facts(sockets)) if outcome == "Status.READY" else None
        steps.append(session_step(outcome, embedded))
        if outcome == "Status.READY" and draw(st.booleans()):
            steps.append(session_step("Status.TERMINATING", None))
    elif draw(st.booleans()):
        steps.append(session_step(draw(st.sampled_from(["Status.UNPROCESSABLE", "Status.ERROR"])), None))
    steps += [dep_step(s, draw(facts(sockets))) for s in after]
    return steps


@st.composite
def deliveries(draw: st.DrawFn, lives: st.SearchStrategy[list[Step]]) -> tuple[list[Step], list[Step]]:
    """(in order, shuffled with duplicates)."""
    ordered = draw(lives)
    callbacks = [s for s in ordered if s.kind in ("dep", "session")]
    dups = draw(st.lists(st.sampled_from(callbacks), max_size=6)) if callbacks else []
    return ordered, list(draw(st.permutations(ordered + dups)))


@st.composite
def platform_v1(draw: st.DrawFn) -> list[Step]:
    """What the v1 platform sends: the deployment webhook once (READY), the session webhook once
    (linked, with the deployment's facts)."""
    sockets = draw(st.integers(1, 8))
    return [
        Step("owner"),
        Step("link"),
        dep_step("Status.READY", draw(facts(sockets))),
        session_step("Status.READY", draw(facts(sockets))),
    ]


# --- running a delivery ----------------------------------------------------------------------------
def fill(value: Any, ids: Ids) -> Any:
    if isinstance(value, str):
        return value.replace("RID", ids.rid).replace("PSID", ids.psid)
    if isinstance(value, dict):
        return {k: fill(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, ids) for v in value]
    return value


def setup(web: WebApp, ids: Ids) -> None:
    """Our session, placed on the deployment (a confirmed hold) and waiting for the platform."""
    record = SessionRecord(
        session_id=ids.ours, app="game", version="v1", state=SessionState.WAITING, size=1,
        deployment_request_id=ids.rid, platform_session_id=ids.psid,
    )  # fmt: skip
    web.call(web.store.sessions.put, record)
    web.call(web.store.deployments.confirm, ids.rid, ids.ours, 1)


def deliver(web: WebApp, steps: list[Step], ids: Ids) -> None:
    store = web.store
    for step in steps:
        if step.kind == "owner":
            web.call(
                lambda: store.deployments.record_owner(
                    ids.rid, fleet="f", policy="p", intent="i", app="game", version="v1", now=NOW
                )
            )
        elif step.kind == "link":
            web.call(store.sessions.link_platform_id, ids.psid, ids.ours)
        else:
            path = "/webhooks/deployments" if step.kind == "dep" else "/webhooks/sessions"
            response = web.client.post(f"{path}?token={WEBHOOK_SECRET}", json=fill(step.body, ids))
            assert response.status_code == 200, response.text


def state(web: WebApp, ids: Ids) -> dict[str, Any]:
    r, p = web.redis, web.prefix

    def norm(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace(ids.rid, "RID").replace(ids.psid, "PSID").replace(ids.ours, "OURS")
        if isinstance(value, dict):
            return {norm(k): norm(v) for k, v in value.items()}
        return value

    session = r.get(f"{p}:session:{ids.ours}")
    deployment = r.hgetall(f"{p}:dep:{ids.rid}")
    # `released_at` is the allocator's "poll this deployment soon" hint, stamped when a hold is
    # released on a deployment already known; it is not a fact from the callbacks.
    deployment.pop("released_at", None)
    return {
        "deployment": norm(deployment),
        "deployment_expires": r.ttl(f"{p}:dep:{ids.rid}") > 0,
        "holds": norm(r.hgetall(f"{p}:holds:{ids.rid}")),
        "live": r.sismember(f"{p}:deps:live", ids.rid),
        "app_index": r.sismember(f"{p}:deps:av:game\x1fv1", ids.rid),
        "policy_index": r.sismember(f"{p}:deps:policy:f\x1fp", ids.rid),
        "session": norm(SessionRecord.model_validate_json(session).model_dump()) if session else None,
        "parked": r.exists(f"{p}:psession-pending:{ids.psid}"),
        "mapping": norm(r.get(f"{p}:psession:{ids.psid}")),
    }


def transitions(web: WebApp, ids: Ids) -> list[tuple[str, str]]:
    out = []
    for _id, f in web.redis.xrange(f"{web.prefix}:events"):
        if f.get("kind") == "deployment" and f.get("request_id") == ids.rid:
            out.append(("deployment", Status(int(f["rank"])).name))
        elif f.get("kind") == "session" and f.get("session_id") == ids.ours:
            out.append(("session", f["state"]))
    return out


def in_life_order(steps: list[Step]) -> bool:
    """Whether each status first reached its subject in the order of its life (see module doc)."""
    dep_ranks: list[int] = []
    session_ranks: list[int] = []
    parked: list[int] = []
    linked = False
    for step in steps:
        if step.kind == "link":
            linked = True
            session_ranks += sorted(parked)  # parked callbacks are applied in order at link time
        elif step.kind in ("dep", "session") and step.body is not None:
            body = step.body
            nested = body.get("deployment") if step.kind == "session" else body
            raw = (nested or {}).get("status" if step.kind == "session" else "current_status")
            if (status := parse_status(raw)) is not None:
                dep_ranks.append(int(status))
            if step.kind == "session":
                state_, _known = session_state(body.get("status"), body)
                if state_ is not None:
                    (session_ranks if linked else parked).append(SESSION_RANK[state_])
    return all(_first_seen_increasing(ranks) for ranks in (dep_ranks, session_ranks))


def _first_seen_increasing(ranks: list[int]) -> bool:
    firsts = list(dict.fromkeys(ranks))
    return firsts == sorted(firsts)


def run_both(web: WebApp, ordered: list[Step], shuffled: list[Step]) -> tuple[Any, ...]:
    n = next(_ids)
    ref, shuf = (Ids(f"r{n}ref", f"p{n}ref-s", f"o{n}ref"), Ids(f"r{n}shf", f"p{n}shf-s", f"o{n}shf"))
    for ids, steps in ((ref, ordered), (shuf, shuffled)):
        setup(web, ids)
        deliver(web, steps, ids)
    return state(web, ref), state(web, shuf), transitions(web, ref), transitions(web, shuf)


# --- the properties ------------------------------------------------------------------------------
def of(kind: str, trs: list[tuple[str, str]]) -> list[str]:
    return [state_ for k, state_ in trs if k == kind]


def check(web: WebApp) -> Callable[[tuple[list[Step], list[Step]]], None]:
    def prop(case: tuple[list[Step], list[Step]]) -> None:
        ordered, shuffled = case
        ref_state, shuf_state, ref_tr, shuf_tr = run_both(web, ordered, shuffled)
        assert shuf_state == ref_state
        assert len(ref_tr) == len(set(ref_tr)) and len(shuf_tr) == len(set(shuf_tr))  # once each
        assert set(shuf_tr) <= set(ref_tr)
        for kind in ("deployment", "session"):
            ref_states, shuf_states = of(kind, ref_tr), of(kind, shuf_tr)
            assert ref_states[-1:] == shuf_states[-1:]  # the state each subject ended in is announced
            if in_life_order(shuffled):
                assert shuf_states == ref_states

    return prop


def test_any_order_and_duplication_ends_in_the_in_order_state(web_factory: WebFactory) -> None:
    web = web_factory(clock=lambda: NOW)
    given(deliveries(life()))(SETTINGS(check(web)))()


def test_the_platforms_real_callbacks_give_exactly_the_in_order_transitions(web_factory: WebFactory) -> None:
    web = web_factory(clock=lambda: NOW)

    def prop(case: tuple[list[Step], list[Step]]) -> None:
        ordered, shuffled = case
        ref_state, shuf_state, ref_tr, shuf_tr = run_both(web, ordered, shuffled)
        assert shuf_state == ref_state
        assert sorted(shuf_tr) == sorted(ref_tr) == [("deployment", "READY"), ("session", "READY")]
        assert in_life_order(shuffled)  # one status per subject: no permutation can overtake one

    given(deliveries(platform_v1()))(SETTINGS(prop))()
