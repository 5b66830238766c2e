"""``bayesfilt check``: every available backend against the sequential reference, with its promised tolerance."""

from __future__ import annotations


def register(sub) -> None:
    """Add the ``check`` subcommand."""
    p = sub.add_parser("check", help="check every available backend against the sequential references")
    p.add_argument("--T", type=int, default=200, help="steps of the random problems (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("--no-kla", action="store_true", help="skip the KLA scan backends")
    p.set_defaults(func=run)


def run(args) -> int:
    """Print the table; exit code 1 if any backend misses its promised tolerance."""
    from ..errors import value_error
    from ..scan.check import check_parallel, format_table, kla_rows
    if args.T < 2:
        raise value_error("--T", f"is {args.T}", "pass at least 2 time steps")
    rows = check_parallel(T=args.T, seed=args.seed)
    if not args.no_kla:
        rows += kla_rows()
    print(format_table(rows))
    failed = [r for r in rows if r.passed is False]
    print(f"\n{len(rows)} checks, {len(failed)} above their promised tolerance")
    return 1 if failed else 0
