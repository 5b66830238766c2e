"""Model parameters laid out time-first for the scans: (T or 1, *batch, core).

The scans keep time as the leading axis (the scan axis) and batch axes after it; the
public results are moved back to (..., T, core). No validation (internal).
"""

from __future__ import annotations

import numpy as np

from . import _ops as ops
from ..model import CORE_RANK


def time_first(model, name: str, nbatch: int, like):
    """Parameter ``name`` as an array of shape (T or 1, 1.., *param_batch, core) in ``like``'s backend.

    ``nbatch`` is the number of batch axes of the whole problem; singleton axes are inserted
    so that broadcasting aligns batch axes. Returns None for an absent b or d.
    """
    arr = getattr(model, name)
    if arr is None:
        return None
    k = CORE_RANK[name]
    if name in model.time_varying:
        arr = np.moveaxis(arr, arr.ndim - k - 1, 0)               # (..., T, core) -> (T, ..., core)
        pb = arr.ndim - 1 - k
    else:
        pb = arr.ndim - k
        arr = arr[None]
    arr = arr.reshape(arr.shape[:1] + (1,) * (nbatch - pb) + arr.shape[1:])
    return ops.asarray(arr, like)


def static(model, name: str, nbatch: int, like):
    """A static parameter (m0, P0) as (1.., *param_batch, core) in ``like``'s backend."""
    arr = getattr(model, name)
    k = CORE_RANK[name]
    pb = arr.ndim - k
    arr = arr.reshape((1,) * (nbatch - pb) + arr.shape)
    return ops.asarray(arr, like)


def step(p, t0: int, t1: int):
    """Slice time entries [t0, t1) of a time-first parameter (static ones pass through)."""
    if p is None or p.shape[0] == 1:
        return p
    return p[t0:t1]


def observed(y, H, R, d):
    """Mask the missing (NaN) components of y (time-first arrays; see linalg.observed_system).

    Returns ``(y0, H_o, R_o, d_o, n_obs)``: missing components get a zero row in H, a
    decoupled unit variance in R, zero data and zero offset, so that they change neither the
    update nor the log-likelihood.
    """
    m = y.shape[-1]
    obs = ~ops.isnan(y)
    zero = ops.zeros((), y)
    y0 = ops.where(obs, y, zero)
    ob = obs.to(y.dtype) if ops.is_torch(y) else obs.astype(y.dtype)
    H_o = H * ob[..., :, None]                                    # rows of missing components -> 0
    both = obs[..., :, None] & obs[..., None, :]
    R_o = ops.where(both, R, ops.eye(m, y))                       # missing block -> identity, decoupled
    d_o = None if d is None else d * ob
    return y0, H_o, R_o, d_o, ob.sum(-1)
