"""``bayesfilt check``: every available backend against the sequential reference, with its promised tolerance.

Each row is one (component, backend, variant, dtype) with its measured error under the
metric of its promised tolerance (:mod:`bayesfilt.tolerances`), on random models (missing
data, biases, time-varying parameters, batches) and, for float32, the constant-velocity
model. It assembles the parallel filters (scan/) and the KLA scans (nn/), so it lives at the
consumer level; torch backends that cannot run because torch is missing get a "skipped" row.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..tolerances import TOLERANCES


class Row(NamedTuple):
    """One line of the check table.

    Example:
        >>> Row("filter", "numpy", "covariance/tree", "float64", "max_rel", 1e-14, 1e-9, True).passed
        True
    """

    component: str
    backend: str
    variant: str
    dtype: str
    metric: str
    error: float
    tolerance: float | None
    passed: bool | None


def _np(x):
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def _err(metric, res, ref, names):
    worst = 0.0
    for k in names:
        a, b = np.asarray(_np(getattr(res, k)), float), np.asarray(getattr(ref, k), float)
        if a.size == 0:
            continue
        if metric == "scale_rel":
            e = float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))
        else:
            e = float((np.abs(a - b) / np.maximum(np.abs(b), 1.0)).max())
        worst = max(worst, e if np.isfinite(e) else np.inf)
    return worst


def _row(component, backend, variant, dtype, res, ref, names):
    tol = TOLERANCES.get((component, backend, dtype))
    metric = tol.metric if tol else "max_rel"
    e = _err(metric, res, ref, names)
    return Row(component, backend, variant, dtype, metric, e, tol.bound if tol else None,
               (e <= tol.bound) if tol else None)


FILTER_FIELDS = ("means", "covs", "predicted_means", "predicted_covs", "loglik_terms", "loglik")
SMOOTHER_FIELDS = ("means", "covs", "cross_covs", "gains")


def check_parallel(T: int = 200, seed: int = 0, cuda: bool | None = None) -> list[Row]:
    """Run every available backend of parallel_filter / parallel_smoother against the references.

    Args:
        T: steps of the random problems.
        seed: random seed.
        cuda: also check the CUDA backends (default: when a CUDA device is available).

    Returns:
        A list of :class:`Row`.

    Example:
        >>> rows = check_parallel(T=20)                          # doctest: +SKIP
    """
    import bayesfilt
    from ..models import constant_velocity
    rng = np.random.default_rng(seed)
    rows = []
    n, m = 3, 2
    kw = dict(m0=rng.standard_normal(n), P0=np.eye(n),
              F=np.stack([0.9 * np.linalg.qr(rng.standard_normal((n, n)))[0] for _ in range(T)]),
              Q=np.stack([0.3 * np.eye(n) + 0.05 * np.diag(rng.random(n)) for _ in range(T)]),
              H=rng.standard_normal((m, n)), R=0.5 * np.eye(m), b=0.1 * rng.standard_normal(n),
              d=rng.standard_normal(m), time_varying=("F", "Q"))
    model = bayesfilt.LinearGaussianSSM(**kw)
    _, y = model.simulate(T, seed=seed, batch_shape=(2,))
    y[..., ::5, 0] = np.nan
    y[..., T // 3, :] = np.nan
    ref = bayesfilt.kalman_filter(model, y)
    iref = bayesfilt.information_filter(model, y)
    sref = bayesfilt.rts_smoother(model, ref)
    for sched in ("sequential", "tree", "chunked"):
        rows.append(_row("filter", "numpy", f"covariance/{sched}", "float64",
                         bayesfilt.parallel_filter(model, y, schedule=sched), ref, FILTER_FIELDS))
        rows.append(_row("filter-information", "numpy", f"information/{sched}", "float64",
                         bayesfilt.parallel_filter(model, y, form="information", schedule=sched), iref,
                         FILTER_FIELDS + ("info_vectors", "precisions")))
        rows.append(_row("filter-sqrt", "numpy", f"sqrt/{sched}", "float64",
                         bayesfilt.parallel_filter(model, y, form="sqrt", schedule=sched), ref, FILTER_FIELDS))
        rows.append(_row("smoother", "numpy", f"rts/{sched}", "float64",
                         bayesfilt.parallel_smoother(model, y, schedule=sched), sref, SMOOTHER_FIELDS))
        rows.append(_row("smoother", "numpy", f"rts-on-sqrt/{sched}", "float64",
                         bayesfilt.parallel_smoother(model, y, form="sqrt", schedule=sched), sref, SMOOTHER_FIELDS))
        rows.append(_row("smoother-information", "numpy", f"two-filter/{sched}", "float64",
                         bayesfilt.parallel_smoother(model, y, form="information", schedule=sched), sref,
                         SMOOTHER_FIELDS))
    y_full = model.simulate(T, seed=seed + 1, batch_shape=(2,))[1]
    rows.append(_row("filter", "numpy", "riccati", "float64", bayesfilt.parallel_filter(model, y_full, method="riccati"),
                     bayesfilt.kalman_filter(model, y_full), FILTER_FIELDS))
    try:
        import torch
    except ImportError:                                         # the torch backends are an optional extra
        rows.append(skipped_row("filter", "torch"))
        return rows
    cv = constant_velocity(q=0.05, r=4.0)
    y_cv = cv.simulate(max(T, 4096), seed=seed)[1].astype(np.float32)
    ref_cv = bayesfilt.parallel_filter(cv, y_cv.astype(np.float64))
    devices = ["cpu"]
    if cuda or (cuda is None and torch.cuda.is_available()):
        devices.append("cuda")
    for dev in devices:
        yt = torch.tensor(y, device=dev)
        rows.append(_row("filter", "torch", f"covariance/tree/{dev}", "float64",
                         bayesfilt.parallel_filter(model, yt, backend="torch"), ref, FILTER_FIELDS))
        rows.append(_row("filter-information", "torch", f"information/tree/{dev}", "float64",
                         bayesfilt.parallel_filter(model, yt, backend="torch", form="information"), iref, FILTER_FIELDS))
        rows.append(_row("filter-sqrt", "torch", f"sqrt/tree/{dev}", "float64",
                         bayesfilt.parallel_filter(model, yt, backend="torch", form="sqrt"), ref, FILTER_FIELDS))
        rows.append(_row("smoother", "torch", f"rts/tree/{dev}", "float64",
                         bayesfilt.parallel_smoother(model, yt, backend="torch"), sref, SMOOTHER_FIELDS))
        rows.append(_row("filter", "torch", f"covariance/tree/{dev} (CV, T={len(y_cv)})", "float32",
                         bayesfilt.parallel_filter(cv, torch.tensor(y_cv, device=dev), backend="torch"), ref_cv,
                         ("means", "covs", "loglik")))
        if dev == "cuda":
            rows.append(_row("filter", "triton", "chunked kernel", "float64",
                             bayesfilt.parallel_filter(model, yt, backend="triton"), ref, FILTER_FIELDS))
            rows.append(_row("filter", "triton", f"chunked kernel (CV, T={len(y_cv)})", "float32",
                             bayesfilt.parallel_filter(cv, torch.tensor(y_cv, device=dev), backend="triton"), ref_cv,
                             ("means", "covs", "loglik")))
    return rows


SKIPPED = "skipped: torch not installed"


def skipped_row(component: str, backend: str) -> Row:
    """The row saying that a component's torch backends were not checked (torch is missing)."""
    return Row(component, backend, SKIPPED, "-", "-", float("nan"), None, None)


def kla_rows() -> list[Row]:
    """Rows of the KLA diagonal scan backends (``bayesfilt.nn.functional.check_backends``).

    Without torch: one row saying the KLA backends were skipped (only a missing torch is
    caught; any other error of the check propagates).
    """
    try:
        import torch  # noqa: F401
    except ImportError:
        return [skipped_row("kla_scan", "torch")]
    from ..nn.functional import LOOP_MIN_LANES, check_backends
    out = []
    # the default shape (few lanes) runs the torch backend's parallel tree; LOOP_MIN_LANES lanes on the CPU
    # (B = 2, S = 16, L = 16) run its time loop, a second code path with the same promised tolerance
    loop_shape = (2, 16, max(1, LOOP_MIN_LANES // 32), 16)
    for rows, prefix in ((check_backends(), ""), (check_backends(["torch"], shape=loop_shape), "cpu loop: ")):
        for r in rows:
            tol = TOLERANCES.get(("kla_scan", r.backend, "float32"))
            variant = r.output if r.passed is not False or r.output != "-" else f"raised: {r.note}"   # says why
            out.append(Row("kla_scan", r.backend, prefix + variant, "float32", tol.metric if tol else "rel_rms",
                           float(r.error), r.tolerance, r.passed))
    return out


def format_table(rows: list[Row]) -> str:
    """The rows as a fixed-width text table."""
    head = f"{'component':<21}{'backend':<11}{'variant':<36}{'dtype':<9}{'metric':<10}{'max error':>11}{'promised':>10}  ok"
    lines = [head, "-" * len(head)]
    for r in rows:
        tol = f"{r.tolerance:.0e}" if r.tolerance is not None else "-"
        ok = {True: "yes", False: "NO", None: "-"}[r.passed]
        err = f"{r.error:>11.2e}" if r.variant != SKIPPED else f"{'-':>11}"
        lines.append(f"{r.component:<21}{r.backend:<11}{r.variant[:35]:<36}{r.dtype:<9}{r.metric:<10}"
                     f"{err}{tol:>10}  {ok}")
    return "\n".join(lines)


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
    if args.T < 2:
        raise value_error("--T", f"is {args.T}", "pass at least 2 time steps")
    if args.seed < 0:
        raise value_error("--seed", f"is {args.seed}", "pass a seed >= 0")
    rows = check_parallel(T=args.T, seed=args.seed)
    if not args.no_kla:
        rows += kla_rows()
    print(format_table(rows))
    failed = [r for r in rows if r.passed is False]
    skipped = [r for r in rows if r.variant == SKIPPED]
    print(f"\n{len(rows) - len(skipped)} checks, {len(failed)} above their promised tolerance")
    for r in skipped:
        name = "KLA" if r.component == "kla_scan" else "torch parallel-filter"
        print(f"{name} backends skipped: torch not installed (pip install 'bayesfilt[torch]')")
    return 1 if failed else 0
