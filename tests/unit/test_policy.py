"""The pure core, table-driven: each row is policy / observed state / expected, with the arithmetic
next to the expected value."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from fractions import Fraction

import pytest

from autoscaler.policy import (
    Decision,
    Limit,
    Memory,
    Observed,
    Reason,
    Spec,
    after_error,
    after_ready,
    after_scale_up,
    at_threshold,
    backoff_s,
    decide,
    deployments_to_add,
    under_after_removal,
)
from fleet.models import Status

NOW = 100_000.0
SPEC = Spec(minimum=1, maximum=5, threshold=0.8, hysteresis=0.1, idle_s=300, cooldown_s=60, sockets=5)


def ready(
    rid: str, usage: int | None = 0, *, sockets: int | None = 5, idle_for: float | None = None, **kw: object
) -> Observed:
    """READY, heard from just now; `idle_for`: empty (usage 0, nothing held) for that long."""
    empty_since = NOW - idle_for if idle_for is not None else None
    base = Observed(
        request_id=rid,
        status=Status.READY,
        sockets=sockets,
        usage=usage,
        created_at=NOW - 3600,
        ready_at=NOW - 3500,
        last_heard=NOW - 1,
        empty_since=empty_since,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def starting(
    rid: str, *, age_s: float = 10, status: Status | None = Status.DEPLOYING, **kw: object
) -> Observed:
    base = Observed(request_id=rid, status=status, created_at=NOW - age_s, last_heard=NOW - 1)
    return replace(base, **kw)  # type: ignore[arg-type]


IDLE = 600.0  # longer than SPEC.idle_s


@dataclass(frozen=True)
class Row:
    name: str
    deployments: tuple[Observed, ...]
    expect: Decision | dict[str, object]
    spec: Spec = SPEC
    memory: Memory = field(default_factory=Memory)
    in_flight: int = 0
    waiting: int = 0
    peak: float | str | None = "current"  # "current": the demand now (a watched, flat window)
    tagged: int = 0  # deployments waiting sessions' selector tags need (autoscaler.selectors)


ROWS = [
    # --- threshold edges -------------------------------------------------------------------------
    Row(
        "4 of 5 at 0.8 is at the threshold: one more",
        (ready("a", 4),),
        # 4 >= 0.8 * 5 = 4; n = floor((4 / 0.8 - 5) / 5) + 1 = 1 -> 4 / 10 = 0.4 < 0.8
        {"create": 1, "desired": 2, "reason": Reason.THRESHOLD},
    ),
    Row(
        "3 of 5 at 0.8 is under: steady",
        (ready("a", 3),),
        {"create": 0, "desired": 1, "reason": Reason.STEADY},  # 3 < 4
    ),
    Row(
        "55 of 100 at 0.55 scales up (floats would say 55 < 55.00000000000001)",
        tuple(ready(f"d{i}", 6 if i < 5 else 5, sockets=10) for i in range(10)),
        # 55 >= 0.55 * 100 = 55 exactly; n = floor((100 - 100) / 10) + 1 = 1
        {"create": 1, "desired": 11, "reason": Reason.THRESHOLD},
        spec=replace(SPEC, threshold=0.55, maximum=20, sockets=10),
    ),
    Row(
        "threshold 1.0: full scales up",
        (ready("a", 5),),
        {"create": 1, "reason": Reason.THRESHOLD},  # 5 >= 1.0 * 5
        spec=replace(SPEC, threshold=1.0),
    ),
    Row(
        "threshold 1.0: one free socket is enough",
        (ready("a", 4),),
        {"create": 0, "reason": Reason.STEADY},  # 4 < 5
        spec=replace(SPEC, threshold=1.0),
    ),
    Row(
        "several at once: enough to get under the threshold",
        (ready("a", 5), ready("b", 5)),
        # used 10, cap 10, threshold 0.5: n = floor((10 / 0.5 - 10) / 5) + 1 = 3 -> 10 / 25 = 0.4;
        # 2 would give 10 / 20 = 0.5, not under
        {"create": 3, "desired": 5, "reason": Reason.THRESHOLD},
        spec=replace(SPEC, threshold=0.5),
    ),
    # --- minimum and maximum -----------------------------------------------------------------------
    Row(
        "nothing yet: create the minimum",
        (),
        {"create": 2, "desired": 2, "reason": Reason.MINIMUM},
        spec=replace(SPEC, minimum=2),
    ),
    Row(
        "minimum counts starting deployments",
        (starting("s"),),
        {"create": 1, "desired": 2, "reason": Reason.MINIMUM},  # 1 pending + 1 = minimum 2
        spec=replace(SPEC, minimum=2),
    ),
    Row(
        "minimum counts creates in flight",
        (),
        {"create": 1, "reason": Reason.MINIMUM},  # 1 in flight + 1 = 2
        spec=replace(SPEC, minimum=2),
        in_flight=1,
    ),
    Row(
        "capped by maximum",
        (ready("a", 5), ready("b", 5)),
        # wants 3 more (row above), maximum 3 leaves room for 1
        {"create": 1, "desired": 3, "limited": Limit.MAXIMUM, "reason": Reason.THRESHOLD},
        spec=replace(SPEC, threshold=0.5, maximum=3),
    ),
    Row(
        "at maximum: nothing more",
        (ready("a", 5), ready("b", 5)),
        {"create": 0, "desired": 2, "limited": Limit.MAXIMUM},
        spec=replace(SPEC, maximum=2),
    ),
    Row(
        "stopping deployments hold their slot until gone",
        (ready("a", 5), ready("b", 0, draining=True, stop_requested=True)),
        # live 2 = maximum 2: no room although only one serves
        {"create": 0, "limited": Limit.MAXIMUM},
        spec=replace(SPEC, maximum=2),
    ),
    Row(
        "a deployment terminating on its own holds its slot and gives no capacity",
        (ready("a", 4), starting("t", status=Status.TERMINATING)),
        # capacity 5 (not 10): 4 >= 4 wants one more; live 2 = maximum 2 leaves no room
        {"create": 0, "limited": Limit.MAXIMUM, "stuck": ()},
        spec=replace(SPEC, maximum=2),
    ),
    # --- pending capacity ----------------------------------------------------------------------------
    Row(
        "a starting deployment absorbs the step",
        (ready("a", 4), starting("s")),
        {"create": 0, "desired": 2, "reason": Reason.STEADY},  # 4 < 0.8 * (5 + 5) = 8
    ),
    Row(
        "a create in flight absorbs the step",
        (ready("a", 4),),
        {"create": 0, "desired": 2},  # 4 < 0.8 * (5 + 5)
        in_flight=1,
    ),
    Row(
        "a starting deployment without sockets yet uses the app version's",
        (ready("a", 4), starting("s", sockets=None)),
        {"create": 0},  # capacity 5 + 5 (spec.sockets)
    ),
    # --- waiting sessions are demand ----------------------------------------------------------
    Row(
        "waiting players push a scale-up",
        (ready("a", 0),),
        {"create": 1, "reason": Reason.THRESHOLD},  # 0 + 4 waiting >= 4
        waiting=4,
    ),
    Row(
        "waiting players hold off scale-in",
        (ready("a", 1), ready("b", 0, idle_for=IDLE)),
        {"create": 0, "stop": ()},  # 1 + 1 = 2 < 8: no scale-up, but never a stop while players wait
        waiting=1,
    ),
    # --- unknown usage -----------------------------------------------------------------------------
    Row(
        "unknown usage does not push a scale-up",
        (ready("a", None),),
        {"create": 0, "reason": Reason.STEADY},
    ),
    Row(
        "unknown usage: our own sessions still count",
        (ready("a", None, committed=4, sessions=2),),
        {"create": 1, "reason": Reason.THRESHOLD},  # max(unknown, 4) = 4 >= 4
    ),
    Row(
        "unknown usage anywhere blocks scale-in",
        (ready("a", None), ready("b", 0, idle_for=IDLE), ready("c", 0, idle_for=IDLE)),
        {"stop": (), "held": Reason.DATA_UNKNOWN},
    ),
    Row(
        "stale data blocks scale-in",
        (ready("a", 1, last_heard=NOW - 3600), ready("b", 0, idle_for=IDLE)),
        {"stop": (), "held": Reason.DATA_UNKNOWN},
    ),
    Row(
        "an unknown status is never capacity and never stopped",
        (starting("u", status=None, unknown_status=True),),
        {"create": 1, "stuck": (), "reason": Reason.MINIMUM},  # live 1 (counts to maximum), serving 0
    ),
    # --- scale-in, hysteresis, cooldown ----------------------------------------------------------------
    Row(
        "idle deployments stop while the rest stays under threshold - hysteresis",
        (ready("a", 2), ready("b", 0, idle_for=IDLE), ready("c", 0, idle_for=IDLE + 1)),
        # used 2: without c, 2 < 0.7 * 10 = 7; without b too, 2 < 0.7 * 5 = 3.5; minimum 1 kept
        {"stop": ("c", "b"), "desired": 1, "reason": Reason.IDLE},
    ),
    Row(
        "hysteresis keeps the last idle one",
        (ready("a", 7, sockets=10), ready("b", 0, sockets=10, idle_for=IDLE)),
        # 7 < 0.8 * 20: no scale-up; without b, 7 < 0.7 * 10 = 7 is false: keep b
        {"stop": (), "reason": Reason.STEADY},
    ),
    Row(
        "without hysteresis the same one would stop",
        (ready("a", 7, sockets=10), ready("b", 0, sockets=10, idle_for=IDLE)),
        {"stop": ("b",), "reason": Reason.IDLE},  # 7 < 0.8 * 10 = 8
        spec=replace(SPEC, hysteresis=0.0),
    ),
    Row(
        "the default margin is 0.05: one of two idle deployments stops",
        (
            *(ready(f"b{i}", 9, sockets=10) for i in range(8)),
            *(ready(f"i{i}", 0, sockets=10, idle_for=IDLE + i) for i in range(2)),
        ),
        # used 72 of 100 at threshold 0.9 (72 < 90: no scale-up); without i1, 72 < (0.9 - 0.05) * 90 = 76.5;
        # without i0 too, 72 < 0.85 * 80 = 68 is false: i0 stays
        {"stop": ("i1",), "desired": 9, "reason": Reason.IDLE},
        spec=Spec(minimum=1, maximum=20, threshold=0.9, sockets=10),
    ),
    Row(
        "the same state with the former default 0.1 keeps both",
        (
            *(ready(f"b{i}", 9, sockets=10) for i in range(8)),
            *(ready(f"i{i}", 0, sockets=10, idle_for=IDLE + i) for i in range(2)),
        ),
        # without i1: 72 < (0.9 - 0.1) * 90 = 72 is false
        {"stop": (), "reason": Reason.STEADY},
        spec=Spec(minimum=1, maximum=20, threshold=0.9, hysteresis=0.1, sockets=10),
    ),
    Row(
        "the window's peak keeps the up-step under oscillating demand",
        (ready("a", 3), ready("b", 0, idle_for=IDLE)),
        # now 3, but 4 within the window: without b, 4 < 0.7 * 5 = 3.5 is false
        {"stop": (), "reason": Reason.STEADY},
        peak=4,
    ),
    Row(
        "no watched window yet: scale-in waits",
        (ready("a", 1), ready("b", 0, idle_for=IDLE)),
        {"stop": (), "held": Reason.STABILISING},
        peak=None,
    ),
    Row(
        "cooldown after a scale-up holds scale-in",
        (ready("a", 1), ready("b", 0, idle_for=IDLE)),
        {"stop": (), "held": Reason.COOLDOWN},
        memory=Memory(last_scale_up_at=NOW - 30),  # 30 s < cooldown 60 s
    ),
    Row(
        "after the cooldown it may",
        (ready("a", 1), ready("b", 0, idle_for=IDLE)),
        {"stop": ("b",), "reason": Reason.IDLE},
        memory=Memory(last_scale_up_at=NOW - 61),
    ),
    Row(
        "not idle long enough",
        (ready("a", 1), ready("b", 0, idle_for=100)),
        {"stop": ()},  # 100 s < idle 300 s
    ),
    Row(
        "never below minimum",
        (ready("a", 0, idle_for=IDLE), ready("b", 0, idle_for=IDLE)),
        {"stop": ("a",), "desired": 2 - 1},  # minimum 1: one of two
    ),
    Row(
        "minimum 2 keeps both",
        (ready("a", 0, idle_for=IDLE), ready("b", 0, idle_for=IDLE)),
        {"stop": ()},
        spec=replace(SPEC, minimum=2),
    ),
    Row(
        "a session or a reservation makes a deployment no candidate",
        (
            ready("a", 0, idle_for=IDLE, sessions=1, committed=1),
            ready("b", 0, idle_for=IDLE, reserved=1),
            ready("c", 1),
        ),
        {"stop": ()},
    ),
    # --- over maximum (lowered below the current count) ------------------------------------------------
    Row(
        "over maximum: idle ones trimmed, busy ones kept",
        (ready("a", 3), ready("b", 0, idle_for=IDLE), ready("c", 2)),
        # live 3 > maximum 1: only b is idle; a and c have players
        {"stop": ("b",), "desired": 2, "reason": Reason.OVER_MAXIMUM},
        spec=replace(SPEC, maximum=1),
    ),
    Row(
        "over maximum with no idle one: nothing stops",
        (ready("a", 3), ready("b", 1)),
        {"stop": (), "create": 0},
        spec=replace(SPEC, maximum=1),
    ),
    Row(
        "a version no longer linked loses idle deployments and never grows",
        (ready("a", 5), ready("b", 0, idle_for=IDLE)),
        {"stop": ("b",), "create": 0},
        spec=replace(SPEC, minimum=0, maximum=0),
    ),
    # --- stuck deployments ------------------------------------------------------------------------------
    Row(
        "stuck past the deploy timeout: stopped and replaced within maximum",
        (starting("s", age_s=400),),
        # stuck no longer counts as capacity; live 1 < maximum 2 leaves room for the replacement
        {"stuck": ("s",), "create": 1, "reason": Reason.STUCK},
        spec=replace(SPEC, maximum=2, deploy_timeout_s=300),
    ),
    Row(
        "stuck at maximum: the replacement waits until the platform confirms it gone",
        (starting("s", age_s=400),),
        {"stuck": ("s",), "create": 0, "limited": Limit.MAXIMUM},
        spec=replace(SPEC, maximum=1, deploy_timeout_s=300),
    ),
    Row(
        "a stuck one already being stopped is not stopped twice",
        (starting("s", age_s=400, draining=True, stop_requested=True),),
        {"stuck": (), "create": 0, "limited": Limit.MAXIMUM},
        spec=replace(SPEC, maximum=1, deploy_timeout_s=300),
    ),
    Row(
        "never reported at all and past the timeout is stuck too",
        (starting("s", age_s=400, status=None),),
        {"stuck": ("s",)},
        spec=replace(SPEC, deploy_timeout_s=300),
    ),
    # --- ERROR back-off, disabled ---------------------------------------------------------------------
    Row(
        "backing off after errors: no create",
        (),
        {"create": 0, "limited": Limit.BACKOFF, "desired": 1},
        memory=Memory(error_streak=2, backoff_until=NOW + 5),
    ),
    Row(
        "back-off over: creates resume",
        (),
        {"create": 1},
        memory=Memory(error_streak=2, backoff_until=NOW - 1),
    ),
    Row(
        "disabled: hands off",
        (ready("a", 5), ready("b", 0, idle_for=IDLE)),
        {"create": 0, "stop": (), "reason": Reason.DISABLED},
        spec=replace(SPEC, enabled=False),
    ),
    # --- waiting sessions whose selector tags no deployment carries ---------------------------------
    Row(
        "selector tags nobody carries: a create although under the threshold",
        (ready("a", 1),),
        # demand 1 + 1 waiting = 2 < 0.8 * 5 = 4: the threshold adds 0, the tags need 1
        {"create": 1, "desired": 2, "reason": Reason.SELECTORS},
        waiting=1,
        tagged=1,
    ),
    Row(
        "threshold and selectors overlap: the larger, not the sum",
        (ready("a", 5),),
        # 5 + 5 waiting = 10 >= 4; n = floor((10 / 0.8 - 5) / 5) + 1 = 2 >= 1 tagged
        {"create": 2, "desired": 3, "reason": Reason.THRESHOLD},
        waiting=5,
        tagged=1,
    ),
    Row(
        "selectors never exceed maximum",
        tuple(ready(f"d{i}", 1) for i in range(5)),
        # 5 live = maximum 5: the tagged deployment waits for room
        {"create": 0, "desired": 5, "reason": Reason.SELECTORS, "limited": Limit.MAXIMUM},
        waiting=1,
        tagged=1,
    ),
    Row(
        "selectors below minimum: the minimum's creates (the scaler tags the first)",
        (),
        {"create": 2, "desired": 2, "reason": Reason.MINIMUM},  # 0 + 1 tagged < minimum 2
        spec=replace(SPEC, minimum=2),
        waiting=1,
        tagged=1,
    ),
    Row(
        "selectors during an ERROR back-off: nothing",
        (ready("a", 1),),
        {"create": 0, "limited": Limit.BACKOFF, "reason": Reason.SELECTORS},
        memory=Memory(error_streak=1, backoff_until=NOW + 5),
        waiting=1,
        tagged=1,
    ),
]


def _peak(row: Row) -> float | None:
    if row.peak != "current":
        return row.peak  # type: ignore[return-value]
    used = sum(
        max(d.usage or 0, d.committed) + d.reserved for d in row.deployments if d.status is Status.READY
    )
    return used + row.waiting


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_decide(row: Row) -> None:
    got = decide(
        row.spec,
        row.deployments,
        now=NOW,
        memory=row.memory,
        in_flight=row.in_flight,
        waiting=row.waiting,
        peak=_peak(row),
        tagged=row.tagged,
    )
    expect = row.expect if isinstance(row.expect, dict) else row.expect.__dict__
    for key, value in expect.items():
        assert getattr(got, key) == value, f"{key}: {getattr(got, key)!r} != {value!r} ({got})"


# --- the exact boundary, without any deployment around it ---------------------------------------------
@pytest.mark.parametrize(
    ("used", "capacity", "threshold", "expected"),
    [
        (4, 5, 0.8, True),  # 4 >= 4
        (Fraction("3.99"), 5, 0.8, False),  # 3.99 < 4
        (3.99, 5, 0.8, False),
        (55, 100, 0.55, True),  # float: 0.55 * 100 = 55.00000000000001
        (3, 30, 0.1, True),  # float: 0.1 * 30 = 3.0000000000000004
        (0, 0, 0.5, False),  # nothing used never scales up
        (1, 0, 0.5, True),  # demand with no capacity at all
    ],
)
def test_at_threshold_is_exact(used: float, capacity: int, threshold: float, expected: bool) -> None:
    assert at_threshold(used, capacity, threshold) is expected


def test_deployments_to_add_reaches_strictly_under() -> None:
    for used in range(1, 60):
        for threshold in (0.1, 0.3, 0.55, 0.8, 0.9, 1.0):
            n = deployments_to_add(used, 10, threshold, 5)
            if n:
                assert not at_threshold(used, 10 + n * 5, threshold)  # under after adding n
                assert at_threshold(used, 10 + (n - 1) * 5, threshold)  # n - 1 would not do


def test_unknown_new_capacity_adds_one() -> None:
    assert deployments_to_add(10, 5, 0.5, None) == 1


def test_under_after_removal() -> None:
    assert under_after_removal(0, 0, 0.8, 0.1)  # nothing used, nothing left: fine
    assert not under_after_removal(7, 10, 0.8, 0.1)  # 7 < 7 is false
    assert under_after_removal(Fraction("6.99"), 10, 0.8, 0.1)


# --- ERROR back-off -------------------------------------------------------------------------------------
def test_backoff_is_exponential_and_capped() -> None:
    assert [backoff_s(n) for n in range(0, 8)] == [0, 10, 20, 40, 80, 160, 300, 300]


def test_errors_degrade_and_one_ready_recovers() -> None:
    m = Memory()
    m = after_error(m, 1000.0, "image pull failed")
    assert m.degraded and m.backoff_until == 1010.0 and m.last_error == "image pull failed"
    m = after_error(m, 1005.0, "image pull failed")
    assert m.error_streak == 2 and m.backoff_until == 1025.0
    assert after_ready(m, 1004.0) == m  # READY before the last error says nothing
    healed = after_ready(m, 1006.0)
    assert not healed.degraded and healed.backoff_until == 0.0 and healed.last_error == "image pull failed"


def test_scale_up_is_remembered_for_the_cooldown() -> None:
    m = after_scale_up(Memory(error_streak=1, backoff_until=5.0), 42.0)
    assert m.last_scale_up_at == 42.0 and m.error_streak == 1 and m.backoff_until == 5.0
