"""The replay's demand window: the peak the production scaler would see, sampling continuously."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.replay.window import FOREVER, DemandWindow

WINDOW_S = 300.0


def brute_peak(changes: list[tuple[float, int]], now: float, window_s: float) -> int:
    """Largest value the piecewise-constant demand took at any instant of [now - w, now]."""
    best = None
    for k, (t, v) in enumerate(changes):
        end = changes[k + 1][0] if k + 1 < len(changes) else now
        if end >= now - window_s and t <= now:
            best = v if best is None else max(best, v)
    assert best is not None
    return best


steps = st.lists(st.tuples(st.floats(0.5, 200.0), st.integers(0, 60)), min_size=1, max_size=40)


@settings(max_examples=100, deadline=None)
@given(steps, st.floats(0.0, 400.0))
def test_peak_is_the_largest_value_held_in_the_window(moves: list[tuple[float, int]], extra: float) -> None:
    window = DemandWindow(0.0, 0)
    changes = [(0.0, 0)]
    t = 0.0
    for gap, value in moves:
        t += gap
        window.set(t, value)
        if value != changes[-1][1]:
            changes.append((t, value))
        now = t
        if now >= WINDOW_S:
            assert window.peak(now, WINDOW_S) == brute_peak(changes, now, WINDOW_S)
    now = t + extra
    if now >= WINDOW_S:
        assert window.peak(now, WINDOW_S) == brute_peak(changes, now, WINDOW_S)


@settings(max_examples=100, deadline=None)
@given(steps, st.integers(1, 60))
def test_below_from_is_when_the_peak_drops_under_a_level(moves: list[tuple[float, int]], level: int) -> None:
    window = DemandWindow(0.0, 0)
    changes = [(0.0, 0)]
    t = 0.0
    for gap, value in moves:
        t += gap
        window.set(t, value)
        if value != changes[-1][1]:
            changes.append((t, value))
    at = window.below_from(level, t, WINDOW_S)
    if changes[-1][1] >= level:
        assert at == FOREVER
        return
    assert at is not None and at >= t
    # From `at` on (demand unchanged), the peak is under the level; just before, it was not.
    assert brute_peak(changes, at, WINDOW_S) < level
    if at > t:
        assert brute_peak(changes, at - 2e-3, WINDOW_S) >= level


def test_no_peak_before_a_whole_window_was_watched() -> None:
    window = DemandWindow(100.0, 5)
    assert window.peak(100.0 + WINDOW_S - 1, WINDOW_S) is None
    assert window.peak(100.0 + WINDOW_S, WINDOW_S) == 5


def test_a_drop_keeps_the_old_value_until_it_leaves_the_window() -> None:
    window = DemandWindow(0.0, 0)
    window.set(10.0, 50)  # 50 from t=10 ...
    window.set(400.0, 20)  # ... until t=400
    # At t=650 the window is [350, 650]: 50 still held at 350..400.
    assert window.peak(650.0, WINDOW_S) == 50
    # The peak falls under 30 just after 400 + 300 (a millisecond later: a sample at exactly
    # now - window still counts, as in PeakWindow).
    assert window.below_from(30, 650.0, WINDOW_S) == 700.0 + 1e-3
    # At t=701 the window is [401, 701]: only 20.
    assert window.peak(701.0, WINDOW_S) == 20
