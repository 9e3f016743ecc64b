"""`fleet replay` on a window of the real trace: the report and what it must hold."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from fleet.cli import build_parser
from tests.conftest import shared_path


def test_replay_of_a_real_day_writes_the_whole_report(tmp_path: Path) -> None:
    trace = shared_path("data", "decentraland_online_users_5min.csv")
    out = tmp_path / "report"
    args = build_parser().parse_args(
        [
            "replay",
            "--trace",
            str(trace),
            "--window",
            "last:1d",
            "--scale",
            "2",
            "--jobs",
            "1",
            "--out",
            str(out),
        ]
    )
    assert args.func(args) == 0

    report = json.loads((out / "report.json").read_text())
    bound = report["lower_bound"]
    assert bound["players"] > 10_000 and bound["deployment_hours"] > 0
    assert set(report["policies"]) == {"ours", "platform", "agones"}
    for name, result in report["policies"].items():
        players = result["players"]
        assert players["arrived"] == bound["players"], name
        assert (
            players["placed_at_once"]
            + players["waited"]
            + players["refused"]
            + players["still_waiting_at_end"]
            == players["arrived"]
        ), name
        assert result["time_to_session_s"]["count"] == players["placed_at_once"] + players["waited"]
        if players["refused"] == 0:
            assert result["vs_lower_bound"] >= 1.0, name
        assert result["creates"] > 0 and result["deployment_hours"] > 0
    ours = report["policies"]["ours"]
    assert ours["players"]["refused"] == 0
    assert ours["scaler"]["decide_calls"] >= ours["scaler"]["acting_decisions"] > 0
    assert report["inputs"]["sockets"] == 10 and report["inputs"]["boot_s"] == 30.0

    markdown = (out / "report.md").read_text()
    assert "lower bound" in markdown and "Agones" in markdown
    assert (out / "demand-capacity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(out / "decisions-ours.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == ours["scaler"]["acting_decisions"]
    assert {r["reason"] for r in rows} <= {"minimum", "threshold", "idle", "stuck", "over_maximum"}
