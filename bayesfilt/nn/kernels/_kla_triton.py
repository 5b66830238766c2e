"""Triton kernels of the KLA diagonal filter (forward, exact backward, decode step).

Maths: docs/math/kla.md (the information form) and docs/kla_kernels.md (the kernels).
The scan kernels run each lane (m, s) in the equivalent *covariance* form, which needs one
reciprocal per lane-step instead of two:

    w = 1/lam, mu = eta/lam
    P_t   = a^2 w_{t-1} + p                 (prior variance)
    g_t   = 1 / (1 + phi_t P_t)             (phi_t = Lv_t k_t^2)
    w_t   = P_t g_t                         (= 1/lam_t)
    mu_t  = a mu_{t-1} + w_t (u_t - phi_t a mu_{t-1})   (u_t = Lv_t v_t k_t)

(the last line equals a g_t mu_{t-1} + w_t u_t since g_t = 1 - phi_t w_t; in this innovation form a
rounding error of g_t touches only the correction, not the whole mean, which matters over long
sequences with p = 0, where g_t -> 1 and the mean is an average of many tokens; with MEAN (tune key
mean_switch, on when an initial state is given) the update is g_t a mu_{t-1} + w_t u_t where g_t < 1/2, which
does not cancel after a weak prior with a large mean: ``_mean``).

(w_t = 1/(1/P_t + phi_t) and lam_{t-1}/(a^2 + p lam_{t-1}) = 1/P_t: the same filter.)
Readout: y = sum_s q mu, y_var = sum_s q^2 w; prior readout: y = sum_s q a mu,
y_var = sum_s q^2 (a^2 w + p). The constexpr VAR (default True) builds the scan kernels with y_var;
VAR False leaves out the forward's y_var (no sum, no store) and the backward's g_yvar (no load, no
terms): "variance on demand", docs/kla_kernels.md.

Programs own a tile of lanes [SB, BM] (s = s0 + i, m = m0 + j) and sweep time; every
[M, S] plane (a, p, states, checkpoints) is stored transposed, [S, M], so that m is the
contiguous axis of every access (loads of a plane: 4 m per thread, 8 threads along m, 4 along s).
With one warp per program (the default) and a 32-channel tile Triton gives each thread one m and all
SB s-lanes for the arithmetic, so the sums over s stay inside a thread; the forward's build without
M's divisibility (_fwd_kernel_any_m, the default when time is not chunked) gives a 16-channel tile
one m and 8 s-lanes per thread, so each sum over s takes one shuffle; with 2 or 4 warps (tune keys fwd_warps /
bwd_warps) it puts the extra warps along s and those sums cross warps through shared memory
(same sums, another order): docs/kla_kernels.md, "Multi-warp programs".
Time may be split into NC chunks of LC tokens (LC a multiple of CK) for few lanes:
  forward  MODE 1: each chunk's Möbius map of w (2x2, renormalised every step),
           MODE 2: each chunk's affine map of mu (given the true w at its start),
           MODE 3 (JOINT, instead of 1 and 2): each chunk's map of (w, mu) in one sweep, linear in
                  homogeneous coordinates (n, d, nu) with w = n/d, mu = nu/d (docs/math/kla.md),
           MODE 0: the sweep from the true start state (outputs, checkpoints, final state);
  backward MODE 1: each chunk's affine map of the adjoint (d lam, d eta) (end -> start),
           MODE 0: the reverse sweep with the true incoming adjoint (all gradients).
A program finds its chunk's start state (adjoint) by applying the maps of the chunks before
(after) it in order: O(NC) small loads, no extra launch. Checkpoints of (w, mu) every CK=8
tokens are the only thing the backward keeps; inside 8 tokens the states live in registers.
Per-token results can be gathered in register tiles and stored once per block (forward DEFER_Y,
the default) or per group of tokens (backward DEFER_G, an option), so that no store orders the
next tokens' loads behind it: docs/kla_kernels.md, "Deferred stores". Each block may first ask L2
for the inputs of a later block (L2PF blocks ahead; PFROWS: the m-columns too), and the backward may
load each block's checkpoint a block ahead (CKPF): hints and an earlier load, the same values
(docs/kla_kernels.md, "Prefetch and layout").

No validation here: bayesfilt.nn.functional validates. Offsets that can pass 2^31 (anything
with a batch or time factor) are computed in int64.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from bayesfilt.nn.reference import LAM_MAX as _LAM_MAX
from bayesfilt.scan._triton import jit_unspecialized as _jit

#: Size arguments the scan kernels do not specialise on (value 1, divisibility by 16): one
#: compiled kernel serves every batch, length and chunking. M and S stay specialised (they
#: decide whether the row offsets allow 16-byte loads) and are fixed for a given model, except in
#: _fwd_kernel_any_m, which does not specialise on M (another thread layout).
_SIZES = ["B", "L", "LC", "NC", "NMB", "NSB"]

#: Checkpoint interval of the backward (its recompute keeps these 8 states in registers).
BWD_CK = tl.constexpr(8)

#: The largest precision a returned state holds (float32 state; bayesfilt.nn.reference.LAM_MAX).
LAM_MAX = tl.constexpr(_LAM_MAX[torch.float32])


# ----------------------------------------------------------------------------- helpers
@triton.jit
def _lanes(pid_m, sb, M, S, SB: tl.constexpr, BM: tl.constexpr, EVEN: tl.constexpr = False):
    """Lane indices of one program: s [SB,1], m [1,BM] and their masks (EVEN: the caller knows that
    BM divides M and SB divides S, so both masks are constant true and the loads are unpredicated)."""
    s = sb * SB + tl.arange(0, SB)[:, None]
    m = pid_m * BM + tl.arange(0, BM)[None, :]
    if EVEN:
        return m, s, tl.full([1, BM], 1, tl.int1), tl.full([SB, 1], 1, tl.int1)
    else:
        return m, s, m < M, s < S


@triton.jit
def _program(a_ptr, p_ptr, B, M, S, NMB, NSB, SB: tl.constexpr, BM: tl.constexpr, EVEN: tl.constexpr = False,
             FOLD: tl.constexpr = False, sbf=0):
    """This program's m-block, s-block, sequence b and time chunk c (the grid's one axis, m fastest),
    its lanes (``_lanes``), their mask, their offset ms = s M + m in an [S, M] plane, and ā, p̄ there.
    FOLD: the s-blocks are not an axis of the grid; the program sweeps them in turn and this is ``sbf``."""
    pid = tl.program_id(0)
    pid_m = pid % NMB
    rest = pid // NMB
    if FOLD:
        sb = sbf
    else:
        sb = rest % NSB
        rest = rest // NSB
    b = rest % B
    c = rest // B
    m, s, mmask, smask = _lanes(pid_m, sb, M, S, SB, BM, EVEN)
    lmask = mmask & smask
    ms = s * M + m                                      # lane offset in an [S, M] plane
    a = tl.load(a_ptr + ms, mask=lmask, other=1.0).to(tl.float32)
    p = tl.load(p_ptr + ms, mask=lmask, other=0.0).to(tl.float32)
    return pid_m, sb, b, c, m, s, mmask, smask, lmask, ms, a, p


@triton.jit
def _live(mask, idx, tok, t_end, MASKED: tl.constexpr):
    """mask & (tok < t_end), built as a tensor comparison (the interpreter mistypes bool & scalar)."""
    if MASKED:
        return mask & (idx * 0 + tok < t_end)
    else:
        return mask


@triton.jit
def _keep(new, old, valid, MASKED: tl.constexpr):
    """new where the token is valid, else old (only in a masked block)."""
    if MASKED:
        return tl.where(valid, new, old)
    else:
        return new


@triton.jit
def _rcp(x, FAST: tl.constexpr):
    """1/x; FAST: one MUFU.RCP (rcp.approx.ftz, ~1 ulp; used where x >= 1 or x is a sum of
    non-negative terms), else IEEE-ish division (the interpreter has no inline PTX)."""
    if FAST:
        return tl.inline_asm_elementwise("rcp.approx.ftz.f32 $0, $1;", "=r,r", [x],
                                         dtype=tl.float32, is_pure=True, pack=1)
    else:
        return 1.0 / x


@triton.jit
def _pow2_inv(x):
    """2^-E for x = 2^E (1 + f) (x > 0, normal): a factor that scales x into [1, 2) exactly (a power of
    two: the scaled entries of a chunk map keep every digit, where a rounded 1/x would add one rounding
    per entry and step). Integer work on x's exponent bits, no reciprocal. Exact for E in [-126, 126];
    E = 127 (x >= 2^127, where 2^-127 is subnormal) gives 0, x = 0 or subnormal 2^127, inf or NaN -inf
    (MODE 3's sum of entries stays in [1, 2) times one token's growth, far from both ends)."""
    e = x.to(tl.int32, bitcast=True) & 0x7F800000
    return (0x7F000000 - e).to(tl.float32, bitcast=True)


@triton.jit
def _mean(amu, w, g, phi, uu, MEAN: tl.constexpr):
    """mu_t from the prior mean a mu_{t-1} (docs/math/kla.md §7, "Weak priors in the Triton kernels"). MEAN False
    (the default launches): the innovation form mu_t = a mu_{t-1} + w_t (u_t - phi_t a mu_{t-1}); MEAN (tune key
    ``mean_switch``):

        g_t >= 1/2:  mu_t = a mu_{t-1} + w_t (u_t - phi_t a mu_{t-1})   (innovation form)
        g_t <  1/2:  mu_t = g_t a mu_{t-1} + w_t u_t

    The same value (g_t = 1 - phi_t w_t). The innovation form adds a small correction to the prior mean, so a
    rounding of g_t near 1 (p = 0, long sequences) does not touch the whole mean; but where the token outweighs
    the prior (g_t << 1, e.g. after a weak prior lam_0 << 1 with a large mean) its two terms ~ a mu_{t-1}
    cancel, and the second form, whose g_t is accurate to a few ulp, keeps the digits."""
    if MEAN:
        return tl.where(g < 0.5, g * amu + w * uu, amu + w * (uu - phi * amu))
    else:
        return amu + w * (uu - phi * amu)


@triton.jit
def _tok(v_ptr, lv_ptr, k_ptr, q_ptr, tok, t_end, b, L, M, S, m, s, mmask, smask,
         MASKED: tl.constexpr, I: tl.constexpr = -1):
    """Load token `tok` of batch b: v, Lv [1,BM] and k, q [SB,1] as float32.

    I >= 0 (the backward's ``REL``): the pointers already point at row (b, t0) of their tensors and
    tok = t0 + I; row I is a scalar offset I M (I S), a load's immediate when M (S) is a constexpr."""
    if I >= 0:                                          # row I of the block (scalar), then the lanes
        vm = _live(mmask, m, tok, t_end, MASKED)
        sm = _live(smask, s, tok, t_end, MASKED)
        vv = tl.load((v_ptr + I * M) + m, mask=vm, other=0.0).to(tl.float32)
        lv = tl.load((lv_ptr + I * M) + m, mask=vm, other=0.0).to(tl.float32)
        kk = tl.load((k_ptr + I * S) + s, mask=sm, other=0.0).to(tl.float32)
        qq = tl.load((q_ptr + I * S) + s, mask=sm, other=0.0).to(tl.float32)
    else:
        row = b.to(tl.int64) * L + tok                  # (b, t) row, int64
        vm = _live(mmask, m, tok, t_end, MASKED)
        sm = _live(smask, s, tok, t_end, MASKED)
        vv = tl.load(v_ptr + row * M + m, mask=vm, other=0.0).to(tl.float32)
        lv = tl.load(lv_ptr + row * M + m, mask=vm, other=0.0).to(tl.float32)
        kk = tl.load(k_ptr + row * S + s, mask=sm, other=0.0).to(tl.float32)
        qq = tl.load(q_ptr + row * S + s, mask=sm, other=0.0).to(tl.float32)
    return vv, lv, kk, qq


@triton.jit
def _prefetch_rows(ptr, t0, b, L, ROW, col0, width, CK: tl.constexpr):
    """Prefetch hint for columns col0 .. col0+width-1 of the rows of tokens t0 .. t0+CK-1 (clamped to
    [0, L)) of a [B, L, ROW] tensor: one ``prefetch.global.L2`` per row start and row end, the lines a
    row segment of up to 128 bytes may span (a wider segment, e.g. 64 float32 channels, gets no hint
    for its middle lines). No result; the caller runs it only where inline PTX exists (not under the
    interpreter)."""
    i = tl.arange(0, 2 * CK)
    t = tl.minimum(tl.maximum(t0 + i // 2, 0), L - 1)
    off = (b.to(tl.int64) * L + t) * ROW + col0 + (i % 2) * (width - 1)      # first or last column
    tl.inline_asm_elementwise("prefetch.global.L2 [$1];\n\tmov.u32 $0, 0;", "=r,l", [ptr + off],
                              dtype=tl.int32, is_pure=False, pack=1)


@triton.jit
def _prefetch_block(k_ptr, q_ptr, r0_ptr, r1_ptr, r2_ptr, r3_ptr, t0, b, L, M, S, sb, pid_m,
                    SB: tl.constexpr, BM: tl.constexpr, CK: tl.constexpr, FAST: tl.constexpr,
                    NROWS: tl.constexpr):
    """Ask L2 for the k, q rows of this program's s-block for tokens
    t0 .. t0+CK-1 and, with NROWS = 2, 3 or 4, for its m-columns of r0, r1 (forward: v, Lv), r0..r2
    (backward without the variance: v, Lv, g_y) or r0..r3 (backward: v, Lv, g_y, g_yvar). Hints with
    no result; nothing under the interpreter (no inline PTX there). All the programs of one sequence
    read the same k, q rows at about the same time, so without it their first loads of a row wait for
    DRAM (Nsight Compute at 11fb0b0: the forward's and backward's longest load stalls are on k, q;
    docs/kla_kernels.md, "Prefetch and layout")."""
    if FAST:
        ws = tl.minimum(SB, S - sb * SB)
        _prefetch_rows(k_ptr, t0, b, L, S, sb * SB, ws, CK)
        _prefetch_rows(q_ptr, t0, b, L, S, sb * SB, ws, CK)
        if NROWS > 0:
            wm = tl.minimum(BM, M - pid_m * BM)
            _prefetch_rows(r0_ptr, t0, b, L, M, pid_m * BM, wm, CK)
            _prefetch_rows(r1_ptr, t0, b, L, M, pid_m * BM, wm, CK)
            if NROWS > 2:
                _prefetch_rows(r2_ptr, t0, b, L, M, pid_m * BM, wm, CK)
            if NROWS > 3:
                _prefetch_rows(r3_ptr, t0, b, L, M, pid_m * BM, wm, CK)


@triton.jit
def _start_state(w, mu, sumw_ptr, summu_ptr, b, c, NC, M, S, ms, lmask, WITH_MU: tl.constexpr,
                 JOINT: tl.constexpr = False):
    """Apply the chunk maps of chunks 0..c-1 (in order) to the initial (w, mu). JOINT: each chunk's map
    of mu is the bottom row (e, f, g) of its homogeneous map (MODE 3), not an affine map of its own."""
    MSs = M * S
    for cc in range(0, c):
        base = (b.to(tl.int64) * NC + cc) * 4 * MSs
        x = tl.load(sumw_ptr + base + ms, mask=lmask, other=1.0)
        y = tl.load(sumw_ptr + base + MSs + ms, mask=lmask, other=0.0)
        z = tl.load(sumw_ptr + base + 2 * MSs + ms, mask=lmask, other=0.0)
        u = tl.load(sumw_ptr + base + 3 * MSs + ms, mask=lmask, other=1.0)
        if JOINT:
            base3 = (b.to(tl.int64) * NC + cc) * 3 * MSs
            e = tl.load(summu_ptr + base3 + ms, mask=lmask, other=0.0)
            f = tl.load(summu_ptr + base3 + MSs + ms, mask=lmask, other=0.0)
            g = tl.load(summu_ptr + base3 + 2 * MSs + ms, mask=lmask, other=1.0)
            den = z * w + u                             # d_end for (n, d, nu) = (w, 1, mu)
            mu = (e * w + f + g * mu) / den             # mu_end = nu_end / d_end
            w = (x * w + y) / den                       # w_end = n_end / d_end
        else:
            if WITH_MU:
                base2 = (b.to(tl.int64) * NC + cc) * 2 * MSs
                A = tl.load(summu_ptr + base2 + ms, mask=lmask, other=1.0)
                bb = tl.load(summu_ptr + base2 + MSs + ms, mask=lmask, other=0.0)
                mu = A * mu + bb                        # mu_end = A mu_start + b
            w = (x * w + y) / (z * w + u)               # w_end = (x w + y) / (z w + u)
    return w, mu


# ----------------------------------------------------------------------------- forward
@triton.jit
def _fwd_block(w, mu, x, y, z, u, A, bb, e, f, g, t0, t_end, a, a2, p,
               v_ptr, lv_ptr, k_ptr, q_ptr, y_ptr, yv_ptr, b, sb, B, L, M, S, m, s, mmask, smask,
               MODE: tl.constexpr, PRIOR: tl.constexpr, CK: tl.constexpr, MASKED: tl.constexpr,
               FAST: tl.constexpr, DEFER_Y: tl.constexpr = False, L2PF: tl.constexpr = 0,
               SB: tl.constexpr = 1, BM: tl.constexpr = 1, pid_m=0, PFROWS: tl.constexpr = 0,
               VAR: tl.constexpr = True, MEAN: tl.constexpr = False):
    """CK tokens t0 .. t0+CK-1 of one program (MASKED: tokens >= t_end leave all unchanged).

    Carried: the state (w, mu); MODE 1: the Möbius map (x, y, z, u) of w; MODE 2: the affine map
    (A, bb) of mu; MODE 3: the map of (n, d, nu), [[x, y, 0], [z, u, 0], [e, f, g]]
    (docs/math/kla.md 3.1); the other modes pass the entries they do not use through unchanged.

    MEAN (MODE 0; tune key ``mean_switch``): the mean update switches to g_t a mu + w_t u_t where g_t < 1/2
    (``_mean``), accurate after a weak prior with a large mean; False: the innovation form alone.

    VAR (MODE 0): also compute and store y_var; False: no y_var is computed, yv_ptr is never
    written (the caller may pass any pointer), y is the same.

    DEFER_Y (outputs, MODE 0): y and y_var of the CK tokens are gathered in [CK, BM] tiles and
    stored once after the block, so that no store separates one token's loads from the next
    token's (a store to memory that may alias the inputs orders the loads after it): the block's
    loads can be in flight together. Same values; tuning option ``fwd_defer``.
    L2PF > 0: the block first asks L2 for the k, q rows (PFROWS 2: and the v, Lv columns of m-block
    pid_m, BM wide) of the block L2PF blocks later (``_prefetch_block``; SB, BM, pid_m only serve
    the hint, so a call without L2PF may leave them at their defaults).
    """
    if L2PF > 0:                                        # k, q (and v, Lv) of the block L2PF blocks ahead
        _prefetch_block(k_ptr, q_ptr, v_ptr, lv_ptr, v_ptr, v_ptr, t0 + L2PF * CK, b, L, M, S, sb, pid_m, SB,
                        BM, CK, FAST, PFROWS)
    rows = tl.arange(0, CK)[:, None]                    # [CK, 1] token of the block
    ytile = (rows * 0 + m * 0).to(tl.float32)           # [CK, BM] zeros (BM from m's shape)
    if VAR:
        yvtile = ytile
    for i in tl.static_range(CK):
        tok = t0 + i
        valid = tok < t_end
        vv, lv, kk, qq = _tok(v_ptr, lv_ptr, k_ptr, q_ptr, tok, t_end, b, L, M, S, m, s,
                              mmask, smask, MASKED)
        if MODE == 1 or MODE == 3:
            # MODE 1: the Möbius map R of w (2x2); MODE 3: the map R of (n, d, nu) (w = n/d, mu = nu/d), one
            # linear step per token: n_t = a^2 n + p d, d_t = d + phi_t n_t, nu_t = a nu + u_t n_t (docs/math/kla.md)
            phi = lv * kk * kk                          # phi_t
            x2 = a2 * x + p * z                         # n row of M_t @ R
            y2 = a2 * y + p * u
            z2 = z + phi * x2                           # d row: old d row + phi_t * new n row
            u2 = u + phi * y2
            if MODE == 3:
                uu = lv * vv * kk                       # u_t
                e2 = a * e + uu * x2                    # nu row: a * old nu row + u_t * new n row
                f2 = a * f + uu * y2
                g2 = a * g
                sc = _pow2_inv(x2 + y2 + z2 + u2)       # exact rescaling (all of x..u >= 0)
                e = _keep(e2 * sc, e, valid, MASKED)
                f = _keep(f2 * sc, f, valid, MASKED)
                g = _keep(g2 * sc, g, valid, MASKED)
            else:
                sc = _rcp(x2 + y2 + z2 + u2, FAST)      # renormalise (all entries >= 0)
            x = _keep(x2 * sc, x, valid, MASKED)
            y = _keep(y2 * sc, y, valid, MASKED)
            z = _keep(z2 * sc, z, valid, MASKED)
            u = _keep(u2 * sc, u, valid, MASKED)
        else:
            phi = lv * kk * kk                          # phi_t = Lv_t k_t^2
            uu = lv * vv * kk                           # u_t = Lv_t v_t k_t
            P = a2 * w + p                              # P_t = a^2 w_{t-1} + p
            gain = _rcp(1.0 + phi * P, FAST)            # g_t = 1/(1 + phi_t P_t)
            w_new = P * gain                            # w_t = P_t g_t
            mu_new = _mean(a * mu, w_new, gain, phi, uu, MEAN)   # mu_t = a mu + w_t (u_t - phi_t a mu) = g_t a mu + w_t u_t
            w = _keep(w_new, w, valid, MASKED)
            mu = _keep(mu_new, mu, valid, MASKED)
            if MODE == 2:
                # A = prod a g_t is carried as D = 1 - A: 1 - a g_t = (1 - a) + a phi_t w_t has no
                # cancellation, while a product of factors ~ 1 - 1e-5 drifts (every rounding of
                # 1 + phi P near 1 loses phi P's last digits; H200: eta_L 1.4e-4 off at L = 65536)
                A = _keep(A + ((1.0 - a) + a * (phi * w_new)) * (1.0 - A), A, valid, MASKED)
                ab = a * bb
                bb = _keep(ab + w_new * (uu - phi * ab), bb, valid, MASKED)   # b_t: the mu_t step from b_{t-1}
            else:
                if PRIOR:
                    yt = tl.sum(qq * a * mu, axis=0, keep_dims=True)              # sum_s q a mu_t
                    if VAR:
                        yvt = tl.sum(qq * qq * (a2 * w + p), axis=0, keep_dims=True)  # sum_s q^2 (a^2 w_t + p)
                else:
                    yt = tl.sum(qq * mu, axis=0, keep_dims=True)                  # sum_s q mu_t
                    if VAR:
                        yvt = tl.sum(qq * qq * w, axis=0, keep_dims=True)         # sum_s q^2 w_t
                if DEFER_Y:
                    ytile = tl.where(rows == i, yt, ytile)                        # row i: y of token t0 + i
                    if VAR:
                        yvtile = tl.where(rows == i, yvt, yvtile)                 # row i: y_var of token t0 + i
                else:
                    orow = ((sb.to(tl.int64) * B + b) * L + tok) * M
                    om = _live(mmask, m, tok, t_end, MASKED)
                    tl.store(y_ptr + orow + m, yt, mask=om)
                    if VAR:
                        tl.store(yv_ptr + orow + m, yvt, mask=om)
    if DEFER_Y:
        if MODE == 0:
            orows = ((sb.to(tl.int64) * B + b) * L + t0 + rows) * M          # [CK, 1]
            omask = mmask & (t0 + rows < t_end)                             # [CK, BM]
            tl.store(y_ptr + orows + m, ytile, mask=omask)
            if VAR:
                tl.store(yv_ptr + orows + m, yvtile, mask=omask)
    return w, mu, x, y, z, u, A, bb, e, f, g


@_jit(_SIZES)
def _fwd_kernel(
    v_ptr, lv_ptr, k_ptr, q_ptr, a_ptr, p_ptr, w0_ptr, mu0_ptr,
    y_ptr, yv_ptr, lamL_ptr, etaL_ptr, ck_ptr, sumw_ptr, summu_ptr,
    B, L, M, S, LC, NC, NMB, NSB,
    MODE: tl.constexpr, PRIOR: tl.constexpr, WRITE_CK: tl.constexpr,
    SB: tl.constexpr, BM: tl.constexpr, CK: tl.constexpr, FAST: tl.constexpr, DEFER_Y: tl.constexpr = False,
    NSTAGES: tl.constexpr = 1, L2PF: tl.constexpr = 0, PFROWS: tl.constexpr = 0, VAR: tl.constexpr = True,
    JOINT: tl.constexpr = False, MEAN: tl.constexpr = False,
):
    # VAR (MODE 0): compute and store y_var; False (nobody asked for the variance): y_var is neither
    # computed nor stored and yv_ptr is never written (``_fwd_block``). MODE 1, 2 and 3 never touch it.
    pid_m, sb, b, c, m, s, mmask, smask, lmask, ms, a, p = _program(a_ptr, p_ptr, B, M, S, NMB, NSB, SB, BM)
    MSs = M * S
    a2 = a * a
    bms = b.to(tl.int64) * MSs
    w = tl.load(w0_ptr + bms + ms, mask=lmask, other=1.0)
    mu = tl.load(mu0_ptr + bms + ms, mask=lmask, other=0.0)
    # JOINT (MODE 0): the chunk maps before this chunk are MODE 3's (MODE 3 itself needs no start state)
    if MODE == 0 or MODE == 2:
        w, mu = _start_state(w, mu, sumw_ptr, summu_ptr, b, c, NC, M, S, ms, lmask, MODE == 0, JOINT)

    t_start = c * LC
    t_end = tl.minimum(t_start + LC, L)
    t_full = t_start + ((t_end - t_start) // CK) * CK   # end of the whole CK-blocks
    # MODE 1: Möbius map [[x, y], [z, u]] of w; MODE 2: affine map (A, bb) of mu, A carried as
    # D = 1 - prod g_t until the end of the chunk
    x = 0.0 * w + 1.0
    y = 0.0 * w
    z = 0.0 * w
    u = x
    A = y                                               # MODE 2: D = 0
    bb = y
    e = y                                               # MODE 3: the nu row (e, f, g) = (0, 0, 1)
    f = y
    g = x
    NCK = (L + CK - 1) // CK
    # NSTAGES > 1: Triton's pipeliner copies the next NSTAGES - 1 blocks' inputs into shared memory
    # (cp.async) while this block computes (tune key fwd_stages; 1 compiles as a plain range)
    for t0 in tl.range(t_start, t_full, CK, num_stages=NSTAGES):
        if MODE == 0:
            if WRITE_CK:
                ckb = (b.to(tl.int64) * NCK + t0 // CK) * 2 * MSs
                tl.store(ck_ptr + ckb + ms, w, mask=lmask)
                tl.store(ck_ptr + ckb + MSs + ms, mu, mask=lmask)
        w, mu, x, y, z, u, A, bb, e, f, g = _fwd_block(
            w, mu, x, y, z, u, A, bb, e, f, g, t0, t_end, a, a2, p, v_ptr, lv_ptr, k_ptr, q_ptr, y_ptr,
            yv_ptr, b, sb, B, L, M, S, m, s, mmask, smask, MODE, PRIOR, CK, False, FAST, DEFER_Y,
            L2PF, SB, BM, pid_m, PFROWS, VAR, MEAN)
    if t_full < t_end:                                  # the last, partial block
        if MODE == 0:
            if WRITE_CK:
                ckb = (b.to(tl.int64) * NCK + t_full // CK) * 2 * MSs
                tl.store(ck_ptr + ckb + ms, w, mask=lmask)
                tl.store(ck_ptr + ckb + MSs + ms, mu, mask=lmask)
        w, mu, x, y, z, u, A, bb, e, f, g = _fwd_block(
            w, mu, x, y, z, u, A, bb, e, f, g, t_full, t_end, a, a2, p, v_ptr, lv_ptr, k_ptr, q_ptr, y_ptr,
            yv_ptr, b, sb, B, L, M, S, m, s, mmask, smask, MODE, PRIOR, CK, True, FAST, DEFER_Y, VAR=VAR, MEAN=MEAN)

    if MODE == 1 or MODE == 3:
        base = (b.to(tl.int64) * NC + c) * 4 * MSs
        tl.store(sumw_ptr + base + ms, x, mask=lmask)
        tl.store(sumw_ptr + base + MSs + ms, y, mask=lmask)
        tl.store(sumw_ptr + base + 2 * MSs + ms, z, mask=lmask)
        tl.store(sumw_ptr + base + 3 * MSs + ms, u, mask=lmask)
        if MODE == 3:
            base3 = (b.to(tl.int64) * NC + c) * 3 * MSs
            tl.store(summu_ptr + base3 + ms, e, mask=lmask)
            tl.store(summu_ptr + base3 + MSs + ms, f, mask=lmask)
            tl.store(summu_ptr + base3 + 2 * MSs + ms, g, mask=lmask)
    elif MODE == 2:
        base2 = (b.to(tl.int64) * NC + c) * 2 * MSs
        A = 1.0 - A                                     # A = 1 - D (absolute error ~ one ulp of 1)
        tl.store(summu_ptr + base2 + ms, A, mask=lmask)
        tl.store(summu_ptr + base2 + MSs + ms, bb, mask=lmask)
    else:
        if c == NC - 1:
            lam = 1.0 / tl.maximum(w, 1.0 / LAM_MAX)    # lam_L = 1 / w_L, at most LAM_MAX (p = 0 saturates here)
            tl.store(lamL_ptr + bms + ms, lam, mask=lmask)
            tl.store(etaL_ptr + bms + ms, mu * lam, mask=lmask)   # eta_L = mu_L lam_L


#: The same forward, not specialised on M's divisibility by 16 (tune key ``fwd_mspec`` 0): without
#: 16-byte row loads Triton lays a 16 x 16 tile out as one m and 8 s-lanes per thread, two threads
#: per m (one shuffle per sum over s), where the specialised build gives 4 m x 2 s per thread and
#: 8 threads along s. The default when time is not chunked (docs/kla_kernels.md, "Prefetch and layout").
_fwd_kernel_any_m = _jit(_SIZES + ["M"])(_fwd_kernel.fn)


# ----------------------------------------------------------------------------- backward
# The backward carries the adjoint in information form, (Hl, He) = dLoss/d(lam_t, eta_t):
# the final-state gradient enters as it is and the initial-state gradient leaves as it is
# (no (w, mu) <-> (lam, eta) conversion whose terms could cancel), and the recompute inside
# each 8-token block runs the information-form step from the (w, mu) checkpoint.
@triton.jit
def _frec(lam, eta, tok, t_end, a, a2, p, v_ptr, lv_ptr, k_ptr, q_ptr, b, L, M, S, m, s,
          mmask, smask, MASKED: tl.constexpr, FAST: tl.constexpr, I: tl.constexpr = -1,
          ALG: tl.constexpr = False):
    """Recompute one step (token tok) in information form from the state before it (I: ``_tok``).
    ALG: phi = Lv (k k), rounded as ``_brec`` rounds it, so that the compiler shares lam_t with it."""
    valid = tok < t_end
    vv, lv, kk, qq = _tok(v_ptr, lv_ptr, k_ptr, q_ptr, tok, t_end, b, L, M, S, m, s, mmask, smask,
                          MASKED, I)
    r = _rcp(a2 + p * lam, FAST)                        # 1/d_t, d_t = a^2 + p lam_{t-1}
    if ALG:
        lam_n = lam * r + lv * (kk * kk)                # lam_t = lam_{t-1}/d_t + Lv k^2 (as _brec's)
    else:
        lam_n = lam * r + lv * kk * kk                  # lam_t = lam_{t-1}/d_t + Lv k^2
    eta_n = (a * r) * eta + lv * vv * kk                # eta_t = (a/d_t) eta_{t-1} + Lv v k
    return _keep(lam_n, lam, valid, MASKED), _keep(eta_n, eta, valid, MASKED)


@triton.jit
def _brec(lamp, etap, Hl, He, ga, gp, cll, cle, cee, gvt, glvt, gkt, gqt, t0, t_end, a, a2, p,
          v_ptr, lv_ptr, k_ptr, q_ptr, gy_ptr, gyv_ptr, gv_ptr, glv_ptr, gk_ptr, gq_ptr,
          b, pid_m, sb, B, L, M, S, m, s, mmask, smask,
          SUMMARY: tl.constexpr, PRIOR: tl.constexpr, MASKED: tl.constexpr, FAST: tl.constexpr,
          I: tl.constexpr, DEFER_G: tl.constexpr, REL: tl.constexpr = False, ALG: tl.constexpr = False,
          VAR: tl.constexpr = True, FOLD: tl.constexpr = False):
    """Adjoint of one step (token tok = t0 + I of the block starting at t0), given the state before
    it and the adjoint after it.

    (Hl, He) is the adjoint of (lam_t, eta_t) from later steps; returns the adjoint of
    (lam_{t-1}, eta_{t-1}) and the updated accumulators. Formulas: docs/kla_kernels.md.
    DEFER_G = G > 0: this token's dv, dLv row goes into row I % G of the [G, BM] tiles (gvt, glvt)
    and its dk, dq column into column I % G of the [SB, G] tiles (gkt, gqt) instead of being
    stored here (``_gstore``, called last, stores them once per G tokens); DEFER_G = 0: stored
    here, the tiles pass through.
    REL: v_ptr, lv_ptr, k_ptr, q_ptr, gy_ptr, gyv_ptr point at row (b, t0) (``_tok`` with I >= 0).
    ALG (posterior readout): the readout's adjoint factored through c = g_yvar w and q w (7 instead of
    ~9.5 floating-point instructions per lane; the same formulas, rounded in another order).
    VAR False (no gradient reaches y_var): g_yvar is never loaded (gyv_ptr may point anywhere) and its
    terms are left out by these branches, not multiplied by 0 (x * 0 is not 0 for x = inf or NaN, so
    the compiler may not drop them); the remaining terms are the same operations in the same order.
    """
    tok = t0 + I
    valid = tok < t_end
    vv, lv, kk, qq = _tok(v_ptr, lv_ptr, k_ptr, q_ptr, tok, t_end, b, L, M, S, m, s, mmask, smask,
                          MASKED, I if REL else -1)
    if REL:
        om = _live(mmask, m, tok, t_end, MASKED)
        gy = tl.load((gy_ptr + I * M) + m, mask=om, other=0.0)     # row I of the block, then the lanes
        if VAR:
            gyv = tl.load((gyv_ptr + I * M) + m, mask=om, other=0.0)
        else:
            gyv = gy                                    # (never read without the variance)
    else:
        row = b.to(tl.int64) * L + tok
        om = _live(mmask, m, tok, t_end, MASKED)
        gy = tl.load(gy_ptr + row * M + m, mask=om, other=0.0)
        if VAR:
            gyv = tl.load(gyv_ptr + row * M + m, mask=om, other=0.0)
        else:
            gyv = gy                                    # (never read without the variance)
    k2 = kk * kk
    phi = lv * k2                                       # phi_t = Lv k^2
    uu = lv * vv * kk                                   # u_t = Lv v k
    r = _rcp(a2 + p * lamp, FAST)                       # r = 1/d_t
    f = a * r                                           # f_t = a/d_t
    lam = lamp * r + phi                                # lam_t
    eta = f * etap + uu                                 # eta_t
    w = _rcp(lam, FAST)                                 # 1/lam_t
    mu = eta * w                                        # mu_t
    if VAR:
        q2 = qq * qq
    if PRIOR:
        gmu = gy * qq * a                               # dL/dmu_t through y = sum q a mu
        if VAR:
            gw = gyv * q2 * a2                          # dL/dw_t through y_var = sum q^2 (a^2 w + p)
    else:
        gmu = gy * qq                                   # y = sum q mu
        if VAR:
            gw = gyv * q2                               # y_var = sum q^2 w
    if ALG and not PRIOR:
        if VAR:
            cw = gyv * w                                # g_yvar w
        gm = gy * mu                                    # g_y mu
        qw = qq * w
        if VAR:
            Hl_t = Hl - qw * (qq * cw + gm)             # w (gmu mu + gw w) = (q w)(g_y mu + q g_yvar w)
        else:
            Hl_t = Hl - qw * gm                         # w gmu mu = (q w)(g_y mu)   (no y_var)
        He_t = He + gy * qw                             # gmu w = g_y (q w)
    else:
        if VAR:
            Hl_t = Hl - w * (gmu * mu + gw * w)         # mu = eta w, w = 1/lam
        else:
            Hl_t = Hl - w * (gmu * mu)                  # mu = eta w (no y_var)
        He_t = He + gmu * w
    Gf = He_t * etap                                    # eta_t = f eta_{t-1} + u
    Gr = Hl_t * lamp + Gf * a                           # lam_t = lam_{t-1} r + phi, f = a r
    Gd = -Gr * r * r                                    # r = 1/d
    Hl_o = _keep(Hl_t * r + Gd * p, Hl, valid, MASKED)  # d = a^2 + p lam_{t-1}
    He_o = _keep(He_t * f, He, valid, MASKED)
    if SUMMARY:
        al = r + (-p * r * r) * lamp                    # d lam_t / d lam_{t-1} = a^2/d^2
        be = (-p * r * r) * a * etap                    # d eta_t / d lam_{t-1}
        cle = _keep(al * cle + be * cee, cle, valid, MASKED)
        cll = _keep(al * cll, cll, valid, MASKED)
        cee = _keep(f * cee, cee, valid, MASKED)
    else:
        ga_n = ga + Gf * r + Gd * (2.0 * a)
        gp_n = gp + Gd * lamp
        if ALG and not PRIOR:
            if VAR:
                Xq = (2.0 * qq) * cw + gm               # d/dq: g_y mu + 2 q g_yvar w
            else:
                Xq = gm                                 # d/dq: g_y mu
        else:
            ga_n, gp_n, Xq = _readout_grads(ga_n, gp_n, gy, gyv, qq, mu, w, a, a2, p, PRIOR, VAR)
        ga = _keep(ga_n, ga, valid, MASKED)
        gp = _keep(gp_n, gp, valid, MASKED)
        # Gphi = Hl_t, Gu = He_t (information form: dlam_t/dphi_t = deta_t/du_t = 1)
        gvt, glvt, gkt, gqt = _gput(Hl_t, He_t, Xq, vv, lv, kk, k2, gvt, glvt, gkt, gqt, I, t0, tok, t_end,
                                    gv_ptr, glv_ptr, gk_ptr, gq_ptr, b, pid_m, sb, B, L, M, S, m, s,
                                    mmask, smask, om, MASKED, DEFER_G, FOLD=FOLD)
    return Hl_o, He_o, ga, gp, cll, cle, cee, gvt, glvt, gkt, gqt


@triton.jit
def _frec_m(w, mu, tok, t_end, a, a2, p, v_ptr, lv_ptr, k_ptr, q_ptr, b, L, M, S, m, s,
            mmask, smask, MASKED: tl.constexpr, FAST: tl.constexpr, I: tl.constexpr = -1, MEAN: tl.constexpr = False):
    """Recompute one step (token tok) in covariance form from the state (w, mu) before it, with the
    forward's operations in the forward's order (``_fwd_block``, MODE 0, the same MEAN): the same states,
    bit for bit."""
    valid = tok < t_end
    vv, lv, kk, qq = _tok(v_ptr, lv_ptr, k_ptr, q_ptr, tok, t_end, b, L, M, S, m, s, mmask, smask,
                          MASKED, I)
    phi = lv * kk * kk                                  # phi_t = Lv_t k_t^2
    uu = lv * vv * kk                                   # u_t = Lv_t v_t k_t
    P = a2 * w + p                                      # P_t = a^2 w_{t-1} + p
    g = _rcp(1.0 + phi * P, FAST)                       # g_t = 1/(1 + phi_t P_t)
    w_n = P * g                                         # w_t = P_t g_t
    mu_n = _mean(a * mu, w_n, g, phi, uu, MEAN)         # mu_t = a mu_{t-1} + w_t (u_t - phi_t a mu_{t-1}), as the forward
    return _keep(w_n, w, valid, MASKED), _keep(mu_n, mu, valid, MASKED)


@triton.jit
def _brec_m(wp, mup, Hw, Hm, ga, gp, cww, cwm, cmm, gvt, glvt, gkt, gqt, t0, t_end, a, a2, p,
            v_ptr, lv_ptr, k_ptr, q_ptr, gy_ptr, gyv_ptr, gv_ptr, glv_ptr, gk_ptr, gq_ptr,
            b, pid_m, sb, B, L, M, S, m, s, mmask, smask,
            SUMMARY: tl.constexpr, PRIOR: tl.constexpr, MASKED: tl.constexpr, FAST: tl.constexpr,
            I: tl.constexpr, DEFER_G: tl.constexpr, REL: tl.constexpr = False, VAR: tl.constexpr = True,
            FOLD: tl.constexpr = False, MEAN: tl.constexpr = False):
    """Adjoint of one step in covariance (moment) form (tune key ``bwd_mom``; docs/math/kla.md,
    "The adjoint in moment form"), given the state (w, mu) before it and the adjoint (Hw, Hm) of
    (w_t, mu_t) from later steps; returns the adjoint of (w_{t-1}, mu_{t-1}), the accumulators, and last
    (Hw_t, Hm_t), the adjoint of (w_t, mu_t) with this token's readout added (the stable dL/dlam_0 needs
    token 1's, ``_bwd_lanes``).

    Every factor is bounded (g_t, a g_t, a^2 g_t^2 <= 1; w, mu as in the forward), so that p = 0,
    where the information form's lam_t grows like a^(-2t), stays finite; one reciprocal per step
    (g_t, also computed by ``_frec_m``) instead of the information form's two. Loads, stores and
    the constexprs DEFER_G, REL, VAR, SUMMARY as in ``_brec``; (cww, cwm, cmm) are the chunk
    summary's map (Hw, Hm)_start = [[cww, cwm], [0, cmm]] (Hw, Hm)_end + offsets.
    """
    tok = t0 + I
    valid = tok < t_end
    vv, lv, kk, qq = _tok(v_ptr, lv_ptr, k_ptr, q_ptr, tok, t_end, b, L, M, S, m, s, mmask, smask,
                          MASKED, I if REL else -1)
    om = _live(mmask, m, tok, t_end, MASKED)
    if REL:
        gy = tl.load((gy_ptr + I * M) + m, mask=om, other=0.0)     # row I of the block, then the lanes
        if VAR:
            gyv = tl.load((gyv_ptr + I * M) + m, mask=om, other=0.0)
        else:
            gyv = gy                                    # (never read without the variance)
    else:
        row = b.to(tl.int64) * L + tok
        gy = tl.load(gy_ptr + row * M + m, mask=om, other=0.0)
        if VAR:
            gyv = tl.load(gyv_ptr + row * M + m, mask=om, other=0.0)
        else:
            gyv = gy                                    # (never read without the variance)
    k2 = kk * kk                                        # (for dLv below)
    phi = lv * kk * kk                                  # phi_t = Lv k^2, rounded as _frec_m (and the forward) round
    uu = lv * vv * kk                                   # it, so that the compiler shares g_t, w_t, mu_t with the
    P = a2 * wp + p                                     # recompute: one reciprocal per token; P_t = a^2 w_{t-1} + p
    g = _rcp(1.0 + phi * P, FAST)                       # g_t = 1/(1 + phi_t P_t)
    w = P * g                                           # w_t = P_t g_t
    amu = a * mup                                       # a mu_{t-1}
    nu = uu - phi * amu                                 # nu_t = u_t - phi_t a mu_{t-1}
    mu = _mean(amu, w, g, phi, uu, MEAN)                # mu_t = a mu_{t-1} + w_t nu_t, as _frec_m
    if VAR:
        q2 = qq * qq
    if PRIOR:
        Hm_t = Hm + gy * qq * a                         # y = sum q a mu_t
        if VAR:
            Hw_t = Hw + gyv * q2 * a2                   # y_var = sum q^2 (a^2 w_t + p)
        else:
            Hw_t = Hw
    else:
        Hm_t = Hm + gy * qq                             # y = sum q mu_t
        if VAR:
            Hw_t = Hw + gyv * q2                        # y_var = sum q^2 w_t
        else:
            Hw_t = Hw
    X = Hw_t + Hm_t * nu                                # dL/dw_t through w_t and mu_t = ... + w_t nu_t
    GP = g * (g * X)                                    # dL/dP_t (dw_t/dP_t = g_t^2; g^2 alone may underflow)
    ag = a * g
    Hw_o = _keep(a2 * GP, Hw, valid, MASKED)            # P_t = a^2 w_{t-1} + p
    Hm_o = _keep(ag * Hm_t, Hm, valid, MASKED)          # dmu_t/dmu_{t-1} = a (1 - phi_t w_t) = a g_t
    if SUMMARY:
        al = a2 * (g * g)                               # d(Hw_{t-1})/d(Hw_t) = a^2 g_t^2
        cwm = _keep(al * cwm + (al * nu) * cmm, cwm, valid, MASKED)   # d(Hw_{t-1})/d(Hm_t) = a^2 g_t^2 nu_t
        cww = _keep(al * cww, cww, valid, MASKED)
        cmm = _keep(ag * cmm, cmm, valid, MASKED)
    else:
        Gu = Hm_t * w                                   # dL/du_t = Hm_t w_t
        Gphi = -w * (w * Hw_t + mu * Hm_t)              # dL/dphi_t: dw_t/dphi = -w_t^2, dmu_t/dphi = -w_t mu_t
        ga_n = ga + GP * ((2.0 * a) * wp) + Hm_t * (g * mup)   # dP_t/da = 2 a w_{t-1}, dmu_t/da = g_t mu_{t-1}
        gp_n = gp + GP                                  # dP_t/dp = 1
        ga_n, gp_n, Xq = _readout_grads(ga_n, gp_n, gy, gyv, qq, mu, w, a, a2, p, PRIOR, VAR)
        ga = _keep(ga_n, ga, valid, MASKED)
        gp = _keep(gp_n, gp, valid, MASKED)
        gvt, glvt, gkt, gqt = _gput(Gphi, Gu, Xq, vv, lv, kk, k2, gvt, glvt, gkt, gqt, I, t0, tok, t_end,
                                    gv_ptr, glv_ptr, gk_ptr, gq_ptr, b, pid_m, sb, B, L, M, S, m, s,
                                    mmask, smask, om, MASKED, DEFER_G, FOLD=FOLD)
    return Hw_o, Hm_o, ga, gp, cww, cwm, cmm, gvt, glvt, gkt, gqt, Hw_t, Hm_t


@triton.jit
def _readout_grads(ga_n, gp_n, gy, gyv, qq, mu, w, a, a2, p, PRIOR: tl.constexpr, VAR: tl.constexpr):
    """The readout's own terms of one token (the same in both forms of the adjoint): dL/da and dL/dp
    accumulated into ga_n, gp_n (prior readout only) and Xq = dL/dq per lane, from the state (w, mu)
    after the token. VAR False: g_yvar's terms left out (gyv is never read)."""
    if PRIOR:
        if VAR:
            q2 = qq * qq
            ga_n = ga_n + gy * qq * mu + gyv * q2 * (2.0 * a) * w           # d/da of y, y_var
            gp_n = gp_n + gyv * q2                                          # d/dp of y_var
            Xq = gy * a * mu + 2.0 * qq * gyv * (a2 * w + p)                # d/dq of y, y_var
        else:
            ga_n = ga_n + gy * qq * mu                  # d/da of y = sum q a mu
            Xq = gy * a * mu                            # d/dq of y
    else:
        if VAR:
            Xq = gy * mu + 2.0 * qq * gyv * w           # d/dq: g_y mu + 2 q g_yvar w
        else:
            Xq = gy * mu                                # d/dq: g_y mu
    return ga_n, gp_n, Xq


@triton.jit
def _gput(Gphi, Gu, Xq, vv, lv, kk, k2, gvt, glvt, gkt, gqt, I: tl.constexpr, t0, tok, t_end,
          gv_ptr, glv_ptr, gk_ptr, gq_ptr, b, pid_m, sb, B, L, M, S, m, s, mmask, smask, om,
          MASKED: tl.constexpr, DEFER_G: tl.constexpr, FOLD: tl.constexpr = False):
    """One token's input gradients from the adjoints Gphi = dL/dphi_t, Gu = dL/du_t per lane
    (phi = Lv k^2, u = Lv v k) and Xq = dL/dq per lane: dv, dLv (sums over this program's s) and
    dk, dq (sums over its m), stored now (DEFER_G 0) or put in row / column I % G of the tiles, which
    ``_gstore`` stores once the group is full (token tok = t0 + I). FOLD: dv, dLv go to one [B, L, M]
    tensor, each s-block after the first adding what the ones before it stored (``_gstore``)."""
    R1 = tl.sum(Gu * kk, axis=0, keep_dims=True)        # sum_s Gu k
    R2 = tl.sum(Gphi * k2, axis=0, keep_dims=True)      # sum_s Gphi k^2
    if DEFER_G:                                         # row I % G of the [G, BM] tiles
        rows = tl.arange(0, DEFER_G)[:, None]
        gvt = tl.where(rows == I % DEFER_G, lv * R1, gvt)                   # dv
        glvt = tl.where(rows == I % DEFER_G, R2 + vv * R1, glvt)            # dLv
    elif FOLD:                                          # + the earlier s-blocks' sums (none for the first)
        orow = b.to(tl.int64) * L + tok
        prev = om & (m * 0 + sb > 0)
        tl.store(gv_ptr + orow * M + m, lv * R1 + tl.load(gv_ptr + orow * M + m, mask=prev, other=0.0), mask=om)
        tl.store(glv_ptr + orow * M + m, (R2 + vv * R1) + tl.load(glv_ptr + orow * M + m, mask=prev, other=0.0),
                 mask=om)
    else:
        orow = (sb.to(tl.int64) * B + b) * L + tok
        tl.store(gv_ptr + orow * M + m, lv * R1, mask=om)                   # dv
        tl.store(glv_ptr + orow * M + m, R2 + vv * R1, mask=om)             # dLv
    Xk = lv * ((2.0 * kk) * Gphi + vv * Gu)
    gk = tl.sum(Xk, axis=1, keep_dims=True)             # sum over this block's m
    gq = tl.sum(Xq, axis=1, keep_dims=True)
    if DEFER_G:                                         # column I % G of the [SB, G] tiles
        cols = tl.arange(0, DEFER_G)[None, :]
        gkt = tl.where(cols == I % DEFER_G, gk, gkt)
        gqt = tl.where(cols == I % DEFER_G, gq, gqt)
    else:
        krow = (pid_m.to(tl.int64) * B + b) * L + tok
        tl.store(gk_ptr + krow * S + s, gk, mask=_live(smask, s, tok, t_end, MASKED))
        tl.store(gq_ptr + krow * S + s, gq, mask=_live(smask, s, tok, t_end, MASKED))
    _gstore(gvt, glvt, gkt, gqt, I, t0, t_end, gv_ptr, glv_ptr, gk_ptr, gq_ptr,
            b, pid_m, sb, B, L, M, S, m, s, mmask, smask, 0, DEFER_G, FOLD=FOLD)
    return gvt, glvt, gkt, gqt


@triton.jit
def _gstore(gvt, glvt, gkt, gqt, I: tl.constexpr, t0, t_end, gv_ptr, glv_ptr, gk_ptr, gq_ptr,
            b, pid_m, sb, B, L, M, S, m, s, mmask, smask, MODE: tl.constexpr, G: tl.constexpr,
            FOLD: tl.constexpr = False):
    """DEFER_G = G > 0 (gradients, MODE 0), after token t0 + I: store the tiles' tokens
    t0 + I .. t0 + I + G - 1 when I is a multiple of G (tokens >= t_end masked). FOLD: dv, dLv into one
    [B, L, M] tensor, adding what the program's earlier s-blocks stored there (in s-block order)."""
    if G > 0:
        if MODE == 0:
            if I % G == 0:
                rows = tl.arange(0, G)[:, None]
                cols = tl.arange(0, G)[None, :]
                omask = mmask & (t0 + I + rows < t_end)                     # [G, BM]
                if FOLD:
                    orows = (b.to(tl.int64) * L + t0 + I + rows) * M            # [G, 1]
                    prev = omask & (rows * 0 + sb > 0)                          # the first s-block adds nothing
                    gvt = gvt + tl.load(gv_ptr + orows + m, mask=prev, other=0.0)
                    glvt = glvt + tl.load(glv_ptr + orows + m, mask=prev, other=0.0)
                else:
                    orows = ((sb.to(tl.int64) * B + b) * L + t0 + I + rows) * M  # [G, 1]
                tl.store(gv_ptr + orows + m, gvt, mask=omask)
                tl.store(glv_ptr + orows + m, glvt, mask=omask)
                kcols = ((pid_m.to(tl.int64) * B + b) * L + t0 + I + cols) * S   # [1, G]
                kmask = smask & (t0 + I + cols < t_end)                    # [SB, G]
                tl.store(gk_ptr + kcols + s, gkt, mask=kmask)
                tl.store(gq_ptr + kcols + s, gqt, mask=kmask)


@triton.jit
def _bwd_sub(l0, e0, Hl, He, ga, gp, cll, cle, cee, t0, t_end, a, a2, p,
             v_ptr, lv_ptr, k_ptr, q_ptr, gy_ptr, gyv_ptr, gv_ptr, glv_ptr, gk_ptr, gq_ptr,
             b, pid_m, sb, B, L, M, S, m, s, mmask, smask,
             MODE: tl.constexpr, PRIOR: tl.constexpr, MASKED: tl.constexpr, FAST: tl.constexpr,
             DEFER_G: tl.constexpr = 0, L2PF: tl.constexpr = 0, SB: tl.constexpr = 1,
             BM: tl.constexpr = 1, PFROWS: tl.constexpr = 0, REL: tl.constexpr = False,
             ALG: tl.constexpr = False, VAR: tl.constexpr = True, MOM: tl.constexpr = False,
             FOLD: tl.constexpr = False, MEAN: tl.constexpr = False):
    """Backward over tokens t0 .. t0+7 from the state (l0, e0) before token t0 (FOLD: ``_gstore``).

    MOM (tune key ``bwd_mom``): (l0, e0) is the state in covariance form (w, mu) and (Hl, He) the
    adjoint of (w, mu): recompute and adjoint in moment form (``_frec_m``, ``_brec_m``; ALG unused), with
    the forward's mean update (MEAN, ``_fwd_block``).

    REL (tune key ``bwd_rel``; M and S are then compile-time constants): the block's loads address
    row (b, t0) of each input once, in int64, and token I's lanes from there (``_tok``, I >= 0), so
    that I M and I S are immediate offsets of the loads instead of a 64-bit row product per token and
    tensor. Same values. ALG (tune key ``bwd_alg``): ``_frec`` and ``_brec`` share each lam_t, and the
    readout's adjoint takes fewer instructions (``_brec``); the same formulas, other roundings.

    L2PF > 0: first asks the cache for the k, q rows (PFROWS 4: and v, Lv, g_y, g_yvar; 3: v, Lv, g_y) of
    the block L2PF blocks earlier (the sweep runs backwards in time; ``_prefetch_block``, tune keys
    ``bwd_l2pf``, ``bwd_pfrows``).

    VAR False: no gradient reaches y_var; g_yvar is never loaded or prefetched (``_brec``).

    DEFER_G = G in {1, 2, 4, 8} (gradients, MODE 0): dv, dLv of G consecutive tokens are gathered
    in [G, BM] tiles and dk, dq in [SB, G] tiles and stored once per G tokens (G = 8: once after
    the block), so that no store separates one token's loads from the next token's within a
    group (a store to memory that may alias the inputs orders the loads after it). Same values;
    tuning options ``bwd_defer`` / ``bwd_group`` (docs/kla_kernels.md, "Deferred stores").
    DEFER_G = 0: every token's gradients are stored as soon as they are computed.
    """
    if L2PF > 0:
        if VAR:
            _prefetch_block(k_ptr, q_ptr, v_ptr, lv_ptr, gy_ptr, gyv_ptr, t0 - L2PF * BWD_CK, b, L, M, S, sb,
                            pid_m, SB, BM, BWD_CK, FAST, PFROWS)
        elif PFROWS > 3:                                # without g_yvar: the rows of v, Lv, g_y only
            _prefetch_block(k_ptr, q_ptr, v_ptr, lv_ptr, gy_ptr, gy_ptr, t0 - L2PF * BWD_CK, b, L, M, S, sb,
                            pid_m, SB, BM, BWD_CK, FAST, 3)
        else:
            _prefetch_block(k_ptr, q_ptr, v_ptr, lv_ptr, gy_ptr, gy_ptr, t0 - L2PF * BWD_CK, b, L, M, S, sb,
                            pid_m, SB, BM, BWD_CK, FAST, PFROWS)
    if REL:                                             # each input at row (b, t0), int64, once per block
        row0 = b.to(tl.int64) * L + t0
        vb, lvb, gyb = v_ptr + row0 * M, lv_ptr + row0 * M, gy_ptr + row0 * M
        if VAR:
            gyvb = gyv_ptr + row0 * M
        else:
            gyvb = gyb                                  # (never read without the variance)
        kb, qb = k_ptr + row0 * S, q_ptr + row0 * S
    else:
        vb, lvb, gyb, gyvb, kb, qb = v_ptr, lv_ptr, gy_ptr, gyv_ptr, k_ptr, q_ptr
    # recompute the 7 states after tokens t0 .. t0+6 (kept in registers)
    if MOM:
        l1, e1 = _frec_m(l0, e0, t0 + 0, t_end, a, a2, p, vb, lvb, kb, qb, b, L, M, S, m, s, mmask, smask, MASKED, FAST, 0 if REL else -1, MEAN)
        l2, e2 = _frec_m(l1, e1, t0 + 1, t_end, a, a2, p, vb, lvb, kb, qb, b, L, M, S, m, s, mmask, smask, MASKED, FAST, 1 if REL else -1, MEAN)
        l3, e3 = _frec_m(l2, e2, t0 + 2, t_end, a, a2, p, vb, lvb, kb, qb, b, L, M, S, m, s, mmask, smask, MASKED, FAST, 2 if REL else -1, MEAN)
        l4, e4 = _frec_m(l3, e3, t0 + 3, t_end, a, a2, p, vb, lvb, kb, qb, b, L, M, S, m, s, mmask, smask, MASKED, FAST, 3 if REL else -1, MEAN)
        l5, e5 = _frec_m(l4, e4, t0 + 4, t_end, a, a2, p, vb, lvb, kb, qb, b, L, M, S, m, s, mmask, smask, MASKED, FAST, 4 if REL else -1, MEAN)
        l6, e6 = _frec_m(l5, e5, t0 + 5, t_end, a, a2, p, vb, lvb, kb, qb, b, L, M, S, m, s, mmask, smask, MASKED, FAST, 5 if REL else -1, MEAN)
        l7, e7 = _frec_m(l6, e6, t0 + 6, t_end, a, a2, p, vb, lvb, kb, qb, b, L, M, S, m, s, mmask, smask, MASKED, FAST, 6 if REL else -1, MEAN)
    else:
        l1, e1 = _frec(l0, e0, t0 + 0, t_end, a, a2, p, vb, lvb, kb, qb, b, L, M, S, m, s, mmask, smask, MASKED, FAST, 0 if REL else -1, ALG)
        l2, e2 = _frec(l1, e1, t0 + 1, t_end, a, a2, p, vb, lvb, kb, qb, b, L, M, S, m, s, mmask, smask, MASKED, FAST, 1 if REL else -1, ALG)
        l3, e3 = _frec(l2, e2, t0 + 2, t_end, a, a2, p, vb, lvb, kb, qb, b, L, M, S, m, s, mmask, smask, MASKED, FAST, 2 if REL else -1, ALG)
        l4, e4 = _frec(l3, e3, t0 + 3, t_end, a, a2, p, vb, lvb, kb, qb, b, L, M, S, m, s, mmask, smask, MASKED, FAST, 3 if REL else -1, ALG)
        l5, e5 = _frec(l4, e4, t0 + 4, t_end, a, a2, p, vb, lvb, kb, qb, b, L, M, S, m, s, mmask, smask, MASKED, FAST, 4 if REL else -1, ALG)
        l6, e6 = _frec(l5, e5, t0 + 5, t_end, a, a2, p, vb, lvb, kb, qb, b, L, M, S, m, s, mmask, smask, MASKED, FAST, 5 if REL else -1, ALG)
        l7, e7 = _frec(l6, e6, t0 + 6, t_end, a, a2, p, vb, lvb, kb, qb, b, L, M, S, m, s, mmask, smask, MASKED, FAST, 6 if REL else -1, ALG)
    # DEFER_G = G: [G, BM] tiles of dv, dLv and [SB, G] tiles of dk, dq (token t0 + i in row / column i % G)
    rows = tl.arange(0, DEFER_G if DEFER_G > 0 else 1)[:, None]
    cols = tl.arange(0, DEFER_G if DEFER_G > 0 else 1)[None, :]
    gvt = (rows * 0 + m * 0).to(tl.float32)
    glvt = gvt
    gkt = (s * 0 + cols * 0).to(tl.float32)
    gqt = gkt
    # reverse: tokens t0+7 .. t0, from the states before them
    lams = (l0, l1, l2, l3, l4, l5, l6, l7)
    etas = (e0, e1, e2, e3, e4, e5, e6, e7)
    H1w = Hl                                            # MOM: set by token t0's step to the adjoint of (w, mu)
    H1m = He                                            # after it, its readout included (a placeholder till then)
    for i in tl.static_range(7, -1, -1):
        if MOM:
            Hl, He, ga, gp, cll, cle, cee, gvt, glvt, gkt, gqt, H1w, H1m = _brec_m(
                lams[i], etas[i], Hl, He, ga, gp, cll, cle, cee, gvt, glvt, gkt, gqt, t0, t_end, a, a2, p, vb,
                lvb, kb, qb, gyb, gyvb, gv_ptr, glv_ptr, gk_ptr, gq_ptr, b, pid_m, sb, B, L, M, S, m,
                s, mmask, smask, MODE == 1, PRIOR, MASKED, FAST, i, DEFER_G, REL, VAR, FOLD=FOLD, MEAN=MEAN)
        else:
            Hl, He, ga, gp, cll, cle, cee, gvt, glvt, gkt, gqt = _brec(
                lams[i], etas[i], Hl, He, ga, gp, cll, cle, cee, gvt, glvt, gkt, gqt, t0, t_end, a, a2, p, vb,
                lvb, kb, qb, gyb, gyvb, gv_ptr, glv_ptr, gk_ptr, gq_ptr, b, pid_m, sb, B, L, M, S, m,
                s, mmask, smask, MODE == 1, PRIOR, MASKED, FAST, i, DEFER_G, REL, ALG, VAR, FOLD=FOLD)
    return Hl, He, ga, gp, cll, cle, cee, H1w, H1m


@triton.jit
def _bwd_ckpt_raw(ck_ptr, b, NCK, t0, MSs, ms, lmask):
    """The checkpoint (w, mu) before the block starting at t0."""
    ckb = (b.to(tl.int64) * NCK + t0 // BWD_CK) * 2 * MSs
    w0 = tl.load(ck_ptr + ckb + ms, mask=lmask, other=1.0)
    mu0 = tl.load(ck_ptr + ckb + MSs + ms, mask=lmask, other=0.0)
    return w0, mu0


@triton.jit
def _bwd_ckpt(ck_ptr, b, NCK, t0, MSs, ms, lmask, MOM: tl.constexpr = False):
    """The state before the block starting at t0 from its checkpoint, in information form
    (MOM: in covariance form, as stored)."""
    w0, mu0 = _bwd_ckpt_raw(ck_ptr, b, NCK, t0, MSs, ms, lmask)
    return _bwd_form(w0, mu0, MOM)


@triton.jit
def _bwd_form(w0, mu0, MOM: tl.constexpr):
    """A checkpoint (w, mu) in the backward's form: (lam, eta) = (1/w, mu/w), or (w, mu) with MOM."""
    if MOM:
        return w0, mu0
    else:
        l0 = 1.0 / w0                                   # checkpoint (w, mu) -> (lam, eta)
        return l0, mu0 * l0


@triton.jit
def _bwd_lanes(
    v_ptr, lv_ptr, k_ptr, q_ptr, a_ptr, p_ptr, gy_ptr, gyv_ptr, ck_ptr, glL_ptr, geL_ptr,
    bsum_ptr, gv_ptr, glv_ptr, gk_ptr, gq_ptr, ga_ptr, gp_ptr, gl0_ptr, ge0_ptr,
    B, L, M, S, LC, NC, NMB, NSB,
    MODE: tl.constexpr, PRIOR: tl.constexpr, SB: tl.constexpr, BM: tl.constexpr, FAST: tl.constexpr,
    DEFER_G: tl.constexpr, BSTAGES: tl.constexpr, CKPF: tl.constexpr, L2PF: tl.constexpr,
    PFROWS: tl.constexpr, REL: tl.constexpr, ALG: tl.constexpr, VAR: tl.constexpr, MOM: tl.constexpr,
    EVEN: tl.constexpr, FOLD: tl.constexpr, sbf, MEAN: tl.constexpr = False,
):
    """The backward of one program's lanes (``_bwd_kernel``; FOLD: of its s-block ``sbf``)."""
    pid_m, sb, b, c, m, s, mmask, smask, lmask, ms, a, p = _program(a_ptr, p_ptr, B, M, S, NMB, NSB, SB, BM, EVEN,
                                                                    FOLD, sbf)
    MSs = M * S
    a2 = a * a
    bms = b.to(tl.int64) * MSs
    zero = 0.0 * a
    if MODE == 1:
        Hl = zero
        He = zero
    else:
        Hl = tl.load(glL_ptr + bms + ms, mask=lmask, other=0.0)
        He = tl.load(geL_ptr + bms + ms, mask=lmask, other=0.0)
        for j in range(0, NC - 1 - c):                  # chunks NC-1, ..., c+1 (end -> start)
            cc = NC - 1 - j
            base = (b.to(tl.int64) * NC + cc) * 5 * MSs
            cll = tl.load(bsum_ptr + base + ms, mask=lmask, other=1.0)
            cle = tl.load(bsum_ptr + base + MSs + ms, mask=lmask, other=0.0)
            cee = tl.load(bsum_ptr + base + 2 * MSs + ms, mask=lmask, other=1.0)
            ol = tl.load(bsum_ptr + base + 3 * MSs + ms, mask=lmask, other=0.0)
            oe = tl.load(bsum_ptr + base + 4 * MSs + ms, mask=lmask, other=0.0)
            Hl = cll * Hl + cle * He + ol               # affine map of chunk cc (end -> start)
            He = cee * He + oe
    cll = zero + 1.0
    cle = zero
    cee = zero + 1.0
    ga = zero
    gp = zero
    H1w = Hl                                            # MOM: the adjoint after the chunk's first token (set when
    H1m = He                                            # its block runs, last; a placeholder till then)

    CK = BWD_CK                                         # the recompute is written for 8
    t_start = c * LC
    t_end = tl.minimum(t_start + LC, L)
    n_sub = (t_end - t_start + CK - 1) // CK
    NCK = (L + CK - 1) // CK
    if BSTAGES == 1:
        # CKPF: each block's checkpoint is loaded one block ahead (carried in registers), so that the
        # block's recompute does not start by waiting for it (Nsight Compute at 11fb0b0: 18% of the
        # backward's stall samples on the first use of that load; tune key bwd_ckpf)
        if CKPF:
            wn, mun = _bwd_ckpt_raw(ck_ptr, b, NCK, t_start + (n_sub - 1) * CK, MSs, ms, lmask)
        for jj in range(0, n_sub):
            t0 = t_start + (n_sub - 1 - jj) * CK
            if CKPF:
                wc, muc = wn, mun
                # the block before (the chunk's first block reloads itself: in bounds, unused)
                wn, mun = _bwd_ckpt_raw(ck_ptr, b, NCK, tl.maximum(t0 - CK, t_start), MSs, ms, lmask)
                l0, e0 = _bwd_form(wc, muc, MOM)        # as _bwd_ckpt
            else:
                l0, e0 = _bwd_ckpt(ck_ptr, b, NCK, t0, MSs, ms, lmask, MOM)
            if jj == 0:                                 # the last block may be partial
                Hl, He, ga, gp, cll, cle, cee, H1w, H1m = _bwd_sub(
                    l0, e0, Hl, He, ga, gp, cll, cle, cee, t0, t_end, a, a2, p, v_ptr, lv_ptr, k_ptr,
                    q_ptr, gy_ptr, gyv_ptr, gv_ptr, glv_ptr, gk_ptr, gq_ptr, b, pid_m, sb, B, L, M, S,
                    m, s, mmask, smask, MODE, PRIOR, True, FAST, DEFER_G, L2PF, SB, BM, PFROWS, REL, ALG, VAR, MOM, FOLD=FOLD, MEAN=MEAN)
            else:
                Hl, He, ga, gp, cll, cle, cee, H1w, H1m = _bwd_sub(
                    l0, e0, Hl, He, ga, gp, cll, cle, cee, t0, t_end, a, a2, p, v_ptr, lv_ptr, k_ptr,
                    q_ptr, gy_ptr, gyv_ptr, gv_ptr, glv_ptr, gk_ptr, gq_ptr, b, pid_m, sb, B, L, M, S,
                    m, s, mmask, smask, MODE, PRIOR, False, FAST, DEFER_G, L2PF, SB, BM, PFROWS, REL, ALG, VAR, MOM, FOLD=FOLD, MEAN=MEAN)
    else:
        # BSTAGES > 1 (tune key bwd_stages): the last, possibly partial block first, then the loop over
        # the whole blocks without a branch, which Triton's pipeliner can software-pipeline (cp.async
        # copies of the next blocks' inputs; docs/kla_kernels.md, "Pipelined loads")
        t0 = t_start + (n_sub - 1) * CK
        l0, e0 = _bwd_ckpt(ck_ptr, b, NCK, t0, MSs, ms, lmask, MOM)
        Hl, He, ga, gp, cll, cle, cee, H1w, H1m = _bwd_sub(
            l0, e0, Hl, He, ga, gp, cll, cle, cee, t0, t_end, a, a2, p, v_ptr, lv_ptr, k_ptr,
            q_ptr, gy_ptr, gyv_ptr, gv_ptr, glv_ptr, gk_ptr, gq_ptr, b, pid_m, sb, B, L, M, S,
            m, s, mmask, smask, MODE, PRIOR, True, FAST, DEFER_G, VAR=VAR, MOM=MOM, FOLD=FOLD, MEAN=MEAN)
        for jj in tl.range(1, n_sub, num_stages=BSTAGES):
            t0 = t_start + (n_sub - 1 - jj) * CK
            l0, e0 = _bwd_ckpt(ck_ptr, b, NCK, t0, MSs, ms, lmask, MOM)
            Hl, He, ga, gp, cll, cle, cee, H1w, H1m = _bwd_sub(
                l0, e0, Hl, He, ga, gp, cll, cle, cee, t0, t_end, a, a2, p, v_ptr, lv_ptr, k_ptr,
                q_ptr, gy_ptr, gyv_ptr, gv_ptr, glv_ptr, gk_ptr, gq_ptr, b, pid_m, sb, B, L, M, S,
                m, s, mmask, smask, MODE, PRIOR, False, FAST, DEFER_G, VAR=VAR, MOM=MOM, FOLD=FOLD, MEAN=MEAN)

    if MODE == 1:
        base = (b.to(tl.int64) * NC + c) * 5 * MSs
        tl.store(bsum_ptr + base + ms, cll, mask=lmask)
        tl.store(bsum_ptr + base + MSs + ms, cle, mask=lmask)
        tl.store(bsum_ptr + base + 2 * MSs + ms, cee, mask=lmask)
        tl.store(bsum_ptr + base + 3 * MSs + ms, Hl, mask=lmask)
        tl.store(bsum_ptr + base + 4 * MSs + ms, He, mask=lmask)
    else:
        pbase = (b.to(tl.int64) * NC + c) * MSs
        tl.store(ga_ptr + pbase + ms, ga, mask=lmask)
        tl.store(gp_ptr + pbase + ms, gp, mask=lmask)
        if c == 0:
            if MOM:
                # (w_0, mu_0) = (1/lam_0, eta_0/lam_0): dL/dlam_0 = -w_0 (w_0 Hw_0 + mu_0 Hm_0), dL/deta_0 = w_0 Hm_0.
                # The two products cancel after a weak prior (lam_0 << 1, large mu_0); expanded through token 1
                # (docs/math/kla.md §7, "Weak priors in the Triton kernels"; bayesfilt.scan.diagonal._moment_initial_grads):
                # -w_0 a g_1^2 (a w_0 Hw_1 + Hm_1 (a w_0 u_1 + mu_0 (1 + p phi_1))), (Hw_1, Hm_1) = (H1w, H1m)
                w0, mu0 = _bwd_ckpt_raw(ck_ptr, b, NCK, 0, MSs, ms, lmask)
                vv, lv, kk, _q1 = _tok(v_ptr, lv_ptr, k_ptr, q_ptr, 0, L, b, L, M, S, m, s, mmask, smask, False)
                phi = lv * kk * kk                      # phi_1
                g1 = 1.0 / (1.0 + phi * (a2 * w0 + p))  # g_1 = 1/(1 + phi_1 P_1)
                aw0 = a * w0
                gl0 = -(aw0 * g1) * (g1 * (aw0 * H1w + H1m * (aw0 * (lv * vv * kk) + mu0 * (1.0 + p * phi))))
                tl.store(gl0_ptr + bms + ms, gl0, mask=lmask)
                tl.store(ge0_ptr + bms + ms, w0 * He, mask=lmask)
            else:
                tl.store(gl0_ptr + bms + ms, Hl, mask=lmask)
                tl.store(ge0_ptr + bms + ms, He, mask=lmask)




@_jit(_SIZES)
def _bwd_kernel(
    v_ptr, lv_ptr, k_ptr, q_ptr, a_ptr, p_ptr, gy_ptr, gyv_ptr, ck_ptr, glL_ptr, geL_ptr,
    bsum_ptr, gv_ptr, glv_ptr, gk_ptr, gq_ptr, ga_ptr, gp_ptr, gl0_ptr, ge0_ptr,
    B, L, M, S, LC, NC, NMB, NSB,
    MODE: tl.constexpr, PRIOR: tl.constexpr,
    SB: tl.constexpr, BM: tl.constexpr, FAST: tl.constexpr, DEFER_G: tl.constexpr = 0,
    BSTAGES: tl.constexpr = 1, CKPF: tl.constexpr = False, L2PF: tl.constexpr = 0,
    PFROWS: tl.constexpr = 0, REL: tl.constexpr = False, MC: tl.constexpr = 0, SC: tl.constexpr = 0,
    ALG: tl.constexpr = False, VAR: tl.constexpr = True, MOM: tl.constexpr = False, FOLD: tl.constexpr = False,
    MEAN: tl.constexpr = False,
):
    # MOM (tune key bwd_mom): the adjoint runs in moment form (``_brec_m``): glL, geL hold the adjoint
    # of the final state as (w_L, mu_L) (the caller converts it), (Hl, He) carry the adjoint of (w, mu)
    # and the chunk summaries its map; gl0, ge0 are converted back to (lam_0, eta_0) at the end. MEAN (tune
    # key mean_switch; MOM only): the recompute's mean update is the forward's (``_fwd_block``, ``_mean``).
    # REL (tune key bwd_rel, with MC = M and SC = S, the same sizes as compile-time constants): each
    # 8-token block addresses row (b, t0) of its inputs once and a token's lanes from there, so that
    # the row offset I M of token I becomes a load's immediate offset (``_bwd_sub``); where BM divides
    # M and SB divides S the lane masks are constant true (``_lanes``, EVEN). Same values.
    # VAR False (no gradient reaches y_var): gyv_ptr is never read, in MODE 0 nor in the MODE 1 chunk
    # summaries (whose offsets carry the readout's adjoint), and g_yvar's terms are left out (``_brec``).
    # FOLD (tune key bwd_fold): the grid has no s-block axis; each program sweeps its s-blocks in turn and
    # adds each one's dv, dLv to what the ones before stored (a fixed order: deterministic), so that dv, dLv
    # are one [B, L, M] tensor each instead of NSB partial sums that the caller adds up afterwards.
    EVEN: tl.constexpr = MC > 0 and MC % BM == 0 and SC % SB == 0
    if MC > 0:
        M = MC
        S = SC
    if FOLD:
        for sbf in range(0, NSB):
            _bwd_lanes(v_ptr, lv_ptr, k_ptr, q_ptr, a_ptr, p_ptr, gy_ptr, gyv_ptr, ck_ptr, glL_ptr, geL_ptr,
                       bsum_ptr, gv_ptr, glv_ptr, gk_ptr, gq_ptr, ga_ptr, gp_ptr, gl0_ptr, ge0_ptr,
                       B, L, M, S, LC, NC, NMB, NSB, MODE, PRIOR, SB, BM, FAST, DEFER_G, BSTAGES, CKPF, L2PF,
                       PFROWS, REL, ALG, VAR, MOM, EVEN, True, sbf, MEAN)
            tl.debug_barrier()                          # this s-block's stores before the next one's loads
    else:
        _bwd_lanes(v_ptr, lv_ptr, k_ptr, q_ptr, a_ptr, p_ptr, gy_ptr, gyv_ptr, ck_ptr, glL_ptr, geL_ptr,
                   bsum_ptr, gv_ptr, glv_ptr, gk_ptr, gq_ptr, ga_ptr, gp_ptr, gl0_ptr, ge0_ptr,
                   B, L, M, S, LC, NC, NMB, NSB, MODE, PRIOR, SB, BM, FAST, DEFER_G, BSTAGES, CKPF, L2PF,
                   PFROWS, REL, ALG, VAR, MOM, EVEN, False, 0, MEAN)


# ----------------------------------------------------------------------------- decode step
@triton.jit
def _step_kernel(
    v_ptr, lv_ptr, k_ptr, q_ptr, a_ptr, p_ptr, lam_ptr, eta_ptr,
    y_ptr, yv_ptr, lamo_ptr, etao_ptr, M, S, NMB,
    PRIOR: tl.constexpr, SB: tl.constexpr, BM: tl.constexpr,
):
    """One token in information form (exactly the reference's equations)."""
    pid = tl.program_id(0)
    pid_m = pid % NMB
    b = pid // NMB
    m, s, mmask, smask = _lanes(pid_m, 0, M, S, SB, BM)
    lmask = mmask & smask
    ms = m * S + s                                      # user layout (B, M, S), (M, S)
    bms = b.to(tl.int64) * M * S
    vv, lv, kk, qq = _tok(v_ptr, lv_ptr, k_ptr, q_ptr, 0, 1, b, 1, M, S, m, s, mmask, smask, False)
    a = tl.load(a_ptr + ms, mask=lmask, other=1.0).to(tl.float32)
    p = tl.load(p_ptr + ms, mask=lmask, other=0.0).to(tl.float32)
    lam = tl.load(lam_ptr + bms + ms, mask=lmask, other=1.0).to(tl.float32)
    eta = tl.load(eta_ptr + bms + ms, mask=lmask, other=0.0).to(tl.float32)
    a2 = a * a
    d = a2 + p * lam                                    # d = a^2 + p lam_{t-1}
    c = tl.minimum(1.0, LAM_MAX * d / lam)              # the prior lam/d saturated at LAM_MAX (mean kept):
    lam = lam * c                                       # lam/d would overflow from a saturated state when
    eta = eta * c                                       # a < ~5e-5 (p = 0)
    lam_n = lam / d + lv * kk * kk                      # lam_t = lam_{t-1}/d + Lv k^2
    eta_n = (a / d) * eta + lv * vv * kk                # eta_t = (a/d) eta_{t-1} + Lv v k
    w = 1.0 / lam_n
    mu = eta_n * w                                      # mu_t = eta_t / lam_t
    if PRIOR:
        yt = tl.sum(qq * a * mu, axis=0, keep_dims=True)                  # sum_s q a mu
        yvt = tl.sum(qq * qq * (a2 * w + p), axis=0, keep_dims=True)      # sum_s q^2 (a^2/lam + p)
    else:
        yt = tl.sum(qq * mu, axis=0, keep_dims=True)                      # sum_s q mu
        yvt = tl.sum(qq * qq * w, axis=0, keep_dims=True)                 # sum_s q^2 / lam
    tl.store(y_ptr + b.to(tl.int64) * M + m, yt, mask=mmask)
    tl.store(yv_ptr + b.to(tl.int64) * M + m, yvt, mask=mmask)
    cap = tl.minimum(1.0, LAM_MAX / lam_n)              # saturate at LAM_MAX, mu kept
    tl.store(lamo_ptr + bms + ms, lam_n * cap, mask=lmask)
    tl.store(etao_ptr + bms + ms, eta_n * cap, mask=lmask)
