"""Ready-made models: exact discretisation checked against the Van Loan matrix exponential,
irregular grids against fixed-step models, local level / trend against statsmodels."""

import numpy as np
import pytest
import statsmodels.api as sm
from scipy.linalg import expm

import bayesfilt
from bayesfilt import BayesfiltValueError, kalman_filter
from bayesfilt.models import (constant_acceleration, constant_acceleration_irregular, constant_velocity,
                              constant_velocity_irregular, local_level, local_linear_trend, random_walk, time_steps)

HALF_LOG_2PI = 0.5 * np.log(2 * np.pi)


def van_loan(A, G, qc, dt):
    """(F, Q) of dx = A x dt + G dβ, E[dβ dβ^T] = qc dt, over dt (Van Loan 1978)."""
    n = A.shape[0]
    M = np.zeros((2 * n, 2 * n))
    M[:n, :n] = -A
    M[:n, n:] = G @ qc @ G.T
    M[n:, n:] = A.T
    E = expm(M * dt)
    F = E[n:, n:].T
    return F, F @ E[:n, n:]


def chain(k, dim):
    """Continuous-time k-th order integrator in `dim` dimensions, state ordered by derivative."""
    A1 = np.diag(np.ones(k - 1), 1)
    G1 = np.zeros((k, 1))
    G1[-1] = 1
    return np.kron(A1, np.eye(dim)), np.kron(G1, np.eye(dim))


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_cv_irregular_matches_van_loan(dim):
    times = np.array([0.0, 0.5, 2.0, 2.0, 7.25])
    q = 0.3
    model = constant_velocity_irregular(times, q, 2.0, dim=dim)
    A, G = chain(2, dim)
    assert model.time_varying == frozenset({"F", "Q"})
    for t in range(1, len(times)):
        F, Q = van_loan(A, G, q * np.eye(dim), times[t] - times[t - 1])
        np.testing.assert_allclose(model.F[t], F, atol=1e-12)
        np.testing.assert_allclose(model.Q[t], Q, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("dim", [1, 2])
def test_ca_irregular_matches_van_loan(dim):
    times = np.array([0.0, 1.0, 1.3, 4.0])
    q = 0.05
    model = constant_acceleration_irregular(times, q, 1.0, dim=dim)
    A, G = chain(3, dim)
    for t in range(1, len(times)):
        F, Q = van_loan(A, G, q * np.eye(dim), times[t] - times[t - 1])
        np.testing.assert_allclose(model.F[t], F, atol=1e-12)
        np.testing.assert_allclose(model.Q[t], Q, rtol=1e-9, atol=1e-12)
    fixed = constant_acceleration(dt=0.3, q=q, r=1.0, dim=dim)
    np.testing.assert_allclose(fixed.Q, model.Q[2], rtol=1e-12)


def test_irregular_llt_matches_van_loan():
    times = np.array([0.0, 2.0, 2.5])
    lv, sv = 0.7, 0.2
    model = local_linear_trend(1.0, lv, sv, times=times)
    A = np.array([[0.0, 1.0], [0.0, 0.0]])
    for t in (1, 2):
        F, Q = van_loan(A, np.eye(2), np.diag([lv, sv]), times[t] - times[t - 1])
        np.testing.assert_allclose(model.F[t], F, atol=1e-12)
        np.testing.assert_allclose(model.Q[t], Q, rtol=1e-9)


def test_regular_grid_equals_fixed_step_cv():
    """On a regular grid the irregular model filters exactly like the fixed-step one."""
    fixed = constant_velocity(dt=2.0, q=0.1, r=3.0, m0=np.ones(4), P0=np.eye(4))
    irr = constant_velocity_irregular(np.arange(30) * 2.0, 0.1, 3.0, m0=np.ones(4), P0=np.eye(4))
    _, y = fixed.simulate(30, seed=4)
    a, b = kalman_filter(fixed, y), kalman_filter(irr, y)
    np.testing.assert_allclose(a.means, b.means, atol=1e-10)
    np.testing.assert_allclose(a.loglik, b.loglik, rtol=1e-12)


def test_random_walk_brownian_variance():
    model = random_walk(0.5, 1.0, times=[0.0, 1.0, 4.0], dim=2, diffuse=False, P0=np.eye(2))
    np.testing.assert_allclose(model.Q[:, 0, 0], [0.0, 0.5, 1.5])
    np.testing.assert_allclose(model.Q[2], 1.5 * np.eye(2))


def test_local_level_loglik_matches_statsmodels():
    """Exact diffuse local level on the Nile data vs statsmodels (which also counts ½log2π
    for the diffuse step: ours = statsmodels' + ½ log 2π per diffuse state)."""
    from bayesfilt.data import load_nile
    y = load_nile()[1]
    ref = sm.tsa.UnobservedComponents(y, "llevel", use_exact_diffuse=True).loglike([15099.0, 1469.1])
    ours = float(kalman_filter(local_level(15099.0, 1469.1), y[:, None]).loglik)
    assert ours == pytest.approx(ref + HALF_LOG_2PI, abs=1e-8)


def test_local_linear_trend_loglik_matches_statsmodels():
    from bayesfilt.data import load_nile
    y = load_nile()[1]
    p = [15000.0, 1000.0, 10.0]
    ref = sm.tsa.UnobservedComponents(y, "lltrend", use_exact_diffuse=True).loglike(p)
    ours = float(kalman_filter(local_linear_trend(*p), y[:, None]).loglik)
    assert ours == pytest.approx(ref + 2 * HALF_LOG_2PI, abs=1e-8)


def test_time_steps_and_errors():
    np.testing.assert_allclose(time_steps([3.0, 4.0, 4.0, 10.0]), [0.0, 1.0, 0.0, 6.0])
    with pytest.raises(BayesfiltValueError, match="decrease at index 2"):
        time_steps([0.0, 2.0, 1.0])
    with pytest.raises(BayesfiltValueError, match="non-finite"):
        time_steps([0.0, np.nan])
    with pytest.raises(BayesfiltValueError, match="q"):
        constant_velocity_irregular([0.0, 1.0], -1.0, 1.0)
    with pytest.raises(BayesfiltValueError, match="r"):
        constant_velocity_irregular([0.0, 1.0], 1.0, 0.0)
    with pytest.raises(BayesfiltValueError, match="r"):
        constant_velocity_irregular([0.0, 1.0], 1.0, np.eye(3))


def test_irregular_model_simulates_and_smooths():
    times = np.cumsum(np.r_[0.0, np.random.default_rng(0).uniform(0.5, 3.0, 49)])
    model = constant_velocity_irregular(times, 0.2, 1.0, m0=np.zeros(4), P0=np.eye(4))
    x, y = model.simulate(50, seed=2)
    y[10:15] = np.nan
    smo = bayesfilt.rts_smoother(model, kalman_filter(model, y))
    err = smo.means - x
    # smoothed errors are consistent with their covariances (NEES mean ~ n = 4)
    nees = np.einsum("ti,ti->t", err, np.linalg.solve(smo.covs, err[..., None])[..., 0])
    assert 1.0 < nees.mean() < 10.0


def test_validate_rechecks_arrays_changed_in_place():
    """validate() remembers a passed check by the arrays' contents: changing an array in place (or
    asking for another rtol) checks again, so the memo never hides a bad parameter."""
    import pytest
    from bayesfilt.errors import BayesfiltValueError
    model = bayesfilt.models.constant_velocity(q=0.05, r=4.0)
    model.validate()
    model.validate()                                    # the memo path
    model.R[1, 1] = -1.0                                # not positive definite any more
    with pytest.raises(BayesfiltValueError, match="R"):
        model.validate()
    model.R[1, 1] = 4.0
    model.validate()
    model.F[0, 0] = np.nan
    with pytest.raises(BayesfiltValueError, match="F"):
        model.validate()
    model.F[0, 0] = 1.0
    model.Q[0, 1] += 1e-9 * abs(model.Q).max()          # asymmetric by 1e-9 of the scale
    model.validate(rtol=1e-6)
    with pytest.raises(BayesfiltValueError, match="symmetric"):
        model.validate(rtol=1e-12)                      # another rtol: checked again


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_covariances_are_judged_per_variance_scale(dtype):
    """Positive (semi-)definiteness is tested on the matrix scaled to unit variances: a negative
    variance is refused beside a huge one (diag(1e8, -0.5) passed, and the filter returned a
    variance of -1), and variances of very different units are accepted (R = diag(1, 1e-6) in
    float32 and diag(1e8, 1e-8) in float64 were refused as not positive definite); a variance
    of exactly 0 in R and a correlation of 1 stay refused."""
    base = dict(m0=np.zeros(2), P0=np.eye(2), F=np.eye(2), Q=np.eye(2), H=np.eye(2), R=np.eye(2))

    def model(dt=dtype, **kw):
        return bayesfilt.LinearGaussianSSM(**{k: np.asarray(v, dt) for k, v in {**base, **kw}.items()})

    big = 1e8 if dtype == np.float64 else 1e4            # -0.5 beyond 100 rounding errors of the big variance
    with pytest.raises(BayesfiltValueError, match="P0"):
        model(P0=np.diag([big, -0.5])).validate()
    small = 1e-6 if dtype == np.float32 else 1e-8
    model(R=np.diag([1.0, small])).validate()
    if dtype == np.float64:
        model(R=np.diag([1e8, 1e-8])).validate()
    for bad_R in (np.diag([1.0, 0.0]), np.array([[1.0, 1.0], [1.0, 1.0]])):
        with pytest.raises(BayesfiltValueError, match="R"):
            model(R=bad_R).validate()
    # a zero diagonal with off-diagonal terms is indefinite (the scaling must not overflow to NaN
    # and pass it); a variance negative by one rounding error counts as zero
    with pytest.raises(BayesfiltValueError, match="Q"):
        model(Q=np.array([[0.0, 10.0], [10.0, 0.0]])).validate()
    ulp = float(np.finfo(dtype).eps)
    model(P0=np.diag([1.0, -ulp]), Q=np.diag([1.0, -10 * ulp])).validate()
    # accepted graded noise filters as float64 does, per component
    y = np.array([[1.0, 2e-3], [2.0, -1e-3], [0.5, 4e-3]])
    got = kalman_filter(model(R=np.diag([1.0, small])), y.astype(dtype))
    want = kalman_filter(model(np.float64, R=np.diag([1.0, small])), y)
    np.testing.assert_allclose(got.means, want.means, rtol=1e-5, atol=1e-6 * small)


def test_a_diffuse_mask_with_the_default_P0():
    """diffuse as a mask of states works with the default P0 (its rows and columns of the diffuse
    states are zero; before, only diffuse=True zeroed them and a mask raised about a P0 the user
    never passed): the undiffuse state keeps the default variance and the filter matches the
    κ → ∞ limit of a large variance on the diffuse one."""
    mask = np.array([True, False])
    model = random_walk(0.5, 2.0, dim=2, diffuse=mask)
    assert np.array_equal(np.diag(model.P0) == 0, mask)
    y = np.array([[1.0, 0.5], [2.0, np.nan], [1.5, 1.0]])
    exact = kalman_filter(model, y)
    vague = kalman_filter(model.replace(P0=model.P0 + 1e9 * np.diag(mask.astype(float)), diffuse=False), y)
    np.testing.assert_allclose(exact.means[1:], vague.means[1:], rtol=1e-6)


def test_simulate_and_validate_arguments_are_named():
    """simulate(True) and a T that differs from a time-varying model's length, validate(rtol=-1)
    and rtol="a", an empty observation space, and a float32 asymmetry: named errors (raw NumPy
    errors, a message naming "y", or the wrong matrix entry before)."""
    from bayesfilt.validation import check_symmetric
    model = constant_velocity(dim=1)
    for call, name in ((lambda: model.simulate(True), "T"), (lambda: model.validate(rtol=-1), "rtol"),
                       (lambda: model.validate(rtol="a"), "rtol"),
                       (lambda: constant_velocity_irregular(np.arange(5.0), 0.1, 1.0).simulate(3), "T"),
                       (lambda: bayesfilt.LinearGaussianSSM(m0=np.zeros(2), P0=np.eye(2), F=np.eye(2), Q=np.eye(2),
                                                            H=np.zeros((0, 2)), R=np.zeros((0, 0))), "H")):
        with pytest.raises(bayesfilt.BayesfiltError, match=name):
            call()
    a = np.array([[1.0, 1e-7, 0.0], [1e-7, 1.0, 0.5], [0.0, 0.0, 1.0]], np.float32)
    with pytest.raises(BayesfiltValueError, match=r"0\.5 at index \(1, 2\)"):
        check_symmetric(a, "Q")
