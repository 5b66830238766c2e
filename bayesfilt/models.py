"""Ready-made models built on :class:`~bayesfilt.LinearGaussianSSM`."""

from __future__ import annotations

import numpy as np

from .errors import value_error
from .model import LinearGaussianSSM


def constant_velocity(dt: float = 1.0, q: float = 1.0, r: float = 1.0, dim: int = 2,
                      m0=None, P0=None) -> LinearGaussianSSM:
    """Constant-velocity model in ``dim`` dimensions (state: positions then velocities).

    Continuous white-noise acceleration of spectral density ``q`` (units²/s³), exact
    discretisation over a fixed step ``dt``; positions observed with noise variance ``r``.

    Args:
        dt: time step (> 0). q: process-noise spectral density (>= 0).
        r: observation-noise variance (> 0). dim: number of spatial dimensions.
        m0, P0: prior of the first state; default zero mean and covariance 100 I.
    """
    if not dt > 0:
        raise value_error("dt", f"is {dt!r}", "pass a positive time step")
    if not q >= 0:
        raise value_error("q", f"is {q!r}", "pass a non-negative spectral density")
    if not r > 0:
        raise value_error("r", f"is {r!r}", "pass a positive observation variance")
    I = np.eye(dim)
    Z = np.zeros((dim, dim))
    F = np.block([[I, dt * I], [Z, I]])                                   # x_t = x + dt v, v_t = v
    Q = q * np.block([[dt**3 / 3 * I, dt**2 / 2 * I], [dt**2 / 2 * I, dt * I]])  # ∫ e^{As} G q G^T e^{A^T s} ds
    H = np.hstack([I, Z])                                                 # positions observed
    R = r * I
    n = 2 * dim
    m0 = np.zeros(n) if m0 is None else np.asarray(m0, float)
    P0 = 100.0 * np.eye(n) if P0 is None else np.asarray(P0, float)
    return LinearGaussianSSM(m0=m0, P0=P0, F=F, Q=Q, H=H, R=R)
