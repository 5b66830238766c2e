"""Exact diffuse initialisation for the covariance-form filter and the RTS smoother.

Model (docs/math/notation.md) with some states of x_1 exactly diffuse: x_1 = m0 + A δ + u,
u ~ N(0, P0), where the columns of A (n, q) select the q diffuse states and δ has the flat
density 1 on R^q (Durbin & Koopman 2012, ch. 5). Derivation: docs/math/diffuse.md.

Method: the augmented (diffuse) Kalman filter of de Jong (1991, Ann. Statist. 19, 1073) with
collapse (de Jong & Chu-Chun-Lin 1994; Durbin & Koopman 2012, sec. 5.7). Conditional on δ
the model is an ordinary Gaussian one whose filtered mean is affine in δ, a_t + X_t δ, with a
covariance P*_t free of δ; the data's information about δ accumulates as a precision
Ω_t = Σ E_j^T F_j^{-1} E_j and an information vector ω_t = Σ E_j^T F_j^{-1} e_j. Durbin &
Koopman's diffuse covariance is P∞_t = X_t Π_t X_t^T, with Π_t the projector on the null
space of Ω_t: once P∞_t = 0 the state is identified and, once every series is identified,
the filter continues with the ordinary predict/update steps of ``covariance.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..linalg import mT, mv, observed_system, sym
from ..model import LinearGaussianSSM
from ..results import FilterResult
from .covariance import LOG_2PI, check_finite_result, innovation_error, predict_step, run_steps


@dataclass(frozen=True)
class DiffuseFilterResult(FilterResult):
    """A :class:`~bayesfilt.FilterResult` of a model with exactly diffuse states.

    Steps in the diffuse period (state not yet identified by the data) have NaN means
    and covariances, filtered and predicted. Besides the usual fields it carries the
    augmented quantities of the first ``augmented_steps`` steps (Q = number of diffuse
    states q), which :func:`~bayesfilt.rts_smoother` needs for exact smoothing.

    Attributes:
        diffuse_steps: number of leading steps in which some series is not yet identified
            (its means/covs are NaN there); T if some series never is.
        augmented_steps: number of leading steps run in augmented form (stored below):
            ``diffuse_steps + 1``, or T.
        identified: (..., T) bool, whether x_t given y_{1:t} is identified.
        aug_means, aug_loadings, aug_covs: a_t (..., D, n), X_t (..., D, n, q), P*_t
            (..., D, n, n): x_t | y_{1:t}, δ ~ N(a_t + X_t δ, P*_t) for t < D.
        aug_predicted_means, aug_predicted_loadings, aug_predicted_covs: the same for
            x_t | y_{1:t-1}, δ.
        delta_precs, delta_etas: Ω_t (..., D, q, q) and ω_t (..., D, q), the information
            about δ in y_{1:t}.
        diffuse_covs: P∞_t = X_t Π_t X_t^T (..., D, n, n), zero once identified.
    """

    diffuse_steps: int = 0
    augmented_steps: int = 0
    identified: np.ndarray | None = None
    aug_means: np.ndarray | None = None
    aug_loadings: np.ndarray | None = None
    aug_covs: np.ndarray | None = None
    aug_predicted_means: np.ndarray | None = None
    aug_predicted_loadings: np.ndarray | None = None
    aug_predicted_covs: np.ndarray | None = None
    delta_precs: np.ndarray | None = None
    delta_etas: np.ndarray | None = None
    diffuse_covs: np.ndarray | None = None


def _tolerance(dtype) -> float:
    """Relative tolerance for the identification test max|X Π| <= tol max|X| (sqrt of machine epsilon)."""
    return float(np.sqrt(np.finfo(dtype).eps))


def _rank_tolerance(dtype, q: int) -> float:
    """Eigenvalues of Ω below this fraction of the largest count as zero: 1000 q ε.

    A direction the data do not inform has an eigenvalue of order ε λ_max or below from
    rounding; a genuine one is kept down to a condition number of 1/(1000 q ε) (≈ 4e12/q in float64).
    """
    return 1e3 * q * float(np.finfo(dtype).eps)


def augmented_update_step(mean, loadings, cov, y_t, H, R, d, t: int = 0):
    """Kalman update of the augmented state (a, X, P*) with the observed rows of ``y_t``.

    Returns ``(mean, loadings, cov, lognorm, z, Z)``: the updated a_t, X_t, P*_t, the
    normaliser -½ (m_t log 2π + log|F_t|) of the observed rows, and z = L^{-1} e_t,
    Z = L^{-1} E_t with F_t = L L^T, from which the increments of the information about δ are
    E^T F^{-1} E = Z^T Z and E^T F^{-1} e = Z^T z. No validation (a kernel).
    """
    n = mean.shape[-1]
    y0, H, R, d, obs, n_obs = observed_system(y_t, H, R, d)
    y_hat = mv(H, mean) if d is None else mv(H, mean) + d     # yhat_t = H_t a_{t|t-1} + d_t
    e = y0 - y_hat                                             # e_t = y_t - yhat_t (0 where missing)
    E = H @ loadings                                           # E_t = H_t X_{t|t-1}: y_t - yhat_t = e_t - E_t δ + noise
    PHt = cov @ mT(H)                                          # P* H^T
    S = sym(H @ PHt + R)                                       # F_t = H_t P*_{t|t-1} H_t^T + R_t
    try:
        L = np.linalg.cholesky(S)                              # F_t = L L^T
    except np.linalg.LinAlgError:
        raise innovation_error(S, t) from None
    K = mT(np.linalg.solve(S, mT(PHt)))                        # K_t = P* H^T F_t^{-1}
    mean = mean + mv(K, e)                                     # a_t = a_{t|t-1} + K_t e_t
    loadings = loadings - K @ E                                # X_t = X_{t|t-1} - K_t E_t
    I_KH = np.eye(n, dtype=cov.dtype) - K @ H                  # (I - K_t H_t)
    cov = sym(I_KH @ cov @ mT(I_KH) + K @ R @ mT(K))           # P*_t = (I-KH) P* (I-KH)^T + K R K^T (Joseph)
    z = np.linalg.solve(L, e[..., None])[..., 0]               # z = L^{-1} e_t
    Z = np.linalg.solve(L, E)                                  # Z = L^{-1} E_t
    logdet = 2.0 * np.log(np.diagonal(L, axis1=-2, axis2=-1)).sum(-1)  # log|F_t|
    lognorm = -0.5 * (n_obs * LOG_2PI + logdet)                # -½ (m_t log 2π + log|F_t|), observed rows only
    return mean, loadings, cov, lognorm, z, Z


def delta_posterior(prec: np.ndarray):
    """Pseudo-inverse, null projector and log-normaliser of the precision Ω about δ.

    Returns ``(V, null_proj, c)``: V = Ω^+ (eigenvalues below a relative tolerance count
    as zero), Π = I - Ω^+ Ω and c = - ½ log pdet Ω + (r/2) log 2π with r = rank Ω, so that
    log ∫ exp(-½ (δ - δ̂)^T Ω (δ - δ̂)) dδ over the identified directions = c. (The quadratic
    part, ½ ω^T Ω^+ ω, is left to the caller: as a difference of two such terms it cancels
    catastrophically when the data sit far from m0; ``diffuse_kalman_filter`` computes the
    difference directly.)
    """
    q = prec.shape[-1]
    lam, U = np.linalg.eigh(sym(prec))                         # Ω = U diag(λ) U^T
    top = lam.max(axis=-1, keepdims=True)
    pos = lam > _rank_tolerance(prec.dtype, q) * np.maximum(top, 0.0)  # λ > tol λ_max; Ω = 0 -> rank 0
    pos &= top > 0
    inv_lam = np.where(pos, 1.0 / np.where(pos, lam, 1.0), 0.0)
    V = (U * inv_lam[..., None, :]) @ mT(U)                    # Ω^+ = U diag(1/λ, 0) U^T
    null_proj = (U * (~pos)[..., None, :]) @ mT(U)             # Π = U diag(0, 1) U^T (null space of Ω)
    r = pos.sum(-1)
    logpdet = np.where(pos, np.log(np.where(pos, lam, 1.0)), 0.0).sum(-1)   # log pdet Ω
    c = -0.5 * logpdet + 0.5 * r * LOG_2PI                    # - ½ log pdet Ω + r/2 log 2π
    return V, null_proj, c


def _identified(loadings, null_proj):
    """Whether P∞ = X Π X^T vanishes, tested as max|X Π| <= tol * max|X| per series."""
    XN = loadings @ null_proj                                  # X Π
    scale = np.abs(loadings).max(axis=(-2, -1))
    return np.abs(XN).max(axis=(-2, -1)) <= _tolerance(loadings.dtype) * scale, XN


def diffuse_kalman_filter(model: LinearGaussianSSM, y: np.ndarray) -> DiffuseFilterResult:
    """Exact diffuse covariance-form filter; called by :func:`~bayesfilt.kalman_filter`.

    Model: docs/math/notation.md, with the states in ``model.diffuse_mask`` exactly diffuse
    (flat prior, Durbin & Koopman 2012 ch. 5); derivation docs/math/diffuse.md.

    Conventions:
        - ``loglik`` = log ∫ p(y_{1:T} | x_1) dx_1[diffuse] with the flat density 1 over the
          diffuse states, = lim_{κ→∞} [log L_κ + (q/2) log(2πκ)] for a N(0, κ I) prior on
          them. ``loglik_terms[t]`` are the increments of the same quantity over y_{1:t}
          (with q replaced by the number of directions identified so far), so they sum to
          ``loglik``; a step that only identifies a diffuse state contributes 0 (local level).
          If some diffuse direction is never identified by the data, only the identified
          directions are integrated (the full integral would be infinite).
        - Filtered and predicted means and covariances are NaN at steps where the state
          is not yet identified (P∞ ≠ 0), per series.

    Args:
        model: a validated model with ``has_diffuse`` (cast to ``y``'s dtype).
        y: observations (..., T, m), NaN for missing components.

    Returns:
        A :class:`DiffuseFilterResult` (a :class:`~bayesfilt.FilterResult`).

    Example:
        >>> import numpy as np, bayesfilt
        >>> model = bayesfilt.LinearGaussianSSM(m0=np.zeros(1), P0=np.zeros((1, 1)),
        ...     F=np.eye(1), Q=np.eye(1), H=np.eye(1), R=np.eye(1), diffuse=True)
        >>> res = bayesfilt.kalman_filter(model, np.array([[1.0], [2.0]]))
        >>> bool(np.isnan(res.means[0, 0])), float(res.loglik_terms[0])
        (True, 0.0)
    """
    mask = model.diffuse_mask
    n, q = model.n, int(mask.sum())
    T = y.shape[-2]
    batch = np.broadcast_shapes(y.shape[:-2], model.batch_shape)
    dtype = y.dtype
    means = np.full(batch + (T, n), np.nan, dtype)
    covs = np.full(batch + (T, n, n), np.nan, dtype)
    pmeans = np.full(batch + (T, n), np.nan, dtype)
    pcovs = np.full(batch + (T, n, n), np.nan, dtype)
    terms = np.empty(batch + (T,), dtype)
    identified = np.zeros(batch + (T,), bool)
    aug = {k: [] for k in ("a", "X", "P", "pa", "pX", "pP", "prec", "eta", "Pinf")}

    A = np.eye(n, dtype=dtype)[:, mask]                        # selector of the diffuse states (n, q)
    a = np.broadcast_to(model.m0, batch + (n,))                # a_{1|0} = m0
    X = np.broadcast_to(A, batch + (n, q))                     # X_{1|0} = A: x_1 = a + X δ + u
    P = np.broadcast_to(model.P0, batch + (n, n))              # P*_{1|0} = P0 (zero for diffuse states)
    prec = np.zeros(batch + (q, q), dtype)                     # Ω_0 = 0: no information about δ yet
    eta = np.zeros(batch + (q,), dtype)                        # ω_0 = 0
    V, null_proj, c_prev = delta_posterior(prec)
    t = 0
    mean = cov = None
    while t < T:
        if t > 0:
            a, P = predict_step(a, P, model.param("F", t), model.param("Q", t), model.param("b", t))
            X = model.param("F", t) @ X                        # X_{t|t-1} = F_t X_{t-1}
        ok, _ = _identified(X, null_proj)                      # predicted state identified by y_{1:t-1}?
        pmeans[..., t, :] = np.where(ok[..., None], a + mv(X @ V, eta), np.nan)      # m_{t|t-1} = a + X Ω^+ ω
        pcovs[..., t, :, :] = np.where(ok[..., None, None], P + X @ V @ mT(X), np.nan)  # P_{t|t-1} = P* + X Ω^+ X^T
        aug["pa"].append(a)
        aug["pX"].append(X)
        aug["pP"].append(P)
        d_hat = mv(V, eta)                                     # δ̂_{t-1} = Ω_{t-1}^+ ω_{t-1}
        a, X, P, lognorm, z, Z = augmented_update_step(a, X, P, y[..., t, :], model.param("H", t),
                                                       model.param("R", t), model.param("d", t), t)
        prec_prev, prec = prec, prec + mT(Z) @ Z               # Ω_t = Ω_{t-1} + E^T F^{-1} E
        eta = eta + mv(mT(Z), z)                               # ω_t = ω_{t-1} + E^T F^{-1} e
        V, null_proj, c = delta_posterior(prec)
        # log p(y_t | y_{1:t-1}) in the diffuse convention: lognorm - ½ [min_δ f_t - min_δ f_{t-1}] + c_t - c_{t-1},
        # f_t(δ) = Σ_j |L_j^{-1}(e_j - E_j δ)|^2 (docs/math/diffuse.md). Expanded at δ̂_{t-1}, where f_{t-1} is
        # least: min f_t - min f_{t-1} = min_Δ |z̃ - Z Δ|^2 + Δ^T Ω_{t-1} Δ, z̃ = L^{-1}(e_t - E_t δ̂_{t-1}), at
        # Δ* = Ω_t^+ Z^T z̃. A sum of two squares: the textbook e^T F^{-1} e + ω_{t-1}^T Ω^+ ω_{t-1} - ω_t^T Ω^+ ω_t
        # is the same number as a difference of terms that grow with the data's distance from m0 (squared), and
        # cancelled catastrophically (30 steps at 6.4e6 from m0 with r = 1e-4: -153.60 for 70.40)
        z_res = z - mv(Z, d_hat)                               # z̃
        step = mv(V, mv(mT(Z), z_res))                         # Δ* = Ω_t^+ E^T F^{-1} (e_t - E_t δ̂_{t-1})
        r_res = z_res - mv(Z, step)                            # z̃ - Z Δ*
        quad = (r_res * r_res).sum(-1) + (step * mv(prec_prev, step)).sum(-1)          # ... + Δ*^T Ω_{t-1} Δ*
        terms[..., t] = lognorm - 0.5 * quad + c - c_prev
        c_prev = c
        ok, XN = _identified(X, null_proj)
        identified[..., t] = ok
        mean = a + mv(X @ V, eta)                              # m_t = a_t + X_t Ω^+ ω
        cov = sym(P + X @ V @ mT(X))                           # P_t = P*_t + X_t Ω^+ X_t^T
        means[..., t, :] = np.where(ok[..., None], mean, np.nan)
        covs[..., t, :, :] = np.where(ok[..., None, None], cov, np.nan)
        for k, v in (("a", a), ("X", X), ("P", P), ("prec", prec), ("eta", eta),
                     ("Pinf", XN @ mT(X))):                    # P∞_t = X_t Π_t X_t^T
            aug[k].append(v)
        t += 1
        if ok.all():
            break
    augmented_steps = t
    run_steps(model, y, mean, cov, t, pmeans, pcovs, means, covs, terms)  # every series identified: ordinary filter
    identified[..., t:] = True
    st = {k: np.stack(v, axis=len(batch)) for k, v in aug.items()}
    return check_finite_result(DiffuseFilterResult(
        means=means, covs=covs, predicted_means=pmeans, predicted_covs=pcovs,
        loglik=terms.sum(-1), loglik_terms=terms, diffuse_steps=int(T - identified.all(axis=tuple(range(len(batch)))).sum()),
        augmented_steps=augmented_steps, identified=identified,
        aug_means=st["a"], aug_loadings=st["X"], aug_covs=st["P"], aug_predicted_means=st["pa"],
        aug_predicted_loadings=st["pX"], aug_predicted_covs=st["pP"], delta_precs=st["prec"],
        delta_etas=st["eta"], diffuse_covs=st["Pinf"]))


def diffuse_smoother_backward(model: LinearGaussianSSM, fr: DiffuseFilterResult, ms, Ps, means, covs, cross,
                              gains, solve_psd) -> None:
    """Exact smoothing of the diffuse period; fills steps t < D-1 of the output arrays in place.

    Called by :func:`~bayesfilt.rts_smoother` after its ordinary backward pass down to
    step D-1 (``fr.augmented_steps`` = D), with ``(ms, Ps)`` the smoothed moments there.
    The pair z_t = (x_t, δ) is smoothed backwards: given δ, x_t | x_{t+1}, y_{1:t} is the
    ordinary RTS conditional of the augmented filter, so z_t = A_t z_{t+1} + c_t + noise
    (docs/math/diffuse.md). Steps whose smoothed state still depends on an unidentified
    direction of δ get NaN; gains of the diffuse period are NaN (the ordinary gain has
    no finite limit there).
    """
    D = fr.augmented_steps
    tc = D - 1
    T = fr.means.shape[-2]
    a_c, X_c, P_c = fr.aug_means[..., tc, :], fr.aug_loadings[..., tc, :, :], fr.aug_covs[..., tc, :, :]
    V, null_proj, _ = delta_posterior(fr.delta_precs[..., tc, :, :])
    dmean = mv(V, fr.delta_etas[..., tc, :])                   # E[δ | y_{1:tc}] = Ω^+ ω
    XV = X_c @ V                                               # Cov[x_tc, δ | y_{1:tc}] = X Ω^+
    if D == T:                                                 # no later data: the filtered joint is smoothed
        mu_x = a_c + mv(X_c, dmean)                            # E[x_tc] = a + X Ω^+ ω
        S_xx = sym(P_c + XV @ mT(X_c))                         # Var[x_tc] = P* + X Ω^+ X^T
        S_xd = XV
        S_dd = V
        mu_d = dmean
    else:                                                      # every series identified at tc
        m_f = a_c + mv(X_c, dmean)                             # filtered m_tc
        P_f = sym(P_c + XV @ mT(X_c))                          # filtered P_tc
        J = mT(solve_psd(P_f, XV))                             # J = Ω^+ X^T P_tc^{-1}: E[δ | x_tc, y_{1:tc}] slope
        mu_x, S_xx = ms, Ps                                    # smoothed x_tc from the ordinary pass
        mu_d = dmean + mv(J, ms - m_f)                         # E[δ | y_{1:T}] = δ̂ + J (m^s - m_tc)
        S_xd = Ps @ mT(J)                                      # Cov[x_tc, δ | y_{1:T}] = P^s J^T
        S_dd = sym(V - J @ XV + J @ Ps @ mT(J))                # Var[δ | y_{1:T}] = Ω^+ - J X Ω^+ + J P^s J^T
    Dep = X_c @ null_proj                                      # dependence of x_tc on unidentified δ
    tol = _tolerance(fr.means.dtype)
    ok = np.abs(Dep).max(axis=(-2, -1)) <= tol * np.abs(X_c).max(axis=(-2, -1))
    means[..., tc, :] = np.where(ok[..., None], mu_x, np.nan)
    covs[..., tc, :, :] = np.where(ok[..., None, None], S_xx, np.nan)
    for t in range(tc - 1, -1, -1):
        F = model.param("F", t + 1)
        P_t = fr.aug_covs[..., t, :, :]
        P_pred = fr.aug_predicted_covs[..., t + 1, :, :]       # P*_{t+1|t}
        G = mT(solve_psd(P_pred, F @ P_t))                     # G*_t = P*_t F_{t+1}^T P*_{t+1|t}^{-1}
        B = fr.aug_loadings[..., t, :, :] - G @ fr.aug_predicted_loadings[..., t + 1, :, :]  # B_t = X_t - G*_t X_{t+1|t}
        c = fr.aug_means[..., t, :] - mv(G, fr.aug_predicted_means[..., t + 1, :])       # c_t = a_t - G*_t a_{t+1|t}
        W = sym(P_t - G @ P_pred @ mT(G))                      # W_t = P*_t - G*_t P*_{t+1|t} G*_t^T
        cross_t = S_xx @ mT(G) + S_xd @ mT(B)                  # Cov[x_{t+1}, x_t] = Σxx G^T + Σxδ B^T
        ok_next = ok
        mu_x = mv(G, mu_x) + mv(B, mu_d) + c                   # E[x_t] = G E[x_{t+1}] + B E[δ] + c
        S_xx = sym(G @ S_xx @ mT(G) + G @ S_xd @ mT(B) + B @ mT(S_xd) @ mT(G) + B @ S_dd @ mT(B) + W)
        #                                                        Var[x_t] = [G B] Σ_{t+1} [G B]^T + W
        S_xd = G @ S_xd + B @ S_dd                             # Cov[x_t, δ] = G Σxδ + B Σδδ
        Dep = G @ Dep + B @ null_proj                          # ∂x_t/∂δ along unidentified directions
        scale = np.abs(fr.aug_loadings[..., t, :, :]).max(axis=(-2, -1)) + np.abs(B).max(axis=(-2, -1))
        ok = np.abs(Dep).max(axis=(-2, -1)) <= tol * scale
        both = (ok & ok_next)[..., None, None]
        cross[..., t, :, :] = np.where(both, cross_t, np.nan)
        gains[..., t, :, :] = np.nan
        means[..., t, :] = np.where(ok[..., None], mu_x, np.nan)
        covs[..., t, :, :] = np.where(ok[..., None, None], S_xx, np.nan)
