"""Is the filter consistent? NEES and NIS against their χ² bounds, right and wrong noise levels.

Simulates 50 independent runs of a 2-D constant-velocity track on an irregular time grid,
filters them with the true model and with a process noise 20 times too small, and draws
the run-averaged NEES (needs the truth) and NIS (needs only the data) against their 95%
χ² bounds (Bar-Shalom, Li & Kirubarajan 2001, sec. 5.4).

Run:  python examples/consistency_check.py [OUT_DIR]      (a few seconds)
Tutorial: docs/tutorials/consistency.md.
"""

import os
import sys

import numpy as np

from bayesfilt import kalman_filter
from bayesfilt.consistency import check_average, chi2_bounds, nees, nis
from bayesfilt.models import constant_velocity_irregular
from bayesfilt.plot import nees_plot, nis_plot

N_RUNS, T = 50, 100


def main(out_dir: str = "example-output") -> dict:
    os.makedirs(out_dir, exist_ok=True)
    times = np.cumsum(np.r_[0.0, np.random.default_rng(0).uniform(0.5, 2.0, T - 1)])
    model = constant_velocity_irregular(times, q=0.5, r=4.0, m0=np.zeros(4), P0=np.eye(4))
    x, y = model.simulate(T, seed=2, batch_shape=(N_RUNS,))
    out = {}
    for label, m in (("true noise", model), ("q 20x too small", model.replace(Q=model.Q / 20))):
        f = kalman_filter(m, y)
        e = nees(x, f.means, f.covs)                        # (N_RUNS, T)
        v, k = nis(m, y, f)
        c = check_average(v, k)
        lo, hi = chi2_bounds(4, N_RUNS)
        frac = np.mean((e.mean(0) >= lo) & (e.mean(0) <= hi))
        print(f"{label:>16}: average NIS {c.average:.3f} (95% bounds {c.lower:.3f}-{c.upper:.3f}: "
              f"{'inside' if c.inside else 'OUTSIDE'});  NEES inside its per-step bounds at {100 * frac:.0f}% of steps")
        tag = "ok" if m is model else "wrong"
        nees_plot(e, 4).savefig(os.path.join(out_dir, f"nees_{tag}.png"), dpi=90)
        nis_plot(v, k).savefig(os.path.join(out_dir, f"nis_{tag}.png"), dpi=90)
        out[label] = (c.average, c.inside, frac)
    print(f"figures in {out_dir}/")
    return out


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "example-output")
