"""``bayesfilt demo``: the main demo (see :mod:`bayesfilt.demo`)."""

from __future__ import annotations


def register(sub) -> None:
    """Add the ``demo`` subcommand."""
    p = sub.add_parser("demo", help="filter and smooth a demo track and write plots")
    p.add_argument("--out", default="bayesfilt-demo", help="folder for the plots (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="write into --out even if it already holds files")
    p.set_defaults(func=run)


def run(args) -> int:
    """Run the demo with the parsed arguments."""
    import os

    from ..demo import run_demo
    from ..errors import value_error
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise value_error("--out", f"{args.out!r} is a file", "pass a folder for the plots")
    if os.path.isdir(args.out) and os.listdir(args.out) and not args.force:
        raise value_error("--out", f"{args.out!r} already holds files", "pass --force to overwrite them, or another --out")
    run_demo(args.out, seed=args.seed)
    return 0
