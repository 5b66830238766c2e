"""RTS smoother: against filterpy 2.0, a brute-force joint Gaussian, batches and missing data."""

import numpy as np
import pytest

import bayesfilt
from conftest import random_model
from joint_reference import joint_posterior

filterpy = pytest.importorskip("filterpy.kalman")


def filterpy_smooth(model, res):
    """filterpy's ``KalmanFilter.rts_smoother`` on our filtered moments.

    Indexing: the *method* ``KalmanFilter.rts_smoother(Xs, Ps, Fs, Qs)`` predicts step
    k+1 from k with ``Fs[k+1]``, ``Qs[k+1]``, i.e. entry k maps x_{k-1} to x_k: the same as
    our time-varying F (entry t maps x_{t-1} to x_t), so our arrays go in unchanged. (The
    module-level ``filterpy.kalman.rts_smoother`` uses ``Fs[k]`` instead, i.e. entry k maps
    x_k to x_{k+1}; it would need our F shifted by one.)
    """
    T, n = res.means.shape[-2:]
    Fs = np.stack([model.param("F", t) for t in range(T)]) if "F" in model.time_varying else [model.F] * T
    Qs = np.stack([model.param("Q", t) for t in range(T)]) if "Q" in model.time_varying else [model.Q] * T
    kf = filterpy.KalmanFilter(dim_x=n, dim_z=model.m)
    xs, Ps, _, _ = kf.rts_smoother(res.means.copy(), res.covs.copy(), Fs=Fs, Qs=Qs)
    return xs, Ps


CASES = [(1, 1, 1, ()), (2, 1, 2, ()), (3, 2, 17, ()), (4, 3, 40, ("F", "Q")), (2, 4, 9, ("F",)), (5, 2, 31, ())]


@pytest.mark.parametrize("n,m,T,tv", CASES)
def test_matches_filterpy(rng, n, m, T, tv):
    model = random_model(rng, n, m, time_varying=tv, T=T, bias=bool(tv))
    _, y = model.simulate(T, seed=int(rng.integers(1 << 30)))
    res = bayesfilt.kalman_filter(model, y)
    sm = bayesfilt.rts_smoother(model, res)
    xs, Ps = filterpy_smooth(model, res)
    # filterpy's smoother does not take b: with a bias the means only match when b is
    # handled outside, so compare covariances always and means only without bias.
    np.testing.assert_allclose(sm.covs, Ps, atol=1e-9, rtol=0)
    if model.b is None:
        np.testing.assert_allclose(sm.means, xs, atol=1e-9, rtol=0)
    assert sm.means.shape == (T, n) and sm.cross_covs.shape == (T - 1, n, n)


@pytest.mark.parametrize("n,m,T,tv,bias", [(1, 1, 1, (), False), (2, 1, 6, (), True), (3, 2, 5, ("F", "H"), True),
                                          (2, 3, 4, ("F", "Q", "R"), False)])
def test_matches_joint_gaussian(rng, n, m, T, tv, bias):
    """Means, covariances and lag-one cross-covariances equal the brute-force joint posterior."""
    model = random_model(rng, n, m, time_varying=tv, T=T, bias=bias)
    _, y = model.simulate(T, seed=int(rng.integers(1 << 30)))
    if T > 2:
        y[1] = np.nan                                          # a whole missing step
        y[2, 0] = np.nan                                       # and a missing component
    sm = bayesfilt.rts_smoother(model, bayesfilt.kalman_filter(model, y))
    mean, cov, ll = joint_posterior(model, y)
    np.testing.assert_allclose(sm.means, mean, atol=1e-9, rtol=0)
    np.testing.assert_allclose(sm.covs, np.stack([cov[t, :, t, :] for t in range(T)]), atol=1e-9, rtol=0)
    cross = np.stack([cov[t + 1, :, t, :] for t in range(T - 1)]) if T > 1 else np.zeros((0, n, n))
    np.testing.assert_allclose(sm.cross_covs, cross, atol=1e-9, rtol=0)   # Cov[x_{t+1}, x_t | y_{1:T}]
    np.testing.assert_allclose(sm.loglik, ll, atol=1e-9, rtol=1e-12)


def test_time_varying_F_indexing(rng):
    """Entry t of F maps x_{t-1} to x_t: shifting the F sequence by one must change the result."""
    T = 6
    model = random_model(rng, 2, 1, time_varying=("F",), T=T)
    _, y = model.simulate(T, seed=5)
    sm = bayesfilt.rts_smoother(model, bayesfilt.kalman_filter(model, y))
    mean, cov, _ = joint_posterior(model, y)
    np.testing.assert_allclose(sm.means, mean, atol=1e-9)
    shifted = model.replace(F=np.roll(model.F, 1, axis=0))
    sm2 = bayesfilt.rts_smoother(shifted, bayesfilt.kalman_filter(shifted, y))
    assert np.abs(sm2.means - mean).max() > 1e-3


def test_missing_data_against_filterpy(rng):
    model = random_model(rng, 3, 2)
    _, y = model.simulate(20, seed=7)
    y[[0, 5, 6, 19]] = np.nan
    y[10, 1] = np.nan
    res = bayesfilt.kalman_filter(model, y)
    sm = bayesfilt.rts_smoother(model, res)
    xs, Ps = filterpy_smooth(model, res)
    np.testing.assert_allclose(sm.means, xs, atol=1e-9)
    np.testing.assert_allclose(sm.covs, Ps, atol=1e-9)


def test_batched_equals_each_series(rng):
    model = random_model(rng, 3, 2, bias=True, time_varying=("F",), T=15)
    _, y = model.simulate(15, seed=11, batch_shape=(2, 3))
    y[0, 1, 4] = np.nan
    y[1, 2, 0, 1] = np.nan
    sm = bayesfilt.rts_smoother(model, bayesfilt.kalman_filter(model, y))
    for i in range(2):
        for j in range(3):
            one = bayesfilt.rts_smoother(model, bayesfilt.kalman_filter(model, y[i, j]))
            np.testing.assert_allclose(sm.means[i, j], one.means, atol=1e-12)
            np.testing.assert_allclose(sm.covs[i, j], one.covs, atol=1e-12)
            np.testing.assert_allclose(sm.cross_covs[i, j], one.cross_covs, atol=1e-12)


def test_singular_process_noise(rng):
    """A constant-velocity model (rank-deficient discretised Q at q=0 for one axis) smooths finitely."""
    model = bayesfilt.models.constant_velocity(dt=0.5, q=0.0, r=0.3)
    _, y = model.simulate(12, seed=2)
    res = bayesfilt.kalman_filter(model, y)
    sm = bayesfilt.rts_smoother(model, res)
    xs, Ps = filterpy_smooth(model, res)
    assert np.isfinite(sm.means).all()
    np.testing.assert_allclose(sm.means, xs, atol=1e-8)
    np.testing.assert_allclose(sm.covs, Ps, atol=1e-8)


def test_rejects_bad_inputs(rng):
    model = random_model(rng, 2, 1)
    _, y = model.simulate(4, seed=0)
    res = bayesfilt.kalman_filter(model, y)
    with pytest.raises(TypeError, match="filter_result"):
        bayesfilt.rts_smoother(model, {"means": res.means})
    with pytest.raises(ValueError, match="filter_result"):
        bayesfilt.rts_smoother(random_model(rng, 3, 1), res)


def test_rejects_torch_filter_result(rng):
    """A FilterResult of torch tensors (parallel_filter on torch input) is a named type error, not numpy's."""
    torch = pytest.importorskip("torch")
    model = random_model(rng, 2, 1)
    _, y = model.simulate(6, seed=0)
    res = bayesfilt.parallel_filter(model, torch.as_tensor(y))
    with pytest.raises(bayesfilt.BayesfiltTypeError, match="filter_result.*parallel_smoother"):
        bayesfilt.rts_smoother(model, res)


def test_shared_covariance_batch(rng):
    """A batch without missing data and with unbatched parameters (covariances shared by all
    series, returned as broadcast views) smooths like each series alone."""
    model = random_model(rng, 3, 2, bias=True)
    model = model.replace(m0=rng.standard_normal((5, 3)), b=rng.standard_normal((5, 3)))   # per-series means only
    _, y = model.simulate(12, seed=4)
    res = bayesfilt.kalman_filter(model, y)
    assert res.covs.strides[0] == 0                            # one covariance path, broadcast
    sm = bayesfilt.rts_smoother(model, res)
    for i in range(5):
        one_model = model.replace(m0=model.m0[i], b=model.b[i])
        one = bayesfilt.rts_smoother(one_model, bayesfilt.kalman_filter(one_model, y[i]))
        np.testing.assert_allclose(sm.means[i], one.means, atol=1e-12)
        np.testing.assert_allclose(sm.covs[i], one.covs, atol=1e-12)
        np.testing.assert_allclose(sm.cross_covs[i], one.cross_covs, atol=1e-12)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_known_constant_state_parallel_backends(backend):
    """A state known exactly (zero prior and process variance: P0 = diag(1, 0), Q = diag(0.1, 0)) makes
    every predicted covariance singular; the gains then use the pseudo-inverse on every backend:
    rts_smoother = brute-force joint posterior, and parallel_smoother (each schedule) = rts_smoother.
    The batch pairs the singular model with a regular one, so the fallback acts per batch element."""
    P0 = np.stack([np.diag([1.0, 0.0]), np.eye(2)])
    Q = np.stack([np.diag([0.1, 0.0]), np.diag([0.1, 0.2])])
    model = bayesfilt.LinearGaussianSSM(m0=np.array([0.0, 0.5]), P0=P0, F=np.eye(2), Q=Q,
                                        H=np.array([[1.0, 1.0]]), R=np.eye(1))
    _, y = bayesfilt.LinearGaussianSSM(m0=np.array([0.0, 0.5]), P0=P0[0], F=np.eye(2), Q=Q[0],
                                       H=np.array([[1.0, 1.0]]), R=np.eye(1)).simulate(9, seed=3)
    y[4] = np.nan
    ref = bayesfilt.rts_smoother(model, bayesfilt.kalman_filter(model, y))
    # independent reference: x2 = 0.5 exactly, so x1 follows the scalar model y - 0.5 = x1 + noise
    scalar = bayesfilt.LinearGaussianSSM(m0=np.zeros(1), P0=np.eye(1), F=np.eye(1), Q=0.1 * np.eye(1),
                                         H=np.eye(1), R=np.eye(1))
    mean, cov, _ = joint_posterior(scalar, y - 0.5)
    np.testing.assert_allclose(ref.means[0, :, 0], mean[:, 0], atol=1e-9, rtol=0)
    np.testing.assert_allclose(ref.means[0, :, 1], 0.5, atol=1e-12, rtol=0)
    np.testing.assert_allclose(ref.covs[0, :, 0, 0], [cov[t, 0, t, 0] for t in range(9)], atol=1e-9, rtol=0)
    np.testing.assert_allclose(ref.covs[0, :, :, 1], 0.0, atol=1e-12)
    yy = y
    if backend == "torch":
        torch = pytest.importorskip("torch")
        yy = torch.as_tensor(y)
    for schedule in ("sequential", "tree", "chunked"):
        sm = bayesfilt.parallel_smoother(model, yy, schedule=schedule)
        for name in ("means", "covs", "cross_covs", "gains"):
            np.testing.assert_allclose(np.asarray(getattr(sm, name)), getattr(ref, name), atol=1e-12, rtol=1e-9)
