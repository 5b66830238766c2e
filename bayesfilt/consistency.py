"""Filter consistency checks: NEES and NIS against their χ² confidence bounds.

A filter is consistent when its errors match its own covariances (Bar-Shalom, Li &
Kirubarajan 2001, sec. 5.4):

- NEES (normalised estimation error squared), needs the true states:
  ε_t = (x_t - m_t)^T P_t^{-1} (x_t - m_t) ~ χ²(n).
- NIS (normalised innovation squared), needs only the data:
  ν_t = r_t^T S_t^{-1} r_t ~ χ²(m_t), r_t = y_t - H_t m_{t|t-1} - d_t,
  S_t = H_t P_{t|t-1} H_t^T + R_t (observed components only; m_t of them).

Averaged over N independent runs, N ε̄_t ~ χ²(N n): the two-sided ``prob`` interval of
χ²(N n) / N bounds the average. Innovations are independent over time, so the average
NIS over all T steps and N runs has the bound χ²(Σ m_t) / (N T); estimation errors are
correlated over time, so for NEES use the per-step run averages (:func:`nees` with runs
on a leading axis) or a single step. Tutorial: docs/tutorials/consistency.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import chi2

from .errors import value_error
from .linalg import mv
from .model import LinearGaussianSSM
from .results import FilterResult
from .validation import as_float_array


def nees(states, means, covs) -> np.ndarray:
    """Normalised estimation error squared ε_t = (x_t - m_t)^T P_t^{-1} (x_t - m_t).

    Args:
        states: true states (..., T, n). means: estimates (..., T, n). covs: (..., T, n, n).

    Returns:
        (..., T) NEES values (χ²(n) distributed for a consistent filter).

    Example:
        >>> import numpy as np
        >>> float(nees(np.ones((1, 2)), np.zeros((1, 2)), np.eye(2)[None])[0])
        2.0
    """
    x = as_float_array(states, "states")
    m = as_float_array(means, "means")
    P = as_float_array(covs, "covs")
    if x.shape != m.shape or P.shape != m.shape + m.shape[-1:]:
        raise value_error("states", f"has shape {x.shape}, means {m.shape}, covs {P.shape}",
                          "pass states and means of shape (..., T, n) and covs (..., T, n, n)")
    e = x - m
    return np.einsum("...i,...i->...", e, np.linalg.solve(P, e[..., None])[..., 0])


def nis(model: LinearGaussianSSM, y, filter_result: FilterResult) -> tuple[np.ndarray, np.ndarray]:
    """Normalised innovation squared ν_t = r_t^T S_t^{-1} r_t of a filter run.

    Uses the predicted moments m_{t|t-1}, P_{t|t-1} of ``filter_result``; missing
    components of y_t (NaN) are left out, and wholly missing steps give ν_t = 0 with 0
    degrees of freedom.

    Args:
        model: the model the filter ran with. y: observations (..., T, m).
        filter_result: the :class:`~bayesfilt.FilterResult` of ``kalman_filter(model, y)``.

    Returns:
        ``(nis, dof)``: arrays (..., T); ``dof`` counts the observed components.

    Example:
        >>> import numpy as np, bayesfilt
        >>> mdl = bayesfilt.LinearGaussianSSM(m0=np.zeros(1), P0=np.eye(1), F=np.eye(1),
        ...     Q=np.eye(1), H=np.eye(1), R=np.eye(1))
        >>> y = np.array([[2.0], [np.nan]])
        >>> v, k = nis(mdl, y, bayesfilt.kalman_filter(mdl, y))
        >>> v.tolist(), k.tolist()
        ([2.0, 0.0], [1, 0])
    """
    y = as_float_array(y, "y")
    pm, pP = filter_result.predicted_means, filter_result.predicted_covs
    if y.shape[-1] != model.m or y.shape[-2] != pm.shape[-2]:
        raise value_error("y", f"has shape {y.shape}", "pass the observations the filter ran on")
    T = y.shape[-2]
    batch = np.broadcast_shapes(y.shape[:-2], pm.shape[:-2])
    out = np.zeros(batch + (T,))
    dof = np.zeros(batch + (T,), dtype=int)
    for t in range(T):
        H, R, d = model.param("H", t), model.param("R", t), model.param("d", t)
        yt = np.broadcast_to(y[..., t, :], batch + (model.m,))
        obs = ~np.isnan(yt)
        r = np.where(obs, yt - mv(H, pm[..., t, :]) - (0 if d is None else d), 0.0)   # r_t = y_t - H m_{t|t-1} - d
        S = H @ pP[..., t, :, :] @ np.swapaxes(H, -1, -2) + R                         # S_t = H P_{t|t-1} H^T + R
        both = obs[..., :, None] & obs[..., None, :]
        S = np.where(both, S, np.eye(model.m))                                        # missing rows decoupled
        out[..., t] = np.einsum("...i,...i->...", r, np.linalg.solve(S, r[..., None])[..., 0])
        dof[..., t] = obs.sum(-1)
    return out, dof


def chi2_bounds(dof, n_runs: int = 1, prob: float = 0.95) -> tuple[float, float]:
    """Two-sided ``prob`` interval for the average of ``n_runs`` independent χ²(dof) values.

    The sum of the values is χ²(n_runs·dof), so the average lies in
    [χ²_{(1-prob)/2}(N k), χ²_{(1+prob)/2}(N k)] / N with probability ``prob``.

    Args:
        dof: degrees of freedom k of each value (> 0).
        n_runs: number N of independent values averaged (>= 1).
        prob: coverage in (0, 1).

    Returns:
        ``(lower, upper)`` bounds for the average.

    Example:
        >>> lo, hi = chi2_bounds(2, n_runs=50)
        >>> round(lo, 3), round(hi, 3)
        (1.484, 2.591)
    """
    if not 0 < prob < 1:
        raise value_error("prob", f"is {prob!r}", "pass a probability in (0, 1)")
    if not n_runs >= 1:
        raise value_error("n_runs", f"is {n_runs!r}", "pass a positive number of runs")
    if not np.all(np.asarray(dof) > 0):
        raise value_error("dof", f"is {dof!r}", "pass positive degrees of freedom")
    k = n_runs * np.asarray(dof, float)
    a = (1 - prob) / 2
    return float(chi2.ppf(a, k) / n_runs), float(chi2.ppf(1 - a, k) / n_runs)


@dataclass(frozen=True)
class ConsistencyCheck:
    """Outcome of :func:`check_average`.

    Attributes:
        average: the average statistic. lower, upper: its ``prob`` χ² bounds.
        inside: whether lower <= average <= upper. dof_total: total degrees of freedom
            of the sum. count: number of values averaged. prob: the coverage.
    """

    average: float
    lower: float
    upper: float
    inside: bool
    dof_total: float
    count: int
    prob: float


def check_average(values, dof, prob: float = 0.95) -> ConsistencyCheck:
    """Test the average of independent χ² statistics (e.g. NIS over runs and time).

    The sum of independent χ²(k_i) values is χ²(Σ k_i); the average over the values
    with k_i > 0 is compared with the ``prob`` interval of χ²(Σ k_i) / count.

    Args:
        values: statistics, any shape (e.g. NIS of shape (runs, T)).
        dof: their degrees of freedom, broadcastable to ``values`` (0 = skipped).
        prob: coverage of the interval.

    Returns:
        A :class:`ConsistencyCheck`.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> check_average(rng.chisquare(2, size=(20, 50)), 2).inside
        True
    """
    v = as_float_array(values, "values")
    k = np.broadcast_to(np.asarray(dof, float), v.shape)
    use = k > 0
    count = int(use.sum())
    if count == 0:
        raise value_error("dof", "is zero everywhere", "pass statistics with positive degrees of freedom")
    total = float(k[use].sum())
    a = (1 - prob) / 2
    lo, hi = chi2.ppf(a, total) / count, chi2.ppf(1 - a, total) / count
    avg = float(v[use].mean())
    return ConsistencyCheck(average=avg, lower=float(lo), upper=float(hi), inside=bool(lo <= avg <= hi),
                            dof_total=total, count=count, prob=prob)


__all__ = ["ConsistencyCheck", "check_average", "chi2_bounds", "nees", "nis"]
