"""`fleet replay`: argument parsing and report writing around `fleet.replay` (offline, virtual time)."""

from __future__ import annotations

import argparse


def add_replay_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trace", default=None, help="a TIME,PLAYERS CSV")


def main(args: argparse.Namespace) -> int:
    raise SystemExit("fleet replay: not built yet")
