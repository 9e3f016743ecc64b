"""Invariants of design.md §5 on the pure core, for any state hypothesis can make up:

1. a deployment with usage > 0, unknown usage, a session or a reservation is never chosen to stop;
2. creates never take a policy above its maximum (stopping and stuck ones count until gone);
and: stops never take a policy below its minimum, nothing happens while disabled, the same inputs
always give the same decision, and a stop never sets up its own scale-up (no flapping): with the
stopped deployments gone, demand up to the window's peak creates nothing.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.policy import Memory, Observed, Reason, Spec, decide
from fleet.models import Status

NOW = 50_000.0

statuses = st.sampled_from([None, *Status])
observed = st.builds(
    Observed,
    request_id=st.uuids().map(lambda u: u.hex[:12]),
    status=statuses,
    unknown_status=st.booleans(),
    sockets=st.one_of(st.none(), st.integers(1, 20)),
    usage=st.one_of(st.none(), st.integers(0, 20)),
    sessions=st.integers(0, 3),
    committed=st.integers(0, 5),
    reserved=st.integers(0, 5),
    created_at=st.floats(NOW - 2000, NOW),
    ready_at=st.one_of(st.none(), st.floats(NOW - 2000, NOW)),
    last_heard=st.floats(NOW - 200, NOW),
    empty_since=st.one_of(st.none(), st.floats(NOW - 2000, NOW)),
    draining=st.booleans(),
    stop_requested=st.booleans(),
)


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    minimum = draw(st.integers(0, 5))
    return Spec(
        minimum=minimum,
        maximum=draw(st.integers(max(minimum, 0), 10)),
        threshold=draw(st.sampled_from([0.1, 0.3, 0.5, 0.55, 0.7, 0.8, 0.9, 1.0])),
        hysteresis=draw(st.sampled_from([0.0, 0.1, 0.2])),
        idle_s=draw(st.sampled_from([0.0, 60.0, 300.0])),
        cooldown_s=draw(st.sampled_from([0.0, 60.0])),
        deploy_timeout_s=300.0,
        stale_after_s=50.0,
        sockets=draw(st.one_of(st.none(), st.integers(1, 20))),
        enabled=draw(st.booleans()),
    )


def _live(d: Observed) -> bool:
    return d.status not in (Status.TERMINATED, Status.ERROR)


@settings(max_examples=400, deadline=None)
@given(
    spec=specs(),
    deployments=st.lists(observed, max_size=12, unique_by=lambda d: d.request_id),
    in_flight=st.integers(0, 3),
    waiting=st.integers(0, 30),
    peak=st.one_of(st.none(), st.integers(0, 60)),
    last_up=st.one_of(st.none(), st.floats(NOW - 600, NOW)),
    backoff_until=st.floats(NOW - 100, NOW + 100),
)
def test_invariants(
    spec: Spec,
    deployments: list[Observed],
    in_flight: int,
    waiting: int,
    peak: int | None,
    last_up: float | None,
    backoff_until: float,
) -> None:
    memory = Memory(last_scale_up_at=last_up, backoff_until=backoff_until)
    d = decide(spec, deployments, now=NOW, memory=memory, in_flight=in_flight, waiting=waiting, peak=peak)
    by_id = {x.request_id: x for x in deployments}
    live = sum(_live(x) for x in deployments) + in_flight
    assert d.counts.live == live

    for rid in d.stop:  # invariant 1
        x = by_id[rid]
        assert x.status is Status.READY and x.usage == 0
        assert x.sessions == 0 and x.committed == 0 and x.reserved == 0
        assert not x.draining and not x.stop_requested and not x.unknown_status
    for rid in d.stuck:
        x = by_id[rid]
        assert x.status is None or x.status < Status.READY
        assert not x.unknown_status and not x.draining and not x.stop_requested

    assert d.create >= 0
    if d.create:  # invariant 2
        assert live + d.create <= spec.maximum
        assert not d.stop
    serving_after = d.counts.serving + d.counts.pending - len(d.stop)
    if d.stop:
        assert serving_after >= spec.minimum
        assert waiting == 0
    if not spec.enabled:
        assert (d.create, d.stop, d.stuck, d.reason) == (0, (), (), Reason.DISABLED)

    again = decide(spec, deployments, now=NOW, memory=memory, in_flight=in_flight, waiting=waiting, peak=peak)
    assert again == d


@st.composite
def serving(draw: st.DrawFn) -> list[Observed]:
    """A policy's deployments as they usually are: READY with known, fresh usage (some of them empty,
    for a while or not), a few still starting or on their way out."""
    out = []
    for i in range(draw(st.integers(1, 14))):
        kind = draw(st.sampled_from(["busy", "busy", "empty", "empty", "starting", "draining"]))
        sockets = draw(st.sampled_from([None, 4, 10]))
        base = Observed(
            request_id=f"d{i:02d}",
            status=Status.READY,
            sockets=sockets,
            created_at=NOW - 3600,
            last_heard=NOW - 1,
        )
        if kind == "busy":
            used = draw(st.integers(1, sockets or 4))
            out.append(replace(base, usage=used, sessions=used, committed=used))
        elif kind == "empty":
            out.append(
                replace(
                    base, usage=0, empty_since=NOW - draw(st.sampled_from([0.0, 30.0, 61.0, 301.0, 900.0]))
                )
            )
        elif kind == "starting":
            out.append(replace(base, status=Status.DEPLOYING, usage=None, created_at=NOW - 10))
        else:
            out.append(replace(base, usage=0, draining=True, stop_requested=True))
    return out


@settings(max_examples=400, deadline=None)
@given(
    spec=specs().map(lambda s: replace(s, enabled=True, maximum=20)),
    deployments=serving(),
    in_flight=st.integers(0, 2),
    peak=st.integers(0, 60),
    last_up=st.one_of(st.none(), st.floats(NOW - 600, NOW)),
)
def test_a_stop_never_sets_up_its_own_scale_up(
    spec: Spec, deployments: list[Observed], in_flight: int, peak: int, last_up: float | None
) -> None:
    memory = Memory(last_scale_up_at=last_up)
    first = decide(spec, deployments, now=NOW, memory=memory, in_flight=in_flight, peak=peak)
    if not first.stop:
        return
    rest = [d for d in deployments if d.request_id not in first.stop]
    # The demand after the stop is what it was (stopped deployments were empty); the worst the
    # window has seen is `peak`: as waiting players on top of it, it still adds nothing.
    extra = max(0, peak - int(first.counts.used))
    again = decide(spec, rest, now=NOW, memory=memory, in_flight=in_flight, waiting=extra, peak=peak)
    assert again.create == 0, (first, again)
