"""Parallel-in-time filters and smoothers against the sequential references (float64 parity chain).

sequential fold = tree scan = chunked scan = kalman_filter / information_filter / rts_smoother,
for the covariance form, the information form, the Riccati (shared-covariance) method and the
torch backend; plus associativity/identity of every combine (Hypothesis) and input errors.
"""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import bayesfilt
from bayesfilt import BayesfiltError, BayesfiltTypeError, BayesfiltValueError
from bayesfilt.scan import SCHEDULES
from bayesfilt.scan.covariance import conditional_elements, filter_combine, filter_identity, affine_combine
from bayesfilt.scan.information import info_combine, info_elements, info_identity
from bayesfilt.scan.smoother import smoother_combine, smoother_identity
from bayesfilt.tolerances import tolerance
from conftest import random_model

TOL = tolerance("filter", "numpy", "float64").bound


def close(a, b, tol=TOL):
    """max |a - b| / max(|b|, 1) <= tol (the 'max_rel' metric of bayesfilt.tolerances)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    assert a.shape == b.shape, (a.shape, b.shape)
    if a.size:
        err = (np.abs(a - b) / np.maximum(np.abs(b), 1.0)).max()
        assert err <= tol, err


def scale_close(a, b, tol):
    """max |a - b| / max |b| <= tol (the 'scale_rel' metric of bayesfilt.tolerances)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    err = np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)
    assert err <= tol, err


def check_filter(res, ref, info=False):
    for name in ("means", "covs", "predicted_means", "predicted_covs", "loglik", "loglik_terms"):
        close(getattr(res, name), getattr(ref, name))
    if info:
        close(res.info_vectors, ref.info_vectors)
        close(res.precisions, ref.precisions)


def check_smoother(res, ref):
    for name in ("means", "covs", "cross_covs", "gains", "loglik"):
        close(getattr(res, name), getattr(ref, name))


def problem(T, seed, n=3, m=2, batch=(2,), tv=False, bias=True, missing=True):
    rng = np.random.default_rng(seed)
    kw = dict(time_varying=("F", "Q", "H", "R", "b", "d"), T=T) if tv else {}
    model = random_model(rng, n, m, bias=bias, **kw)
    _, y = model.simulate(T, seed=seed, batch_shape=batch)
    if missing:
        y[..., ::4, 0] = np.nan                                # partial
        if T > 2:
            y[..., T // 2, :] = np.nan                         # whole vector
    return model, y


def check_every_schedule(model, y, y_in, schedules):
    """parallel_filter / parallel_smoother of ``y_in`` (y as given to the backend) in both forms and every
    schedule against the sequential references on the NumPy ``y``."""
    ref = bayesfilt.kalman_filter(model, y)
    iref = bayesfilt.information_filter(model, y)
    sref = bayesfilt.rts_smoother(model, ref)
    for schedule in schedules:
        for form, fref in (("covariance", ref), ("information", iref)):
            res = bayesfilt.parallel_filter(model, y_in, form=form, schedule=schedule)
            check_filter(res, fref, info=form == "information")
            check_smoother(bayesfilt.parallel_smoother(model, y_in, form=form, schedule=schedule), sref)


@pytest.mark.parametrize("T", [1, 2, 3, 7, 64, 1000, 4097])
def test_parity_chain_float64(T):
    """Every schedule of both forms equals the sequential references (means, covs, loglik, smoother)."""
    big = T >= 1000
    model, y = problem(T, seed=T, batch=() if big else (2,), tv=not big)
    check_every_schedule(model, y, y, ("tree", "chunked") if big else SCHEDULES)


def test_sequential_fold_long():
    """The reference schedule itself (the left fold of the same combine) on a long series."""
    model, y = problem(1000, seed=3, batch=())
    ref = bayesfilt.kalman_filter(model, y)
    check_filter(bayesfilt.parallel_filter(model, y, schedule="sequential"), ref)
    check_smoother(bayesfilt.parallel_smoother(model, y, schedule="sequential"),
                   bayesfilt.rts_smoother(model, ref))


def test_carried_loglik_equals_cumulative_terms():
    """The c carried through the elements is log p(y_{1:t}) at every prefix (float64)."""
    from bayesfilt.scan.covariance import scan_filter
    from bayesfilt.scan.information import scan_info_filter
    model, y = problem(64, seed=5, batch=(3,))
    ref = bayesfilt.kalman_filter(model, y)
    yt = np.moveaxis(y, -2, 0)
    for run in (scan_filter, scan_info_filter):
        for schedule in SCHEDULES:
            out = run(model, yt, schedule)
            close(np.moveaxis(out["cum_loglik"], 0, -1), np.cumsum(ref.loglik_terms, -1))


def test_parameter_batch_axes_and_broadcasting():
    """Parameters with their own batch axes broadcast against y's."""
    rng = np.random.default_rng(7)
    models = [random_model(rng, 2, 1, bias=True) for _ in range(3)]
    stack = {k: np.stack([getattr(mm, k) for mm in models]) for k in ("m0", "P0", "F", "Q", "H", "R", "b", "d")}
    model = bayesfilt.LinearGaussianSSM(**stack)                # batch (3,)
    _, y = models[0].simulate(20, seed=1, batch_shape=(4, 1))  # y batch (4, 1) -> (4, 3)
    y[..., 5, 0] = np.nan
    ref = bayesfilt.kalman_filter(model, y)
    assert ref.means.shape == (4, 3, 20, 2)
    for form in ("covariance", "information"):
        check_filter(bayesfilt.parallel_filter(model, y, form=form, schedule="tree"), ref)
    check_smoother(bayesfilt.parallel_smoother(model, y), bayesfilt.rts_smoother(model, ref))


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_model_batch_axes_with_unbatched_y(backend):
    """Parameters batched (3,) with y unbatched (T, m): y broadcasts to the model's batch (DESIGN.md)."""
    rng = np.random.default_rng(11)
    base = random_model(rng, 2, 1, bias=True)
    model = base.replace(R=np.stack([base.R, 2.0 * base.R, 5.0 * base.R]))   # batch (3,) only in R
    _, y = base.simulate(17, seed=2)
    y[4, 0] = np.nan
    assert bayesfilt.kalman_filter(model, y).means.shape == (3, 17, 2)
    yy = y
    if backend == "torch":
        torch = pytest.importorskip("torch")
        yy = torch.as_tensor(y)
    check_every_schedule(model, y, yy, SCHEDULES)


def test_torch_y_batch_mismatch_is_named():
    """y batch (2,) against parameter batch (3,) on torch: the same named error as NumPy."""
    torch = pytest.importorskip("torch")
    model, _ = problem(5, seed=1, batch=())
    model = model.replace(R=np.stack([model.R] * 3))
    y = torch.zeros(2, 5, model.m, dtype=torch.float64)
    for form in ("covariance", "information"):
        with pytest.raises(BayesfiltValueError, match="broadcast"):
            bayesfilt.parallel_filter(model, y, form=form)
    with pytest.raises(BayesfiltValueError, match="broadcast"):
        bayesfilt.parallel_filter(model, y.numpy())


@pytest.mark.parametrize("tv", [False, True])
def test_riccati_method(tv):
    """Shared covariances (one Riccati recursion) + affine mean scan equal the reference."""
    model, y = problem(300, seed=11, batch=(5,), tv=tv, missing=False)
    ref = bayesfilt.kalman_filter(model, y)
    for schedule in SCHEDULES:
        check_filter(bayesfilt.parallel_filter(model, y, method="riccati", schedule=schedule), ref)
    from bayesfilt.scan.covariance import riccati_filter
    out = riccati_filter(model, np.moveaxis(y, -2, 0))
    assert (out["steady_from"] < 300) == (not tv)              # stops at the fixed point when time-invariant


def test_riccati_steady_state_cv_model():
    model = bayesfilt.models.constant_velocity(q=0.05, r=4.0)
    _, y = model.simulate(3000, seed=2)
    ref = bayesfilt.kalman_filter(model, y)
    check_filter(bayesfilt.parallel_filter(model, y), ref)     # auto -> riccati
    check_smoother(bayesfilt.parallel_smoother(model, y), bayesfilt.rts_smoother(model, ref))


def test_riccati_fixed_point_with_disparate_state_scales():
    """Two independent states with variances ~1e6 and ~1e-6: the fixed-point test of the shared
    covariances judged every entry against the largest and stopped after 22 steps, before the small
    state had settled (means 1e-4 off the reference; found in review, session 8)."""
    big, small = 1e6, 1e-6
    model = bayesfilt.LinearGaussianSSM(m0=np.zeros(2), P0=np.diag([big, small]), F=np.diag([0.9, 1.0]),
                                       Q=np.diag([big, 1e-3 * small]), H=np.eye(2), R=np.diag([big, small]))
    _, y = model.simulate(400, seed=0, batch_shape=(3,))
    ref = bayesfilt.kalman_filter(model, y)
    check_filter(bayesfilt.parallel_filter(model, y, method="riccati"), ref)


def test_information_form_ignores_the_unused_first_q():
    """Entry 0 of a time-varying Q is unused (model.py): a singular one must not make the
    information form refuse the model (it did; found in review, session 8)."""
    T, n = 6, 2
    Q = np.stack([np.eye(n) * 0.3] * T)
    Q[0] = 0.0
    model = bayesfilt.LinearGaussianSSM(m0=np.zeros(n), P0=np.eye(n), F=np.stack([0.9 * np.eye(n)] * T), Q=Q,
                                        H=np.eye(n)[:1], R=np.eye(1), time_varying=("F", "Q"))
    _, y = model.simulate(T, seed=1)
    ref = bayesfilt.information_filter(model, y)
    res = bayesfilt.parallel_filter(model, y, form="information")
    assert abs(float(res.loglik) - float(ref.loglik)) < 1e-9 * abs(float(ref.loglik))
    Q[1] = 0.0                                          # a singular Q that is used is still refused
    with pytest.raises(BayesfiltValueError, match="singular Q"):
        bayesfilt.parallel_filter(model.replace(Q=Q), y, form="information")


def test_chunk_size_is_validated():
    """chunk_size: NumPy integers are accepted (np.int64(3) was refused), 0 and floats are refused by name."""
    model = bayesfilt.models.constant_velocity(q=0.1, r=1.0)
    _, y = model.simulate(20, seed=0)
    ref = bayesfilt.parallel_filter(model, y, schedule="chunked", chunk_size=3, method="elements")
    out = bayesfilt.parallel_filter(model, y, schedule="chunked", chunk_size=np.int64(3), method="elements")
    assert np.array_equal(out.means, ref.means)
    for bad in (0, 2.5, True):
        with pytest.raises(BayesfiltError, match="chunk_size"):
            bayesfilt.parallel_filter(model, y, schedule="chunked", chunk_size=bad)
        with pytest.raises(BayesfiltError, match="chunk_size"):
            bayesfilt.parallel_smoother(model, y, schedule="chunked", chunk_size=bad)


def test_singular_q_covariance_form():
    """White-noise-acceleration style singular Q: the covariance form handles it; the information form refuses."""
    rng = np.random.default_rng(4)
    model = random_model(rng, 3, 1, psd_q=True)
    _, y = model.simulate(40, seed=4)
    y[7] = np.nan
    ref = bayesfilt.kalman_filter(model, y)
    check_filter(bayesfilt.parallel_filter(model, y, schedule="tree"), ref)
    check_smoother(bayesfilt.parallel_smoother(model, y, schedule="chunked"), bayesfilt.rts_smoother(model, ref))
    with pytest.raises(BayesfiltValueError, match="singular Q"):
        bayesfilt.parallel_filter(model, y, form="information")


def test_torch_backend_float64_and_gradients():
    torch = pytest.importorskip("torch")
    model, y = problem(37, seed=9, batch=(2,), tv=True)
    ref = bayesfilt.kalman_filter(model, y)
    sref = bayesfilt.rts_smoother(model, ref)
    yt = torch.tensor(y)
    for form in ("covariance", "information"):
        for schedule in SCHEDULES:
            res = bayesfilt.parallel_filter(model, yt, form=form, schedule=schedule)
            assert isinstance(res.means, torch.Tensor) and res.means.dtype == torch.float64
            check_filter(type(ref)(**{k: (v.numpy() if isinstance(v, torch.Tensor) else v)
                                      for k, v in res.__dict__.items()}), ref)
            sm = bayesfilt.parallel_smoother(model, yt, form=form, schedule=schedule)
            close(sm.means.numpy(), sref.means)
            close(sm.covs.numpy(), sref.covs)
    # autograd: d loglik / d y against central finite differences of the NumPy reference
    small, ys = problem(6, seed=2, batch=(), missing=False)
    yv = torch.tensor(ys, requires_grad=True)
    ll = bayesfilt.parallel_filter(small, yv, schedule="tree").loglik
    (grad,) = torch.autograd.grad(ll, yv)
    h = 1e-6
    fd = np.zeros_like(ys)
    for idx in np.ndindex(ys.shape):
        e = np.zeros_like(ys)
        e[idx] = h
        fd[idx] = (bayesfilt.kalman_filter(small, ys + e).loglik - bayesfilt.kalman_filter(small, ys - e).loglik) / (2 * h)
    np.testing.assert_allclose(grad.numpy(), fd, rtol=1e-5, atol=1e-6)


def test_float32_cv_model_torch_cpu():
    """float32 (torch CPU, tree and chunked) within the promised 1e-3 of the float64 reference on the same data."""
    torch = pytest.importorskip("torch")
    model = bayesfilt.models.constant_velocity(q=0.05, r=4.0)
    _, y = model.simulate(2048, seed=0)
    y32 = y.astype(np.float32)
    ref = bayesfilt.parallel_filter(model, y32.astype(np.float64))          # riccati, float64
    tol = tolerance("filter", "torch", "float32")
    assert tol.metric == "scale_rel"
    for schedule in ("tree", "chunked"):
        res = bayesfilt.parallel_filter(model, torch.tensor(y32), schedule=schedule)
        assert res.means.dtype == torch.float32
        scale_close(res.means.numpy(), ref.means, tol.bound)
        scale_close(res.covs.numpy(), ref.covs, tol.bound)
        assert np.isfinite(float(res.loglik))
        scale_close(float(res.loglik), ref.loglik, tol.bound)


# ------------------------------------------------------------------ combine laws (Hypothesis)
def _random_elements(seed, n, m, k=3):
    rng = np.random.default_rng(seed)
    model = random_model(rng, n, m, bias=True)
    _, y = model.simulate(k + 1, seed=seed)
    P = {nm: getattr(model, nm)[None] for nm in ("F", "Q", "H", "R", "b", "d")}
    els = conditional_elements(y[1:], P["F"], P["Q"], P["b"], P["H"], P["R"], P["d"])
    return [tuple(a[i] for a in els) for i in range(k)], model, y


def _allclose(e1, e2, rtol=1e-9, atol=1e-9):
    return all(np.allclose(a, b, rtol=rtol, atol=atol) for a, b in zip(e1, e2))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 4), m=st.integers(1, 3))
def test_filter_combine_associative_with_identity(seed, n, m):
    (a, b, c), _, _ = _random_elements(seed, n, m)
    left = filter_combine(filter_combine(a, b), c)
    right = filter_combine(a, filter_combine(b, c))
    assert _allclose(left, right)
    e = filter_identity(n, (), a[0])
    assert _allclose(filter_combine(e, a), a, 1e-12, 1e-12) and _allclose(filter_combine(a, e), a, 1e-12, 1e-12)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 4), m=st.integers(1, 3))
def test_info_combine_associative_with_identity(seed, n, m):
    _, model, y = _random_elements(seed, n, m)
    els = info_elements(model, y[:, None, :])
    a, b, c = (tuple(x[i, 0] for x in els) for i in (1, 2, 3))
    assert _allclose(info_combine(info_combine(a, b), c), info_combine(a, info_combine(b, c)), 1e-8, 1e-8)
    e = info_identity(n, (), a[0], strength=1e9)               # the point mass as a limit: O(1/s)
    assert _allclose(info_combine(e, a), a, 1e-5, 1e-5) and _allclose(info_combine(a, e), a, 1e-5, 1e-5)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 4))
def test_smoother_and_affine_combine_associative_with_identity(seed, n):
    rng = np.random.default_rng(seed)
    els = []
    for _ in range(3):
        G = rng.standard_normal((n, n)) / n
        Lh = rng.standard_normal((n, n))
        els.append((G, rng.standard_normal(n), Lh @ Lh.T))
    a, b, c = els
    assert _allclose(smoother_combine(smoother_combine(a, b), c), smoother_combine(a, smoother_combine(b, c)))
    e = smoother_identity(n, (), a[0])
    assert _allclose(smoother_combine(e, a), a, 0, 1e-15) and _allclose(smoother_combine(a, e), a, 0, 1e-15)
    aa, bb, cc = ((x[0], x[1]) for x in els)
    assert _allclose(affine_combine(affine_combine(aa, bb), cc), affine_combine(aa, affine_combine(bb, cc)))


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_information_form_raises_on_lost_conditioning(backend):
    """One coordinate of a CV model missing for 10^4 steps: the canonical scan cannot hold the precision
    (it returned means off by up to 100 % and a log-likelihood off by 0.3 nats); it must raise a named
    error pointing to the covariance form, which stays exact (checked against kalman_filter)."""
    model = bayesfilt.models.constant_velocity(q=0.01, r=1.0, dim=2)
    _, y = model.simulate(12_000, seed=7)
    y[1000:11_000, 1] = np.nan
    ref = bayesfilt.kalman_filter(model, y)
    schedules = SCHEDULES
    if backend == "torch":
        torch = pytest.importorskip("torch")
        y = torch.as_tensor(y)
        schedules = ("tree", "chunked")                           # the torch left fold over 12 000 steps is slow
    for schedule in schedules:
        with pytest.raises(BayesfiltValueError, match="form='covariance'"):
            bayesfilt.parallel_filter(model, y, form="information", schedule=schedule)
    with pytest.raises(BayesfiltValueError, match="form='covariance'"):
        bayesfilt.parallel_smoother(model, y, form="information")
    if backend == "numpy":
        close(bayesfilt.parallel_filter(model, y, form="covariance").means, ref.means)


# ------------------------------------------------------------------ errors
def test_input_errors():
    model, y = problem(5, seed=1, batch=())
    with pytest.raises(BayesfiltValueError, match="form"):
        bayesfilt.parallel_filter(model, y, form="joseph")
    with pytest.raises(BayesfiltValueError, match="backend"):
        bayesfilt.parallel_filter(model, y, backend="cuda")
    with pytest.raises(BayesfiltValueError, match="schedule"):
        bayesfilt.parallel_smoother(model, y, schedule="blelloch")
    with pytest.raises(BayesfiltTypeError, match="model"):
        bayesfilt.parallel_filter("model", y)
    with pytest.raises(BayesfiltValueError, match="y"):
        bayesfilt.parallel_filter(model, y[:, :1])
    with pytest.raises(BayesfiltValueError, match="method"):
        bayesfilt.parallel_filter(model, y, method="riccati")      # y has NaN
    with pytest.raises(BayesfiltValueError, match="diffuse"):
        bayesfilt.parallel_filter(model.replace(diffuse=True, P0=0 * model.P0), y)
    torch = pytest.importorskip("torch")
    with pytest.raises(BayesfiltTypeError, match="torch"):
        bayesfilt.parallel_filter(model, torch.tensor(y), backend="numpy")


def test_argument_types_are_checked_not_coerced():
    """validate must be a bool ("no" is truthy and was read as True), chunk_size an integer (NumPy
    integers too; True was taken as 1) and only with schedule='chunked' (it was ignored by 'tree',
    and by 'auto' when that resolved to the tree or the fold)."""
    model = bayesfilt.models.constant_velocity(q=0.1, r=1.0)
    _, y = model.simulate(9, seed=0)
    for kw in ({"validate": "no"}, {"chunk_size": True}, {"chunk_size": 2, "schedule": "tree"},
               {"chunk_size": 2, "schedule": "sequential"}, {"chunk_size": 2}):           # "auto" may not chunk
        with pytest.raises(BayesfiltError, match=next(iter(kw))):
            bayesfilt.parallel_filter(model, y, **kw)
    with pytest.raises(BayesfiltError, match="validate"):
        bayesfilt.kalman_filter(model, y, validate="no")
    ref = bayesfilt.kalman_filter(model, y)
    got = bayesfilt.parallel_filter(model, y, schedule="chunked", chunk_size=np.int64(2))
    np.testing.assert_allclose(got.means, ref.means, rtol=1e-10, atol=1e-12)
