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
def _tile(C, BT: tl.constexpr, BC: tl.constexpr):
    """A [BT, BC] tile's (sequence b, tokens t [BT, 1], channels c [1, BC], their mask): grid (token
    tiles, channel blocks, sequences)."""
    b = tl.program_id(2).to(tl.int64)
    t = tl.program_id(0) * BT + tl.arange(0, BT)[:, None]          # [BT, 1]
    c = tl.program_id(1) * BC + tl.arange(0, BC)[None, :]          # [1, BC]
    return b, t, c, c < C


@triton.jit
def _conv_fwd_kernel(z_ptr, w_ptr, b_ptr, u_ptr, L, C, szb, szt,
                     K: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr, SILU: tl.constexpr):
    b, t, c, cmask = _tile(C, BT, BC)
    bias = tl.load(b_ptr + c, mask=cmask, other=0.0).to(tl.float32)
    pre = _pre(z_ptr + b * szb, w_ptr, bias, t, c, cmask, L, szt, K)
    if SILU:
        u = pre * tl.sigmoid(pre)                                  # u = SiLU(pre)
    else:
        u = pre
    tl.store(u_ptr + (b * L + t) * C + c, u.to(u_ptr.dtype.element_ty), mask=(t < L) & cmask)


@triton.jit
def _program_channels(b_ptr, C, BC: tl.constexpr):
    """A backward program's (token-range index, sequence b, channels c [1, BC], their mask, bias [1, BC]
    in float32): grid (token ranges, channel blocks, sequences)."""
    pid_t = tl.program_id(0)
    b = tl.program_id(2).to(tl.int64)
    c = tl.program_id(1) * BC + tl.arange(0, BC)[None, :]          # [1, BC]
    cmask = c < C
    bias = tl.load(b_ptr + c, mask=cmask, other=0.0).to(tl.float32)
    return pid_t, b, c, cmask, bias


@triton.jit
def _conv_bwd_kernel(z_ptr, w_ptr, b_ptr, g_ptr, gz_ptr, gw_ptr, gb_ptr, L, C, szb, szt, NT, TCH,
                     K: tl.constexpr, KP: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr, SILU: tl.constexpr):
    """Tokens [pid_t TCH, (pid_t + 1) TCH) of one sequence in [BT, BC] tiles; the partial sums of dw
    and dbias over those tokens go to row b NT + pid_t of gw [B NT, C, K] and gb [B NT, C]."""
    pid_t, b, c, cmask, bias = _program_channels(b_ptr, C, BC)
    zb = z_ptr + b * szb
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


# --------------------------------------------------------------------------- backward variants
# "split": two kernels. _conv_bwd_d_kernel computes d_t once per token (from the K shifted z tiles)
# and writes it (float32, [B, L, C]) with the partial sums of dw and dbias; _conv_bwd_dz_kernel then
# forms dz_t = sum_i w_{K-1-i} d_{t+i} from K shifted tiles of d. The partial sums are kept per
# element over the program's tiles and summed over the tokens once, at the end (no cross-thread
# reduction per tile).
# "window": one kernel, each thread sweeping its channels through the program's tokens, four at a
# time, with the last three z and d in registers: one load of z and of g, one sigmoid and one store
# of dz per token (dz_t is complete once d_{t+3} is known), and per-thread partial sums. It computes
# d at three tokens past its range (for dz of its last tokens; they do not enter its partial sums).
# It is written for K <= 4 (the taps past K are zero).


@triton.jit
def _conv_bwd_d_kernel(z_ptr, w_ptr, b_ptr, g_ptr, d_ptr, gw_ptr, gb_ptr, L, C, szb, szt, NT, TCH,
                       K: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr, SILU: tl.constexpr,
                       STORE_D: tl.constexpr):
    """d = g SiLU'(pre) [B, L, C] (float32; written when STORE_D) for tokens [pid_t TCH, (pid_t + 1) TCH)
    of one sequence in [BT, BC] tiles (K <= 4), and the partial sums of dw, dbias over them (rows
    b NT + pid_t of gw [B NT, C, K] and gb [B NT, C]).

    With a_s = w_{K-1-s} (0 for s >= K): pre_t = bias + sum_s a_s z_{t-s}, dw_{K-1-s} = sum_t d_t z_{t-s}."""
    pid_t, b, c, cmask, bias = _program_channels(b_ptr, C, BC)
    zs = z_ptr + b * szb
    a0 = _tap(w_ptr, c, cmask, K, 0)
    a1 = _tap(w_ptr, c, cmask, K, 1)
    a2 = _tap(w_ptr, c, cmask, K, 2)
    a3 = _tap(w_ptr, c, cmask, K, 3)
    e0 = tl.zeros([BT, BC], dtype=tl.float32)                      # per element: e_s = sum_t d_t z_{t-s}
    e1 = tl.zeros([BT, BC], dtype=tl.float32)
    e2 = tl.zeros([BT, BC], dtype=tl.float32)
    e3 = tl.zeros([BT, BC], dtype=tl.float32)
    eb = tl.zeros([BT, BC], dtype=tl.float32)                      # per element: sum_t d_t
    for t0 in range(pid_t * TCH, tl.minimum(pid_t * TCH + TCH, L), BT):
        t = t0 + tl.arange(0, BT)[:, None]                         # [BT, 1]
        g = _row(g_ptr + b * L * C, t, c, cmask, L, C)             # 0 past L, so d = 0 there
        z0 = _row(zs, t, c, cmask & (K > 0), L, szt)               # z_{t-s}, loaded for s < K only
        z1 = _row(zs, t - 1, c, cmask & (K > 1), L, szt)
        z2 = _row(zs, t - 2, c, cmask & (K > 2), L, szt)
        z3 = _row(zs, t - 3, c, cmask & (K > 3), L, szt)
        d = _dpre(g, bias + a0 * z0 + a1 * z1 + a2 * z2 + a3 * z3, SILU)
        if STORE_D:
            tl.store(d_ptr + (b * L + t) * C + c, d, mask=(t < L) & cmask)
        eb += d
        e0 += d * z0
        e1 += d * z1
        e2 += d * z2
        e3 += d * z3
    prow = (b * NT + pid_t) * C                                    # this program's partial-sum row
    tl.store(gb_ptr + prow + c, tl.sum(eb, axis=0, keep_dims=True), mask=cmask)
    tl.store(gw_ptr + (prow + c) * K + (K - 1), tl.sum(e0, axis=0, keep_dims=True), mask=cmask)
    if K > 1:
        tl.store(gw_ptr + (prow + c) * K + (K - 2), tl.sum(e1, axis=0, keep_dims=True), mask=cmask)
    if K > 2:
        tl.store(gw_ptr + (prow + c) * K + (K - 3), tl.sum(e2, axis=0, keep_dims=True), mask=cmask)
    if K > 3:
        tl.store(gw_ptr + (prow + c) * K + (K - 4), tl.sum(e3, axis=0, keep_dims=True), mask=cmask)


@triton.jit
def _conv_bwd_dz_kernel(d_ptr, w_ptr, gz_ptr, L, C, K: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr):
    """dz_t = sum_i w_{K-1-i} d_{t+i} on a [BT, BC] tile of one sequence; d [B, L, C] contiguous."""
    b, t, c, cmask = _tile(C, BT, BC)
    gz = tl.zeros([BT, BC], dtype=tl.float32)
    for i in tl.static_range(K):
        tau = t + i
        d = tl.load(d_ptr + (b * L + tau) * C + c, mask=cmask & (tau < L), other=0.0).to(tl.float32)
        wi = tl.load(w_ptr + c * K + (K - 1 - i), mask=cmask, other=0.0).to(tl.float32)
        gz += wi * d                                               # dz_t += w_{K-1-i} d_{t+i}
    tl.store(gz_ptr + (b * L + t) * C + c, gz.to(gz_ptr.dtype.element_ty), mask=(t < L) & cmask)


@triton.jit
def _row(ptr, t, c, cmask, L, st):
    """Row(s) t (float32, t broadcast against c) of a sequence at ptr with token stride st; 0 outside [0, L)."""
    tb = t + tl.zeros_like(c)                                      # (the interpreter mis-types a scalar mask)
    return tl.load(ptr + tb.to(tl.int64) * st + c, mask=cmask & (tb >= 0) & (tb < L), other=0.0).to(tl.float32)


@triton.jit
def _dpre(g, pre, SILU: tl.constexpr):
    """d = g SiLU'(pre) (d = g without the activation)."""
    if SILU:
        sg = tl.sigmoid(pre)
        d = g * sg * (1.0 + pre * (1.0 - sg))                      # SiLU'(x) = sigma (1 + x (1 - sigma))
    else:
        d = g
    return d


@triton.jit
def _tap(w_ptr, c, cmask, K: tl.constexpr, s: tl.constexpr):
    """a_s = w_{K-1-s} [BC] (float32; the weight of z_{t-s} in pre_t), 0 for s >= K."""
    return tl.load(w_ptr + c * K + (K - 1 - s), mask=cmask & (s < K), other=0.0).to(tl.float32)


@triton.jit
def _put(ptr, t, v, T0, T1, c, cmask, C):
    """Row t of dz [L, C] at ptr (tokens [T0, T1) of this program only)."""
    tb = t + tl.zeros_like(c)
    tl.store(ptr + tb.to(tl.int64) * C + c, v.to(ptr.dtype.element_ty), mask=cmask & (tb >= T0) & (tb < T1))


@triton.jit
def _conv_bwd_window_kernel(z_ptr, w_ptr, b_ptr, g_ptr, gz_ptr, gw_ptr, gb_ptr, L, C, szb, szt, NT, TCH,
                            K: tl.constexpr, BC: tl.constexpr, SILU: tl.constexpr):
    """Tokens [pid_t TCH, (pid_t + 1) TCH) of one sequence, [BC] channels, swept four tokens a step
    (K <= 4); partial sums of dw, dbias to row b NT + pid_t of gw [B NT, C, K] and gb [B NT, C].

    With a_s = w_{K-1-s} (0 for s >= K): pre_t = bias + sum_s a_s z_{t-s}, dz_t = sum_s a_s d_{t+s},
    dw_{K-1-s} = sum_t d_t z_{t-s}."""
    pid_t = tl.program_id(0)
    pid_c = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    c = pid_c * BC + tl.arange(0, BC)                              # [BC]
    cmask = c < C
    zs = z_ptr + b * szb                                           # this sequence's z (token stride szt)
    gs = g_ptr + b * L * C                                         # its g, dz (token stride C)
    os_ = gz_ptr + b * L * C
    bias = tl.load(b_ptr + c, mask=cmask, other=0.0).to(tl.float32)
    a0 = _tap(w_ptr, c, cmask, K, 0)
    a1 = _tap(w_ptr, c, cmask, K, 1)
    a2 = _tap(w_ptr, c, cmask, K, 2)
    a3 = _tap(w_ptr, c, cmask, K, 3)
    T0 = pid_t * TCH
    T1 = tl.minimum(T0 + TCH, L)
    zm1 = _row(zs, T0 - 1, c, cmask, L, szt)                       # z_{s-1}, z_{s-2}, z_{s-3}
    zm2 = _row(zs, T0 - 2, c, cmask, L, szt)
    zm3 = _row(zs, T0 - 3, c, cmask, L, szt)
    dm1 = tl.zeros([BC], dtype=tl.float32)                         # d_{s-1}, d_{s-2}, d_{s-3} (only for dz
    dm2 = tl.zeros([BC], dtype=tl.float32)                         # rows before T0, which are not stored)
    dm3 = tl.zeros([BC], dtype=tl.float32)
    e0 = tl.zeros([BC], dtype=tl.float32)                          # e_s = sum_t d_t z_{t-s}
    e1 = tl.zeros([BC], dtype=tl.float32)
    e2 = tl.zeros([BC], dtype=tl.float32)
    e3 = tl.zeros([BC], dtype=tl.float32)
    eb = tl.zeros([BC], dtype=tl.float32)                          # sum_t d_t
    for s in range(T0, T1 + 3, 4):                                 # tokens s .. s+3; dz rows s-3 .. s
        z0 = _row(zs, s, c, cmask, L, szt)
        z1 = _row(zs, s + 1, c, cmask, L, szt)
        z2 = _row(zs, s + 2, c, cmask, L, szt)
        z3 = _row(zs, s + 3, c, cmask, L, szt)
        g0 = _row(gs, s, c, cmask, L, C)
        g1 = _row(gs, s + 1, c, cmask, L, C)
        g2 = _row(gs, s + 2, c, cmask, L, C)
        g3 = _row(gs, s + 3, c, cmask, L, C)
        d0 = _dpre(g0, bias + a0 * z0 + a1 * zm1 + a2 * zm2 + a3 * zm3, SILU)     # d_s (0 past L: g = 0)
        d1 = _dpre(g1, bias + a0 * z1 + a1 * z0 + a2 * zm1 + a3 * zm2, SILU)      # d_{s+1}
        d2 = _dpre(g2, bias + a0 * z2 + a1 * z1 + a2 * z0 + a3 * zm1, SILU)       # d_{s+2}
        d3 = _dpre(g3, bias + a0 * z3 + a1 * z2 + a2 * z1 + a3 * z0, SILU)        # d_{s+3}
        _put(os_, s - 3, a0 * dm3 + a1 * dm2 + a2 * dm1 + a3 * d0, T0, T1, c, cmask, C)   # dz_{s-3}
        _put(os_, s - 2, a0 * dm2 + a1 * dm1 + a2 * d0 + a3 * d1, T0, T1, c, cmask, C)    # dz_{s-2}
        _put(os_, s - 1, a0 * dm1 + a1 * d0 + a2 * d1 + a3 * d2, T0, T1, c, cmask, C)     # dz_{s-1}
        _put(os_, s, a0 * d0 + a1 * d1 + a2 * d2 + a3 * d3, T0, T1, c, cmask, C)          # dz_s
        p0 = tl.where(s < T1, d0, 0.0)                             # tokens from T1 on are the next program's
        p1 = tl.where(s + 1 < T1, d1, 0.0)
        p2 = tl.where(s + 2 < T1, d2, 0.0)
        p3 = tl.where(s + 3 < T1, d3, 0.0)
        eb += p0 + p1 + p2 + p3
        e0 += p0 * z0 + p1 * z1 + p2 * z2 + p3 * z3
        e1 += p0 * zm1 + p1 * z0 + p2 * z1 + p3 * z2
        e2 += p0 * zm2 + p1 * zm1 + p2 * z0 + p3 * z1
        e3 += p0 * zm3 + p1 * zm2 + p2 * zm1 + p3 * z0
        zm1, zm2, zm3 = z3, z2, z1
        dm1, dm2, dm3 = d3, d2, d1
    prow = (b * NT + pid_t) * C                                    # this program's partial-sum row
    tl.store(gb_ptr + prow + c, eb, mask=cmask)
    tl.store(gw_ptr + (prow + c) * K + (K - 1), e0, mask=cmask)    # dw_{K-1-s} = e_s
    if K > 1:
        tl.store(gw_ptr + (prow + c) * K + (K - 2), e1, mask=cmask)
    if K > 2:
        tl.store(gw_ptr + (prow + c) * K + (K - 3), e2, mask=cmask)
    if K > 3:
        tl.store(gw_ptr + (prow + c) * K + (K - 4), e3, mask=cmask)
