"""Command-line knobs of `fleet sim` (the simulator owns them; the CLI only mounts them)."""

from __future__ import annotations

import argparse


def add_sim_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--boot-s", type=float, default=3.0, help="seconds from deploy to READY")
