"""The shared-gain ("riccati") Triton path of parallel_filter (bayesfilt/scan/triton_riccati.py).

CPU: the kernels under TRITON_INTERPRET=1 in a subprocess (the flag must be set before triton
compiles anything and must not leak into other tests), against the float64 sequential
kalman_filter; which method ``method="auto"`` picks is read off the results (the shared path
returns ``covs`` as a stride-0 ``expand`` over the batch axes). GPU (marked ``gpu``): the
1024 x 1024 float32 constant-velocity case and a long float32 track against float64 references.
"""

import json
import os
import textwrap

import numpy as np
import pytest

import bayesfilt
from bayesfilt.tolerances import tolerance
from conftest import compile_for_sm90, run_interpreted

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

SCRIPT = textwrap.dedent(r"""
    import json, sys
    import numpy as np, torch
    sys.path.insert(0, {tests!r})
    from conftest import max_rel, random_model, scale_rel
    import bayesfilt
    from bayesfilt.errors import BayesfiltValueError
    from bayesfilt.scan.triton_riccati import triton_riccati
    import bayesfilt.scan.api as api
    assert api.RICCATI_MIN_SERIES > 2         # the H200 threshold; these small cases test the dispatch logic
    api.RICCATI_MIN_SERIES = 2                # itself, so the shared path starts at 2 series in this process

    _empty = torch.empty                      # fresh buffers full of NaN: a kernel reading a slot it never
    def empty(*args, **kwargs):               # wrote (uninitialised memory on a GPU) shows up as NaN
        out = _empty(*args, **kwargs)
        return out.fill_(float("nan")) if out.is_floating_point() else out
    torch.empty = empty

    FIELDS = ("means", "covs", "predicted_means", "predicted_covs", "loglik_terms", "loglik")

    def shared(res):
        # the shared-gain path returns covs as an expand over the batch axes (stride 0)
        return res.covs.ndim > 3 and res.covs.stride(0) == 0

    rng = np.random.default_rng(0)
    report = dict(f64=[], f32=[], picked={{}}, raised={{}})
    TV = ("F", "Q", "H", "R", "b", "d")
    # (n, m, T, model options, batch, how): public API (auto / explicit riccati) or the kernel with a chunk
    cases = [(1, 1, 1, {{}}, (2,), "auto"),
             (2, 3, 2, dict(bias=True), (3, 4), "riccati"),
             (3, 2, 7, dict(time_varying=TV, T=7, bias=True), (2,), 2),      # 4 chunks, the last partial
             (5, 3, 7, dict(bias=True, psd_q=True), (3, 4), 3),               # N = 8, singular Q
             (8, 2, 7, {{}}, (2,), "auto"),
             (2, 1, 64, dict(time_varying=TV, T=64, bias=True), (2,), "auto")]
    for n, m, T, kw, batch, how in cases:
        model = random_model(rng, n, m, **kw)
        _, y = model.simulate(T, seed=1, batch_shape=batch)
        ref = bayesfilt.kalman_filter(model, y)
        if isinstance(how, int):
            out = triton_riccati(model, torch.tensor(y), chunk=how)
        else:
            res = bayesfilt.parallel_filter(model, torch.tensor(y), backend="triton", method=how)
            assert shared(res), (n, m, T, how)
            out = {{k: getattr(res, k) for k in FIELDS}}
        report["f64"].append(max(max_rel(out[k].numpy(), getattr(ref, k)) for k in FIELDS))
    # T = 300 (10 chunks of 32, the last partial): the means kernels with covariances from the reference
    # (the element kernel that computes them is slow under the interpreter and tested in test_parallel_triton)
    model = random_model(rng, 1, 1, bias=True)
    _, y = model.simulate(300, seed=2, batch_shape=(2,))
    ref = bayesfilt.kalman_filter(model, y)
    covs = (torch.tensor(ref.predicted_covs[0]), torch.tensor(ref.covs[0]))
    out = triton_riccati(model, torch.tensor(y), covariances=covs)
    report["f64"].append(max(max_rel(out[k].numpy(), getattr(ref, k)) for k in FIELDS))
    # parallel_smoother through the shared-gain filter
    model = random_model(rng, 2, 1)
    _, y = model.simulate(7, seed=3, batch_shape=(2,))
    sm = bayesfilt.parallel_smoother(model, torch.tensor(y), backend="triton", method="riccati")
    sref = bayesfilt.rts_smoother(model, bayesfilt.kalman_filter(model, y))
    report["f64"].append(max(max_rel(sm.means.numpy(), sref.means), max_rel(sm.loglik.numpy(), sref.loglik)))

    # float32, a constant-velocity track far from the origin (positions ~1e7, float32 spacing 1): the means
    # and log-likelihood are carried in float64 inside the kernels, so only the data's rounding remains
    model = bayesfilt.models.constant_velocity(q=0.05, r=4.0, dim=1, m0=np.array([1e7, 30.0]))
    _, y = model.simulate(32, seed=4, batch_shape=(3,))
    y32 = y.astype(np.float32)
    ref = bayesfilt.kalman_filter(model, y32.astype(np.float64))
    res = bayesfilt.parallel_filter(model, torch.tensor(y32), backend="triton")
    assert shared(res) and res.means.dtype == torch.float32
    report["f32"] = {{k: scale_rel(getattr(res, k).numpy(), getattr(ref, k)) for k in ("means", "covs", "loglik")}}
    report["f32_loglik_max_rel"] = max_rel(res.loglik.numpy(), ref.loglik)

    # method="auto": the shared path only for >= 2 series, unbatched parameters and no NaN
    model = random_model(rng, 2, 2)
    _, y = model.simulate(5, seed=5, batch_shape=(2,))
    yn = y.copy()
    yn[1, 2, 0] = np.nan
    batched = model.replace(R=np.stack([model.R, 2.0 * model.R]))
    for name, mod, yy in (("plain", model, y), ("nan", model, yn), ("batched_params", batched, y),
                          ("one_series", model, y[:1])):
        res = bayesfilt.parallel_filter(mod, torch.tensor(yy), backend="triton")
        ref = bayesfilt.kalman_filter(mod, yy)
        report["picked"][name] = shared(res)
        report["f64"].append(max(max_rel(getattr(res, k).numpy(), getattr(ref, k)) for k in FIELDS))
    # strided and expanded y (components at stride 2; a batch axis of stride 0)
    for name, yy, yref in (("strided", torch.tensor(np.repeat(y, 2, -1))[..., ::2], y),
                           ("expanded", torch.tensor(y[0]).expand(3, 5, 2), np.broadcast_to(y[0], (3, 5, 2)))):
        res = bayesfilt.parallel_filter(model, yy, backend="triton")
        ref = bayesfilt.kalman_filter(model, np.ascontiguousarray(yref))
        report["picked"][name] = shared(res)
        report["f64"].append(max(max_rel(getattr(res, k).numpy(), getattr(ref, k)) for k in FIELDS))
    for name, mod, yy in (("nan", model, yn), ("batched_params", batched, y)):
        try:
            bayesfilt.parallel_filter(mod, torch.tensor(yy), backend="triton", method="riccati")
            report["raised"][name] = ""
        except BayesfiltValueError as exc:
            report["raised"][name] = str(exc)

    # the shared stage kept on the model (triton_riccati.SHARED_MEMO): the next call with the same model,
    # T, dtype and device skips the covariance kernels and the gains, with equal results; a result's
    # covariances are its own; a model changed in place, or a call whose flag is set, keeps nothing stale
    import bayesfilt.scan.triton_riccati as tr
    cov_calls = []
    _tf = tr.triton_filter
    def counting(*a, **k):
        cov_calls.append(1)
        return _tf(*a, **k)
    tr.triton_filter = counting
    model = random_model(rng, 3, 2, bias=True)
    _, y = model.simulate(40, seed=6, batch_shape=(3,))
    yt = torch.tensor(y)
    run = lambda: bayesfilt.parallel_filter(model, yt, backend="triton", method="riccati")
    first = run()
    memo = dict(kept_after_first=tr.SHARED_MEMO in model.__dict__, calls_first=len(cov_calls))
    second = run()
    memo["calls_second"] = len(cov_calls) - memo["calls_first"]
    memo["second_equals_first"] = all(torch.equal(getattr(first, k), getattr(second, k)) for k in FIELDS)
    second.covs[0].add_(1.0)                                  # written by the caller: its own copy
    second.predicted_covs[0].add_(1.0)
    third = run()
    memo["third_equals_first"] = all(torch.equal(getattr(first, k), getattr(third, k)) for k in FIELDS)
    model.Q[...] *= 3.0                                       # changed in place: computed again
    fourth = run()
    memo["calls_fourth"] = len(cov_calls) - memo["calls_first"] - memo["calls_second"]
    ref = bayesfilt.kalman_filter(model, y)
    memo["fourth_err"] = max(max_rel(getattr(fourth, k).numpy(), getattr(ref, k)) for k in FIELDS)
    # with the stage of (model, T = 40, float64) kept: float32 y, then (with that stage kept) a longer T each
    # compute their own, equal to those of a copy of the model without the memo (deepcopy leaves it behind)
    import copy
    twin = copy.deepcopy(model)
    _, y56 = model.simulate(56, seed=8, batch_shape=(3,))
    before, memo["other_key_equal"] = len(cov_calls), []
    for ys in (yt.float(), torch.tensor(y56).float()):
        got, want = (bayesfilt.parallel_filter(mod, ys, backend="triton", method="riccati") for mod in (model, twin))
        memo["other_key_equal"].append(all(torch.equal(getattr(got, k), getattr(want, k)) for k in FIELDS))
    memo["calls_other_keys"] = len(cov_calls) - before
    fresh = random_model(rng, 2, 2)
    _, y = fresh.simulate(6, seed=7, batch_shape=(2,))
    y[1, 3, 0] = np.inf
    try:
        bayesfilt.parallel_filter(fresh, torch.tensor(y), backend="triton", method="riccati")
    except BayesfiltValueError:
        pass
    memo["kept_after_flagged"] = tr.SHARED_MEMO in fresh.__dict__
    tr.triton_filter = _tf
    report["memo"] = memo
    print("REPORT" + json.dumps(report))
""")


@pytest.fixture(scope="module")
def interpreted():
    """Run SCRIPT once under the interpreter; its JSON report."""
    tests = os.path.dirname(os.path.abspath(__file__))
    return json.loads(run_interpreted(SCRIPT.format(tests=tests)).split("REPORT")[-1])


CPU_ONLY = pytest.mark.skipif(torch.cuda.is_available(),
                              reason="the CPU (CI) path; with CUDA the compiled kernels run the gpu tests below")


@CPU_ONLY
def test_interpreted_float64_matches_kalman_filter(interpreted):
    """n in {1, 2, 3, 5, 8}, m in {1, 2, 3}, T in {1, 2, 7, 64, 300}, batches (2,), (3, 4), offsets,
    time-varying parameters, chunked means, the smoother on top, strided and expanded y; every field
    within 1e-9."""
    assert len(interpreted["f64"]) == 14
    assert max(interpreted["f64"]) <= tolerance("filter", "triton", "float64").bound, interpreted["f64"]


@CPU_ONLY
def test_interpreted_float32_far_from_origin(interpreted):
    tol = tolerance("filter", "triton", "float32")
    assert all(v <= tol.bound for v in interpreted["f32"].values()), interpreted["f32"]
    assert interpreted["f32_loglik_max_rel"] <= tol.bound, interpreted["f32_loglik_max_rel"]
    # float64 means inside the kernels keep the innovations exact; float32 means (ulp ~1 at 1e7, half the
    # noise's standard deviation) put the log-likelihood ~1e-2 off (tests/test_parallel_triton.py)
    assert interpreted["f32_loglik_max_rel"] <= 1e-5, interpreted["f32_loglik_max_rel"]


@CPU_ONLY
def test_auto_picks_shared_gains_only_where_they_apply(interpreted):
    assert interpreted["picked"] == {"plain": True, "nan": False, "batched_params": False, "one_series": False,
                                     "strided": True, "expanded": True}


@CPU_ONLY
def test_riccati_on_triton_refuses_missing_data_and_batched_parameters(interpreted):
    for name, msg in interpreted["raised"].items():
        assert "method" in msg and "missing values or the parameters have batch axes" in msg, (name, msg)


@CPU_ONLY
def test_shared_stage_kept_between_calls(interpreted):
    memo = interpreted["memo"]
    assert memo["kept_after_first"] and memo["calls_first"] == 1
    assert memo["calls_second"] == 0 and memo["second_equals_first"]
    assert memo["third_equals_first"]                 # the caller's writes into the second result stayed there
    assert memo["calls_fourth"] == 1                  # new contents, new covariances
    assert memo["fourth_err"] <= tolerance("filter", "triton", "float64").bound
    assert memo["other_key_equal"] == [True, True] and memo["calls_other_keys"] == 4   # another T, another dtype
    assert not memo["kept_after_flagged"]


def test_kernels_compile_for_sm90():
    """Ahead-of-time compilation of the four kernels for an H100/H200 (sm_90) on the CPU, float32 and
    float64 data: the interpreter does not type-check the way the compiler does."""
    compile_for_sm90("bayesfilt.scan.triton_riccati",
                     [("_gains", dict(N=4, Mo=2, LOG2PI=1.84)), ("_fold_means", dict(N=4, Mo=2, BS=32)),
                      ("_carry_means", dict(N=4, BS=32)), ("_sweep_means", dict(N=4, Mo=2, BS=32))],
                     wide={"K_ptr", "Si_ptr", "ln_ptr", "z_ptr", "Phi_ptr", "start_ptr"},   # float64 scratch
                     dtypes=("fp32", "fp64"), typed={"bad_ptr": "*i32"})


def test_riccati_on_torch_backend_raises():
    from bayesfilt.errors import BayesfiltValueError
    model = bayesfilt.models.constant_velocity(dim=1)
    with pytest.raises(BayesfiltValueError, match="method"):
        bayesfilt.parallel_filter(model, torch.zeros((2, 5, 1), dtype=torch.float64), backend="torch",
                                  method="riccati")


# ------------------------------------------------------------------------------------------- GPU
def simulate(model, T, B, seed):
    """y (B, T, m) of a time-invariant model: x_1 ~ N(m0, P0), x_t = F x_{t-1} + w_t, y_t = H x_t + v_t."""
    rng = np.random.default_rng(seed)
    chol = np.linalg.cholesky
    x = np.empty((T, B, model.n))
    x[0] = model.m0 + rng.standard_normal((B, model.n)) @ chol(model.P0).T
    w = rng.standard_normal((T, B, model.n)) @ chol(model.Q).T
    for t in range(1, T):
        x[t] = x[t - 1] @ model.F.T + w[t]
    y = x @ model.H.T + rng.standard_normal((T, B, model.m)) @ chol(model.R).T
    return np.moveaxis(y, 0, 1)


def _scale_rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (device tool)")
@pytest.mark.parametrize("B, T", [(1024, 1024), (2, 262144)])
def test_gpu_float32_constant_velocity(B, T):
    """float32 on the H200 (auto -> shared gains) vs the float64 filter on the same float32-rounded data;
    T = 262144: positions reach ~1e7, where only the float64 means keep the log-likelihood within 1e-3."""
    model = bayesfilt.models.constant_velocity(q=0.05, r=4.0)
    y32 = simulate(model, T, B, seed=0).astype(np.float32)
    ref = bayesfilt.parallel_filter(model, y32.astype(np.float64), method="riccati")   # float64 NumPy
    res = bayesfilt.parallel_filter(model, torch.tensor(y32, device="cuda"), method="riccati")  # triton shared gains
    assert res.means.dtype == torch.float32 and res.covs.stride(0) == 0
    tol = tolerance("filter", "triton", "float32")
    for k in ("means", "covs", "loglik"):
        got = getattr(res, k).cpu().numpy()
        assert np.isfinite(got).all(), k
        assert _scale_rel(got, getattr(ref, k)) <= tol.bound, (k, _scale_rel(got, getattr(ref, k)))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (device tool)")
def test_gpu_shared_stage_kept_between_calls():
    """The covariances and gains kept on the model after a call: the next calls skip their kernels and
    give the same numbers, also after the caller wrote into a result's covariances."""
    from bayesfilt.scan.triton_riccati import SHARED_MEMO
    model = bayesfilt.models.constant_velocity(q=0.05, r=4.0)
    y = torch.tensor(simulate(model, 1024, 1024, seed=1).astype(np.float32), device="cuda")
    fields = ("means", "covs", "predicted_means", "predicted_covs", "loglik_terms", "loglik")
    first = bayesfilt.parallel_filter(model, y)
    assert first.covs.stride(0) == 0 and SHARED_MEMO in model.__dict__
    second = bayesfilt.parallel_filter(model, y)
    assert all(torch.equal(getattr(first, k), getattr(second, k)) for k in fields)
    second.covs[0].mul_(2.0)
    third = bayesfilt.parallel_filter(model, y)
    assert all(torch.equal(getattr(first, k), getattr(third, k)) for k in fields)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (device tool)")
def test_gpu_float64_parity():
    from conftest import random_model
    rng = np.random.default_rng(0)
    T = 3000
    model = random_model(rng, 4, 2, bias=True, time_varying=("F", "Q", "H", "R", "b", "d"), T=T)
    _, y = model.simulate(T, seed=1, batch_shape=(3,))
    ref = bayesfilt.kalman_filter(model, y)
    res = bayesfilt.parallel_filter(model, torch.tensor(y, device="cuda"), backend="triton", method="riccati")
    bound = tolerance("filter", "triton", "float64").bound
    for k in ("means", "covs", "predicted_means", "predicted_covs", "loglik_terms", "loglik"):
        got, want = np.asarray(getattr(res, k).cpu().numpy(), float), getattr(ref, k)
        assert float((np.abs(got - want) / np.maximum(np.abs(want), 1.0)).max()) <= bound, k
