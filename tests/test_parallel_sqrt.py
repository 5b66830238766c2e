"""parallel_filter / parallel_smoother with form="sqrt" (bayesfilt.scan.sqrt through the public API):
equal to the sequential references, accurate where the covariance elements are refused, and the
argument checks. The scan itself is tested in tests/test_scan_sqrt.py."""

import numpy as np
import pytest

import bayesfilt

from conftest import nearly_redundant_model, random_model


def _max_rel(a, b):
    return float((np.abs(np.asarray(a) - b) / np.maximum(np.abs(b), 1.0)).max())


@pytest.mark.parametrize("schedule", ["sequential", "tree", "chunked"])
def test_equals_the_sequential_filter_and_smoother(schedule):
    rng = np.random.default_rng(11)
    for T, batch in ((1, ()), (7, (3,)), (130, (2,))):
        model = random_model(rng, 3, 2, time_varying=("F", "R"), T=T)
        _, y = model.simulate(T, seed=5, batch_shape=batch)
        y[..., ::3, 1] = np.nan
        ref = bayesfilt.kalman_filter(model, y)
        res = bayesfilt.parallel_filter(model, y, form="sqrt", schedule=schedule)
        for f in ("means", "covs", "predicted_means", "predicted_covs", "loglik_terms", "loglik"):
            assert _max_rel(getattr(res, f), getattr(ref, f)) < 1e-9, f
        sm = bayesfilt.parallel_smoother(model, y, form="sqrt", schedule=schedule)
        sref = bayesfilt.rts_smoother(model, ref)
        assert _max_rel(sm.means, sref.means) < 1e-9 and _max_rel(sm.covs, sref.covs) < 1e-9


@pytest.mark.parametrize("r2", [1e-8, 1e-12])
def test_accurate_where_the_covariance_elements_are_refused(r2):
    """Nearly redundant states measured very precisely (docs/reliability.md): the covariance elements
    are refused by the step check; the square-root ones pass it and equal kalman_filter (which is
    within 2e-7 of a 60-digit reference at r2 = 1e-12; tests/test_scan_sqrt.py checks an exact one)."""
    model = nearly_redundant_model(r2)
    _, y = model.simulate(8, seed=1)
    with pytest.raises(bayesfilt.BayesfiltValueError, match="form='sqrt'"):
        bayesfilt.parallel_filter(model, y, method="elements", schedule="tree")
    ref = bayesfilt.kalman_filter(model, y)
    for schedule in ("tree", "chunked"):
        res = bayesfilt.parallel_filter(model, y, form="sqrt", schedule=schedule)
        assert _max_rel(res.means, ref.means) < 1e-9 and _max_rel(res.covs, ref.covs) < 1e-9


def test_long_gap():
    """A 10^4-step gap: covariance elements 4e-8 off (refused), square-root 1e-12 (checked, returned)."""
    model = bayesfilt.models.constant_velocity(q=0.01, r=1.0, dim=2)
    _, y = model.simulate(10_060, seed=7)
    y[20:10_020] = np.nan
    ref = bayesfilt.kalman_filter(model, y)
    res = bayesfilt.parallel_filter(model, y, form="sqrt")
    assert _max_rel(res.means, ref.means) < 1e-9


def test_torch_and_argument_checks():
    torch = pytest.importorskip("torch")
    model = bayesfilt.models.constant_velocity(q=0.1, r=1.0)
    _, y = model.simulate(40, seed=0)
    ref = bayesfilt.kalman_filter(model, y)
    res = bayesfilt.parallel_filter(model, torch.as_tensor(y), form="sqrt")
    assert _max_rel(res.means.numpy(), ref.means) < 1e-9
    yg = torch.as_tensor(y).requires_grad_()
    with pytest.raises(bayesfilt.BayesfiltValueError, match="schedule='sequential'"):
        bayesfilt.parallel_filter(model, yg, form="sqrt")
    res = bayesfilt.parallel_filter(model, yg, form="sqrt", schedule="sequential")
    res.loglik.backward()
    assert torch.isfinite(yg.grad).all()
    with pytest.raises(bayesfilt.BayesfiltValueError, match="form='sqrt'"):
        bayesfilt.parallel_filter(model, torch.as_tensor(y), form="sqrt", backend="triton")
    with pytest.raises(bayesfilt.BayesfiltValueError, match="method"):
        bayesfilt.parallel_filter(model, y, form="sqrt", method="riccati")
