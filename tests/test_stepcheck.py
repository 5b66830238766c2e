"""The parallel filters' step check (bayesfilt.scan.stepcheck): inaccurate scans raise, exact ones pass.

References: the sequential ``kalman_filter`` (the specification) and hand-perturbed results; the
failing models are those of docs/reliability.md (nearly redundant, very precisely measured states;
long runs of missing observations in the information form).
"""

import numpy as np
import pytest

import bayesfilt
from bayesfilt.scan.covariance import scan_filter
from bayesfilt.scan.stepcheck import check_steps, promised

from conftest import nearly_redundant_model, random_model


def _max_rel(a, b):
    return float((np.abs(np.asarray(a) - b) / np.maximum(np.abs(b), 1.0)).max())


@pytest.mark.parametrize("r2", [1e-8, 1e-12])
@pytest.mark.parametrize("schedule", ["tree", "chunked"])
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_refuses_the_ill_conditioned_covariance_scan(backend, schedule, r2):
    """The element scans miss kalman_filter by 1e-6 .. 1e4 here; unchecked they returned it silently."""
    model = nearly_redundant_model(r2)
    _, y = model.simulate(8, seed=1)
    if backend == "torch":
        torch = pytest.importorskip("torch")
        y = torch.as_tensor(y)
    with pytest.raises(bayesfilt.BayesfiltValueError, match="step check") as info:
        bayesfilt.parallel_filter(model, y, method="elements", schedule=schedule, backend=backend)
    assert "verify=False" in str(info.value)
    res = bayesfilt.parallel_filter(model, y, method="elements", schedule=schedule, backend=backend, verify=False)
    ref = bayesfilt.kalman_filter(model, np.asarray(y))
    assert _max_rel(res.means, ref.means) > 1e-9                      # what the check refused is really off


@pytest.mark.parametrize("form", ["covariance", "information"])
@pytest.mark.parametrize("schedule", ["sequential", "tree", "chunked"])
def test_passes_exact_results(form, schedule):
    """Random stable models, batches, missing data, T = 1..65: checked results equal kalman_filter."""
    rng = np.random.default_rng(4)
    for T, batch in ((1, ()), (2, (3,)), (65, (2,))):
        model = random_model(rng, 3, 2)
        _, y = model.simulate(T, seed=2, batch_shape=batch)
        y[..., ::4, 0] = np.nan
        res = bayesfilt.parallel_filter(model, y, form=form, schedule=schedule, method="elements", verify=True)
        ref = bayesfilt.kalman_filter(model, y)
        assert _max_rel(res.means, ref.means) < 1e-9 and _max_rel(res.covs, ref.covs) < 1e-9


def test_passes_torch_float32():
    torch = pytest.importorskip("torch")
    model = bayesfilt.models.constant_velocity(q=0.1, r=1.0, dim=2)
    _, y = model.simulate(300, seed=5, batch_shape=(4,))
    res = bayesfilt.parallel_filter(model, torch.as_tensor(y, dtype=torch.float32), verify=True)
    assert res.means.dtype == torch.float32


@pytest.mark.parametrize("field", ["means", "covs"])
def test_catches_a_perturbed_step(field):
    """One entry moved by 1e3 x the promise fails at that step; by a tenth of the promise it passes."""
    model = bayesfilt.models.constant_velocity(q=0.1, r=1.0)
    _, y = model.simulate(40, seed=0)
    yt = y[:, None]                                                    # time-first, one series
    tol = promised("covariance", "numpy", "float64").bound
    for size, fails in ((1e3 * tol, True), (0.1 * tol, False)):
        out = scan_filter(model, yt, "tree")
        x = out[field]
        if field == "means":
            x[17, 0, 1] += size * max(abs(x[17, 0, 1]), 1.0)
        else:                                                          # P_01 and P_10 (kept symmetric)
            x[17, 0, 0, 1] += size * max(abs(x[17, 0, 0, 1]), 1.0)
            x[17, 0, 1, 0] = x[17, 0, 0, 1]
        if fails:
            with pytest.raises(bayesfilt.BayesfiltValueError, match="at step 17 "):
                check_steps(model, yt, out, "covariance", "numpy", "parallel_filter")
        else:
            check_steps(model, yt, out, "covariance", "numpy", "parallel_filter")


def test_information_form_accepts_a_badly_scaled_exact_case():
    """Variances 1e4 and 1e-4: exact to 1e-14, refused before by the cond(Λ) ~ tr Λ tr P guard (κ̂ = 1e8)."""
    model = bayesfilt.LinearGaussianSSM(F=np.eye(2), Q=np.diag([1e4, 1e-4]), H=np.eye(2), R=np.diag([1e4, 1e-4]),
                                        m0=np.zeros(2), P0=np.diag([1e4, 1e-4]))
    _, y = model.simulate(300, seed=2)
    for schedule in ("tree", "chunked"):
        res = bayesfilt.parallel_filter(model, y, form="information", schedule=schedule)
        ref = bayesfilt.kalman_filter(model, y)
        assert _max_rel(res.means, ref.means) < 1e-9 and _max_rel(res.covs, ref.covs) < 1e-9


def test_information_form_refuses_a_long_gap():
    """160 missing steps of a constant-velocity model: ~1e-7 off in the information form (checked: refused)."""
    model = bayesfilt.models.constant_velocity(q=0.1, r=1.0)
    _, y = model.simulate(300, seed=3)
    y[100:260] = np.nan
    with pytest.raises(bayesfilt.BayesfiltValueError, match="information-form scan .* step check"):
        bayesfilt.parallel_filter(model, y, form="information", schedule="tree")
    res = bayesfilt.parallel_filter(model, y, form="information", schedule="tree", verify=False)
    assert _max_rel(res.means, bayesfilt.kalman_filter(model, y).means) > 1e-9
    bayesfilt.parallel_filter(model, y, form="covariance", schedule="tree")       # the covariance form holds


def test_smoother_checks_its_filter():
    model = nearly_redundant_model(1e-10)
    _, y = model.simulate(8, seed=1)
    with pytest.raises(bayesfilt.BayesfiltValueError, match="parallel_smoother's covariance-form scan"):
        bayesfilt.parallel_smoother(model, y, method="elements")
    bayesfilt.parallel_smoother(model, y, method="elements", verify=False)


def test_verify_must_be_a_bool():
    model = bayesfilt.models.constant_velocity(q=0.1, r=1.0)
    _, y = model.simulate(5, seed=0)
    with pytest.raises(bayesfilt.BayesfiltTypeError, match="verify"):
        bayesfilt.parallel_filter(model, y, verify="yes")
    with pytest.raises(bayesfilt.BayesfiltTypeError, match="verify"):
        bayesfilt.parallel_smoother(model, y, verify=1)


@pytest.mark.parametrize("field", ["means", "covs"])
def test_smoother_check_catches_a_perturbed_step(field):
    """The RTS step check: one smoothed entry moved by 1e3 x the promise fails at that step."""
    from bayesfilt.scan.smoother import scan_rts
    from bayesfilt.scan.stepcheck import check_smoother_steps
    model = bayesfilt.models.constant_velocity(q=0.1, r=1.0)
    _, y = model.simulate(40, seed=0)
    yt = y[:, None]
    tol = promised("covariance", "numpy", "float64", "smoother").bound
    for size, fails in ((1e3 * tol, True), (0.1 * tol, False)):
        f = scan_filter(model, yt, "tree")
        s = scan_rts(model, yt, f["means"], f["covs"], "chunked")
        x = s[field]
        if field == "means":
            x[23, 0, 0] += size * max(abs(x[23, 0, 0]), 1.0)
        else:
            x[23, 0, 1, 1] += size * max(abs(x[23, 0, 1, 1]), 1.0)
        if fails:
            with pytest.raises(bayesfilt.BayesfiltValueError, match="smoothed .* at step 23 "):
                check_smoother_steps(f, s, "covariance", "numpy", "parallel_smoother")
        else:
            check_smoother_steps(f, s, "covariance", "numpy", "parallel_smoother")


@pytest.mark.parametrize("form", ["covariance", "information"])
def test_smoother_check_passes_exact_results(form):
    rng = np.random.default_rng(7)
    for T, batch in ((1, ()), (3, (2,)), (64, ())):
        model = random_model(rng, 3, 2)
        _, y = model.simulate(T, seed=3, batch_shape=batch)
        y[..., 1::5, 1] = np.nan
        res = bayesfilt.parallel_smoother(model, y, form=form, schedule="tree", method="elements", verify=True)
        ref = bayesfilt.rts_smoother(model, bayesfilt.kalman_filter(model, y))
        assert _max_rel(res.means, ref.means) < 1e-9 and _max_rel(res.covs, ref.covs) < 1e-9


def test_checks_the_returned_predictions_too():
    """A wrong returned prediction (as a Triton kernel would return from a wrong scan prefix) fails,
    although every filtered step is one update of it: the check rebuilds the predictions from the
    returned filtered moments (found by the session-10 review: it used the returned ones)."""
    model = bayesfilt.models.constant_velocity(q=0.1, r=1.0)
    _, y = model.simulate(40, seed=0)
    yt = y[:, None]
    out = scan_filter(model, yt, "tree")
    out["predicted_means"][25] += 1e-3                                 # a wrong prefix ...
    from bayesfilt.scan.stepcheck import update_residuals
    dm, m_ref, *_ = update_residuals(model, yt, out["predicted_means"], out["predicted_covs"],
                                     out["means"], out["covs"])
    out["means"][25] = m_ref[25]                                       # ... and its consistent update
    with pytest.raises(bayesfilt.BayesfiltValueError, match="at step 25 "):
        check_steps(model, yt, out, "covariance", "triton", "parallel_filter")


def test_message_leaves_out_the_failing_form_and_backend():
    model = nearly_redundant_model(1e-12)
    _, y = model.simulate(8, seed=1)
    with pytest.raises(bayesfilt.BayesfiltValueError) as info:
        bayesfilt.parallel_filter(model, y, method="elements", schedule="tree")
    fix = str(info.value).split("Fix:")[1]
    assert "form='sqrt'" in fix and "form='covariance'" not in fix


def test_shared_covariances_are_checked_once():
    """method='riccati' returns covariances shared by the batch (stride-0 views): the check works on their
    one slice (session-10 review: it expanded them per series, 5.7 s and 1.7 GB at 2000 x 500 against
    0.9 s and 0.46 GB now), passes on them and still catches a wrong shared covariance."""
    from bayesfilt.scan.covariance import riccati_filter
    from bayesfilt.scan.stepcheck import _unshared
    model = bayesfilt.models.constant_velocity(q=0.1, r=1.0)
    _, y = model.simulate(60, seed=0, batch_shape=(5,))
    yt = np.moveaxis(y, -2, 0)
    out = riccati_filter(model, yt)
    assert out["covs"].strides[1] == 0 and _unshared(out["covs"]).shape == (60, 1, 4, 4)
    check_steps(model, yt, out, "covariance", "numpy", "parallel_filter")
    res = bayesfilt.parallel_filter(model, y, method="riccati", verify=True)
    assert _max_rel(res.means, bayesfilt.kalman_filter(model, y).means) < 1e-9
    covs = np.array(out["covs"][:, :1])                                # one shared copy, then perturbed
    covs[30, 0, 1, 1] *= 1 + 1e-6
    out["covs"] = np.broadcast_to(covs, out["covs"].shape)
    with pytest.raises(bayesfilt.BayesfiltValueError, match="step 30 "):
        check_steps(model, yt, out, "covariance", "numpy", "parallel_filter")
