"""The ``bayesfilt`` command line (also ``python -m bayesfilt``).

Each subcommand lives in its own module in this package and provides
``register(subparsers)``, which adds its parser and sets ``func`` (args -> exit code).
Add a subcommand by adding its module name to ``SUBCOMMANDS``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: Modules (in bayesfilt.cli) that each register one subcommand.
SUBCOMMANDS = ("demo", "train", "track", "check", "generate")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered subcommand."""
    from .. import __version__
    parser = argparse.ArgumentParser(prog="bayesfilt", description="Kalman filtering, parallel scans and KLA.")
    parser.add_argument("--version", action="version", version=f"bayesfilt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv=None) -> int:
    """Entry point: parse ``argv`` and run the subcommand; returns the exit code."""
    from ..errors import BayesfiltError
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except BayesfiltError as exc:
        print(f"bayesfilt {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"bayesfilt {args.command}: interrupted", file=sys.stderr)
        return 130
