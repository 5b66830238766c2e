"""Square-root (Cholesky) filter: equals the covariance form, and stays accurate and positive
definite on an ill-conditioned problem where the plain form does not (exact rational reference)."""

from fractions import Fraction

import numpy as np
import pytest

import bayesfilt
from bayesfilt.filters.sqrt import psd_sqrt, tria
from conftest import random_model


def assert_same(a, b, tol=1e-9):
    for field in ("means", "covs", "predicted_means", "predicted_covs", "loglik_terms"):
        np.testing.assert_allclose(getattr(a, field), getattr(b, field), atol=tol, rtol=0, err_msg=field)
    np.testing.assert_allclose(a.loglik, b.loglik, atol=tol, rtol=1e-12)


@pytest.mark.parametrize("n,m,T", [(1, 1, 1), (2, 1, 7), (3, 2, 40), (4, 3, 33), (2, 4, 5)])
def test_equals_covariance_form(rng, n, m, T):
    model = random_model(rng, n, m)
    _, y = model.simulate(T, seed=int(rng.integers(1 << 30)))
    assert_same(bayesfilt.sqrt_filter(model, y), bayesfilt.kalman_filter(model, y))


@pytest.mark.parametrize("case", ["missing_batch", "time_varying", "bias_singular_q", "singular_p0", "batched_params"])
def test_equals_covariance_form_cases(rng, case):
    n, m, T = 3, 2, 21
    kw = {}
    if case == "time_varying":
        kw = dict(time_varying=("F", "Q", "H", "R", "b", "d"), T=T, bias=True)
    if case == "bias_singular_q":
        kw = dict(bias=True, psd_q=True)
    model = random_model(rng, n, m, **kw)
    if case == "singular_p0":
        model = bayesfilt.models.constant_velocity(q=0.1, P0=np.diag([1.0, 1.0, 0.0, 0.0]))
    batch = (3, 2) if case in ("missing_batch", "batched_params") else ()
    if case == "batched_params":
        model = model.replace(Q=np.stack([model.Q * s for s in (0.0, 1.0, 3.0)])[:, None])  # (3, 1, n, n), one Q = 0
    _, y = model.simulate(T, seed=4, batch_shape=batch)
    y[..., 0, 0] = np.nan                                                     # partial
    y[..., 3, :] = np.nan                                                     # whole vector
    y[..., T - 1, :] = np.nan
    res = bayesfilt.sqrt_filter(model, y)
    assert_same(res, bayesfilt.kalman_filter(model, y))
    assert np.all(res.loglik_terms[..., 3] == 0.0)


def test_tria_and_psd_sqrt(rng):
    A = rng.standard_normal((4, 3, 5))
    L = tria(A)
    np.testing.assert_allclose(L @ np.swapaxes(L, -1, -2), A @ np.swapaxes(A, -1, -2), atol=1e-12)
    assert np.all(np.triu(L, 1) == 0) and np.all(np.diagonal(L, axis1=-2, axis2=-1) >= 0)
    P = np.array([[4.0, 2.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 0.0]])           # rank 1: cholesky fails
    with pytest.raises(np.linalg.LinAlgError):
        np.linalg.cholesky(P)
    S = psd_sqrt(P)
    np.testing.assert_allclose(S @ S.T, P, atol=1e-12)


def exact_kalman(model, y):
    """Plain covariance-form Kalman filter in exact rational arithmetic (fractions.Fraction).

    The float64 inputs are converted exactly, so the only error of the reference is the final
    rounding of its outputs to float64.
    """
    def mat(A):
        return [[Fraction(float(v)) for v in row] for row in np.atleast_2d(A)]

    def mm(A, B):
        return [[sum(A[i][k] * B[k][j] for k in range(len(B))) for j in range(len(B[0]))] for i in range(len(A))]

    def tr(A):
        return [list(r) for r in zip(*A)]

    def add(A, B, s=1):
        return [[a + s * b for a, b in zip(ra, rb)] for ra, rb in zip(A, B)]

    def inv(A):                                                                # Gauss-Jordan, exact
        k = len(A)
        M = [row[:] + [Fraction(int(i == j)) for j in range(k)] for i, row in enumerate(A)]
        for c in range(k):
            p = next(r for r in range(c, k) if M[r][c] != 0)
            M[c], M[p] = M[p], M[c]
            M[c] = [v / M[c][c] for v in M[c]]
            for r in range(k):
                if r != c and M[r][c] != 0:
                    M[r] = [a - M[r][c] * b for a, b in zip(M[r], M[c])]
        return [row[k:] for row in M]

    m, P = [[v] for v in mat(model.m0)[0]], mat(model.P0)
    F, Q, H, R = mat(model.F), mat(model.Q), mat(model.H), mat(model.R)
    means, covs = [], []
    for t, yt in enumerate(y):
        if t:
            m, P = mm(F, m), add(mm(mm(F, P), tr(F)), Q)                       # predict
        S = add(mm(mm(H, P), tr(H)), R)
        K = mm(mm(P, tr(H)), inv(S))                                           # K = P H^T S^{-1}
        m = add(m, mm(K, add([[Fraction(float(v))] for v in yt], mm(H, m), -1)))
        P = add(P, mm(mm(K, H), P), -1)                                        # P - K H P
        means.append([float(v[0]) for v in m])
        covs.append([[float(v) for v in row] for row in P])
    return np.array(means), np.array(covs)


@pytest.mark.parametrize("q", [0.0, 1e-6])
def test_ill_conditioned_stays_positive_definite(q):
    """Prior variance 1e24 and a nearly noiseless position sensor (R = 1e-12) on a
    constant-velocity model: the covariance spans 36 orders of magnitude in one update.

    From step 2 on (both states identified, true eigenvalues ~1e-14..1e-12) the plain form's
    covariance has lost positive definiteness (smallest eigenvalue <= 0 or far below the
    truth) while the square-root filter's stays positive definite and matches the exact
    rational reference to rounding.
    """
    model = bayesfilt.LinearGaussianSSM(m0=np.zeros(2), P0=1e24 * np.eye(2), F=np.array([[1.0, 1.0], [0.0, 1.0]]),
                                        Q=q * np.eye(2), H=np.array([[1.0, 0.5]]), R=np.array([[1e-12]]))
    _, y = model.replace(P0=np.eye(2)).simulate(6, seed=1)
    ref_means, ref_covs = exact_kalman(model, y)
    ref_eig = np.linalg.eigvalsh(ref_covs[1:])[:, 0]
    assert np.all(ref_eig > 1e-14)

    res = bayesfilt.sqrt_filter(model, y)
    eig = np.linalg.eigvalsh(res.covs[1:])[:, 0]
    assert np.all(eig > 0)
    np.testing.assert_allclose(eig, ref_eig, rtol=1e-6)
    scale = np.abs(ref_covs[1:]).max(axis=(-2, -1), keepdims=True)
    assert np.abs(res.covs[1:] - ref_covs[1:]).max(axis=(-2, -1)).max() <= 1e-9 * scale.min()
    np.testing.assert_allclose(res.means[1:], ref_means[1:], atol=1e-9)

    # The same problem breaks the plain (Joseph-form) covariance filter: this guards that the
    # test problem really is ill-conditioned enough to tell the two apart.
    plain = bayesfilt.kalman_filter(model, y)
    plain_eig = np.linalg.eigvalsh(plain.covs[1:])[:, 0]
    assert np.any(plain_eig < 1e-3 * ref_eig)


def test_float32_accepted(rng):
    model = random_model(rng, 2, 1)
    _, y = model.simulate(20, seed=0)
    r64 = bayesfilt.sqrt_filter(model, y)
    r32 = bayesfilt.sqrt_filter(model.astype(np.float32), y.astype(np.float32))
    assert r32.means.dtype == np.float32 and r32.covs.dtype == np.float32
    np.testing.assert_allclose(r32.means, r64.means, rtol=1e-4, atol=1e-4)


def test_bad_inputs_raise_named_errors():
    base = dict(m0=np.zeros(2), P0=np.eye(2), F=np.eye(2), Q=np.eye(2), H=np.ones((1, 2)), R=np.eye(1))
    model = bayesfilt.LinearGaussianSSM(**base)
    for y, match in ((np.zeros((0, 1)), "^y:.*zero time steps"), (np.zeros((3, 2)), "^y:.*components"),
                     (np.zeros(3), "^y:.*shape"), (np.array([[np.inf]]), "^y:.*infinite")):
        with pytest.raises(bayesfilt.BayesfiltValueError, match=match):
            bayesfilt.sqrt_filter(model, y)
    for change, match in ((dict(R=np.array([[-1.0]])), "^R:.*positive definite"),
                          (dict(P0=np.array([[1.0, 0.0], [0.0, -1.0]])), "^P0:.*semi-definite"),
                          (dict(Q=np.array([[1.0, 2.0], [0.0, 1.0]])), "^Q:.*symmetric"),
                          (dict(H=np.array([[np.nan, 0.0]])), "^H:.*non-finite"),
                          (dict(P0=np.diag([0.0, 1.0]), diffuse=np.array([True, False])), "^model:.*diffuse")):
        with pytest.raises(bayesfilt.BayesfiltValueError, match=match) as info:
            bayesfilt.sqrt_filter(bayesfilt.LinearGaussianSSM(**{**base, **change}), np.zeros((3, 1)))
        assert "Fix:" in str(info.value)
    with pytest.raises(bayesfilt.BayesfiltTypeError, match="^model:"):
        bayesfilt.sqrt_filter(None, np.zeros((3, 1)))
