"""The Triton kernel of the parallel filter, on the CPU under TRITON_INTERPRET=1 (small shapes).

Runs in a subprocess so that the interpreter flag is set before triton compiles anything and
does not leak into other tests. Compares against the float64 sequential kalman_filter.
"""

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("torch")
pytest.importorskip("triton")

SCRIPT = textwrap.dedent(r"""
    import sys
    import numpy as np, torch
    sys.path.insert(0, {tests!r})
    from conftest import random_model
    import bayesfilt
    import bayesfilt.scan.triton_filter as tf
    from bayesfilt.scan.triton_filter import triton_filter

    def err(a, b):
        a, b = np.asarray(a, float), np.asarray(b, float)
        return float((np.abs(a - b) / np.maximum(np.abs(b), 1.0)).max())

    rng = np.random.default_rng(0)
    worst = 0.0
    cases = [(3, 2, 7, {{}}, (2,), 2, 2),                                   # 4 chunks > group: grouped prefix
             (2, 1, 9, dict(time_varying=("F", "Q", "H", "R", "b", "d"), T=9, bias=True), (), 2, 2),  # 2 levels
             (4, 2, 1, {{}}, (), None, None)]                                 # T = 1
    # each case twice: every launch at the end (small calls) and the prefixes launched before the outputs
    # are allocated (calls of at least EARLY_LAUNCH_STEPS series x steps; under the interpreter it always launches)
    default_early = tf.EARLY_LAUNCH_STEPS
    for (n, m, T, kw, batch, chunk, group), early in [(c, e) for c in cases for e in (False, True)]:
        tf.EARLY_LAUNCH_STEPS = 0 if early else default_early
        model = random_model(rng, n, m, **kw)
        _, y = model.simulate(T, seed=1, batch_shape=batch)
        y[..., ::3, 0] = np.nan                                               # partial
        if T > 4:
            y[..., 4, :] = np.nan                                             # whole vector
        ref = bayesfilt.kalman_filter(model, y)
        out = triton_filter(model, torch.tensor(y), chunk=chunk, group=group)
        for k in ("means", "covs", "predicted_means", "predicted_covs", "loglik_terms", "loglik"):
            worst = max(worst, err(out[k].numpy(), getattr(ref, k)))
    tf.EARLY_LAUNCH_STEPS = default_early
    # the public API with backend="triton"
    model = random_model(rng, 2, 2, bias=True)
    _, y = model.simulate(6, seed=3)
    res = bayesfilt.parallel_filter(model, torch.tensor(y), backend="triton", verify=True)   # step check too
    ref = bayesfilt.kalman_filter(model, y)
    worst = max(worst, err(res.means.numpy(), ref.means), err(res.loglik.numpy(), ref.loglik))
    print("WORST", worst)
""")


@pytest.mark.skipif(__import__("torch").cuda.is_available(),
                    reason="the CPU (CI) path; with CUDA the compiled kernel runs tests/test_parallel_gpu.py instead "
                           "(triton 3.6's interpreter, on the GPU machine, cannot index range() with a scalar "
                           "argument under numpy 2.5)")
def test_triton_kernel_interpreted_float64():
    from bayesfilt.tolerances import tolerance
    env = dict(os.environ, TRITON_INTERPRET="1")
    tests = os.path.dirname(os.path.abspath(__file__))
    proc = subprocess.run([sys.executable, "-c", SCRIPT.format(tests=tests)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    worst = float(proc.stdout.split("WORST")[-1])
    assert worst <= tolerance("filter", "triton", "float64").bound, worst


def test_kernels_compile_for_sm90_quickly():
    """Ahead-of-time compilation for an H100/H200 (sm_90) on the CPU: a compile-time regression guard.

    Carrying a whole scan element through a loop in registers once made _fold_elements take over
    15 minutes to compile; every kernel must now compile (ptxas included) within the subprocess timeout,
    with the float32-matrix / float64-vector signatures a float32 filter launches.
    """
    from conftest import compile_for_sm90
    consts = {"N": 4, "Mo": 2, "EPS": 1e-6, "LOG2PI": 1.8378770664093453, "V64": True, "MEANS": True, "ZERO_START": False}
    compile_for_sm90("bayesfilt.scan.triton_filter",
                     [(name, consts) for name in ("_fold_steps", "_fold_elements", "_absorb", "_sweep")]
                     + [("_absorb", {**consts, "ZERO_START": True}), ("_sweep", {**consts, "MEANS": False})],
                     pointers={"oA", "ob", "oC", "oe", "oJ", "iA", "ib", "iC", "ie", "iJ", "sm", "sP", "om", "oP"},
                     wide={"ob", "oe", "ib", "ie", "sm", "om"},      # float64 vector buffers of a float32 filter
                     typed={"bad_ptr": "*i32"})


WIDE_SCRIPT = textwrap.dedent(r"""
    import dataclasses
    import numpy as np, torch
    import bayesfilt
    from bayesfilt.scan.triton_filter import triton_filter

    # a constant-velocity track far from the origin: positions ~1e7, where a float32 ulp (1.0) is
    # half the observation noise's standard deviation (2.0)
    model = bayesfilt.models.constant_velocity(q=0.05, r=4.0)
    model = dataclasses.replace(model, m0=np.array([1.0e7, -1.0e7, 300.0, -200.0]))
    _, y = model.simulate(256, seed=0)
    y32 = y.astype(np.float32)
    ref = bayesfilt.kalman_filter(model, y32.astype(np.float64))       # float64 filter, same data
    for wide in (True, False):
        # chunks of 64 steps, longer than the filter's memory (4 chunks > group 2: grouped prefixes)
        out = triton_filter(model, torch.tensor(y32), chunk=64, group=2, wide_vectors=wide)
        assert out["means"].dtype == torch.float32 and out["loglik"].dtype == torch.float32
        mean_err = float(np.abs(out["means"].numpy() - ref.means).max() / np.abs(ref.means).max())
        ll_err = float(abs(out["loglik"].item() - ref.loglik) / abs(ref.loglik))
        print("ERR", wide, mean_err, ll_err)
""")


@pytest.mark.skipif(__import__("torch").cuda.is_available(),
                    reason="the CPU (CI) path; on CUDA tests/test_parallel_gpu.py checks T = 262144")
def test_float32_kernel_keeps_loglik_of_far_tracks():
    """float32 inputs: float64 vectors in the kernel keep the log-likelihood of a track at 1e7 to 1e-4
    (float32 means alone lose ~1e-2 there, which the second case confirms: the test can fail)."""
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run([sys.executable, "-c", WIDE_SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    errs = {line.split()[1]: [float(v) for v in line.split()[2:]]
            for line in proc.stdout.splitlines() if line.startswith("ERR")}
    wide_means, wide_ll = errs["True"]
    narrow_means, narrow_ll = errs["False"]
    assert wide_means <= 1e-6 and wide_ll <= 1e-4, errs["True"]
    assert narrow_ll > 1e-3, errs["False"]          # the problem is hard for float32 means


SCALES_SCRIPT = textwrap.dedent(r"""
    import numpy as np, torch
    import bayesfilt
    # two independent states, variances ~big and ~small (an AR(1) and a slow random walk)
    for dt, big, small, T in ((torch.float64, 1e6, 1e-6, 100), (torch.float32, 1e4, 1e-4, 150)):
        model = bayesfilt.LinearGaussianSSM(m0=np.zeros(2), P0=np.diag([big, small]), F=np.diag([0.9, 1.0]),
                                           Q=np.diag([big, 1e-3 * small]), H=np.eye(2), R=np.diag([big, small]))
        _, y = model.simulate(T, seed=0)
        ref = bayesfilt.kalman_filter(model, y)
        r = bayesfilt.parallel_filter(model, torch.as_tensor(y, dtype=dt), backend="triton")
        small_var = float(np.abs(r.covs.double().numpy()[:, 1, 1] / ref.covs[:, 1, 1] - 1).max())
        means = float((np.abs(r.means.double().numpy() - ref.means) / np.maximum(np.abs(ref.means), 1)).max())
        print("ERR", str(dt)[6:], small_var, means)
""")


@pytest.mark.skipif(__import__("torch").cuda.is_available(),
                    reason="the CPU (CI) path (the interpreter; see test_triton_kernel_interpreted_float64)")
def test_disparate_state_scales_interpreted():
    """States whose variances differ by 1e12 (float64) or 1e8 (float32): the kernels' Cholesky judged
    a pivot against the largest diagonal entry and dropped the small state at every chunk boundary
    (its variance off by 55% in float64 and 3% in float32; found in review, session 8). Now each
    pivot is judged against its own diagonal entry."""
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run([sys.executable, "-c", SCALES_SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    errs = {line.split()[1]: [float(v) for v in line.split()[2:]] for line in proc.stdout.splitlines()
            if line.startswith("ERR")}
    assert errs["float64"][0] < 1e-9 and errs["float64"][1] < 1e-9, errs
    assert errs["float32"][0] < 1e-4, errs


API_SCRIPT = textwrap.dedent(r"""
    import numpy as np, torch
    import bayesfilt
    from bayesfilt.errors import BayesfiltError
    model = bayesfilt.models.constant_velocity(q=0.1, r=1.0)
    _, y = model.simulate(6, seed=0)
    yt = torch.as_tensor(y).requires_grad_(True)
    try:                                                  # the kernels have no gradient: refused, not dropped
        bayesfilt.parallel_filter(model, yt, backend="triton")
        print("GRAD no error")
    except BayesfiltError as e:
        print("GRAD", "backend" in str(e) and "gradient" in str(e))
    with torch.no_grad():                                 # no gradient wanted: fine
        print("NOGRAD", bool(torch.isfinite(bayesfilt.parallel_filter(model, yt, backend="triton").loglik)))
    for fn in (bayesfilt.parallel_filter, bayesfilt.parallel_smoother):
        out = fn(model, torch.zeros(0, 5, 2, dtype=torch.float64), backend="triton", method="riccati")
        print("EMPTY", tuple(out.means.shape))
""")


@pytest.mark.skipif(__import__("torch").cuda.is_available(),
                    reason="the CPU (CI) path (the interpreter; see test_triton_kernel_interpreted_float64)")
def test_triton_backend_refuses_gradients_and_takes_empty_batches():
    """Found in review (session 8): backend="triton" returned a result detached from a y that required
    a gradient (now a named error; "auto" picks torch then), and method="riccati" on an empty batch
    raised an unnamed IndexError (now the empty result, as the other backends)."""
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run([sys.executable, "-c", API_SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert "GRAD True" in lines and "NOGRAD True" in lines, proc.stdout
    assert lines.count("EMPTY (0, 5, 4)") == 2, proc.stdout


def test_sizes_beyond_32_bit_offsets_are_named():
    """The kernels index with 32 bits: backend='triton' on a problem past 2^31 elements raises a named
    error (auto would take the torch backend instead); the bound itself is in fits_int32's doctest."""
    from conftest import run_interpreted
    out = run_interpreted(textwrap.dedent(r"""
        import numpy as np, torch
        import bayesfilt
        from bayesfilt.errors import BayesfiltValueError
        from bayesfilt.scan.triton_filter import fits_int32
        model = bayesfilt.models.constant_velocity(q=0.05, r=4.0)          # n = 4, m = 2: 16 per step
        assert fits_int32(4, 2, 2 ** 27 - 1, 1) and not fits_int32(4, 2, 2 ** 27, 1)
        y = torch.zeros(1, 2, 2).expand(2 ** 26, 2, 2)                    # 2^27 steps, no memory
        try:
            bayesfilt.parallel_filter(model, y, backend="triton", validate=False)
        except BayesfiltValueError as exc:
            print("RAISED", exc)
    """), timeout=300)
    assert "RAISED" in out and "32-bit" in out and "backend='torch'" in out, out


CHECKS_SCRIPT = textwrap.dedent(r"""
    import numpy as np, torch
    import bayesfilt
    import bayesfilt.scan.api as api
    from bayesfilt.errors import BayesfiltValueError
    api.RICCATI_MIN_SERIES = 2                     # the shared-gain path from 2 series in this process
    model = bayesfilt.models.constant_velocity(q=0.05, r=4.0)
    _, y = model.simulate(12, seed=0, batch_shape=(3,))
    def run(arr, **kw):
        try:
            return bayesfilt.parallel_filter(model, torch.tensor(arr, device={device!r}), backend="triton",
                                             validate=False, **kw)
        except BayesfiltValueError as exc:
            return str(exc)
    y_inf = y.copy(); y_inf[1, 3, 1] = np.inf
    print("INF", run(y_inf))
    print("OVERFLOW", run((y * 1e30).astype(np.float32)))
    y_nan = y.copy(); y_nan[2, 5, 0] = np.nan; y_nan[0, 7] = np.nan
    res, ref = run(y_nan), bayesfilt.kalman_filter(model, y_nan)
    print("NAN", res.covs.stride(0) != 0, float(np.abs(res.means.cpu().numpy() - ref.means).max()),
          float(np.abs(res.loglik.cpu().numpy() - ref.loglik).max()))
    flags = []
    real = bayesfilt.scan.triton_riccati.triton_riccati
    def spy(*a, **k):
        out = real(*a, **k); flags.append(int(out["nonfinite"].item())); return out
    bayesfilt.scan.triton_riccati.triton_riccati = spy
    res, ref = run(y), bayesfilt.kalman_filter(model, y)
    print("FINITE", flags, res.covs.stride(0) == 0, float(np.abs(res.loglik.cpu().numpy() - ref.loglik).max()))
    # element kernels on one series: the first kernel resets a flag that starts nonzero
    from bayesfilt.scan.triton_filter import triton_filter
    bad = torch.ones(1, dtype=torch.int32, device={device!r})
    out = triton_filter(model, torch.tensor(y[0], device={device!r}), bad=bad)
    print("RESET", int(out["nonfinite"].item()), int(bad.item()))
    y_inf1 = y[0].copy(); y_inf1[4, 0] = -np.inf
    print("INF1", run(y_inf1))
    print("OVERFLOW1", run((y[0] * 1e30).astype(np.float32)))
    # every term finite in float32, their sum not (alternating +-3e14 with q = r = 1e-8: terms ~1e37)
    tiny = bayesfilt.models.constant_velocity(q=1e-8, r=1e-8)
    y_alt = np.zeros((64, 2), np.float32); y_alt[::2] = 3e14; y_alt[1::2] = -3e14
    try:
        res = bayesfilt.parallel_filter(tiny, torch.tensor(y_alt, device={device!r}), backend="triton",
                                        validate=False, method="elements")
        print("LLSUM returned", bool(torch.isfinite(res.loglik_terms).all()), float(res.loglik))
    except BayesfiltValueError as exc:
        print("LLSUM", exc)
""")


def check_after_kernels(out: str) -> None:
    lines = {ln.split()[0]: ln.split(None, 1)[1] for ln in out.splitlines() if ln.split()}
    assert "infinite value at index (1, 3, 1)" in lines["INF"], lines["INF"]
    assert "non-finite" in lines["OVERFLOW"] and "float32" in lines["OVERFLOW"], lines["OVERFLOW"]
    elements, mean_err, ll_err = lines["NAN"].split()
    assert elements == "True" and float(mean_err) < 1e-9 and float(ll_err) < 1e-9, lines["NAN"]
    flags, shared, ll_err = lines["FINITE"].rsplit(None, 2)
    assert flags == "[0]" and shared == "True" and float(ll_err) < 1e-9, lines["FINITE"]
    assert lines["RESET"] == "0 0", lines["RESET"]
    assert "infinite value at index (4, 0)" in lines["INF1"], lines["INF1"]
    assert "non-finite" in lines["OVERFLOW1"] and "float32" in lines["OVERFLOW1"], lines["OVERFLOW1"]
    assert "non-finite loglik" in lines["LLSUM"], lines["LLSUM"]


@pytest.mark.skipif(__import__("torch").cuda.is_available(),
                    reason="the CPU (CI) path under the interpreter; tests/test_parallel_gpu.py runs it on CUDA")
def test_checks_after_the_kernels():
    """The Triton path syncs once, after the kernels, on their non-finite flag (no scan of y first): an
    infinite y is still a named error, a float32 overflow is named, NaN in a large batch (where
    method="auto" took the shared-gain kernels without scanning y) is redone with the element kernels
    and matches kalman_filter with missing data, and a finite run takes the flag's fast path."""
    from conftest import run_interpreted
    check_after_kernels(run_interpreted(CHECKS_SCRIPT.format(device="cpu"), timeout=600))
