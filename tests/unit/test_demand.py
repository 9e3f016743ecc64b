"""Demand curves and the regional split used by the demo and the replay."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.demand import HOUR_S, Region, Trace, builtin_trace, load_trace, split
from tests.conftest import shared_path


def test_interpolation_and_clamping() -> None:
    t = Trace((0.0, 10.0, 20.0), (0.0, 100.0, 50.0))
    assert t.at(-5) == 0.0
    assert t.at(5) == 50.0
    assert t.at(15) == 75.0
    assert t.at(99) == 50.0


def test_around_peak_is_centred_and_clamped() -> None:
    t = builtin_trace(48)
    w = t.around_peak(12)
    assert w.end - w.start == pytest.approx(12 * HOUR_S, abs=300)
    assert w.start <= t.peak_time() <= w.end


def test_split_keeps_the_total_and_follows_local_time() -> None:
    regions = [Region("eu", 1), Region("na", -6)]
    at_eu_evening = 19 * HOUR_S  # 20:00 in Europe, 13:00 in North America
    parts = split(100, at_eu_evening, regions)
    assert sum(parts.values()) == pytest.approx(100)
    assert parts["eu"] > parts["na"]


def test_load_trace_skips_bad_rows(tmp_path: Path) -> None:
    f = tmp_path / "t.csv"
    f.write_text('"TIME","PLAYERS"\n1,10\n2,x\n3,30\n3,31\n4,-1\n5,50\n')
    t = load_trace(f)
    assert t.times == (1.0, 3.0, 5.0)
    assert t.players == (10.0, 30.0, 50.0)


def test_load_trace_needs_header(tmp_path: Path) -> None:
    f = tmp_path / "t.csv"
    f.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="TIME and PLAYERS"):
        load_trace(f)


def test_real_trace_loads() -> None:
    t = load_trace(shared_path("data", "decentraland_online_users_5min.csv"))
    assert len(t.times) > 30_000
    assert max(t.players) == 1405
