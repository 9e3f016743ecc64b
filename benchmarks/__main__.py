"""`python -m benchmarks` (`make bench`): every benchmark in its own process, then RESULTS.md.

A benchmark that fails or runs out of time is recorded as such and the others still run. Each
writes `benchmarks/results/<name>.json` with `ratios` (figures against a baseline measured in the
same run) and `goals`; RESULTS.md gathers them with the machine they ran on.

    python -m benchmarks                    # all of them
    python -m benchmarks replay webhooks    # some of them
    python -m benchmarks --quick            # passed on to each (shorter runs where supported)
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS_DIR, machine

BENCHMARKS = ("webhooks", "autoscaler", "allocator", "replay")
# Each one's share of the 15-minute budget of `make bench`.
TIMEOUT_S = {"webhooks": 100, "autoscaler": 170, "allocator": 170, "replay": 450}
OUTPUT_TAIL = 2000
RESULTS_MD = Path(__file__).parent / "RESULTS.md"


def _stop_group(proc: subprocess.Popen[str]) -> None:
    """End the benchmark and every process it started (its own process group)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            continue


def run_one(name: str, extra: list[str]) -> dict[str, Any]:
    started = time.perf_counter()
    path = RESULTS_DIR / f"{name}.json"
    before = path.stat().st_mtime if path.exists() else None
    status, output = "ok", ""
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", f"benchmarks.{name}", *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group: a timeout ends its children too
        )
    except OSError as err:
        status = f"could not start: {err}"
    else:
        try:
            output, _ = proc.communicate(timeout=TIMEOUT_S[name])
            if proc.returncode != 0:
                status = f"failed (exit {proc.returncode})"
        except subprocess.TimeoutExpired:
            _stop_group(proc)
            output, _ = proc.communicate()
            status = f"timed out after {TIMEOUT_S[name]} s"
        output = (output or "")[-OUTPUT_TAIL:]
    fresh = path.exists() and path.stat().st_mtime != before
    result: dict[str, Any] = {}
    if fresh:
        try:
            result = json.loads(path.read_text())
        except ValueError as err:
            status += f"; unreadable results: {err}"
    elif status == "ok":
        status = "ok, but wrote no results"
    return {
        "name": name,
        "status": status,
        "seconds": round(time.perf_counter() - started, 1),
        "result": result,
        "output": "" if status == "ok" else output,
    }


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "**no**"
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def markdown(runs: list[dict[str, Any]], host: dict[str, Any], started: str, total_s: float) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"`make bench` on {started} UTC, {total_s:.0f} s in all. Machine: {host['cpu']}, "
        f"{host['cores']} cores, Python {host['python']}, Redis {host['redis']}, {host['platform']}; "
        f"load average at start {host['load_average']}.",
        "",
        "Every figure is a ratio against a baseline measured in the same run (see each section).",
        "",
        "| benchmark | status | seconds | goals met |",
        "|---|---|---:|---:|",
    ]
    for run in runs:
        goals = run["result"].get("goals") or {}
        met = f"{sum(1 for g in goals.values() if g is True)} / {len(goals)}" if goals else "-"
        lines.append(f"| {run['name']} | {run['status']} | {run['seconds']} | {met} |")
    for run in runs:
        lines += ["", f"## {run['name']}", ""]
        result = run["result"]
        if run["output"]:
            lines += ["```", run["output"].strip(), "```", ""]
        if not result:
            lines.append("No results.")
            continue
        if result.get("summary"):
            lines += [str(result["summary"]), ""]
        if result.get("ratios"):
            lines += ["| ratio (against the in-run baseline) | value |", "|---|---:|"]
            lines += [f"| {k} | {_value(v)} |" for k, v in result["ratios"].items()]
            lines.append("")
        if result.get("goals"):
            lines += ["| goal | met |", "|---|---|"]
            lines += [f"| {k} | {_value(v)} |" for k, v in result["goals"].items()]
            lines.append("")
        own = RESULTS_DIR / f"{run['name']}.md"
        if own.exists():
            text = own.read_text().strip()
            # Nest the module's own headings under this section.
            lines += ["#" + line if line.startswith("#") else line for line in text.splitlines()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default: {' '.join(BENCHMARKS)})")
    parser.add_argument("--quick", action="store_true", help="pass --quick to each benchmark")
    args = parser.parse_args(argv)
    names = args.names or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M")
    host = machine()
    t0 = time.perf_counter()
    runs = []
    for name in names:
        print(f"benchmarks: {name} ...", flush=True)
        run = run_one(name, ["--quick"] if args.quick else [])
        print(f"benchmarks: {name}: {run['status']} in {run['seconds']} s", flush=True)
        runs.append(run)
    RESULTS_MD.write_text(markdown(runs, host, started, time.perf_counter() - t0))
    print(f"benchmarks: wrote {RESULTS_MD}")
    return 0 if all(r["status"] == "ok" for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
