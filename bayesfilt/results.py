"""Frozen result containers shared by the sequential filters and the parallel scans."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FilterResult:
    """Output of a Kalman filter (any form, any backend).

    Attributes:
        means: filtered means E[x_t | y_{1:t}], shape (..., T, n).
        covs: filtered covariances, shape (..., T, n, n).
        predicted_means: one-step predictions E[x_t | y_{1:t-1}] (for t = 1: the prior m0),
            shape (..., T, n).
        predicted_covs: shape (..., T, n, n).
        loglik: total log-likelihood log p(y_{1:T}) of the observed entries, shape (...).
        loglik_terms: per-step terms log p(y_t | y_{1:t-1}), shape (..., T); 0 where
            y_t is entirely missing.
        info_vectors: filtered information vectors (information form only), (..., T, n).
        precisions: filtered precision matrices (information form only), (..., T, n, n).
        diffuse_steps: number of leading steps of an exact-diffuse period, in which the
            state is not yet identified and means/covs are NaN (0 without diffuse states).

    Example:
        >>> import numpy as np, bayesfilt
        >>> model = bayesfilt.models.constant_velocity(dim=1)
        >>> res = bayesfilt.kalman_filter(model, np.array([[0.0], [1.0], [2.0]]))
        >>> res.means.shape, res.covs.shape, res.loglik_terms.shape
        ((3, 2), (3, 2, 2), (3,))
    """

    means: np.ndarray
    covs: np.ndarray
    predicted_means: np.ndarray
    predicted_covs: np.ndarray
    loglik: np.ndarray
    loglik_terms: np.ndarray
    info_vectors: np.ndarray | None = None
    precisions: np.ndarray | None = None
    diffuse_steps: int = 0


@dataclass(frozen=True)
class SmootherResult:
    """Output of a fixed-interval (RTS) smoother.

    Attributes:
        means: smoothed means E[x_t | y_{1:T}], shape (..., T, n).
        covs: smoothed covariances, shape (..., T, n, n).
        cross_covs: lag-one cross-covariances Cov[x_{t+1}, x_t | y_{1:T}] for
            t = 1..T-1, shape (..., T-1, n, n).
        gains: smoother gains G_t = P_t F_{t+1}^T P_{t+1|t}^{-1}, shape (..., T-1, n, n).
        loglik: the filter's total log-likelihood, shape (...).

    Example:
        >>> import numpy as np, bayesfilt
        >>> model = bayesfilt.models.constant_velocity(dim=1)
        >>> y = np.array([[0.0], [1.0], [2.0]])
        >>> sm = bayesfilt.rts_smoother(model, bayesfilt.kalman_filter(model, y))
        >>> sm.means.shape, sm.cross_covs.shape
        ((3, 2), (2, 2, 2))
    """

    means: np.ndarray
    covs: np.ndarray
    cross_covs: np.ndarray
    gains: np.ndarray | None = None
    loglik: np.ndarray | None = None
