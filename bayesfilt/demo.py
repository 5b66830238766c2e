"""The main demo: filter and smooth a simulated 2-D constant-velocity track.

Prints the RMSE of filtered and smoothed positions against the truth and writes a
plot (truth, observations, estimates, 95% ellipses) to ``out_dir``.
"""

from __future__ import annotations

import os
import time

import numpy as np

from .filters import kalman_filter, rts_smoother
from .models import constant_velocity


def run_demo(out_dir: str = "bayesfilt-demo", T: int = 200, seed: int = 0, verbose: bool = True,
             ais: bool = True) -> dict:
    """Run the demo; returns the figures it printed (RMSEs) and the paths it wrote.

    With ``ais`` (the default) it then runs the AIS part on the shipped vessel reports
    (:func:`bayesfilt.demo_ais.run_ais_demo`), whose figures are under ``out["ais"]``.
    """
    model = constant_velocity(dt=1.0, q=0.05, r=4.0, m0=np.zeros(4), P0=np.diag([25.0, 25.0, 1.0, 1.0]))
    x, y = model.simulate(T, seed=seed)
    y[60:75] = np.nan                                           # a gap: pure prediction
    y[120:130, 1] = np.nan                                      # one coordinate missing
    filt = kalman_filter(model, y)
    smooth = rts_smoother(model, filt)
    seen = ~np.isnan(y).any(-1)                                 # steps with both coordinates observed

    def rmse(est, steps):
        return float(np.sqrt(np.mean(np.sum((est[steps, :2] - x[steps, :2]) ** 2, -1))))

    rmse_obs = rmse(y, seen)
    rmse_f, rmse_s = rmse(filt.means, seen), rmse(smooth.means, seen)
    gap_f, gap_s = rmse(filt.means, ~seen), rmse(smooth.means, ~seen)
    os.makedirs(out_dir, exist_ok=True)
    from .plot import track_2d
    fig = track_2d(observations=y, truth=x[:, :2], estimates=filt.means[:, :2], covs=filt.covs[:, :2, :2],
                   smoothed=smooth.means[:, :2], smoothed_covs=smooth.covs[:, :2, :2], every=5,
                   title="constant-velocity track: filtered and smoothed, 95% ellipses")
    path = os.path.join(out_dir, "track.png")
    fig.savefig(path, dpi=120)
    w = slice(50, 90)                                           # close-up of the 15-step gap
    fig = track_2d(observations=y[w], truth=x[w, :2], estimates=filt.means[w, :2], covs=filt.covs[w, :2, :2],
                   smoothed=smooth.means[w, :2], smoothed_covs=smooth.covs[w, :2, :2], every=1,
                   title="close-up of steps 51-90: the gap (61-75) widens the filter's ellipses")
    gap_path = os.path.join(out_dir, "track_gap.png")
    fig.savefig(gap_path, dpi=120)
    out = {"T": T, "loglik": float(filt.loglik), "rmse_observations": rmse_obs,
           "rmse_filtered": rmse_f, "rmse_smoothed": rmse_s, "rmse_filtered_gaps": gap_f,
           "rmse_smoothed_gaps": gap_s, "plots": [path, gap_path]}
    if verbose:
        print(f"simulated constant-velocity track, T={T}, seed={seed} (steps 60-74 missing, 120-129 half missing)")
        print(f"  position RMSE [m]     observed steps ({int(seen.sum())})   gaps ({int((~seen).sum())})")
        print(f"    observations        {rmse_obs:7.3f}")
        print(f"    filtered            {rmse_f:7.3f}              {gap_f:7.3f}")
        print(f"    smoothed            {rmse_s:7.3f}              {gap_s:7.3f}")
        print(f"  log-likelihood {out['loglik']:.3f}")
        print(f"  wrote {path} and {gap_path}")
    out["parallel"] = parallel_vs_sequential(model, y, filt, smooth, verbose=verbose)
    if ais:
        from .demo_ais import run_ais_demo
        if verbose:
            print()
        out["ais"] = run_ais_demo(out_dir, verbose=verbose)
        out["plots"] = out["plots"] + out["ais"]["plots"]
    return out


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
    from .scan import parallel_filter, parallel_smoother
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
