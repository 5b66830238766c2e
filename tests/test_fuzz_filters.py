"""Fuzz every classical filter, smoother and parallel scan with generated bad and edge inputs.

Extends tests/test_fuzz.py: time-varying parameters (right and wrong T), offsets b/d, batch
axes, exact-diffuse states, float16/float32/float64/int/bool/torch inputs, broadcast and
non-contiguous arrays, huge data that overflows, plus every option of parallel_filter /
parallel_smoother (forms, schedules, chunk sizes, methods, the torch backend with bf16, int,
non-contiguous and expanded tensors). Outcome: a finite result or a BayesfiltError with "Fix:".
On the benign cases results are also checked against the sequential covariance filter.
"""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import bayesfilt
from fuzz_helpers import FUZZ, Tally, contract

CORRUPTIONS = ["none", "none", "none", "missing", "T1", "tv_wrong_T", "tv_nan", "b_inf", "d_wrong_shape",
               "batch", "batch_bad", "diffuse", "diffuse_P0_nonzero", "diffuse_all_missing", "huge_y",
               "tiny_cov", "float16_y", "bool_y", "torch_y", "y_broadcast", "y_noncontig", "R_indefinite_tv",
               "Q_nan_tv", "F_huge", "time_varying_bad_name", "y_3d_empty_batch", "y_object"]


def _spd(rng, k, rank=None):
    A = rng.standard_normal((k, rank or k))
    return A @ A.T / (rank or k) + (0 if rank else 0.2 * np.eye(k))


@st.composite
def ssm_case(draw):
    """(kwargs of LinearGaussianSSM, y, corruption, inputs_finite)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    n, m = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    T = draw(st.sampled_from([2, 3, 6]))
    scale = draw(st.sampled_from([1e-6, 1.0, 1e6]))
    F = 0.8 * rng.standard_normal((n, n)) / np.sqrt(n)
    kw = dict(m0=rng.standard_normal(n), P0=_spd(rng, n) * scale, F=F, Q=_spd(rng, n) * scale * 0.1,
              H=rng.standard_normal((m, n)), R=_spd(rng, m) * scale)
    y = rng.standard_normal((T, m)) * np.sqrt(scale)
    if draw(st.booleans()):                                         # time-varying F and R
        kw["F"] = np.stack([F * (1 + 0.1 * t) for t in range(T)])
        kw["R"] = np.stack([kw["R"] * (1 + t) for t in range(T)])
        kw["time_varying"] = ("F", "R")
    if draw(st.booleans()):
        kw["b"], kw["d"] = rng.standard_normal(n), rng.standard_normal(m)
    c = draw(st.sampled_from(CORRUPTIONS))
    finite = True
    tv = kw.get("time_varying", ())
    if c == "missing":
        y[rng.random(y.shape) < 0.5] = np.nan
    elif c == "T1":
        y = y[:1]
        if tv:
            kw["F"], kw["R"] = kw["F"][:1], kw["R"][:1]
    elif c == "tv_wrong_T":
        kw["Q"] = np.stack([kw["Q"]] * (T + 1))
        kw["time_varying"] = tuple(tv) + ("Q",)
    elif c == "tv_nan":
        kw["H"] = np.stack([kw["H"]] * T)
        kw["H"][-1, 0, 0] = np.nan
        kw["time_varying"] = tuple(tv) + ("H",)
        finite = False
    elif c == "b_inf":
        kw["b"] = np.full(n, np.inf)
        finite = False
    elif c == "d_wrong_shape":
        kw["d"] = np.zeros(m + 1)
    elif c == "batch":
        kw["m0"] = np.stack([kw["m0"], -kw["m0"]])
        y = np.stack([y, 2 * y])
    elif c == "batch_bad":
        kw["m0"] = np.stack([kw["m0"]] * 2)
        y = np.stack([y] * 3)
    elif c == "diffuse":
        mask = np.zeros(n, bool)
        mask[0] = True
        kw["diffuse"] = mask
        kw["P0"] = kw["P0"].copy()
        kw["P0"][0, :] = kw["P0"][:, 0] = 0
    elif c == "diffuse_P0_nonzero":
        kw["diffuse"] = True
    elif c == "diffuse_all_missing":
        kw["diffuse"] = True
        kw["P0"] = np.zeros((n, n))
        y[:] = np.nan
    elif c == "huge_y":
        y = y * 1e300 / np.sqrt(scale)
    elif c == "tiny_cov":
        for nm in ("P0", "Q", "R"):
            kw[nm] = kw[nm] * 1e-300
        y = y * 1e-150
    elif c == "float16_y":
        y = np.clip(y, -6e4, 6e4).astype(np.float16)
    elif c == "bool_y":
        y = y > 0
    elif c == "torch_y":
        y = torch.as_tensor(y)
    elif c == "y_broadcast":
        y = np.broadcast_to(y, (2,) + y.shape)
    elif c == "y_noncontig":
        y = np.asfortranarray(np.repeat(y, 2, axis=-1))[:, ::2]
    elif c == "R_indefinite_tv":
        kw["R"] = -np.abs(kw["R"]) - np.eye(m)
    elif c == "Q_nan_tv":
        kw["Q"] = kw["Q"] * np.nan
        finite = False
    elif c == "F_huge":
        kw["F"] = kw["F"] * 1e200
    elif c == "time_varying_bad_name":
        kw["time_varying"] = ("X",)
    elif c == "y_3d_empty_batch":
        y = np.zeros((0,) + y.shape)
    elif c == "y_object":
        y = np.array([[object()] * m] * T)
    return kw, y, c, finite


DIFFUSE_NAN = ("means", "covs", "predicted", "gains", "aug_", "delta_", "diffuse_covs", "cross_covs")


def _run_contract(fn, case, tally, where, *, check=None):
    """The two-outcome contract; for exact-diffuse models NaN is allowed only where documented
    (the diffuse period of a filter, states the data never identify in a smoother)."""
    kw, y, c, finite = case
    diffuse = c.startswith("diffuse")

    def full_check(res):
        if diffuse and getattr(res, "diffuse_steps", None) is not None and c != "diffuse_all_missing":
            _check_diffuse_period(res)
        if check is not None:
            check(res)

    out = contract(lambda: fn(bayesfilt.LinearGaussianSSM(**kw), y), finite_inputs=finite,
                   allow_nan=DIFFUSE_NAN if diffuse else (), check=full_check, where=f"{where} [{c}]")
    tally.add(out)
    return out


def _check_diffuse_period(res):
    """Means/covs may be NaN only inside the documented diffuse period; the loglik is always finite."""
    d = res.diffuse_steps
    means = np.asarray(res.means)
    assert np.isfinite(means[..., d:, :]).all(), f"NaN mean after the diffuse period ({d} steps)"
    assert np.isfinite(np.asarray(res.covs)[..., d:, :, :]).all()
    assert np.isfinite(np.asarray(res.loglik)).all()


def smoothed(model, y):
    return bayesfilt.rts_smoother(model, bayesfilt.kalman_filter(model, y))


FILTERS = {
    "kalman_filter": bayesfilt.kalman_filter,
    "information_filter": bayesfilt.information_filter,
    "sqrt_filter": bayesfilt.sqrt_filter,
    "rts_smoother": smoothed,
    "parallel_filter": bayesfilt.parallel_filter,
    "parallel_filter_information": lambda mdl, y: bayesfilt.parallel_filter(mdl, y, form="information"),
    "parallel_smoother": bayesfilt.parallel_smoother,
}


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_filters_structured_models(name, record_property):
    """Time-varying, biased, batched, diffuse and oddly typed inputs: result or named error."""
    tally = Tally()

    @FUZZ
    @given(ssm_case())
    def run(case):
        kw, y, c, finite = case
        check = None
        if c in ("none", "missing", "T1", "batch") and name != "rts_smoother":
            check = _against_kalman(kw, y, smoother=name == "parallel_smoother")
        _run_contract(FILTERS[name], case, tally, name, check=check)

    run()
    tally.report(record_property)


def _against_kalman(kw, y, smoother=False):
    """A check that a result equals the sequential covariance filter (or RTS smoother), float64."""
    def check(res):
        model = bayesfilt.LinearGaussianSSM(**kw)
        ref = bayesfilt.kalman_filter(model, y)
        if smoother:
            ref = bayesfilt.rts_smoother(model, ref)
        means = res.means.numpy() if hasattr(res.means, "numpy") else np.asarray(res.means)
        scale = max(1.0, np.abs(ref.means).max())
        np.testing.assert_allclose(means, ref.means, rtol=1e-6, atol=1e-6 * scale)
        if res.loglik is not None:
            np.testing.assert_allclose(np.asarray(res.loglik), ref.loglik, rtol=1e-6, atol=1e-6)
    return check


OPTIONS = st.fixed_dictionaries({
    "form": st.sampled_from(["covariance", "information", "information", "bogus"]),
    "backend": st.sampled_from(["auto", "numpy", "torch", "triton", "cuda"]),
    "schedule": st.sampled_from(["auto", "sequential", "tree", "chunked", "hillis"]),
    "chunk_size": st.sampled_from([None, None, 1, 2, 5, 1000, 0, -1, 2.5, "3"]),
    "method": st.sampled_from(["auto", "elements", "riccati", "newton"]),
})

TENSORS = ["numpy", "float64", "float32", "bfloat16", "float16", "int64", "noncontig", "expanded", "requires_grad",
           "complex", "bool", "nan", "inf", "empty_T", "rank1"]


@pytest.mark.parametrize("which", ["parallel_filter", "parallel_smoother"])
def test_parallel_options_and_tensors(which, record_property):
    """Every option combination and tensor kind; benign cases must equal kalman_filter / rts_smoother."""
    tally = Tally()
    fn = getattr(bayesfilt, which)

    @FUZZ
    @given(st.integers(0, 2**31 - 1), st.integers(1, 3), st.sampled_from([1, 2, 5, 9]), OPTIONS,
           st.sampled_from(TENSORS), st.booleans())
    def run(seed, n, T, opts, kind, missing):
        rng = np.random.default_rng(seed)
        m = 1 + seed % 2
        model = bayesfilt.LinearGaussianSSM(m0=rng.standard_normal(n), P0=_spd(rng, n),
                                            F=0.8 * rng.standard_normal((n, n)) / np.sqrt(n),
                                            Q=_spd(rng, n) * 0.1, H=rng.standard_normal((m, n)), R=_spd(rng, m))
        y = rng.standard_normal((T, m))
        if missing:
            y[rng.random(y.shape) < 0.3] = np.nan
        finite = kind not in ("inf",)
        yt = torch.as_tensor(y)
        arg = {"numpy": y, "float64": yt, "float32": yt.float(), "bfloat16": yt.bfloat16(), "float16": yt.half(),
               "int64": torch.nan_to_num(yt).round().long(), "noncontig": torch.stack([yt, yt], -1).reshape(T, 2 * m)[:, ::2],
               "expanded": yt.expand(2, T, m), "requires_grad": yt.clone().requires_grad_(),
               "complex": yt.to(torch.complex128), "bool": yt > 0, "nan": yt * np.nan, "inf": yt * np.inf,
               "empty_T": yt[:0], "rank1": yt[:, 0]}[kind]
        benign = (opts["form"] != "bogus" and opts["backend"] in ("auto", "numpy", "torch")
                  and opts["schedule"] != "hillis" and opts["method"] != "newton"
                  and (opts["chunk_size"] is None or (isinstance(opts["chunk_size"], int) and opts["chunk_size"] > 0
                                                      and opts["schedule"] == "chunked"))
                  and kind in ("numpy", "float64", "noncontig", "expanded"))

        def check(res):
            if not benign:
                return
            ref_f = bayesfilt.kalman_filter(model, y)
            ref = ref_f if which == "parallel_filter" else bayesfilt.rts_smoother(model, ref_f)
            got = res.means.detach().numpy() if hasattr(res.means, "detach") else res.means
            np.testing.assert_allclose(np.broadcast_to(got, np.broadcast_shapes(got.shape, ref.means.shape)),
                                       np.broadcast_to(ref.means, np.broadcast_shapes(got.shape, ref.means.shape)),
                                       rtol=1e-7, atol=1e-7)
            np.testing.assert_allclose(np.asarray(res.loglik.detach() if hasattr(res.loglik, "detach")
                                                  else res.loglik).ravel()[0], ref_f.loglik, rtol=1e-8, atol=1e-8)

        tally.add(contract(lambda: fn(model, arg, **opts), finite_inputs=finite, check=check,
                           where=f"{which}({kind}, {opts})"))

    run()
    tally.report(record_property)


def test_predict_update_fuzz(record_property):
    """predict/update/update_with_loglik with generated beliefs, observations and steps."""
    tally = Tally()
    model = bayesfilt.models.constant_velocity(dim=1)

    @FUZZ
    @given(st.sampled_from(["ok", "nan_mean", "inf_cov", "wrong_n", "none", "list", "neg_cov", "str"]),
           st.sampled_from(["ok", "nan", "inf", "wrong_m", "str", "none", "int", "huge"]),
           st.sampled_from([0, 1, 3, -1, 1.5, "1", None, 10**12]))
    def run(belief, obs, t):
        g = {"ok": bayesfilt.Gaussian(np.zeros(2), np.eye(2)),
             "nan_mean": bayesfilt.Gaussian(np.array([np.nan, 0.0]), np.eye(2)),
             "inf_cov": bayesfilt.Gaussian(np.zeros(2), np.eye(2) * np.inf),
             "wrong_n": bayesfilt.Gaussian(np.zeros(3), np.eye(3)), "none": None,
             "list": bayesfilt.Gaussian([0.0, 0.0], [[1.0, 0.0], [0.0, 1.0]]),
             "neg_cov": bayesfilt.Gaussian(np.zeros(2), -np.eye(2)), "str": "belief"}[belief]
        y = {"ok": np.zeros(1), "nan": np.full(1, np.nan), "inf": np.full(1, np.inf), "wrong_m": np.zeros(2),
             "str": "y", "none": None, "int": np.ones(1, dtype=np.int64), "huge": np.full(1, 1e300)}[obs]
        finite = belief in ("ok", "list", "wrong_n", "neg_cov", "none", "str") and obs not in ("inf",)
        for fn in (lambda: bayesfilt.predict(g, model, t), lambda: bayesfilt.update(g, y, model, t),
                   lambda: bayesfilt.update_with_loglik(g, y, model, t)):
            tally.add(contract(fn, finite_inputs=finite and obs != "nan", where=f"predict/update({belief}, {obs}, {t})"))

    run()
    tally.report(record_property)
