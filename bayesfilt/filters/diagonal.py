"""The diagonal information filter behind Kalman Linear Attention (KLA): the specification.

Every lane (channel m, state s) is an independent scalar Kalman filter in information
form (precision ``lam``, information ``eta``; mean ``eta / lam``). Per token t = 1..L:

    x_t = a_bar x_{t-1} + w_t,          w_t ~ N(0, p_bar)            (prediction)
    v_t = k_t x_t + e_t,                e_t ~ N(0, 1 / lambda_v_t)   (observation)

so with phi_t = lambda_v_t k_t^2 and d_t = a_bar^2 + p_bar lam_{t-1}:

    lam_t = lam_{t-1} / d_t + phi_t
    eta_t = (a_bar / d_t) eta_{t-1} + lambda_v_t v_t k_t
    y_t[m] = sum_s q_t[s] eta_t[m, s] / lam_t[m, s],   y_var_t[m] = sum_s q_t[s]^2 / lam_t[m, s].

(lam_0, eta_0) is the belief about the state *before* token 1, so token 1 is predicted
first (default lam_0 = 1, eta_0 = 0). The derivation, the parallel forms and the
adjoint recurrences are in docs/math/kla.md. This module is plain NumPy float64 and
sequential: slow and obviously right. Fast paths live in ``bayesfilt.scan.diagonal``
(parallel forms) and ``bayesfilt.nn.functional`` (torch / Triton).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import value_error
from ..validation import as_float_array, check_finite


@dataclass(frozen=True)
class DiagonalFilterResult:
    """Output of :func:`diagonal_information_filter`.

    Attributes:
        y: readout mean, shape (B, L, M).
        y_var: readout variance, shape (B, L, M).
        lam: final precision lam_L, shape (B, M, S).
        eta: final information vector eta_L, shape (B, M, S).
        lams: precision path lam_1..lam_L, shape (B, L, M, S).
        etas: information path eta_1..eta_L, shape (B, L, M, S).

    Example:
        >>> import numpy as np
        >>> res = diagonal_information_filter(np.ones((1, 2, 1)), np.ones((1, 2, 1)), np.ones((1, 2, 1)),
        ...     np.ones((1, 2, 1)), np.ones((1, 1)), np.zeros((1, 1)))
        >>> res.lams[0, :, 0, 0].tolist(), res.etas[0, :, 0, 0].tolist()
        ([2.0, 3.0], [1.0, 2.0])
    """

    y: np.ndarray
    y_var: np.ndarray
    lam: np.ndarray
    eta: np.ndarray
    lams: np.ndarray
    etas: np.ndarray


def diagonal_information_filter(v, lambda_v, k, q, a_bar, p_bar, initial_state=None,
                                prior_readout: bool = False) -> DiagonalFilterResult:
    """Sequential float64 reference of the KLA diagonal information filter.

    Model (per lane m, s; docs/math/kla.md): x_t = a_bar x_{t-1} + N(0, p_bar),
    v_t[m] = k_t[s] x_t + N(0, 1 / lambda_v_t[m]); every lane filtered independently.

    Args:
        v: values, shape (B, L, M).
        lambda_v: value precisions, shape (B, L, M), every entry > 0.
        k: keys, shape (B, L, S).
        q: queries, shape (B, L, S).
        a_bar: discretised decay, shape (M, S), entries in (0, 1].
        p_bar: discretised process-noise variance, shape (M, S), entries >= 0.
        initial_state: optional ``(lam_0, eta_0)``, each of shape (B, M, S) (or
            broadcastable to it), lam_0 > 0. Default lam_0 = 1, eta_0 = 0.
        prior_readout: if False (default) read out the posterior of x_t:
            y_t = sum_s q_t mu_t, y_var_t = sum_s q_t^2 / lam_t. If True read out the
            one-step-ahead prior of x_{t+1} *instead*, with the same query q_t:
            y_t = sum_s q_t a_bar mu_t, y_var_t = sum_s q_t^2 (a_bar^2 / lam_t + p_bar).
            The returned final state is the posterior (lam_L, eta_L) either way.

    Returns:
        A :class:`DiagonalFilterResult` (float64 arrays).

    Example:
        >>> import numpy as np
        >>> from bayesfilt.filters.diagonal import diagonal_information_filter
        >>> rng = np.random.default_rng(0)
        >>> B, L, M, S = 1, 5, 2, 3
        >>> res = diagonal_information_filter(rng.standard_normal((B, L, M)), np.ones((B, L, M)),
        ...     rng.standard_normal((B, L, S)), rng.standard_normal((B, L, S)),
        ...     np.full((M, S), 0.9), np.full((M, S), 0.1))
        >>> res.y.shape, res.lam.shape
        ((1, 5, 2), (1, 2, 3))
    """
    v, lambda_v, k, q, a_bar, p_bar, lam, eta = _validate(v, lambda_v, k, q, a_bar, p_bar, initial_state)
    B, L, M = v.shape
    S = k.shape[-1]
    lams = np.empty((B, L, M, S))
    etas = np.empty((B, L, M, S))
    y = np.empty((B, L, M))
    y_var = np.empty((B, L, M))
    a2 = a_bar * a_bar                                              # a_bar^2
    for t in range(L):
        kt = k[:, t, None, :]                                       # k_t[s], broadcast over m
        qt = q[:, t, None, :]                                       # q_t[s], broadcast over m
        lv = lambda_v[:, t, :, None]                                # lambda_v_t[m], broadcast over s
        phi = lv * kt * kt                                          # phi_t = lambda_v_t k_t^2
        d = a2 + p_bar * lam                                        # d_t = a_bar^2 + p_bar lam_{t-1}
        f = a_bar / d                                               # f_t = a_bar / d_t
        lam = lam / d + phi                                         # lam_t = lam_{t-1} / d_t + phi_t
        eta = f * eta + lv * v[:, t, :, None] * kt                  # eta_t = f_t eta_{t-1} + lambda_v_t v_t k_t
        mu = eta / lam                                              # mu_t = eta_t / lam_t
        if prior_readout:
            y[:, t] = (qt * a_bar * mu).sum(-1)                     # y_t = sum_s q_t a_bar mu_t
            y_var[:, t] = (qt * qt * (a2 / lam + p_bar)).sum(-1)    # y_var_t = sum_s q_t^2 (a_bar^2 / lam_t + p_bar)
        else:
            y[:, t] = (qt * mu).sum(-1)                             # y_t = sum_s q_t mu_t
            y_var[:, t] = (qt * qt / lam).sum(-1)                   # y_var_t = sum_s q_t^2 / lam_t
        lams[:, t] = lam
        etas[:, t] = eta
    return DiagonalFilterResult(y=y, y_var=y_var, lam=lam, eta=eta, lams=lams, etas=etas)


def _validate(v, lambda_v, k, q, a_bar, p_bar, initial_state):
    """Check shapes and ranges; return float64 arrays and the initial (lam_0, eta_0) of shape (B, M, S)."""
    arrs = {}
    for name, x in (("v", v), ("lambda_v", lambda_v), ("k", k), ("q", q), ("a_bar", a_bar), ("p_bar", p_bar)):
        arrs[name] = as_float_array(x, name, dtype=np.float64)
        check_finite(arrs[name], name)
    v = arrs["v"]
    if v.ndim != 3:
        raise value_error("v", f"has shape {v.shape}", "pass values of shape (B, L, M)")
    B, L, M = v.shape
    if L == 0:
        raise value_error("v", "has zero tokens (L = 0)", "pass at least one token")
    if arrs["lambda_v"].shape != (B, L, M):
        raise value_error("lambda_v", f"has shape {arrs['lambda_v'].shape}", f"pass shape (B, L, M) = {(B, L, M)} like v")
    k = arrs["k"]
    if k.ndim != 3 or k.shape[:2] != (B, L):
        raise value_error("k", f"has shape {k.shape}", f"pass keys of shape (B, L, S) with (B, L) = {(B, L)}")
    S = k.shape[2]
    if arrs["q"].shape != (B, L, S):
        raise value_error("q", f"has shape {arrs['q'].shape}", f"pass shape (B, L, S) = {(B, L, S)} like k")
    for name in ("a_bar", "p_bar"):
        if arrs[name].shape != (M, S):
            raise value_error(name, f"has shape {arrs[name].shape}", f"pass shape (M, S) = {(M, S)}")
    if (arrs["lambda_v"] <= 0).any():
        raise value_error("lambda_v", f"has a non-positive entry (min {arrs['lambda_v'].min():.6g})",
                          "pass precisions > 0 (e.g. 1 / (softplus(x) + 1e-4))")
    a = arrs["a_bar"]
    if ((a <= 0) | (a > 1)).any():
        raise value_error("a_bar", f"has an entry outside (0, 1] (min {a.min():.6g}, max {a.max():.6g})",
                          "pass a_bar = exp(-a * dt) with a >= 0, dt > 0")
    if (arrs["p_bar"] < 0).any():
        raise value_error("p_bar", f"has a negative entry (min {arrs['p_bar'].min():.6g})", "pass p_bar >= 0")
    if initial_state is None:
        lam0 = np.ones((B, M, S))                                   # lam_0 = 1 (default prior precision)
        eta0 = np.zeros((B, M, S))                                  # eta_0 = 0 (default prior mean 0)
    else:
        try:
            lam0, eta0 = initial_state
        except (TypeError, ValueError):
            raise value_error("initial_state", f"is a {type(initial_state).__name__}",
                              "pass a pair (lam_0, eta_0) of arrays of shape (B, M, S)") from None
        lam0 = as_float_array(lam0, "initial_state.lam", dtype=np.float64)
        eta0 = as_float_array(eta0, "initial_state.eta", dtype=np.float64)
        for name, x in (("initial_state.lam", lam0), ("initial_state.eta", eta0)):
            check_finite(x, name)
            try:
                np.broadcast_to(x, (B, M, S))
            except ValueError:
                raise value_error(name, f"has shape {x.shape}", f"pass shape (B, M, S) = {(B, M, S)}") from None
        if (lam0 <= 0).any():
            raise value_error("initial_state.lam", f"has a non-positive entry (min {lam0.min():.6g})",
                              "pass a prior precision > 0")
        lam0 = np.broadcast_to(lam0, (B, M, S)).copy()
        eta0 = np.broadcast_to(eta0, (B, M, S)).copy()
    return v, arrs["lambda_v"], k, arrs["q"], a, arrs["p_bar"], lam0, eta0
