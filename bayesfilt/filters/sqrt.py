"""The square-root (Cholesky) covariance filter: lower-triangular factors S with P = S S^T.

Model and notation: docs/math/notation.md; derivation of the QR-based steps:
docs/math/sqrt_filter.md. One equation per line; shapes carry leading batch axes (...).

Every covariance the filter forms is S S^T for a real S, so it stays symmetric and positive
semi-definite in floating point, where the plain (and even the Joseph) form can lose it.
"""

from __future__ import annotations

import numpy as np

from ..errors import value_error
from ..linalg import mT, mv, observed_system, sym
from ..model import LinearGaussianSSM
from ..results import FilterResult
from .common import prepare
from .covariance import check_finite_result

LOG_2PI = float(np.log(2.0 * np.pi))


def tria(A: np.ndarray) -> np.ndarray:
    """Lower-triangular L (n, n) with L L^T = A A^T for A of shape (..., n, k), k >= n; diag(L) >= 0.

    From the QR factorisation A^T = Θ U (Θ orthonormal columns): A A^T = U^T U, L = U^T.
    The columns of A are first sorted by decreasing norm (a permutation Π changes nothing:
    A Π Π^T A^T = A A^T); Householder QR with this row sorting of A^T is accurate row-wise on
    graded matrices (Powell & Reid 1969; Cox & Higham 1998), which keeps a tiny posterior
    variance next to a huge prior one instead of cancelling it away.
    """
    order = np.argsort(-np.linalg.norm(A, axis=-2), axis=-1, kind="stable")
    A = np.take_along_axis(A, order[..., None, :], axis=-1)    # A Π: columns by decreasing norm
    U = np.linalg.qr(mT(A), mode="r")                          # (A Π)^T = Θ U
    L = mT(U)                                                  # A A^T = L L^T, L lower triangular
    sign = np.where(np.diagonal(L, axis1=-2, axis2=-1) < 0, -1.0, 1.0).astype(L.dtype)
    return L * sign[..., None, :]                              # flip columns: L diag(±1) is a factor too


def psd_sqrt(P: np.ndarray) -> np.ndarray:
    """Lower-triangular factor S (S S^T = P) of a symmetric PSD matrix that may be singular.

    ``np.linalg.cholesky`` fails on singular P; the eigen-root V diag(√w) V^T is then
    made triangular by :func:`tria` (negative rounding eigenvalues are clipped to 0).
    """
    w, V = np.linalg.eigh(P)
    root = V * np.sqrt(np.clip(w, 0.0, None))[..., None, :]    # P = root root^T
    return tria(root)


def sqrt_predict_step(mean: np.ndarray, chol: np.ndarray, F: np.ndarray, chol_Q: np.ndarray,
                      b: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Square-root prediction; mean (..., n), chol (..., n, n) lower. No validation (a kernel)."""
    mean = mv(F, mean)                                         # m_{t|t-1} = F_t m_{t-1}
    if b is not None:
        mean = mean + b                                        #           + b_t
    FS = F @ chol
    pre = np.concatenate(np.broadcast_arrays(FS, chol_Q), axis=-1)  # [F S, S_Q]: pre pre^T = F P F^T + Q
    chol = tria(pre)                                           # S_{t|t-1} = tria([F_t S_{t-1}, S_Q])
    return mean, chol


def sqrt_update_step(mean: np.ndarray, chol: np.ndarray, y_t: np.ndarray, H: np.ndarray, R: np.ndarray,
                     d: np.ndarray | None, t: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Square-root update with the observed components of ``y_t`` (NaN = missing).

    Returns ``(mean, chol, loglik_term)``. No validation.
    """
    n = mean.shape[-1]
    y0, H, R, d, obs, n_obs = observed_system(y_t, H, R, d)
    m = H.shape[-2]
    try:
        chol_R = np.linalg.cholesky(R)                         # R_t = S_R S_R^T (observed block)
    except np.linalg.LinAlgError:
        raise value_error("R", f"is not positive definite on the observed components at step {t}",
                          "make R positive definite for every observed component") from None
    HS = H @ chol
    batch = np.broadcast_shapes(chol_R.shape[:-2], HS.shape[:-2], chol.shape[:-2])
    pre = np.zeros(batch + (m + n, m + n), dtype=chol.dtype)
    pre[..., :m, :m] = chol_R                                  # pre = [[S_R, H S],
    pre[..., :m, m:] = HS                                      #        [0,   S  ]]
    pre[..., m:, m:] = chol                                    # pre pre^T = [[S, H P], [P H^T, P]]
    post = tria(pre)                                           # pre Θ = [[X, 0], [Y, Z]] (lower)
    X = post[..., :m, :m]                                      # X X^T = S_t = H P H^T + R
    Y = post[..., m:, :m]                                      # Y X^T = P H^T, so K_t = Y X^{-1}
    chol = post[..., m:, m:]                                   # Z Z^T = P - P H^T S^{-1} H P = P_t
    y_hat = mv(H, mean) if d is None else mv(H, mean) + d     # yhat_t = H_t m_{t|t-1} + d_t
    r = y0 - y_hat                                             # r_t = y_t - yhat_t (0 where missing)
    z = np.linalg.solve(X, r[..., None])[..., 0]               # z = X^{-1} r_t
    mean = mean + mv(Y, z)                                     # m_t = m_{t|t-1} + K_t r_t = m + Y z
    logdet = 2.0 * np.log(np.diagonal(X, axis1=-2, axis2=-1)).sum(-1)  # log|S_t| = 2 Σ log X_ii
    loglik = -0.5 * (n_obs * LOG_2PI + logdet + (z * z).sum(-1))       # log N(r_t; 0, S_t), observed rows only
    return mean, chol, loglik


def sqrt_filter(model: LinearGaussianSSM, y, *, validate: bool = True) -> FilterResult:
    """Square-root (Cholesky) covariance Kalman filter over observations ``y`` (..., T, m).

    Propagates lower-triangular factors S_t (P_t = S_t S_t^T) with QR-based steps
    (docs/math/sqrt_filter.md): prediction S_{t|t-1} = tria([F_t S_{t-1}, S_Q]); update by
    triangularising [[S_R, H S], [0, S]]. Gives the same result as :func:`~bayesfilt.kalman_filter`
    (n states, m observations) but every covariance is S S^T, so it stays symmetric positive
    semi-definite on ill-conditioned problems (huge prior variances, nearly noiseless sensors).
    Singular Q and P0 are factored through their eigen-roots. NaN in ``y`` marks missing
    components or vectors; leading batch axes are filtered at once.

    Args:
        model: the state-space model (no diffuse states: use information_filter or kalman_filter).
        y: observations (..., T, m).
        validate: check the model's definiteness first (the default).

    Returns:
        A :class:`~bayesfilt.FilterResult` (means, covs = S S^T, predicted moments, log-likelihood).

    Example:
        >>> import numpy as np, bayesfilt
        >>> model = bayesfilt.LinearGaussianSSM(m0=np.zeros(1), P0=np.eye(1), F=np.eye(1),
        ...     Q=np.eye(1), H=np.eye(1), R=np.eye(1))
        >>> res = bayesfilt.sqrt_filter(model, np.array([[1.0], [np.nan], [2.0]]))
        >>> round(float(res.covs[0, 0, 0]), 12)
        0.5
    """
    model, y, T, batch = prepare(model, y, validate=validate)
    if model.has_diffuse:
        raise value_error("model", "declares diffuse states, which the square-root filter does not handle",
                          "use information_filter or kalman_filter for exact diffuse initialisation")
    n = model.n
    dtype = y.dtype
    means = np.empty(batch + (T, n), dtype)
    covs = np.empty(batch + (T, n, n), dtype)
    pmeans = np.empty(batch + (T, n), dtype)
    pcovs = np.empty(batch + (T, n, n), dtype)
    terms = np.empty(batch + (T,), dtype)
    mean = np.broadcast_to(model.m0, batch + (n,))             # m_{1|0} = m0
    chol = np.broadcast_to(psd_sqrt(model.P0), batch + (n, n))  # S_{1|0} S_{1|0}^T = P0
    chol_Q = None if "Q" in model.time_varying else psd_sqrt(model.Q)
    for t in range(T):
        if t > 0:
            cq = chol_Q if chol_Q is not None else psd_sqrt(model.param("Q", t))  # S_Q S_Q^T = Q_t
            mean, chol = sqrt_predict_step(mean, chol, model.param("F", t), cq, model.param("b", t))
        pmeans[..., t, :] = mean
        pcovs[..., t, :, :] = sym(chol @ mT(chol))             # P_{t|t-1} = S S^T
        mean, chol, ll = sqrt_update_step(mean, chol, y[..., t, :], model.param("H", t), model.param("R", t),
                                          model.param("d", t), t)
        means[..., t, :] = mean
        covs[..., t, :, :] = sym(chol @ mT(chol))              # P_t = S_t S_t^T
        terms[..., t] = ll
    return check_finite_result(FilterResult(means=means, covs=covs, predicted_means=pmeans, predicted_covs=pcovs,
                                            loglik=terms.sum(-1), loglik_terms=terms), "sqrt_filter")
