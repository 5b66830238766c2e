"""Rauch–Tung–Striebel fixed-interval smoother (covariance form).

Indexing follows the model (docs/math/notation.md): entry t of F maps x_{t-1} to x_t,
so the backward step from t+1 to t uses F_{t+1}, the same entry the filter's prediction
into t+1 used. Derivation: docs/math/rts_smoother.md.
"""

from __future__ import annotations

import numpy as np

from ..errors import type_error, value_error
from ..linalg import mT, mv, solve_psd, sym
from ..model import LinearGaussianSSM
from ..results import FilterResult, SmootherResult


def rts_smoother(model: LinearGaussianSSM, filter_result: FilterResult) -> SmootherResult:
    """Smooth a covariance- or information-form filter result backwards in time.

    A result of a model with exactly diffuse states (:class:`~bayesfilt.filters.diffuse.DiffuseFilterResult`)
    is smoothed exactly through its diffuse period (docs/math/diffuse.md): every state the
    whole data identifies gets finite smoothed moments, equal to the limit of the ordinary
    smoother under a N(0, κ I) prior as κ → ∞; states never identified stay NaN, and the
    gains of the diffuse period are NaN.

    Args:
        model: the model the filter ran with.
        filter_result: output of :func:`~bayesfilt.kalman_filter` (or any form/backend
            returning a :class:`~bayesfilt.FilterResult` with predicted moments).

    Returns:
        A :class:`~bayesfilt.SmootherResult` with means (..., T, n), covs (..., T, n, n),
        lag-one cross-covariances Cov[x_{t+1}, x_t | y_{1:T}] (..., T-1, n, n) and gains.

    Example:
        >>> res = bayesfilt.kalman_filter(model, y)              # doctest: +SKIP
        >>> sm = bayesfilt.rts_smoother(model, res)              # doctest: +SKIP
    """
    if not isinstance(model, LinearGaussianSSM):
        raise type_error("model", f"is a {type(model).__name__}", "pass a bayesfilt.LinearGaussianSSM")
    if not isinstance(filter_result, FilterResult):
        raise type_error("filter_result", f"is a {type(filter_result).__name__}",
                         "pass the FilterResult returned by kalman_filter / information_filter")
    fm, fP = filter_result.means, filter_result.covs
    if hasattr(fm, "detach"):                                    # torch tensors (duck-typed: filters/ never imports torch)
        raise type_error("filter_result", f"holds torch tensors ({getattr(fm, 'dtype', '?')}), e.g. from "
                         "parallel_filter on torch input", "call bayesfilt.parallel_smoother(model, y) on the tensors, "
                         "or convert y with .cpu().numpy() and smooth the NumPy kalman_filter result")
    pm, pP = filter_result.predicted_means, filter_result.predicted_covs
    if fm.shape[-1] != model.n:
        raise value_error("filter_result", f"has state size {fm.shape[-1]}", f"pass a result of this model (n={model.n})")
    T = fm.shape[-2]
    if model.num_timesteps is not None and model.num_timesteps != T:
        raise value_error("filter_result", f"has {T} steps but the model's time-varying parameters have "
                          f"{model.num_timesteps}", "smooth with the model the filter ran with")
    aug_steps = getattr(filter_result, "augmented_steps", 0)     # a DiffuseFilterResult (exact diffuse filter)
    if filter_result.diffuse_steps and not aug_steps:
        raise value_error("filter_result", f"has a diffuse period of {filter_result.diffuse_steps} steps but not "
                          "the augmented quantities exact diffuse smoothing needs",
                          "smooth the result of bayesfilt.kalman_filter for models with diffuse states")
    stop = max(aug_steps - 1, 0)                                 # ordinary backward steps t >= stop
    means = np.empty_like(fm)
    covs = np.empty_like(fP)
    gains = np.empty(fP.shape[:-3] + (max(T - 1, 0),) + fP.shape[-2:], fP.dtype)
    cross = np.empty_like(gains)
    ms, Ps = fm[..., T - 1, :], fP[..., T - 1, :, :]             # m^s_T = m_T, P^s_T = P_T
    means[..., T - 1, :] = ms
    covs[..., T - 1, :, :] = Ps
    for t in range(T - 2, stop - 1, -1):
        F = model.param("F", t + 1)
        P_t = fP[..., t, :, :]
        P_pred = pP[..., t + 1, :, :]                            # P_{t+1|t}
        G = mT(solve_psd(P_pred, F @ P_t))                      # G_t = P_t F_{t+1}^T P_{t+1|t}^{-1}
        cross[..., t, :, :] = Ps @ mT(G)                         # Cov[x_{t+1}, x_t | y_{1:T}] = P^s_{t+1} G_t^T
        ms = fm[..., t, :] + mv(G, ms - pm[..., t + 1, :])       # m^s_t = m_t + G_t (m^s_{t+1} - m_{t+1|t})
        Ps = sym(P_t + G @ (Ps - P_pred) @ mT(G))                # P^s_t = P_t + G_t (P^s_{t+1} - P_{t+1|t}) G_t^T
        means[..., t, :] = ms
        covs[..., t, :, :] = Ps
        gains[..., t, :, :] = G
    if aug_steps:                                                # exact diffuse smoothing of t < stop
        from .diffuse import diffuse_smoother_backward
        diffuse_smoother_backward(model, filter_result, ms, Ps, means, covs, cross, gains, solve_psd)
    return SmootherResult(means=means, covs=covs, cross_covs=cross, gains=gains, loglik=filter_result.loglik)
