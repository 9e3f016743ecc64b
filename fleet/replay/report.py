"""The replay's report: `report.json` (everything measured), `report.md` (the comparison table) and
`demand-capacity.png` (players and capacity per region over time, for every policy and the lower
bound), plus `decisions-ours.csv` (every decision of our scaler that acted)."""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from fleet.replay.inputs import ReplayInputs
from fleet.replay.players import Players, online_at

LABELS = {
    "ours": "ours (autoscaler.policy)",
    "platform": "platform fleet (threshold crossing, empty TTL)",
    "agones": "Agones-style buffer, 30 s sync",
}


def describe(
    inputs: ReplayInputs, source: str, window: str, scale: float, config_source: str
) -> dict[str, Any]:
    return {
        "trace": source,
        "window": window,
        "from": iso(inputs.start),
        "to": iso(inputs.end),
        "days": (inputs.end - inputs.start) / 86400,
        "scale": scale,
        "config": config_source,
        "sockets": inputs.sockets,
        "session_kind": "Seat, one player per session",
        "boot_s": inputs.boot_s,
        "sessions": {
            "model": inputs.sessions.kind,
            "mean_s": inputs.sessions.mean_s,
            "sigma": inputs.sessions.sigma,
        },
        "seed": inputs.seed,
        "regions": [{"name": r.name, "utc_offset_h": r.utc_offset_h} for r in inputs.regions],
        "max_wait_s": inputs.max_wait_s,
        "warmup_s": inputs.warmup_s,
        "gaps": inputs.gaps,
        "platform_empty_ttl_min": inputs.empty_ttl_min,
        "agones": {"buffer": inputs.agones_buffer, "sync_s": inputs.agones_sync_s},
        "account": {
            "max_deployments": inputs.account_max_deployments,
            "max_creates_per_minute": inputs.account_max_creates_per_minute,
        },
    }


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M")


def json_ready(outcome: dict[str, Any], described: dict[str, Any]) -> dict[str, Any]:
    policies = {
        name: {k: v for k, v in result.items() if k not in ("samples", "decisions")}
        for name, result in outcome["policies"].items()
    }
    return {
        "inputs": described,
        "wall_s": outcome["wall_s"],
        "players_drawn_s": outcome["players_drawn_s"],
        "lower_bound": outcome["lower_bound"],
        "policies": policies,
    }


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:,.{digits}f}"


def table(report: dict[str, Any]) -> str:
    bound = report["lower_bound"]
    rows = [
        "| policy | deployment-hours | x lower bound | creates | stops | re-created within 5 min "
        "| players waited | refused | time-to-session p99 / max (s) | wait mean / p99 (s) "
        "| over threshold (h) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| lower bound: ceil(players / sockets) | {_fmt(bound['deployment_hours'])} | 1.000 "
        "| - | - | - | - | - | - | - | - |",
    ]
    for name, r in report["policies"].items():
        p, tts, wait = r["players"], r["time_to_session_s"], r["wait_s"]
        rows.append(
            f"| {LABELS.get(name, name)} | {_fmt(r['deployment_hours'])} | {_fmt(r['vs_lower_bound'], 3)} "
            f"| {r['creates']:,} | {r['stops']:,} | {r['recreates_within_5min']:,} "
            f"| {p['waited']:,} | {p['refused']:,} "
            f"| {_fmt(tts['p99'])} / {_fmt(tts['max'])} | {_fmt(wait['mean'])} / {_fmt(wait['p99'])} "
            f"| {_fmt(r['over_threshold_h'])} |"
        )
    return "\n".join(rows)


def where_hours_went(report: dict[str, Any]) -> str:
    """Each policy's deployment-hours by state, as multiples of the lower bound. READY with players
    minus the lower bound is fragmentation: deployments held by a few players each (sessions end at
    random; only an empty deployment may stop), which no scaling policy can remove."""
    bound = report["lower_bound"]["deployment_hours"]
    rows = [
        "| policy | total | READY with players | of which fragmentation | READY empty, within idle time "
        "| READY empty, past idle time | starting | stopping |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    if not bound:
        return ""
    for name, r in report["policies"].items():
        h = r["hours_by_state"]
        rows.append(
            f"| {LABELS.get(name, name)} | {r['deployment_hours'] / bound:.3f} "
            f"| {h['with_players'] / bound:.3f} | {(h['with_players'] - bound) / bound:+.3f} "
            f"| {h['empty_within_idle'] / bound:.3f} | {h['empty_past_idle'] / bound:.3f} "
            f"| {h['starting'] / bound:.3f} | {h['stopping'] / bound:.3f} |"
        )
    return "\n".join(rows)


def markdown(report: dict[str, Any]) -> str:
    i = report["inputs"]
    b = report["lower_bound"]
    regions = ", ".join(f"{r['name']} (UTC{r['utc_offset_h']:+g})" for r in i["regions"])
    lines = [
        "# Replay report",
        "",
        f"Trace `{i['trace']}`, window {i['window']} ({i['from']} to {i['to']} UTC, {i['days']:.1f} days), "
        f"players x{i['scale']:g}; configuration: {i['config']}.",
        f"Seat sessions of one player, {i['sockets']} sockets per deployment, {i['boot_s']:g} s boot, "
        f"session lengths {i['sessions']['model']} with mean {i['sessions']['mean_s'] / 60:g} min, "
        f"seed {i['seed']}; regions {regions}; players wait at most {i['max_wait_s']:g} s; "
        f"gaps: {i['gaps']}.",
        f"{b['players']:,} players arrived in the window ({b['player_hours']:,.0f} player-hours, "
        f"peak {b['peak_players']:,} online).",
        "",
        table(report),
        "",
        "Where the deployment-hours went (multiples of the lower bound):",
        "",
        where_hours_went(report),
        "",
        "- lower bound: ceil(players online / sockets) deployments at every instant, everyone placed "
        "on arrival: no policy that serves every player needs fewer deployment-hours.",
        "- deployment-hours are billed from the deploy call until TERMINATED (boot included).",
        "- re-created within 5 min: creates less than 5 minutes after a stop of the same policy "
        "(including the platform ending a deployment by itself): capacity given away and bought back.",
        "- idle time: the policy's `idle_s` (the platform: its `empty_ttl`); an Agones buffer stops "
        "empty deployments at its next sync whatever their idle time.",
        "- time-to-session counts every placed player (most are placed at once: 0 s).",
        "- over threshold: time when placed plus waiting players reached the policy's threshold of "
        "READY sockets, summed over policies.",
        f"- wall time {report['wall_s']:.1f} s.",
        "",
    ]
    return "\n".join(lines)


def write_decisions(path: Path, rows: list[dict[str, Any]]) -> None:
    fields = ["t", "unit", "reason", "create", "stop", "live", "used", "waiting", "capacity"]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "t": f"{row['t']:.3f}"})


def plot(path: Path, outcome: dict[str, Any], inputs: ReplayInputs, players: Players) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    policies = outcome["policies"]
    first = next(iter(policies.values()), None)
    if first is None or not first["samples"]:
        return
    times = np.array([s["t"] for s in first["samples"]])
    days = (times - inputs.start) / 86400
    regions = inputs.regions
    fig, axes = plt.subplots(len(regions), 1, figsize=(12, 2.8 * len(regions)), sharex=True, squeeze=False)
    colours = {"ours": "tab:blue", "platform": "tab:red", "agones": "tab:orange"}
    for r, region in enumerate(regions):
        ax = axes[r][0]
        demand = np.array([sum(s["regions"][r]) for s in first["samples"]])
        ax.plot(days, demand, color="black", lw=0.8, label="players (placed + waiting)")
        need = np.ceil(online_at(players, r, times) / inputs.sockets) * inputs.sockets
        ax.plot(days, need, color="grey", lw=0.8, ls="--", label="lower bound capacity")
        for name, result in policies.items():
            unit = result["region_units"][r]
            if unit is None:
                continue
            capacity = np.array([s["units"][unit][0] for s in result["samples"]])
            ax.plot(
                days[: len(capacity)],
                capacity,
                color=colours.get(name),
                lw=0.8,
                label=f"{name} capacity ({result['unit_labels'][unit]})",
            )
        ax.set_ylabel(f"{region.name}\nsockets")
        ax.legend(loc="upper left", fontsize=7, ncol=3)
        ax.grid(alpha=0.3)
    axes[-1][0].set_xlabel(f"days since {iso(inputs.start)} UTC")
    fig.suptitle("Demand and capacity per region")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(
    out: Path, outcome: dict[str, Any], inputs: ReplayInputs, described: dict[str, Any]
) -> dict[str, Any]:
    """Write every file of the report; return the JSON document."""
    out.mkdir(parents=True, exist_ok=True)
    report = json_ready(outcome, described)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(markdown(report))
    if "ours" in outcome["policies"]:
        write_decisions(out / "decisions-ours.csv", outcome["policies"]["ours"]["decisions"])
    plot(out / "demand-capacity.png", outcome, inputs, outcome["players"])
    return report
