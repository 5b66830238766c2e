"""Step check of a parallel filter's result: every returned step is one Kalman update of the one before.

Specification: the update of :func:`bayesfilt.kalman_filter` (filters/covariance.py). A parallel
scan computes all T filtered moments at once; the sequential filter computes each from the one
before. The check recomputes that one step for every t at once (a parallel map) from the returned
filtered moments: the prediction (m_{t|t-1}, P_{t|t-1}) = (F_t m_{t-1} + b_t, F_t P_{t-1} F_t^T + Q_t)
(m0, P0 at t = 1; :func:`predictions`), against which the returned predicted moments are checked
too (the Triton kernels compute theirs from the scan's prefixes), then the update:

    S_t = H_t P_{t|t-1} H_t^T + R_t = L_t L_t^T
    W_t = L_t^{-1} H_t P_{t|t-1},   z_t = L_t^{-1} (y_t - H_t m_{t|t-1} - d_t)
    m̃_t = m_{t|t-1} + W_t^T z_t                 (= m_{t|t-1} + K_t r_t)
    P̃_t = P_{t|t-1} - W_t^T W_t                 (= P_{t|t-1} - K_t S_t K_t^T)

and compares (m̃_t, P̃_t) with the returned (m_t, P_t), over the observed components (NaN:
missing). A step fails when its difference exceeds the backend's promised tolerance
(:mod:`bayesfilt.tolerances`, same metric) plus ``SLACK`` times the rounding the update itself
suffers, ε (|m_{t|t-1}| + |W_t|^T |z_t|) and ε (|P_{t|t-1}| + |W_t|^T |W_t|) entry by entry (for the
covariances at least the geometric mean of the two diagonal entries' scales; ε of the result's dtype): after a long run of missing observations P_{t|t-1} is many orders of magnitude
above P_t, and the update's cancellation is then far above ε |P_t| even for an exact result.

What it catches: results that do not satisfy the recursion they claim to compute, e.g. the
covariance-form elements on nearly redundant, very precisely measured states (means 1e4 off) or
the information form over long runs of missing observations. What it does not: errors that stay
below the tolerance at every step but add up over many steps (measured in docs/parallel.md,
"The step check"). The check runs in float64 whatever the result's dtype, and outside autograd.
Math: docs/math/parallel_scan.md, "The step check".
"""

from __future__ import annotations

import numpy as np

from . import _ops as ops
from ._params import observed, static, step, time_first
from ..errors import value_error
from ..tolerances import TOLERANCES, Tolerance

#: Multiples of the update's own rounding scale (module docstring) allowed beyond the tolerance.
#: Measured (benchmarks/step_check_cases.py): the accepted results there use at most 1.1 of it.
SLACK = 64.0


def promised(form: str, backend: str, dtype: str, what: str = "filter") -> Tolerance:
    """The tolerance a parallel filter (``what="filter"``) or smoother (``"smoother"``) result is held
    to: the (what[-form], backend, dtype) promise of :data:`bayesfilt.tolerances.TOLERANCES`,
    else the covariance form's on that backend, else the filter's, else torch's (same scans) for that
    dtype (e.g. NumPy float32, information form float32).

    Example:
        >>> promised("covariance", "numpy", "float64").bound
        1e-09
    """
    component = what if form == "covariance" else f"{what}-{form}"
    for key in ((component, backend, dtype), (what, backend, dtype), ("filter", backend, dtype),
                ("filter", "torch", dtype)):
        if key in TOLERANCES:
            return TOLERANCES[key]
    return TOLERANCES[("filter", "torch", "float32")]


def _float64(x):
    if ops.is_torch(x):
        import torch
        return x.detach().to(torch.float64)
    return np.asarray(x, dtype=np.float64)


def _abs(x):
    return x.abs() if ops.is_torch(x) else np.abs(x)


def update_residuals(model, y, predicted_means, predicted_covs, means, covs):
    """The update of the returned predictions against the returned filtered moments, per entry.

    Args:
        model: the filtered LinearGaussianSSM.
        y: time-first observations (T, *B, m) (NaN: missing), NumPy or torch.
        predicted_means, predicted_covs, means, covs: the scan's time-first results
            (T, *B, n) and (T, *B, n, n).

    Returns:
        ``(dm, m_ref, noise_m, dP, P_ref, noise_P)``, float64, shapes (T, *B, n) and (T, *B, n, n):
        |m̃ - m|, m̃ and the update's rounding scale |m_{t|t-1}| + |W|^T |z| (module docstring),
        then the same for the covariances.

    Example:
        >>> import numpy as np, bayesfilt
        >>> from bayesfilt.scan.covariance import scan_filter
        >>> model = bayesfilt.models.constant_velocity(q=0.1, r=1.0)
        >>> _, y = model.simulate(20, seed=0)
        >>> out = scan_filter(model, y[:, None], "tree")               # time-first, one series
        >>> dm, m_ref, *_ = update_residuals(model, y[:, None], out["predicted_means"],
        ...                                  out["predicted_covs"], out["means"], out["covs"])
        >>> bool(dm.max() < 1e-12 * np.abs(m_ref).max())
        True
    """
    y, pm, pP, means, covs = (_float64(a) for a in (y, predicted_means, predicted_covs, means, covs))
    nb = y.ndim - 2
    par = {k: time_first(model, k, nb, y) for k in ("H", "R", "d")}
    if bool(ops.isnan(y).any()):
        y0, Ho, Ro, do, _ = observed(y, par["H"], par["R"], par["d"])   # per series: their missing entries
    else:                                                      # nothing missing: H, R as given, so that
        y0, Ho, Ro, do = y, par["H"], par["R"], par["d"]       # covariances shared by a batch stay shared
    HP = Ho @ pP                                               # H_t P_{t|t-1}
    L = ops.cholesky(ops.sym(HP @ ops.mT(Ho) + Ro))            # S_t = H P_{t|t-1} H^T + R = L L^T
    r = y0 - ops.mv(Ho, pm)                                    # r_t = y_t - H m_{t|t-1} - d_t
    if do is not None:
        r = r - do
    WP = ops.tri_solve(L, HP)                                  # L^{-1} H P_{t|t-1}
    z = ops.tri_solve(L, r[..., None])[..., 0]                 # L^{-1} r_t
    m_ref = pm + ops.mv(ops.mT(WP), z)                         # m̃_t = m_{t|t-1} + W^T z
    P_ref = ops.sym(pP - ops.mT(WP) @ WP)                      # P̃_t = P_{t|t-1} - W^T W
    aW = _abs(WP)
    noise_m = _abs(pm) + ops.mv(ops.mT(aW), _abs(z))           # |m_{t|t-1}| + |W|^T |z|
    noise_P = _pairwise(_abs(pP) + ops.mT(aW) @ aW)            # |P_{t|t-1}| + |W|^T |W|, at least √(n_ii n_jj)
    return _abs(m_ref - means), m_ref, noise_m, _abs(P_ref - covs), P_ref, noise_P


def predictions(model, y, means, covs):
    """The predictions rebuilt from the returned filtered moments (the step check does not trust a
    scan's own predictions: the Triton kernels compute theirs from the scan's prefixes), in float64:
    m_{t|t-1} = F_t m_{t-1} + b_t, P_{t|t-1} = F_t P_{t-1} F_t^T + Q_t (m0, P0 at t = 1).

    Args:
        model: the filtered LinearGaussianSSM.
        y: time-first observations (T, *B, m) (for the backend and the batch layout).
        means, covs: the returned time-first filtered moments (T, *B, n), (T, *B, n, n).

    Returns:
        ``(pm, noise_pm, pP, noise_pP)``, float64: the predictions and their rounding scales
        |F||m_{t-1}| + |b| and |F||P_{t-1}||F|^T + |Q| (|m0|, |P0| at t = 1).

    Example:
        >>> import numpy as np, bayesfilt
        >>> from bayesfilt.scan.covariance import scan_filter
        >>> model = bayesfilt.models.constant_velocity(q=0.1, r=1.0)
        >>> _, y = model.simulate(20, seed=0)
        >>> out = scan_filter(model, y[:, None], "tree")
        >>> pm, _, pP, _ = predictions(model, y[:, None], out["means"], out["covs"])
        >>> bool(np.allclose(pm, out["predicted_means"]) and np.allclose(pP, out["predicted_covs"]))
        True
    """
    y, means, covs = (_float64(a) for a in (y, means, covs))
    T, nb = means.shape[0], y.ndim - 2
    m0 = ops.broadcast_to(static(model, "m0", nb, y)[None], (1,) + tuple(means.shape[1:]))
    P0 = ops.broadcast_to(static(model, "P0", nb, y)[None], (1,) + tuple(covs.shape[1:]))   # covs' batch
                                                               # shape: (1.., n, n) when shared (_unshared)
    if T == 1:
        return m0, _abs(m0), P0, _pairwise(_abs(P0))
    F = step(time_first(model, "F", nb, y), 1, T)
    Q = step(time_first(model, "Q", nb, y), 1, T)
    b = time_first(model, "b", nb, y)
    aF = _abs(F)
    pm = ops.mv(F, means[:-1])                                 # m_{t|t-1} = F_t m_{t-1}
    npm = ops.mv(aF, _abs(means[:-1]))
    if b is not None:
        pm = pm + step(b, 1, T)                                #            + b_t
        npm = npm + _abs(step(b, 1, T))
    pP = ops.sym(F @ covs[:-1] @ ops.mT(F) + Q)                # P_{t|t-1} = F P_{t-1} F^T + Q
    npP = aF @ _abs(covs[:-1]) @ ops.mT(aF) + _abs(Q)
    cat = lambda first, rest: ops.concat([first, ops.broadcast_to(rest, (T - 1,) + tuple(first.shape[1:]))], 0)  # noqa: E731
    return cat(m0, pm), cat(_abs(m0), npm), cat(P0, pP), _pairwise(cat(_abs(P0), npP))


def _pairwise(noise):
    """max(noise_ij, √(noise_ii noise_jj)): a covariance entry's rounding is on the scale of its row's and
    column's variances even where it is itself zero (two decoupled states after a long gap: the
    sequential square-root filter leaves ε √(P_ii P_jj) there too)."""
    d = noise.diagonal(0, -2, -1) if ops.is_torch(noise) else np.diagonal(noise, axis1=-2, axis2=-1)
    geo = (d[..., :, None] * d[..., None, :]) ** 0.5
    return ops.where(geo > noise, geo, noise)


def _excess(diff, ref, noise, tol: Tolerance, eps: float):
    """diff minus what the promise and the update's rounding allow (> 0: the step fails)."""
    big = _abs(ref)
    if tol.metric == "scale_rel":                              # |Δ| / max |ref| over the array
        scale = float(big.max()) if (big.numel() if ops.is_torch(big) else big.size) else 0.0
    else:                                                      # max_rel: |Δ| / max(|ref|, 1) per entry
        scale = big.clamp(min=1.0) if ops.is_torch(big) else np.maximum(big, 1.0)
    return diff - (tol.bound * scale + SLACK * eps * noise)


def check_steps(model, y, out: dict, form: str, backend: str, name: str) -> None:
    """Raise if a returned step of a parallel filter is not one update of its returned prediction.

    Args:
        model: the filtered LinearGaussianSSM.
        y: time-first observations (T, *B, m).
        out: the scan's time-first results (``means``, ``covs``, ``predicted_means``, ``predicted_covs``).
        form, backend: where the result came from (its promised tolerance: :func:`promised`).
        name: the public function, for the message.

    Raises:
        BayesfiltValueError: naming the first failing step (in the recursion's direction), its worst
            entry, the difference and the fixes.

    Example:
        >>> import numpy as np, bayesfilt
        >>> from bayesfilt.scan.covariance import scan_filter
        >>> model = bayesfilt.models.constant_velocity(q=0.1, r=1.0)
        >>> _, y = model.simulate(20, seed=0)
        >>> out = scan_filter(model, y[:, None], "tree")
        >>> check_steps(model, y[:, None], out, "covariance", "numpy", "parallel_filter")   # passes
    """
    tol = promised(form, backend, _dtype_name(out["means"]))
    eps = float(ops.finfo_eps(out["means"]))
    covs, pcovs = _unshared(out["covs"]), _unshared(out["predicted_covs"])
    pm, npm, pP, npP = predictions(model, y, out["means"], covs)
    dm, m_ref, nm, dP, P_ref, nP = update_residuals(model, y, pm, pP, out["means"], covs)
    _raise_on_excess(((dm, m_ref, nm), (dP, P_ref, nP)), tol, eps, form, backend, name,
                     "filtered", "one Kalman update of the prediction from the returned step before it")
    _raise_on_excess(((_abs(pm - _float64(out["predicted_means"])), pm, npm),
                      (_abs(pP - _float64(pcovs)), pP, npP)), tol, eps, form, backend, name,
                     "predicted", "the prediction from the returned filtered step before it")


def _unshared(covs):
    """Time-first covariances (T, *B, n, n) whose batch axes all have stride 0 (the shared-gain paths'
    broadcast views) as their one (T, 1.., n, n) slice, so that the check does their work once
    rather than once per series; other arrays unchanged."""
    nb = covs.ndim - 3
    strides = covs.stride() if ops.is_torch(covs) else covs.strides
    if nb and all(st == 0 for st in strides[1:1 + nb]):
        return covs[(slice(None),) + (slice(0, 1),) * nb]
    return covs


def _dtype_name(x) -> str:
    return str(x.dtype).replace("torch.", "")


def _fixes(form: str, backend: str) -> str:
    """The other ways to a result, without the form and backend that just failed."""
    fixes = [] if form == "sqrt" else ["form='sqrt' (square-root elements)"]
    fixes.append("the sequential bayesfilt.kalman_filter / rts_smoother")
    if form != "covariance":
        fixes.append("form='covariance'")
    if backend != "triton":
        fixes.append("backend='triton' on a CUDA device")
    return "use " + ", ".join(fixes) + "; pass verify=False to get the unchecked result"


def _raise_on_excess(pairs, tol: Tolerance, eps: float, form: str, backend: str, name: str, kind: str,
                     against: str, backward: bool = False) -> None:
    """Raise naming the first failing step in the recursion's direction (forward for the filter; the
    last step for the smoother, ``backward``: an error propagates in that direction, so the first one is
    where it went wrong) and its worst entry of (diff, ref, noise), the means before the covariances."""
    first = None                                               # (t, field index, excess, diff, core)
    for i, ((diff, ref, noise), core) in enumerate(zip(pairs, (1, 2))):
        excess = _excess(diff, ref, noise, tol, eps)
        if not (excess.numel() if ops.is_torch(excess) else excess.size):
            continue
        bad = ~(excess <= 0.0)                                 # NaN excess fails too
        per_t = bad.reshape(bad.shape[0], -1).any(-1)
        per_t = per_t.cpu().numpy() if ops.is_torch(per_t) else per_t
        if per_t.any():
            t = int(len(per_t) - 1 - np.argmax(per_t[::-1])) if backward else int(np.argmax(per_t))
            if first is None or (t > first[0] if backward else t < first[0]):
                first = (t, i, excess, diff, core)
    if first is None:
        return
    t, i, excess, diff, core = first
    field = ("mean", "covariance")[i]
    at_t = excess[t]
    at_t = at_t.cpu().numpy() if ops.is_torch(at_t) else at_t
    rest = np.unravel_index(int(np.nanargmax(np.where(np.isnan(at_t), np.inf, at_t))), at_t.shape)
    full = (t,) + tuple(int(j) for j in rest)
    series = full[1:excess.ndim - core]
    at = f"step {t}" + (f" of series {series}" if series else "") + f", entry {full[excess.ndim - core:]}"
    size = float(diff[full])
    raise value_error(
        "model", f"{name}'s {form}-form scan returned a {kind} {field} that fails the step check: at {at} "
        f"it differs by {size:.3g} from {against}, beyond the promised "
        f"{tol.bound:g} ({tol.metric}) and the step's rounding (the scan lost accuracy: the model is too "
        "ill-conditioned for it, e.g. nearly redundant states measured very precisely, or a long run of "
        "missing observations in the information form)",
        _fixes(form, backend))


def rts_residuals(filtered: dict, smoothed: dict):
    """One RTS step from each returned smoothed moment at t+1 against the returned one at t.

    m̃^s_t = m_t + G_t (m^s_{t+1} - m_{t+1|t}),  P̃^s_t = P_t + G_t (P^s_{t+1} - P_{t+1|t}) G_t^T
    (t < T-1; the last step is the filter's), with the filter's m_t, P_t, m_{t+1|t}, P_{t+1|t} and the
    returned gains G_t (specification: :func:`bayesfilt.rts_smoother`).

    Args:
        filtered: the time-first filter results (means, covs, predicted_means, predicted_covs).
        smoothed: the time-first smoother results (means, covs, gains (T-1, *B, n, n)).

    Returns:
        ``(dm, m_ref, noise_m, dP, P_ref, noise_P)`` as :func:`update_residuals`, float64, with the
        rounding scales |m_t| + |G|(|m^s_{t+1}| + |m_{t+1|t}|) and |P_t| + |G|(|P^s_{t+1}| + |P_{t+1|t}|)|G|^T.

    Example:
        >>> import numpy as np, bayesfilt
        >>> from bayesfilt.scan.covariance import scan_filter
        >>> from bayesfilt.scan.smoother import scan_rts
        >>> model = bayesfilt.models.constant_velocity(q=0.1, r=1.0)
        >>> _, y = model.simulate(20, seed=0)
        >>> f = scan_filter(model, y[:, None], "tree")
        >>> s = scan_rts(model, y[:, None], f["means"], f["covs"], "tree")
        >>> dm, m_ref, *_ = rts_residuals(f, s)
        >>> bool(dm.max() < 1e-12 * np.abs(m_ref).max())
        True
    """
    m, P, pm, pP, ms, Ps, G = (_float64(a) for a in (
        filtered["means"], filtered["covs"], filtered["predicted_means"], filtered["predicted_covs"],
        smoothed["means"], smoothed["covs"], smoothed["gains"]))
    T = m.shape[0]
    if T == 1:
        return _abs(ms - m), m, _abs(m), _abs(Ps - P), P, _abs(P)
    dmean = ms[1:] - pm[1:]                                    # m^s_{t+1} - m_{t+1|t}
    dcov = Ps[1:] - pP[1:]                                     # P^s_{t+1} - P_{t+1|t}
    m_ref = ops.concat([m[:-1] + ops.mv(G, dmean), m[-1:]], 0)               # m̃^s_t = m_t + G_t (...)
    P_ref = ops.concat([ops.sym(P[:-1] + G @ dcov @ ops.mT(G)), P[-1:]], 0)  # P̃^s_t = P_t + G_t (...) G_t^T
    aG = _abs(G)
    noise_m = _abs(m) + ops.concat([ops.mv(aG, _abs(ms[1:]) + _abs(pm[1:])), ops.zeros(m[-1:].shape, m)], 0)
    noise_P = _pairwise(_abs(P) + ops.concat([aG @ (_abs(Ps[1:]) + _abs(pP[1:])) @ ops.mT(aG),
                                              ops.zeros(P[-1:].shape, P)], 0))
    return _abs(m_ref - ms), m_ref, noise_m, _abs(P_ref - Ps), P_ref, noise_P


def check_smoother_steps(filtered: dict, smoothed: dict, form: str, backend: str, name: str) -> None:
    """Raise if a returned smoothed step is not one RTS step from the returned step after it.

    Args:
        filtered, smoothed: time-first results (:func:`rts_residuals`).
        form, backend: where the result came from (its promised tolerance: :func:`promised`, "smoother").
        name: the public function, for the message.

    Raises:
        BayesfiltValueError: naming the first failing step (in the recursion's direction), its worst
            entry, the difference and the fixes.

    Example:
        >>> import numpy as np, bayesfilt
        >>> from bayesfilt.scan.covariance import scan_filter
        >>> from bayesfilt.scan.smoother import scan_rts
        >>> model = bayesfilt.models.constant_velocity(q=0.1, r=1.0)
        >>> _, y = model.simulate(20, seed=0)
        >>> f = scan_filter(model, y[:, None], "tree")
        >>> s = scan_rts(model, y[:, None], f["means"], f["covs"], "tree")
        >>> check_smoother_steps(f, s, "covariance", "numpy", "parallel_smoother")     # passes
    """
    dm, m_ref, nm, dP, P_ref, nP = rts_residuals(filtered, smoothed)
    tol = promised(form, backend, _dtype_name(smoothed["means"]), "smoother")
    _raise_on_excess(((dm, m_ref, nm), (dP, P_ref, nP)), tol, float(ops.finfo_eps(smoothed["means"])), form,
                     backend, name, "smoothed", "one RTS step from the returned smoothed step after it",
                     backward=True)
