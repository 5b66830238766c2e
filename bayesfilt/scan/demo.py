"""The parallel part of ``make demo``: the parallel filter reproduces the sequential one, faster."""

from __future__ import annotations

import time

import numpy as np


def parallel_vs_sequential(model, y, filt, smooth, T_long: int = 5000, seed: int = 1, verbose: bool = True) -> dict:
    """Compare parallel_filter / parallel_smoother with the sequential results on the demo track,
    and time both filters on a longer track of the same model.

    Args:
        model: the demo model. y: the demo observations (with gaps). filt, smooth: the
            sequential filter and smoother results on ``y``.
        T_long: length of the timing track. seed: its seed. verbose: print the figures.

    Returns:
        dict with ``max_diff_filter``, ``max_diff_smoother``, ``max_diff_loglik``, the times and ``speedup``.

    Example:
        >>> out = parallel_vs_sequential(model, y, filt, smooth, verbose=False)  # doctest: +SKIP
    """
    from .. import kalman_filter, parallel_filter, parallel_smoother
    par = parallel_filter(model, y)
    psm = parallel_smoother(model, y)
    d_f = float(max(np.abs(par.means - filt.means).max(), np.abs(par.covs - filt.covs).max()))
    d_s = float(max(np.abs(psm.means - smooth.means).max(), np.abs(psm.covs - smooth.covs).max()))
    d_ll = float(abs(par.loglik - filt.loglik))
    _, y_long = model.simulate(T_long, seed=seed)
    t0 = time.perf_counter()
    seq = kalman_filter(model, y_long)
    t_seq = time.perf_counter() - t0
    t0 = time.perf_counter()
    fast = parallel_filter(model, y_long)
    t_par = time.perf_counter() - t0
    d_long = float(np.abs(fast.means - seq.means).max())
    out = {"max_diff_filter": d_f, "max_diff_smoother": d_s, "max_diff_loglik": d_ll, "T_long": T_long,
           "sequential_s": t_seq, "parallel_s": t_par, "speedup": t_seq / t_par, "max_diff_long": d_long}
    if verbose:
        print("  parallel-in-time filter (bayesfilt.parallel_filter, associative scan) on the same track:")
        print(f"    max |parallel - sequential|  filter {d_f:.1e}, smoother {d_s:.1e}, log-likelihood {d_ll:.1e}")
        print(f"    T={T_long}: sequential {t_seq * 1e3:.0f} ms, parallel {t_par * 1e3:.1f} ms "
              f"({out['speedup']:.0f}x faster, max difference {d_long:.1e})")
    return out
