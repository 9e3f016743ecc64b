"""The `fleet` command. Each subcommand imports what it runs only when chosen, so `--help` is fast
and nothing connects at import time."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable, Sequence

Handler = Callable[[argparse.Namespace], int]


def _web(args: argparse.Namespace) -> int:
    from fleet.runners import run_web

    return run_web(args.host, args.port, workers=args.workers)


def _scaler(args: argparse.Namespace) -> int:
    from fleet.runners import run_scaler

    return run_scaler(once=args.once, metrics_port=args.metrics_port)


def _worker(args: argparse.Namespace) -> int:
    from fleet.runners import run_worker

    return run_worker(burst=args.burst, metrics_port=args.metrics_port)


def _sim(args: argparse.Namespace) -> int:
    import socket

    # The port is opened before the simulator loads (about half a second of imports and place
    # data): whoever started it beside `fleet web` may call it as soon as the web answers, and a
    # connection made meanwhile waits in the listen backlog instead of being refused.
    try:
        family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
        sock = socket.create_server((args.host, args.port), family=family, backlog=2048)
    except OSError as err:
        print(f"fleet sim: cannot listen on {args.host}:{args.port}: {err}", file=sys.stderr)
        return 2
    from codema.sim.server import main as sim_main

    return sim_main(args, sock)


def _demo(args: argparse.Namespace) -> int:
    from fleet.demo import main as demo_main

    return demo_main(args)


def _replay(args: argparse.Namespace) -> int:
    from fleet.replay_cli import main as replay_main

    return replay_main(args)


def _apply(args: argparse.Namespace) -> int:
    from fleet.runners import run_apply

    return run_apply(args.file, prune=args.prune)


def _with_redis(args: argparse.Namespace) -> int:
    """Run a command with FLEET_REDIS_URL set: the given one, or a private redis-server's."""
    command = [c for c in args.command if c != "--"]
    if not command:
        print("fleet with-redis: give a command after --", file=sys.stderr)
        return 2
    if os.environ.get("FLEET_REDIS_URL"):
        return subprocess.call(command)
    from fleet.devredis import private_redis

    with private_redis() as server:
        env = dict(os.environ, FLEET_REDIS_URL=server.url)
        print(f"fleet with-redis: private redis-server at {server.url}", file=sys.stderr)
        return subprocess.call(command, env=env)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fleet", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    web = sub.add_parser("web", help="the ASGI service: webhooks, fleet and session API, /metrics")
    web.add_argument("--host", default="127.0.0.1")
    web.add_argument("--port", type=int, default=8000)
    web.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    web.set_defaults(func=_web)

    scaler = sub.add_parser("scaler", help="the scaler loop (one leader at a time, others stand by)")
    scaler.add_argument("--once", action="store_true", help="one reconcile and decision pass, then exit")
    scaler.add_argument("--metrics-port", type=int, default=0, help="serve /metrics on this port (0: off)")
    scaler.set_defaults(func=_scaler)

    worker = sub.add_parser("worker", help="an RQ worker performing platform calls")
    worker.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    worker.add_argument("--metrics-port", type=int, default=0, help="serve /metrics on this port (0: off)")
    worker.set_defaults(func=_worker)

    sim = sub.add_parser("sim", help="the embedded Codema platform simulator")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8600)
    from codema.sim.options import add_sim_arguments

    add_sim_arguments(sim)
    sim.set_defaults(func=_sim)

    demo = sub.add_parser("demo", help="run every process against the simulator and replay demand")
    demo.add_argument("--trace", default=None, help="a TIME,PLAYERS CSV to replay (default: built-in)")
    demo.add_argument("--out", default="demo-report", help="report directory")
    demo.add_argument("--duration", type=float, default=150.0, help="seconds of compressed demand")
    demo.add_argument("--seed", type=int, default=1)
    demo.add_argument(
        "--redis-url",
        default=os.environ.get("FLEET_REDIS_URL"),
        help="use this Redis (default: FLEET_REDIS_URL, else a private redis-server)",
    )
    demo.set_defaults(func=_demo)

    replay = sub.add_parser("replay", help="offline what-if replay of a demand trace in virtual time")
    from fleet.replay_cli import add_replay_arguments

    add_replay_arguments(replay)
    replay.set_defaults(func=_replay)

    apply = sub.add_parser("apply", help="apply a YAML file of fleets, links and policies")
    apply.add_argument("file")
    apply.add_argument("--prune", action="store_true", help="delete fleets and policies not in the file")
    apply.set_defaults(func=_apply)

    with_redis = sub.add_parser("with-redis", help="run a command with a private redis-server")
    with_redis.add_argument("command", nargs=argparse.REMAINDER)
    with_redis.set_defaults(func=_with_redis)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.func
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
