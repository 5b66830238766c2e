"""Parallel-in-time square-root Kalman filter: Cholesky-factor scan elements and their combine.

Specification: :func:`bayesfilt.filters.sqrt.sqrt_filter` (the sequential square-root filter) and
:func:`bayesfilt.kalman_filter`. The elements are the covariance-form elements of
:mod:`bayesfilt.scan.covariance` (Särkkä & García-Fernández 2021, "Temporal parallelization of
Bayesian smoothers", IEEE TAC 66(1), Lemmas 7-8) with the two covariances carried as factors, after
Yaghoobi, Corenflos, Hassan & Särkkä (2022), "Parallel square-root statistical linear regression for
inference in nonlinear state space models", arXiv:2207.00426 (the linear-Gaussian case; the
formulas below are derived here from the covariance-form ones). An element is

    e = (A, b, U, ζ, Z, c):   p(x_t | x_{s-1}, y_{s:t}) = N(x_t; A x_{s-1} + b, U U^T)
                              p(y_{s:t} | x_{s-1})      = exp(c - ½ |ζ - Z^T x_{s-1}|²)

for the span s..t of steps it covers; in covariance.py's terms C = U U^T, J = Z Z^T, η = Z ζ and
c_cov = c - ½|ζ|² (:func:`to_covariance_form`). U and Z are n x n (lower-triangular as produced
here). The first element has A = 0 and Z = 0, so every prefix holds the filtered mean b = m_t,
covariance U U^T = P_t and log p(y_{1:t}) = c - ½|ζ|².

Why the likelihood is kept whitened (ζ, not η): on nearly redundant states measured very
precisely (docs/reliability.md, "Open problems") J_2 is huge (1e12) along the precise direction and
C_1 tiny there; any product of float C_1 (or U_1) with J_2 then carries an error of eps |C_1| |J_2|
(1e-4 there), the covariance-form elements' failure. In the combine the data of e_2 enter only
through the whitened residual w = ζ_2 - Z_2^T b_1 (of the size of an innovation, not of |J_2| |b_1|),
and that residual's gain V Γ multiplies w in b_12 and Z_2^T A_1 in A_12 alike, so their rounding
errors cancel when a later prefix applies A_12 (measured: 1e-10 of an exact reference where the
η-form of the same combine, b_1 + V (V^T η_2 - Ξ21^T b_1), was 1e-5 off).

Every covariance-like quantity is a product F F^T of a factor returned by QR ("tria"), every
inverse a triangular solve with such a factor; nothing like I + C_1 J_2 is formed and inverted.

Single step (t > 1; t = 1 with F = 0, Q = P0, b_t = m0), with S_R S_R^T = R and U_Q U_Q^T = Q:

    tria([[S_R, H U_Q], [0, U_Q]]) = [[X, 0], [Y, U]]   X X^T = H Q H^T + R = S,  Y X^{-1} = K,  U U^T = Q - K S K^T
    W = X^{-1} H F,  z = X^{-1} (y - H b_t - d)
    A = F - Y W,  b = b_t + Y z,  Z = W^T,  ζ = z  (zero-padded to n; m > n: tria([[W^T], [z^T]]) = [[Z, 0], [ζ^T, ρ]])
    c = -½ log|S| - (m/2) log 2π  (- ½ ρ² when m > n)

Combine of e_1 (earlier) and e_2 (later), G = Z_2^T U_1:

    tria([[G^T, I], [I, 0]]) = [[Ξ11, 0], [Γ^T, Ξ22]]
        Ξ11 Ξ11^T = I + G^T G,   Γ = Ξ11^{-1} G^T,   Ξ22 Ξ22^T = (I + G G^T)^{-1}
    V = U_1 Ξ11^{-T}                     (V V^T = (I + C_1 J_2)^{-1} C_1,   V Γ = (I + C_1 J_2)^{-1} C_1 Z_2)
    w = ζ_2 - Z_2^T b_1
    A_12 = A_2 (A_1 - V Γ Z_2^T A_1)                             = A_2 (I + C_1 J_2)^{-1} A_1
    b_12 = A_2 (b_1 + V Γ w) + b_2                                = A_2 (I + C_1 J_2)^{-1} (b_1 + C_1 η_2) + b_2
    U_12 = tria([A_2 V, U_2])                                      U U^T = A_2 (I + C_1 J_2)^{-1} C_1 A_2^T + C_2
    tria([[A_1^T Z_2 Ξ22, Z_1], [w^T Ξ22, ζ_1^T]]) = [[Z_12, 0], [ζ_12^T, ρ]]
                                                                   Z Z^T = A_1^T (I + J_2 C_1)^{-1} J_2 A_1 + J_1
    c_12 = c_1 + c_2 - Σ log diag Ξ11 - ½ ρ²

(the last two: the two whitened residual vectors ζ_1 - Z_1^T x and Ξ22^T (w - Z_2^T A_1 x), both
functions of x = x_{s-1}, stacked and triangularised; ρ is what no x can explain).

Shapes: B batch axes, T time, n states, m observations; arrays time-first (T, *B, ...).
NumPy arrays or torch tensors (dispatch on type, as :mod:`bayesfilt.scan._ops`). torch: the
forward pass of every schedule; gradients are NaN through the tree and chunked schedules, whose QR
backward meets rank-deficient blocks such as the first element's Z = 0 (finite through the
sequential one). Kernels: no validation. Mathematics of the covariance-form elements:
docs/math/parallel_scan.md.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from . import _ops as ops
from ._params import observed, static, step, time_first
from .core import scan
from ..filters.sqrt import psd_sqrt
from ..filters.sqrt import tria as _tria_np


# ------------------------------------------------------------------ backend-neutral helpers
def tria(A):
    """Lower-triangular L (..., n, n) with L L^T = A A^T for A (..., n, k), k >= n; diag(L) >= 0.

    NumPy: :func:`bayesfilt.filters.sqrt.tria`; torch: the same steps (columns sorted by decreasing
    norm, R of the QR factorisation of (A Π)^T, transposed, columns' signs flipped to diag >= 0).

    Example:
        >>> import numpy as np
        >>> A = np.array([[1.0, 2.0, 0.0], [0.0, 1.0, 3.0]])
        >>> L = tria(A)
        >>> bool(np.allclose(L @ L.T, A @ A.T)), float(L[0, 1])
        (True, 0.0)
    """
    if not ops.is_torch(A):
        return _tria_np(A)
    import torch
    norms = torch.linalg.vector_norm(A, dim=-2)
    order = torch.argsort(-norms, dim=-1, stable=True)
    A = torch.gather(A, -1, order[..., None, :].expand(A.shape))  # A Π: columns by decreasing norm
    R = torch.linalg.qr(A.mT, mode="reduced" if A.requires_grad else "r").R  # (A Π)^T = Θ R (Θ kept for autograd)
    L = R.mT                                                   # A A^T = L L^T
    sign = torch.where(torch.diagonal(L, dim1=-2, dim2=-1) < 0, -1.0, 1.0).to(L.dtype)
    return L * sign[..., None, :]


def _cat(parts, axis):
    """Concatenate along ``axis`` (-1 or -2) after broadcasting the other axes."""
    shapes = [tuple(p.shape) for p in parts]
    nd = max(len(s) for s in shapes)
    shapes = [(1,) * (nd - len(s)) + s for s in shapes]
    keep = nd + axis
    lead = np.broadcast_shapes(*(s[:keep] + s[keep + 1:] for s in shapes))
    out = []
    for p, s in zip(parts, shapes):
        full = lead[:keep] + (s[keep],) + lead[keep:]
        out.append(ops.broadcast_to(p, full))
    return ops.concat(out, axis)


def _factored(model, names):
    """A stand-in for ``model`` whose ``names`` (Q, P0) hold their factors: psd_sqrt(P) P-shaped (NumPy)."""
    return SimpleNamespace(time_varying=model.time_varying,
                           **{k: psd_sqrt(np.asarray(getattr(model, k), dtype=float)) for k in names})


# ------------------------------------------------------------------ elements and combine
def conditional_sqrt_elements(y, F, UQ, bt, H, R, d):
    """Single-step square-root elements (module docstring, "Single step"), time-first and broadcast.

    Args:
        y: observations (T, *B, m), NaN for missing components.
        F: transition (T or 1, *B, n, n) (zeros for the first step).
        UQ: a factor of Q, U_Q U_Q^T = Q (of P0 for the first step).
        bt: state offset (m0 for the first step) or None.
        H, R, d: observation matrix, noise covariance (positive definite on observed components), offset or None.

    Returns:
        ``(A, b, U, zeta, Z, c)`` with shapes (T, *B, n, n), (T, *B, n), (T, *B, n, n), (T, *B, n),
        (T, *B, n, n), (T, *B).

    Example:
        >>> import numpy as np
        >>> I = np.eye(2)[None]
        >>> A, b, U, zeta, Z, c = conditional_sqrt_elements(np.array([[1.0, np.nan]]), I, I, None, I, I, None)
        >>> A[0].round(3).tolist(), b[0].round(3).tolist()      # gain 1/2 on the observed state only
        ([[0.5, 0.0], [0.0, 1.0]], [0.5, 0.0])
    """
    n = UQ.shape[-1]
    m = y.shape[-1]
    y0, Ho, Ro, do, n_obs = observed(y, H, R, d)
    SR = ops.cholesky(Ro)                                      # R = S_R S_R^T (observed block; identity elsewhere)
    top = _cat([SR, Ho @ UQ], -1)
    bottom = _cat([ops.zeros(tuple(UQ.shape[:-2]) + (n, m), UQ), UQ], -1)
    post = tria(_cat([top, bottom], -2))                       # tria([[S_R, H U_Q], [0, U_Q]]) = [[X, 0], [Y, U]]
    X, Y, U = post[..., :m, :m], post[..., m:, :m], post[..., m:, m:]
    r = y0 if bt is None else y0 - ops.mv(Ho, bt)              # r = y - H b_t - d_t
    if do is not None:
        r = r - do
    W = ops.tri_solve(X, _cat([Ho @ F, r[..., None]], -1))     # X^{-1} [H F | r]
    WF, z = W[..., :n], W[..., n]
    A = F - Y @ WF                                             # A = F - Y X^{-1} H F = (I - K H) F
    b = ops.mv(Y, z)                                           # b = b_t + Y X^{-1} r = b_t + K r
    if bt is not None:
        b = b + bt
    c = -0.5 * (ops.logdet_chol(X) + n_obs * ops.LOG_2PI)     # c = -½ log|S| - (m/2) log 2π
    if m <= n:                                                 # Z = W^T, ζ = z (zero-padded to n)
        Zf = _cat([ops.mT(WF), ops.zeros(tuple(WF.shape[:-2]) + (n, n - m), WF)], -1)
        zeta = _cat([z, ops.zeros(tuple(z.shape[:-1]) + (n - m,), z)], -1)
    else:                                                      # tria([[W^T], [z^T]]) = [[Z, 0], [ζ^T, ρ]]
        L = tria(_cat([ops.mT(WF), z[..., None, :]], -2))
        Zf, zeta, rho = L[..., :n, :n], L[..., n, :n], L[..., n, n]
        c = c - 0.5 * rho * rho                                #   c -= ½ ρ²
    shape = ops.shape_of(A[..., 0, 0], b[..., 0], U[..., 0, 0], zeta[..., 0], Zf[..., 0, 0], c)
    return (ops.broadcast_to(A, shape + (n, n)), ops.broadcast_to(b, shape + (n,)),
            ops.broadcast_to(U, shape + (n, n)), ops.broadcast_to(zeta, shape + (n,)),
            ops.broadcast_to(Zf, shape + (n, n)), ops.broadcast_to(c, shape))


def sqrt_combine(e1, e2):
    """Compose e1 (earlier) and e2 (later) in square-root form (module docstring, "Combine").

    Equals :func:`bayesfilt.scan.covariance.filter_combine` on :func:`to_covariance_form` of the
    elements (Yaghoobi et al. 2022, arXiv:2207.00426, the linear-Gaussian case of their
    square-root combine; here with the likelihood kept whitened, η = Z ζ).

    Example:
        >>> import numpy as np
        >>> from bayesfilt.scan.sqrt import sqrt_combine, sqrt_identity
        >>> e = sqrt_identity(2, (), np.zeros(0))
        >>> bool(np.allclose(sqrt_combine(e, e)[0], np.eye(2)))
        True
    """
    A1, b1, U1, zeta1, Z1, c1 = e1
    A2, b2, U2, zeta2, Z2, c2 = e2
    n = A1.shape[-1]
    I = ops.eye(n, A1)
    G = ops.mT(Z2) @ U1                                        # G = Z_2^T U_1
    Xi = tria(_cat([_cat([ops.mT(G), I], -1), _cat([I, ops.zeros((n, n), A1)], -1)], -2))  # tria([[G^T, I], [I, 0]])
    Xi11, Gam, Xi22 = Xi[..., :n, :n], ops.mT(Xi[..., n:, :n]), Xi[..., n:, n:]  # Γ = Ξ11^{-1} G^T
    V = ops.mT(ops.tri_solve(Xi11, ops.mT(U1)))                # V = U_1 Ξ11^{-T}
    Kg = V @ Gam                                               # V Γ = (I + C_1 J_2)^{-1} C_1 Z_2
    w = zeta2 - ops.mv(ops.mT(Z2), b1)                         # w = ζ_2 - Z_2^T b_1
    A = A2 @ (A1 - Kg @ (ops.mT(Z2) @ A1))                     # A_12 = A_2 (A_1 - V Γ Z_2^T A_1)
    b = ops.mv(A2, b1 + ops.mv(Kg, w)) + b2                    # b_12 = A_2 (b_1 + V Γ w) + b_2
    U = tria(_cat([A2 @ V, U2], -1))                           # U_12 = tria([A_2 V, U_2])
    Ba = ops.mT(A1) @ (Z2 @ Xi22)                              # A_1^T Z_2 Ξ22
    za = ops.mv(ops.mT(Xi22), w)                               # Ξ22^T w
    L = tria(_cat([_cat([Ba, Z1], -1), _cat([za[..., None, :], zeta1[..., None, :]], -1)], -2))
    Z, zeta, rho = L[..., :n, :n], L[..., n, :n], L[..., n, n]  # tria([[A_1^T Z_2 Ξ22, Z_1], [w^T Ξ22, ζ_1^T]]) = [[Z_12, 0], [ζ_12^T, ρ]]
    c = c1 + c2 - 0.5 * ops.logdet_chol(Xi11) - 0.5 * rho * rho  # c_12 = c_1 + c_2 - ½ log|I + G^T G| - ½ ρ²
    return A, b, U, zeta, Z, c


def to_covariance_form(e):
    """(A, b, U, ζ, Z, c) -> the covariance-form element (A, b, U U^T, Z ζ, Z Z^T, c - ½|ζ|²) of covariance.py.

    Example:
        >>> import numpy as np
        >>> e = sqrt_identity(2, (), np.zeros(0))
        >>> [x.shape for x in to_covariance_form(e)]
        [(2, 2), (2,), (2, 2), (2,), (2, 2), ()]
    """
    A, b, U, zeta, Z, c = e
    return A, b, ops.sym(U @ ops.mT(U)), ops.mv(Z, zeta), ops.sym(Z @ ops.mT(Z)), c - 0.5 * ops.dot(zeta, zeta)


def sqrt_identity(n: int, batch: tuple, like):
    """The identity element (I, 0, 0, 0, 0, 0): combine(identity, e) = combine(e, identity) = e.

    Example:
        >>> import numpy as np
        >>> sqrt_identity(2, (3,), np.zeros(0))[0].shape
        (3, 2, 2)
    """
    z = ops.zeros(tuple(batch) + (n,), like)
    Z = ops.zeros(tuple(batch) + (n, n), like)
    return (Z + ops.eye(n, like), z, Z, z, Z, ops.zeros(tuple(batch), like))


def sqrt_elements(model, y):
    """All T square-root elements of ``model`` for time-first observations ``y`` (T, *B, m), in y's backend.

    Example:
        >>> import numpy as np, bayesfilt
        >>> model = bayesfilt.models.constant_velocity(q=0.1, r=1.0)
        >>> _, y = model.simulate(5, seed=0)
        >>> [e.shape for e in sqrt_elements(model, y[:, None])][:3]
        [(5, 1, 4, 4), (5, 1, 4), (5, 1, 4, 4)]
    """
    T = y.shape[0]
    nb = y.ndim - 2
    n = model.n
    P = {k: time_first(model, k, nb, y) for k in ("F", "b", "H", "R", "d")}
    fac = _factored(model, ("Q", "P0"))
    UQ = time_first(fac, "Q", nb, y)                           # U_Q U_Q^T = Q_t
    m0, U0 = static(model, "m0", nb, y)[None], static(fac, "P0", nb, y)[None]  # U_0 U_0^T = P0
    first = conditional_sqrt_elements(y[:1], ops.zeros((1, n, n), y), U0, m0, step(P["H"], 0, 1),
                                      step(P["R"], 0, 1), step(P["d"], 0, 1))  # A = 0: prior updated on y_1
    parts = [first]
    if T > 1:
        parts.append(conditional_sqrt_elements(y[1:], step(P["F"], 1, T), step(UQ, 1, T), step(P["b"], 1, T),
                                               step(P["H"], 1, T), step(P["R"], 1, T), step(P["d"], 1, T)))
    batch = ops.shape_of(*(e[1][..., 0] for e in parts))[1:]
    cores = [(n, n), (n,), (n, n), (n,), (n, n), ()]
    leads = [1, T - 1]
    return tuple(ops.concat([ops.broadcast_to(p[i], (lead,) + tuple(batch) + cores[i])
                             for p, lead in zip(parts, leads)], 0) for i in range(6))


def sqrt_predicted_and_terms(model, y, means, chols):
    """Predicted moments and log-likelihood terms from filtered means and factors, in square-root form.

    A parallel map over t of one step of :func:`bayesfilt.filters.sqrt.sqrt_filter`:
    S_{t|t-1} = tria([F_t S_{t-1}, U_Q]) (U_0 at t = 1), X = the factor of H P_{t|t-1} H^T + R from
    tria([[S_R, H S_{t|t-1}], [0, S_{t|t-1}]]), term_t = log N(r_t; 0, X X^T) over the observed rows.

    Returns:
        ``(predicted_means (T, *B, n), predicted_covs (T, *B, n, n), terms (T, *B))``.

    Example:
        >>> import numpy as np, bayesfilt
        >>> model = bayesfilt.models.constant_velocity(q=0.1, r=1.0)
        >>> _, y = model.simulate(10, seed=0)
        >>> ref = bayesfilt.kalman_filter(model, y)
        >>> pm, pP, terms = sqrt_predicted_and_terms(model, y[:, None], ref.means[:, None],
        ...                                          np.linalg.cholesky(ref.covs)[:, None])
        >>> bool(np.allclose(terms[:, 0], ref.loglik_terms))
        True
    """
    T = y.shape[0]
    nb = y.ndim - 2
    n = means.shape[-1]
    m = y.shape[-1]
    P = {k: time_first(model, k, nb, y) for k in ("F", "b", "H", "R", "d")}
    fac = _factored(model, ("Q", "P0"))
    m0 = ops.broadcast_to(static(model, "m0", nb, y)[None], (1,) + tuple(means.shape[1:]))
    U0 = ops.broadcast_to(static(fac, "P0", nb, y)[None], (1,) + tuple(chols.shape[1:]))
    if T > 1:
        F = step(P["F"], 1, T)
        pm = ops.mv(F, means[:-1])                             # m_{t|t-1} = F_t m_{t-1}
        if P["b"] is not None:
            pm = pm + step(P["b"], 1, T)                       #            + b_t
        pS = tria(_cat([F @ chols[:-1], step(time_first(fac, "Q", nb, y), 1, T)], -1))  # S_{t|t-1} = tria([F S, U_Q])
        pm = ops.concat([m0, ops.broadcast_to(pm, (T - 1,) + tuple(means.shape[1:]))], 0)
        pS = ops.concat([U0, ops.broadcast_to(pS, (T - 1,) + tuple(chols.shape[1:]))], 0)
    else:
        pm, pS = m0, U0
    y0, Ho, Ro, do, n_obs = observed(y, P["H"], P["R"], P["d"])
    SR = ops.cholesky(Ro)
    HS = Ho @ pS
    top = _cat([SR, HS], -1)
    X = tria(_cat([top, _cat([ops.zeros(tuple(pS.shape[:-2]) + (n, m), pS), pS], -1)], -2))[..., :m, :m]
    r = y0 - ops.mv(Ho, pm)                                    # r_t = y_t - H m_{t|t-1} - d_t
    if do is not None:
        r = r - do
    z = ops.tri_solve(X, r[..., None])[..., 0]                 # z = X^{-1} r_t
    terms = -0.5 * (ops.dot(z, z) + ops.logdet_chol(X) + n_obs * ops.LOG_2PI)  # log N(r_t; 0, X X^T)
    return pm, ops.sym(pS @ ops.mT(pS)), terms


def scan_sqrt_filter(model, y, schedule="tree", chunk_size=None):
    """Square-root parallel filter on time-first ``y`` (T, *B, m) in y's backend (NumPy or torch).

    Elements and combine: module docstring (Yaghoobi et al. 2022, arXiv:2207.00426). Same model,
    inputs and outputs as :func:`bayesfilt.scan.covariance.scan_filter`; the covariances are
    returned as U U^T of the scanned factors, the predicted moments and log-likelihood terms from
    one square-root step of the filtered ones (:func:`sqrt_predicted_and_terms`).

    Args:
        model: a LinearGaussianSSM (Q and P0 may be singular; R positive definite where observed).
        y: time-first observations (T, *B, m), NaN for missing components.
        schedule: ``"sequential"`` | ``"tree"`` | ``"chunked"`` (:func:`bayesfilt.scan.scan`).
        chunk_size: chunk length for ``"chunked"``.

    Returns:
        dict of time-first arrays: means (T, *B, n), covs (T, *B, n, n), chols (their lower factors),
        predicted_means, predicted_covs, loglik_terms (T, *B), cum_loglik (the carried c of every
        prefix, log p(y_{1:t})) and loglik (the sum of the terms, (*B)).

    Example:
        >>> import numpy as np, bayesfilt
        >>> model = bayesfilt.models.constant_velocity(q=0.1, r=1.0)
        >>> _, y = model.simulate(30, seed=0)
        >>> out = scan_sqrt_filter(model, y[:, None], "tree")
        >>> ref = bayesfilt.kalman_filter(model, y)
        >>> bool(np.allclose(out["means"][:, 0], ref.means, atol=1e-10))
        True
    """
    elems = sqrt_elements(model, y)
    A, b, U, zeta, Z, c = scan(elems, sqrt_combine, schedule, chunk_size=chunk_size)
    pm, pP, terms = sqrt_predicted_and_terms(model, y, b, U)
    c = c - 0.5 * ops.dot(zeta, zeta)                          # log p(y_{1:t}) of a prefix (Z = 0 there)
    return dict(means=b, covs=ops.sym(U @ ops.mT(U)), chols=U, predicted_means=pm, predicted_covs=pP,
                loglik_terms=terms, cum_loglik=c, loglik=terms.sum(0))
