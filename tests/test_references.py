"""Results no one here wrote: pykalman's robot data set and the Nile local-level model."""

import numpy as np
import pytest

import bayesfilt

pykalman_datasets = pytest.importorskip("pykalman.datasets")
sm_api = pytest.importorskip("statsmodels.api")


# --------------------------------------------------------------------------- pykalman robot
def robot_model(d, Q, R):
    """pykalman's robot model in our convention.

    pykalman: x_0 ~ N(initial_state_mean, initial_state_covariance) is the prior of the
    state the *first* observation sees (like our m0, P0), and x_{t+1} = A x_t +
    transition_offsets[t] + noise for t = 0..T-2 (500 offsets for 501 steps). Our entry t
    of a time-varying b maps x_{t-1} to x_t, so b[t] = transition_offsets[t-1] and b[0]
    (unused) is zero.
    """
    T = d.observations.shape[0]
    b = np.concatenate([np.zeros((1, d.transition_offsets.shape[1])), d.transition_offsets], axis=0)
    assert b.shape[0] == T
    return bayesfilt.LinearGaussianSSM(
        m0=np.asarray(d.initial_state_mean, float), P0=d.initial_state_covariance, F=d.transition_matrix, Q=Q,
        H=d.observation_matrix, R=R, b=b, d=d.observation_offset, time_varying=("b",))


@pytest.fixture(scope="module")
def robot():
    d = pykalman_datasets.load_robot()
    y = np.ma.filled(np.ma.asarray(d.observations).astype(float), np.nan)   # masked -> NaN
    assert np.isnan(y[0]).all() and not np.isnan(y[1:]).any()            # the first observation is missing
    return d, y


def test_robot_filtered_and_smoothed(robot):
    d, y = robot
    model = robot_model(d, d.transition_covariance, d.observation_covariance)
    res = bayesfilt.kalman_filter(model, y)
    np.testing.assert_allclose(res.means, d.filtered_state_means, atol=1e-7, rtol=0)
    np.testing.assert_allclose(res.covs, d.filtered_state_covariances, atol=1e-7, rtol=0)
    sm = bayesfilt.rts_smoother(model, res)
    np.testing.assert_allclose(sm.means, d.smoothed_state_means, atol=1e-7, rtol=0)
    np.testing.assert_allclose(sm.covs, d.smoothed_state_covariances, atol=1e-7, rtol=0)


def test_robot_loglik(robot):
    """``loglikelihoods[0]`` is the log-likelihood before the first EM iteration, i.e. with the
    initial transition and observation covariances (pykalman's own test uses it that way)."""
    d, y = robot
    model = robot_model(d, d.initial_transition_covariance, d.initial_observation_covariance)
    res = bayesfilt.kalman_filter(model, y)
    np.testing.assert_allclose(res.loglik, d.loglikelihoods[0], atol=1e-6, rtol=0)
    assert res.loglik_terms[0] == 0.0                          # nothing observed at t = 1


# --------------------------------------------------------------------------- Nile
@pytest.fixture(scope="module")
def nile():
    return sm_api.datasets.nile.load_pandas().data["volume"].to_numpy(float)[:, None]


def local_level(sigma_eps, sigma_eta):
    return bayesfilt.LinearGaussianSSM(m0=np.zeros(1), P0=np.zeros((1, 1)), F=np.eye(1),
                                       Q=np.array([[sigma_eta]]), H=np.eye(1), R=np.array([[sigma_eps]]),
                                       diffuse=True)


def test_nile_loglik(nile):
    """Exact diffuse log-likelihood at Durbin & Koopman's (2012, ch. 2) estimates.

    Convention: log ∫ p(y | x_1) dx_1 (flat density 1) = −632.5456; statsmodels reports
    −632.538 (approximate diffuse prior, first term burned), TARGETS.md −632.54 ± 0.01.
    """
    assert nile.shape == (100, 1)
    res = bayesfilt.kalman_filter(local_level(15099.0, 1469.1), nile)
    assert res.loglik == pytest.approx(-632.5456, abs=1e-3)
    assert res.loglik == pytest.approx(-632.54, abs=0.01)
    np.testing.assert_allclose(res.loglik_terms.sum(), res.loglik)


def test_nile_maximum_likelihood(nile):
    """Maximising our log-likelihood over the log-variances lands on the published values."""
    scipy_optimize = pytest.importorskip("scipy.optimize")

    def nll(theta):
        return -float(bayesfilt.kalman_filter(local_level(*np.exp(theta)), nile).loglik)

    fit = scipy_optimize.minimize(nll, x0=np.log([np.var(nile), np.var(nile) / 10]), method="L-BFGS-B",
                                  options=dict(ftol=1e-15, gtol=1e-9))
    sigma_eps, sigma_eta = np.exp(fit.x)
    assert fit.success
    assert f"{sigma_eps:.4g}" == f"{15099:.4g}"                 # 4 significant digits: 1.510e+04
    assert f"{sigma_eta:.4g}" == f"{1469.1:.4g}"                #                       1469
    assert -fit.fun == pytest.approx(-632.5456, abs=1e-3)


def test_nile_smoothed_first_state_finite(nile):
    res = bayesfilt.kalman_filter(local_level(15099.0, 1469.1), nile)
    sm = bayesfilt.rts_smoother(local_level(15099.0, 1469.1), res)
    assert np.isfinite(sm.means).all() and np.isfinite(sm.covs).all()
    assert np.isnan(res.predicted_means[0]).all()              # nothing known before y_1


def test_masked_array_entries_are_missing_like_pykalman():
    """A NumPy masked array's masked entries are missing observations, pykalman's convention
    (before, ``np.asarray`` dropped the mask and the hidden values were filtered as data)."""
    pykalman = pytest.importorskip("pykalman")
    model = bayesfilt.LinearGaussianSSM(m0=np.zeros(1), P0=np.eye(1), F=np.eye(1), Q=0.1 * np.eye(1),
                                        H=np.eye(1), R=np.eye(1))
    y = np.ma.masked_array([[1.0], [0.0], [3.0], [2.0]], mask=[[False], [True], [False], [False]])
    kf = pykalman.KalmanFilter(transition_matrices=np.eye(1), observation_matrices=np.eye(1),
                               transition_covariance=0.1 * np.eye(1), observation_covariance=np.eye(1),
                               initial_state_mean=np.zeros(1), initial_state_covariance=np.eye(1))
    means, covs = kf.filter(y)
    res = bayesfilt.kalman_filter(model, y)
    np.testing.assert_allclose(res.means, means, rtol=1e-12)
    np.testing.assert_allclose(res.covs, covs, rtol=1e-12)
    np.testing.assert_allclose(res.loglik, kf.loglikelihood(y), rtol=1e-12)
    assert np.ma.is_masked(y) and y.data[1, 0] == 0.0                  # the input is left as it was
