"""Parallel-in-time fixed-interval smoothers: RTS elements (covariance form) and a
two-filter smoother (information form of the backward pass).

Specification: :func:`bayesfilt.rts_smoother` (filters/smoother.py). Derivations:
docs/math/parallel_scan.md.

RTS elements (Särkkä & García-Fernández 2021, Lemmas 10–11): element t (0-based, t < T-1)

    E_t = G_t = P_t F_{t+1}^T P_{t+1|t}^{-1},  g_t = m_t - G_t (F_{t+1} m_t + b_{t+1}),
    L_t = P_t - G_t P_{t+1|t} G_t^T,

and (E, g, L) = (0, m_T, P_T) for the last step, encode x_t | x_{t+1} ~ N(E x_{t+1} + g, L);
``smoother_combine`` composes them, and a reverse scan gives the smoothed (m^s_t, P^s_t) as
the (g, L) of every suffix. Kernels: no validation.
"""

from __future__ import annotations

import numpy as np

from . import _ops as ops
from ._params import step, time_first
from .core import scan


def smoother_combine(e1, e2):
    """Compose e1 (earlier, x_t | x_{t+1}) with e2 (later): x_t | x_{s}.

    (E, g, L) = (E_1 E_2, E_1 g_2 + g_1, E_1 L_2 E_1^T + L_1).

    Example:
        >>> import numpy as np
        >>> from bayesfilt.scan.smoother import smoother_combine
        >>> I, z = np.eye(2), np.zeros(2)
        >>> smoother_combine((I, z, 0 * I), (2 * I, z + 1, I))[1]
        array([1., 1.])
    """
    E1, g1, L1 = e1
    E2, g2, L2 = e2
    return E1 @ E2, ops.mv(E1, g2) + g1, ops.sym(E1 @ L2 @ ops.mT(E1) + L1)


def smoother_identity(n: int, batch: tuple, like):
    """The identity element (I, 0, 0)."""
    Z = ops.zeros(tuple(batch) + (n, n), like)
    return Z + ops.eye(n, like), ops.zeros(tuple(batch) + (n,), like), Z


def gains(model, y, means, covs):
    """Smoother gains G_t = P_t F_{t+1}^T P_{t+1|t}^{-1}, t = 0..T-2, time-first (T-1, *B, n, n)."""
    T = means.shape[0]
    nb = means.ndim - 2
    F = step(time_first(model, "F", nb, y), 1, T)
    Q = step(time_first(model, "Q", nb, y), 1, T)
    Pt = covs[:-1]
    Ppred = ops.sym(F @ Pt @ ops.mT(F) + Q)                    # P_{t+1|t}
    FP = F @ Pt
    shape = ops.shape_of(Ppred[..., 0], FP[..., 0])
    G = ops.mT(ops.solve_psd(ops.broadcast_to(Ppred, shape + Ppred.shape[-1:]),
                          ops.broadcast_to(FP, shape + FP.shape[-1:])))  # G_t = P_t F^T P_{t+1|t}^{-1}
    return G, Ppred


def smoother_elements(model, y, means, covs):
    """The T RTS elements (E, g, L) from filtered moments (time-first)."""
    T = means.shape[0]
    nb = means.ndim - 2
    n = means.shape[-1]
    last = (ops.zeros((1,) + tuple(covs.shape[1:]), covs), means[-1:], covs[-1:])  # (0, m_T, P_T)
    if T == 1:
        return last
    G, Ppred = gains(model, y, means, covs)
    F = step(time_first(model, "F", nb, y), 1, T)
    pm = ops.mv(F, means[:-1])
    b = time_first(model, "b", nb, y)
    if b is not None:
        pm = pm + step(b, 1, T)                                # m_{t+1|t} = F m_t + b
    g = means[:-1] - ops.mv(G, pm)                             # g_t = m_t - G_t m_{t+1|t}
    L = ops.sym(covs[:-1] - G @ Ppred @ ops.mT(G))             # L_t = P_t - G_t P_{t+1|t} G_t^T
    shape = tuple(covs.shape[1:])
    E = ops.broadcast_to(G, (T - 1,) + shape)
    g = ops.broadcast_to(g, (T - 1,) + shape[:-1])
    L = ops.broadcast_to(L, (T - 1,) + shape)
    return (ops.concat([E, last[0]], 0), ops.concat([g, last[1]], 0), ops.concat([L, last[2]], 0))


def scan_rts(model, y, means, covs, schedule="tree", chunk_size=None):
    """Parallel RTS smoother from time-first filtered moments.

    Returns:
        dict of time-first arrays: means, covs, cross_covs (T-1), gains (T-1).
    """
    elems = smoother_elements(model, y, means, covs)
    E, g, L = scan(elems, smoother_combine, schedule, reverse=True, chunk_size=chunk_size)
    T = means.shape[0]
    Gs = elems[0][:-1]
    cross = L[1:] @ ops.mT(Gs)                                 # Cov[x_{t+1}, x_t | y_{1:T}] = P^s_{t+1} G_t^T
    return dict(means=g, covs=L, cross_covs=cross, gains=Gs if T > 1 else Gs[:0])
