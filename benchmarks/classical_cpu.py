"""Classical filters on the CPU: bayesfilt against filterpy, pykalman, statsmodels and simdkalman.

Workloads (TARGETS.md §3): the 2-D constant-velocity model (n=4, m=2), float64,
(a) one series of T=20000 steps, (b) 2000 series x 200 steps. Parity is checked first
(means, covariances, log-likelihood where a peer computes one); only then is anything
timed. Each timing is the best of k repeats (time.perf_counter); ours and the main peers
run round-robin within each workload so that load changes hit all alike. Writes JSON with the
machine, versions, git commit, shapes, times and ratios.

Usage:
    python benchmarks/classical_cpu.py            # full run -> benchmarks/results/classical_cpu.json
    python benchmarks/classical_cpu.py --quick    # smoke run (small shapes) -> classical_cpu_quick.json

Prior mapping (DESIGN.md): filterpy predicts before its first update, so it is given
x0 = 0, P0' = 100 I and every other library the equivalent prior of the first observed
state, m0 = F x0 = 0, P0 = F P0' F^T + Q.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

import bayesfilt

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from functools import partial  # noqa: E402

from _common import best_of, check as _check, cv_model_filterpy_prior as make_model, filterpy_filter, git_state  # noqa: E402

check = partial(_check, tol=1e-8)
LOG_2PI = float(np.log(2 * np.pi))


def race(fns: dict, repeats: int, budget_s: float = 60.0) -> dict:
    """Best wall time of each callable, run round-robin (ours and the peers interleaved, so a
    change of machine load during the run hits all of them alike)."""
    best = {name: float("inf") for name in fns}
    t_start = time.perf_counter()
    for k in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
        if k >= 1 and time.perf_counter() - t_start > budget_s:
            break
    return best


# ----------------------------------------------------------------------------- peers
def filterpy_smoother(kf, means, covs):
    return kf.rts_smoother(means, covs)[:2]


def pykalman_filter(model, y):
    from pykalman import KalmanFilter
    kf = KalmanFilter(transition_matrices=model.F, observation_matrices=model.H, transition_covariance=model.Q,
                      observation_covariance=model.R, initial_state_mean=model.m0, initial_state_covariance=model.P0)
    return kf, kf.filter(y)


def statsmodels_model(model, y):
    from statsmodels.tsa.statespace.mlemodel import MLEModel
    mod = MLEModel(y, k_states=4)
    mod["design"], mod["obs_cov"] = model.H, model.R
    mod["transition"], mod["selection"], mod["state_cov"] = model.F, np.eye(4), model.Q
    mod.initialize_known(model.m0, model.P0)
    return mod


def simdkalman_filter(kf, model, y):
    return kf.compute(y, 0, initial_value=model.m0, initial_covariance=model.P0, filtered=True, smoothed=False,
                      log_likelihood=True)


def versions():
    out = {"python": sys.version.split()[0], "numpy": np.__version__, "bayesfilt": bayesfilt.__version__}
    from importlib import metadata
    for mod in ("scipy", "filterpy", "pykalman", "statsmodels", "simdkalman"):
        try:
            out[mod] = metadata.version(mod)
        except metadata.PackageNotFoundError:
            out[mod] = None
    return out


# ----------------------------------------------------------------------------- workloads
def single_series(T, repeats, has_info):
    model, P0_fp = make_model()
    _, y = model.simulate(T, seed=0)
    res = bayesfilt.kalman_filter(model, y)
    sm = bayesfilt.rts_smoother(model, res)
    parity = {}
    kf, fpm, fpc = filterpy_filter(model, P0_fp, y)
    parity["filterpy_means"] = check("filterpy means", res.means, fpm)
    parity["filterpy_covs"] = check("filterpy covs", res.covs, fpc)
    fsm, fsc = filterpy_smoother(kf, fpm, fpc)
    parity["filterpy_smoothed_means"] = check("filterpy smoothed means", sm.means, fsm)
    parity["filterpy_smoothed_covs"] = check("filterpy smoothed covs", sm.covs, fsc)
    T_pk = min(T, 2000)                                         # pykalman parity on a prefix (it is slow)
    pkf, (pkm, pkc) = pykalman_filter(model, y[:T_pk])
    parity["pykalman_means"] = check("pykalman means", res.means[:T_pk], pkm)
    parity["pykalman_covs"] = check("pykalman covs", res.covs[:T_pk], pkc)
    smod = statsmodels_model(model, y)
    sres = smod.ssm.filter()
    parity["statsmodels_means"] = check("statsmodels means", res.means, sres.filtered_state.T)
    parity["statsmodels_covs"] = check("statsmodels covs", res.covs, np.moveaxis(sres.filtered_state_cov, -1, 0))
    parity["statsmodels_loglik"] = check("statsmodels loglik", res.loglik, sres.llf_obs.sum(), tol=1e-9)
    if has_info:
        ires = bayesfilt.information_filter(model, y)
        parity["information_means"] = check("information_filter means", ires.means, res.means)
        parity["information_loglik"] = check("information_filter loglik", ires.loglik, res.loglik, tol=1e-9)

    times = race({
        "bayesfilt.kalman_filter": lambda: bayesfilt.kalman_filter(model, y),
        "filterpy.batch_filter": lambda: filterpy_filter(model, P0_fp, y),
        "statsmodels.ssm.filter": lambda: smod.ssm.filter(),
        "bayesfilt.rts_smoother": lambda: bayesfilt.rts_smoother(model, res),
        "filterpy.rts_smoother": lambda: filterpy_smoother(kf, fpm, fpc),
    }, repeats)
    if has_info:
        times["bayesfilt.information_filter"] = best_of(lambda: bayesfilt.information_filter(model, y), repeats)
    times["pykalman.filter"] = best_of(lambda: pykalman_filter(model, y), min(repeats, 2))
    ours = times["bayesfilt.kalman_filter"]
    ratios = {
        "filterpy_filter / bayesfilt_filter": times["filterpy.batch_filter"] / ours,
        "pykalman_filter / bayesfilt_filter": times["pykalman.filter"] / ours,
        "statsmodels_filter / bayesfilt_filter": times["statsmodels.ssm.filter"] / ours,
        "filterpy_smoother / bayesfilt_smoother": times["filterpy.rts_smoother"] / times["bayesfilt.rts_smoother"],
    }
    if has_info:
        ratios["filterpy_filter / bayesfilt_information_filter"] = (times["filterpy.batch_filter"]
                                                                    / times["bayesfilt.information_filter"])
    return {"shape": {"series": 1, "T": T, "n": 4, "m": 2, "dtype": "float64"},
            "parity_max_rel_err": parity, "times_s": times, "us_per_step": {k: v / T * 1e6 for k, v in times.items()},
            "ratios": ratios}


def many_series(S, T, repeats, has_info, S_loop):
    import simdkalman
    model, P0_fp = make_model()
    _, y = model.simulate(T, seed=1, batch_shape=(S,))
    # the same model with a batch axis on R: forces the general path (per-series covariances)
    model_b = model.replace(R=np.broadcast_to(model.R, (S, 2, 2)).copy())
    res = bayesfilt.kalman_filter(model, y)
    res_b = bayesfilt.kalman_filter(model_b, y)
    skf = simdkalman.KalmanFilter(model.F, model.Q, model.H, model.R)
    sres = simdkalman_filter(skf, model, y)
    parity = {
        "simdkalman_means": check("simdkalman means", res.means, sres.filtered.states.mean),
        "simdkalman_covs": check("simdkalman covs", res.covs, sres.filtered.states.cov),
        # simdkalman omits the 2π constant of the Gaussian density (TARGETS.md §4)
        "simdkalman_loglik_plus_2pi": check("simdkalman loglik", res.loglik,
                                            sres.log_likelihood - 0.5 * T * 2 * LOG_2PI, tol=1e-9),
        "general_path_means": check("general path means", res_b.means, res.means, tol=1e-10),
        "general_path_covs": check("general path covs", res_b.covs, res.covs, tol=1e-10),
    }
    _, fpm, fpc = filterpy_filter(model, P0_fp, y[0])
    parity["filterpy_series0_means"] = check("filterpy means", res.means[0], fpm)
    if has_info:
        ires = bayesfilt.information_filter(model, y)
        parity["information_means"] = check("information_filter means", ires.means, res.means)

    def filterpy_loop():
        for i in range(S_loop):
            filterpy_filter(model, P0_fp, y[i])

    times = race({
        "bayesfilt.kalman_filter (batched)": lambda: bayesfilt.kalman_filter(model, y),
        "bayesfilt.kalman_filter (batched, per-series covariance parameters)": lambda: bayesfilt.kalman_filter(model_b, y),
        "simdkalman.compute (filtered)": lambda: simdkalman_filter(skf, model, y),
    }, repeats)
    if has_info:
        times["bayesfilt.information_filter (batched)"] = best_of(lambda: bayesfilt.information_filter(model, y),
                                                                  min(repeats, 2))
    loop = best_of(filterpy_loop, min(repeats, 2))
    times[f"filterpy.batch_filter loop over {S_loop} series"] = loop
    times[f"filterpy.batch_filter loop, scaled to {S} series"] = loop * S / S_loop
    ours = times["bayesfilt.kalman_filter (batched)"]
    simd = times["simdkalman.compute (filtered)"]
    ratios = {
        "simdkalman / bayesfilt": simd / ours,
        "simdkalman / bayesfilt_per_series_covariance_parameters": simd / times[
            "bayesfilt.kalman_filter (batched, per-series covariance parameters)"],
        "filterpy_scaled / bayesfilt": loop * S / S_loop / ours,
    }
    if has_info:
        ratios["simdkalman / bayesfilt_information"] = simd / times["bayesfilt.information_filter (batched)"]
    return {"shape": {"series": S, "T": T, "n": 4, "m": 2, "dtype": "float64", "filterpy_loop_series": S_loop},
            "parity_max_rel_err": parity, "times_s": times, "ratios": ratios}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small shapes, few repeats (a smoke run)")
    ap.add_argument("--repeats", type=int, default=None, help="best-of-k repeats (default 5, quick 2)")
    ap.add_argument("--out", type=Path, default=None, help="output JSON path")
    ap.add_argument("--notes", default="", help="free text stored in the JSON (e.g. machine load)")
    args = ap.parse_args(argv)
    quick = args.quick
    repeats = args.repeats or (2 if quick else 5)
    T1, S, T2, S_loop = (2000, 200, 50, 20) if quick else (20000, 2000, 200, 200)
    out = args.out or HERE / "results" / ("classical_cpu_quick.json" if quick else "classical_cpu.json")
    has_info = hasattr(bayesfilt, "information_filter")
    load_start = os.getloadavg()
    t_start = time.time()
    a = single_series(T1, repeats, has_info)
    b = many_series(S, T2, repeats, has_info, S_loop)
    sha, dirty = git_state()
    report = {
        "benchmark": "classical_cpu", "quick": quick, "repeats_best_of": repeats,
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "loadavg_start": load_start, "loadavg_end": os.getloadavg()},
        "versions": versions(), "git_commit": sha, "git_dirty_bayesfilt": dirty,
        "model": "constant_velocity(dt=1, q=1, r=1), n=4, m=2, float64; filterpy prior x0=0, P0=100 I",
        "single_series": a, "many_series": b, "wall_s": time.time() - t_start,
        "notes": args.notes,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({"single_series": a["times_s"], "single_ratios": a["ratios"],
                      "many_series": b["times_s"], "many_ratios": b["ratios"]}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
