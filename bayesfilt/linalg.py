"""Batched linear-algebra helpers used by every filter form (NumPy)."""

from __future__ import annotations

import numpy as np


def sym(a: np.ndarray) -> np.ndarray:
    """(A + A^T) / 2 over the trailing two axes."""
    return 0.5 * (a + np.swapaxes(a, -1, -2))


def mT(a: np.ndarray) -> np.ndarray:
    """Transpose of the trailing two axes (a contiguous copy for one small shared matrix,
    so that a stack times it is a single fast product)."""
    if a.ndim == 2:
        return np.ascontiguousarray(a.T)
    return np.swapaxes(a, -1, -2)


def mv(a: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Batched matrix-vector product a @ x with a (..., i, j) and x (..., j)."""
    if a.ndim == 2:
        return x @ a.T                                             # one shared matrix: a single product
    return np.einsum("...ij,...j->...i", a, x)                     # faster than a stack of (i, j) @ (j, 1)


def solve_psd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a^{-1} b for symmetric positive semi-definite a (..., n, n), b (..., n, k); broadcasts.

    Where ``a`` is singular (e.g. the predicted covariance of a state known exactly, with
    zero prior and process variance) the pseudo-inverse a^+ b is used instead, the limit the
    smoother gains take (docs/math/rts_smoother.md). The torch twin is
    :func:`bayesfilt.scan._ops.solve_psd`.

    Args:
        a: symmetric PSD matrices (..., n, n).
        b: right-hand sides (..., n, k).

    Returns:
        a^{-1} b (a^+ b for the batch elements where a is singular), shape broadcast(...) + (n, k).

    Example:
        >>> import numpy as np
        >>> solve_psd(np.diag([2.0, 0.0]), np.ones((2, 1)))[:, 0]
        array([0.5, 0. ])
    """
    shape = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    a = np.broadcast_to(a, shape + a.shape[-2:])
    b = np.broadcast_to(b, shape + b.shape[-2:])
    try:
        return np.linalg.solve(a, b)
    except np.linalg.LinAlgError:
        return np.linalg.pinv(a, hermitian=True) @ b


def observed_system(y_t: np.ndarray, H: np.ndarray, R: np.ndarray, d: np.ndarray | None):
    """Restrict one step's observation model to its observed (non-NaN) components.

    Missing components get a zero row in H and a decoupled unit variance in R, and a
    zero residual, so they change neither the update nor the log-likelihood.

    Args:
        y_t: observations (..., m) with NaN for missing components.
        H: (..., m, n); R: (..., m, m); d: (..., m) or None.

    Returns:
        ``(y0, H_o, R_o, d_o, obs, n_obs)``: y with NaN set to 0, masked H, R and d, the
        boolean mask (..., m) and the count of observed components (...).
    """
    obs = ~np.isnan(y_t)                                           # observed components
    y0 = np.where(obs, y_t, 0.0)
    H_o = H * obs[..., :, None]                                    # rows of missing components -> 0
    both = obs[..., :, None] & obs[..., None, :]
    eye = np.eye(R.shape[-1], dtype=R.dtype)
    R_o = np.where(both, R, eye)                                   # missing block -> identity, decoupled
    d_o = None if d is None else d * obs
    return y0, H_o, R_o, d_o, obs, obs.sum(axis=-1)
