"""Sequential torch reference of the KLA diagonal information filter (for autograd checks).

The filter of the NumPy specification ``bayesfilt.filters.diagonal.diagonal_information_filter``
(docs/math/kla.md), run in the mathematically identical moment form per lane: variance
sig2_t = 1 / lam_t and mean mu_t = eta_t / lam_t, so that p = 0 (where lam_t grows like
a^(-2t) and overflows) stays finite; see ``bayesfilt.scan.diagonal.diagonal_filter_scan_moments``.
Written with torch ops so that autograd differentiates it: the gradients of every fast backend
are tested against autograd of this loop in float64. It runs in the dtype of its inputs
(float64 gives the reference; float32 is a baseline). No validation: call it through
``bayesfilt.nn.functional.kla_scan(..., backend="reference")`` for checked inputs.
"""

from __future__ import annotations

import torch

#: the largest precision a returned state holds, per dtype (variance floor 1 / LAM_MAX). With p = 0
#: lam_t grows like a^(-2t) and would overflow; a state saturated here keeps its mean (eta = mu lam)
#: and stays usable for the next call, whose first step (lam / a^2 + ...) has room to ~1e8 more
#: (float32). The Triton kernels use the float32 value (bayesfilt/nn/kernels/_kla_triton.py).
LAM_MAX = {torch.float32: 1e30, torch.float64: 1e240}


def lam_max(dtype) -> float:
    """:data:`LAM_MAX` of a state dtype (float32's for narrower ones)."""
    return LAM_MAX.get(dtype, LAM_MAX[torch.float32])


def moments_to_state(sig2, mu):
    """A moment-form state (variance, mean) in information form, saturated at :data:`LAM_MAX`.

    Args:
        sig2, mu: (B, M, S) variance and mean per lane.

    Returns:
        ``(lam, eta)`` = (1 / sig2, mu / sig2) with sig2 floored at 1 / LAM_MAX (with p = 0 it
        shrinks towards 0 and would give lam = inf; the mean is kept).

    Example:
        >>> import torch
        >>> lam, eta = moments_to_state(torch.tensor([0.5, 0.0], dtype=torch.float64),
        ...                             torch.tensor([2.0, 3.0], dtype=torch.float64))
        >>> lam.tolist(), (eta / lam).tolist()
        ([2.0, 1e+240], [2.0, 3.0])
    """
    lam = 1.0 / sig2.clamp(min=1.0 / lam_max(sig2.dtype))          # lam_L = 1 / sig2_L, at most LAM_MAX
    return lam, mu * lam                                            # eta_L = mu_L lam_L


def kla_scan_reference(v, lambda_v, k, q, a_bar, p_bar, lam0, eta0, prior_readout: bool = False):
    """Sequential KLA filter over L tokens; differentiable by autograd.

    Args:
        v, lambda_v: (B, L, M) values and value precisions (> 0).
        k, q: (B, L, S) keys and queries.
        a_bar, p_bar: (M, S) decay in (0, 1] and process-noise variance >= 0.
        lam0, eta0: (B, M, S) initial precision (> 0) and information vector.
        prior_readout: read out the one-step-ahead prior (a mu_t, a^2/lam_t + p) instead
            of the posterior (mu_t, 1/lam_t).

    Returns:
        ``(y, y_var, lam_L, eta_L)``: (B, L, M), (B, L, M), (B, M, S), (B, M, S). The final
        state is returned in information form, lam_L = 1 / sig2_L, eta_L = mu_L lam_L, with
        lam_L at most :data:`LAM_MAX` (with p = 0 over long sequences sig2_L shrinks towards 0:
        the state saturates there and keeps mu_L).

    Example:
        >>> import torch
        >>> B, L, M, S = 1, 4, 2, 3
        >>> y, y_var, lam, eta = kla_scan_reference(torch.randn(B, L, M), torch.ones(B, L, M),
        ...     torch.randn(B, L, S), torch.randn(B, L, S), torch.full((M, S), 0.9),
        ...     torch.full((M, S), 0.1), torch.ones(B, M, S), torch.zeros(B, M, S))
        >>> y.shape, lam.shape
        (torch.Size([1, 4, 2]), torch.Size([1, 2, 3]))
    """
    L = v.shape[1]
    sig2 = 1.0 / lam0                                               # sig2_0 = 1 / lam_0
    mu = eta0 * sig2                                                # mu_0 = eta_0 / lam_0
    a2 = a_bar * a_bar                                              # a^2
    ys, yvs = [], []
    for t in range(L):
        kt = k[:, t, None, :]                                       # k_t[s] over m
        qt = q[:, t, None, :]                                       # q_t[s] over m
        lv = lambda_v[:, t, :, None]                                # lambda_v_t[m] over s
        prior_var = a2 * sig2 + p_bar                               # P_t = a^2 sig2_{t-1} + p  (= 1 / (lam_{t-1}/d_t))
        den = 1.0 + lv * kt * kt * prior_var                        # 1 + phi_t P_t,  phi_t = lambda_v_t k_t^2
        sig2 = prior_var / den                                      # sig2_t = P_t / (1 + phi_t P_t)  (= 1 / lam_t)
        mu = (a_bar * mu + prior_var * lv * kt * v[:, t, :, None]) / den  # mu_t = (a mu_{t-1} + P_t lv k v)/(1 + phi P_t)
        if prior_readout:
            ys.append((qt * a_bar * mu).sum(-1))                    # y_t = sum_s q_t a mu_t
            yvs.append((qt * qt * (a2 * sig2 + p_bar)).sum(-1))     # y_var_t = sum_s q_t^2 (a^2 sig2_t + p)
        else:
            ys.append((qt * mu).sum(-1))                            # y_t = sum_s q_t mu_t
            yvs.append((qt * qt * sig2).sum(-1))                    # y_var_t = sum_s q_t^2 sig2_t
    return (torch.stack(ys, 1), torch.stack(yvs, 1), *moments_to_state(sig2, mu))


def kla_step_reference(v, lambda_v, k, q, a_bar, p_bar, lam, eta, prior_readout: bool = False):
    """One token of the filter: (B, M) v, lambda_v; (B, S) k, q; state (B, M, S).

    Returns:
        ``(y, y_var, lam_new, eta_new)`` with y, y_var of shape (B, M).

    Example:
        >>> import torch
        >>> y, y_var, lam, eta = kla_step_reference(torch.randn(1, 2), torch.ones(1, 2),
        ...     torch.randn(1, 3), torch.randn(1, 3), torch.full((2, 3), 0.9),
        ...     torch.full((2, 3), 0.1), torch.ones(1, 2, 3), torch.zeros(1, 2, 3))
        >>> y.shape
        torch.Size([1, 2])
    """
    y, y_var, lam, eta = kla_scan_reference(v[:, None], lambda_v[:, None], k[:, None], q[:, None],
                                            a_bar, p_bar, lam, eta, prior_readout)
    return y[:, 0], y_var[:, 0], lam, eta


def causal_conv1d_reference(z, weight, bias, *, cache=None, silu: bool = True):
    """The layer's causal depthwise convolution (+ SiLU) through F.conv1d: the reference of the fused
    kernel (``bayesfilt.nn.kernels.conv``).

    u_t = SiLU(bias + sum_j w_j z_{t-K+1+j}) per channel, with the K - 1 inputs before z's first
    token taken from ``cache`` (zeros when None). Computed in float32 (float64 for float64 z), as the
    kernel does, and returned in z's dtype.

    Args:
        z: [B, L, C] input.
        weight: [C, K] taps (w_{K-1} multiplies the current token).
        bias: [C].
        cache: [B, C, K - 1], the inputs before z's first token, oldest first; None: zeros.
        silu: apply SiLU.

    Returns:
        u: [B, L, C] in z's dtype.

    Example:
        >>> import torch
        >>> u = causal_conv1d_reference(torch.ones(1, 3, 2), torch.ones(2, 2), torch.zeros(2), silu=False)
        >>> u[0, :, 0].tolist()                  # the first token sees one input, the others two
        [1.0, 2.0, 2.0]
    """
    import torch.nn.functional as F
    B, L, C = z.shape
    dt = torch.float64 if z.dtype == torch.float64 else torch.float32
    zt = z.transpose(1, 2).to(dt)                                       # [B, C, L]
    past = zt.new_zeros(B, C, weight.shape[1] - 1) if cache is None else cache.to(dt)
    full = torch.cat([past, zt], dim=-1)                                # [B, C, K - 1 + L]
    u = F.conv1d(full, weight.to(dt).unsqueeze(1), bias.to(dt), groups=C).transpose(1, 2)   # pre_t
    return (F.silu(u) if silu else u).to(z.dtype)                       # u_t = SiLU(pre_t)
