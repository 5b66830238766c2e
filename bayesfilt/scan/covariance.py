"""Parallel-in-time covariance-form Kalman filter: scan elements, combine, drivers.

Specification: :func:`bayesfilt.kalman_filter` (filters/covariance.py). Elements and
combine follow Särkkä & García-Fernández (2021), "Temporal parallelization of Bayesian
smoothers", IEEE TAC 66(1), Lemmas 7–8, extended by a log-normaliser ``c`` that carries
the log-likelihood through the scan (derivation: docs/math/parallel_scan.md).

An element e_t = (A, b, C, η, J, c), all arrays time-first (T, *batch, ...), encodes

    p(x_t | x_{s-1}, y_{s:t})  = N(x_t; A x_{s-1} + b, C)
    p(y_{s:t} | x_{s-1})       = exp(c + η^T x_{s-1} - ½ x_{s-1}^T J x_{s-1})

for the span s..t of steps it covers. The first element has A = 0, so every prefix
e_1 ⊗ ... ⊗ e_t holds the filtered mean b = m_t, covariance C = P_t and the cumulative
log-likelihood c = log p(y_{1:t}).

Shapes: B batch axes, T time, n states, m observations. Kernels: no validation.
"""

from __future__ import annotations

import numpy as np

from . import _ops as ops
from ._params import observed, static, step, time_first
from .core import scan


def conditional_elements(y, F, Q, b, H, R, d):
    """Single-step elements: p(x_t | x_{t-1}, y_t) and p(y_t | x_{t-1}) (Särkkä & García-Fernández 2021, eq. 22).

    Arrays are time-first and broadcast; NaN in ``y`` marks missing components.

    Returns:
        ``(A, b, C, eta, J, c)`` with shapes (T, *B, n, n), (T, *B, n), (T, *B, n, n), (T, *B, n),
        (T, *B, n, n), (T, *B).
    """
    n = F.shape[-1]
    y0, Ho, Ro, do, n_obs = observed(y, H, R, d)
    HQ = Ho @ Q
    S = ops.sym(HQ @ ops.mT(Ho) + Ro)                          # S = H Q H^T + R
    L = ops.cholesky(S)                                        # S = L L^T
    r = y0 if b is None else y0 - ops.mv(Ho, b)                # r = y - H b_t - d_t
    if do is not None:
        r = r - do
    HF = Ho @ F
    shape = ops.shape_of(HQ[..., 0], HF[..., 0], r)
    rhs = ops.concat([ops.broadcast_to(HQ, shape + (n,)), ops.broadcast_to(HF, shape + (n,)),
                      ops.broadcast_to(r, shape)[..., None]], -1)
    W = ops.tri_solve(L, rhs)                                  # L^{-1} [H Q | H F | r]
    WQ, WF, wr = W[..., :n], W[..., n:2 * n], W[..., 2 * n]
    A = F - ops.mT(WQ) @ WF                                    # A = (I - K H) F, K = Q H^T S^{-1}
    bb = ops.mv(ops.mT(WQ), wr)                                # b = b_t + K r
    if b is not None:
        bb = bb + b
    C = ops.sym(Q - ops.mT(WQ) @ WQ)                           # C = (I - K H) Q = Q - K S K^T
    eta = ops.mv(ops.mT(WF), wr)                               # η = (H F)^T S^{-1} r
    J = ops.sym(ops.mT(WF) @ WF)                               # J = (H F)^T S^{-1} H F
    c = -0.5 * (ops.dot(wr, wr) + ops.logdet_chol(L) + n_obs * ops.LOG_2PI)  # c = log N(r; 0, S)
    return A, bb, C, eta, J, c


def filter_combine(e1, e2):
    """Compose e1 (earlier) and e2 (later) (Särkkä & García-Fernández 2021, Lemma 8, plus c).

    Example:
        >>> import numpy as np
        >>> from bayesfilt.scan.covariance import filter_combine, filter_identity
        >>> e = filter_identity(2, (), np.zeros(0))
        >>> bool(np.allclose(filter_combine(e, e)[0], np.eye(2)))
        True
    """
    A1, b1, C1, eta1, J1, c1 = e1
    A2, b2, C2, eta2, J2, c2 = e2
    n = A1.shape[-1]
    I = ops.eye(n, A1)
    M = I + C1 @ J2                                            # M = I + C_1 J_2
    w = b1 + ops.mv(C1, eta2)                                  # b_1 + C_1 η_2
    shape = ops.shape_of(M[..., 0], A1[..., 0], C1[..., 0], w)
    X = ops.solve(M, ops.concat([ops.broadcast_to(A1, shape + (n,)), ops.broadcast_to(C1, shape + (n,)),
                                 ops.broadcast_to(w, shape)[..., None]], -1))
    MA, MC, Mw = X[..., :n], X[..., n:2 * n], X[..., 2 * n]    # M^{-1} A_1, M^{-1} C_1, M^{-1}(b_1 + C_1 η_2)
    A = A2 @ MA                                                # A_12 = A_2 M^{-1} A_1
    b = ops.mv(A2, Mw) + b2                                    # b_12 = A_2 M^{-1}(b_1 + C_1 η_2) + b_2
    C = ops.sym(A2 @ MC @ ops.mT(A2) + C2)                     # C_12 = A_2 M^{-1} C_1 A_2^T + C_2
    e = eta2 - ops.mv(J2, b1)
    JA = J2 @ A1
    shape2 = ops.shape_of(M[..., 0], JA[..., 0], e)
    Y = ops.solve(ops.mT(M), ops.concat([ops.broadcast_to(JA, shape2 + (n,)),
                                         ops.broadcast_to(e, shape2)[..., None]], -1))
    eta = ops.mv(ops.mT(A1), Y[..., n]) + eta1                 # η_12 = A_1^T (I + J_2 C_1)^{-1}(η_2 - J_2 b_1) + η_1
    J = ops.sym(ops.mT(A1) @ Y[..., :n] + J1)                  # J_12 = A_1^T (I + J_2 C_1)^{-1} J_2 A_1 + J_1
    v2 = ops.mv(MC, eta2)                                      # M^{-1} C_1 η_2
    v1 = Mw - v2                                               # M^{-1} b_1
    c = (c1 + c2 - 0.5 * ops.logdet_pos(M)                     # c_12 = c_1 + c_2 - ½ log|I + C_1 J_2|
         - 0.5 * ops.dot(b1, ops.mv(J2, v1))                   #   - ½ b_1^T J_2 M^{-1} b_1
         + ops.dot(eta2, v1)                                   #   + η_2^T M^{-1} b_1
         + 0.5 * ops.dot(eta2, v2))                            #   + ½ η_2^T M^{-1} C_1 η_2
    return A, b, C, eta, J, c


def filter_identity(n: int, batch: tuple, like):
    """The identity element (I, 0, 0, 0, 0, 0): combine(identity, e) = combine(e, identity) = e."""
    z = ops.zeros(tuple(batch) + (n,), like)
    Z = ops.zeros(tuple(batch) + (n, n), like)
    return (Z + ops.eye(n, like), z, Z, z, Z, ops.zeros(tuple(batch), like))


def filter_elements(model, y):
    """All T elements of a model for time-first observations ``y`` (T, *B, m), in y's backend."""
    T = y.shape[0]
    nb = y.ndim - 2
    n = model.n
    P = {k: time_first(model, k, nb, y) for k in ("F", "Q", "b", "H", "R", "d")}
    m0, P0 = static(model, "m0", nb, y)[None], static(model, "P0", nb, y)[None]
    first = conditional_elements(y[:1], ops.zeros((1, n, n), y), P0, m0, step(P["H"], 0, 1),
                                 step(P["R"], 0, 1), step(P["d"], 0, 1))   # A = 0: prior m0, P0 updated on y_1
    parts = [first]
    if T > 1:
        parts.append(conditional_elements(y[1:], step(P["F"], 1, T), step(P["Q"], 1, T), step(P["b"], 1, T),
                                          step(P["H"], 1, T), step(P["R"], 1, T), step(P["d"], 1, T)))
    batch = ops.shape_of(*(e[1][..., 0] for e in parts))[1:]
    cores = [(n, n), (n,), (n, n), (n,), (n, n), ()]
    leads = [1, T - 1]
    return tuple(ops.concat([ops.broadcast_to(p[i], (lead,) + tuple(batch) + cores[i]) for p, lead in zip(parts, leads)], 0)
                 for i in range(6))


def predicted_and_terms(model, y, means, covs):
    """Predicted moments and per-step log-likelihood terms from filtered moments (a parallel map).

    m_{t|t-1} = F_t m_{t-1} + b_t, P_{t|t-1} = F_t P_{t-1} F_t^T + Q_t (m0, P0 at t = 1);
    term_t = log N(y_t; H_t m_{t|t-1} + d_t, H_t P_{t|t-1} H_t^T + R_t) over the observed rows.
    """
    T = y.shape[0]
    nb = y.ndim - 2
    P = {k: time_first(model, k, nb, y) for k in ("F", "Q", "b", "H", "R", "d")}
    m0 = ops.broadcast_to(static(model, "m0", nb, y)[None], (1,) + tuple(means.shape[1:]))
    P0 = ops.broadcast_to(static(model, "P0", nb, y)[None], (1,) + tuple(covs.shape[1:]))
    if T > 1:
        F = step(P["F"], 1, T)
        pm = ops.mv(F, means[:-1])                             # m_{t|t-1} = F_t m_{t-1}
        if P["b"] is not None:
            pm = pm + step(P["b"], 1, T)                       #            + b_t
        pP = ops.sym(F @ covs[:-1] @ ops.mT(F) + step(P["Q"], 1, T))  # P_{t|t-1} = F P F^T + Q
        pm = ops.concat([m0, pm], 0)
        pP = ops.concat([P0, ops.broadcast_to(pP, (T - 1,) + tuple(covs.shape[1:]))], 0)
    else:
        pm, pP = m0, P0
    y0, Ho, Ro, do, n_obs = observed(y, P["H"], P["R"], P["d"])
    S = ops.sym(Ho @ pP @ ops.mT(Ho) + Ro)                     # S_t = H P_{t|t-1} H^T + R
    L = ops.cholesky(S)
    r = y0 - ops.mv(Ho, pm)                                    # r_t = y_t - H m_{t|t-1} - d_t
    if do is not None:
        r = r - do
    z = ops.tri_solve(L, r[..., None])[..., 0]
    terms = -0.5 * (ops.dot(z, z) + ops.logdet_chol(L) + n_obs * ops.LOG_2PI)
    return pm, pP, terms


def scan_filter(model, y, schedule="tree", chunk_size=None):
    """Covariance-form parallel filter on time-first ``y`` (T, *B, m) in y's backend.

    Returns:
        dict of time-first arrays: means, covs, predicted_means, predicted_covs,
        loglik_terms, cum_loglik (the carried c of every prefix: log p(y_{1:t})) and loglik
        (sum of the terms).
    """
    elems = filter_elements(model, y)
    A, b, C, eta, J, c = scan(elems, filter_combine, schedule, chunk_size=chunk_size)
    pm, pP, terms = predicted_and_terms(model, y, b, C)
    # loglik: the sum of the per-step terms (a parallel map and reduction). The carried c equals it in
    # float64 (tests), but in float32 it cancels quadratic forms in the absolute state (b^T J b ~ |x|^2/σ^2):
    # docs/math/parallel_scan.md, "Log-likelihood in float32".
    return dict(means=b, covs=C, predicted_means=pm, predicted_covs=pP, loglik_terms=terms,
                cum_loglik=c, loglik=terms.sum(0))


# ------------------------------------------------------------------ shared covariances
def affine_combine(e1, e2):
    """Compose affine maps x -> A x + u: (A_1, u_1) then (A_2, u_2) gives (A_2 A_1, A_2 u_1 + u_2)."""
    A1, u1 = e1
    A2, u2 = e2
    return A2 @ A1, ops.mv(A2, u1) + u2


def _matvec_split(M, x, k):
    """M_t x_t for time-first M (T, p, q) that is constant from index k on; x (T, *B, q)."""
    T = x.shape[0]
    nb = x.ndim - 2
    head = np.einsum("tij,t...j->t...i", M[:k], x[:k]) if k else x[:0, ..., :0]
    if k >= T:
        return head
    tail = x[k:] @ M[k].T                                      # one GEMM for the stationary part
    return np.concatenate([head.reshape((k,) + tail.shape[1:]), tail], 0) if k else tail


def _settled(P, P_prev, tol) -> bool:
    """Whether covariance P (n, n) equals P_prev to ``tol`` entry by entry, each entry on its own
    scale sqrt(P_ii P_jj), with a floor of tol * eps * max_i P_ii (so that a noise-free decaying
    state, whose variance shrinks by a fixed factor a step, settles once it is negligible instead
    of when it underflows)."""
    diag = np.abs(np.diag(P))
    d = np.sqrt(diag)
    floor = tol * np.finfo(P.dtype).eps * diag.max() + np.finfo(P.dtype).tiny
    return bool((np.abs(P - P_prev) <= tol * np.outer(d, d) + floor).all())


def riccati_filter(model, y, schedule="chunked", chunk_size=None, tol_factor=8.0):
    """Kalman filter with covariances shared by all series (NumPy, no missing data).

    Without missing observations and with unbatched parameters, P_t, P_{t|t-1}, the gains
    and S_t do not depend on y: they are computed once by the Riccati recursion (stopped
    at its fixed point for a time-invariant model: once every entry of P and P_{t|t-1} changes by
    less than ``tol_factor`` ulps of its own scale sqrt(P_ii P_jj), the rest are that fixed point). The means then
    follow one affine recursion m_t = (I - K_t H_t)(F_t m_{t-1} + b_t) + K_t (y_t - d_t),
    computed by an associative scan (``schedule``) over all series at once, and the
    log-likelihood terms by a map over the innovations.

    Args:
        model: a model with parameter batch shape ().
        y: time-first observations (T, *B, m), no NaN, NumPy.

    Returns:
        dict of time-first arrays as :func:`scan_filter`.
    """
    T = y.shape[0]
    n, m = model.n, model.m
    dt = y.dtype
    tv = model.time_varying
    invariant = not (set(tv) & {"F", "Q", "H", "R"})
    tol = tol_factor * np.finfo(dt).eps
    I = np.eye(n, dtype=dt)
    covs = np.empty((T, n, n), dt)
    pcovs = np.empty((T, n, n), dt)
    gains = np.empty((T, n, m), dt)
    Sinv = np.empty((T, m, m), dt)
    logdetS = np.empty(T, dt)
    Ppred = model.P0.astype(dt)
    k = T
    for t in range(T):
        F, Q, H, R = (model.param(nm, t).astype(dt, copy=False) for nm in ("F", "Q", "H", "R"))
        if t > 0:
            Ppred = F @ covs[t - 1] @ F.T + Q                  # P_{t|t-1} = F P_{t-1} F^T + Q
            Ppred = 0.5 * (Ppred + Ppred.T)
        S = H @ Ppred @ H.T + R                                # S_t = H P_{t|t-1} H^T + R
        L = np.linalg.cholesky(0.5 * (S + S.T))
        Li = np.linalg.inv(L)
        K = (Li @ H @ Ppred).T @ Li                            # K_t = P_{t|t-1} H^T S_t^{-1}
        I_KH = I - K @ H
        P = I_KH @ Ppred @ I_KH.T + K @ R @ K.T                # P_t = (I-KH) P (I-KH)^T + K R K^T (Joseph)
        covs[t] = 0.5 * (P + P.T)
        pcovs[t] = Ppred
        gains[t] = K
        Sinv[t] = Li.T @ Li                                    # S_t^{-1}
        logdetS[t] = 2.0 * np.log(np.diag(L)).sum()
        if invariant and t >= 2 and _settled(covs[t], covs[t - 1], tol) and _settled(Ppred, pcovs[t - 1], tol):
            k = t + 1                                          # fixed point reached: the rest equal step t
            break
    if k < T:
        for arr in (covs, pcovs, gains, Sinv, logdetS):
            arr[k:] = arr[k - 1]
    Fs = time_first(model, "F", 0, y)
    Hs = time_first(model, "H", 0, y)
    bs = time_first(model, "b", 0, y)
    ds = time_first(model, "d", 0, y)
    Fa = np.broadcast_to(Fs, (T, n, n))
    Ha = np.broadcast_to(Hs, (T, m, n))
    KH = np.concatenate([gains[:k] @ Ha[:k], np.broadcast_to(gains[k - 1] @ Ha[k - 1], (T - k, n, n))], 0)
    IKH = I - KH
    A = IKH @ Fa                                               # A_t = (I - K_t H_t) F_t
    A[0] = 0.0
    ydd = y if ds is None else y - ds.reshape((ds.shape[0],) + (1,) * (y.ndim - 2) + (m,))
    u = _matvec_split(gains, ydd, k)                           # u_t = K_t (y_t - d_t)
    m0 = np.broadcast_to(model.m0.astype(dt), y.shape[1:-1] + (n,))
    Kt0 = gains[0]
    u[0] = m0 + (ydd[0] - m0 @ Ha[0].T) @ Kt0.T                # m_1 = m0 + K_1 (y_1 - H m0 - d)
    if bs is not None:
        bb = np.broadcast_to(bs, (T, n))
        ub = np.einsum("tij,tj->ti", IKH, bb)                  #     + (I - K_t H_t) b_t
        ub[0] = 0.0
        u = u + ub.reshape((T,) + (1,) * (y.ndim - 2) + (n,))
    Ab = A.reshape((T,) + (1,) * (y.ndim - 2) + (n, n))
    _, means = scan((Ab, u), affine_combine, schedule, chunk_size=chunk_size)
    pm = np.empty_like(means)
    pm[0] = m0
    if T > 1:
        pm[1:] = _matvec_split(Fa[1:], means[:-1], 0 if "F" not in tv else T - 1)
        if bs is not None:
            pm[1:] += np.broadcast_to(bs, (T, n))[1:].reshape((T - 1,) + (1,) * (y.ndim - 2) + (n,))
    r = ydd - _matvec_split(Ha, pm, 0 if "H" not in tv else T)  # r_t = y_t - d_t - H_t m_{t|t-1}
    Sr = _matvec_split(Sinv, r, k)
    quad = (r * Sr).sum(-1)
    terms = -0.5 * (quad + logdetS.reshape((T,) + (1,) * (y.ndim - 2)) + m * np.log(2.0 * np.pi))
    bshape = y.shape[1:-1]
    return dict(means=means,
                covs=np.broadcast_to(covs.reshape((T,) + (1,) * len(bshape) + (n, n)), (T,) + bshape + (n, n)),
                predicted_means=pm,
                predicted_covs=np.broadcast_to(pcovs.reshape((T,) + (1,) * len(bshape) + (n, n)),
                                               (T,) + bshape + (n, n)),
                loglik_terms=terms, loglik=terms.sum(0), steady_from=k)
