"""Parallel Kalman filter on the GPU (TARGETS.md §2): Triton kernel and torch tree scan, float32.

Constant-velocity 2-D model (n=4, m=2; q=0.05, r=4). Parity first (float32 against the
float64 filter on the same float32-rounded data, float64 kernel against kalman_filter),
then timings with CUDA events (median of repeats, after a warm-up):

- T = 262144, one series; 1024 series x 1024 steps (public API and kernel call);
- chunk-size sweep of the kernel; time vs T = 2^10 .. 2^20;
- time to first result in a fresh process (cold Triton cache, and warm cache);
- dynamax beside it when ``--dynamax`` is given and dynamax imports (not run by default).

Usage (device tool):  python benchmarks/parallel_gpu.py --out $OUT --commit <sha>
Writes parallel_gpu.json into --out (copy it to benchmarks/results/).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

import bayesfilt


def cuda_time(fn, repeats=20):
    import torch
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    return float(np.median(times)), float(np.min(times))


def errors(res, ref):
    out = {}
    for k in ("means", "covs", "loglik"):
        a = np.asarray(getattr(res, k).cpu().numpy() if hasattr(getattr(res, k), "cpu") else getattr(res, k), float)
        b = np.asarray(getattr(ref, k), float)
        out[k] = {"scale_rel": float(np.abs(a - b).max() / np.abs(b).max()),
                  "max_rel": float((np.abs(a - b) / np.maximum(np.abs(b), 1.0)).max()),
                  "finite": bool(np.isfinite(a).all())}
    return out


FIRST = r"""
import time
t0 = time.perf_counter()
import numpy as np, torch, bayesfilt
model = bayesfilt.models.constant_velocity(q=0.05, r=4.0)
y = torch.as_tensor(np.random.default_rng(0).standard_normal((1024, 2)), dtype=torch.float32, device="cuda")
res = bayesfilt.parallel_filter(model, y)
torch.cuda.synchronize()
print("FIRST", time.perf_counter() - t0, float(res.loglik))
"""


def first_result(cache_dir):
    env = dict(os.environ, TRITON_CACHE_DIR=cache_dir)
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", FIRST], env=env, capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        return {"error": p.stderr[-2000:]}
    return {"in_process_s": float(p.stdout.split("FIRST")[-1].split()[0]), "process_wall_s": wall}


def simulate_fast(model, T, batch, seed):
    """Draw y from a time-invariant model quickly (x_1 ~ N(m0, P0); bulk noise, one matvec per step)."""
    rng = np.random.default_rng(seed)
    n, m = model.n, model.m
    Lq = np.linalg.cholesky(model.Q)
    Lr = np.linalg.cholesky(model.R)
    L0 = np.linalg.cholesky(model.P0)
    B = int(np.prod(batch)) if batch else 1
    x = np.empty((T, B, n))
    x[0] = model.m0 + rng.standard_normal((B, n)) @ L0.T
    w = rng.standard_normal((T, B, n)) @ Lq.T
    Ft = model.F.T
    for t in range(1, T):
        x[t] = x[t - 1] @ Ft + w[t]                              # x_t = F x_{t-1} + w_t
    y = x @ model.H.T + rng.standard_normal((T, B, m)) @ Lr.T   # y_t = H x_t + v_t
    return np.moveaxis(y, 0, 1).reshape(tuple(batch) + (T, m))


def dump(res, out):
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "parallel_gpu.json"), "w") as f:
        json.dump(res, f, indent=1)


def main():
    import torch
    from bayesfilt.scan.triton_filter import triton_filter, triton_params
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--commit", default="unknown")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--dynamax", action="store_true")
    args = ap.parse_args()
    res = {"machine": {"gpu": torch.cuda.get_device_name(0), "python": platform.python_version(),
                       "torch": torch.__version__, "triton": __import__("triton").__version__,
                       "numpy": np.__version__, "host": platform.node()},
           "commit": args.commit, "model": "constant_velocity(dt=1, q=0.05, r=4), n=4, m=2, float32"}
    model = bayesfilt.models.constant_velocity(q=0.05, r=4.0)
    rows = []
    for shape in ([262144], [1024, 1024]):
        T, batch = shape[-1], tuple(shape[:-1])
        y = simulate_fast(model, T, batch, seed=0)
        y32 = y.astype(np.float32)
        t0 = time.perf_counter()
        ref = bayesfilt.parallel_filter(model, y32.astype(np.float64), method="riccati")
        t_ref = time.perf_counter() - t0
        yc = torch.tensor(y32, device="cuda")
        out = bayesfilt.parallel_filter(model, yc)
        row = {"shape": shape, "dtype": "float32", "errors_vs_float64": errors(out, ref),
               "numpy_riccati_float64_cpu_s": t_ref}
        y64c = torch.tensor(y32.astype(np.float64), device="cuda")
        row["errors_float64_kernel"] = errors(bayesfilt.parallel_filter(model, y64c), ref)
        row["api_ms"] = cuda_time(lambda: bayesfilt.parallel_filter(model, yc, validate=False))
        prm = triton_params(model, batch, torch.float32, "cuda")
        sweep = {}
        for chunk in (16, 32, 64, 128, 256):
            for group in (16, 64):
                sweep[f"chunk{chunk}_group{group}"] = cuda_time(
                    lambda: triton_filter(model, yc, chunk=chunk, group=group, params=prm))
        row["kernel_ms_sweep"] = sweep
        best = min(sweep, key=lambda k: sweep[k][0])
        row["kernel_ms_best"] = [best, sweep[best]]
        if not args.quick:
            row["torch_tree_ms"] = cuda_time(lambda: bayesfilt.parallel_filter(model, yc, backend="torch",
                                                                              validate=False), repeats=2)
        rows.append(row)
        res["workloads"] = rows
        dump(res, args.out)
        print(json.dumps(row)[:1500], flush=True)
    res["workloads"] = rows
    scaling = []
    prm1 = triton_params(model, (), torch.float32, "cuda")
    for p in range(10, 21):
        T = 2 ** p
        y = torch.randn((T, 2), device="cuda", dtype=torch.float32) * 2.0
        ms = cuda_time(lambda: bayesfilt.parallel_filter(model, y, validate=False), repeats=10)
        kms = cuda_time(lambda: triton_filter(model, y, params=prm1), repeats=10)
        scaling.append({"T": T, "api_ms": ms, "kernel_ms": kms})
        print("T", T, ms, kms, flush=True)
    res["time_vs_T_gpu"] = scaling
    dump(res, args.out)
    cold = tempfile.mkdtemp()
    res["first_result_cold_cache"] = first_result(cold)
    res["first_result_warm_cache"] = first_result(cold)
    print("first result", res["first_result_cold_cache"], res["first_result_warm_cache"], flush=True)
    if args.dynamax:
        try:
            import dynamax  # noqa: F401
            res["dynamax"] = "importable (not timed in this run)"
        except Exception as exc:
            res["dynamax"] = f"not available: {exc}"
    dump(res, args.out)
    print("wrote", os.path.join(args.out, "parallel_gpu.json"))
    print("\nSUMMARY")
    for r in rows:
        print(r["shape"], "api ms", r["api_ms"], "kernel best", r["kernel_ms_best"],
              "means scale_rel", r["errors_vs_float64"]["means"]["scale_rel"],
              "loglik rel", r["errors_vs_float64"]["loglik"]["scale_rel"])


if __name__ == "__main__":
    main()
