"""Replay inputs: regions, windows, the Agones buffer, the fleet configuration, players, gaps, and
the CLI's answers to bad input."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from fleet.demand import HOUR_S, Trace
from fleet.replay.inputs import (
    REGIONS,
    ReplayInputs,
    default_config,
    parse_buffer,
    parse_regions,
    select_window,
)
from fleet.replay.players import generate, knots
from fleet.replay.units import build_units, plan_of
from fleet.replay_cli import add_replay_arguments, main


def test_regions_by_name_with_optional_offsets() -> None:
    regions = parse_regions("europe, asia:9")
    assert [(r.name, r.utc_offset_h) for r in regions] == [("europe", 1.0), ("asia", 9.0)]
    for bad, words in (
        ("mars", "unknown region"),
        ("europe:x", "UTC offset"),
        ("europe,europe", "twice"),
        ("", "at least one"),
    ):
        with pytest.raises(ValueError, match=words):
            parse_regions(bad)


def test_windows() -> None:
    trace = Trace(tuple(float(t) for t in range(0, 10 * 86400 + 1, 3600)), tuple([1.0] * 241))
    assert select_window(trace, "all") is trace
    assert (select_window(trace, "last:2d").start, select_window(trace, "last:2d").end) == (
        8 * 86400,
        10 * 86400,
    )
    assert select_window(trace, "first:12h").end == 12 * HOUR_S
    assert select_window(trace, "3600:7200").times == (3600.0, 7200.0)
    for bad in ("last:x", "last:-1d", "nonsense"):
        with pytest.raises(ValueError, match="--window"):
            select_window(trace, bad)


def test_agones_buffer() -> None:
    assert parse_buffer("20%") == (0.2, True)
    assert parse_buffer("50") == (50, False)
    for bad in ("100%", "-1", "2.5", "lots"):
        with pytest.raises(ValueError, match="agones buffer"):
            parse_buffer(bad)


def test_configuration_is_read_by_the_fleet_apply_parser() -> None:
    document = default_config((REGIONS["europe"],))
    document["fleets"][0]["policies"][0]["threshold"] = 1.5
    with pytest.raises(ValueError, match=r"policies\[0\]\.threshold"):
        plan_of(document)
    with pytest.raises(ValueError, match="links no app version"):
        plan_of({"fleets": [{"name": "f", "enabled": True, "policies": []}]})


def test_units_use_the_scaler_spec_with_never_stale_data() -> None:
    document = default_config((REGIONS["europe"], REGIONS["asia"]))
    document["fleets"][0]["policies"][1].update({"idle_s": 90.0, "hysteresis": 0.2})
    trace = Trace((0.0, 3600.0), (10.0, 10.0))
    replay_inputs = ReplayInputs(trace=trace, config=document, sockets=8)
    units = build_units(plan_of(document), replay_inputs, None, 0.0)
    assert [u.label for u in units] == ["europe", "asia"]
    assert units[0].spec.idle_s == 300.0  # no idle_s, no empty_ttl: the settings' default
    assert (units[1].spec.idle_s, units[1].spec.hysteresis) == (90.0, 0.2)
    assert units[0].spec.sockets == 8 and units[0].spec.stale_after_s == float("inf")


def test_players_keep_the_target_online() -> None:
    # 100 players for 2 days, sessions of 20 min on average: on average 100 online.
    trace = Trace((0.0, 2 * 86400.0), (100.0, 100.0))
    replay_inputs = ReplayInputs(trace=trace, config=None, regions=(REGIONS["europe"],), seed=5)
    players = generate(replay_inputs)
    arrive = np.frombuffer(players.arrive, dtype=float)
    length = np.frombuffer(players.length, dtype=float)
    assert np.all(np.diff(arrive) >= 0)
    probes = np.linspace(3600, 2 * 86400, 500)
    online = [(np.count_nonzero((arrive <= t) & (arrive + length > t))) for t in probes]
    assert 95 <= np.mean(online) <= 105
    assert abs(length.mean() - 1200) < 30
    # The same seed draws the same players.
    assert generate(replay_inputs).arrive == players.arrive


def test_gaps_hold_or_interpolate() -> None:
    # Samples at 0 and 300 (a step), then a 2-hour gap to 7,500.
    trace = Trace((0.0, 300.0, 7500.0), (10.0, 20.0, 80.0))
    held = ReplayInputs(trace=trace, config=None, gaps="hold", warmup_s=0.0)
    t, v = knots(held)
    assert np.interp(3900.0, t, v) == 20.0  # held at the last sample until just before 7,500
    straight = ReplayInputs(trace=trace, config=None, warmup_s=0.0)
    t, v = knots(straight)
    assert np.interp(3900.0, t, v) == pytest.approx(50.0)  # halfway from 20 to 80


def cli(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_replay_arguments(parser)
    return parser.parse_args(argv)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (("--policies", "ours,magic"), "--policies"),
        (("--scale", "0"), "--scale"),
        (("--regions", "atlantis"), "--regions"),
        (("--window", "last:zz"), "--window"),
        (("--trace", "/nonexistent.csv"), "--trace"),
        (("--app", "nope/v9"), "--app"),
        (("--agones-buffer", "150%"), "agones buffer"),
        (("--empty-ttl-min", "0"), "empty ttl"),
        (("--warmup-s", "-5"), "warm-up"),
        (("--sockets", "0"), "sockets"),
        (("--session-mean-s", "0"), "session model"),
    ],
)
def test_cli_names_the_bad_argument(
    argv: tuple[str, ...], words: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(cli(*argv, "--out", str(tmp_path))) == 2
    assert words in capsys.readouterr().err


def test_cli_rejects_a_bad_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(
        "fleets:\n  - name: f\n    enabled: true\n    apps: [{app: g, version: v1}]\n"
        "    policies:\n      - {name: p, enabled: true, type: Location, minimum: 0, maximum: 2,"
        " threshold: 0.8, data: {filters: [{field: continent, values: [Europe], filter_type: any}]}}\n"
    )
    assert main(cli("--config", str(path), "--out", str(tmp_path))) == 2
    assert "policies[0].minimum" in capsys.readouterr().err


def test_cli_prints_the_default_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(cli("--print-config", "--regions", "europe")) == 0
    out = capsys.readouterr().out
    assert "fleets:" in out and "name: europe" in out
