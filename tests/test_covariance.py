"""Covariance-form filter: against filterpy, batches, missing data, predict/update."""

import numpy as np
import pytest

import bayesfilt
from conftest import random_model

filterpy = pytest.importorskip("filterpy.kalman")


def filterpy_run(model, y):
    """Run filterpy's KalmanFilter on one series with our prior convention.

    filterpy updates with y_1 only after a first predict; we feed it y_1 by an
    explicit update from (m0, P0) and then its predict/update loop for t >= 2.
    """
    n, m = model.n, model.m
    kf = filterpy.KalmanFilter(dim_x=n, dim_z=m)
    kf.x, kf.P = model.m0.copy(), model.P0.copy()
    kf.F, kf.Q, kf.H, kf.R = model.F, model.Q, model.H, model.R
    means, covs, ll = [], [], 0.0
    for t in range(len(y)):
        if t > 0:
            kf.predict()
        kf.update(y[t])
        means.append(kf.x.copy())
        covs.append(kf.P.copy())
        ll += kf.log_likelihood
    return np.array(means), np.array(covs), ll


@pytest.mark.parametrize("n,m,T", [(1, 1, 1), (2, 1, 7), (3, 2, 64), (4, 3, 33), (2, 4, 5)])
def test_matches_filterpy(rng, n, m, T):
    model = random_model(rng, n, m)
    _, y = model.simulate(T, seed=int(rng.integers(1 << 30)))
    res = bayesfilt.kalman_filter(model, y)
    fm, fP, fll = filterpy_run(model, y)
    np.testing.assert_allclose(res.means, fm, atol=1e-9, rtol=0)
    np.testing.assert_allclose(res.covs, fP, atol=1e-9, rtol=0)
    np.testing.assert_allclose(res.loglik, fll, atol=1e-9, rtol=1e-12)


def test_batch_equals_each_series(rng):
    model = random_model(rng, 3, 2, bias=True)
    _, y = model.simulate(25, seed=1, batch_shape=(4, 2))
    y[0, 1, 3] = np.nan
    y[2, 0, 7, 1] = np.nan
    res = bayesfilt.kalman_filter(model, y)
    for i in range(4):
        for j in range(2):
            one = bayesfilt.kalman_filter(model, y[i, j])
            np.testing.assert_allclose(res.means[i, j], one.means, atol=1e-12)
            np.testing.assert_allclose(res.covs[i, j], one.covs, atol=1e-12)
            np.testing.assert_allclose(res.loglik[i, j], one.loglik, atol=1e-10)


def test_partial_missing_equals_reduced_model(rng):
    """A step with component 1 missing equals an update with H, R restricted to component 0."""
    model = random_model(rng, 3, 2)
    _, y = model.simulate(2, seed=3)
    y[1, 1] = np.nan
    res = bayesfilt.kalman_filter(model, y)
    g = bayesfilt.Gaussian(res.predicted_means[1], res.predicted_covs[1])
    sub = model.replace(H=model.H[:1], R=model.R[:1, :1])
    g1, ll = bayesfilt.update_with_loglik(g, y[1, :1], sub, 1)
    np.testing.assert_allclose(res.means[1], g1.mean, atol=1e-12)
    np.testing.assert_allclose(res.loglik_terms[1], ll, atol=1e-12)


def test_all_missing_is_prediction(rng):
    model = random_model(rng, 2, 2)
    _, y = model.simulate(3, seed=0)
    y[1] = np.nan
    res = bayesfilt.kalman_filter(model, y)
    np.testing.assert_allclose(res.means[1], res.predicted_means[1])
    np.testing.assert_allclose(res.covs[1], res.predicted_covs[1])
    assert res.loglik_terms[1] == 0.0


def test_predict_update_compose_to_filter(rng):
    model = random_model(rng, 2, 1, bias=True)
    _, y = model.simulate(5, seed=0)
    res = bayesfilt.kalman_filter(model, y)
    g = bayesfilt.Gaussian(model.m0, model.P0)
    for t in range(5):
        if t:
            g = bayesfilt.predict(g, model, t)
        g = bayesfilt.update(g, y[t], model, t)
        np.testing.assert_allclose(g.mean, res.means[t], atol=1e-12)


def test_time_varying_declared(rng):
    T = 6
    model = random_model(rng, 2, 2, time_varying=("F", "H", "R"), T=T)
    _, y = model.simulate(T, seed=0)
    res = bayesfilt.kalman_filter(model, y)
    g = bayesfilt.Gaussian(model.m0, model.P0)
    for t in range(T):
        if t:
            g = bayesfilt.predict(g, model, t)
        g = bayesfilt.update(g, y[t], model, t)
    np.testing.assert_allclose(g.cov, res.covs[-1], atol=1e-12)
    with pytest.raises(bayesfilt.BayesfiltError, match="time steps"):
        bayesfilt.kalman_filter(model, y[:4])


def test_float32_accepted(rng):
    model = random_model(rng, 2, 1)
    _, y = model.simulate(20, seed=0)
    r64 = bayesfilt.kalman_filter(model, y)
    r32 = bayesfilt.kalman_filter(model.astype(np.float32), y.astype(np.float32))
    assert r32.means.dtype == np.float32
    np.testing.assert_allclose(r32.means, r64.means, rtol=1e-4, atol=1e-4)


def test_singular_q_and_p0_are_valid():
    model = bayesfilt.models.constant_velocity(q=0.1, P0=np.diag([1.0, 1.0, 0.0, 0.0]))
    _, y = model.simulate(10, seed=0)
    res = bayesfilt.kalman_filter(model, y)
    assert np.isfinite(res.loglik)


@pytest.mark.parametrize("change,match", [
    (dict(R=np.array([[-1.0]])), "R.*positive definite"),
    (dict(Q=np.array([[1.0, 2.0], [0.0, 1.0]])), "Q.*symmetric"),
    (dict(Q=np.array([[1.0, 2.0], [2.0, 1.0]])), "Q.*semi-definite"),
    (dict(F=np.array([[np.nan, 0.0], [0.0, 1.0]])), "F.*non-finite"),
])
def test_bad_parameters_raise_named_errors(change, match):
    base = dict(m0=np.zeros(2), P0=np.eye(2), F=np.eye(2), Q=np.eye(2), H=np.ones((1, 2)), R=np.eye(1))
    base.update(change)
    model = bayesfilt.LinearGaussianSSM(**base)
    with pytest.raises(ValueError, match=match) as info:
        bayesfilt.kalman_filter(model, np.zeros((3, 1)))
    assert isinstance(info.value, bayesfilt.BayesfiltError) and "Fix:" in str(info.value)


def test_bad_y_raises():
    model = bayesfilt.LinearGaussianSSM(m0=np.zeros(1), P0=np.eye(1), F=np.eye(1), Q=np.eye(1), H=np.eye(1), R=np.eye(1))
    for y, match in ((np.zeros((0, 1)), "zero time steps"), (np.zeros((3, 2)), "components"),
                     (np.zeros(3), "shape"), (np.array([[np.inf]]), "infinite")):
        with pytest.raises(bayesfilt.BayesfiltValueError, match=match):
            bayesfilt.kalman_filter(model, y)
    with pytest.raises(bayesfilt.BayesfiltValueError, match="core shape"):
        bayesfilt.LinearGaussianSSM(m0=np.zeros(2), P0=np.eye(2), F=np.eye(3), Q=np.eye(2), H=np.eye(2), R=np.eye(2))
