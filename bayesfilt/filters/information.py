"""The information-form Kalman filter: precision Λ = P^{-1} and information vector η = Λ m.

Model and notation: docs/math/notation.md; derivation and the choice of prediction form:
docs/math/information_filter.md. One equation per line; shapes carry leading batch axes (...).

A precision may be singular (zero precision = no information): an unknown initial state
(``diffuse`` states of the model) starts with zero precision and the filter runs through the
steps in which it is not yet identified without any large-number approximation.
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

#: An eigenvalue of a precision matrix counts as zero (a direction not yet identified) while it is
#: at most this fraction of the largest eigenvalue. Only used while the model's diffuse states are
#: not all identified; a filter without diffuse states never decides ranks numerically.
RANK_RTOL = 1e-10


def information_prior(model: LinearGaussianSSM, batch: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Prior information (η_{1|0}, Λ_{1|0}) of x_1: inverse of P0 on the proper states, 0 on diffuse ones.

    Raises:
        BayesfiltValueError: if P0 is singular on the non-diffuse states (infinite precision
            cannot be written in information form).
    """
    n = model.n
    keep = ~model.diffuse_mask
    P0 = np.broadcast_to(model.P0, batch + (n, n))
    m0 = np.broadcast_to(model.m0, batch + (n,))
    lam = np.zeros(batch + (n, n), dtype=P0.dtype)
    if keep.any():
        idx = np.flatnonzero(keep)
        P_nd = P0[..., idx[:, None], idx]                      # P0 on the non-diffuse states
        w, V = np.linalg.eigh(P_nd)
        tiny = w.shape[-1] * np.finfo(P0.dtype).eps * np.abs(w).max(-1, keepdims=True)
        if (w <= tiny).any():
            raise value_error("P0", "is singular on the non-diffuse states (a state known exactly has infinite "
                              "precision, which the information form cannot hold)",
                              "use kalman_filter or sqrt_filter, or give every non-diffuse state a positive variance")
        lam[..., idx[:, None], idx] = sym((V / w[..., None, :]) @ mT(V))  # Λ_{1|0} = P0^{-1} on proper states
    eta = mv(lam, m0)                                          # η_{1|0} = Λ_{1|0} m0 (0 on diffuse states)
    return eta, lam


def info_predict_step(eta: np.ndarray, lam: np.ndarray, F: np.ndarray, Q: np.ndarray,
                      b: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Information-form prediction through x_t = F x_{t-1} + b + G u, u ~ N(0, I), Q = G G^T.

    Solves the saddle-point (KKT) system K = [[Λ, 0, F^T], [0, I, G^T], [F, G, 0]] once; needs
    neither F, Q nor Λ invertible (docs/math/information_filter.md). No validation (a kernel).

    Returns:
        ``(eta_pred, lam_pred, logabsdet_K)``; ``log|det K|`` carries the Jacobian of the
        prediction of directions with zero precision (used by the diffuse log-likelihood).

    Raises:
        numpy.linalg.LinAlgError: where K is singular (the predicted covariance is singular).
    """
    n = lam.shape[-1]
    batch = np.broadcast_shapes(lam.shape[:-2], eta.shape[:-1], F.shape[:-2], Q.shape[:-2])
    w, V = np.linalg.eigh(Q)
    G = V * np.sqrt(np.clip(w, 0.0, None))[..., None, :]      # Q_t = G G^T (square, may be singular)
    eye = np.eye(n, dtype=lam.dtype)
    K = np.zeros(batch + (3 * n, 3 * n), dtype=lam.dtype)
    K[..., :n, :n] = lam                                       # K = [[Λ_{t-1}, 0,   F_t^T],
    K[..., n:2 * n, n:2 * n] = eye                             #      [0,       I,   G^T  ],
    K[..., :n, 2 * n:] = mT(F)                                 #      [F_t,     G,   0    ]]
    K[..., n:2 * n, 2 * n:] = mT(G)
    K[..., 2 * n:, :n] = F
    K[..., 2 * n:, n:2 * n] = G
    E = np.zeros(batch + (3 * n, n + 1), dtype=lam.dtype)
    E[..., :n, 0] = eta                                        # right-hand sides [η_{t-1}; 0; 0] and [0; 0; I]
    E[..., 2 * n:, 1:] = eye
    X = np.linalg.solve(K, E)                                  # K^{-1} [[η, 0], [0, 0], [0, I]]
    lam_pred = sym(-X[..., 2 * n:, 1:])                        # Λ_{t|t-1} = -[K^{-1}]_{33} = (F Λ^{-1} F^T + Q)^{-1}
    eta_pred = X[..., 2 * n:, 0]                               # η_{t|t-1} = [K^{-1}]_{31} η_{t-1}
    if b is not None:
        eta_pred = eta_pred + mv(lam_pred, b)                  #             + Λ_{t|t-1} b_t
    logabsdet = np.linalg.slogdet(K)[1]                        # log|det K| (Jacobian term)
    return eta_pred, lam_pred, logabsdet


def info_update_step(eta: np.ndarray, lam: np.ndarray, y_t: np.ndarray, H: np.ndarray, R: np.ndarray,
                     d: np.ndarray | None, t: int = 0):
    """Information-form update with the observed components of ``y_t`` (NaN = missing).

    Returns:
        ``(eta, lam, LiH, Lie, logdet_R, n_obs)``: the posterior information, the whitened
        observation matrix L^{-1} H and data L^{-1}(y - d) (R = L L^T, observed rows only),
        log|R| of the observed block and the number of observed components. No validation.
    """
    y0, H, R, d, obs, n_obs = observed_system(y_t, H, R, d)
    try:
        L = np.linalg.cholesky(R)                              # R_t = L L^T (observed block)
    except np.linalg.LinAlgError:
        raise value_error("R", f"is not positive definite on the observed components at step {t}",
                          "make R positive definite for every observed component") from None
    e = y0 if d is None else y0 - d                            # y_t - d_t (0 where missing)
    LiH = np.linalg.solve(L, np.broadcast_to(H, L.shape[:-2] + H.shape[-2:]))  # L^{-1} H_t
    Lie = np.linalg.solve(L, e[..., None])[..., 0]             # L^{-1} (y_t - d_t)
    lam = sym(lam + mT(LiH) @ LiH)                             # Λ_t = Λ_{t|t-1} + H^T R^{-1} H
    eta = eta + mv(mT(LiH), Lie)                               # η_t = η_{t|t-1} + H^T R^{-1} (y_t - d_t)
    logdet_R = 2.0 * np.log(np.diagonal(L, axis1=-2, axis2=-1)).sum(-1)  # log|R_t| (observed block)
    return eta, lam, LiH, Lie, logdet_R, n_obs


def psd_pinv(lam: np.ndarray, max_nullity: np.ndarray, t: int, what: str):
    """Pseudo-inverse, log pseudo-determinant and nullity of a precision matrix (by eigh).

    At most ``max_nullity`` (per batch element) of the smallest eigenvalues may count as zero,
    and only those <= RANK_RTOL * the largest: the unidentified subspace can only shrink.

    Returns:
        ``(pinv, logpdet, nullity, V, zero)``: V holds the eigenvectors, ``zero`` (..., n) marks
        the columns of V spanning the null space (the unidentified directions).
    """
    n = lam.shape[-1]
    w, V = np.linalg.eigh(lam)
    small = w <= RANK_RTOL * np.abs(w[..., -1:])
    nullity = np.minimum(small.sum(-1), max_nullity)           # eigenvalues ascend: zeros come first
    zero = np.arange(n) < nullity[..., None]
    if (~zero & (w <= 0)).any():
        raise value_error("model", f"the {what} precision lost positive definiteness at step {t} "
                          "(rounding on an ill-conditioned problem)",
                          "rescale the model (e.g. change units), declare states with a huge prior variance "
                          "diffuse (model.diffuse), or use sqrt_filter")
    w_safe = np.where(zero, 1.0, w)
    inv_w = np.where(zero, 0.0, 1.0 / w_safe)
    pinv = sym((V * inv_w[..., None, :]) @ mT(V))              # Λ^+ = V diag(1/w, 0 on the null space) V^T
    logpdet = np.log(w_safe).sum(-1)                           # log pdet Λ (non-zero eigenvalues)
    return pinv, logpdet, nullity, V, zero


def _block(M, mask):
    """M on the rows/columns where ``mask``; the identity elsewhere (a decoupled block)."""
    both = mask[..., :, None] & mask[..., None, :]
    return np.where(both, M, np.eye(M.shape[-1], dtype=M.dtype))


def diffuse_measure(pinf, V_p, zero_p, V, zero):
    """Update the diffuse covariance P∞ through one measurement step; return it and ½ log pdet P∞_t.

    P∞_t = X_t Π_t X_t^T (Durbin & Koopman's diffuse covariance) lives on the unidentified
    subspace null(Λ_t) = span V[:, zero]; conditioning on an exact observation of the identified
    part gives, in the basis N_t of that subspace, N_t^T P∞_t N_t = (N_t^T (P∞_{t|t-1})^+ N_t)^{-1}
    (docs/math/information_filter.md). ½ log pdet P∞_t converts the flat measure on null(Λ_t)
    in x_t's coordinates into the flat measure on the diffuse components of x_1.
    """
    A_p = _block(mT(V_p) @ pinf @ V_p, zero_p)                 # N_p^T P∞_{t|t-1} N_p (identity off the block)
    both_p = zero_p[..., :, None] & zero_p[..., None, :]
    pinf_pinv = V_p @ np.where(both_p, np.linalg.inv(A_p), 0.0) @ mT(V_p)  # (P∞_{t|t-1})^+ = N_p A_p^{-1} N_p^T
    B = _block(mT(V) @ pinf_pinv @ V, zero)                    # N_t^T (P∞_{t|t-1})^+ N_t
    sign, logdet_B = np.linalg.slogdet(B)
    both = zero[..., :, None] & zero[..., None, :]
    pinf = sym(V @ np.where(both, np.linalg.inv(B), 0.0) @ mT(V))  # P∞_t = N_t (N_t^T P∞^+ N_t)^{-1} N_t^T
    return pinf, -0.5 * logdet_B                               # ½ log pdet P∞_t


def _moments(pinv, eta, nullity):
    """Means and covariances where the precision is non-singular; NaN elsewhere."""
    ok = nullity == 0
    cov = np.where(ok[..., None, None], pinv, np.nan)          # P = Λ^{-1}
    mean = np.where(ok[..., None], mv(pinv, eta), np.nan)      # m = Λ^{-1} η
    return mean, cov


def information_filter(model: LinearGaussianSSM, y, *, validate: bool = True) -> FilterResult:
    """Information-form Kalman filter over observations ``y`` of shape (..., T, m).

    Propagates the precision Λ_t = P_t^{-1} and the information vector η_t = Λ_t m_t (n states,
    m observations; model in docs/math/notation.md, derivation in docs/math/information_filter.md).
    Update: Λ_t = Λ_{t|t-1} + H^T R^{-1} H, η_t = η_{t|t-1} + H^T R^{-1}(y_t - d_t) over the
    observed components (NaN marks a missing component or vector). Prediction solves one
    saddle-point system, so singular Q, singular F and zero precision all work.

    Diffuse states (``model.diffuse``) start with zero precision. The log-likelihood then
    follows the package's one diffuse convention, a flat prior of density 1 on the diffuse
    components of x_1: ``loglik = log ∫ p(y_{1:T} | x_1) N(x_1[~diffuse]; m0, P0) dx_1[diffuse]``
    (= lim_{κ→∞} log L_κ + (q/2) log(2πκ) for prior variance κ on the q diffuse states).
    While a batch element's precision is still singular (state not yet identified), its
    ``means``/``covs`` (and ``predicted_means``/``predicted_covs``) are NaN for that step;
    ``info_vectors``/``precisions`` are always finite, and ``diffuse_steps`` is, as in the
    covariance form (filters/diffuse.py), the number of leading steps in which some series is
    not yet identified (T if some series never is; 0 without diffuse states). ``loglik_terms`` always sum to ``loglik``; a
    step in that period carries the integral over the directions it identifies (and the Jacobian
    of predicting unidentified directions), so a fully missing step there may be non-zero. If
    some direction is never identified, ``loglik`` integrates only over the identified ones.

    Args:
        model: the state-space model; P0 must be non-singular on the non-diffuse states.
        y: observations (..., T, m); leading batch axes are filtered at once.
        validate: check the model's definiteness first (the default).

    Returns:
        A :class:`~bayesfilt.FilterResult` with ``info_vectors`` (..., T, n) and ``precisions``
        (..., T, n, n) of the filtered beliefs, the moments, and the log-likelihood.

    Raises:
        BayesfiltValueError: for bad inputs (naming the argument), a singular P0 on proper
            states, or a singular predicted covariance (F and Q both singular on a direction).

    Example:
        >>> import numpy as np, bayesfilt
        >>> model = bayesfilt.LinearGaussianSSM(m0=np.zeros(1), P0=np.zeros((1, 1)), F=np.eye(1),
        ...     Q=np.eye(1), H=np.eye(1), R=np.eye(1), diffuse=True)
        >>> res = bayesfilt.information_filter(model, np.array([[1.0], [2.0]]))
        >>> float(res.precisions[0, 0, 0]), float(res.means[0, 0])
        (1.0, 1.0)
    """
    model, y, T, batch = prepare(model, y, validate=validate)
    n = model.n
    dtype = y.dtype
    means = np.empty(batch + (T, n), dtype)
    covs = np.empty(batch + (T, n, n), dtype)
    pmeans = np.empty(batch + (T, n), dtype)
    pcovs = np.empty(batch + (T, n, n), dtype)
    etas = np.empty(batch + (T, n), dtype)
    lams = np.empty(batch + (T, n, n), dtype)
    terms = np.empty(batch + (T,), dtype)
    unidentified = np.zeros(batch + (T,), dtype=bool)
    eta, lam = information_prior(model, batch)                 # η_{1|0}, Λ_{1|0}
    nullity = np.full(batch, int(model.diffuse_mask.sum()))    # dim of the unidentified subspace
    logpdet = np.zeros(batch, dtype)
    diffuse = model.has_diffuse
    pinf = np.broadcast_to(np.diag(model.diffuse_mask).astype(dtype), batch + (n, n))  # P∞_{1|0}: flat on diffuse states
    c_prev = np.zeros(batch, dtype)
    for t in range(T):
        jac = np.zeros(batch, dtype)
        if t > 0:
            try:
                F_t = model.param("F", t)
                eta, lam, logdet_K = info_predict_step(eta, lam, F_t, model.param("Q", t), model.param("b", t))
            except np.linalg.LinAlgError:
                raise value_error("model", f"the predicted covariance is singular at step {t} (F and Q leave a "
                                  "direction with no uncertainty, or F removes a direction with zero precision)",
                                  "use kalman_filter or sqrt_filter for this model") from None
            pinv_p, logpdet_p, nullity_p, V_p, zero_p = psd_pinv(lam, nullity, t, "predicted")
            if diffuse:
                pinf = F_t @ pinf @ mT(F_t)                    # P∞_{t|t-1} = F_t P∞_{t-1} F_t^T
            jac = np.where(nullity > 0,                        # J_t = -½ log|K| + ½ (k_p - k) log 2π - ½ log pdet Λ_p + ½ log pdet Λ
                           -0.5 * logdet_K + 0.5 * (nullity - nullity_p) * LOG_2PI - 0.5 * logpdet_p + 0.5 * logpdet,
                           0.0)
        else:
            pinv_p, logpdet_p, nullity_p, V_p, zero_p = psd_pinv(lam, nullity, t, "prior")
        pmeans[..., t, :], pcovs[..., t, :, :] = _moments(pinv_p, eta, nullity_p)
        m_pred = mv(pinv_p, eta)                               # m̃ = Λ_{t|t-1}^+ η_{t|t-1} (any solution of Λ m̃ = η)
        lam_p = lam
        eta, lam, LiH, Lie, logdet_R, n_obs = info_update_step(eta, lam, y[..., t, :], model.param("H", t),
                                                               model.param("R", t), model.param("d", t), t)
        pinv, logpdet, nullity, V, zero = psd_pinv(lam, nullity_p, t, "filtered")
        r_w = Lie - mv(LiH, m_pred)                            # L^{-1} r_t, r_t = y_t - d_t - H m̃
        s = mv(mT(LiH), r_w)                                   # s = H^T R^{-1} r_t
        delta = mv(pinv, s)                                    # δ = Λ_t^+ s: m̂_t = m̃ + δ solves Λ_t m̂ = η_t
        res_w = r_w - mv(LiH, delta)                           # L^{-1} (y_t - d_t - H m̂_t)
        quad = (res_w * res_w).sum(-1) + (delta * mv(lam_p, delta)).sum(-1)  # r^T S^{-1} r = |y-d-H m̂|²_R + |m̂-m̃|²_Λp
        logdet_S = logdet_R + logpdet - logpdet_p              # log|S_t| = log|R| + log|Λ_t| - log|Λ_{t|t-1}|
        dims = n_obs - (nullity_p - nullity)                   # observed dims minus newly identified directions
        terms[..., t] = jac - 0.5 * (dims * LOG_2PI + logdet_S + quad)  # log N(y_t; H m + d, S) (diffuse: see doc)
        if diffuse:                                            # measure the unidentified directions in x_1's coordinates
            pinf, c = diffuse_measure(pinf, V_p, zero_p, V, zero)
            terms[..., t] += c - c_prev                        # + ½ log pdet P∞_t - ½ log pdet P∞_{t-1}
            c_prev = c
        etas[..., t, :] = eta
        lams[..., t, :, :] = lam
        means[..., t, :], covs[..., t, :, :] = _moments(pinv, eta, nullity)
        unidentified[..., t] = nullity > 0
    diffuse_steps = int(unidentified.reshape(-1, T).any(0).sum())  # leading steps with some series unidentified
    return check_finite_result(FilterResult(means=means, covs=covs, predicted_means=pmeans, predicted_covs=pcovs,
                                            loglik=terms.sum(-1), loglik_terms=terms, info_vectors=etas,
                                            precisions=lams, diffuse_steps=diffuse_steps), "information_filter")
