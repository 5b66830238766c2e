"""Verify the parallel-in-time filter and smoother against the sequential references.

Tutorial: docs/tutorials/parallel_vs_sequential.md. Mathematics: docs/math/parallel_scan.md.

1. Accuracy: on a constant-velocity track with missing observations, every schedule
   (sequential fold, tree, chunked) and the three forms of ``bayesfilt.parallel_filter``, and
   ``bayesfilt.parallel_smoother``, are compared with ``kalman_filter`` / ``rts_smoother``;
   each error is printed beside the bound the backend promises in ``bayesfilt.tolerances``
   (the script fails if a covariance-form error exceeds it).
2. Speed: time against T for the sequential filter and the parallel filter on this CPU.

Run:  python examples/parallel_vs_sequential.py [--T 4097] [--out DIR]
Writes DIR/parallel_vs_sequential.png (default DIR: ./parallel_vs_sequential_out).
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

import numpy as np

import bayesfilt
from bayesfilt.tolerances import tolerance


def error(metric: str, fast, ref) -> float:
    """The error of ``fast`` against ``ref`` under a tolerance metric (bayesfilt.tolerances)."""
    fast, ref = np.asarray(fast, float), np.asarray(ref, float)
    diff = np.abs(fast - ref)
    if metric == "max_rel":
        return float((diff / np.maximum(np.abs(ref), 1.0)).max())     # max |Δ| / max(|ref|, 1)
    if metric == "scale_rel":
        return float(diff.max() / np.abs(ref).max())                   # max |Δ| / max |ref|
    if metric == "max_abs":
        return float(diff.max())
    raise ValueError(metric)


def worst(metric: str, fast, ref, fields) -> float:
    """The largest error over the result fields compared."""
    return max(error(metric, getattr(fast, f), getattr(ref, f)) for f in fields)


def best_time(fn, repeats: int = 2) -> float:
    """Best wall-clock time of ``fn()`` over ``repeats`` runs, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv=None) -> list:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--T", type=int, default=4097, help="time steps of the accuracy check (odd on purpose)")
    parser.add_argument("--out", type=Path, default=Path("parallel_vs_sequential_out"))
    args = parser.parse_args(argv)

    model = bayesfilt.models.constant_velocity(dt=1.0, q=0.05, r=4.0)       # n = 4, m = 2
    x, y = model.simulate(args.T, seed=0)
    y[1000:1050] = np.nan                                                    # a gap
    y[2000:2100, 1] = np.nan                                                 # one component missing

    # ------------------------------------------------------------ accuracy
    ref = bayesfilt.kalman_filter(model, y)
    ref_smooth = bayesfilt.rts_smoother(model, ref)
    filter_fields = ("means", "covs", "predicted_means", "predicted_covs", "loglik_terms")
    smoother_fields = ("means", "covs", "cross_covs")
    rows = []                                                               # (label, error, bound)
    refused = []                                                            # labels the step check refused
    for form, component in (("covariance", "filter"), ("information", "filter-information"),
                            ("sqrt", "filter-sqrt")):                     # sqrt: square-root elements
        tol = tolerance(component, "numpy", "float64")
        for schedule in ("sequential", "tree", "chunked"):
            label = f"filter {form} {schedule}"
            try:                                    # the step check refuses a result beyond the promise
                res = bayesfilt.parallel_filter(model, y, form=form, schedule=schedule, method="elements")
            except bayesfilt.BayesfiltValueError:
                refused.append(label)
                res = bayesfilt.parallel_filter(model, y, form=form, schedule=schedule, method="elements",
                                                verify=False)
            rows.append((label, worst(tol.metric, res, ref, filter_fields), tol))
    tol = tolerance("smoother", "numpy", "float64")
    for schedule in ("sequential", "tree"):
        res = bayesfilt.parallel_smoother(model, y, schedule=schedule, method="elements")
        rows.append((f"smoother covariance {schedule}", worst(tol.metric, res, ref_smooth, smoother_fields), tol))
    if importlib.util.find_spec("torch") is not None:
        import torch

        tol = tolerance("filter", "torch", "float64")
        res = bayesfilt.parallel_filter(model, torch.as_tensor(y), schedule="tree", method="elements")
        res = type(ref)(**{f: (v.numpy() if hasattr(v, "numpy") else v) for f, v in vars(res).items()})
        rows.append(("filter covariance tree (torch)", worst(tol.metric, res, ref, filter_fields), tol))

    print(f"constant-velocity model, T = {args.T}, float64, with missing data; "
          f"sequential kalman_filter / rts_smoother as the reference")
    print(f"{'variant':<34} {'error':>10} {'promised':>10} {'metric':>10}")
    for label, err, tol in rows:
        status = "ok" if err <= tol.bound else "EXCEEDS"
        print(f"{label:<34} {err:10.1e} {tol.bound:10.0e} {tol.metric:>10}  {status}")
    print(f"log-likelihood: sequential {float(ref.loglik):.6f}, parallel (tree) "
          f"{float(bayesfilt.parallel_filter(model, y, schedule='tree', method='elements').loglik):.6f}")
    failed = [label for label, err, tol in rows if not err <= tol.bound]
    if failed:
        print(f"above the promised tolerance: {failed}")
    if refused:
        print(f"refused by the step check (errors above: the unchecked results, verify=False): {refused}")
    # The covariance form is the specification path: it must hold its promise here. (At the
    # time of writing the information-form scan does not, on this track with a 100-step gap in
    # one component: see the tutorial.) Whatever misses its promise must have been refused.
    spec = [label for label in failed if "information" not in label]
    assert not spec, f"errors above the promised tolerance: {spec}"
    silent = [label for label in failed if label not in refused and label.startswith("filter")]
    assert not silent, f"results above the promised tolerance that the step check let through: {silent}"

    # ------------------------------------------------------------ speed
    lengths = [256, 1024, 4096, 16384]
    timings = {"kalman_filter (sequential)": [], "parallel_filter (auto)": [],
               "parallel_filter (elements, tree)": []}
    for T in lengths:
        _, yT = model.simulate(T, seed=1)
        timings["kalman_filter (sequential)"].append(best_time(lambda: bayesfilt.kalman_filter(model, yT)))
        timings["parallel_filter (auto)"].append(best_time(lambda: bayesfilt.parallel_filter(model, yT)))
        timings["parallel_filter (elements, tree)"].append(
            best_time(lambda: bayesfilt.parallel_filter(model, yT, schedule="tree", method="elements")))
    print("\ntime on this CPU (best of 2), seconds:")
    print(f"{'T':>7} " + " ".join(f"{name:>34}" for name in timings))
    for i, T in enumerate(lengths):
        print(f"{T:>7} " + " ".join(f"{timings[name][i]:>34.4f}" for name in timings))
    seq, par = timings["kalman_filter (sequential)"][-1], timings["parallel_filter (auto)"][-1]
    print(f"at T = {lengths[-1]}: parallel_filter (auto) is {seq / par:.1f}x the speed of kalman_filter")

    # ------------------------------------------------------------ figure
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    args.out.mkdir(parents=True, exist_ok=True)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4))
    labels = [label for label, _, _ in rows]
    ax1.barh(range(len(rows)), [max(err, 1e-18) for _, err, _ in rows],
             color=["tab:blue" if err <= tol.bound else "tab:orange" for _, err, tol in rows])
    ax1.scatter([tol.bound for _, _, tol in rows], range(len(rows)), marker="|", s=300, color="tab:red",
                label="promised bound", zorder=3)
    ax1.set_yticks(range(len(rows)), labels, fontsize=8)
    ax1.invert_yaxis()
    ax1.set_xscale("log")
    ax1.set_xlabel("error against the sequential reference (max_rel)")
    ax1.legend(fontsize=8, loc="lower right")
    ax1.set_title(f"accuracy, float64, T = {args.T}")
    for name, ts in timings.items():
        ax2.loglog(lengths, ts, "o-", label=name)
    ax2.set_xlabel("T (time steps)")
    ax2.set_ylabel("seconds")
    ax2.set_title("time on this CPU")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    path = args.out / "parallel_vs_sequential.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    print(f"wrote {path}")
    return rows


if __name__ == "__main__":
    main()
