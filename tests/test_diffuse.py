"""Exact diffuse initialisation: against a brute-force flat-prior joint Gaussian, the κ → ∞ limit,
batches, missing data, and the smoother through the diffuse period."""

import numpy as np
import pytest

import bayesfilt
from conftest import random_model
from joint_reference import filtered_reference, joint_posterior

LOG_2PI = np.log(2 * np.pi)


def diffuse_model(rng, n, m, mask, **kw):
    model = random_model(rng, n, m, **kw)
    mask = np.asarray(mask, bool)
    P0 = model.P0.copy()
    P0[mask, :] = 0.0
    P0[:, mask] = 0.0
    return model.replace(P0=P0, diffuse=mask)


def local_level(sigma_eps=15099.0, sigma_eta=1469.1):
    return bayesfilt.LinearGaussianSSM(m0=np.zeros(1), P0=np.zeros((1, 1)), F=np.eye(1),
                                       Q=np.array([[sigma_eta]]), H=np.eye(1), R=np.array([[sigma_eps]]),
                                       diffuse=True)


def kappa_limit(model, y, kappa=1e6):
    """Richardson extrapolation of the ordinary filter+smoother with prior N(m0, P0 + κ A A^T) to κ → ∞.

    Returns (filter dict, smoother dict) of f(∞) ≈ 2 f(2κ) - f(κ); the log-likelihood gets
    + (q/2) log(2πκ) first (the agreed convention).
    """
    mask = model.diffuse_mask
    q = mask.sum()
    outs = []
    for k in (kappa, 2 * kappa):
        m = model.replace(P0=model.P0 + k * np.diag(mask.astype(float)), diffuse=False)
        res = bayesfilt.kalman_filter(m, y)
        sm = bayesfilt.rts_smoother(m, res)
        outs.append(dict(means=res.means, covs=res.covs, loglik=res.loglik + 0.5 * q * np.log(2 * np.pi * k),
                         s_means=sm.means, s_covs=sm.covs, s_cross=sm.cross_covs))
    return {key: 2 * outs[1][key] - outs[0][key] for key in outs[0]}


@pytest.mark.parametrize("n,m,T,mask,tv", [
    (1, 1, 5, [True], ()),
    (3, 1, 8, [True, True, True], ()),
    (4, 2, 7, [True, False, True, False], ("F", "H")),
    (3, 2, 6, [False, True, True], ("Q", "R")),
    (2, 3, 1, [True, True], ()),
])
def test_filter_matches_flat_prior_joint_gaussian(rng, n, m, T, mask, tv):
    model = diffuse_model(rng, n, m, mask, time_varying=tv, T=T, bias=True)
    _, y = model.simulate(T, seed=int(rng.integers(1 << 30)))
    if T > 4:
        y[3, 0] = np.nan
    res = bayesfilt.kalman_filter(model, y)
    ref = filtered_reference(model, y, diffuse=model.diffuse_mask)
    ok = res.identified
    assert ok[-1], "the data identify every state by the end"
    assert np.isnan(res.means[~ok]).all() and np.isnan(res.covs[~ok]).all()
    np.testing.assert_allclose(res.means[ok], ref["means"][ok], atol=1e-8, rtol=1e-8)
    np.testing.assert_allclose(res.covs[ok], ref["covs"][ok], atol=1e-8, rtol=1e-8)
    cum = np.cumsum(res.loglik_terms)
    np.testing.assert_allclose(cum[ok], ref["loglik_cumulative"][ok], atol=1e-8, rtol=1e-10)
    np.testing.assert_allclose(res.loglik, res.loglik_terms.sum(), atol=1e-12)
    pok = np.concatenate([[False], ok[:-1]])                   # predicted x_t identified iff x_{t-1} was
    np.testing.assert_allclose(res.predicted_means[pok], ref["predicted_means"][pok], atol=1e-8, rtol=1e-8)
    np.testing.assert_allclose(res.predicted_covs[pok], ref["predicted_covs"][pok], atol=1e-8, rtol=1e-8)
    assert np.isnan(res.predicted_means[~pok]).all()


def test_identification_time():
    """q diffuse states observed by m generic components each step are identified at step ceil(q/m)."""
    rng = np.random.default_rng(4)
    model = diffuse_model(rng, 5, 2, [True] * 5)
    _, y = model.simulate(8, seed=1)
    res = bayesfilt.kalman_filter(model, y)
    np.testing.assert_array_equal(res.identified, [False, False, True, True, True, True, True, True])
    assert res.diffuse_steps == 2


@pytest.mark.parametrize("n,m,T,mask", [(1, 1, 6, [True]), (3, 1, 9, [True, True, True]),
                                        (4, 2, 6, [True, False, True, False])])
def test_smoother_matches_flat_prior_joint_gaussian(rng, n, m, T, mask):
    model = diffuse_model(rng, n, m, mask, bias=True, time_varying=("F",), T=T)
    _, y = model.simulate(T, seed=int(rng.integers(1 << 30)))
    y[1, 0] = np.nan
    sm = bayesfilt.rts_smoother(model, bayesfilt.kalman_filter(model, y))
    mean, cov, ll = joint_posterior(model, y, model.diffuse_mask)
    np.testing.assert_allclose(sm.means, mean, atol=1e-8, rtol=1e-8)
    np.testing.assert_allclose(sm.covs, np.stack([cov[t, :, t, :] for t in range(T)]), atol=1e-8, rtol=1e-8)
    np.testing.assert_allclose(sm.cross_covs, np.stack([cov[t + 1, :, t, :] for t in range(T - 1)]),
                               atol=1e-8, rtol=1e-8)
    np.testing.assert_allclose(sm.loglik, ll, atol=1e-8)


def test_local_level_equals_kappa_limit():
    """Nile-like local level: filter, log-likelihood and smoother equal the ordinary ones as κ → ∞."""
    rng = np.random.default_rng(0)
    y = 1000 + np.cumsum(rng.normal(0, 40, 30))[:, None] + rng.normal(0, 120, (30, 1))
    y[4] = np.nan
    model = local_level()
    res = bayesfilt.kalman_filter(model, y)
    sm = bayesfilt.rts_smoother(model, res)
    lim = kappa_limit(model, y, kappa=1e10)
    assert np.isnan(res.predicted_means[0]).all() and res.identified.all()   # y_1 identifies x_1
    np.testing.assert_allclose(res.loglik, lim["loglik"], atol=1e-6)
    np.testing.assert_allclose(res.means, lim["means"], rtol=1e-8)
    np.testing.assert_allclose(res.covs, lim["covs"], rtol=1e-7)
    assert np.isfinite(sm.means).all() and np.isfinite(sm.covs).all()
    np.testing.assert_allclose(sm.means, lim["s_means"], rtol=1e-8)   # includes t = 1
    np.testing.assert_allclose(sm.covs, lim["s_covs"], rtol=1e-6)
    np.testing.assert_allclose(sm.cross_covs, lim["s_cross"], rtol=1e-6)
    assert res.loglik_terms[0] == pytest.approx(0.0, abs=1e-9)  # y_1 only locates the level


def test_batched_equals_each_series_with_different_diffuse_periods(rng):
    T = 9
    model = diffuse_model(rng, 3, 1, [True, True, False], bias=True, time_varying=("F", "H"), T=T)
    _, y = model.simulate(T, seed=2, batch_shape=(4,))
    y[1, :4] = np.nan                                          # identified later
    y[2, :, 0] = np.nan
    y[2, 0, 0] = 1.0                                           # never identified
    y[3, 2, 0] = np.nan
    res = bayesfilt.kalman_filter(model, y)
    sm = bayesfilt.rts_smoother(model, res)
    assert not res.identified[2].any() and res.identified[0, -1] and res.identified[1, -1]
    for i in range(4):
        one = bayesfilt.kalman_filter(model, y[i])
        smo = bayesfilt.rts_smoother(model, one)
        for a, b in ((res.means[i], one.means), (res.covs[i], one.covs), (res.predicted_means[i], one.predicted_means),
                     (res.loglik_terms[i], one.loglik_terms), (sm.means[i], smo.means), (sm.covs[i], smo.covs),
                     (sm.cross_covs[i], smo.cross_covs)):
            np.testing.assert_allclose(a, b, atol=1e-9, rtol=1e-9, equal_nan=True)
    assert np.isnan(sm.means[2]).all()


def test_all_missing_series_loglik_zero():
    y = np.full((5, 1), np.nan)
    res = bayesfilt.kalman_filter(local_level(), y)
    np.testing.assert_allclose(res.loglik_terms, 0.0)
    assert np.isnan(res.means).all()


def test_float32_runs_and_is_close():
    rng = np.random.default_rng(1)
    y = 1000 + rng.normal(0, 100, (40, 1))
    r64 = bayesfilt.kalman_filter(local_level(), y)
    r32 = bayesfilt.kalman_filter(local_level().astype(np.float32), y.astype(np.float32))
    assert r32.means.dtype == np.float32
    np.testing.assert_allclose(r32.loglik, r64.loglik, rtol=1e-5)
    np.testing.assert_allclose(r32.means, r64.means, rtol=1e-4)


def test_diffuse_mask_requires_zero_P0_rows(rng):
    model = random_model(rng, 2, 1)
    with pytest.raises(ValueError, match="P0"):
        bayesfilt.kalman_filter(model.replace(diffuse=np.array([True, False])), np.zeros((3, 1)))


def test_information_form_agrees(rng):
    """The information form (H1's filters/information.py) follows the same convention."""
    model = diffuse_model(rng, 4, 2, [True, False, True, False], bias=True)
    _, y = model.simulate(7, seed=3, batch_shape=(2,))
    y[1, :2] = np.nan
    y[0, 3, 0] = np.nan
    a = bayesfilt.kalman_filter(model, y)
    b = bayesfilt.information_filter(model, y)
    np.testing.assert_allclose(a.loglik_terms, b.loglik_terms, atol=1e-9)
    np.testing.assert_allclose(a.means, b.means, atol=1e-9, equal_nan=True)
    np.testing.assert_allclose(a.predicted_covs, b.predicted_covs, atol=1e-9, equal_nan=True)
    assert a.diffuse_steps == b.diffuse_steps
    with pytest.raises(ValueError, match="filter_result"):
        bayesfilt.rts_smoother(model, b)


def test_forgotten_diffuse_state_is_identified_without_its_delta():
    """A diffuse state that is never observed but forgotten by the dynamics: Ω stays singular,
    yet x_t is identified from t = 2 on (P∞ = X Π X^T = 0); the log-likelihood integrates the
    identified direction only, and the smoother leaves x_1 (which depends on it) NaN."""
    model = bayesfilt.LinearGaussianSSM(
        m0=np.zeros(2), P0=np.zeros((2, 2)), F=np.array([[0.0, 0.0], [0.0, 0.9]]), Q=np.diag([1.0, 0.5]),
        H=np.array([[0.0, 1.0]]), R=np.array([[0.3]]), diffuse=True)
    rng = np.random.default_rng(2)
    y = rng.normal(size=(8, 1))
    res = bayesfilt.kalman_filter(model, y)
    sm = bayesfilt.rts_smoother(model, res)
    np.testing.assert_array_equal(res.identified, [False] + [True] * 7)
    assert np.isnan(sm.means[0]).all() and np.isfinite(sm.means[1:]).all()
    lim = kappa_limit(model.replace(diffuse=np.array([False, True]), P0=np.diag([1e10, 0.0])), y, kappa=1e6)
    # x_{1,1} never reaches y: with any prior on it the likelihood is the same, so the reference
    # puts a proper (huge) variance there and a κ-diffuse one on the observed state.
    np.testing.assert_allclose(res.loglik, lim["loglik"], atol=1e-6)
    np.testing.assert_allclose(res.means[1:], lim["means"][1:], rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(sm.means[1:], lim["s_means"][1:], rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(sm.covs[1:], lim["s_covs"][1:], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("offset", [0.0, 6.4e6, 1e8])
def test_loglik_far_from_m0_like_statsmodels(offset):
    """Data far from m0 (a track in UTM/ECEF metres, 1 cm noise): the diffuse log-likelihood does
    not depend on where the data sit, and equals statsmodels' exact diffuse one (its convention
    lacks (q/2) log 2π). Before, its terms were differences of numbers growing like
    (offset/noise)^2: -153.60 for 70.40 at 6.4e6."""
    sm = pytest.importorskip("statsmodels.tsa.statespace.kalman_filter")
    cv = bayesfilt.models.constant_velocity(dim=1, q=1e-4, r=1e-4)
    _, y = cv.replace(m0=np.array([0.0, 1.0]), P0=1e-6 * np.eye(2)).simulate(30, seed=7)
    y = y + offset
    model = cv.replace(m0=np.zeros(2), P0=np.zeros((2, 2)), diffuse=True)
    kf = sm.KalmanFilter(k_endog=1, k_states=2, k_posdef=2)
    kf.bind(y.copy())
    kf["design"], kf["obs_cov"], kf["transition"] = cv.H, cv.R, cv.F
    kf["selection"], kf["state_cov"] = np.eye(2), cv.Q
    kf.initialize_diffuse()
    want = kf.filter().llf + LOG_2PI                                   # + (q/2) log 2π, q = 2
    for res in (bayesfilt.kalman_filter(model, y), bayesfilt.information_filter(model, y)):
        assert abs(res.loglik - want) < 1e-6 * (1 + abs(want)), (offset, res.loglik, want)


def test_streaming_refuses_diffuse_models_and_continues_after_identification():
    """predict/update cannot hold an exactly diffuse state (Gaussian(m0, P0) would treat it as
    known and silently give a level ~1000 off on the Nile data); they raise, and the named fix
    (the exact diffuse filter first, then model.replace(diffuse=False)) reproduces kalman_filter."""
    from bayesfilt.errors import BayesfiltValueError
    model = local_level()
    y = np.array([[1120.0], [1160.0], [963.0], [1210.0], [1160.0], [1160.0], [813.0]])
    with pytest.raises(BayesfiltValueError, match="diffuse"):
        bayesfilt.update(bayesfilt.Gaussian(model.m0, model.P0), y[0], model, 0)
    res = bayesfilt.kalman_filter(model, y)
    proper = model.replace(diffuse=False)
    g = bayesfilt.Gaussian(res.means[2], res.covs[2])
    for t in range(3, len(y)):
        g, ll = bayesfilt.update_with_loglik(bayesfilt.predict(g, proper, t), y[t], proper, t)
        np.testing.assert_allclose(g.mean, res.means[t], rtol=1e-12)
        np.testing.assert_allclose(ll, res.loglik_terms[t], rtol=1e-12)
