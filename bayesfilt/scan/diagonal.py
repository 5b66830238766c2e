"""Parallel-in-time forms of the KLA diagonal information filter (spec: ``bayesfilt.filters.diagonal``).

The precision recursion lam_t = lam_{t-1} / (a^2 + p lam_{t-1}) + phi_t is a Möbius map of
lam_{t-1} with the matrix M_t = [[1 + p phi_t, a^2 phi_t], [p, a^2]]; composing maps is
multiplying matrices, so a prefix scan of 2x2 products (renormalised by their trace, which
is positive since every entry is >= 0 and the diagonal > 0) gives every lam_t. Given the
precision path, eta_t = f_t eta_{t-1} + beta_t with f_t = a / (a^2 + p lam_{t-1}) is an
affine recursion, scanned with pairs (A, b). docs/math/kla.md derives both and the adjoint
(backward) recurrences, which are two more affine scans run in reverse time.
:func:`diagonal_filter_loop` and :func:`diagonal_filter_adjoint_loop` run the same recurrences as loops over
time, vectorised over the lanes (the torch backend's form on the CPU with many lanes). The moment form (variance
and mean per lane, free of overflow at p = 0) has the same four: :func:`diagonal_filter_scan_moments`,
:func:`diagonal_filter_loop_moments` and their adjoints :func:`diagonal_filter_adjoint_moments`,
:func:`diagonal_filter_adjoint_moments_loop` (docs/math/kla.md §6-7).

Everything here is array-generic: the same code runs on NumPy arrays and on torch tensors
(CPU or GPU), vectorised over all lanes and, in the tree schedule, over time. No
validation (these are kernels; the public boundary is ``bayesfilt.nn.functional``).

Scan elements and their ``combine(earlier, later)`` (associative):

- Möbius: a tuple (m11, m12, m21, m22) of equally shaped arrays; combine = later @ earlier,
  divided by its trace.
- affine: a pair (A, b); combine = (A2 A1, A2 b1 + b2).

Schedules: those of the shared generic scan ``bayesfilt.scan.core.scan`` (``"sequential"``
fold, ``"tree"`` work-efficient odd/even tree, ``"chunked"`` fold-inside-chunks); all give
the same prefixes because the combines are associative. Elements here carry time on axis
1, shape (B, L, M, S); :func:`scan` moves it to the front for the shared machinery.

Example:
    >>> import numpy as np
    >>> from bayesfilt.scan.diagonal import diagonal_filter_scan
    >>> rng = np.random.default_rng(0)
    >>> B, L, M, S = 1, 7, 2, 3
    >>> out = diagonal_filter_scan(rng.standard_normal((B, L, M)), np.ones((B, L, M)),
    ...     rng.standard_normal((B, L, S)), rng.standard_normal((B, L, S)),
    ...     np.full((M, S), 0.9), np.full((M, S), 0.1), np.ones((B, M, S)), np.zeros((B, M, S)))
    >>> out.y.shape, out.lams.shape
    ((1, 7, 2), (1, 7, 2, 3))
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from .core import SCHEDULES, scan as core_scan

__all__ = ["SCHEDULES", "affine_combine", "diagonal_filter_adjoint", "diagonal_filter_adjoint_loop",
           "diagonal_filter_adjoint_moments", "diagonal_filter_adjoint_moments_loop", "diagonal_filter_loop",
           "diagonal_filter_loop_moments", "diagonal_filter_scan", "diagonal_filter_scan_moments", "mobius_combine",
           "precision_path", "readout", "scan"]


# ----------------------------------------------------------------------------- array helpers
def _is_numpy(x) -> bool:
    return isinstance(x, np.ndarray) or np.isscalar(x)


def _cat(xs: Sequence, axis: int):
    if _is_numpy(xs[0]):
        return np.concatenate(xs, axis=axis)
    import torch
    return torch.cat(list(xs), dim=axis)


def _stack(xs: Sequence, axis: int):
    if _is_numpy(xs[0]):
        return np.stack(xs, axis=axis)
    import torch
    return torch.stack(list(xs), dim=axis)


def _flip(x, axis: int):
    if _is_numpy(x):
        return np.flip(x, axis=axis)
    return x.flip(axis)


def _take(x, start: int, stop: int | None, axis: int = 1):
    idx = [slice(None)] * x.ndim
    idx[axis] = slice(start, stop)
    return x[tuple(idx)]


# ----------------------------------------------------------------------------- scan elements
def mobius_combine(earlier: tuple, later: tuple) -> tuple:
    """Compose two Möbius maps: ``later ∘ earlier`` = later @ earlier, renormalised by its trace.

    Args:
        earlier: (m11, m12, m21, m22), the map applied first.
        later: (m11, m12, m21, m22), the map applied second.

    Returns:
        The composed map as (m11, m12, m21, m22); any positive rescaling is the same map.

    Example:
        >>> mobius_combine((1.0, 2.0, 0.5, 1.0), (1.0, 0.0, 0.0, 1.0))
        (0.5, 1.0, 0.25, 0.5)
    """
    a11, a12, a21, a22 = earlier
    b11, b12, b21, b22 = later
    c11 = b11 * a11 + b12 * a21                                    # (B A)_11
    c12 = b11 * a12 + b12 * a22                                    # (B A)_12
    c21 = b21 * a11 + b22 * a21                                    # (B A)_21
    c22 = b21 * a12 + b22 * a22                                    # (B A)_22
    tr = c11 + c22                                                 # trace > 0 (entries >= 0, diagonal > 0)
    return c11 / tr, c12 / tr, c21 / tr, c22 / tr


def affine_combine(earlier: tuple, later: tuple) -> tuple:
    """Compose two affine maps x -> A x + b: ``later ∘ earlier`` = (A2 A1, A2 b1 + b2).

    The maps are elementwise (one scalar map per lane), so A and b are scalars or equally
    shaped arrays / tensors; the combine is associative but not commutative.

    Args:
        earlier: (A1, b1), the map applied first.
        later: (A2, b2), the map applied second.

    Returns:
        The composed map as the pair (A2 A1, A2 b1 + b2).

    Example:
        >>> affine_combine((2.0, 1.0), (3.0, 0.5))
        (6.0, 3.5)
    """
    A1, b1 = earlier
    A2, b2 = later
    return A2 * A1, A2 * b1 + b2                                   # (A2 A1, A2 b1 + b2)


def mobius_apply(mat: tuple, lam):
    """Apply the Möbius map (m11, m12, m21, m22) to lam: (m11 lam + m12) / (m21 lam + m22)."""
    m11, m12, m21, m22 = mat
    return (m11 * lam + m12) / (m21 * lam + m22)


def affine_apply(aff: tuple, x):
    """Apply the affine map (A, b) to x: A x + b."""
    A, b = aff
    return A * x + b


def scan(elems: tuple, kind: str, schedule: str = "tree", chunk: int | None = None, axis: int = 1) -> tuple:
    """Inclusive prefix scan of Möbius (``kind="mobius"``) or affine (``kind="affine"``) elements.

    Args:
        elems: the elements, arrays with time on ``axis``.
        kind: "mobius" or "affine".
        schedule: "sequential", "tree" or "chunked".
        chunk: chunk length for "chunked".
        axis: time axis.

    Returns:
        The prefixes, same structure and shapes as ``elems``.

    Example:
        >>> import numpy as np
        >>> A = np.array([[2.0, 3.0]]); b = np.array([[1.0, 1.0]])
        >>> [x.tolist() for x in scan((A, b), "affine")]
        [[[2.0, 6.0]], [[1.0, 4.0]]]
    """
    combine = mobius_combine if kind == "mobius" else affine_combine
    moved = tuple(_moveaxis(e, axis, 0) for e in elems)             # the shared scan wants time first
    out = core_scan(moved, combine, schedule, chunk_size=chunk)
    return tuple(_moveaxis(o, 0, axis) for o in out)


def _moveaxis(x, src: int, dst: int):
    if _is_numpy(x):
        return np.moveaxis(x, src, dst)
    return x.movedim(src, dst)


# ----------------------------------------------------------------------------- the filter
class DiagonalScanOutput(NamedTuple):
    """Output of :func:`diagonal_filter_scan`: readouts (B, L, M) and paths (B, L, M, S)."""

    y: object
    y_var: object
    lams: object
    etas: object


def precision_path(lambda_v, k, a_bar, p_bar, lam0, schedule: str = "tree", chunk: int | None = None):
    """The precision path lam_1..lam_L by a prefix scan of Möbius maps (docs/math/kla.md).

    Step t maps lam_{t-1} to lam_t = lam_{t-1} / (a^2 + p lam_{t-1}) + phi_t with
    phi_t = lambda_v_t k_t^2, the Möbius map of the matrix [[1 + p phi_t, a^2 phi_t], [p, a^2]];
    the scanned (trace-renormalised) matrix products applied to lam_0 give every lam_t at
    once. NumPy or torch; no validation.

    Args:
        lambda_v: value precisions, (B, L, M), entries > 0.
        k: keys, (B, L, S).
        a_bar: discretised decay a, (M, S), entries in (0, 1].
        p_bar: discretised process-noise variance p, (M, S), entries >= 0.
        lam0: initial precision lam_0, (B, M, S), entries > 0.
        schedule: "tree" (default), "chunked" or "sequential".
        chunk: chunk length for "chunked".

    Returns:
        lam_1..lam_L, shape (B, L, M, S).

    Example:
        >>> import numpy as np
        >>> ones = np.ones((1, 3, 1))                 # B = 1, L = 3, M = S = 1; phi_t = 1
        >>> precision_path(ones, ones, np.ones((1, 1)), np.zeros((1, 1)), np.ones((1, 1, 1)))[0, :, 0, 0].tolist()
        [2.0, 3.0, 4.0]
        >>> precision_path(ones, ones, np.ones((1, 1)), np.ones((1, 1)), np.ones((1, 1, 1)))[0, :, 0, 0].round(4).tolist()
        [1.5, 1.6, 1.6154]
    """
    kt = k[:, :, None, :]                                            # k_t[s] over m
    phi = lambda_v[:, :, :, None] * kt * kt                          # phi_t = lambda_v_t k_t^2
    a2 = a_bar * a_bar                                               # a^2
    one = phi * 0 + 1
    m11 = one + p_bar * phi                                          # M_11 = 1 + p phi_t
    m12 = a2 * phi                                                   # M_12 = a^2 phi_t
    m21 = one * p_bar                                                # M_21 = p
    m22 = one * a2                                                   # M_22 = a^2
    pref = scan((m11, m12, m21, m22), "mobius", schedule, chunk)     # P_t = M_t ... M_1 (renormalised)
    return mobius_apply(pref, lam0[:, None])                         # lam_t = P_t . lam_0


def diagonal_filter_scan(v, lambda_v, k, q, a_bar, p_bar, lam0, eta0, prior_readout: bool = False,
                         schedule: str = "tree", chunk: int | None = None) -> DiagonalScanOutput:
    """The KLA diagonal information filter as two parallel scans (NumPy or torch, no validation).

    Same model and arguments as :func:`bayesfilt.filters.diagonal.diagonal_information_filter`
    (docs/math/kla.md), with the initial state given explicitly.

    Args:
        v, lambda_v: (B, L, M).
        k, q: (B, L, S).
        a_bar, p_bar: (M, S).
        lam0, eta0: (B, M, S) initial precision and information.
        prior_readout: read out the one-step-ahead prior instead of the posterior.
        schedule: "tree" (default), "chunked" or "sequential".
        chunk: chunk length for "chunked".

    Returns:
        :class:`DiagonalScanOutput` (y, y_var (B, L, M); lams, etas (B, L, M, S)).

    Example:
        The tree scan reproduces the sequential float64 reference:

        >>> import numpy as np
        >>> from bayesfilt.filters.diagonal import diagonal_information_filter
        >>> rng = np.random.default_rng(0)
        >>> B, L, M, S = 2, 9, 3, 4
        >>> v, k, q = rng.standard_normal((B, L, M)), rng.standard_normal((B, L, S)), rng.standard_normal((B, L, S))
        >>> lambda_v = rng.uniform(0.5, 2.0, (B, L, M))
        >>> a_bar, p_bar = rng.uniform(0.5, 1.0, (M, S)), rng.uniform(0.0, 0.2, (M, S))
        >>> out = diagonal_filter_scan(v, lambda_v, k, q, a_bar, p_bar, np.ones((B, M, S)), np.zeros((B, M, S)))
        >>> ref = diagonal_information_filter(v, lambda_v, k, q, a_bar, p_bar)   # lam_0 = 1, eta_0 = 0
        >>> out.y.shape, out.etas.shape
        ((2, 9, 3), (2, 9, 3, 4))
        >>> bool(np.abs(out.y - ref.y).max() < 1e-12), bool(np.abs(out.y_var - ref.y_var).max() < 1e-12)
        (True, True)
    """
    lams = precision_path(lambda_v, k, a_bar, p_bar, lam0, schedule, chunk)
    lam_prev = _cat([lam0[:, None], _take(lams, 0, -1)], 1)          # lam_{t-1}
    a2 = a_bar * a_bar
    f = a_bar / (a2 + p_bar * lam_prev)                              # f_t = a / (a^2 + p lam_{t-1})
    beta = (lambda_v * v)[:, :, :, None] * k[:, :, None, :]          # beta_t = lambda_v_t v_t k_t
    pref = scan((f, beta), "affine", schedule, chunk)                # (A_t, b_t) = prefix of (f, beta)
    etas = affine_apply(pref, eta0[:, None])                         # eta_t = A_t eta_0 + b_t
    y, y_var = readout(lams, etas, q, a_bar, p_bar, prior_readout)
    return DiagonalScanOutput(y, y_var, lams, etas)


def diagonal_filter_scan_moments(v, lambda_v, k, q, a_bar, p_bar, lam0, eta0, prior_readout: bool = False,
                                 schedule: str = "tree", chunk: int | None = None) -> DiagonalScanOutput:
    """The same filter as :func:`diagonal_filter_scan`, run in moment (covariance) form per lane.

    Mathematically identical, but free of overflow when p = 0: there lam_t grows like
    a^(-2t) (past float32's range within a few hundred steps for a = 0.9, past float64's
    within a few thousand), while the variance sig2_t = 1 / lam_t and the mean mu_t stay bounded.

    - variance: the inverse Möbius map. If lam_t = (m11 lam + m12) / (m21 lam + m22), then
      sig2_t = (m21 + m22 sig2) / (m11 + m12 sig2), i.e. the matrix [[a^2, p], [a^2 phi_t, 1 + p phi_t]]:
      sig2_t = P_t / (1 + phi_t P_t) with the prior variance P_t = a^2 sig2_{t-1} + p; scanned
      with the same trace-renormalised products (all entries >= 0, diagonal > 0).
    - mean: mu_t = g_t mu_{t-1} + h_t with g_t = a / (1 + phi_t P_t) in (0, a] and
      h_t = P_t lambda_v_t k_t v_t / (1 + phi_t P_t) (from mu_t = eta_t / lam_t and
      f_t lam_{t-1} = a / P_t), an affine scan with bounded coefficients.

    Args:
        v, lambda_v, k, q, a_bar, p_bar, lam0, eta0, prior_readout, schedule, chunk: as
            :func:`diagonal_filter_scan`.

    Returns:
        :class:`DiagonalScanOutput` whose ``lams``/``etas`` fields hold the variance path
        sig2_1..sig2_L and the mean path mu_1..mu_L (B, L, M, S), not lam and eta
        (lam_L = 1 / sig2_L may be inf in float32 for p = 0 over long sequences).

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> B, L, M, S = 2, 9, 3, 4
        >>> args = (rng.standard_normal((B, L, M)), rng.uniform(0.5, 2.0, (B, L, M)), rng.standard_normal((B, L, S)),
        ...         rng.standard_normal((B, L, S)), rng.uniform(0.5, 1.0, (M, S)), rng.uniform(0.0, 0.2, (M, S)),
        ...         np.full((B, M, S), 2.0), rng.standard_normal((B, M, S)))
        >>> info, mom = diagonal_filter_scan(*args), diagonal_filter_scan_moments(*args)
        >>> bool(np.allclose(mom.y, info.y) and np.allclose(mom.y_var, info.y_var))
        True
        >>> bool(np.allclose(mom.lams, 1 / info.lams) and np.allclose(mom.etas, info.etas / info.lams))
        True
    """
    kt = k[:, :, None, :]                                            # k_t[s] over m
    lv = lambda_v[:, :, :, None]                                     # lambda_v_t[m] over s
    phi = lv * kt * kt                                               # phi_t = lambda_v_t k_t^2
    a2 = a_bar * a_bar                                               # a^2
    one = phi * 0 + 1
    n11 = one * a2                                                   # N_11 = a^2
    n12 = one * p_bar                                                # N_12 = p
    n21 = a2 * phi                                                   # N_21 = a^2 phi_t
    n22 = one + p_bar * phi                                          # N_22 = 1 + p phi_t
    pref = scan((n11, n12, n21, n22), "mobius", schedule, chunk)     # products of the inverse maps
    sig20 = 1.0 / lam0                                               # sig2_0 = 1 / lam_0
    sig2s = mobius_apply(pref, sig20[:, None])                       # sig2_t = N_t ... N_1 . sig2_0
    sig2_prev = _cat([sig20[:, None], _take(sig2s, 0, -1)], 1)       # sig2_{t-1}
    prior_var = a2 * sig2_prev + p_bar                               # P_t = a^2 sig2_{t-1} + p
    den = 1.0 + phi * prior_var                                      # 1 + phi_t P_t
    g = a_bar / den                                                  # g_t = a / (1 + phi_t P_t)
    h = prior_var * lv * kt * v[:, :, :, None] / den                 # h_t = P_t lambda_v_t k_t v_t / (1 + phi_t P_t)
    mus = affine_apply(scan((g, h), "affine", schedule, chunk), (eta0 * sig20)[:, None])  # mu_t, mu_0 = eta_0/lam_0
    qs = q[:, :, None, :]
    if prior_readout:
        y = (qs * (a_bar * mus)).sum(-1)                             # y_t = sum_s q_t a mu_t
        y_var = (qs * qs * (a2 * sig2s + p_bar)).sum(-1)             # y_var_t = sum_s q_t^2 (a^2 sig2_t + p)
    else:
        y = (qs * mus).sum(-1)                                       # y_t = sum_s q_t mu_t
        y_var = (qs * qs * sig2s).sum(-1)                            # y_var_t = sum_s q_t^2 sig2_t
    return DiagonalScanOutput(y, y_var, sig2s, mus)


def readout(lams, etas, q, a_bar, p_bar, prior_readout: bool = False):
    """Read the mean and variance of every step out of the filter's paths (NumPy or torch).

    With mu_t = eta_t / lam_t, the posterior readout (default) is y_t = sum_s q_t mu_t,
    y_var_t = sum_s q_t^2 / lam_t; the one-step-ahead prior readout (``prior_readout=True``)
    is y_t = sum_s q_t a mu_t, y_var_t = sum_s q_t^2 (a^2 / lam_t + p).

    Args:
        lams: precision path lam_1..lam_L, (B, L, M, S).
        etas: information path eta_1..eta_L, (B, L, M, S).
        q: queries, (B, L, S).
        a_bar, p_bar: discretised decay and process-noise variance, (M, S); only the prior
            readout uses them.
        prior_readout: read out the one-step-ahead prior instead of the posterior.

    Returns:
        (y, y_var), each of shape (B, L, M).

    Example:
        >>> import numpy as np
        >>> lams = np.full((1, 1, 1, 2), 2.0); etas = np.array([[[[1.0, 4.0]]]])   # mu = (0.5, 2)
        >>> q, a_bar, p_bar = np.ones((1, 1, 2)), np.full((1, 2), 0.5), np.zeros((1, 2))
        >>> [x.tolist() for x in readout(lams, etas, q, a_bar, p_bar)]
        [[[[2.5]]], [[[1.0]]]]
        >>> [x.tolist() for x in readout(lams, etas, q, a_bar, p_bar, prior_readout=True)]
        [[[[1.25]]], [[[0.25]]]]
    """
    qs = q[:, :, None, :]
    mu = etas / lams                                                 # mu_t = eta_t / lam_t
    if prior_readout:
        y = (qs * (a_bar * mu)).sum(-1)                              # y_t = sum_s q_t a mu_t
        y_var = (qs * qs * (a_bar * a_bar / lams + p_bar)).sum(-1)   # y_var_t = sum_s q_t^2 (a^2/lam_t + p)
    else:
        y = (qs * mu).sum(-1)                                        # y_t = sum_s q_t mu_t
        y_var = (qs * qs / lams).sum(-1)                             # y_var_t = sum_s q_t^2 / lam_t
    return y, y_var


class DiagonalScanGrads(NamedTuple):
    """Gradients returned by the adjoints (:func:`diagonal_filter_adjoint`, :func:`diagonal_filter_adjoint_loop`,
    :func:`diagonal_filter_adjoint_moments`, :func:`diagonal_filter_adjoint_moments_loop`), shaped as the inputs."""

    v: object
    lambda_v: object
    k: object
    q: object
    a_bar: object
    p_bar: object
    lam0: object
    eta0: object


def _input_grads(lv, vv, kt, G_phi, G_u) -> tuple:
    """dLoss/dv, dLoss/dlambda_v, dLoss/dk from the adjoints of phi = lambda_v k^2 and u = lambda_v v k per lane
    (docs/math/kla.md §4 with (G_phi, G_u) = (G^lam, G^eta), §7 with (Phi, U)): of every step, lanes (B, L, M, S),
    or of one step, (B, M, S); lv, vv broadcast over s, kt over m."""
    g_v = lv[..., 0] * (kt * G_u).sum(-1)                            # d u/dv = lv k
    g_lv = (kt * kt * G_phi + vv * kt * G_u).sum(-1)                 # d phi/dlv = k^2, d u/dlv = v k
    g_k = (lv * (2.0 * kt * G_phi + vv * G_u)).sum(-2)               # d phi/dk = 2 lv k, d u/dk = lv v
    return g_v, g_lv, g_k


class _LoopSetup(NamedTuple):
    """What the reverse loops start from (``_loop_grads_setup``)."""
    g_v: object                     # (B, L, M) gradient buffers, filled by the loop
    g_lv: object
    g_k: object                     # (B, L, S)
    g_q: object
    g_y: object                     # upstream gradients of y and y_var, (B, L, M) (zeros for None)
    g_y_var: object
    a2: object                      # a^2, (M, S)
    c_mean: object                  # the readout's factors: y_t = sum q c_mean mu_t,
    c_var: object                   # y_var_t = sum q^2 (c_var var_t [+ p]) (a, a^2 for the prior readout, else 1)


def _loop_grads_setup(v, k, q, a_bar, g_y, g_y_var, prior_readout: bool) -> _LoopSetup:
    """What the reverse loops start from: the gradient buffers of v, lambda_v, k, q, the upstream gradients of y
    and y_var (None = zero), a^2 and the readout's factors (:class:`_LoopSetup`)."""
    B, L, M = v.shape
    S = k.shape[-1]
    bufs = _empty(v, (B, L, M)), _empty(v, (B, L, M)), _empty(k, (B, L, S)), _empty(q, (B, L, S))
    g_y = v * 0 if g_y is None else g_y
    g_y_var = v * 0 if g_y_var is None else g_y_var
    a2 = a_bar * a_bar
    return _LoopSetup(*bufs, g_y, g_y_var, a2, a_bar if prior_readout else 1.0, a2 if prior_readout else 1.0)


def _loop_token(v, lambda_v, k, q, g_y, g_y_var, t: int) -> tuple:
    """Token t of the reverse loops, broadcast over the lanes: k_t[s], q_t[s] (B, 1, S) and lambda_v_t[m], v_t[m],
    dLoss/dy_t[m], dLoss/dy_var_t[m] (B, M, 1)."""
    return (k[:, t, None, :], q[:, t, None, :], lambda_v[:, t, :, None], v[:, t, :, None], g_y[:, t, :, None],
            g_y_var[:, t, :, None])


def _loop_readout_grads(gy, gv, qt, q_t, mu, w, a_bar, p_bar, c_mean, c_var, prior_readout: bool) -> tuple:
    """The readout's own gradients at one token, from the posterior (w_t = 1/lam_t, mu_t): dLoss/dq_t (B, S) and,
    with the prior readout, its terms of dLoss/da and dLoss/dp summed over b (None without)."""
    var = c_var * w + p_bar if prior_readout else w                  # d y_var_t / d q_t^2
    g_q = (gy * c_mean * mu).sum(1) + 2.0 * q_t * (gv * var).sum(1)  # dy/dq = c mu, dy_var/dq = 2 q var
    if not prior_readout:
        return g_q, None, None
    return g_q, (gy * qt * mu + gv * qt * qt * 2.0 * a_bar * w).sum(0), (gv * qt * qt).sum(0)


def diagonal_filter_adjoint(v, lambda_v, k, q, a_bar, p_bar, lam0, eta0, g_y, g_y_var, g_lam=None, g_eta=None,
                            prior_readout: bool = False, schedule: str = "tree", chunk: int | None = None,
                            paths: tuple | None = None) -> DiagonalScanGrads:
    """Exact gradients of the filter by the adjoint (reverse-time) recurrences; NumPy or torch.

    Recomputes the forward paths (or takes ``paths=(lams, etas)``), then runs two reverse
    affine scans, for G_eta_t = dLoss/deta_t and G_lam_t = dLoss/dlam_t (docs/math/kla.md):

        G_eta_t = r_eta_t + f_{t+1} G_eta_{t+1}
        G_lam_t = r_lam_t + f_{t+1}^2 G_lam_{t+1} - p f_{t+1} eta_t G_eta_{t+1} / d_{t+1}

    where r_* are the direct readout (and final-state) gradients; parameter gradients are
    sums of per-step local derivatives. This is the specification the fused GPU backward follows.

    Args:
        v, lambda_v, k, q, a_bar, p_bar, lam0, eta0: as :func:`diagonal_filter_scan`.
        g_y, g_y_var: upstream gradients of y and y_var, (B, L, M) (None = zero).
        g_lam, g_eta: upstream gradients of the final state, (B, M, S) (None = zero).
        prior_readout, schedule, chunk: as in the forward.
        paths: optional precomputed (lams, etas) of the forward.

    Returns:
        :class:`DiagonalScanGrads` with one gradient per input.

    Example:
        The gradient of sum(g_y * y) with respect to one decay entry agrees with a
        central finite difference:

        >>> import numpy as np
        >>> rng = np.random.default_rng(1)
        >>> B, L, M, S = 1, 6, 2, 3
        >>> v, lambda_v = rng.standard_normal((B, L, M)), rng.uniform(0.5, 2.0, (B, L, M))
        >>> k, q = rng.standard_normal((B, L, S)), rng.standard_normal((B, L, S))
        >>> a_bar, p_bar = rng.uniform(0.5, 1.0, (M, S)), rng.uniform(0.0, 0.2, (M, S))
        >>> lam0, eta0 = np.ones((B, M, S)), np.zeros((B, M, S))
        >>> g_y = rng.standard_normal((B, L, M))
        >>> grads = diagonal_filter_adjoint(v, lambda_v, k, q, a_bar, p_bar, lam0, eta0, g_y, None)
        >>> def loss(a):
        ...     return float((g_y * diagonal_filter_scan(v, lambda_v, k, q, a, p_bar, lam0, eta0).y).sum())
        >>> e = np.zeros((M, S)); e[0, 1] = 1e-6
        >>> fd = (loss(a_bar + e) - loss(a_bar - e)) / 2e-6
        >>> bool(abs(grads.a_bar[0, 1] - fd) < 1e-6)
        True
        >>> grads.v.shape, grads.a_bar.shape, grads.lam0.shape
        ((1, 6, 2), (2, 3), (1, 2, 3))
    """
    if paths is None:
        out = diagonal_filter_scan(v, lambda_v, k, q, a_bar, p_bar, lam0, eta0, prior_readout, schedule, chunk)
        lams, etas = out.lams, out.etas
    else:
        lams, etas = paths
    zero_y = lams[..., 0] * 0
    g_y = zero_y if g_y is None else g_y
    g_y_var = zero_y if g_y_var is None else g_y_var
    lam_prev = _cat([lam0[:, None], _take(lams, 0, -1)], 1)          # lam_{t-1}
    eta_prev = _cat([eta0[:, None], _take(etas, 0, -1)], 1)          # eta_{t-1}
    a2 = a_bar * a_bar
    d = a2 + p_bar * lam_prev                                        # d_t = a^2 + p lam_{t-1}
    f = a_bar / d                                                    # f_t = a / d_t
    qs = q[:, :, None, :]
    gy = g_y[..., None]
    gv = g_y_var[..., None]
    inv_lam = 1.0 / lams
    mu = etas * inv_lam                                              # mu_t
    c_mean = a_bar if prior_readout else 1.0                         # y_t = sum q c_mean mu_t
    c_var = a2 if prior_readout else 1.0                             # y_var_t = sum q^2 (c_var / lam_t [+ p])
    r_eta = gy * qs * c_mean * inv_lam                               # dy/deta_t = q c_mean / lam_t
    r_lam = -(gy * qs * c_mean * mu + gv * qs * qs * c_var * inv_lam) * inv_lam  # -(q c mu + q^2 c_v / lam) / lam
    if g_eta is not None:
        r_eta = _cat([_take(r_eta, 0, -1), _take(r_eta, -1, None) + g_eta[:, None]], 1)
    if g_lam is not None:
        r_lam = _cat([_take(r_lam, 0, -1), _take(r_lam, -1, None) + g_lam[:, None]], 1)
    # G_eta_t = r_eta_t + f_{t+1} G_eta_{t+1}
    G_eta = _reverse(f, r_eta, schedule, chunk)
    # d lam_t / d lam_{t-1} = a^2 / d_t^2 = f_t^2;  d eta_t / d lam_{t-1} = -p f_t eta_{t-1} / d_t
    J = f * f
    K = -p_bar * f / d * eta_prev * G_eta                            # contribution at step t to G_lam_{t-1}
    K_next = _cat([_take(K, 1, None), _take(K, 0, 1) * 0], 1)        # K_{t+1} (0 after L)
    G_lam = _reverse(J, r_lam + K_next, schedule, chunk)
    # initial-state gradients: one more step back
    G_eta1 = _take(G_eta, 0, 1)[:, 0]
    G_lam1 = _take(G_lam, 0, 1)[:, 0]
    f1 = _take(f, 0, 1)[:, 0]
    g_eta0 = f1 * G_eta1                                             # dL/deta_0 = f_1 G_eta_1
    g_lam0 = f1 * f1 * G_lam1 + _take(K, 0, 1)[:, 0]                 # dL/dlam_0 = f_1^2 G_lam_1 + K_1
    # per-step local derivatives
    kt = k[:, :, None, :]
    lv = lambda_v[..., None]
    vv = v[..., None]
    g_v, g_lv, g_k = _input_grads(lv, vv, kt, G_lam, G_eta)         # d lam_t/d phi_t = d eta_t/d beta_t = 1
    if prior_readout:
        g_q = (gy * a_bar * mu).sum(2) + 2.0 * q * (gv * (a2 * inv_lam + p_bar)).sum(2)
    else:
        g_q = (gy * mu).sum(2) + 2.0 * q * (gv * inv_lam).sum(2)
    r = lam_prev / d                                                 # predicted precision lam_t^- = lam_{t-1}/d_t
    dlam_da = -2.0 * a_bar * r / d                                   # d lam_t / d a = -2 a lam_{t-1} / d_t^2
    df_da = (p_bar * r - a_bar * f) / d                              # d f_t / d a = (p lam_{t-1} - a^2) / d_t^2
    dlam_dp = -r * r                                                 # d lam_t / d p = -lam_{t-1}^2 / d_t^2
    df_dp = -f * r                                                   # d f_t / d p = -a lam_{t-1} / d_t^2
    g_a = (G_lam * dlam_da + G_eta * eta_prev * df_da).sum(1).sum(0)
    g_p = (G_lam * dlam_dp + G_eta * eta_prev * df_dp).sum(1).sum(0)
    if prior_readout:
        g_a = g_a + (gy * qs * mu + gv * qs * qs * 2.0 * a_bar * inv_lam).sum(1).sum(0)
        g_p = g_p + (gv * qs * qs).sum(1).sum(0)
    return DiagonalScanGrads(g_v, g_lv, g_k, g_q, g_a, g_p, g_lam0, g_eta0)


# ----------------------------------------------------------------------------- time loops, lanes vectorised
def _empty(like, shape):
    """An uninitialised array of ``shape`` with the dtype and device of ``like`` (NumPy or torch)."""
    return np.empty(shape, dtype=like.dtype) if _is_numpy(like) else like.new_empty(shape)


def diagonal_filter_loop(v, lambda_v, k, q, a_bar, p_bar, lam0, eta0, prior_readout: bool = False,
                         paths: bool = False):
    """The same filter as :func:`diagonal_filter_scan` as a loop over time, vectorised over the B x M x S lanes.

    Work O(B L M S) and, without ``paths``, memory O(B M S + B L M): no (B, L, M, S) array. On a CPU with
    many lanes this beats the parallel forms by far (their scans build four (B, L, M, S) matrix entries and
    combine them over log L levels, or fold them one step at a time through the shared scan machinery); with
    few lanes and long sequences the tree scan wins (``bayesfilt.nn.functional`` picks). NumPy or torch, no
    validation.

    Args:
        v, lambda_v, k, q, a_bar, p_bar, lam0, eta0, prior_readout: as :func:`diagonal_filter_scan`.
        paths: also return the paths lam_1..lam_L and eta_1..eta_L (B, L, M, S), which
            :func:`diagonal_filter_adjoint_loop` reads.

    Returns:
        :class:`DiagonalScanOutput`: y, y_var (B, L, M); ``lams``, ``etas`` the paths when ``paths``, else the
        final state lam_L, eta_L (B, M, S).

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> B, L, M, S = 2, 9, 3, 4
        >>> args = (rng.standard_normal((B, L, M)), rng.uniform(0.5, 2.0, (B, L, M)), rng.standard_normal((B, L, S)),
        ...         rng.standard_normal((B, L, S)), rng.uniform(0.5, 1.0, (M, S)), rng.uniform(0.0, 0.2, (M, S)),
        ...         np.full((B, M, S), 2.0), rng.standard_normal((B, M, S)))
        >>> tree, loop = diagonal_filter_scan(*args), diagonal_filter_loop(*args)
        >>> bool(np.abs(loop.y - tree.y).max() < 1e-12 and np.allclose(loop.lams, tree.lams[:, -1]))
        True
    """
    B, L, M = v.shape
    S = k.shape[-1]
    y, y_var = _empty(v, (B, L, M)), _empty(v, (B, L, M))
    lams, etas = (_empty(v, (B, L, M, S)), _empty(v, (B, L, M, S))) if paths else (None, None)
    a2 = a_bar * a_bar                                               # a^2
    c_var = a2 if prior_readout else 1.0                             # y_var_t = sum q^2 (c_var / lam_t [+ p])
    lam, eta = lam0, eta0
    for t in range(L):
        kt, qt = k[:, t, None, :], q[:, t, None, :]                  # k_t[s], q_t[s] over m
        lv = lambda_v[:, t, :, None]                                 # lambda_v_t[m] over s
        d = a2 + p_bar * lam                                         # d_t = a^2 + p lam_{t-1}
        eta = (a_bar / d) * eta + (lv * v[:, t, :, None]) * kt       # eta_t = (a / d_t) eta_{t-1} + lambda_v v_t k_t
        lam = lam / d + lv * kt * kt                                 # lam_t = lam_{t-1} / d_t + lambda_v_t k_t^2
        inv = 1.0 / lam
        mean = eta * inv * (a_bar if prior_readout else 1.0)         # mu_t (prior readout: a mu_t)
        y[:, t] = (qt * mean).sum(-1)                                # y_t = sum_s q_t (a) mu_t
        var = c_var * inv + p_bar if prior_readout else inv          # 1 / lam_t (prior: a^2 / lam_t + p)
        y_var[:, t] = (qt * qt * var).sum(-1)                        # y_var_t = sum_s q_t^2 var_t
        if paths:
            lams[:, t], etas[:, t] = lam, eta
    return DiagonalScanOutput(y, y_var, lams if paths else lam, etas if paths else eta)


def diagonal_filter_loop_moments(v, lambda_v, k, q, a_bar, p_bar, lam0, eta0, prior_readout: bool = False,
                                 paths: bool = False):
    """:func:`diagonal_filter_scan_moments` (the moment form, free of overflow at p = 0) as a loop over time.

    The same per-lane recurrences in variance and mean, one step per iteration, vectorised over the lanes; the
    outputs are built by stacking, without in-place writes (autograd differentiates it). NumPy or torch, no
    validation.

    Args:
        v, lambda_v, k, q, a_bar, p_bar, lam0, eta0, prior_readout: as :func:`diagonal_filter_scan`.
        paths: also return the paths sig2_1..sig2_L and mu_1..mu_L (B, L, M, S), which
            :func:`diagonal_filter_adjoint_moments_loop` reads.

    Returns:
        :class:`DiagonalScanOutput`: y, y_var (B, L, M); ``lams`` and ``etas`` hold the variance and mean,
        not lam and eta: the paths when ``paths``, else the final sig2_L and mu_L (B, M, S).

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> B, L, M, S = 2, 9, 3, 4
        >>> args = (rng.standard_normal((B, L, M)), rng.uniform(0.5, 2.0, (B, L, M)), rng.standard_normal((B, L, S)),
        ...         rng.standard_normal((B, L, S)), rng.uniform(0.5, 1.0, (M, S)), np.zeros((M, S)),
        ...         np.full((B, M, S), 2.0), rng.standard_normal((B, M, S)))
        >>> tree, loop = diagonal_filter_scan_moments(*args), diagonal_filter_loop_moments(*args)
        >>> bool(np.abs(loop.y - tree.y).max() < 1e-12 and np.allclose(loop.lams, tree.lams[:, -1]))
        True
    """
    L = v.shape[1]
    a2 = a_bar * a_bar                                               # a^2
    sig2, mu = 1.0 / lam0, eta0 / lam0                               # sig2_0 = 1 / lam_0, mu_0 = eta_0 / lam_0
    ys, y_vars, sig2s, mus = [], [], [], []
    for t in range(L):
        kt, qt = k[:, t, None, :], q[:, t, None, :]                  # k_t[s], q_t[s] over m
        lv = lambda_v[:, t, :, None]                                 # lambda_v_t[m] over s
        prior_var = a2 * sig2 + p_bar                                # P_t = a^2 sig2_{t-1} + p
        den = 1.0 + lv * kt * kt * prior_var                         # 1 + phi_t P_t
        mu = (a_bar / den) * mu + prior_var * lv * kt * v[:, t, :, None] / den   # mu_t = g_t mu_{t-1} + h_t
        sig2 = prior_var / den                                       # sig2_t = P_t / (1 + phi_t P_t)
        if prior_readout:
            ys.append((qt * (a_bar * mu)).sum(-1))                   # y_t = sum_s q_t a mu_t
            y_vars.append((qt * qt * (a2 * sig2 + p_bar)).sum(-1))   # y_var_t = sum_s q_t^2 (a^2 sig2_t + p)
        else:
            ys.append((qt * mu).sum(-1))                             # y_t = sum_s q_t mu_t
            y_vars.append((qt * qt * sig2).sum(-1))                  # y_var_t = sum_s q_t^2 sig2_t
        if paths:
            sig2s.append(sig2)
            mus.append(mu)
    if paths:
        return DiagonalScanOutput(_stack(ys, 1), _stack(y_vars, 1), _stack(sig2s, 1), _stack(mus, 1))
    return DiagonalScanOutput(_stack(ys, 1), _stack(y_vars, 1), sig2, mu)


def diagonal_filter_adjoint_loop(v, lambda_v, k, q, a_bar, p_bar, lam0, eta0, g_y, g_y_var, g_lam=None, g_eta=None,
                                 prior_readout: bool = False, paths: tuple | None = None) -> DiagonalScanGrads:
    """The gradients of :func:`diagonal_filter_adjoint` by one reverse loop over time (lanes vectorised).

    The same adjoint recurrences (docs/math/kla.md, "Adjoint"), folded step by step from t = L down to 1:

        G_eta_t = r_eta_t + f_{t+1} G_eta_{t+1}
        G_lam_t = r_lam_t + f_{t+1}^2 G_lam_{t+1} + K_{t+1},   K_t = -p f_t eta_{t-1} G_eta_t / d_t

    with each step's local derivatives taken as it passes. Reads the forward paths (``paths=(lams, etas)``, or
    recomputes them with :func:`diagonal_filter_loop`). NumPy or torch, no validation.

    Args:
        v, lambda_v, k, q, a_bar, p_bar, lam0, eta0, g_y, g_y_var, g_lam, g_eta, prior_readout: as
            :func:`diagonal_filter_adjoint`.
        paths: optional (lams, etas) of the forward, (B, L, M, S) each.

    Returns:
        :class:`DiagonalScanGrads` with one gradient per input.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(1)
        >>> B, L, M, S = 2, 7, 2, 3
        >>> args = (rng.standard_normal((B, L, M)), rng.uniform(0.5, 2.0, (B, L, M)), rng.standard_normal((B, L, S)),
        ...         rng.standard_normal((B, L, S)), rng.uniform(0.5, 1.0, (M, S)), rng.uniform(0.0, 0.2, (M, S)),
        ...         np.full((B, M, S), 2.0), rng.standard_normal((B, M, S)))
        >>> g = (rng.standard_normal((B, L, M)), rng.standard_normal((B, L, M)))
        >>> tree, loop = diagonal_filter_adjoint(*args, *g), diagonal_filter_adjoint_loop(*args, *g)
        >>> all(np.allclose(a, b, rtol=1e-12, atol=1e-12) for a, b in zip(tree, loop))
        True
    """
    if paths is None:
        out = diagonal_filter_loop(v, lambda_v, k, q, a_bar, p_bar, lam0, eta0, prior_readout, paths=True)
        lams, etas = out.lams, out.etas
    else:
        lams, etas = paths
    L = v.shape[1]
    g_v, g_lv, g_k, g_q, g_y, g_y_var, a2, c_mean, c_var = _loop_grads_setup(v, k, q, a_bar, g_y, g_y_var,
                                                                             prior_readout)
    g_a, g_p = a_bar * 0, p_bar * 0                                  # dLoss/da, dLoss/dp, summed over b and t
    # f_{t+1} G_eta_{t+1} and f_{t+1}^2 G_lam_{t+1} + K_{t+1}: zero after the last step
    carry_eta, carry_lam = lam0 * 0, lam0 * 0
    for t in range(L - 1, -1, -1):
        lam, eta = lams[:, t], etas[:, t]                            # lam_t, eta_t
        lam_p, eta_p = (lams[:, t - 1], etas[:, t - 1]) if t else (lam0, eta0)    # lam_{t-1}, eta_{t-1}
        kt, qt, lv, vv, gy, gv = _loop_token(v, lambda_v, k, q, g_y, g_y_var, t)
        inv = 1.0 / lam                                              # 1 / lam_t
        mu = eta * inv                                               # mu_t
        G_eta = gy * qt * c_mean * inv + carry_eta                   # r_eta_t + f_{t+1} G_eta_{t+1}
        r_lam = -(gy * qt * c_mean * mu + gv * qt * qt * c_var * inv) * inv    # -(q c mu + q^2 c_v / lam) / lam
        G_lam = r_lam + carry_lam                                    # r_lam_t + f_{t+1}^2 G_lam_{t+1} + K_{t+1}
        if t == L - 1:                                               # the final state's upstream gradients
            G_eta = G_eta if g_eta is None else G_eta + g_eta
            G_lam = G_lam if g_lam is None else G_lam + g_lam
        d = a2 + p_bar * lam_p                                       # d_t = a^2 + p lam_{t-1}
        f = a_bar / d                                                # f_t = a / d_t
        carry_eta = f * G_eta                                        # f_t G_eta_t, for step t - 1
        carry_lam = f * f * G_lam - p_bar * f / d * eta_p * G_eta    # f_t^2 G_lam_t + K_t
        g_v[:, t], g_lv[:, t], g_k[:, t] = _input_grads(lv, vv, kt, G_lam, G_eta)
        g_q[:, t], ga_r, gp_r = _loop_readout_grads(gy, gv, qt, q[:, t], mu, inv, a_bar, p_bar, c_mean, c_var,
                                                    prior_readout)
        r = lam_p / d                                                # predicted precision lam_{t-1} / d_t
        # d lam_t/da = -2 a lam_{t-1} / d_t^2, d f_t/da = (p lam_{t-1} - a^2) / d_t^2
        g_a = g_a + (G_lam * (-2.0 * a_bar * r / d) + G_eta * eta_p * ((p_bar * r - a_bar * f) / d)).sum(0)
        g_p = g_p + (G_lam * (-r * r) + G_eta * eta_p * (-f * r)).sum(0)   # d lam_t/dp = -r^2, d f_t/dp = -f r
        if prior_readout:                                            # the readout's own a, p
            g_a, g_p = g_a + ga_r, g_p + gp_r
    return DiagonalScanGrads(g_v, g_lv, g_k, g_q, g_a, g_p, carry_lam, carry_eta)


def _moment_step_terms(w_prev, mu_prev, phi, u, a_bar, p_bar):
    """One step's coefficients of the moment form (docs/math/kla.md §7), any matching shapes."""
    P = a_bar * a_bar * w_prev + p_bar                               # P_t = a^2 w_{t-1} + p
    g = 1.0 / (1.0 + phi * P)                                        # g_t = 1 / (1 + phi_t P_t)
    nu = u - phi * (a_bar * mu_prev)                                 # nu_t = u_t - phi_t a mu_{t-1}
    return g, nu


def _moment_local_grads(Hw, Hm, w, mu, w_prev, mu_prev, g, nu, a_bar):
    """dLoss/dP_t, dLoss/du_t, dLoss/dphi_t and step t's share of dLoss/da (§7), from the adjoint of (w_t, mu_t)
    with token t's readout added (Hw, Hm)."""
    X = Hw + Hm * nu                                                 # X_t = H^w_t + H^mu_t nu_t (d mu_t/d w_t = nu_t)
    GP = g * (g * X)                                                 # dLoss/dP_t (d w_t/d P_t = g_t^2; g^2 may underflow)
    Gu = w * Hm                                                      # dLoss/du_t (d mu_t/d u_t = w_t)
    # dLoss/dphi_t = -w_t (w_t X_t + a mu_{t-1} H^mu_t) (d w_t/d phi_t = -w_t^2, d nu_t/d phi_t = -a mu_{t-1});
    # w_t nu_t + a mu_{t-1} = mu_t, so the same is -w_t (w_t H^w_t + mu_t H^mu_t), without the cancellation of
    # w_t nu_t against a mu_{t-1} when the mean moves far in one step (a weak prior)
    Gphi = -w * (w * Hw + mu * Hm)
    ga = GP * 2.0 * a_bar * w_prev + Hm * g * mu_prev                # d P_t/da = 2 a w_{t-1}, d mu_t/da|w = g mu_{t-1}
    return GP, Gu, Gphi, ga


def _moment_initial_grads(w0, mu0, Hw1, Hm1, g1, phi1, u1, a_bar, p_bar):
    """dLoss/dlam_0 and dLoss/deta_0 from the adjoint of (w_1, mu_1) with token 1's readout added (§7). With
    H^w_0 = a^2 g_1^2 X_1 and H^mu_0 = a g_1 H^mu_1, dLoss/dlam_0 = -w_0 (w_0 H^w_0 + mu_0 H^mu_0); expanded, that is
    -w_0 a g_1^2 (a w_0 H^w_1 + H^mu_1 (a w_0 u_1 + mu_0 (1 + p phi_1))), whose terms do not cancel for a small
    lam_0 (a weak prior) as the two products do."""
    g_lam0 = -w0 * a_bar * g1 * g1 * (a_bar * w0 * Hw1 + Hm1 * (a_bar * w0 * u1 + mu0 * (1.0 + p_bar * phi1)))
    g_eta0 = w0 * (a_bar * g1 * Hm1)                                 # d mu_0/d eta_0 = w_0
    return g_lam0, g_eta0


def diagonal_filter_adjoint_moments(v, lambda_v, k, q, a_bar, p_bar, lam0, eta0, g_y, g_y_var, g_w=None, g_mu=None,
                                    prior_readout: bool = False, schedule: str = "tree", chunk: int | None = None,
                                    paths: tuple | None = None) -> DiagonalScanGrads:
    """Exact gradients of the moment form (:func:`diagonal_filter_scan_moments`) by its adjoint; NumPy or torch.

    The adjoint of docs/math/kla.md §7, which the Triton backward's moment form (``adjoint="moment"``) follows:
    it carries dLoss/dw_t and dLoss/dmu_t (w_t = 1/lam_t the variance, mu_t the mean), whose factors are bounded
    by 1 (a g_t, a^2 g_t^2 with g_t = 1/(1 + phi_t P_t)), so it stays finite at p = 0 where the information
    form's adjoint (:func:`diagonal_filter_adjoint`) overflows. Two reverse affine scans:

        H^mu_t = r^mu_t + a g_{t+1} H^mu_{t+1}
        H^w_t  = r^w_t  + a^2 g_{t+1}^2 (H^w_{t+1} + nu_{t+1} H^mu_{t+1})

    (H the adjoints with token t's readout included, r the readout's injections), then per-step local
    derivatives.

    Args:
        v, lambda_v, k, q, a_bar, p_bar, lam0, eta0, g_y, g_y_var, prior_readout, schedule, chunk: as
            :func:`diagonal_filter_adjoint`.
        g_w, g_mu: upstream gradients of the final variance w_L and mean mu_L, (B, M, S) (None = zero). The
            final state's (lam_L, eta_L) convert to them as dLoss/dw_L = -lam_L^2 (g_lam + mu_L g_eta),
            dLoss/dmu_L = lam_L g_eta (``bayesfilt.nn.functional`` does, with the state's saturation).
        paths: optional (sig2s, mus) of the forward, (B, L, M, S) each (the ``lams``, ``etas`` of
            :func:`diagonal_filter_scan_moments`).

    Returns:
        :class:`DiagonalScanGrads` with one gradient per input (lam0 and eta0 those of the information-form
        initial state, through w_0 = 1/lam_0 and mu_0 = eta_0/lam_0).

    Example:
        At p = 0 the gradient agrees with a central finite difference of the moment form:

        >>> import numpy as np
        >>> rng = np.random.default_rng(1)
        >>> B, L, M, S = 1, 6, 2, 3
        >>> v, lambda_v = rng.standard_normal((B, L, M)), rng.uniform(0.5, 2.0, (B, L, M))
        >>> k, q = rng.standard_normal((B, L, S)), rng.standard_normal((B, L, S))
        >>> a_bar, p_bar = rng.uniform(0.5, 1.0, (M, S)), np.zeros((M, S))
        >>> lam0, eta0 = np.ones((B, M, S)), np.zeros((B, M, S))
        >>> g_y = rng.standard_normal((B, L, M))
        >>> grads = diagonal_filter_adjoint_moments(v, lambda_v, k, q, a_bar, p_bar, lam0, eta0, g_y, None)
        >>> def loss(a):
        ...     return float((g_y * diagonal_filter_scan_moments(v, lambda_v, k, q, a, p_bar, lam0, eta0).y).sum())
        >>> e = np.zeros((M, S)); e[0, 1] = 1e-6
        >>> fd = (loss(a_bar + e) - loss(a_bar - e)) / 2e-6
        >>> bool(abs(grads.a_bar[0, 1] - fd) < 1e-6)
        True
    """
    if paths is None:
        out = diagonal_filter_scan_moments(v, lambda_v, k, q, a_bar, p_bar, lam0, eta0, prior_readout, schedule, chunk)
        ws, mus = out.lams, out.etas
    else:
        ws, mus = paths
    zero_y = ws[..., 0] * 0
    g_y = zero_y if g_y is None else g_y
    g_y_var = zero_y if g_y_var is None else g_y_var
    w0 = 1.0 / lam0                                                  # w_0 = 1 / lam_0
    mu0 = eta0 * w0                                                  # mu_0 = eta_0 / lam_0
    w_prev = _cat([w0[:, None], _take(ws, 0, -1)], 1)                # w_{t-1}
    mu_prev = _cat([mu0[:, None], _take(mus, 0, -1)], 1)             # mu_{t-1}
    kt = k[:, :, None, :]
    lv = lambda_v[..., None]
    vv = v[..., None]
    qs = q[:, :, None, :]
    gy = g_y[..., None]
    gv = g_y_var[..., None]
    a2 = a_bar * a_bar
    phi, u = lv * kt * kt, lv * vv * kt                              # phi_t = lambda_v k^2, u_t = lambda_v v k
    g, nu = _moment_step_terms(w_prev, mu_prev, phi, u, a_bar, p_bar)
    c_mean = a_bar if prior_readout else 1.0                         # y_t = sum q c_mean mu_t
    c_var = a2 if prior_readout else 1.0                             # y_var_t = sum q^2 (c_var w_t [+ p])
    r_mu = gy * qs * c_mean                                          # d y_t / d mu_t
    r_w = gv * qs * qs * c_var                                       # d y_var_t / d w_t
    if g_mu is not None:
        r_mu = _cat([_take(r_mu, 0, -1), _take(r_mu, -1, None) + g_mu[:, None]], 1)
    if g_w is not None:
        r_w = _cat([_take(r_w, 0, -1), _take(r_w, -1, None) + g_w[:, None]], 1)
    Hm = _reverse(a_bar * g, r_mu, schedule, chunk)                  # H^mu_t = r^mu_t + a g_{t+1} H^mu_{t+1}
    J = a2 * g * g                                                   # d w_t / d w_{t-1} = a^2 g_t^2
    K = J * nu * Hm                                                  # step t's share of H^w_{t-1} through mu_t
    K_next = _cat([_take(K, 1, None), _take(K, 0, 1) * 0], 1)        # K_{t+1} (0 after L)
    Hw = _reverse(J, r_w + K_next, schedule, chunk)                  # H^w_t = r^w_t + J_{t+1} H^w_{t+1} + K_{t+1}
    GP, Gu, Gphi, ga = _moment_local_grads(Hw, Hm, ws, mus, w_prev, mu_prev, g, nu, a_bar)
    g_v, g_lv, g_k = _input_grads(lv, vv, kt, Gphi, Gu)
    var = a2 * ws + p_bar if prior_readout else ws                   # d y_var_t / d q_t^2
    g_q = (gy * c_mean * mus).sum(2) + 2.0 * q * (gv * var).sum(2)   # dy/dq = c mu, dy_var/dq = 2 q var
    g_a = ga.sum(1).sum(0)
    g_p = GP.sum(1).sum(0)                                           # d P_t / dp = 1
    if prior_readout:
        g_a = g_a + (gy * qs * mus + gv * qs * qs * 2.0 * a_bar * ws).sum(1).sum(0)   # the readout's own a, p
        g_p = g_p + (gv * qs * qs).sum(1).sum(0)
    first = [_take(x, 0, 1)[:, 0] for x in (Hw, Hm, g, phi, u)]     # step 1's
    return DiagonalScanGrads(g_v, g_lv, g_k, g_q, g_a, g_p, *_moment_initial_grads(w0, mu0, *first, a_bar, p_bar))


def diagonal_filter_adjoint_moments_loop(v, lambda_v, k, q, a_bar, p_bar, lam0, eta0, g_y, g_y_var, g_w=None,
                                         g_mu=None, prior_readout: bool = False,
                                         paths: tuple | None = None) -> DiagonalScanGrads:
    """The gradients of :func:`diagonal_filter_adjoint_moments` by one reverse loop over time (lanes vectorised).

    The §7 step (docs/math/kla.md) folded from t = L down to 1, with each step's local derivatives taken as it
    passes. NumPy or torch, no validation.

    Args:
        v, lambda_v, k, q, a_bar, p_bar, lam0, eta0, g_y, g_y_var, g_w, g_mu, prior_readout: as
            :func:`diagonal_filter_adjoint_moments`.
        paths: optional (sig2s, mus) of the forward, (B, L, M, S) each (``diagonal_filter_loop_moments(...,
            paths=True)``); recomputed when None.

    Returns:
        :class:`DiagonalScanGrads` with one gradient per input.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(1)
        >>> B, L, M, S = 2, 7, 2, 3
        >>> args = (rng.standard_normal((B, L, M)), rng.uniform(0.5, 2.0, (B, L, M)), rng.standard_normal((B, L, S)),
        ...         rng.standard_normal((B, L, S)), rng.uniform(0.5, 1.0, (M, S)), np.zeros((M, S)),
        ...         np.full((B, M, S), 2.0), rng.standard_normal((B, M, S)))
        >>> g = (rng.standard_normal((B, L, M)), rng.standard_normal((B, L, M)), rng.standard_normal((B, M, S)))
        >>> tree = diagonal_filter_adjoint_moments(*args, *g)
        >>> loop = diagonal_filter_adjoint_moments_loop(*args, *g)
        >>> all(np.allclose(a, b, rtol=1e-12, atol=1e-12) for a, b in zip(tree, loop))
        True
    """
    if paths is None:
        out = diagonal_filter_loop_moments(v, lambda_v, k, q, a_bar, p_bar, lam0, eta0, prior_readout, paths=True)
        ws, mus = out.lams, out.etas
    else:
        ws, mus = paths
    L = v.shape[1]
    g_v, g_lv, g_k, g_q, g_y, g_y_var, a2, c_mean, c_var = _loop_grads_setup(v, k, q, a_bar, g_y, g_y_var,
                                                                             prior_readout)
    w0 = 1.0 / lam0                                                  # w_0 = 1 / lam_0
    mu0 = eta0 * w0                                                  # mu_0 = eta_0 / lam_0
    g_a, g_p = a_bar * 0, p_bar * 0                                  # dLoss/da, dLoss/dp, summed over b and t
    carry_w, carry_mu = lam0 * 0, lam0 * 0                           # dLoss/dw_t, dLoss/dmu_t through later steps
    for t in range(L - 1, -1, -1):
        w, mu = ws[:, t], mus[:, t]                                  # w_t, mu_t
        w_p, mu_p = (ws[:, t - 1], mus[:, t - 1]) if t else (w0, mu0)    # w_{t-1}, mu_{t-1}
        kt, qt, lv, vv, gy, gv = _loop_token(v, lambda_v, k, q, g_y, g_y_var, t)
        phi, u = lv * kt * kt, lv * vv * kt                          # phi_t = lambda_v k^2, u_t = lambda_v v k
        g, nu = _moment_step_terms(w_p, mu_p, phi, u, a_bar, p_bar)
        Hm = gy * qt * c_mean + carry_mu                             # H^mu_t with token t's readout
        Hw = gv * qt * qt * c_var + carry_w                          # H^w_t with token t's readout
        if t == L - 1:                                               # the final state's upstream gradients
            Hm = Hm if g_mu is None else Hm + g_mu
            Hw = Hw if g_w is None else Hw + g_w
        GP, Gu, Gphi, ga = _moment_local_grads(Hw, Hm, w, mu, w_p, mu_p, g, nu, a_bar)
        carry_w = a2 * GP                                            # dLoss/dw_{t-1} = a^2 dLoss/dP_t
        carry_mu = a_bar * g * Hm                                    # dLoss/dmu_{t-1} = a g_t H^mu_t
        g_v[:, t], g_lv[:, t], g_k[:, t] = _input_grads(lv, vv, kt, Gphi, Gu)
        g_q[:, t], ga_r, gp_r = _loop_readout_grads(gy, gv, qt, q[:, t], mu, w, a_bar, p_bar, c_mean, c_var,
                                                    prior_readout)
        g_a = g_a + ga.sum(0)
        g_p = g_p + GP.sum(0)                                        # d P_t / dp = 1
        if prior_readout:                                            # the readout's own a, p
            g_a, g_p = g_a + ga_r, g_p + gp_r
    # (Hw, Hm, g, phi, u are step 1's after the loop)
    return DiagonalScanGrads(g_v, g_lv, g_k, g_q, g_a, g_p, *_moment_initial_grads(w0, mu0, Hw, Hm, g, phi, u, a_bar,
                                                                                   p_bar))


def _reverse(coef, offset, schedule, chunk):
    """G_t = offset_t + coef_{t+1} G_{t+1}, G_L = offset_L: an affine scan in reversed time."""
    c_next = _cat([_take(coef, 1, None), _take(coef, 0, 1) * 0], 1)  # coef_{t+1}, 0 at t = L
    # reversed index u = L-1-t: G'_u = c_next'_u... applies to G'_{u-1}; the fold x_u = A_u x_{u-1} + b_u
    # needs A_u = coef of the *earlier-in-u* link, i.e. c_next at the same position.
    A, b = scan((_flip(c_next, 1), _flip(offset, 1)), "affine", schedule, chunk)
    return _flip(b, 1)
