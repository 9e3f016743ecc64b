"""`make chaos`: every fault scenario with three seeds, the soak, and the OpenAPI fuzz; writes
`benchmarks/results/chaos.json` and `benchmarks/results/soak.json`. Exits 1 if anything failed.

    python -m tests.e2e.chaos [--seeds 1,2,3] [--scenarios a,b] [--soak-s 600] [--no-soak] [--no-fuzz]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.e2e.chaos.harness import ChaosStack
from tests.e2e.chaos.scenarios import SCENARIOS, run_scenario

ROOT = Path(__file__).resolve().parents[3]
RESULTS = ROOT / "benchmarks" / "results"
LOGS = Path(os.environ.get("FLEET_CHAOS_LOGS", "/tmp/fleet-chaos-logs"))


def run_seed(seed: int, names: list[str]) -> list[dict[str, Any]]:
    results = []
    chaos = ChaosStack(seed=seed).start()
    try:
        chaos.wait_ready()
        for index, scenario in enumerate(SCENARIOS):
            if scenario.name not in names:
                continue
            result = run_scenario(chaos, scenario, seed, index)
            results.append(result)
            mark = "PASS" if result["passed"] else "FAIL"
            print(
                f"[chaos] seed={seed} {scenario.name}: {mark} {result['violation_kinds']} "
                f"sessions={result['sessions']} notes={result['notes']} "
                f"platform={result.get('platform_answers')} ({result['duration_s']} s)",
                flush=True,
            )
            for v in result["violations"][:8]:
                print(f"    {v['kind']} {v['subject']}: {v['detail'][:300]}", flush=True)
        results.append({"scenario": "_logs", "seed": seed, "tracebacks": tracebacks(chaos)})
    finally:
        chaos.stop(keep_logs=LOGS / f"seed-{seed}")
    return results


def tracebacks(chaos: ChaosStack) -> dict[str, Any]:
    """Tracebacks in the service's logs, by process, with the distinct final lines."""
    found: dict[str, Any] = {}
    for name in chaos.group.procs:
        text = chaos.group.logs(name, tail=50_000_000).replace("\\n", "\n")  # kv logs escape newlines
        count = text.count("Traceback (most recent call last)")
        if not count:
            continue
        finals = set()
        for block in text.split("Traceback (most recent call last)")[1:]:
            # the exception line: the first line after the indented frames
            lines = block.splitlines()[1:]
            final = next((ln for ln in lines if ln and not ln.startswith(" ")), "")
            finals.add(final[:200])
        found[name] = {"count": count, "errors": sorted(finals)[:10]}
    return found


def run_fuzz(examples: int) -> dict[str, Any]:
    started = time.monotonic()
    env = {**os.environ, "FLEET_FUZZ_EXAMPLES": str(examples)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-s",
            "tests/e2e/test_openapi_fuzz.py",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    tail = proc.stdout[-3000:]
    codes = next((line for line in proc.stdout.splitlines() if line.startswith("status codes met")), "")
    return {
        "passed": proc.returncode == 0,
        "examples_per_operation_and_mode": examples,
        "status_codes": codes,
        "duration_s": round(time.monotonic() - started, 1),
        "output_tail": tail if proc.returncode else tail[-400:],
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.e2e.chaos")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--scenarios", default=",".join(s.name for s in SCENARIOS))
    parser.add_argument("--soak-s", type=float, default=600.0)
    parser.add_argument("--no-soak", action="store_true")
    parser.add_argument("--no-fuzz", action="store_true")
    parser.add_argument("--fuzz-examples", type=int, default=60)
    args = parser.parse_args()
    started = time.monotonic()
    RESULTS.mkdir(parents=True, exist_ok=True)
    names = [n for n in args.scenarios.split(",") if n]
    scenario_results: list[dict[str, Any]] = []
    for seed in (int(s) for s in args.seeds.split(",") if s):
        scenario_results += run_seed(seed, names)
    fuzz = None if args.no_fuzz else run_fuzz(args.fuzz_examples)
    ok = all(r.get("passed", True) for r in scenario_results) and (fuzz is None or fuzz["passed"])
    chaos_doc = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "scenarios": [r for r in scenario_results if r["scenario"] != "_logs"],
        "service_tracebacks": {
            str(r["seed"]): r["tracebacks"] for r in scenario_results if r["scenario"] == "_logs"
        },
        "passed": {name: [r["passed"] for r in scenario_results if r["scenario"] == name] for name in names},
        "fuzz": fuzz,
    }
    (RESULTS / "chaos.json").write_text(json.dumps(chaos_doc, indent=2) + "\n")
    if not args.no_soak:
        from tests.e2e.chaos.soak import run_soak

        soak = run_soak(duration_s=args.soak_s)
        (RESULTS / "soak.json").write_text(json.dumps(soak, indent=2) + "\n")
        ok = ok and soak["passed"]
        print(f"[soak] {json.dumps({k: v for k, v in soak.items() if k != 'samples'})}", flush=True)
    print(f"[chaos] {'PASSED' if ok else 'FAILED'} in {time.monotonic() - started:.0f} s", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
