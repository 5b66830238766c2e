"""Parallel-in-time filters on the CPU (TARGETS.md §3), against filterpy, statsmodels and simdkalman.

Constant-velocity 2-D model (n=4, m=2, q=1, r=1), float64, 2 threads. Parity first (means,
covariances, log-likelihood against kalman_filter and the peers), then best-of-k wall times
(time.perf_counter), peers in the same process:

(a) one series, T = 20000: filterpy batch_filter, statsmodels' compiled filter, our
    sequential kalman_filter, parallel_filter (auto = riccati: shared covariances + affine
    mean scan; and the full Särkkä elements with the tree and chunked schedules);
(b) 2000 series x 200 steps: simdkalman against parallel_filter;
(c) time vs T (2^10 .. 2^20): sequential, parallel (riccati) and parallel (elements, tree)
    up to the sizes that fit the budget.

Usage:
    python benchmarks/parallel_cpu.py                 # -> benchmarks/results/parallel_cpu.json
    python benchmarks/parallel_cpu.py --quick         # smoke run -> parallel_cpu_quick.json
    python benchmarks/parallel_cpu.py --plot          # docs/parallel_time_vs_T.png from the JSONs
    python benchmarks/parallel_cpu.py --plot --gpu-json parallel_gpu_s17e_afe3677.json   # the GPU rows of one run

Prior mapping (DESIGN.md): filterpy gets x0 = 0, P0' = 100 I; everyone else m0 = 0,
P0 = F P0' F^T + Q (the prior of the first observed state).
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "2")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

import bayesfilt  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from functools import partial  # noqa: E402

from _common import best_of as _best_of, check as _check, cv_model_filterpy_prior as make_model, filterpy_filter, git_state  # noqa: E402

check = partial(_check, tol=1e-9)
LOG_2PI = float(np.log(2 * np.pi))


best_of = partial(_best_of, budget_s=20.0)


def statsmodels_model(model, y):
    from statsmodels.tsa.statespace.mlemodel import MLEModel
    mod = MLEModel(y, k_states=4)
    mod["design"], mod["obs_cov"] = model.H, model.R
    mod["transition"], mod["selection"], mod["state_cov"] = model.F, np.eye(4), model.Q
    mod.initialize_known(model.m0, model.P0)
    return mod


def versions():
    out = {"python": sys.version.split()[0], "numpy": np.__version__, "bayesfilt": bayesfilt.__version__}
    for mod in ("scipy", "filterpy", "statsmodels", "simdkalman", "torch"):
        try:
            out[mod] = getattr(__import__(mod), "__version__", "unknown")
        except ImportError:
            out[mod] = None
    return out


def single_series(T, repeats):
    model, P0_fp = make_model()
    _, y = model.simulate(T, seed=0)
    ref = bayesfilt.kalman_filter(model, y)
    par = bayesfilt.parallel_filter(model, y)
    tree = bayesfilt.parallel_filter(model, y, method="elements", schedule="tree")
    chunk = bayesfilt.parallel_filter(model, y, method="elements", schedule="chunked")
    _, fpm, fpc = filterpy_filter(model, P0_fp, y)
    smod = statsmodels_model(model, y)
    sres = smod.ssm.filter()
    parity = {}
    for name, r in (("riccati", par), ("elements_tree", tree), ("elements_chunked", chunk)):
        parity[f"{name}_means"] = check(name, r.means, ref.means)
        parity[f"{name}_covs"] = check(name, r.covs, ref.covs)
        parity[f"{name}_loglik"] = check(name, r.loglik, ref.loglik)
    parity["filterpy_means"] = check("filterpy", par.means, fpm)
    parity["statsmodels_means"] = check("statsmodels", par.means, sres.filtered_state.T)
    parity["statsmodels_loglik"] = check("statsmodels loglik", par.loglik, sres.llf_obs.sum())
    times = {
        "statsmodels.ssm.filter": best_of(lambda: smod.ssm.filter(), repeats),
        "bayesfilt.parallel_filter (auto: riccati + chunked affine scan)": best_of(
            lambda: bayesfilt.parallel_filter(model, y), repeats),
        "bayesfilt.parallel_filter (riccati, validate=False)": best_of(
            lambda: bayesfilt.parallel_filter(model, y, validate=False), repeats),
        "bayesfilt.parallel_filter (elements, tree)": best_of(
            lambda: bayesfilt.parallel_filter(model, y, method="elements", schedule="tree"), repeats),
        "bayesfilt.parallel_filter (elements, chunked)": best_of(
            lambda: bayesfilt.parallel_filter(model, y, method="elements", schedule="chunked"), repeats),
        "filterpy.batch_filter": best_of(lambda: filterpy_filter(model, P0_fp, y), 2),
        "bayesfilt.kalman_filter (sequential)": best_of(lambda: bayesfilt.kalman_filter(model, y), 2),
    }
    fastest = min((v, k) for k, v in times.items() if k.startswith("bayesfilt.parallel"))
    ratios = {"fastest bayesfilt path": fastest[1],
              "filterpy / fastest": times["filterpy.batch_filter"] / fastest[0],
              "statsmodels / fastest": times["statsmodels.ssm.filter"] / fastest[0],
              "statsmodels / parallel_filter(auto)": times["statsmodels.ssm.filter"]
              / times["bayesfilt.parallel_filter (auto: riccati + chunked affine scan)"]}
    return {"shape": {"series": 1, "T": T, "n": 4, "m": 2, "dtype": "float64"}, "parity_max_rel_err": parity,
            "times_s": times, "us_per_step": {k: v / T * 1e6 for k, v in times.items()}, "ratios": ratios}


def many_series(S, T, repeats):
    import simdkalman
    model, _ = make_model()
    _, y = model.simulate(T, seed=1, batch_shape=(S,))
    ref = bayesfilt.kalman_filter(model, y)
    par = bayesfilt.parallel_filter(model, y)
    skf = simdkalman.KalmanFilter(model.F, model.Q, model.H, model.R)

    def simd():
        return skf.compute(y, 0, initial_value=model.m0, initial_covariance=model.P0, filtered=True,
                           smoothed=False, log_likelihood=True)
    sres = simd()
    parity = {"riccati_means": check("riccati", par.means, ref.means), "riccati_covs": check("covs", par.covs, ref.covs),
              "riccati_loglik": check("loglik", par.loglik, ref.loglik),
              "simdkalman_means": check("simdkalman", par.means, sres.filtered.states.mean),
              "simdkalman_loglik_plus_2pi": check("simdkalman loglik", par.loglik,
                                                  sres.log_likelihood - T * LOG_2PI)}
    y_missing = y.copy()
    y_missing[:, 50:60, 0] = np.nan
    times = {"simdkalman.compute (filtered)": best_of(simd, repeats),
             "bayesfilt.parallel_filter (auto: riccati)": best_of(lambda: bayesfilt.parallel_filter(model, y), repeats),
             "bayesfilt.parallel_filter (elements, tree)": best_of(
                 lambda: bayesfilt.parallel_filter(model, y, method="elements", schedule="tree"), 2),
             "bayesfilt.parallel_filter (missing data -> elements, chunked)": best_of(
                 lambda: bayesfilt.parallel_filter(model, y_missing), 2),
             "bayesfilt.kalman_filter (sequential, batched)": best_of(lambda: bayesfilt.kalman_filter(model, y), 2)}
    ours = times["bayesfilt.parallel_filter (auto: riccati)"]
    return {"shape": {"series": S, "T": T, "n": 4, "m": 2, "dtype": "float64"}, "parity_max_rel_err": parity,
            "times_s": times, "ratios": {"simdkalman / parallel_filter(auto)": times["simdkalman.compute (filtered)"] / ours}}


def scaling(max_p_seq, max_p_tree, max_p_par):
    model, _ = make_model()
    rows = []
    for p in range(10, max_p_par + 1):
        T = 2 ** p
        _, y = model.simulate(T, seed=p) if p <= 16 else (None, np.random.default_rng(p).standard_normal((T, 2)))
        row = {"T": T, "parallel_riccati_s": best_of(lambda: bayesfilt.parallel_filter(model, y), 3, 10)}
        if p <= max_p_tree:
            row["parallel_elements_tree_s"] = best_of(
                lambda: bayesfilt.parallel_filter(model, y, method="elements", schedule="tree"), 2, 5)
        if p <= max_p_seq:
            row["sequential_s"] = best_of(lambda: bayesfilt.kalman_filter(model, y), 1)
        rows.append(row)
        print(row, flush=True)
    return rows


def plot(out_png, gpu_json="parallel_gpu.json"):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cpu = json.load(open(HERE / "results" / "parallel_cpu.json"))
    fig, ax = plt.subplots(figsize=(7, 6))
    rows = cpu["time_vs_T"]
    cpu_name = f"{cpu['machine'].get('cpu_count', '?')}-core CPU dev machine, float64, best of runs"
    for key, label, style in (("sequential_s", "sequential kalman_filter (NumPy)", "o-"),
                              ("parallel_elements_tree_s", "parallel, Särkkä elements, tree (NumPy)", "s-"),
                              ("parallel_riccati_s", "parallel, shared Riccati + affine scan (NumPy)", "^-")):
        pts = [(r["T"], r[key]) for r in rows if key in r]
        ax.loglog(*zip(*pts), style, label=f"{label}: {cpu_name}")
    gpu_path = HERE / "results" / gpu_json
    if gpu_path.exists():
        gpu = json.load(open(gpu_path))
        gpu_rows = gpu.get("time_vs_T_gpu", [])
        name = gpu["machine"]["gpu"].replace("NVIDIA ", "")          # "H200"
        for key, label, style in (("kernel_ms", "parallel, Triton kernel", "d-"),
                                  ("api_ms", "parallel_filter on CUDA data (Triton + host overhead)", "d--")):
            pts = [(r["T"], r[key][0] / 1e3) for r in gpu_rows if key in r]   # [median, min] in ms
            if pts:
                ax.loglog(*zip(*pts), style, label=f"{label}: {name} GPU, float32, median")
    ax.set_xlabel("T (steps, one series, constant-velocity model n=4, m=2)")
    ax.set_ylabel("filter wall time [s]")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14))   # below the axes
    ax.set_title("bayesfilt: time vs T")
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    print("wrote", out_png)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--plot", action="store_true")
    ap.add_argument("--gpu-json", default="parallel_gpu.json",
                    help="--plot: the GPU rows' file in benchmarks/results/ (its time_vs_T_gpu)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--notes", default="")
    args = ap.parse_args(argv)
    if args.plot:
        plot(HERE.parent / "docs" / "parallel_time_vs_T.png", args.gpu_json)
        return
    quick = args.quick
    sha, dirty = git_state()
    res = {"benchmark": "parallel_cpu", "machine": {"platform": platform.platform(), "processor": platform.processor(),
                                                    "cpu_count": os.cpu_count(),
                                                    "threads": os.environ.get("OMP_NUM_THREADS")},
           "versions": versions(), "commit": sha + ("+dirty" if dirty else ""), "notes": args.notes,
           "model": "constant_velocity(dt=1, q=1, r=1), m0 = 0, P0 = F (100 I) F^T + Q"}
    res["single_series"] = single_series(2000 if quick else 20000, 2 if quick else args.repeats)
    print(json.dumps(res["single_series"]["times_s"], indent=1), res["single_series"]["ratios"], flush=True)
    res["many_series"] = many_series(200 if quick else 2000, 50 if quick else 200, 2 if quick else args.repeats)
    print(json.dumps(res["many_series"]["times_s"], indent=1), res["many_series"]["ratios"], flush=True)
    res["time_vs_T"] = scaling(12, 12, 13) if quick else scaling(16, 16, 20)
    path = HERE / "results" / ("parallel_cpu_quick.json" if quick else "parallel_cpu.json")
    path.write_text(json.dumps(res, indent=1))
    print("wrote", path)


if __name__ == "__main__":
    main()
