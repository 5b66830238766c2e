"""Fuzz the public boundary: every call ends in a correct result or a BayesfiltError.

Generated inputs cover wrong ranks and sizes, empty and length-1 sequences, NaN/inf in
parameters and data, singular and indefinite covariances, huge and tiny magnitudes,
integer dtypes, and non-contiguous or broadcast arrays. Never another exception, never a
silent NaN/inf in a result whose inputs were finite. The number of cases is reported in
the test summary; ``BAYESFILT_FUZZ_EXAMPLES`` raises the budget (default 60 per test).
"""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bayesfilt

EXAMPLES = int(os.environ.get("BAYESFILT_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck))

SCALES64 = [1e-300, 1e-150, 1e-30, 1e-8, 1.0, 1e8, 1e30, 1e150, 1e300, 1e306]
SCALES32 = [1e-30, 1e-15, 1e-6, 1.0, 1e6, 1e15, 1e30, 1e36]


def _spd(rng, k, rank=None):
    A = rng.standard_normal((k, rank or k))
    return A @ A.T + (0 if rank else 0.1 * np.eye(k))


@st.composite
def model_and_data(draw):
    """A model and observations, each possibly corrupted in one of many ways."""
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    n = draw(st.integers(1, 4))
    m = draw(st.integers(1, 3))
    T = draw(st.sampled_from([1, 2, 3, 7]))
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    scale = draw(st.sampled_from(SCALES64 if dtype == np.float64 else SCALES32))
    kw = dict(m0=rng.standard_normal(n) * np.sqrt(scale), P0=_spd(rng, n) * scale,
              F=0.9 * rng.standard_normal((n, n)) / np.sqrt(n), Q=_spd(rng, n, rank=draw(st.sampled_from([None, 1]))) * scale,
              H=rng.standard_normal((m, n)), R=_spd(rng, m) * scale)
    y = rng.standard_normal((T, m)) * np.sqrt(scale)
    corruption = draw(st.sampled_from([
        "none", "none", "nan_param", "inf_param", "indefinite", "asymmetric", "wrong_shape", "wrong_rank",
        "empty_y", "y_rank1", "y_wrong_m", "y_inf", "y_nan_all", "y_nan_some", "int_dtype", "noncontig",
        "broadcast", "singular_R", "zero_R", "list_input", "complex", "batch_mismatch", "unstable_F"]))
    if corruption == "nan_param":
        name = draw(st.sampled_from(list(kw)))
        kw[name] = kw[name].copy()
        kw[name].flat[0] = np.nan
    elif corruption == "inf_param":
        name = draw(st.sampled_from(list(kw)))
        kw[name] = kw[name].copy()
        kw[name].flat[-1] = np.inf
    elif corruption == "indefinite":
        name = draw(st.sampled_from(["P0", "Q", "R"]))
        kw[name] = kw[name] - 10 * np.abs(kw[name]).max() * np.eye(kw[name].shape[0])
    elif corruption == "asymmetric":
        name = draw(st.sampled_from(["P0", "Q", "R"]))
        k = kw[name].shape[0]
        if k > 1:
            kw[name] = kw[name] + np.triu(np.ones((k, k)), 1) * np.abs(kw[name]).max()
    elif corruption == "wrong_shape":
        name = draw(st.sampled_from(list(kw)))
        kw[name] = np.zeros(tuple(s + 1 for s in kw[name].shape))
    elif corruption == "wrong_rank":
        name = draw(st.sampled_from(list(kw)))
        kw[name] = kw[name].reshape(-1)[:1].reshape(()) if kw[name].ndim == 1 else kw[name][0]
    elif corruption == "unstable_F":
        kw["F"] = 50.0 * np.eye(n)
        y = y * 50.0 ** np.arange(T)[:, None]
    elif corruption == "empty_y":
        y = y[:0]
    elif corruption == "y_rank1":
        y = y[:, 0]
    elif corruption == "y_wrong_m":
        y = np.zeros((T, m + 1))
    elif corruption == "y_inf":
        y = y.copy()
        y.flat[0] = np.inf
    elif corruption == "y_nan_all":
        y = np.full_like(y, np.nan)
    elif corruption == "y_nan_some":
        y = y.copy()
        y[rng.random(y.shape) < 0.4] = np.nan
    elif corruption == "int_dtype":
        kw["F"] = np.eye(n, dtype=np.int64)
        kw["H"] = np.ones((m, n), dtype=np.int32)
        y = np.round(np.clip(y, -1e9, 1e9)).astype(np.int64)
    elif corruption == "noncontig":
        kw["F"] = np.asfortranarray(kw["F"])
        big = np.zeros((T, 2 * m))
        big[:, ::2] = y
        y = big[:, ::2]
    elif corruption == "broadcast":
        y = np.broadcast_to(y, (3,) + y.shape)
    elif corruption in ("singular_R", "zero_R"):
        kw["R"] = np.zeros((m, m)) if corruption == "zero_R" else _spd(rng, m, rank=1) * scale if m > 1 else np.zeros((1, 1))
    elif corruption == "list_input":
        kw = {k: v.tolist() for k, v in kw.items()}
        y = y.tolist()
    elif corruption == "complex":
        kw["F"] = kw["F"] + 1j
    elif corruption == "batch_mismatch":
        kw["m0"] = np.zeros((2, n))
        y = np.zeros((3, T, m))
    if corruption not in ("list_input", "complex", "int_dtype"):
        kw = {k: np.asarray(v).astype(dtype) if np.asarray(v).dtype.kind == "f" else v for k, v in kw.items()}
        y = np.asarray(y).astype(dtype) if np.asarray(y).dtype.kind == "f" else y
    return kw, y, corruption


def _inputs_finite(kw, y):
    try:
        arrs = [np.asarray(v, dtype=float) for v in kw.values()]
    except Exception:
        return False
    return all(np.isfinite(a).all() for a in arrs)


def assert_result_or_error(fn, kw, y, corruption):
    """The contract: a BayesfiltError with a message, or a finite, well-formed result."""
    try:
        model = bayesfilt.LinearGaussianSSM(**kw)
        result = fn(model, y)
    except bayesfilt.BayesfiltError as exc:
        assert str(exc), "an error must carry a message"
        assert "Fix:" in str(exc), f"error without a fix: {exc}"
        return "error"
    # A result: every moment finite (missing data is not a NaN result), covariances symmetric.
    assert _inputs_finite(kw, y), f"non-finite parameters accepted ({corruption})"
    for name in ("means", "covs"):
        arr = getattr(result, name)
        assert np.isfinite(arr).all(), f"{fn.__name__}: silent non-finite {name} ({corruption})"
    assert np.isfinite(result.loglik).all(), f"{fn.__name__}: non-finite loglik ({corruption})"
    covs = result.covs
    scale = np.abs(covs).max() or 1.0
    assert np.abs(covs - np.swapaxes(covs, -1, -2)).max() <= 1e-6 * scale
    assert (np.diagonal(covs, axis1=-2, axis2=-1) >= -1e-6 * scale).all()
    return "result"


def smoothed(model, y):
    """Filter then smooth, returning the smoother result with the filter's loglik."""
    return bayesfilt.rts_smoother(model, bayesfilt.kalman_filter(model, y))


FILTERS = {"kalman_filter": bayesfilt.kalman_filter, "rts_smoother": smoothed}
for _name in ("information_filter", "sqrt_filter", "parallel_filter"):
    if hasattr(bayesfilt, _name):
        FILTERS[_name] = getattr(bayesfilt, _name)


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_filters_result_or_named_error(name, record_property):
    outcomes = {"error": 0, "result": 0}
    fn = FILTERS[name]

    @FUZZ
    @given(model_and_data())
    def run(case):
        kw, y, corruption = case
        outcomes[assert_result_or_error(fn, kw, y, corruption)] += 1

    run()
    record_property("fuzz_cases", sum(outcomes.values()))
    assert outcomes["result"] > 0 and outcomes["error"] > 0, outcomes


@FUZZ
@given(st.one_of(st.integers(-3, 0), st.floats(allow_nan=True), st.just("10"), st.just(None)),
       st.sampled_from([None, 0, "x"]))
def test_simulate_bad_arguments(T, seed):
    model = bayesfilt.models.constant_velocity()
    with pytest.raises(bayesfilt.BayesfiltError):
        model.simulate(T, seed=seed)


@pytest.mark.parametrize("t", [-1, 1.5, "1", 10])
def test_predict_update_bad_step(t):
    T = 3
    model = bayesfilt.LinearGaussianSSM(m0=np.zeros(1), P0=np.eye(1), F=np.ones((T, 1, 1)), Q=np.eye(1),
                                        H=np.eye(1), R=np.eye(1), time_varying=("F",))
    g = bayesfilt.Gaussian(np.zeros(1), np.eye(1))
    with pytest.raises(bayesfilt.BayesfiltError):
        bayesfilt.predict(g, model, t)
    with pytest.raises(bayesfilt.BayesfiltError):
        bayesfilt.update(g, np.zeros(1), model, t if t != 1 else -1)


def test_predict_update_bad_belief_and_obs():
    model = bayesfilt.models.constant_velocity()
    with pytest.raises(bayesfilt.BayesfiltError, match="gaussian"):
        bayesfilt.predict(bayesfilt.Gaussian(np.zeros(3), np.eye(3)), model, 1)
    with pytest.raises(bayesfilt.BayesfiltError, match="y_t"):
        bayesfilt.update(bayesfilt.Gaussian(np.zeros(4), np.eye(4)), np.zeros(3), model, 0)


def test_wrong_argument_types_are_type_errors():
    model = bayesfilt.models.constant_velocity()
    with pytest.raises(bayesfilt.BayesfiltTypeError, match="model"):
        bayesfilt.kalman_filter("not a model", np.zeros((2, 2)))
    with pytest.raises(bayesfilt.BayesfiltTypeError, match="y"):
        bayesfilt.kalman_filter(model, np.array([["a", "b"]]))
    with pytest.raises(bayesfilt.BayesfiltTypeError, match="filter_result"):
        bayesfilt.rts_smoother(model, None)
