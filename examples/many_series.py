"""Filter 2000 series at once, and check that it equals filtering each series alone.

Tutorial: docs/tutorials/many_series.md. Model and shapes: docs/math/notation.md.

Every series follows a 1-D constant-velocity model (state: position, velocity; the position
is observed), and each series has its own observation-noise variance: the model's ``R``
carries a leading batch axis of 2000 that broadcasts against ``y`` of shape (2000, T, 1).
One call to ``bayesfilt.kalman_filter`` filters all of them, vectorised over the batch.
The same numbers come out of a Python loop that filters one series at a time; the loop
runs over the first ``--loop`` series (all of them with ``--loop 2000``), and its time is
extrapolated to the whole batch.

Run:  python examples/many_series.py [--series 2000] [--steps 200] [--loop 200] [--out DIR]
Writes DIR/many_series.png (default DIR: ./many_series_out).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import bayesfilt
from bayesfilt import models


def build_model(num_series: int, seed: int = 0) -> bayesfilt.LinearGaussianSSM:
    """A constant-velocity model whose observation noise differs from series to series."""
    base = models.constant_velocity(dt=1.0, q=0.05, r=1.0, dim=1)          # n = 2, m = 1
    rng = np.random.default_rng(seed)
    r = 10.0 ** rng.uniform(-1.0, 1.0, size=num_series)                     # one variance per series
    R = r[:, None, None] * np.eye(1)                                         # R: (B, m, m)
    return base.replace(R=R, P0=10.0 * np.eye(2))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=2000, help="number of series B")
    parser.add_argument("--steps", type=int, default=200, help="time steps T per series")
    parser.add_argument("--loop", type=int, default=200, help="series filtered one by one for the comparison")
    parser.add_argument("--out", type=Path, default=Path("many_series_out"), help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    B, T, n_loop = args.series, args.steps, min(args.loop, args.series)

    model = build_model(B, args.seed)
    x, y = model.simulate(T, seed=args.seed)                                 # x: (B, T, 2), y: (B, T, 1)
    y[:, T // 3: T // 3 + 10] = np.nan                                       # a gap in every series
    print(f"{B} series x {T} steps, state n={model.n}, observation m={model.m}; "
          f"R has batch shape {model.R.shape[:-2]}")

    start = time.perf_counter()
    batched = bayesfilt.kalman_filter(model, y)                              # one call, all series
    t_batch = time.perf_counter() - start
    print(f"batched: means {batched.means.shape}, covs {batched.covs.shape}, "
          f"loglik {batched.loglik.shape}; {t_batch:.3f} s")

    start = time.perf_counter()
    err_mean = err_cov = err_ll = 0.0
    for i in range(n_loop):                                                  # the same, one series at a time
        single = bayesfilt.kalman_filter(model.replace(R=model.R[i]), y[i])
        err_mean = max(err_mean, float(np.abs(single.means - batched.means[i]).max()))
        err_cov = max(err_cov, float(np.abs(single.covs - batched.covs[i]).max()))
        err_ll = max(err_ll, float(abs(single.loglik - batched.loglik[i])))
    t_loop = (time.perf_counter() - start) / n_loop * B
    print(f"loop over {n_loop} series: max |difference| means {err_mean:.1e}, covs {err_cov:.1e}, "
          f"loglik {err_ll:.1e}")
    print(f"loop time for all {B} series ({'measured' if n_loop == B else 'extrapolated'}): "
          f"{t_loop:.2f} s; batched is {t_loop / t_batch:.0f}x faster")
    assert max(err_mean, err_cov, err_ll) < 1e-9, "batched and per-series results differ"

    rmse = np.sqrt(np.nanmean((batched.means[..., 0] - x[..., 0]) ** 2, axis=-1))   # per series
    print(f"position RMSE: median {np.median(rmse):.3f}, "
          f"for the 10% noisiest series {np.median(rmse[model.R[:, 0, 0] > np.quantile(model.R[:, 0, 0], 0.9)]):.3f}")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    args.out.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    t = np.arange(1, T + 1)
    for ax, i in zip(axes[:2], (int(np.argmin(model.R[:, 0, 0])), int(np.argmax(model.R[:, 0, 0])))):
        err = batched.means[i, :, 0] - x[i, :, 0]                            # filtered - true position
        sd = np.sqrt(batched.covs[i, :, 0, 0])                               # filter's own standard deviation
        ax.fill_between(t, -2 * sd, 2 * sd, color="tab:blue", alpha=0.25, label="±2 sd (filter's belief)")
        ax.plot(t, err, color="tab:blue", lw=1, label="filtered - true position")
        ax.axvspan(T // 3 + 0.5, T // 3 + 10.5, color="tab:orange", alpha=0.15, label="missing y")
        ax.axhline(0.0, color="k", lw=0.5)
        ax.set_title(f"series {i}: R = {model.R[i, 0, 0]:.2f}")
        ax.set_xlabel("t")
    axes[0].legend(fontsize=7, loc="best")
    axes[2].loglog(model.R[:, 0, 0], rmse, ".", ms=2)
    axes[2].set_xlabel("observation variance R of the series")
    axes[2].set_ylabel("position RMSE")
    axes[2].set_title(f"all {B} series, one call ({t_batch:.2f} s)")
    fig.tight_layout()
    path = args.out / "many_series.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    print(f"wrote {path}")
    return {"batched_s": t_batch, "loop_s": t_loop, "max_err": max(err_mean, err_cov, err_ll)}


if __name__ == "__main__":
    main()
