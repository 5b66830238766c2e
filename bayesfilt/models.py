"""Ready-made models built on :class:`~bayesfilt.LinearGaussianSSM`."""

from __future__ import annotations

import numpy as np

from .errors import value_error
from .model import LinearGaussianSSM
from .validation import as_float_array, as_int, as_real_scalar


def constant_velocity(dt: float = 1.0, q: float = 1.0, r: float = 1.0, dim: int = 2,
                      m0=None, P0=None) -> LinearGaussianSSM:
    """Constant-velocity model in ``dim`` dimensions (state: positions then velocities).

    Continuous white-noise acceleration of spectral density ``q`` (units²/s³), exact
    discretisation over a fixed step ``dt``; positions observed with noise variance ``r``.

    Args:
        dt: time step (> 0).
        q: process-noise spectral density (>= 0).
        r: observation-noise variance (> 0).
        dim: number of spatial dimensions.
        m0, P0: prior of the first state; default zero mean and covariance 100 I.

    Returns:
        A time-invariant :class:`~bayesfilt.LinearGaussianSSM` with n = 2 dim, m = dim.

    Example:
        >>> constant_velocity(dt=0.5, dim=1).F.tolist()
        [[1.0, 0.5], [0.0, 1.0]]
    """
    dt = np.float64(as_real_scalar(dt, "dt", low=0.0, low_open=True, fix="pass a positive time step"))
    q = as_real_scalar(q, "q", low=0.0, fix="pass a non-negative spectral density")
    r = as_real_scalar(r, "r", low=0.0, low_open=True, fix="pass a positive observation variance")
    dim = as_int(dim, "dim", low=1, fix="pass the number of spatial dimensions (>= 1)")
    I = np.eye(dim)
    Z = np.zeros((dim, dim))
    F = np.block([[I, dt * I], [Z, I]])                                   # x_t = x + dt v, v_t = v
    Q = q * np.block([[dt**3 / 3 * I, dt**2 / 2 * I], [dt**2 / 2 * I, dt * I]])  # ∫ e^{As} G q G^T e^{A^T s} ds
    H = np.hstack([I, Z])                                                 # positions observed
    R = r * I
    if not (np.isfinite(F).all() and np.isfinite(Q).all()):
        raise value_error("dt", f"is {float(dt)!r}, which overflows F or Q (q dt^3 / 3 = {q * dt**3 / 3:.3g})",
                          "rescale the time unit so that q dt^3 stays within the float64 range")
    n = 2 * dim
    m0 = np.zeros(n) if m0 is None else np.asarray(m0, float)
    P0 = 100.0 * np.eye(n) if P0 is None else np.asarray(P0, float)
    return _checked_model(m0=m0, P0=P0, F=F, Q=Q, H=H, R=R)


# ----------------------------------------------------------------------------- irregular sampling
def time_steps(times) -> np.ndarray:
    """Steps Δt_t = times[t] - times[t-1] of a non-decreasing time grid, with Δt_1 = 0.

    Args:
        times: (T,) finite, non-decreasing times (e.g. seconds).

    Returns:
        (T,) array; entry 0 is 0 (the first entry of a time-varying F or Q is unused).

    Raises:
        BayesfiltValueError: for non-finite or decreasing times.

    Example:
        >>> time_steps([0.0, 1.5, 4.0]).tolist()
        [0.0, 1.5, 2.5]
    """
    t = as_float_array(times, "times").astype(np.float64)
    if t.ndim != 1 or t.size < 1:
        raise value_error("times", f"has shape {t.shape}", "pass a 1-D array of T >= 1 times")
    if not np.isfinite(t).all():
        i = int(np.flatnonzero(~np.isfinite(t))[0])
        raise value_error("times", f"holds a non-finite value at index {i}", "pass finite times")
    dt = np.diff(t, prepend=t[0])
    if (dt < 0).any():
        i = int(np.flatnonzero(dt < 0)[0])
        raise value_error("times", f"decrease at index {i} ({t[i - 1]!r} -> {t[i]!r})",
                          "sort the observations by time (times must be non-decreasing)")
    return dt


def _check_pos(name, val, strict):
    as_real_scalar(val, name, low=0.0, low_open=strict,
                   fix="pass a positive value" if strict else "pass a non-negative value")


def _checked_model(**kw) -> LinearGaussianSSM:
    """The model, unless the discretisation overflowed (huge time steps or noise levels)."""
    for nm in ("F", "Q"):
        with np.errstate(invalid="ignore"):
            ok = np.isfinite(np.asarray(kw[nm], dtype=float)).all()
        if not ok:
            arg = "times" if kw.get("time_varying") else "dt"
            raise value_error(arg, f"gives a non-finite {nm} (the discretisation overflowed the float64 range)",
                              "rescale the time unit or the noise levels so that q dt^k stays finite")
    return LinearGaussianSSM(**kw)


def _check_dim(dim):
    return as_int(dim, "dim", low=1, fix="pass the number of spatial dimensions (>= 1)")


def _noise_matrix(r, dim, name="r"):
    r = as_float_array(r, name).astype(np.float64)
    if r.ndim == 0:
        _check_pos(name, float(r), True)
        return float(r) * np.eye(dim)
    if r.shape != (dim, dim):
        raise value_error(name, f"has shape {r.shape}", f"pass a scalar variance or a ({dim}, {dim}) covariance")
    return r


def _prior(m0, P0, n, diffuse, default_var):
    m0 = np.zeros(n) if m0 is None else np.asarray(m0, float)
    if P0 is None:
        mask = np.asarray(diffuse)
        keep = ~mask.astype(bool) if mask.shape in ((), (n,)) else np.ones(n, bool)  # a bad mask: the model says why
        P0 = default_var * np.diag(np.broadcast_to(keep, (n,)).astype(float))       # diffuse states: rows, columns 0
    return m0, np.asarray(P0, float)


def _kron_blocks(blocks, dim):
    """Block matrix whose (i, j) block is blocks[..., i, j] * I_dim (state ordered by derivative)."""
    blocks = np.asarray(blocks)
    k = blocks.shape[-1]
    out = blocks[..., :, None, :, None] * np.eye(dim)[:, None, :]            # (..., k, dim, k, dim)
    return out.reshape(blocks.shape[:-2] + (k * dim, k * dim))


def constant_velocity_irregular(times, q: float, r, *, dim: int = 2, m0=None, P0=None,
                                diffuse=False) -> LinearGaussianSSM:
    """Constant-velocity model on an irregular time grid (state: positions, then velocities).

    Continuous white-noise acceleration of spectral density ``q`` (units²/s³ for metres
    and seconds), discretised exactly over each step Δt_t (Bar-Shalom, Li & Kirubarajan
    2001, sec. 6.2.2; docs/math/notation.md)::

        F_t = [[I, Δt I], [0, I]]
        Q_t = q [[Δt³/3 I, Δt²/2 I], [Δt²/2 I, Δt I]]
        y_t = [I 0] x_t + v_t,  v_t ~ N(0, R)

    F and Q are time-varying (leading T axis, first entry unused).

    Args:
        times: (T,) non-decreasing observation times.
        q: spectral density of the acceleration noise (>= 0).
        r: observation-noise variance (scalar > 0) or (dim, dim) covariance.
        dim: number of spatial dimensions.
        m0, P0: prior of the first state; default zero mean and covariance 1e6 I (or
            P0 = 0 when ``diffuse`` is True).
        diffuse: passed to :class:`~bayesfilt.LinearGaussianSSM` (exact diffuse states).

    Returns:
        A :class:`~bayesfilt.LinearGaussianSSM` with time_varying=("F", "Q"), n = 2 dim, m = dim.

    Example:
        >>> model = constant_velocity_irregular([0.0, 1.0, 3.0], q=0.1, r=4.0)
        >>> model.F.shape, float(model.F[2, 0, 2])
        ((3, 4, 4), 2.0)
    """
    dt = time_steps(times)
    _check_pos("q", q, False)
    dim = _check_dim(dim)
    one, zero = np.ones_like(dt), np.zeros_like(dt)
    Fb = np.stack([np.stack([one, dt], -1), np.stack([zero, one], -1)], -2)          # [[1, Δt], [0, 1]]
    Qb = q * np.stack([np.stack([dt**3 / 3, dt**2 / 2], -1),
                       np.stack([dt**2 / 2, dt], -1)], -2)                             # q [[Δt³/3, Δt²/2], [Δt²/2, Δt]]
    n = 2 * dim
    H = np.hstack([np.eye(dim), np.zeros((dim, dim))])                                 # positions observed
    m0, P0 = _prior(m0, P0, n, diffuse, 1e6)
    return _checked_model(m0=m0, P0=P0, F=_kron_blocks(Fb, dim), Q=_kron_blocks(Qb, dim), H=H,
                             R=_noise_matrix(r, dim), time_varying=("F", "Q"), diffuse=diffuse)


def constant_acceleration_irregular(times, q: float, r, *, dim: int = 2, m0=None, P0=None,
                                    diffuse=False) -> LinearGaussianSSM:
    """Constant-acceleration model on an irregular time grid (positions, velocities, accelerations).

    Continuous white-noise jerk of spectral density ``q`` (units²/s⁵), discretised exactly
    over each step Δt (Bar-Shalom, Li & Kirubarajan 2001, sec. 6.2.3)::

        F_t = [[1, Δt, Δt²/2], [0, 1, Δt], [0, 0, 1]] ⊗ I
        Q_t = q [[Δt⁵/20, Δt⁴/8, Δt³/6], [Δt⁴/8, Δt³/3, Δt²/2], [Δt³/6, Δt²/2, Δt]] ⊗ I

    Args:
        times: (T,) non-decreasing observation times.
        q: jerk spectral density (>= 0).
        r: observation-noise variance (scalar > 0) or (dim, dim) covariance.
        dim: spatial dimensions.
        m0, P0: prior of the first state, as in :func:`constant_velocity_irregular` (n = 3 dim).
        diffuse: exact diffuse states, as in :func:`constant_velocity_irregular`.

    Returns:
        A :class:`~bayesfilt.LinearGaussianSSM` with time_varying=("F", "Q").

    Example:
        >>> model = constant_acceleration_irregular([0.0, 2.0], q=1.0, r=1.0, dim=1)
        >>> model.F[1].tolist()
        [[1.0, 2.0, 2.0], [0.0, 1.0, 2.0], [0.0, 0.0, 1.0]]
    """
    dt = time_steps(times)
    _check_pos("q", q, False)
    dim = _check_dim(dim)
    one, zero = np.ones_like(dt), np.zeros_like(dt)
    Fb = np.stack([np.stack([one, dt, dt**2 / 2], -1),
                   np.stack([zero, one, dt], -1),
                   np.stack([zero, zero, one], -1)], -2)
    Qb = q * np.stack([np.stack([dt**5 / 20, dt**4 / 8, dt**3 / 6], -1),
                       np.stack([dt**4 / 8, dt**3 / 3, dt**2 / 2], -1),
                       np.stack([dt**3 / 6, dt**2 / 2, dt], -1)], -2)                  # ∫ e^{As} G q G^T e^{A^T s} ds
    n = 3 * dim
    H = np.hstack([np.eye(dim), np.zeros((dim, 2 * dim))])
    m0, P0 = _prior(m0, P0, n, diffuse, 1e6)
    return _checked_model(m0=m0, P0=P0, F=_kron_blocks(Fb, dim), Q=_kron_blocks(Qb, dim), H=H,
                             R=_noise_matrix(r, dim), time_varying=("F", "Q"), diffuse=diffuse)


def constant_acceleration(dt: float = 1.0, q: float = 1.0, r: float = 1.0, dim: int = 2,
                          m0=None, P0=None, diffuse=False) -> LinearGaussianSSM:
    """Constant-acceleration model with a fixed step ``dt`` (time-invariant F and Q).

    Same equations as :func:`constant_acceleration_irregular` with every Δt = ``dt``.

    Args:
        dt: time step (> 0).
        q: jerk spectral density (>= 0).
        r: observation-noise variance or (dim, dim) covariance.
        dim: spatial dimensions.
        m0, P0: prior of the first state (default zero mean, covariance 1e6 I).
        diffuse: exact diffuse states.

    Returns:
        A time-invariant :class:`~bayesfilt.LinearGaussianSSM` with n = 3 dim.

    Example:
        >>> constant_acceleration(dt=0.5, dim=1).F[0].tolist()
        [1.0, 0.5, 0.125]
    """
    dt = as_real_scalar(dt, "dt", low=0.0, low_open=True, fix="pass a positive time step")
    tv = constant_acceleration_irregular([0.0, dt], q, r, dim=dim, m0=m0, P0=P0, diffuse=diffuse)
    return tv.replace(F=tv.F[1], Q=tv.Q[1], time_varying=())


def random_walk(q: float, r, *, times=None, dim: int = 1, m0=None, P0=None, diffuse=True) -> LinearGaussianSSM:
    """Random walk observed in noise (the local-level model in ``dim`` dimensions).

    x_t = x_{t-1} + w_t, w_t ~ N(0, q Δt I) (Δt = 1 without ``times``; Brownian motion
    otherwise); y_t = x_t + v_t, v_t ~ N(0, R).

    Args:
        q: random-walk variance per unit time (>= 0).
        r: observation variance or (dim, dim) covariance.
        times: optional (T,) non-decreasing times; then Q is time-varying, Q_t = q Δt_t I.
        dim: state dimension.
        m0, P0: prior (used where not diffuse).
        diffuse: exact diffuse prior on the initial level (default True).

    Returns:
        A :class:`~bayesfilt.LinearGaussianSSM` (time-varying F, Q when ``times`` is given).

    Example:
        >>> random_walk(0.5, 2.0, times=[0.0, 1.0, 3.0]).Q[:, 0, 0].tolist()
        [0.0, 0.5, 1.0]
    """
    _check_pos("q", q, False)
    dim = _check_dim(dim)
    I = np.eye(dim)
    m0, P0 = _prior(m0, P0, dim, diffuse, 1e6)
    R = _noise_matrix(r, dim)
    if times is None:
        return _checked_model(m0=m0, P0=P0, F=I, Q=q * I, H=I, R=R, diffuse=diffuse)  # x_t = x_{t-1} + w_t
    dt = time_steps(times)
    T = dt.size
    return _checked_model(m0=m0, P0=P0, F=np.broadcast_to(I, (T, dim, dim)).copy(),
                             Q=q * dt[:, None, None] * I, H=I, R=R,                  # Q_t = q Δt_t I
                             time_varying=("F", "Q"), diffuse=diffuse)


def local_level(obs_var: float, level_var: float, *, times=None, m0=None, P0=None,
                diffuse=True) -> LinearGaussianSSM:
    """The local-level model of Durbin & Koopman (2012, ch. 2) for a scalar series.

    y_t = μ_t + ε_t, ε_t ~ N(0, σ²ε);  μ_{t+1} = μ_t + η_t, η_t ~ N(0, σ²η); μ_1 diffuse
    by default. With ``times`` the level is Brownian motion (variance σ²η per unit time).

    Args:
        obs_var: σ²ε > 0.
        level_var: σ²η >= 0.
        times: optional (T,) irregular times.
        m0, P0: prior of μ_1 (used only with ``diffuse=False``).
        diffuse: exact diffuse μ_1 (default True).

    Returns:
        A :class:`~bayesfilt.LinearGaussianSSM` with n = m = 1.

    Example:
        >>> model = local_level(15099.0, 1469.1)
        >>> float(model.R[0, 0]), float(model.Q[0, 0]), bool(model.has_diffuse)
        (15099.0, 1469.1, True)
    """
    return random_walk(level_var, obs_var, times=times, dim=1, m0=m0, P0=P0, diffuse=diffuse)


def local_linear_trend(obs_var: float, level_var: float, slope_var: float, *, times=None, m0=None,
                       P0=None, diffuse=True) -> LinearGaussianSSM:
    """Local linear trend (state: level μ, slope ν) for a scalar series.

    Unit steps (Durbin & Koopman 2012, sec. 3.2.1)::

        y_t = μ_t + ε_t;  μ_{t+1} = μ_t + ν_t + ξ_t;  ν_{t+1} = ν_t + ζ_t
        F = [[1, 1], [0, 1]],  Q = diag(σ²ξ, σ²ζ)

    With ``times`` (irregular steps) the continuous-time version is discretised exactly:
    level noise density σ²ξ and slope noise density σ²ζ give
    F_t = [[1, Δt], [0, 1]], Q_t = [[σ²ξ Δt + σ²ζ Δt³/3, σ²ζ Δt²/2], [σ²ζ Δt²/2, σ²ζ Δt]].

    Args:
        obs_var: σ²ε > 0.
        level_var: σ²ξ >= 0.
        slope_var: σ²ζ >= 0.
        times: optional (T,) irregular times.
        m0, P0: prior of (μ_1, ν_1), used where not diffuse.
        diffuse: exact diffuse states (default True).

    Returns:
        A :class:`~bayesfilt.LinearGaussianSSM` with n = 2, m = 1.

    Example:
        >>> local_linear_trend(1.0, 0.1, 0.01).F.tolist()
        [[1.0, 1.0], [0.0, 1.0]]
    """
    _check_pos("level_var", level_var, False)
    _check_pos("slope_var", slope_var, False)
    m0, P0 = _prior(m0, P0, 2, diffuse, 1e6)
    H = np.array([[1.0, 0.0]])
    R = _noise_matrix(obs_var, 1, "obs_var")
    if times is None:
        return _checked_model(m0=m0, P0=P0, F=np.array([[1.0, 1.0], [0.0, 1.0]]),
                                 Q=np.diag([float(level_var), float(slope_var)]), H=H, R=R, diffuse=diffuse)
    dt = time_steps(times)
    one, zero = np.ones_like(dt), np.zeros_like(dt)
    F = np.stack([np.stack([one, dt], -1), np.stack([zero, one], -1)], -2)           # [[1, Δt], [0, 1]]
    Q = np.stack([np.stack([level_var * dt + slope_var * dt**3 / 3, slope_var * dt**2 / 2], -1),
                  np.stack([slope_var * dt**2 / 2, slope_var * dt], -1)], -2)
    return _checked_model(m0=m0, P0=P0, F=F, Q=Q, H=H, R=R, time_varying=("F", "Q"), diffuse=diffuse)
