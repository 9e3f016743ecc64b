"""The platform's usage and our reservations overlap: a session created on the platform but not yet
confirmed by us is in both (e2e burst finding: adding them bought a deployment nobody needed at
threshold 1.0). Demand per deployment is the larger of the two views, never their sum."""

from __future__ import annotations

import pytest

from autoscaler.policy import Spec, decide
from tests.unit.test_policy import NOW, ready

SPEC = Spec(minimum=1, maximum=8, threshold=1.0, hysteresis=0.05, idle_s=300, cooldown_s=60, sockets=4)


def test_a_session_in_the_platforms_usage_and_in_our_reservations_counts_once() -> None:
    # a: 4 on the platform = 3 confirmed + 1 created, not yet confirmed (still reserved); b: 3 = 2 + 1.
    a = ready("a", 4, sockets=4, committed=3, reserved=1)
    b = ready("b", 3, sockets=4, committed=2, reserved=1)
    d = decide(SPEC, (a, b), now=NOW)
    assert d.create == 0, d  # 7 of 8 sockets; the sum of both views would say 9 of 8: one more


@pytest.mark.parametrize(
    ("usage", "committed", "reserved", "creates"),
    [
        (2, 2, 2, 1),  # reservations not on the platform yet: 4 of 4 is full, scale up
        (None, 3, 1, 1),  # usage unknown: our own 4 still count
        (4, 0, 0, 1),  # others' sessions on the platform: 4 of 4
        (3, 1, 1, 0),  # 3 of 4 on the platform, our view says 2: under the threshold
    ],
)
def test_demand_is_the_larger_view(usage: int | None, committed: int, reserved: int, creates: int) -> None:
    d = decide(SPEC, (ready("a", usage, sockets=4, committed=committed, reserved=reserved),), now=NOW)
    assert d.create == creates, d
