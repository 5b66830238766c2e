"""NEES/NIS: calibrated on data from the model, failing with a wrong noise level."""

import numpy as np
import pytest
from scipy.stats import chi2

from bayesfilt import BayesfiltValueError, kalman_filter
from bayesfilt.consistency import check_average, chi2_bounds, nees, nis
from bayesfilt.models import constant_velocity_irregular

N_RUNS, T = 40, 60


@pytest.fixture(scope="module")
def simulated():
    times = np.cumsum(np.r_[0.0, np.random.default_rng(0).uniform(0.5, 2.0, T - 1)])
    model = constant_velocity_irregular(times, 0.5, 4.0, m0=np.zeros(4), P0=np.eye(4))
    x, y = model.simulate(T, seed=1, batch_shape=(N_RUNS,))
    return model, x, y


def stats(model, x, y):
    f = kalman_filter(model, y)
    v, k = nis(model, y, f)
    return nees(x, f.means, f.covs), v, k


def test_consistent_filter_inside_bounds(simulated):
    model, x, y = simulated
    e, v, k = stats(model, x, y)
    assert check_average(v, k).inside                              # NIS over runs and time (independent)
    lo, hi = chi2_bounds(4, N_RUNS)
    assert lo <= e[:, -1].mean() <= hi                             # NEES at one step over independent runs
    per_step = e.mean(0)
    assert np.mean((per_step >= lo) & (per_step <= hi)) >= 0.85    # ~95 % of steps inside


@pytest.mark.parametrize("change", [{"Q": 0.05}, {"Q": 20.0}, {"R": 10.0}, {"R": 0.1}])
def test_wrong_noise_level_is_detected(simulated, change):
    model, x, y = simulated
    (name, factor), = change.items()
    wrong = model.replace(**{name: getattr(model, name) * factor})
    e, v, k = stats(wrong, x, y)
    assert not check_average(v, k).inside
    lo, hi = chi2_bounds(4, N_RUNS)
    assert np.mean((e.mean(0) >= lo) & (e.mean(0) <= hi)) < 0.5


def test_nis_from_loglik_terms_and_missing_components(simulated):
    """ν_t = -2 ℓ_t - k_t log 2π - log|S_t|, with S_t from the predicted covariance."""
    model, x, y = simulated
    y = y[:3].copy()
    y[:, 5, 0] = np.nan
    y[:, 9] = np.nan
    f = kalman_filter(model, y)
    v, k = nis(model, y, f)
    assert k[0, 5] == 1 and k[0, 9] == 0 and v[0, 9] == 0 and k[0, 0] == 2
    for t in (0, 5, 20):
        obs = ~np.isnan(y[0, t])
        S = (model.H @ f.predicted_covs[0, t] @ model.H.T + model.R)[np.ix_(obs, obs)]
        ref = -2 * f.loglik_terms[0, t] - obs.sum() * np.log(2 * np.pi) - np.linalg.slogdet(S)[1]
        assert v[0, t] == pytest.approx(ref, rel=1e-9)


def test_bounds_and_basic_values():
    lo, hi = chi2_bounds(3, 10, 0.9)
    assert lo == pytest.approx(chi2.ppf(0.05, 30) / 10) and hi == pytest.approx(chi2.ppf(0.95, 30) / 10)
    assert float(nees(np.array([[1.0, 2.0]]), np.zeros((1, 2)), np.diag([1.0, 4.0])[None])[0]) == pytest.approx(2.0)
    with pytest.raises(BayesfiltValueError):
        chi2_bounds(2, prob=1.5)
    with pytest.raises(BayesfiltValueError):
        nees(np.zeros((3, 2)), np.zeros((3, 3)), np.zeros((3, 3, 3)))
    with pytest.raises(BayesfiltValueError):
        check_average(np.ones(3), 0)


def test_nis_masks_through_the_shared_observed_system(simulated, monkeypatch):
    """NIS restricts each step to its observed components with bayesfilt.linalg.observed_system (the one
    masking rule of the filters), not a copy of it: every step goes through that function."""
    import bayesfilt.consistency as consistency
    from bayesfilt.linalg import observed_system
    calls = []

    def spy(*args):
        calls.append(1)
        return observed_system(*args)

    monkeypatch.setattr(consistency, "observed_system", spy)
    model, x, y = simulated
    y = y[:2].copy()
    y[:, 3, 1] = np.nan
    nis(model, y, kalman_filter(model, y))
    assert len(calls) == y.shape[-2]
