"""How the parallel information-form filter's error grows over a run of missing observations.

Constant-velocity model (1-D), one missing run of 10–320 steps, float64, NumPy backend, tree and
chunked schedules, against the sequential ``kalman_filter`` (exact to ~1e-13 there). Records
the max relative error of means and covariances (``verify=False``), whether the step check
(the default) refuses the result, and two conditioning estimates: κ̂ = tr(Λ) tr(P) (its maximum over
time; the form's guard until session 10) and a per-variance version n Σ_i Λ_ii P_ii.
Writes benchmarks/results/info_form_gaps.json (docs/reliability.md, "Open problems").

    python benchmarks/info_form_gaps.py
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np

import bayesfilt

from _common import git_state

GAPS = (10, 20, 40, 80, 160, 320)
NOISE = ((0.1, 1.0), (0.01, 10.0), (1.0, 0.1))            # (q, r)


def _kappas(lam, cov):
    """(tr Λ tr P, n Σ_i Λ_ii P_ii), the maxima over time and batch."""
    raw = np.trace(lam, axis1=-2, axis2=-1) * np.trace(cov, axis1=-2, axis2=-1)
    per = lam.shape[-1] * (np.diagonal(lam, axis1=-2, axis2=-1) * np.diagonal(cov, axis1=-2, axis2=-1)).sum(-1)
    return float(raw.max()), float(per.max())


def _max_rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def main() -> None:
    rows = []
    for q, r in NOISE:
        model = bayesfilt.models.constant_velocity(dim=1, q=q, r=r)
        for gap in GAPS:
            _, y = model.simulate(gap + 60, seed=1)
            y[20:20 + gap] = np.nan
            ref = bayesfilt.kalman_filter(model, y)
            row = {"q": q, "r": r, "gap": gap}
            for schedule in ("tree", "chunked"):
                res = bayesfilt.parallel_filter(model, y, form="information", schedule=schedule, verify=False)
                row[f"err_{schedule}"] = max(_max_rel(res.means, ref.means), _max_rel(res.covs, ref.covs))
                row["kappa"], row["kappa_per_variance"] = _kappas(res.precisions, res.covs)
                try:                                     # the step check (the default, verify=None)
                    bayesfilt.parallel_filter(model, y, form="information", schedule=schedule)
                    row[f"refused_{schedule}"] = False
                except bayesfilt.BayesfiltValueError:
                    row[f"refused_{schedule}"] = True
            rows.append(row)
            print(f"q={q} r={r} gap={gap:3d}: kappa {row['kappa']:.2e} (per variance "
                  f"{row['kappa_per_variance']:.2e})  error tree {row['err_tree']:.1e} "
                  f"(refused: {row['refused_tree']}) chunked {row['err_chunked']:.1e} "
                  f"(refused: {row['refused_chunked']})")
    commit, dirty = git_state()
    out = Path(__file__).resolve().parent / "results" / "info_form_gaps.json"
    out.write_text(json.dumps({"benchmark": "info_form_gaps", "commit": commit, "dirty": dirty,
                               "machine": platform.node(), "python": platform.python_version(),
                               "numpy": np.__version__, "rows": rows}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
