"""Triton kernels of the causal depthwise convolution (+ SiLU) in front of the KLA sensor.

Maths (per channel c, kernel width K, tokens t; z is zero before the first token)::

    pre_t = bias + sum_{j<K} w_j z_{t-K+1+j}          (causal depthwise convolution)
    u_t   = SiLU(pre_t) = pre_t sigma(pre_t)           (or u_t = pre_t without the activation)

and its exact gradient, with g_t = dLoss/du_t and SiLU'(x) = sigma(x) (1 + x (1 - sigma(x)))::

    d_t     = g_t SiLU'(pre_t)                         (dLoss/dpre_t; d_t = 0 for t >= L)
    dz_t    = sum_{i<K} w_{K-1-i} d_{t+i}              (z_t enters pre_{t+i} through w_{K-1-i})
    dw_j    = sum_{b,t} d_t z_{t-K+1+j}
    dbias   = sum_{b,t} d_t

Layout: z, u, g and dz are [B, L, C] with channels contiguous (z may be a column slice of a wider
tensor: its batch and time strides are arguments), so no transposes; w is [C, K], bias [C].
Forward programs own a [BT, BC] tile of (tokens, channels) of one sequence and read the K shifted
[BT, BC] tiles of z (the overlapping rows come from L1/L2). Backward programs sweep TCH tokens of
one sequence in [BT, BC] tiles and recompute pre at the K tokens t .. t+K-1 of each from the 2K-1
shifted tiles, so nothing but the gradients is written; dw and dbias are per-program partial sums
over its TCH tokens, [B * NT, C, K] and [B * NT, C], summed afterwards in a fixed order
(deterministic, no atomics). All arithmetic in float32.

No validation here: KLALayer calls these with tensors it made (bayesfilt.nn.kernels.conv).
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _pre(z_ptr, w_ptr, bias, tau, c, cmask, L, szt, K: tl.constexpr):
    """pre at tokens tau [BT, 1] (float32): bias + sum_j w_j z_{tau-K+1+j}; z = 0 outside [0, L)."""
    acc = bias
    for j in tl.static_range(K):
        ts = tau - (K - 1) + j                                     # the source token of tap j
        zj = tl.load(z_ptr + ts.to(tl.int64) * szt + c, mask=cmask & (ts >= 0) & (ts < L), other=0.0)
        wj = tl.load(w_ptr + c * K + j, mask=cmask, other=0.0).to(tl.float32)
        acc = acc + wj * zj.to(tl.float32)                         # pre += w_j z_{tau-K+1+j}
    return acc


@triton.jit
def _conv_fwd_kernel(z_ptr, w_ptr, b_ptr, u_ptr, L, C, szb, szt,
                     K: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr, SILU: tl.constexpr):
    pid_t = tl.program_id(0)
    pid_c = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    t = pid_t * BT + tl.arange(0, BT)[:, None]                     # [BT, 1]
    c = pid_c * BC + tl.arange(0, BC)[None, :]                     # [1, BC]
    cmask = c < C
    bias = tl.load(b_ptr + c, mask=cmask, other=0.0).to(tl.float32)
    pre = _pre(z_ptr + b * szb, w_ptr, bias, t, c, cmask, L, szt, K)
    if SILU:
        u = pre * tl.sigmoid(pre)                                  # u = SiLU(pre)
    else:
        u = pre
    tl.store(u_ptr + (b * L + t) * C + c, u.to(u_ptr.dtype.element_ty), mask=(t < L) & cmask)


@triton.jit
def _conv_bwd_kernel(z_ptr, w_ptr, b_ptr, g_ptr, gz_ptr, gw_ptr, gb_ptr, L, C, szb, szt, NT, TCH,
                     K: tl.constexpr, KP: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr, SILU: tl.constexpr):
    """Tokens [pid_t TCH, (pid_t + 1) TCH) of one sequence in [BT, BC] tiles; the partial sums of dw
    and dbias over those tokens go to row b NT + pid_t of gw [B NT, C, K] and gb [B NT, C]."""
    pid_t = tl.program_id(0)
    pid_c = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    c = pid_c * BC + tl.arange(0, BC)[None, :]                     # [1, BC]
    cmask = c < C
    zb = z_ptr + b * szb
    bias = tl.load(b_ptr + c, mask=cmask, other=0.0).to(tl.float32)
    taps = tl.arange(0, KP)[:, None]                               # [KP, 1]: tap j of dw
    gw = tl.zeros([KP, BC], dtype=tl.float32)                      # sum_t d_t z_{t-K+1+j}
    gb = tl.zeros([1, BC], dtype=tl.float32)                       # sum_t d_t
    for t0 in range(pid_t * TCH, tl.minimum(pid_t * TCH + TCH, L), BT):
        t = t0 + tl.arange(0, BT)[:, None]                         # [BT, 1]
        gz = tl.zeros([BT, BC], dtype=tl.float32)
        for i in tl.static_range(K):                               # d at the tokens tau = t + i
            tau = t + i
            g = tl.load(g_ptr + (b * L + tau) * C + c, mask=cmask & (tau < L), other=0.0).to(tl.float32)
            if SILU:
                pre = _pre(zb, w_ptr, bias, tau, c, cmask, L, szt, K)
                sg = tl.sigmoid(pre)
                d = g * sg * (1.0 + pre * (1.0 - sg))              # d = g SiLU'(pre)
            else:
                d = g
            wi = tl.load(w_ptr + c * K + (K - 1 - i), mask=cmask, other=0.0).to(tl.float32)
            gz += wi * d                                           # dz_t += w_{K-1-i} d_{t+i}
            if i == 0:                                             # this tile's share of dw, dbias
                gb += tl.sum(d, axis=0, keep_dims=True)
                for j in tl.static_range(K):
                    ts = t - (K - 1) + j
                    zj = tl.load(zb + ts.to(tl.int64) * szt + c, mask=cmask & (ts >= 0) & (ts < L), other=0.0)
                    part = tl.sum(d * zj.to(tl.float32), axis=0, keep_dims=True)   # sum_t d_t z_{t-K+1+j}
                    gw += tl.where(taps == j, part, 0.0)
        tl.store(gz_ptr + (b * L + t) * C + c, gz.to(gz_ptr.dtype.element_ty), mask=(t < L) & cmask)
    prow = (b * NT + pid_t) * C                                    # this program's partial-sum row
    tl.store(gb_ptr + prow + c, gb, mask=cmask)
    tl.store(gw_ptr + (prow + c) * K + taps, gw, mask=cmask & (taps < K))
