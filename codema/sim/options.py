"""Command-line knobs of `fleet sim` (the simulator owns them; the CLI only mounts them).

Every fault flag has the same name (dashes -> underscores) as a field of `POST /_sim/faults`.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from codema.sim.faults import FaultError, Faults
from codema.sim.state import WorldConfig


@dataclass(frozen=True)
class SimOptions:
    """Everything the simulator's HTTP host needs besides the token."""

    world: WorldConfig = field(default_factory=WorldConfig)
    faults: Faults = field(default_factory=Faults)
    seed: int = 1
    tick_s: float = 0.05  # how often the real-time loop advances the world and sends due webhooks
    webhook_timeout_s: float = 10.0  # the platform's documented webhook timeout
    webhook_retry_s: float = 1.0  # first back-off of telemetry webhook retries (doubles, 5 retries)


def add_sim_arguments(parser: argparse.ArgumentParser) -> None:
    w = parser.add_argument_group("world")
    w.add_argument("--boot-s", type=float, default=3.0, help="seconds from deploy to READY (default 3)")
    w.add_argument(
        "--stop-s", type=float, default=1.0, help="seconds from TERMINATING to TERMINATED (default 1)"
    )
    w.add_argument(
        "--telemetry-delay-s",
        type=float,
        default=1.0,
        help="seconds telemetry answers partial_result=true (default 1)",
    )
    w.add_argument(
        "--telemetry-ttl-s", type=float, default=300.0, help="retrieval key lifetime (default 300)"
    )
    w.add_argument(
        "--minute-s",
        type=float,
        default=60.0,
        help="seconds per platform minute for empty_ttl and max_duration (default 60)",
    )
    w.add_argument("--seed", type=int, default=1, help="random seed (ids, placement, fault draws)")
    w.add_argument("--tick-s", type=float, default=0.05, help="real-time loop period (default 0.05)")
    w.add_argument(
        "--webhook-retry-s",
        type=float,
        default=1.0,
        help="first back-off of telemetry webhook retries (default 1, doubling, 5 retries)",
    )
    f = parser.add_argument_group("faults (also settable at run time: POST /_sim/faults)")
    f.add_argument("--latency-ms", type=float, default=0.0, help="added to every platform response")
    f.add_argument(
        "--error-rate",
        default="",
        metavar="EP=P,...",
        help="P(503 before acting) per endpoint, e.g. deploy=0.2,status=0.1 (* = all)",
    )
    f.add_argument(
        "--rate-limit",
        default="",
        metavar="EP=RPS,...",
        help="requests/s per endpoint, then 429 + Retry-After, e.g. deploy=40,status=20,deployments=10",
    )
    f.add_argument(
        "--hold-rate",
        default="",
        metavar="EP=P,...",
        help="P(answer held --hold-s after the action happened) per endpoint",
    )
    f.add_argument("--hold-s", type=float, default=30.0, help="how long held answers wait (default 30)")
    f.add_argument("--fail-deploys", type=float, default=0.0, help="fraction of deployments ending in ERROR")
    f.add_argument(
        "--stuck-deploys", type=float, default=0.0, help="fraction of deployments stuck in DEPLOYING"
    )
    f.add_argument("--webhook-loss", type=float, default=0.0, help="P(a webhook is never sent)")
    f.add_argument("--webhook-dup", type=float, default=0.0, help="P(a webhook is sent twice)")
    f.add_argument(
        "--webhook-reorder",
        type=float,
        default=0.0,
        help="P(a webhook is held back by --reorder-window-s so later ones overtake it)",
    )
    f.add_argument("--reorder-window-s", type=float, default=1.0)
    f.add_argument("--webhook-delay-s", type=float, default=0.0, help="delay before every webhook")
    f.add_argument("--outage", action="append", default=[], metavar="CITY",
                   help="a city with an outage (repeatable or comma-separated)")  # fmt: skip


FAULT_FLAGS = (
    "latency_ms", "error_rate", "rate_limit", "hold_rate", "hold_s", "fail_deploys", "stuck_deploys",
    "webhook_loss", "webhook_dup", "webhook_reorder", "reorder_window_s", "webhook_delay_s",
)  # fmt: skip


def options_from_args(args: argparse.Namespace) -> SimOptions:
    """SimOptions from parsed flags; `codema.sim.faults.FaultError` names a malformed one."""
    for name in ("boot_s", "stop_s", "telemetry_delay_s", "telemetry_ttl_s", "webhook_retry_s"):
        if getattr(args, name) < 0:
            raise FaultError(f"--{name.replace('_', '-')}: must be >= 0")
    for name in ("minute_s", "tick_s"):
        if getattr(args, name) <= 0:
            raise FaultError(f"--{name.replace('_', '-')}: must be > 0")
    changes: dict[str, object] = {name: getattr(args, name) for name in FAULT_FLAGS}
    changes["outages"] = ",".join(args.outage)
    world = WorldConfig(
        boot_s=args.boot_s,
        stop_s=args.stop_s,
        telemetry_delay_s=args.telemetry_delay_s,
        telemetry_ttl_s=args.telemetry_ttl_s,
        minute_s=args.minute_s,
    )
    return SimOptions(
        world=world,
        faults=Faults().updated(changes),
        seed=args.seed,
        tick_s=args.tick_s,
        webhook_retry_s=args.webhook_retry_s,
    )
