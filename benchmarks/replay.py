"""Replay benchmark (issue 8): `python -m benchmarks.replay [--quick]`.

1. Speed: `fleet replay` on the whole real trace (4.5 months) at players x1, every policy and the
   lower bound, as a user runs it; wall time against the 60-second budget.
2. Cost: the last four weeks of the real trace at players x10, in the reference setting (Seat
   sessions of one player, 10 sockets, 30 s boot, exponential sessions of mean 20 min, seed 1),
   for the lower bound, our scaler with the default policy settings and with the tuned ones, the
   platform's own fleet behaviour, and the Agones-style buffer autoscaler (20% buffer; with
   `--sensitivity` also 10%, to show how much the comparison owes to the buffer chosen). Each
   figure is a ratio against the lower bound and the baselines of the same run, on the same players.

Goal: ours within 1.25x of the lower bound's deployment-hours with no refused player, cheaper than
both baselines at equal or better time-to-session.

Writes benchmarks/results/replay.json, replay.md, replay-x1/ (the CLI's report) and
replay-x10.png.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS_DIR, machine, write_result

ROOT = Path(__file__).resolve().parents[1]
TRACE = ROOT.parent / "shared" / "data" / "decentraland_online_users_5min.csv"
# The policy settings found to reach the goal (see the README's replay section): scale up at 90%,
# scale in below 85% (hysteresis 0.05). They are now the reference configuration's defaults too
# (threshold 0.9 is the seed's default, hysteresis 0.05 the policy default), so both rows agree;
# the tuned row stays so that a change of the defaults shows up against it.
TUNED = {"threshold": 0.9, "hysteresis": 0.05}
X1_BUDGET_S = 60.0


def whole_trace_x1(quick: bool) -> dict[str, Any]:
    out = RESULTS_DIR / "replay-x1"
    window = "last:28d" if quick else "all"
    command = [
        sys.executable,
        "-m",
        "fleet.cli",
        "replay",
        "--trace",
        str(TRACE),
        "--window",
        window,
        "--out",
        str(out),
    ]
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    wall_s = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"fleet replay failed: {proc.stderr[-2000:]}")
    report = json.loads((out / "report.json").read_text())
    return {
        "command": " ".join(["fleet", *command[3:]]),
        "window": window,
        "wall_s": round(wall_s, 1),
        "players": report["lower_bound"]["players"],
        "days": round(report["inputs"]["days"], 1),
        "policies": {
            name: {
                "deployment_hours": round(r["deployment_hours"], 1),
                "vs_lower_bound": round(r["vs_lower_bound"], 4),
                "refused": r["players"]["refused"],
                "run_s": round(r["wall_s"], 1),
            }
            for name, r in report["policies"].items()
        },
        "lower_bound_deployment_hours": round(report["lower_bound"]["deployment_hours"], 1),
    }


def four_weeks_x10(quick: bool, sensitivity: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    from fleet.demand import load_trace
    from fleet.replay.inputs import DEFAULT_REGIONS, REGIONS, ReplayInputs, default_config
    from fleet.replay.players import generate, lower_bound
    from fleet.replay.report import plot
    from fleet.replay.run import run_tasks
    from fleet.replay.units import plan_of

    days = 7 if quick else 28
    trace = load_trace(TRACE).last(24 * days).scaled(10)
    regions = tuple(REGIONS[n] for n in DEFAULT_REGIONS)
    defaults = default_config(regions)
    tuned = default_config(regions)
    for policy in tuned["fleets"][0]["policies"]:
        policy.update(TUNED)
    base = ReplayInputs(trace=trace, config=defaults, regions=regions)
    tuned_inputs = ReplayInputs(trace=trace, config=tuned, regions=regions)
    agones_10 = ReplayInputs(trace=trace, config=defaults, regions=regions, agones_buffer="10%")
    started = time.perf_counter()
    players = generate(base)
    bound: dict[str, Any] = {}
    tasks = {
        "ours (defaults)": (base, plan_of(defaults), "ours"),
        "ours (tuned)": (tuned_inputs, plan_of(tuned), "ours"),
        "platform": (base, plan_of(defaults), "platform"),
        "agones (20% buffer)": (base, plan_of(defaults), "agones"),
    }
    if sensitivity:
        tasks["agones (10% buffer)"] = (agones_10, plan_of(defaults), "agones")
    runs = run_tasks(players, tasks, meanwhile=lambda: bound.update(lower_bound(players, base)))
    wall_s = time.perf_counter() - started
    plot(RESULTS_DIR / "replay-x10.png", {"policies": runs}, base, players)
    return {"days": days, "players": len(players), "wall_s": round(wall_s, 1), "lower_bound": bound}, runs


def row(result: dict[str, Any], bound_h: float, platform_h: float, agones_h: float) -> dict[str, Any]:
    players, tts, wait = result["players"], result["time_to_session_s"], result["wait_s"]
    return {
        "deployment_hours": round(result["deployment_hours"], 1),
        "vs_lower_bound": round(result["deployment_hours"] / bound_h, 4),
        "vs_platform": round(result["deployment_hours"] / platform_h, 4),
        "vs_agones_20": round(result["deployment_hours"] / agones_h, 4),
        "creates": result["creates"],
        "stops": result["stops"],
        "waited": players["waited"],
        "refused": players["refused"],
        "tts_p99_s": round(tts["p99"], 2),
        "tts_max_s": round(tts["max"], 2),
        "wait_mean_s": round(wait["mean"], 2),
        "over_threshold_h": round(result["over_threshold_h"], 1),
        "decide_calls": result["scaler"].get("decide_calls"),
        "run_s": round(result["wall_s"], 1),
    }


def beats(ours: dict[str, Any], other: dict[str, Any]) -> bool:
    """Cheaper, and no worse on time-to-session (p99 and max) nor on refusals."""
    return (
        ours["deployment_hours"] < other["deployment_hours"]
        and ours["tts_p99_s"] <= other["tts_p99_s"]
        and ours["tts_max_s"] <= other["tts_max_s"]
        and ours["refused"] <= other["refused"]
    )


def markdown(data: dict[str, Any]) -> str:
    x1, x10 = data["x1"], data["x10"]
    lines = ["# Replay benchmark", ""]
    if x1 is None:
        lines += ["## Speed: `fleet replay` on the whole real trace at players x1", "", "Not finished.", ""]
    else:
        lines += [
            f"## Speed: `fleet replay` on the whole real trace at players x1 ({x1['days']} days, "
            f"{x1['players']:,} players, every policy and the lower bound)",
            "",
            f"Wall time **{x1['wall_s']} s** (budget {X1_BUDGET_S:g} s: "
            f"ratio {x1['wall_s'] / X1_BUDGET_S:.2f}). Command: `{x1['command']}`.",
            "",
            "| policy | deployment-hours | x lower bound | refused | run (s) |",
            "|---|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {name} | {r['deployment_hours']:,.1f} | {r['vs_lower_bound']:.3f} | {r['refused']:,} "
            f"| {r['run_s']} |"
            for name, r in x1["policies"].items()
        ]
    bound = x10["lower_bound"]
    lines += [
        "",
        f"## Cost: last {x10['days']} days of the real trace at players x10 ({x10['players']:,} players, "
        f"reference setting)",
        "",
        "| policy | deployment-hours | x lower bound | x platform | x Agones 20% | creates | stops | waited "
        "| refused | time-to-session p99 / max (s) | over threshold (h) | run (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| lower bound | {bound['deployment_hours']:,.1f} | 1.000 | | | | | | | | | |",
    ]
    for name, r in data["x10_policies"].items():
        lines.append(
            f"| {name} | {r['deployment_hours']:,.1f} | {r['vs_lower_bound']:.3f} | {r['vs_platform']:.3f} "
            f"| {r['vs_agones_20']:.3f} | {r['creates']:,} | {r['stops']:,} | {r['waited']:,} "
            f"| {r['refused']:,} "
            f"| {r['tts_p99_s']:g} / {r['tts_max_s']:g} | {r['over_threshold_h']:,.1f} | {r['run_s']} |"
        )
    lines += [
        "",
        f"Tuned settings: {json.dumps(TUNED)} on every policy. Defaults: the reference configuration's "
        "threshold 0.9 (the seed's default) and the policy defaults (hysteresis 0.05, idle 300 s, "
        "cooldown 60 s), the same today. Plot: `benchmarks/results/replay-x10.png`.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.replay", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="x1 on 4 weeks, x10 on 1 week (a smoke run)")
    parser.add_argument("--sensitivity", action="store_true", help="also Agones with a 10%% buffer")
    args = parser.parse_args(argv)
    if not TRACE.exists():
        print(f"benchmarks.replay: {TRACE} is absent (../shared/data beside the checkout)", file=sys.stderr)
        return 2
    host = machine()
    # The cost comparison first, written at once: if the speed run overruns the budget, it stays.
    x10, runs = four_weeks_x10(args.quick, args.sensitivity)
    data = summarise(host, x10, runs, None)
    write_result("replay", data)
    (RESULTS_DIR / "replay.md").write_text(markdown(data))
    x1 = whole_trace_x1(args.quick)
    data = summarise(host, x10, runs, x1)
    write_result("replay", data)
    (RESULTS_DIR / "replay.md").write_text(markdown(data))
    print(json.dumps({"ratios": data["ratios"], "goals": data["goals"]}, indent=2))
    return 0


def summarise(
    host: dict[str, Any], x10: dict[str, Any], runs: dict[str, Any], x1: dict[str, Any] | None
) -> dict[str, Any]:
    bound_h = x10["lower_bound"]["deployment_hours"]
    platform_h = runs["platform"]["deployment_hours"]
    agones_h = runs["agones (20% buffer)"]["deployment_hours"]
    table = {name: row(r, bound_h, platform_h, agones_h) for name, r in runs.items()}
    tuned, default = table["ours (tuned)"], table["ours (defaults)"]
    ratios: dict[str, Any] = {
        "ours_tuned_over_lower_bound": tuned["vs_lower_bound"],
        "ours_tuned_over_platform": tuned["vs_platform"],
        "ours_tuned_over_agones_20": tuned["vs_agones_20"],
        "ours_defaults_over_lower_bound": default["vs_lower_bound"],
        "ours_defaults_over_agones_20": default["vs_agones_20"],
    }
    goals: dict[str, Any] = {
        "ours_tuned_within_1.25x_lower_bound": tuned["vs_lower_bound"] <= 1.25,
        "ours_tuned_refuses_nobody": tuned["refused"] == 0,
        "ours_tuned_beats_platform": beats(tuned, table["platform"]),
        "ours_tuned_beats_agones_20": beats(tuned, table["agones (20% buffer)"]),
        "ours_defaults_within_1.25x_lower_bound": default["vs_lower_bound"] <= 1.25,
    }
    if "agones (10% buffer)" in table:
        ratios["ours_tuned_over_agones_10"] = round(
            tuned["deployment_hours"] / table["agones (10% buffer)"]["deployment_hours"], 4
        )
    if x1 is not None:
        ratios["x1_wall_s_over_60s_budget"] = round(x1["wall_s"] / X1_BUDGET_S, 3)
        goals["x1_whole_trace_under_60s"] = x1["wall_s"] < X1_BUDGET_S
    return {
        "machine": host,
        "x1": x1,
        "x10": x10,
        "x10_policies": table,
        "tuned_settings": TUNED,
        "ratios": ratios,
        "goals": goals,
    }


if __name__ == "__main__":
    sys.exit(main())
