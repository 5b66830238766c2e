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

from .errors import type_error, value_error
from .linalg import mv, observed_system
from .model import LinearGaussianSSM
from .results import FilterResult
from .validation import as_float_array, as_real_scalar, check_finite


def nees(states, means, covs) -> np.ndarray:
    """Normalised estimation error squared ε_t = (x_t - m_t)^T P_t^{-1} (x_t - m_t).

    Args:
        states: true states (..., T, n).
        means: estimates (..., T, n).
        covs: their covariances (..., T, n, n).

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
    try:
        sol = np.linalg.solve(P, e[..., None])[..., 0]
    except np.linalg.LinAlgError:
        raise value_error("covs", "holds a singular covariance", "pass positive definite covariances") from None
    return np.einsum("...i,...i->...", e, sol)


def nis(model: LinearGaussianSSM, y, filter_result: FilterResult) -> tuple[np.ndarray, np.ndarray]:
    """Normalised innovation squared ν_t = r_t^T S_t^{-1} r_t of a filter run.

    Uses the predicted moments m_{t|t-1}, P_{t|t-1} of ``filter_result``; missing
    components of y_t (NaN) are left out, and wholly missing steps give ν_t = 0 with 0
    degrees of freedom, as do steps whose prediction is not defined (the NaN moments of an
    exact-diffuse period: the observation there identifies the state, it tests nothing).

    Args:
        model: the model the filter ran with.
        y: observations (..., T, m).
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
    if not isinstance(model, LinearGaussianSSM):
        raise type_error("model", f"is a {type(model).__name__}", "pass a bayesfilt.LinearGaussianSSM")
    if not isinstance(filter_result, FilterResult):
        raise type_error("filter_result", f"is a {type(filter_result).__name__}",
                         "pass the FilterResult of a filter run (e.g. bayesfilt.kalman_filter(model, y))")
    y = as_float_array(y, "y")
    if y.ndim < 2:
        raise value_error("y", f"has shape {y.shape}", "pass the observations the filter ran on, shape (..., T, m)")
    pm, pP = filter_result.predicted_means, filter_result.predicted_covs
    if y.shape[-1] != model.m or y.shape[-2] != pm.shape[-2]:
        raise value_error("y", f"has shape {y.shape}", "pass the observations the filter ran on")
    T = y.shape[-2]
    batch = np.broadcast_shapes(y.shape[:-2], pm.shape[:-2])
    out = np.zeros(batch + (T,))
    dof = np.zeros(batch + (T,), dtype=int)
    for t in range(T):
        yt = np.broadcast_to(y[..., t, :], batch + (model.m,))
        y0, H, R, d, _, n_obs = observed_system(yt, model.param("H", t), model.param("R", t), model.param("d", t))
        r = y0 - mv(H, pm[..., t, :]) - (0 if d is None else d)                      # r_t = y_t - H m_{t|t-1} - d (0 where missing)
        S = H @ pP[..., t, :, :] @ np.swapaxes(H, -1, -2) + R                         # S_t = H P_{t|t-1} H^T + R (missing: decoupled I)
        try:
            sol = np.linalg.solve(S, r[..., None])[..., 0]
        except np.linalg.LinAlgError:
            raise value_error("filter_result", f"gives a singular innovation covariance at step {t}",
                              "pass the result of a filter run with this model (R positive definite)") from None
        val = np.einsum("...i,...i->...", r, sol)
        defined = np.isfinite(pm[..., t, :]).all(-1) & np.isfinite(pP[..., t, :, :]).all((-2, -1))
        out[..., t] = np.where(defined, val, 0.0)
        dof[..., t] = np.where(defined, n_obs, 0)
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
    prob = as_real_scalar(prob, "prob", low=0.0, low_open=True, high=1.0, high_open=True,
                          fix="pass a probability in (0, 1)")
    n_runs = as_real_scalar(n_runs, "n_runs", low=1.0, fix="pass a positive number of runs")
    dof = as_real_scalar(dof, "dof", low=0.0, low_open=True, fix="pass positive degrees of freedom")
    k = n_runs * dof
    if not np.isfinite(k):
        raise value_error("dof", f"times n_runs is {k!r}", "pass degrees of freedom and runs whose product is finite")
    a = (1 - prob) / 2
    lo, hi = float(chi2.ppf(a, k) / n_runs), float(chi2.ppf(1 - a, k) / n_runs)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise value_error("dof", f"is {dof!r}, outside the range where chi-square quantiles are computable",
                          "pass degrees of freedom between about 1e-300 and 1e300")
    return lo, hi


@dataclass(frozen=True)
class ConsistencyCheck:
    """Outcome of :func:`check_average`.

    Attributes:
        average: the average statistic.
        lower, upper: its ``prob`` χ² bounds.
        inside: whether lower <= average <= upper.
        dof_total: total degrees of freedom of the sum.
        count: number of values averaged.
        prob: the coverage.

    Example:
        >>> check_average([1.0, 3.0], 2).average
        2.0
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
    prob = as_real_scalar(prob, "prob", low=0.0, low_open=True, high=1.0, high_open=True,
                          fix="pass a probability in (0, 1)")
    v = as_float_array(values, "values")
    dof_arr = as_float_array(dof, "dof")
    try:
        k = np.broadcast_to(dof_arr, v.shape)
    except ValueError:
        raise value_error("dof", f"has shape {dof_arr.shape}, values {v.shape}",
                          "pass degrees of freedom broadcastable to the values") from None
    check_finite(k, "dof")
    if (k < 0).any():
        raise value_error("dof", "holds a negative entry", "pass degrees of freedom >= 0")
    use = k > 0
    count = int(use.sum())
    if count == 0:
        raise value_error("dof", "is zero everywhere", "pass statistics with positive degrees of freedom")
    bad = use & ~(np.isfinite(v) & (v >= 0))
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise value_error("values", f"holds {v[idx]!r} at index {idx}", "pass finite, non-negative chi-square statistics")
    total = float(k[use].sum())
    if not np.isfinite(total):
        raise value_error("dof", f"sums to {total!r} over {count} values", "pass degrees of freedom whose total is finite")
    a = (1 - prob) / 2
    lo, hi = chi2.ppf(a, total) / count, chi2.ppf(1 - a, total) / count
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise value_error("dof", f"totals {total!r}, outside the range where chi-square quantiles are computable",
                          "pass degrees of freedom between about 1e-300 and 1e300")
    avg = float((v[use] / count).sum())                      # mean without overflowing the sum
    return ConsistencyCheck(average=avg, lower=float(lo), upper=float(hi), inside=bool(lo <= avg <= hi),
                            dof_total=total, count=count, prob=prob)


__all__ = ["ConsistencyCheck", "check_average", "chi2_bounds", "nees", "nis"]
