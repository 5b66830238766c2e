"""The covariance-form Kalman filter: the specification every other form must reproduce.

Model and notation: docs/math/notation.md; derivation: docs/math/covariance_filter.md.
One textbook equation per line; shapes carry leading batch axes (...).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import type_error, value_error
from ..gaussian import Gaussian
from ..linalg import mT, mv, observed_system, sym
from ..model import LinearGaussianSSM
from ..results import FilterResult
from ..validation import as_float_array, check_finite
from .common import prepare

LOG_2PI = float(np.log(2.0 * np.pi))


def predict_step(mean: np.ndarray, cov: np.ndarray, F: np.ndarray, Q: np.ndarray,
                 b: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Kalman prediction; mean (..., n), cov (..., n, n). No validation (a kernel)."""
    mean = mv(F, mean)                                         # m_{t|t-1} = F_t m_{t-1}
    if b is not None:
        mean = mean + b                                        #           + b_t
    cov = sym(F @ cov @ mT(F) + Q)                             # P_{t|t-1} = F_t P_{t-1} F_t^T + Q_t
    return mean, cov


def update_step(mean: np.ndarray, cov: np.ndarray, y_t: np.ndarray, H: np.ndarray, R: np.ndarray,
                d: np.ndarray | None, t: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Kalman update with the observed components of ``y_t`` (NaN = missing).

    Returns ``(mean, cov, loglik_term)``; Joseph-form covariance. No validation.
    """
    n = mean.shape[-1]
    if np.isnan(y_t).any():
        y0, H, R, d, obs, n_obs = observed_system(y_t, H, R, d)
    else:                                                      # fully observed: no masking needed
        y0, n_obs = y_t, y_t.shape[-1]
    y_hat = mv(H, mean) if d is None else mv(H, mean) + d     # yhat_t = H_t m_{t|t-1} + d_t
    r = y0 - y_hat                                             # r_t = y_t - yhat_t (0 where missing)
    PHt = cov @ mT(H)                                          # P H^T
    S = sym(H @ PHt + R)                                       # S_t = H_t P_{t|t-1} H_t^T + R_t
    try:
        L = np.linalg.cholesky(S)                              # S_t = L L^T
    except np.linalg.LinAlgError:
        raise innovation_error(S, t) from None
    S_inv = np.linalg.inv(S)                                   # S_t^{-1} (serves K_t and the log-likelihood)
    K = PHt @ S_inv                                            # K_t = P H^T S_t^{-1}
    mean = mean + mv(K, r)                                     # m_t = m_{t|t-1} + K_t r_t
    I_KH = np.eye(n, dtype=cov.dtype) - K @ H                  # (I - K_t H_t)
    cov = sym(I_KH @ cov @ mT(I_KH) + K @ R @ mT(K))           # P_t = (I-KH) P (I-KH)^T + K R K^T (Joseph)
    maha = (r * mv(S_inv, r)).sum(-1)                          # r_t^T S_t^{-1} r_t
    logdet = 2.0 * np.log(np.diagonal(L, axis1=-2, axis2=-1)).sum(-1)  # log|S_t|
    loglik = -0.5 * (n_obs * LOG_2PI + logdet + maha)                  # log N(r_t; 0, S_t), observed rows only
    return mean, cov, loglik


def innovation_error(S: np.ndarray, t: int):
    """The error for a failed Cholesky factorisation of the innovation covariance at step ``t``."""
    if not np.isfinite(S).all():
        return value_error("model", f"the innovation covariance overflowed the {S.dtype} range at step {t}",
                           "rescale the data and covariances (e.g. change units) or use float64")
    return value_error("R", f"gives an innovation covariance that is not positive definite at step {t}",
                       "make R positive definite for every observed component (or rescale extreme magnitudes)")


def check_finite_result(result: FilterResult, name: str = "kalman_filter") -> FilterResult:
    """Raise instead of returning non-finite moments or log-likelihoods (overflow/underflow).

    Steps inside an exact-diffuse period are reported as NaN on purpose and are skipped
    (their ``loglik_terms`` stay finite); so is the prediction made from the last of them (the
    prior of a diffuse state at step 1 is NaN too).
    """
    for field in ("means", "covs", "predicted_means", "predicted_covs", "loglik_terms"):
        arr = getattr(result, field)
        ok = np.isfinite(arr)
        if field != "loglik_terms":
            vec = field.endswith("means")
            d = result.diffuse_steps + (1 if field.startswith("predicted") else 0)    # the prior m0, P0 is validated
            ok |= np.isnan(arr) & (d > np.arange(arr.shape[-2 if vec else -3]).reshape((-1,) + (1,) * (1 if vec else 2)))
        if not ok.all():
            idx = tuple(int(i) for i in np.argwhere(~ok)[0])
            raise value_error("model", f"{name} produced a non-finite {field} at index {idx} (the values left the "
                              f"{arr.dtype} range)", "rescale the data and covariances (e.g. change units) or use float64")
    return result


def predict(gaussian: Gaussian, model: LinearGaussianSSM, t: int) -> Gaussian:
    """Predict x_t from a belief about x_{t-1} with the model's F_t, b_t, Q_t.

    Args:
        gaussian: belief about x_{t-1} (mean (..., n), cov (..., n, n)).
        model: the state-space model.
        t: 0-based time index of the *predicted* state (1 <= t; for a time-varying model
            entry t of F, b, Q is used).

    Returns:
        The predicted ``Gaussian`` for x_t.

    Raises:
        BayesfiltValueError: the model declares exactly diffuse states (no Gaussian belief holds
            them; run :func:`kalman_filter` over the first steps, then continue with
            ``model.replace(diffuse=False)``).

    Example:
        >>> g = bayesfilt.Gaussian(model.m0, model.P0)          # doctest: +SKIP
        >>> g = bayesfilt.predict(bayesfilt.update(g, y[0], model, 0), model, 1)  # doctest: +SKIP
    """
    _check_step(model, t, "t")
    _check_gaussian(gaussian)
    mean = as_float_array(gaussian.mean, "gaussian.mean")
    cov = as_float_array(gaussian.cov, "gaussian.cov")
    _check_belief(mean, cov, model.n)
    m, P = predict_step(mean, cov, model.param("F", t), model.param("Q", t), model.param("b", t))
    if not (np.isfinite(m).all() and np.isfinite(P).all()):
        raise value_error("model", f"gives a non-finite prediction at step {t} (the values left the "
                          f"{np.result_type(m, P)} range)", "rescale the data and covariances (e.g. change units)")
    return Gaussian(mean=m, cov=P)


def update(gaussian: Gaussian, y_t, model: LinearGaussianSSM, t: int) -> Gaussian:
    """Condition a belief about x_t on the observation y_t (NaN components are skipped).

    Args:
        gaussian: predicted belief about x_t.
        y_t: observation of shape (..., m); NaN marks missing components.
        model: the state-space model (H_t, d_t, R_t are used).
        t: 0-based time index (selects entry t of time-varying H, d, R).

    Returns:
        The posterior ``Gaussian``. Use :func:`update_with_loglik` for log p(y_t | past) too.

    Example:
        >>> import numpy as np, bayesfilt
        >>> model = bayesfilt.models.constant_velocity(dim=1, r=1.0, P0=np.eye(2))
        >>> g = bayesfilt.update(bayesfilt.Gaussian(model.m0, model.P0), np.array([1.0]), model, 0)
        >>> g.mean
        array([0.5, 0. ])
    """
    return update_with_loglik(gaussian, y_t, model, t)[0]


def update_with_loglik(gaussian: Gaussian, y_t, model: LinearGaussianSSM, t: int) -> tuple[Gaussian, np.ndarray]:
    """As :func:`update`, also returning the log-likelihood term log p(y_t | y_{1:t-1}).

    Args:
        gaussian: predicted belief about x_t.
        y_t: observation (..., m); NaN marks missing components.
        model: the state-space model.
        t: 0-based time index.

    Returns:
        ``(posterior Gaussian, loglik term of shape (...))``; the term is 0 when y_t is
        entirely missing.

    Example:
        >>> import numpy as np, bayesfilt
        >>> model = bayesfilt.models.constant_velocity(dim=1, r=1.0, P0=np.eye(2))
        >>> g, ll = bayesfilt.update_with_loglik(bayesfilt.Gaussian(model.m0, model.P0), np.array([0.0]), model, 0)
        >>> round(float(ll), 4)   # log N(0; 0, 2)
        -1.2655
    """
    _check_step(model, t, "t", allow_zero=True)
    _check_gaussian(gaussian)
    mean = as_float_array(gaussian.mean, "gaussian.mean")
    cov = as_float_array(gaussian.cov, "gaussian.cov")
    _check_belief(mean, cov, model.n)
    y_t = as_float_array(y_t, "y_t")
    if y_t.ndim < 1 or y_t.shape[-1] != model.m:
        raise value_error("y_t", f"has shape {y_t.shape}", f"pass one observation of shape (..., {model.m})")
    if np.isinf(y_t).any():
        raise value_error("y_t", "holds an infinite value", "use NaN to mark a missing component")
    m, P, ll = update_step(mean, cov, y_t, model.param("H", t), model.param("R", t), model.param("d", t), t)
    if not (np.isfinite(m).all() and np.isfinite(P).all() and np.isfinite(ll).all()):
        raise value_error("y_t", f"gives a non-finite posterior or log-likelihood at step {t} (the values left the "
                          f"{np.result_type(m, P)} range)", "rescale the data and covariances (e.g. change units)")
    return Gaussian(mean=m, cov=P), ll


def _check_step(model, t, arg, allow_zero=False):
    if not isinstance(model, LinearGaussianSSM):
        raise value_error("model", f"is a {type(model).__name__}", "pass a bayesfilt.LinearGaussianSSM")
    if model.has_diffuse:       # a Gaussian(m0, P0) belief would hold the diffuse states as known (P0 is 0 there)
        raise value_error("model", "declares exactly diffuse states, which a Gaussian belief cannot hold",
                          "filter the first steps with kalman_filter (exact diffuse) and continue from its last "
                          "filtered mean and covariance with model.replace(diffuse=False)")
    if not isinstance(t, (int, np.integer)) or t < (0 if allow_zero else 1):
        raise value_error(arg, f"is {t!r}", "pass a 0-based integer time index (>= 1 for predict)")
    T = model.num_timesteps
    if T is not None and t >= T:
        raise value_error(arg, f"is {t} but the time-varying parameters have {T} steps", f"pass t < {T}")


def _check_gaussian(gaussian):
    if not isinstance(gaussian, Gaussian):
        raise type_error("gaussian", f"is a {type(gaussian).__name__}", "pass a bayesfilt.Gaussian(mean, cov)")


def _check_belief(mean, cov, n):
    if mean.shape[-1:] != (n,) or cov.shape[-2:] != (n, n):
        raise value_error("gaussian", f"has mean shape {mean.shape} and cov shape {cov.shape}",
                          f"pass a belief with mean (..., {n}) and cov (..., {n}, {n})")
    check_finite(mean, "gaussian.mean")
    check_finite(cov, "gaussian.cov")


def run_steps(model: LinearGaussianSSM, y: np.ndarray, mean: np.ndarray, cov: np.ndarray, t0: int,
              pmeans: np.ndarray, pcovs: np.ndarray, means: np.ndarray, covs: np.ndarray,
              terms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ordinary predict/update loop from step ``t0`` to T, writing the outputs in place.

    ``mean``/``cov`` are the filtered belief at ``t0 - 1`` (for ``t0 = 0``: the prior
    m0, P0, which is not predicted). No validation (a kernel shared by the filters).

    Returns:
        The filtered ``(mean, cov)`` at the last step.
    """
    for t in range(t0, y.shape[-2]):
        if t > 0:
            mean, cov = predict_step(mean, cov, model.param("F", t), model.param("Q", t), model.param("b", t))
        pmeans[..., t, :] = mean
        pcovs[..., t, :, :] = cov
        mean, cov, ll = update_step(mean, cov, y[..., t, :], model.param("H", t), model.param("R", t),
                                    model.param("d", t), t)
        means[..., t, :] = mean
        covs[..., t, :, :] = cov
        terms[..., t] = ll
    return mean, cov


def kalman_filter(model: LinearGaussianSSM, y, *, validate: bool = True) -> FilterResult:
    """Covariance-form Kalman filter over observations ``y`` of shape (..., T, m).

    NaN in ``y`` marks a missing observation: a whole vector (pure prediction) or single
    components (update with the observed rows only). Leading batch axes of ``y`` (and of
    the model's parameters) are filtered at once. Computes in the common dtype of the
    model and ``y`` (float64 by default; float32 accepted). Exact diffuse initialisation
    is used when the model declares ``diffuse`` states. When P0, F, Q, H and R have no
    batch axes and ``y`` has no missing values, the covariances are the same for every
    series: they are computed once and ``covs``/``predicted_covs`` are read-only broadcast views.

    Args:
        model: the state-space model (docs/math/notation.md).
        y: observations (..., T, m).
        validate: check the model's definiteness first (the default; skip only for
            models validated already).

    Returns:
        A :class:`~bayesfilt.FilterResult`.

    Example:
        >>> import numpy as np, bayesfilt
        >>> model = bayesfilt.LinearGaussianSSM(m0=np.zeros(1), P0=np.eye(1), F=np.eye(1),
        ...     Q=np.eye(1), H=np.eye(1), R=np.eye(1))
        >>> res = bayesfilt.kalman_filter(model, np.array([[1.0], [np.nan], [2.0]]))
        >>> res.means.shape, float(res.covs[0, 0, 0])
        ((3, 1), 0.5)
    """
    model, y, T, batch = prepare(model, y, validate=validate)
    if model.has_diffuse:
        from .diffuse import diffuse_kalman_filter
        return diffuse_kalman_filter(model, y)
    n = model.n
    dtype = y.dtype
    # Without per-series covariance parameters (P0, F, Q, H, R) or missing values the
    # covariances do not depend on the data or on m0, b, d: compute them once and return
    # them broadcast over the batch (read-only views).
    shared = not any(model._batch_shape_of(nm) for nm in ("P0", "F", "Q", "H", "R")) and not np.isnan(y).any()
    cov_batch = () if shared else batch
    means = np.empty(batch + (T, n), dtype)
    covs = np.empty(cov_batch + (T, n, n), dtype)
    pmeans = np.empty(batch + (T, n), dtype)
    pcovs = np.empty(cov_batch + (T, n, n), dtype)
    terms = np.empty(batch + (T,), dtype)
    mean = np.broadcast_to(model.m0, batch + (n,))             # m_{1|0} = m0
    cov = np.broadcast_to(model.P0, cov_batch + (n, n))        # P_{1|0} = P0
    run_steps(model, y, mean, cov, 0, pmeans, pcovs, means, covs, terms)
    result = check_finite_result(FilterResult(means=means, covs=covs, predicted_means=pmeans, predicted_covs=pcovs,
                                              loglik=terms.sum(-1), loglik_terms=terms))
    if shared:
        result = dataclasses.replace(result, covs=np.broadcast_to(covs, batch + (T, n, n)),
                                     predicted_covs=np.broadcast_to(pcovs, batch + (T, n, n)))
    return result
