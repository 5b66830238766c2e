"""Information-form filter: against filterpy's InformationFilter, the covariance form, an
independent joint-Gaussian likelihood, the diffuse limit and the Nile figures."""

import numpy as np
import pytest
from scipy.stats import multivariate_normal

import bayesfilt
from conftest import random_model

filterpy = pytest.importorskip("filterpy.kalman")


def filterpy_info_run(model, y):
    """filterpy 2.0 InformationFilter on one series, with our prior convention.

    filterpy predicts before its first update; we feed it y_1 by an explicit update from
    (m0, P0^{-1}) and then its predict/update loop for t >= 2. Its log-likelihood is NOT
    used: observed with filterpy 2.0.0, ``update`` evaluates logpdf(residual, cov=posterior
    precision) - for n = m = 2 it summed to -82.0 where the true value is -21.5, and for
    n = 3, m = 2 it raised "operands could not be broadcast together with shapes (1,2) (3,)".
    """
    n, m = model.n, model.m
    f = filterpy.InformationFilter(dim_x=n, dim_z=m, compute_log_likelihood=False)
    f.x = model.m0[:, None].copy()
    f.P_inv = np.linalg.inv(model.P0)
    f.F, f.Q, f.H = model.F, model.Q, model.H
    f.R_inv = np.linalg.inv(model.R)
    means, covs = [], []
    for t in range(len(y)):
        if t > 0:
            f.predict()
        f.update(y[t][:, None])
        means.append(f.x[:, 0].copy())
        covs.append(np.linalg.inv(f.P_inv))
    return np.array(means), np.array(covs)


def assert_same(a, b, tol=1e-9, loglik=True):
    np.testing.assert_allclose(a.means, b.means, atol=tol, rtol=0)
    np.testing.assert_allclose(a.covs, b.covs, atol=tol, rtol=0)
    np.testing.assert_allclose(a.predicted_means, b.predicted_means, atol=tol, rtol=0)
    np.testing.assert_allclose(a.predicted_covs, b.predicted_covs, atol=tol, rtol=0)
    if loglik:
        np.testing.assert_allclose(a.loglik_terms, b.loglik_terms, atol=tol, rtol=0)
        np.testing.assert_allclose(a.loglik, b.loglik, atol=tol, rtol=1e-12)


@pytest.mark.parametrize("n,m,T", [(1, 1, 1), (2, 1, 7), (3, 2, 40), (4, 3, 33), (2, 4, 5), (3, 3, 1)])
def test_matches_filterpy_information_filter(rng, n, m, T):
    model = random_model(rng, n, m)
    _, y = model.simulate(T, seed=int(rng.integers(1 << 30)))
    res = bayesfilt.information_filter(model, y)
    fm, fP = filterpy_info_run(model, y)
    np.testing.assert_allclose(res.means, fm, atol=1e-9, rtol=0)
    np.testing.assert_allclose(res.covs, fP, atol=1e-9, rtol=0)
    np.testing.assert_allclose(res.precisions, np.linalg.inv(fP), rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(res.info_vectors, np.einsum("tij,tj->ti", res.precisions, fm), atol=1e-9)


@pytest.mark.parametrize("case", ["plain", "missing", "batch", "time_varying", "bias_singular_q", "batched_params"])
def test_equals_covariance_form(rng, case):
    n, m, T = 3, 2, 23
    kw = {}
    if case == "time_varying":
        kw = dict(time_varying=("F", "Q", "H", "R", "b", "d"), T=T, bias=True)
    if case == "bias_singular_q":
        kw = dict(bias=True, psd_q=True)
    model = random_model(rng, n, m, **kw)
    batch = (4, 2) if case in ("batch", "batched_params") else ()
    if case == "batched_params":
        R = np.stack([model.R * s for s in (0.5, 1.0, 2.0, 4.0)])[:, None]    # (4, 1, m, m)
        model = model.replace(R=R, m0=np.stack([model.m0, -model.m0]))        # m0 (2, n)
    _, y = model.simulate(T, seed=7, batch_shape=batch)
    if case in ("missing", "batch", "batched_params", "time_varying"):
        y[..., 0, 1] = np.nan                                                 # partial, first step
        y[..., 5, :] = np.nan                                                 # whole vector
        y[..., 6, 0] = np.nan
        y[..., T - 1, :] = np.nan                                             # last step missing
    res = bayesfilt.information_filter(model, y)
    ref = bayesfilt.kalman_filter(model, y)
    assert res.means.shape == batch + (T, n) and res.loglik.shape == batch
    assert_same(res, ref)
    np.testing.assert_allclose(res.loglik, res.loglik_terms.sum(-1), rtol=1e-14)
    if case == "missing":
        assert res.loglik_terms[5] == 0.0


def test_batch_equals_each_series(rng):
    model = random_model(rng, 2, 3, bias=True)
    _, y = model.simulate(9, seed=2, batch_shape=(3,))
    y[1, 4] = np.nan
    y[2, 0, 2] = np.nan
    res = bayesfilt.information_filter(model, y)
    for i in range(3):
        one = bayesfilt.information_filter(model, y[i])
        np.testing.assert_allclose(res.means[i], one.means, atol=1e-12)
        np.testing.assert_allclose(res.precisions[i], one.precisions, atol=1e-12)
        np.testing.assert_allclose(res.loglik[i], one.loglik, atol=1e-11)


def joint_loglik(model, y):
    """log p(y_{1:T}) from the stacked joint Gaussian of all observed entries (scipy), static model."""
    T, n = len(y), model.n
    b = np.zeros(n) if model.b is None else model.b
    d = np.zeros(model.m) if model.d is None else model.d
    mu, V = [model.m0], [model.P0]
    for _ in range(1, T):
        mu.append(model.F @ mu[-1] + b)                                       # E x_t
        V.append(model.F @ V[-1] @ model.F.T + model.Q)                       # Var x_t
    C = np.zeros((T, n, T, n))                                                # Cov(x_s, x_t)
    for s in range(T):
        for t in range(s, T):
            C[s, :, t, :] = V[s] @ np.linalg.matrix_power(model.F, t - s).T   # Var x_s (F^{t-s})^T
            C[t, :, s, :] = C[s, :, t, :].T
    H = model.H
    ymean = np.concatenate([H @ mu[t] + d for t in range(T)])
    ycov = np.einsum("ij,sjtk,lk->sitl", H, C, H).reshape(T * model.m, T * model.m)
    ycov += np.kron(np.eye(T), model.R)
    obs = ~np.isnan(y.reshape(-1))
    return multivariate_normal(ymean[obs], ycov[np.ix_(obs, obs)]).logpdf(y.reshape(-1)[obs])


@pytest.mark.parametrize("n,m", [(2, 3), (3, 1), (1, 2), (4, 2)])
def test_loglik_when_m_differs_from_n(rng, n, m):
    model = random_model(rng, n, m, bias=True, psd_q=True)
    _, y = model.simulate(5, seed=3)
    y[2, 0] = np.nan
    y[3] = np.nan
    res = bayesfilt.information_filter(model, y)
    np.testing.assert_allclose(res.loglik, joint_loglik(model, y), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(res.loglik, bayesfilt.kalman_filter(model, y).loglik, rtol=1e-12, atol=1e-10)


def diffuse_model(rng):
    """n = 3 with states 0 and 2 diffuse, a random (non-identity) F and a singular Q."""
    n = 3
    F = rng.standard_normal((n, n))
    F = 0.95 * F / np.abs(np.linalg.eigvals(F)).max()
    return bayesfilt.LinearGaussianSSM(
        m0=np.array([0.0, 1.0, 0.0]), P0=np.diag([0.0, 2.0, 0.0]), F=F, Q=np.diag([0.3, 0.0, 0.2]),
        H=rng.standard_normal((1, n)), R=np.array([[0.5]]), b=rng.standard_normal(n), diffuse=np.array([True, False, True]))


def test_zero_precision_prior_is_the_large_variance_limit(rng):
    """Exact zero precision equals the kappa -> infinity limit of a proper prior.

    With prior variance kappa on the q = 2 diffuse states, means and
    log L_kappa + (q/2) log(2 pi kappa) converge to the diffuse values at rate O(1/kappa):
    the error at kappa = 1e8 must be ~100x smaller than at kappa = 1e6 and below 1e-5.
    """
    model = diffuse_model(rng)
    _, y = model.replace(diffuse=False, P0=np.eye(3)).simulate(12, seed=0)
    y[3] = np.nan
    res = bayesfilt.information_filter(model, y)
    D = res.diffuse_steps
    assert D == 1 and np.isnan(res.means[0]).all() and np.isnan(res.covs[0]).all()
    assert np.isfinite(res.precisions).all() and np.isfinite(res.info_vectors).all()
    assert np.isfinite(res.means[D:]).all() and np.isfinite(res.predicted_means[D + 1:]).all()
    errs = []
    for kappa in (1e6, 1e8):
        big = bayesfilt.kalman_filter(model.replace(diffuse=False, P0=np.diag([kappa, 2.0, kappa])), y)
        ll = big.loglik + 2 / 2 * np.log(2 * np.pi * kappa)
        errs.append(max(np.abs(big.means[D:] - res.means[D:]).max(), np.abs(big.covs[D:] - res.covs[D:]).max(),
                        abs(ll - res.loglik)))
    assert errs[1] < 1e-5
    assert errs[1] < errs[0] / 30
    np.testing.assert_allclose(res.loglik_terms.sum(), res.loglik, rtol=1e-14)


def test_diffuse_equals_covariance_form_diffuse(rng):
    """The same diffuse convention in both forms (covariance form: filters/diffuse.py)."""
    model = diffuse_model(rng)
    _, y = model.replace(diffuse=False, P0=np.eye(3)).simulate(10, seed=1, batch_shape=(2,))
    y[0, 0] = np.nan                                           # series 0 identified one step later
    y[1, 4, 0] = np.nan
    res = bayesfilt.information_filter(model, y)
    ref = bayesfilt.kalman_filter(model, y)
    assert res.diffuse_steps == ref.diffuse_steps
    np.testing.assert_array_equal(np.isnan(res.means), np.isnan(ref.means))
    np.testing.assert_allclose(res.means, ref.means, atol=1e-8, equal_nan=True)
    np.testing.assert_allclose(res.covs, ref.covs, atol=1e-8, equal_nan=True)
    np.testing.assert_allclose(res.loglik_terms, ref.loglik_terms, atol=1e-8)


@pytest.fixture(scope="module")
def nile():
    sm = pytest.importorskip("statsmodels.api")
    return sm.datasets.nile.load_pandas().data["volume"].to_numpy(float)[:, None]


def test_nile_diffuse_loglik(nile):
    """Local level, sigma2_eps = 15099, sigma2_eta = 1469.1 (Durbin & Koopman 2012, ch. 2):
    loglik = -633.4646 + 0.5 log(2 pi) = -632.5456 under the flat-prior convention."""
    model = bayesfilt.LinearGaussianSSM(m0=np.zeros(1), P0=np.zeros((1, 1)), F=np.eye(1), Q=np.array([[1469.1]]),
                                        H=np.eye(1), R=np.array([[15099.0]]), diffuse=True)
    res = bayesfilt.information_filter(model, nile)
    assert abs(float(res.loglik) - (-632.5456)) < 1e-3
    assert res.means[0, 0] == pytest.approx(nile[0, 0])                      # y_1 initialises the level
    assert res.covs[0, 0, 0] == pytest.approx(15099.0)
    assert res.loglik_terms[0] == pytest.approx(0.0, abs=1e-12)
    assert np.isnan(res.predicted_means[0]).all() and np.isfinite(res.predicted_means[1:]).all()


def test_bad_inputs_raise_named_errors():
    base = dict(m0=np.zeros(2), P0=np.eye(2), F=np.eye(2), Q=np.eye(2), H=np.ones((1, 2)), R=np.eye(1))
    model = bayesfilt.LinearGaussianSSM(**base)
    for y, match in ((np.zeros((0, 1)), "^y:.*zero time steps"), (np.zeros((3, 2)), "^y:.*components"),
                     (np.zeros(3), "^y:.*shape"), (np.array([[np.inf]]), "^y:.*infinite")):
        with pytest.raises(bayesfilt.BayesfiltValueError, match=match):
            bayesfilt.information_filter(model, y)
    for change, match in ((dict(R=np.array([[-1.0]])), "^R:.*positive definite"),
                          (dict(Q=np.array([[1.0, 2.0], [0.0, 1.0]])), "^Q:.*symmetric"),
                          (dict(F=np.array([[np.nan, 0.0], [0.0, 1.0]])), "^F:.*non-finite"),
                          (dict(P0=np.diag([1.0, 0.0])), "^P0:.*singular"),                 # infinite precision
                          (dict(F=np.zeros((2, 2)), Q=np.diag([1.0, 0.0])), "^model:.*singular")):
        with pytest.raises(bayesfilt.BayesfiltValueError, match=match) as info:
            bayesfilt.information_filter(bayesfilt.LinearGaussianSSM(**{**base, **change}), np.zeros((3, 1)))
        assert "Fix:" in str(info.value)
    with pytest.raises(bayesfilt.BayesfiltTypeError, match="^model:"):
        bayesfilt.information_filter("not a model", np.zeros((3, 1)))


def test_constant_velocity_fully_diffuse_matches_covariance_form():
    model = bayesfilt.models.constant_velocity(q=0.5, r=2.0, P0=np.zeros((4, 4))).replace(diffuse=True)
    _, y = model.replace(diffuse=False, P0=np.eye(4)).simulate(15, seed=5, batch_shape=(3,))
    y[1, 1, 0] = np.nan
    y[2, 0] = np.nan
    res = bayesfilt.information_filter(model, y)
    ref = bayesfilt.kalman_filter(model, y)
    assert res.diffuse_steps == ref.diffuse_steps == 2                        # pos + vel need two positions
    np.testing.assert_allclose(res.means, ref.means, atol=1e-8, equal_nan=True)
    np.testing.assert_allclose(res.covs, ref.covs, atol=1e-8, equal_nan=True)
    np.testing.assert_allclose(res.loglik_terms, ref.loglik_terms, atol=1e-9)
    kappa = 1e8
    big = bayesfilt.kalman_filter(model.replace(diffuse=False, P0=kappa * np.eye(4)), y)
    np.testing.assert_allclose(res.loglik, big.loglik + 4 / 2 * np.log(2 * np.pi * kappa), atol=1e-5)


def test_never_identified_direction_is_integrated_out(rng):
    """State 1 is diffuse and never observed: the log-likelihood is that of state 0 alone,
    its means stay NaN, and the precisions stay finite (zero along the unidentified state)."""
    model = bayesfilt.LinearGaussianSSM(m0=np.zeros(2), P0=np.diag([1.0, 0.0]), F=np.diag([0.9, 1.0]),
                                        Q=np.diag([0.5, 0.1]), H=np.array([[1.0, 0.0]]), R=np.array([[0.7]]),
                                        diffuse=np.array([False, True]))
    _, y = model.replace(diffuse=False, P0=np.eye(2)).simulate(8, seed=0)
    res = bayesfilt.information_filter(model, y)
    alone = bayesfilt.kalman_filter(bayesfilt.LinearGaussianSSM(m0=np.zeros(1), P0=np.eye(1), F=np.array([[0.9]]),
                                                                Q=np.array([[0.5]]), H=np.eye(1), R=np.array([[0.7]])), y)
    np.testing.assert_allclose(res.loglik, alone.loglik, atol=1e-10)
    assert res.diffuse_steps == 8 and np.isnan(res.means).all()
    np.testing.assert_allclose(res.precisions[:, 1, 1], 0.0, atol=1e-12)
    np.testing.assert_allclose(res.info_vectors[:, 0] / res.precisions[:, 0, 0], alone.means[:, 0], atol=1e-10)


def test_huge_prior_variance_declared_diffuse_matches_sqrt_filter():
    """A 1e24 prior variance with a nearly noiseless sensor: the proper prior is out of the
    information form's reach (named error), the diffuse declaration is its exact limit and
    equals the square-root filter run with the 1e24 prior (difference O(1/kappa))."""
    model = bayesfilt.LinearGaussianSSM(m0=np.zeros(2), P0=1e24 * np.eye(2), F=np.array([[1.0, 1.0], [0.0, 1.0]]),
                                        Q=1e-6 * np.eye(2), H=np.array([[1.0, 0.5]]), R=np.array([[1e-12]]))
    _, y = model.replace(P0=np.eye(2)).simulate(6, seed=1)
    with pytest.raises(bayesfilt.BayesfiltValueError, match="^model:.*precision.*diffuse"):
        bayesfilt.information_filter(model, y)
    res = bayesfilt.information_filter(model.replace(P0=np.zeros((2, 2)), diffuse=True), y)
    ref = bayesfilt.sqrt_filter(model, y)
    np.testing.assert_allclose(res.means[1:], ref.means[1:], atol=1e-9)
    np.testing.assert_allclose(res.covs[1:], ref.covs[1:], rtol=1e-6, atol=1e-20)
    np.testing.assert_allclose(res.loglik, ref.loglik + 2 / 2 * np.log(2 * np.pi * 1e24), atol=1e-5)


def test_float32_accepted(rng):
    model = random_model(rng, 3, 2)
    _, y = model.simulate(20, seed=0)
    r64 = bayesfilt.information_filter(model, y)
    r32 = bayesfilt.information_filter(model.astype(np.float32), y.astype(np.float32))
    assert r32.means.dtype == np.float32 and r32.precisions.dtype == np.float32
    np.testing.assert_allclose(r32.means, r64.means, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(r32.loglik, r64.loglik, rtol=1e-4)
