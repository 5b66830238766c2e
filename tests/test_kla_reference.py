"""The KLA diagonal filter's references: one lane is the scalar classical Kalman filter.

The NumPy reference (bayesfilt.filters.diagonal) is checked against the independently written
classical filters (information_filter, kalman_filter) on the scalar model F = a_bar, Q = p_bar,
H = k_t, R = 1 / lambda_v_t with prior precision lam_0; the torch reference against the NumPy one.
"""

import numpy as np
import pytest

import bayesfilt
from bayesfilt import BayesfiltError
from bayesfilt.filters.diagonal import diagonal_information_filter


def _inputs(rng, B, L, M, S, initial=True):
    v = rng.standard_normal((B, L, M))
    lv = np.exp(rng.standard_normal((B, L, M)))
    k = rng.standard_normal((B, L, S))
    q = rng.standard_normal((B, L, S))
    a = rng.uniform(0.3, 1.0, (M, S))
    p = rng.uniform(0.0, 0.5, (M, S))
    st = (np.exp(rng.standard_normal((B, M, S))), rng.standard_normal((B, M, S))) if initial else None
    return v, lv, k, q, a, p, st


def _lane_model(lv, k, a, p, lam0, eta0, extra_last=False):
    """Scalar classical model whose steps 1..L are the KLA tokens of one lane.

    Step 0 carries a missing observation, so its filtered belief is the prior (eta0/lam0, 1/lam0)
    = the KLA initial state, and step 1 predicts from it exactly as KLA's token 1 does.
    """
    L = len(lv)
    T = L + 1 + int(extra_last)
    H = np.ones((T, 1, 1))
    R = np.ones((T, 1, 1))
    H[1:L + 1, 0, 0] = k                                         # H_t = k_t
    R[1:L + 1, 0, 0] = 1.0 / lv                                  # R_t = 1 / lambda_v_t
    return bayesfilt.LinearGaussianSSM(
        m0=np.array([eta0 / lam0]), P0=np.array([[1.0 / lam0]]), F=np.array([[a]]), Q=np.array([[p]]),
        H=H, R=R, time_varying=("H", "R"))


def _lane_obs(v, extra_last=False):
    y = np.concatenate([[np.nan], v] + ([[np.nan]] if extra_last else []))
    return y[:, None]


@pytest.mark.parametrize("initial", [True, False])
def test_lane_is_scalar_information_filter(rng, initial):
    B, L, M, S = 2, 9, 2, 3
    v, lv, k, q, a, p, st = _inputs(rng, B, L, M, S, initial)
    res = diagonal_information_filter(v, lv, k, q, a, p, st)
    lam0 = st[0] if initial else np.ones((B, M, S))
    eta0 = st[1] if initial else np.zeros((B, M, S))
    for b in range(B):
        for m in range(M):
            for s in range(S):
                model = _lane_model(lv[b, :, m], k[b, :, s], a[m, s], p[m, s], lam0[b, m, s], eta0[b, m, s])
                info = bayesfilt.information_filter(model, _lane_obs(v[b, :, m]))
                np.testing.assert_allclose(res.lams[b, :, m, s], info.precisions[1:, 0, 0], rtol=1e-12)
                np.testing.assert_allclose(res.etas[b, :, m, s], info.info_vectors[1:, 0], rtol=1e-11, atol=1e-12)


def test_lane_is_scalar_kalman_filter_and_prior_readout(rng):
    """Posterior readout = filtered moments; prior readout = the classical one-step prediction."""
    B, L, M, S = 1, 12, 3, 2
    v, lv, k, q, a, p, st = _inputs(rng, B, L, M, S)
    post = diagonal_information_filter(v, lv, k, q, a, p, st)
    prior = diagonal_information_filter(v, lv, k, q, a, p, st, prior_readout=True)
    means = np.empty((L, M, S))
    covs = np.empty((L, M, S))
    pmeans = np.empty((L, M, S))
    pcovs = np.empty((L, M, S))
    for m in range(M):
        for s in range(S):
            model = _lane_model(lv[0, :, m], k[0, :, s], a[m, s], p[m, s], st[0][0, m, s], st[1][0, m, s],
                                extra_last=True)
            kf = bayesfilt.kalman_filter(model, _lane_obs(v[0, :, m], extra_last=True))
            means[:, m, s] = kf.means[1:L + 1, 0]
            covs[:, m, s] = kf.covs[1:L + 1, 0, 0]
            pmeans[:, m, s] = kf.predicted_means[2:, 0]            # E[x_{t+1} | v_1..v_t]
            pcovs[:, m, s] = kf.predicted_covs[2:, 0, 0]
    qs = q[0][:, None, :]
    np.testing.assert_allclose(post.y[0], (qs * means).sum(-1), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(post.y_var[0], (qs ** 2 * covs).sum(-1), rtol=1e-9)
    np.testing.assert_allclose(prior.y[0], (qs * pmeans).sum(-1), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(prior.y_var[0], (qs ** 2 * pcovs).sum(-1), rtol=1e-9)
    np.testing.assert_allclose(prior.lam, post.lam, rtol=0)          # final state is the posterior either way


def test_default_initial_state_is_unit_precision_zero_information(rng):
    v, lv, k, q, a, p, _ = _inputs(rng, 2, 5, 2, 3, initial=False)
    r1 = diagonal_information_filter(v, lv, k, q, a, p)
    r2 = diagonal_information_filter(v, lv, k, q, a, p, (np.ones((2, 2, 3)), np.zeros((2, 2, 3))))
    np.testing.assert_array_equal(r1.y, r2.y)


def test_torch_reference_equals_numpy_reference(rng):
    torch = pytest.importorskip("torch")
    from bayesfilt.nn.reference import kla_scan_reference
    for prior in (False, True):
        v, lv, k, q, a, p, st = _inputs(rng, 2, 17, 3, 5)
        res = diagonal_information_filter(v, lv, k, q, a, p, st, prior_readout=prior)
        t = [torch.from_numpy(x) for x in (v, lv, k, q, a, p, st[0], st[1])]
        y, y_var, lam, eta = kla_scan_reference(*t, prior_readout=prior)
        np.testing.assert_allclose(y.numpy(), res.y, rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(y_var.numpy(), res.y_var, rtol=1e-13)
        np.testing.assert_allclose(lam.numpy(), res.lam, rtol=1e-13)
        np.testing.assert_allclose(eta.numpy(), res.eta, rtol=1e-13, atol=1e-13)


def test_torch_reference_gradcheck():
    torch = pytest.importorskip("torch")
    from bayesfilt.nn.functional import random_inputs
    from bayesfilt.nn.reference import kla_scan_reference
    for prior in (False, True):
        args = [x.requires_grad_() for x in random_inputs(1, 4, 2, 3, seed=3)]
        assert torch.autograd.gradcheck(lambda *x: kla_scan_reference(*x, prior_readout=prior), args)


@pytest.mark.parametrize("change, arg", [
    (dict(v=np.zeros((2, 3))), "v"),
    (dict(lambda_v=np.ones((1, 4, 3))), "lambda_v"),
    (dict(k=np.ones((1, 5, 2))), "k"),
    (dict(q=np.ones((1, 4, 3))), "q"),
    (dict(a_bar=np.ones((3, 3))), "a_bar"),
    (dict(lambda_v=np.zeros((1, 4, 2))), "lambda_v"),
    (dict(a_bar=np.zeros((2, 2))), "a_bar"),
    (dict(a_bar=np.full((2, 2), 1.5)), "a_bar"),
    (dict(p_bar=np.full((2, 2), -0.1)), "p_bar"),
    (dict(v=np.full((1, 4, 2), np.nan)), "v"),
    (dict(initial_state=(np.zeros((1, 2, 2)), np.zeros((1, 2, 2)))), "initial_state.lam"),
    (dict(initial_state=(np.ones((1, 3, 2)), np.zeros((1, 2, 2)))), "initial_state.lam"),
    (dict(initial_state=np.ones(3)), "initial_state"),
    (dict(v=np.zeros((1, 0, 2)), lambda_v=np.ones((1, 0, 2)), k=np.ones((1, 0, 2)), q=np.ones((1, 0, 2))), "v"),
])
def test_numpy_reference_rejects_bad_inputs(change, arg):
    kw = dict(v=np.zeros((1, 4, 2)), lambda_v=np.ones((1, 4, 2)), k=np.ones((1, 4, 2)), q=np.ones((1, 4, 2)),
              a_bar=np.full((2, 2), 0.9), p_bar=np.full((2, 2), 0.1))
    kw.update(change)
    with pytest.raises(BayesfiltError, match=arg):
        diagonal_information_filter(**kw)
