"""Parallel filter on a CUDA device (run through the device tool): Triton kernel and torch backend.

float64 parity with the sequential reference; float32 on the long constant-velocity series
(T = 262144) and on 1024 series x 1024 steps within the promised tolerance.
"""

import numpy as np
import pytest

import bayesfilt
from bayesfilt.tolerances import tolerance
from conftest import max_rel, random_model, scale_rel

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (device tool)")]


def simulate_fast(model, T, batch, seed):
    """Observations of a time-invariant model without model.simulate's per-step eigendecompositions."""
    rng = np.random.default_rng(seed)
    n, m = model.n, model.m
    B = int(np.prod(batch)) if batch else 1
    x = np.empty((T, B, n))
    x[0] = model.m0 + rng.standard_normal((B, n)) @ np.linalg.cholesky(model.P0).T
    w = rng.standard_normal((T, B, n)) @ np.linalg.cholesky(model.Q).T
    for t in range(1, T):
        x[t] = x[t - 1] @ model.F.T + w[t]                     # x_t = F x_{t-1} + w_t
    y = x @ model.H.T + rng.standard_normal((T, B, m)) @ np.linalg.cholesky(model.R).T
    return np.moveaxis(y, 0, 1).reshape(tuple(batch) + (T, m))


@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_cuda_float64_parity(backend):
    rng = np.random.default_rng(0)
    T = 3000
    model = random_model(rng, 4, 2, bias=True, time_varying=("F", "Q", "H", "R", "b", "d"), T=T)
    _, y = model.simulate(T, seed=1, batch_shape=(2,))
    y[..., ::5, 1] = np.nan
    y[..., 100:120, :] = np.nan
    ref = bayesfilt.kalman_filter(model, y)
    res = bayesfilt.parallel_filter(model, torch.tensor(y, device="cuda"), backend=backend)
    bound = tolerance("filter", backend, "float64").bound
    for k in ("means", "covs", "predicted_means", "predicted_covs", "loglik_terms", "loglik"):
        assert max_rel(getattr(res, k).cpu().numpy(), getattr(ref, k)) <= bound, k
    if backend == "torch":
        sm = bayesfilt.parallel_smoother(model, torch.tensor(y, device="cuda"), backend=backend)
        sref = bayesfilt.rts_smoother(model, ref)
        assert max_rel(sm.means.cpu().numpy(), sref.means) <= tolerance("smoother", "torch", "float64").bound


@pytest.mark.parametrize("shape", [(262144,), (1024, 1024)])
def test_cuda_float32_constant_velocity(shape):
    """float32 Triton kernel vs the float64 filter on the same (float32-rounded) data."""
    model = bayesfilt.models.constant_velocity(q=0.05, r=4.0)
    T = shape[-1]
    batch = shape[:-1]
    y32 = simulate_fast(model, T, batch, seed=0).astype(np.float32)
    ref = bayesfilt.parallel_filter(model, y32.astype(np.float64), method="riccati")  # float64, = kalman_filter (tests)
    res = bayesfilt.parallel_filter(model, torch.tensor(y32, device="cuda"))          # auto -> triton
    tol = tolerance("filter", "triton", "float32")
    assert res.means.dtype == torch.float32
    for k in ("means", "covs", "loglik"):
        got = getattr(res, k).cpu().numpy()
        assert np.isfinite(got).all(), k
        assert scale_rel(got, getattr(ref, k)) <= tol.bound, (k, scale_rel(got, getattr(ref, k)))


def test_cuda_checks_after_the_kernels():
    """On the GPU: the one post-kernel check (the kernels' non-finite flag) names an infinite y and a
    float32 overflow, reruns NaN batches with the element kernels, and reads 0 on a finite run."""
    import os
    import subprocess
    import sys
    from test_parallel_triton import CHECKS_SCRIPT, check_after_kernels
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-c", CHECKS_SCRIPT.format(device="cuda")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    check_after_kernels(proc.stdout)


FRESH = r"""
import numpy as np, torch
import bayesfilt
import bayesfilt.scan.api as api
import bayesfilt.scan._triton as tri
warmed = []
_warm = tri._warm_concurrently
def spy(*a, **k):
    n = _warm(*a, **k); warmed.append(n); return n
tri._warm_concurrently = spy
api.RICCATI_MIN_SERIES = 4
model = bayesfilt.models.constant_velocity(q=0.05, r=4.0)
_, y = model.simulate(300, seed=3, batch_shape=(4,))
for arr in (y[0], y):                                 # element kernels (one series), shared gains (4 series)
    res = bayesfilt.parallel_filter(model, torch.tensor(arr, device="cuda"))
    ref = bayesfilt.kalman_filter(model, arr)
    print("ERR", float(np.abs(res.means.cpu().numpy() - ref.means).max() / np.abs(ref.means).max()),
          float(np.abs(res.loglik.cpu().numpy() - ref.loglik).max() / np.abs(ref.loglik).max()))
print("WARMED", warmed)
"""


def test_cuda_first_call_compiles_in_parallel(tmp_path):
    """A fresh process with an empty Triton cache: the first call compiles its kernels concurrently
    (bayesfilt.scan._triton.launch_all) and the results still match kalman_filter (float64)."""
    import os
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path)
    proc = subprocess.run([sys.executable, "-c", FRESH], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    errs = [[float(v) for v in ln.split()[1:]] for ln in proc.stdout.splitlines() if ln.startswith("ERR")]
    assert len(errs) == 2 and max(max(e) for e in errs) < 1e-9, errs
    warmed = [ln for ln in proc.stdout.splitlines() if ln.startswith("WARMED")]
    # the element kernels (3 variants at T = 300) and the shared-gain path's new ones compiled in threads
    # (each path's log-likelihood total is a one-kernel launch of its own, after a torch sum: 1 variant)
    counts = [int(n) for n in warmed[0][len("WARMED"):].strip(" []").split(",")] if warmed else []
    assert sum(n >= 3 for n in counts) == 2 and all(n >= 1 for n in counts), warmed
