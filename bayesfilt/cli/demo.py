"""``bayesfilt demo``: the main demo (see :mod:`bayesfilt.demo`)."""

from __future__ import annotations


def register(sub) -> None:
    """Add the ``demo`` subcommand."""
    p = sub.add_parser("demo", help="filter and smooth a demo track and write plots")
    p.add_argument("--out", default="bayesfilt-demo", help="folder for the plots (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.set_defaults(func=run)


def run(args) -> int:
    """Run the demo with the parsed arguments."""
    from ..demo import run_demo
    run_demo(args.out, seed=args.seed)
    return 0
