"""`fleet replay`: argument parsing and report writing around `fleet.replay` (offline, virtual time)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

DEFAULT_OUT = "replay-report"


def add_replay_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Replay player demand against the simulator's world model in virtual time, with the "
        "production scaling and placement code, the platform's own fleet behaviour and an "
        "Agones-style buffer autoscaler, and the lower bound. No Redis, no HTTP."
    )
    add = parser.add_argument
    add("--trace", default=None, help="a TIME,PLAYERS CSV (default: the built-in 48-hour curve)")
    add("--window", default="all", help="all | last:28d | first:12h | peak:48h | START:END (Unix s)")
    add("--scale", type=float, default=1.0, help="multiply player counts (default 1)")
    add(
        "--config",
        default=None,
        help="fleet configuration YAML, `fleet apply` format (default: one "
        "Location policy per region, threshold 0.9)",
    )
    add("--app", default=None, help="APP/VERSION players ask for (default: the first linked one)")
    add("--sockets", type=int, default=10, help="sockets per deployment (the app version's; default 10)")
    add("--boot-s", type=float, default=30.0, help="deploy to READY, seconds (default 30)")
    add("--session-model", choices=("exponential", "fixed", "lognormal"), default="exponential")
    add("--session-mean-s", type=float, default=1200.0, help="mean session length (default 1200 s)")
    add("--session-sigma", type=float, default=1.0, help="lognormal sigma (default 1)")
    add("--seed", type=int, default=1)
    add(
        "--regions",
        default="europe,north-america,asia",
        help="player regions, optionally with UTC offsets: europe:1,north-america:-6,asia:8",
    )
    add(
        "--max-wait-s",
        type=float,
        default=None,
        help="refuse a player still waiting this long (default: FLEET_SESSION_WAIT_S, 120 s)",
    )
    add("--warmup-s", type=float, default=3600.0, help="players ramp in before the window (not measured)")
    add(
        "--gaps",
        choices=("interpolate", "hold"),
        default="interpolate",
        help="trace steps over 15 min: straight line (default) or hold the last sample",
    )
    add("--policies", default="ours,platform,agones", help="policies to compare (the lower bound always)")
    add("--empty-ttl-min", type=int, default=5, help="the platform's empty_ttl for its own fleet behaviour")
    add("--agones-buffer", default="20%", help="Agones buffer: 20%% of capacity, or a socket count")
    add("--agones-sync-s", type=float, default=30.0, help="Agones sync period (default 30 s)")
    add("--jobs", type=int, default=None, help="processes to run policies in (default: one per policy)")
    add(
        "--exhaustive",
        action="store_true",
        help="decide at every change and rank every deployment "
        "at every placement (slow: checks the fast path)",
    )
    add("--out", default=DEFAULT_OUT, help=f"report directory (default {DEFAULT_OUT})")
    add("--print-config", action="store_true", help="print the default configuration YAML and exit")


def main(args: argparse.Namespace) -> int:
    try:
        return _main(args)
    except ValueError as err:
        print(f"fleet replay: {err}", file=sys.stderr)
        return 2


def _main(args: argparse.Namespace) -> int:
    import yaml

    from fleet.demand import builtin_trace, load_trace
    from fleet.replay.inputs import ReplayInputs, SessionModel, load_config_text, parse_regions, select_window
    from fleet.replay.report import describe, table, write
    from fleet.replay.run import POLICIES, replay
    from fleet.replay.units import plan_of
    from fleet.settings import Settings

    started = time.perf_counter()
    regions = parse_regions(args.regions)
    config_path = Path(args.config) if args.config else None
    document = load_config_text(config_path, regions)
    if args.print_config:
        print(yaml.safe_dump(document, sort_keys=False), end="")
        return 0
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    unknown = [p for p in policies if p not in POLICIES]
    if unknown or not policies:
        raise ValueError(f"--policies: expected some of {', '.join(POLICIES)}, got {args.policies!r}")
    if args.scale <= 0:
        raise ValueError("--scale: expected a positive factor")
    plan = plan_of(document, args.app)
    if args.trace:
        try:
            trace = load_trace(Path(args.trace))
        except OSError as err:
            raise ValueError(f"--trace: {err}") from err
        source = args.trace
    else:
        trace = builtin_trace()
        source = "built-in 48-hour curve"
    trace = select_window(trace, args.window).scaled(args.scale)
    settings = Settings()
    inputs = ReplayInputs(
        trace=trace,
        config=document,
        regions=regions,
        sockets=args.sockets,
        boot_s=args.boot_s,
        sessions=SessionModel(args.session_model, args.session_mean_s, args.session_sigma),
        seed=args.seed,
        max_wait_s=args.max_wait_s if args.max_wait_s is not None else settings.session_wait_s,
        warmup_s=args.warmup_s,
        gaps=args.gaps,
        empty_ttl_min=args.empty_ttl_min,
        agones_buffer=args.agones_buffer,
        agones_sync_s=args.agones_sync_s,
        account_max_deployments=settings.account_max_deployments,
        account_max_creates_per_minute=settings.account_max_creates_per_minute,
        default_idle_s=settings.default_idle_s,
        deploy_timeout_s=settings.deploy_timeout_s,
    )
    outcome = replay(inputs, plan, policies, jobs=args.jobs, exhaustive=args.exhaustive)
    described = describe(
        inputs, source, args.window, args.scale, str(config_path or "default (one policy per region)")
    )
    out = Path(args.out)
    report = write(out, outcome, inputs, described)
    print(table(report))
    print(
        f"\nfleet replay: {report['lower_bound']['players']:,} players over {described['days']:.1f} days; "
        f"replay {outcome['wall_s']:.1f} s, total {time.perf_counter() - started:.1f} s; report in {out}/"
    )
    return 0
