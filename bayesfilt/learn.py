"""Parameter learning for linear-Gaussian state-space models: maximum likelihood and EM.

- :func:`fit_mle`: maximise the Kalman filter's exact log-likelihood over a user
  parameterisation ``build_model(theta)`` with a SciPy optimiser; positivity through
  transforms (e.g. ``"log"``); standard errors from the numerical Hessian.
- :func:`em`: the expectation-maximisation algorithm (Shumway & Stoffer 1982; Ghahramani
  & Hinton 1996) for any subset of F, H, Q, R, m0, P0 with the others fixed, exact under
  missing observations (whole vectors or single components).

Model and notation: docs/math/notation.md; the M-step formulas: docs/tutorials/mle_vs_em.md.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .errors import type_error, value_error
from .filters import kalman_filter, rts_smoother
from .linalg import mT, sym
from .model import LinearGaussianSSM
from .validation import as_float_array, as_int, as_real_scalar

# ----------------------------------------------------------------------------- transforms
#: Named transforms: name -> (to_unconstrained u = f(θ), from_unconstrained θ = f⁻¹(u)).
TRANSFORMS = {
    "identity": (lambda th: th, lambda u: u),
    "log": (np.log, np.exp),                                     # θ > 0
    "logit": (lambda th: np.log(th) - np.log1p(-th),             # 0 < θ < 1
              lambda u: 1.0 / (1.0 + np.exp(-u))),
}


def _resolve_transforms(transforms, p):
    if transforms is None:
        return [TRANSFORMS["identity"]] * p
    if isinstance(transforms, str):
        transforms = [transforms] * p
    transforms = list(transforms)
    if len(transforms) != p:
        raise value_error("transforms", f"has {len(transforms)} entries for {p} parameters",
                          "give one transform per entry of theta0 (or one name for all)")
    out = []
    for i, tr in enumerate(transforms):
        if tr is None:
            tr = "identity"
        if isinstance(tr, str):
            if tr not in TRANSFORMS:
                raise value_error(f"transforms[{i}]", f"is {tr!r}", f"use one of {sorted(TRANSFORMS)} "
                                  "or a (to_unconstrained, from_unconstrained) pair of functions")
            out.append(TRANSFORMS[tr])
        elif isinstance(tr, (tuple, list)) and len(tr) == 2 and all(callable(f) for f in tr):
            out.append(tuple(tr))
        else:
            raise type_error(f"transforms[{i}]", f"is {tr!r}", "pass a name or a pair of functions")
    return out


@dataclass(frozen=True)
class MLEResult:
    """Result of :func:`fit_mle`.

    Attributes:
        theta: (p,) maximum-likelihood parameters (natural scale).
        loglik: log-likelihood at ``theta`` (summed over all series).
        model: ``build_model(theta)`` (a list of models when several series were fitted).
        stderr: (p,) standard errors of ``theta`` from the inverse of the numerical Hessian
            of the negative log-likelihood (delta method through the transforms); NaN
            where the Hessian is not positive definite.
        cov: (p, p) the corresponding covariance of ``theta``.
        success: the optimiser's success flag.
        message: the optimiser's message.
        n_evals: number of log-likelihood evaluations.
        unconstrained: (p,) optimum in the optimiser's (transformed) coordinates.

    Example:
        >>> import numpy as np
        >>> from bayesfilt.models import local_level
        >>> y = np.array([[1.0], [2.0], [1.5], [3.0], [2.5]])
        >>> res = fit_mle(lambda th: local_level(th[0], th[1]), y, [1.0, 1.0], transforms="log")
        >>> res.theta.shape, res.stderr.shape
        ((2,), (2,))
    """

    theta: np.ndarray
    loglik: float
    model: object
    stderr: np.ndarray
    cov: np.ndarray
    success: bool
    message: str
    n_evals: int
    unconstrained: np.ndarray


def _total_loglik(models, ys):
    total = 0.0
    for model, y in zip(models, ys):
        total += float(np.sum(kalman_filter(model, y).loglik))
    return total


def fit_mle(build_model: Callable[[np.ndarray], object], y, theta0, *, transforms=None,
            method: str = "L-BFGS-B", tol: float = 1e-10, maxiter: int = 1000, stderr: bool = True,
            options: dict | None = None, progress: bool = False) -> MLEResult:
    """Maximum-likelihood parameters of a state-space model by numerical optimisation.

    Maximises log p(y | θ) = Σ_t log N(y_t; ŷ_{t|t-1}(θ), S_t(θ)) computed by
    :func:`~bayesfilt.kalman_filter` (exact diffuse initialisation when the model
    declares diffuse states) over u = transform(θ) with ``scipy.optimize.minimize``;
    central-difference gradients.

    Args:
        build_model: ``theta -> LinearGaussianSSM`` (or a list of models, one per series,
            when ``y`` is a list of series that share the parameters).
        y: observations (..., T, m), or a list/tuple of such arrays (different lengths
            allowed); NaN marks missing values. Log-likelihoods are summed.
        theta0: (p,) starting parameters (natural scale).
        transforms: None (no transform), one name for all, or one entry per parameter:
            ``"identity"``, ``"log"`` (θ > 0), ``"logit"`` (0 < θ < 1), or a pair of
            functions ``(to_unconstrained, from_unconstrained)``.
        method: a ``scipy.optimize.minimize`` method (gradient-based ones use the
            central-difference gradient).
        tol: convergence tolerance passed to the optimiser.
        maxiter: maximum number of optimiser iterations.
        stderr: compute standard errors from the numerical Hessian (2p² + 1 extra
            log-likelihood evaluations).
        options: extra optimiser options (override the defaults).
        progress: show a progress line per optimiser iteration (tqdm if installed).

    Returns:
        An :class:`MLEResult`.

    Example:
        >>> import numpy as np
        >>> from bayesfilt.models import local_level
        >>> from bayesfilt.learn import fit_mle
        >>> y = local_level(1.0, 0.1).replace(diffuse=False, P0=np.eye(1)).simulate(200, seed=1)[1]
        >>> res = fit_mle(lambda th: local_level(th[0], th[1]), y, [1.0, 1.0], transforms="log")
        >>> bool(res.success), res.theta.shape
        (True, (2,))
    """
    from scipy.optimize import minimize

    if not callable(build_model):
        raise type_error("build_model", f"is a {type(build_model).__name__}", "pass a function theta -> model")
    theta0 = as_float_array(theta0, "theta0").reshape(-1)
    p = theta0.size
    if p == 0 or not np.isfinite(theta0).all():
        raise value_error("theta0", f"is {theta0!r}", "pass a non-empty vector of finite starting values")
    trs = _resolve_transforms(transforms, p)
    tol = as_real_scalar(tol, "tol", low=0.0, low_open=True, fix="pass a small positive tolerance, e.g. 1e-10")
    maxiter = as_int(maxiter, "maxiter", low=1, fix="pass a positive number of iterations")
    multi = isinstance(y, (list, tuple))
    ys = [as_float_array(v, "y") for v in (y if multi else [y])]

    def to_theta(u):
        return np.array([trs[i][1](u[i]) for i in range(p)])

    with np.errstate(divide="ignore", invalid="ignore"):
        u0 = np.array([trs[i][0](theta0[i]) for i in range(p)], dtype=float)
    if not np.isfinite(u0).all():
        i = int(np.flatnonzero(~np.isfinite(u0))[0])
        raise value_error(f"theta0[{i}]", f"is {theta0[i]!r}, outside the domain of its transform",
                          "start inside the domain (e.g. > 0 for 'log')")

    def models_of(theta):
        built = build_model(theta)
        models = list(built) if multi and isinstance(built, (list, tuple)) else [built]
        if len(models) != len(ys) or not all(isinstance(m, LinearGaussianSSM) for m in models):
            raise type_error("build_model", "did not return one LinearGaussianSSM per series",
                             "return a model (or a list of models matching the list y)")
        return built, models

    n_evals = [0]
    # the value of infeasible points (an invalid model, a non-finite log-likelihood): large, but not so
    # large that an optimiser's relative-reduction test reads a step onto it as "no reduction left"
    # (with 1e300, L-BFGS-B declared convergence at its start after one step into negative variances)
    outside = np.inf                                    # set from the start's value below

    def negll(u):
        n_evals[0] += 1
        theta = to_theta(u)
        if not np.isfinite(theta).all():
            return outside
        try:
            _, models = models_of(theta)
            val = -_total_loglik(models, ys)
        except (np.linalg.LinAlgError, FloatingPointError, ValueError):
            return outside                                            # invalid model: outside the feasible set
        return val if np.isfinite(val) else outside

    first = negll(u0)
    if not np.isfinite(first):
        # evaluate once more without the guard so the user sees the real error
        _, models = models_of(theta0)
        _total_loglik(models, ys)
        raise value_error("theta0", "gives a non-finite log-likelihood", "start from parameters with a valid model")
    outside = abs(first) + 1e6 * (1.0 + abs(first))

    def grad(u):
        g = np.empty(p)
        for i in range(p):
            h = 1e-5 * max(1.0, abs(u[i]))
            e = np.zeros(p)
            e[i] = h
            g[i] = (negll(u + e) - negll(u - e)) / (2 * h)   # central difference
        return g

    opts = {"maxiter": maxiter}
    if method.upper() == "L-BFGS-B":
        opts.update(ftol=tol, gtol=1e-8, maxcor=20)
    opts.update(options or {})
    jac = None if method in ("Nelder-Mead", "Powell", "COBYLA") else grad
    bar = _Progress(None, "MLE", progress)
    last = [first]

    def callback(*args):
        bar.update(f"-loglik {last[0]:.4f}, {n_evals[0]} evaluations")

    def negll_tracked(u):
        val = negll(u)
        last[0] = min(last[0], val)
        return val

    try:
        res = minimize(negll_tracked, u0, jac=jac, method=method, tol=tol, options=opts, callback=callback)
    except ValueError as exc:
        if "solver" not in str(exc).lower() and "method" not in str(exc).lower():
            raise
        raise value_error("method", f"is {method!r} ({exc})", "pass a scipy.optimize.minimize method, "
                          "e.g. 'L-BFGS-B', 'BFGS' or 'Nelder-Mead'") from None
    finally:
        bar.close()
    u_hat = np.asarray(res.x, float)
    theta = to_theta(u_hat)
    built, models = models_of(theta)
    loglik = _total_loglik(models, ys)
    cov = np.full((p, p), np.nan)
    se = np.full(p, np.nan)
    if stderr:
        Hu = _hessian(negll, u_hat)
        J = np.diag([_dtheta_du(trs[i][1], u_hat[i]) for i in range(p)])   # dθ/du
        try:
            np.linalg.cholesky(Hu)
            cov_u = np.linalg.inv(Hu)
            cov = J @ cov_u @ J.T                                           # delta method
            se = np.sqrt(np.diag(cov))
        except np.linalg.LinAlgError:
            pass
    return MLEResult(theta=theta, loglik=loglik, model=built, stderr=se, cov=cov, success=bool(res.success),
                     message=str(res.message), n_evals=n_evals[0], unconstrained=u_hat)


def _dtheta_du(inv, u, h=1e-6):
    return (inv(u + h) - inv(u - h)) / (2 * h)


def _hessian(f, x):
    """Central-difference Hessian of a scalar function (step 1e-4 relative)."""
    p = x.size
    h = 1e-4 * np.maximum(1.0, np.abs(x))
    Hm = np.empty((p, p))
    f0 = f(x)
    for i in range(p):
        ei = np.zeros(p)
        ei[i] = h[i]
        Hm[i, i] = (f(x + ei) - 2 * f0 + f(x - ei)) / h[i] ** 2
        for j in range(i):
            ej = np.zeros(p)
            ej[j] = h[j]
            Hm[i, j] = Hm[j, i] = (f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej) + f(x - ei - ej)) / (4 * h[i] * h[j])
    return Hm


# ----------------------------------------------------------------------------- EM
EM_NAMES = ("F", "H", "Q", "R", "m0", "P0")


@dataclass(frozen=True)
class EMResult:
    """Result of :func:`em`.

    Attributes:
        model: the model after the last M-step.
        loglik: log-likelihood of ``model`` (``loglik_trace[-1]``).
        loglik_trace: (n_iter + 1,) log-likelihood of the model before the first and
            after each M-step; never decreases (up to rounding).
        n_iter: number of EM iterations run.
        learned: names of the learned parameters.

    Example:
        >>> import numpy as np, bayesfilt
        >>> m = bayesfilt.LinearGaussianSSM(m0=np.zeros(1), P0=np.eye(1), F=np.eye(1),
        ...     Q=np.eye(1), H=np.eye(1), R=np.eye(1))
        >>> res = em(m, m.simulate(30, seed=0)[1], 3, learn=("R",), progress=False)
        >>> res.loglik_trace.shape, res.learned
        ((4,), ('R',))
    """

    model: LinearGaussianSSM
    loglik: float
    loglik_trace: np.ndarray
    n_iter: int
    learned: tuple


class _Progress:
    """tqdm if installed, otherwise a plain stderr bar; silent when disabled."""

    def __init__(self, total, desc, enabled):
        self.total, self.desc, self.enabled, self.k, self.bar = total, desc, enabled, 0, None
        if enabled:
            try:
                from tqdm.auto import tqdm
                self.bar = tqdm(total=total, desc=desc, file=sys.stderr, leave=False)
            except ImportError:
                self.bar = None

    def update(self, info=""):
        self.k += 1
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(info, refresh=False)
            self.bar.update(1)
        elif self.total is None:
            sys.stderr.write(f"\r{self.desc} iteration {self.k} {info}")
            sys.stderr.flush()
        else:
            w = 30
            done = int(w * self.k / self.total)
            sys.stderr.write(f"\r{self.desc} [{'#' * done}{'.' * (w - done)}] {self.k}/{self.total} {info}")
            sys.stderr.flush()

    def close(self):
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.close()
        else:
            sys.stderr.write("\n")


def _imputed_obs_moments(y_t, H, R, d, mean, cov):
    """E[ỹ], E[ỹ x^T], E[ỹ ỹ^T] of ỹ = y_t - d given the data, under the current (H, R).

    Missing components are imputed from their conditional law: with observed rows o and
    missing rows u, v_u | v_o ~ N(R_uo R_oo^{-1} v_o, R_uu - R_uo R_oo^{-1} R_ou), v = y - d - H x,
    so ỹ = C x + c + e with C = H - A H_o, c = A ỹ_o, A = [I; R_uo R_oo^{-1}] (rows in
    place), e ~ N(0, E) independent of x (Shumway & Stoffer 2017, sec. 6.4).
    """
    m = y_t.shape[-1]
    o = ~np.isnan(y_t)
    yt = y_t - (0.0 if d is None else d)
    Exx = cov + np.outer(mean, mean)
    if o.all():
        yo = yt
        return yo, np.outer(yo, mean), np.outer(yo, yo)
    A = np.zeros((m, int(o.sum())))
    E = np.zeros((m, m))
    u = ~o
    if o.any():
        Roo = R[np.ix_(o, o)]
        A[o] = np.eye(int(o.sum()))
        A[u] = np.linalg.solve(Roo, R[np.ix_(o, u)]).T                   # R_uo R_oo^{-1}
        E[np.ix_(u, u)] = R[np.ix_(u, u)] - A[u] @ R[np.ix_(o, u)]      # R_uu - R_uo R_oo^{-1} R_ou
        c = A @ yt[o]
    else:
        E[:] = R
        c = np.zeros(m)
    C = H - A @ H[o]                                                  # ỹ = C x + c + e
    Ey = C @ mean + c
    Eyx = C @ Exx + np.outer(c, mean)
    Eyy = C @ Exx @ C.T + np.outer(C @ mean, c) + np.outer(c, C @ mean) + np.outer(c, c) + E
    return Ey, Eyx, Eyy


def em(model: LinearGaussianSSM, y, n_iter: int = 10, learn: Sequence[str] = ("F", "H", "Q", "R", "m0", "P0"), *,
       progress: bool = True, tol: float | None = None) -> EMResult:
    """Expectation-maximisation for a time-invariant linear-Gaussian model.

    Each iteration runs :func:`~bayesfilt.kalman_filter` and :func:`~bayesfilt.rts_smoother`
    (E-step: smoothed means x̂_t, covariances P_t, lag-one cross-covariances
    P_{t+1,t} = Cov[x_{t+1}, x_t | y]) and then maximises the expected complete-data
    log-likelihood in the order H, R, F, Q, m0, P0 (each using the new values of those
    before it, which is the joint maximiser):

    - H = (Σ_t E[ỹ_t x_t^T]) (Σ_t E[x_t x_t^T])^{-1}, ỹ_t = y_t - d_t
    - R = (1/T) Σ_t E[(ỹ_t - H x_t)(ỹ_t - H x_t)^T]
    - F = (Σ_{t≥2} E[x_t x_{t-1}^T] - b_t x̂_{t-1}^T) (Σ_{t≥2} E[x_{t-1} x_{t-1}^T])^{-1}
    - Q = (1/(T-1)) Σ_{t≥2} E[(x_t - F x_{t-1} - b_t)(x_t - F x_{t-1} - b_t)^T]
    - m0 = x̂_1;  P0 = P_1 + (x̂_1 - m0)(x̂_1 - m0)^T

    Missing observations (NaN, whole vectors or single components) are imputed exactly
    in the E-step from their conditional law under the current H, R (Shumway & Stoffer
    2017, sec. 6.4). Leading batch axes of ``y`` are independent series sharing the model:
    their statistics are summed.

    Args:
        model: the starting model. Parameters to learn must not be time-varying (nor
            batched); fixed ones may be. F can be learned only with a time-invariant Q,
            H only with a time-invariant R.
        y: observations (..., T, m); NaN marks missing values.
        n_iter: number of EM iterations (>= 0).
        learn: names of the parameters to learn, a subset of ("F", "H", "Q", "R", "m0", "P0").
        progress: show a progress bar (tqdm if installed, else a plain stderr bar).
        tol: stop early when the log-likelihood gains less than ``tol`` in an iteration.

    Returns:
        An :class:`EMResult`; ``loglik_trace`` never decreases.

    Example:
        >>> import numpy as np, bayesfilt
        >>> from bayesfilt.learn import em
        >>> m = bayesfilt.LinearGaussianSSM(m0=np.zeros(1), P0=np.eye(1), F=np.eye(1) * 0.9,
        ...     Q=np.eye(1), H=np.eye(1), R=np.eye(1))
        >>> y = m.simulate(100, seed=0)[1]
        >>> res = em(m.replace(Q=0.1 * np.eye(1)), y, 5, learn=("Q", "R"), progress=False)
        >>> bool(np.all(np.diff(res.loglik_trace) > -1e-8))
        True
    """
    if not isinstance(model, LinearGaussianSSM):
        raise type_error("model", f"is a {type(model).__name__}", "pass a bayesfilt.LinearGaussianSSM")
    if isinstance(learn, str):
        learn = (learn,)
    learn = tuple(learn)
    bad = [nm for nm in learn if nm not in EM_NAMES]
    if bad:
        raise value_error("learn", f"names {bad}", f"use a subset of {EM_NAMES}")
    n_iter = as_int(n_iter, "n_iter", low=0, fix="pass a non-negative integer")
    if tol is not None:
        tol = as_real_scalar(tol, "tol", low=0.0, fix="pass a non-negative log-likelihood gain, or None")
    for nm in learn:
        if nm in model.time_varying:
            raise value_error("learn", f"includes {nm}, which the model declares time-varying",
                              f"make {nm} time-invariant or keep it fixed")
        if model._batch_shape_of(nm) != ():
            raise value_error("learn", f"includes {nm}, which has batch axes {model._batch_shape_of(nm)}",
                              "learn only parameters shared by all series")
    if "F" in learn and "Q" in model.time_varying:
        raise value_error("learn", "includes F while Q is time-varying", "make Q time-invariant to learn F")
    if "H" in learn and "R" in model.time_varying:
        raise value_error("learn", "includes H while R is time-varying", "make R time-invariant to learn H")
    if model.has_diffuse:
        raise value_error("model", "declares diffuse states", "give EM a proper prior (m0, P0), e.g. a wide one")
    y = as_float_array(y, "y")
    if y.ndim < 2 or y.shape[-1] != model.m:
        raise value_error("y", f"has shape {y.shape}", f"pass observations of shape (..., T, {model.m})")
    if model.batch_shape != ():
        raise value_error("model", f"has batch axes {model.batch_shape}", "use one model shared by all series")
    T = y.shape[-2]
    if T < 1 or y.size == 0:
        raise value_error("y", f"has shape {y.shape} (no observations)", "pass at least one series with T >= 1 steps")
    ys = y.reshape((-1, T, model.m))

    trace = []
    bar = _Progress(n_iter, "EM", progress)
    it = 0
    try:
        for it in range(1, n_iter + 1):
            filt = kalman_filter(model, ys)
            ll = float(np.sum(filt.loglik))
            trace.append(ll)
            if tol is not None and len(trace) > 1 and trace[-1] - trace[-2] < tol:
                it -= 1
                break
            sm = rts_smoother(model, filt)
            model = _m_step(model, ys, sm.means, sm.covs, sm.cross_covs, learn)
            bar.update(f"loglik {ll:.4f}")
        else:
            it = n_iter
            trace.append(float(np.sum(kalman_filter(model, ys).loglik)))
    finally:
        bar.close()
    trace = np.asarray(trace)
    return EMResult(model=model, loglik=float(trace[-1]), loglik_trace=trace, n_iter=it, learned=learn)


def _m_step(model, ys, means, covs, cross, learn):
    """One M-step (the formulas in :func:`em`'s docstring), summing over series."""
    S, T, n = means.shape
    m = model.m
    H, F, m0 = model.H, model.F, model.m0
    changes = {}
    Exx = covs + np.einsum("sti,stj->stij", means, means)                 # E[x_t x_t^T]
    if "H" in learn or "R" in learn:
        d_all = 0.0 if model.d is None else np.broadcast_to(
            model.d if "d" in model.time_varying else model.d[None], (T, m))
        yt = ys - d_all                                                      # ỹ = y - d (NaN where missing)
        Ey = yt.copy()
        Eyx = np.einsum("sti,stj->stij", yt, means)                          # fully observed: ỹ x̂^T
        Eyy = np.einsum("sti,stj->stij", yt, yt)
        for s, t in zip(*np.nonzero(np.isnan(ys).any(-1))):                 # impute where anything is missing
            Ey[s, t], Eyx[s, t], Eyy[s, t] = _imputed_obs_moments(
                ys[s, t], model.param("H", t), model.param("R", t), model.param("d", t), means[s, t], covs[s, t])
        if "H" in learn:
            H = np.linalg.solve(Exx.sum((0, 1)).T, Eyx.sum((0, 1)).T).T          # H = ΣE[ỹx^T] (ΣE[xx^T])^{-1}
            changes["H"] = H
        if "R" in learn:
            Hs = H if "H" in learn or "H" not in model.time_varying else model.H[None]   # (m, n) or (1, T, m, n)
            HEyxT = np.einsum("...ij,...kj->...ik", Hs, Eyx)                   # H E[x ỹ^T]
            acc = (Eyy - HEyxT - mT(HEyxT)
                   + np.einsum("...ij,...jk,...lk->...il", Hs, Exx, Hs)).sum((0, 1))   # Σ E[(ỹ-Hx)(ỹ-Hx)^T]
            changes["R"] = sym(acc / (S * T))
    if T > 1 and ("F" in learn or "Q" in learn):
        x1 = means[:, 1:]
        x0 = means[:, :-1]
        E10 = cross + np.einsum("sti,stj->stij", x1, x0)                    # E[x_t x_{t-1}^T]
        E00 = Exx[:, :-1]
        E11 = Exx[:, 1:]
        b = model.b
        if b is not None:
            bt = np.broadcast_to(b if "b" in model.time_varying else b[None], (T, n))[1:]   # b_t, t >= 2
        if "F" in learn:
            num = E10.sum((0, 1))
            if b is not None:
                num = num - np.einsum("ti,stj->ij", bt, x0)
            F = np.linalg.solve(E00.sum((0, 1)).T, num.T).T                # F = (ΣE[x_t x_{t-1}^T] - b x̂^T)(ΣE[x x^T])^{-1}
            changes["F"] = F
        if "Q" in learn:
            Fs = F if ("F" in learn or "F" not in model.time_varying) else model.F[None, 1:]  # (n, n) or (1, T-1, n, n)
            FE01 = np.einsum("...ij,...kj->...ik", Fs, E10)                    # F E[x_{t-1} x_t^T]
            term = E11 - FE01 - mT(FE01) + np.einsum("...ij,...jk,...lk->...il", Fs, E00, Fs)
            if b is not None:
                r = x1 - np.einsum("...ij,...j->...i", Fs, x0)                   # E[x_t - F x_{t-1}]
                term = (term - np.einsum("sti,tj->stij", r, bt) - np.einsum("ti,stj->stij", bt, r)
                        + np.einsum("ti,tj->tij", bt, bt)[None])
            acc = term.sum((0, 1))
            changes["Q"] = sym(acc / (S * (T - 1)))
    if "m0" in learn:
        m0 = means[:, 0].mean(0)                                            # m0 = x̂_1
        changes["m0"] = m0
    if "P0" in learn:
        dev = means[:, 0] - m0
        changes["P0"] = sym((covs[:, 0] + np.einsum("si,sj->sij", dev, dev)).mean(0))   # P0 = P_1 + (x̂_1-m0)(x̂_1-m0)^T
    return model.replace(**changes)


__all__ = ["EMResult", "MLEResult", "TRANSFORMS", "em", "fit_mle"]
