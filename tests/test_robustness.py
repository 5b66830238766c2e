"""Numerical robustness over very long sequences, extreme models and missing-data runs.

Filters must stay finite, symmetric and positive-definite over T = 10^6 steps in float64
and T = 262144 in float32, including nearly unobservable and nearly deterministic
models, and through missing-data runs of any length.
"""

import numpy as np
import pytest

import bayesfilt


def trend_models(dtype):
    """Three local-linear-trend models batched on a leading axis: ordinary, nearly
    unobservable (the level is barely seen) and nearly deterministic (tiny process noise)."""
    F = np.array([[1.0, 1.0], [0.0, 0.9]])
    Q = np.stack([np.diag([0.1, 0.01]), np.diag([0.1, 0.01]), np.diag([1e-12, 1e-14])])
    H = np.stack([np.array([[1.0, 0.0]]), np.array([[1e-6, 0.0]]), np.array([[1.0, 0.0]])])
    R = np.ones((3, 1, 1))
    model = bayesfilt.LinearGaussianSSM(m0=np.zeros((3, 2)), P0=np.broadcast_to(np.eye(2), (3, 2, 2)).copy(),
                                        F=np.broadcast_to(F, (3, 2, 2)).copy(), Q=Q, H=H, R=R)
    return model.astype(dtype)


def assert_spd_finite(res):
    assert np.isfinite(res.means).all() and np.isfinite(res.covs).all() and np.isfinite(res.loglik).all()
    covs = res.covs.astype(np.float64)
    np.testing.assert_array_equal(covs, np.swapaxes(covs, -1, -2))           # exactly symmetric
    w = np.linalg.eigvalsh(covs)
    assert (w > 0).all(), f"lost positive-definiteness: min eigenvalue {w.min()}"


def stationary_draws(T, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((3, T, 1)) * 3.0).astype(dtype)


@pytest.mark.slow
def test_float64_one_million_steps():
    T = 1_000_000
    res = bayesfilt.kalman_filter(trend_models(np.float64), stationary_draws(T, np.float64))
    assert res.means.shape == (3, T, 2)
    assert_spd_finite(res)


@pytest.mark.slow
def test_float32_262144_steps():
    T = 262_144
    y = stationary_draws(T, np.float32)
    res = bayesfilt.kalman_filter(trend_models(np.float32), y)
    assert res.means.dtype == np.float32
    assert_spd_finite(res)
    # The observable models (0 and 2) track the float64 run to 1e-3 of the state's scale.
    # Model 1's level variance grows without bound (~0.1 per step, to ~2.6e4): adding 0.1 to
    # 2.6e4 in float32 rounds by ~1e-2 relative each step, so only finiteness and
    # definiteness are asked of it.
    ref = bayesfilt.kalman_filter(trend_models(np.float64), y.astype(np.float64))
    for b in (0, 2):
        err = np.abs(res.means[b] - ref.means[b]).max() / np.abs(ref.means[b]).max()
        assert err < 1e-3, (b, err)
        assert abs(res.loglik[b] - ref.loglik[b]) < 1e-3 * abs(ref.loglik[b])


@pytest.mark.parametrize("gap", [1, 17, 10_000])
def test_missing_runs_of_any_length(gap):
    """A gap of pure prediction equals predicting `gap` times, and the filter recovers after it."""
    model = bayesfilt.models.constant_velocity(q=0.01, r=1.0, dim=1)
    T = gap + 40
    _, y = model.simulate(T, seed=gap)
    y[20:20 + gap] = np.nan
    res = bayesfilt.kalman_filter(model, y)
    assert_spd_finite(res)
    g = bayesfilt.Gaussian(res.means[19], res.covs[19])
    for t in range(20, 20 + gap):
        g = bayesfilt.predict(g, model, t)
    np.testing.assert_allclose(res.covs[19 + gap], g.cov, rtol=1e-10)
    # after the gap the position variance comes back to its steady-state level
    assert res.covs[-1, 0, 0] < 2 * res.covs[19, 0, 0]


def test_partially_missing_long_run():
    model = bayesfilt.models.constant_velocity(q=0.01, r=1.0, dim=2)
    _, y = model.simulate(5000, seed=1)
    y[100:4900, 1] = np.nan                       # the north coordinate is lost for 4800 steps
    res = bayesfilt.kalman_filter(model, y)
    assert_spd_finite(res)
    assert res.covs[4899, 1, 1] > 1e3 * res.covs[4899, 0, 0]   # unseen coordinate's variance grows
