"""Parallel-in-time information-form Kalman filter and two-filter smoother.

Specification: :func:`bayesfilt.information_filter` (filters/information.py). Each element
is a Gaussian potential in canonical (information) form over the pair of states at the
ends of the span it covers (derivation: docs/math/parallel_scan.md):

    φ(x_a, x_b) = exp(c + h_a^T x_a + h_b^T x_b - ½ [x_a; x_b]^T [[Λ_aa, Λ_ab], [Λ_ab^T, Λ_bb]] [x_a; x_b])

Step t >= 2 is φ_t(x_{t-1}, x_t) = N(x_t; F_t x_{t-1} + b_t, Q_t) N(y_t; H_t x_t + d_t, R_t);
step 1 is the unary φ_1(x_1) = N(x_1; m0, P0) N(y_1; H_1 x_1 + d_1, R_1) (Λ_aa = Λ_ab = 0).
``info_combine`` marginalises the shared state (Gaussian variable elimination, in the spirit
of Särkkä & García-Fernández 2021, who use the same product-and-marginalise composition),
so every prefix is φ(x_t) ∝ p(x_t, y_{1:t}): its (h_b, Λ_bb) are the filtered information
vector η_t and precision Λ_t, and ``c`` carries log p(y_{1:t}). Requires Q_t and P0
positive definite (the transition potential holds Q^{-1}); use the covariance form for
singular Q. Kernels: no validation.
"""

from __future__ import annotations

import numpy as np

from . import _ops as ops
from ._params import observed, static, step, time_first
from .core import scan
from .covariance import predicted_and_terms


def _whiten_obs(y, H, R, d):
    y0, Ho, Ro, do, n_obs = observed(y, H, R, d)
    Lr = ops.cholesky(Ro)                                      # R = L_R L_R^T (observed block)
    e = y0 if do is None else y0 - do
    shape = ops.shape_of(Ho[..., 0], e)
    W = ops.tri_solve(Lr, ops.concat([ops.broadcast_to(Ho, shape + Ho.shape[-1:]),
                                      ops.broadcast_to(e, shape)[..., None]], -1))
    n = Ho.shape[-1]
    WH, we = W[..., :n], W[..., n]                             # L_R^{-1} H, L_R^{-1} (y - d)
    c = -0.5 * (ops.dot(we, we) + ops.logdet_chol(Lr) + n_obs * ops.LOG_2PI)
    return ops.mT(WH) @ WH, ops.mv(ops.mT(WH), we), c          # H^T R^{-1} H, H^T R^{-1}(y - d), -½ (y-d)^T R^{-1} (y-d) + ...


def info_elements(model, y):
    """The T canonical-form elements (Λ_aa, Λ_ab, Λ_bb, h_a, h_b, c), time-first (T, *B, ...)."""
    T = y.shape[0]
    nb = y.ndim - 2
    n = model.n
    P = {k: time_first(model, k, nb, y) for k in ("F", "Q", "b", "H", "R", "d")}
    HRH, HRe, c_obs = _whiten_obs(y, P["H"], P["R"], P["d"])
    m0, P0 = static(model, "m0", nb, y)[None], static(model, "P0", nb, y)[None]
    bshape = tuple(np.broadcast_shapes(tuple(m0.shape[:-1]), tuple(P0.shape[:-2])))
    m0, P0 = ops.broadcast_to(m0, bshape + (n,)), ops.broadcast_to(P0, bshape + (n, n))   # batch only in m0 or P0
    L0 = ops.cholesky(P0)
    W0 = ops.tri_solve(L0, ops.concat([ops.broadcast_to(ops.eye(n, y), P0.shape), m0[..., None]], -1))
    Li0, w0 = W0[..., :n], W0[..., n]                          # L0^{-1}, L0^{-1} m0
    Z = ops.zeros(P0.shape, y)
    first = (Z, Z, ops.sym(ops.mT(Li0) @ Li0) + HRH[:1],       # Λ_bb = P0^{-1} + H^T R^{-1} H
             Z[..., 0], ops.mv(ops.mT(Li0), w0) + HRe[:1],     # h_b = P0^{-1} m0 + H^T R^{-1}(y - d)
             -0.5 * (ops.dot(w0, w0) + ops.logdet_chol(L0) + n * ops.LOG_2PI) + c_obs[:1])
    parts = [first]
    if T > 1:
        F, Q, b = step(P["F"], 1, T), step(P["Q"], 1, T), step(P["b"], 1, T)
        Lq = ops.cholesky(Q)                                   # Q = L_Q L_Q^T
        I = ops.broadcast_to(ops.eye(n, y), Q.shape)
        cols = [I, ops.broadcast_to(F, ops.shape_of(F, Q))]
        if b is not None:
            cols.append(ops.broadcast_to(b, ops.shape_of(b, Q[..., 0]))[..., None])
        shape = ops.shape_of(*(cc[..., 0] for cc in cols))
        W = ops.tri_solve(Lq, ops.concat([ops.broadcast_to(cc, shape + cc.shape[-1:]) for cc in cols], -1))
        Liq, WF = W[..., :n], W[..., n:2 * n]                  # L_Q^{-1}, L_Q^{-1} F
        Qi = ops.mT(Liq) @ Liq                                 # Q^{-1}
        Laa = ops.sym(ops.mT(WF) @ WF)                         # Λ_aa = F^T Q^{-1} F
        Lab = -(ops.mT(WF) @ Liq)                              # Λ_ab = -F^T Q^{-1}
        Lbb = ops.sym(Qi + HRH[1:])                            # Λ_bb = Q^{-1} + H^T R^{-1} H
        c = -0.5 * (ops.logdet_chol(Lq) + n * ops.LOG_2PI) + c_obs[1:]
        hb = HRe[1:]
        ha = ops.zeros(hb.shape, y)
        if b is not None:
            wb = W[..., 2 * n]                                 # L_Q^{-1} b
            ha = ha - ops.mv(ops.mT(WF), wb)                   # h_a = -F^T Q^{-1} b
            hb = hb + ops.mv(ops.mT(Liq), wb)                  # h_b = Q^{-1} b + H^T R^{-1}(y - d)
            c = c - 0.5 * ops.dot(wb, wb)                      # c -= ½ b^T Q^{-1} b
        parts.append((Laa, Lab, Lbb, ha, hb, c))
    batch = ops.shape_of(*(p[4][..., 0] for p in parts), *(p[2][..., 0, 0] for p in parts))[1:]
    cores = [(n, n), (n, n), (n, n), (n,), (n,), ()]
    leads = [1, T - 1]
    return tuple(ops.concat([ops.broadcast_to(p[i], (lead,) + tuple(batch) + cores[i]) for p, lead in zip(parts, leads)], 0)
                 for i in range(6))


def info_combine(e1, e2):
    """Compose φ_1(x_a, x_b) and φ_2(x_b, x_c) into ∫ φ_1 φ_2 dx_b (a potential over (x_a, x_c)).

    With M = Λ1_bb + Λ2_aa and h_m = h1_b + h2_a: Λ_aa = Λ1_aa - Λ1_ab M^{-1} Λ1_ab^T,
    Λ_ac = -Λ1_ab M^{-1} Λ2_ab, Λ_cc = Λ2_bb - Λ2_ab^T M^{-1} Λ2_ab, h_a = h1_a - Λ1_ab M^{-1} h_m,
    h_c = h2_b - Λ2_ab^T M^{-1} h_m, c = c1 + c2 + ½ h_m^T M^{-1} h_m - ½ log|M| + (n/2) log 2π.

    Example:
        >>> import numpy as np
        >>> from bayesfilt.scan.information import info_combine
        >>> I, z = np.eye(1), np.zeros(1)
        >>> e = (0 * I, -I, 2 * I, z, z, np.zeros(()))    # exp(-½ (x_b - x_a)^2 - ½ x_b^2)
        >>> info_combine(e, e)[2]                           # precision of x_c
        array([[1.66666667]])
    """
    Laa1, Lab1, Lbb1, ha1, hb1, c1 = e1
    Laa2, Lab2, Lbb2, ha2, hb2, c2 = e2
    n = Laa1.shape[-1]
    M = ops.sym(Lbb1 + Laa2)                                   # M = Λ1_bb + Λ2_aa
    hm = hb1 + ha2                                             # h_m = h1_b + h2_a
    Lm = ops.cholesky(M)
    cols = [ops.mT(Lab1), Lab2, hm[..., None]]
    shape = ops.shape_of(Lm[..., 0], *(cc[..., 0] for cc in cols))
    W = ops.tri_solve(Lm, ops.concat([ops.broadcast_to(cc, shape + cc.shape[-1:]) for cc in cols], -1))
    W1, W2, wh = W[..., :n], W[..., n:2 * n], W[..., 2 * n]    # L_M^{-1} Λ1_ab^T, L_M^{-1} Λ2_ab, L_M^{-1} h_m
    Laa = ops.sym(Laa1 - ops.mT(W1) @ W1)                      # Λ_aa = Λ1_aa - Λ1_ab M^{-1} Λ1_ab^T
    Lab = -(ops.mT(W1) @ W2)                                   # Λ_ac = -Λ1_ab M^{-1} Λ2_ab
    Lbb = ops.sym(Lbb2 - ops.mT(W2) @ W2)                      # Λ_cc = Λ2_bb - Λ2_ab^T M^{-1} Λ2_ab
    ha = ha1 - ops.mv(ops.mT(W1), wh)                          # h_a = h1_a - Λ1_ab M^{-1} h_m
    hb = hb2 - ops.mv(ops.mT(W2), wh)                          # h_c = h2_b - Λ2_ab^T M^{-1} h_m
    c = c1 + c2 + 0.5 * (ops.dot(wh, wh) - ops.logdet_chol(Lm) + n * ops.LOG_2PI)  # c = c1 + c2 + ½ h^T M^{-1} h - ½ log|M/2π|
    return Laa, Lab, Lbb, ha, hb, c


def info_identity(n: int, batch: tuple, like, strength: float = 1e8):
    """An approximate identity: the normalised kernel N(x_b; x_a, I/s) for a large ``strength`` s.

    The exact identity of marginalisation is the point mass δ(x_b - x_a), which has no
    canonical form; N(x_b; x_a, I/s) tends to it as s -> ∞ (c = (n/2) log(s/2π) is its
    normaliser), and combining with it changes an element by O(1/s), which the tests bound.
    """
    import math
    I = ops.zeros(tuple(batch) + (n, n), like) + ops.eye(n, like)
    z = ops.zeros(tuple(batch) + (n,), like)
    c = ops.zeros(tuple(batch), like) + 0.5 * n * math.log(strength / (2.0 * math.pi))
    return strength * I, -strength * I, strength * I, z, z, c


def _moments_from_info(lam, eta):
    L = ops.cholesky(lam)
    n = lam.shape[-1]
    W = ops.tri_solve(L, ops.concat([ops.broadcast_to(ops.eye(n, lam), lam.shape), eta[..., None]], -1))
    Li, w = W[..., :n], W[..., n]                              # L^{-1}, L^{-1} η
    cov = ops.sym(ops.mT(Li) @ Li)                             # P = Λ^{-1}
    mean = ops.mv(ops.mT(Li), w)                               # m = Λ^{-1} η
    return mean, cov, ops.dot(w, w), ops.logdet_chol(L)


def scan_info_filter(model, y, schedule="tree", chunk_size=None):
    """Information-form parallel filter on time-first ``y`` (T, *B, m).

    Returns:
        dict of time-first arrays as :func:`bayesfilt.scan.covariance.scan_filter`, plus
        info_vectors and precisions.
    """
    elems = info_elements(model, y)
    Laa, Lab, Lbb, ha, hb, c = scan(elems, info_combine, schedule, chunk_size=chunk_size)
    mean, cov, quad, logdet = _moments_from_info(Lbb, hb)
    n = model.n
    cum = c + 0.5 * (quad - logdet + n * ops.LOG_2PI)         # log ∫ φ(x_t) dx_t = log p(y_{1:t})
    pm, pP, terms = predicted_and_terms(model, y, mean, cov)
    return dict(means=mean, covs=cov, predicted_means=pm, predicted_covs=pP, loglik_terms=terms,
                cum_loglik=cum, loglik=terms.sum(0), info_vectors=hb, precisions=Lbb)


def scan_two_filter(model, y, filt, schedule="tree", chunk_size=None):
    """Two-filter smoother in information form from a time-first information filter result.

    The reverse scan of the same elements gives, for every t < T, the backward potential
    β_t(x_t) = ∫ φ_{t+1} ... φ_T dx_{t+1:T} = p(y_{t+1:T} | x_t) in information form (J_t, k_t);
    the smoothed precision and information vector are Λ_t + J_t and η_t + k_t.
    """
    from .smoother import gains
    T = y.shape[0]
    lam, eta = filt["precisions"], filt["info_vectors"]
    if T > 1:
        elems = info_elements(model, y)
        later = tuple(e[1:] for e in elems)
        Laa, Lab, Lbb, ha, hb, _ = scan(later, info_combine, schedule, reverse=True, chunk_size=chunk_size)
        Lc = ops.cholesky(Lbb)
        n = lam.shape[-1]
        W = ops.tri_solve(Lc, ops.concat([ops.mT(Lab), hb[..., None]], -1))
        Jb = ops.sym(Laa - ops.mT(W[..., :n]) @ W[..., :n])   # J_t = Λ_aa - Λ_ab Λ_bb^{-1} Λ_ab^T (x_T integrated out)
        kb = ha - ops.mv(ops.mT(W[..., :n]), W[..., n])        # k_t = h_a - Λ_ab Λ_bb^{-1} h_b
        lam_s = ops.concat([ops.sym(lam[:-1] + Jb), lam[-1:]], 0)  # Λ^s_t = Λ_t + J_t
        eta_s = ops.concat([eta[:-1] + kb, eta[-1:]], 0)           # η^s_t = η_t + k_t
    else:
        lam_s, eta_s = lam, eta
    mean, cov, _, _ = _moments_from_info(lam_s, eta_s)
    G, _ = gains(model, y, filt["means"], filt["covs"]) if T > 1 else (cov[:0], None)
    cross = cov[1:] @ ops.mT(G)                                # Cov[x_{t+1}, x_t | y_{1:T}] = P^s_{t+1} G_t^T
    return dict(means=mean, covs=cov, cross_covs=cross, gains=G, info_vectors=eta_s, precisions=lam_s)
