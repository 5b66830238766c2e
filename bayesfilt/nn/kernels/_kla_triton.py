"""Triton kernels of the KLA diagonal filter (forward, exact backward, decode step).

Maths: docs/math/kla.md (the information form) and docs/kla_kernels.md (the kernels).
The scan kernels run each lane (m, s) in the equivalent *covariance* form, which needs one
reciprocal per lane-step instead of two:

    w = 1/lam, mu = eta/lam
    P_t   = a^2 w_{t-1} + p                 (prior variance)
    g_t   = 1 / (1 + phi_t P_t)             (phi_t = Lv_t k_t^2)
    w_t   = P_t g_t                         (= 1/lam_t)
    mu_t  = (a g_t) mu_{t-1} + w_t u_t      (u_t = Lv_t v_t k_t; a g_t = f_t lam_{t-1} w_t)

(w_t = 1/(1/P_t + phi_t) and lam_{t-1}/(a^2 + p lam_{t-1}) = 1/P_t: the same filter.)
Readout: y = sum_s q mu, y_var = sum_s q^2 w; prior readout: y = sum_s q a mu,
y_var = sum_s q^2 (a^2 w + p).

Programs own a tile of lanes [MO, SB, MI] (m = m0 + mo*MI + mi, s = s0 + si) and sweep time.
Time may be split into NC chunks of LC tokens (LC a multiple of CK) for few lanes:
  forward  MODE 1: each chunk's Möbius map of w (2x2, renormalised every step),
           MODE 2: each chunk's affine map of mu (given the true w at its start),
           MODE 0: the sweep from the true start state (outputs, checkpoints, final state);
  backward MODE 1: each chunk's affine map of the adjoint (Gw, Gmu) (end -> start),
           MODE 0: the reverse sweep with the true incoming adjoint (all gradients).
A program finds its chunk's start state (adjoint) by applying the maps of the chunks before
(after) it in order: O(NC) small loads, no extra launch. Checkpoints of (w, mu) every CK=8
tokens are the only thing the backward keeps; inside 8 tokens the states live in registers.

No validation here: bayesfilt.nn.functional validates. Offsets that can pass 2^31 (anything
with a batch or time factor) are computed in int64.
"""

from __future__ import annotations

import triton
import triton.language as tl


#: Checkpoint interval of the backward (its recompute keeps these 8 states in registers).
BWD_CK = tl.constexpr(8)


# ----------------------------------------------------------------------------- helpers
@triton.jit
def _lanes(pid_m, sb, M, S, MO: tl.constexpr, SB: tl.constexpr, MI: tl.constexpr):
    """Lane indices of one program: m [MO,1,MI], s [1,SB,1] and their masks."""
    mo = tl.arange(0, MO)[:, None, None]
    si = tl.arange(0, SB)[None, :, None]
    mi = tl.arange(0, MI)[None, None, :]
    m = pid_m * (MO * MI) + mo * MI + mi
    s = sb * SB + si
    return m, s, m < M, s < S


@triton.jit
def _live(mask, idx, tok, t_end):
    """mask & (tok < t_end), built as a tensor comparison (the interpreter mistypes bool & scalar)."""
    return mask & (idx * 0 + tok < t_end)


@triton.jit
def _tok(v_ptr, lv_ptr, k_ptr, q_ptr, tok, t_end, b, L, M, S, m, s, mmask, smask):
    """Load token `tok` of batch b: v, Lv [MO,1,MI] and k, q [1,SB,1] as float32."""
    row = b.to(tl.int64) * L + tok                      # (b, t) row, int64
    vm = _live(mmask, m, tok, t_end)
    sm = _live(smask, s, tok, t_end)
    vv = tl.load(v_ptr + row * M + m, mask=vm, other=0.0).to(tl.float32)
    lv = tl.load(lv_ptr + row * M + m, mask=vm, other=0.0).to(tl.float32)
    kk = tl.load(k_ptr + row * S + s, mask=sm, other=0.0).to(tl.float32)
    qq = tl.load(q_ptr + row * S + s, mask=sm, other=0.0).to(tl.float32)
    return vv, lv, kk, qq


@triton.jit
def _fstep(w, mu, a, a2, p, vv, lv, kk, valid):
    """One filter step in covariance form; returns (w_t, mu_t) (unchanged where not valid)."""
    phi = lv * kk * kk                                  # phi_t = Lv_t k_t^2
    uu = lv * vv * kk                                   # u_t = Lv_t v_t k_t
    P = a2 * w + p                                      # P_t = a^2 w_{t-1} + p
    g = 1.0 / (1.0 + phi * P)                           # g_t = 1 / (1 + phi_t P_t)
    w_new = P * g                                       # w_t = P_t g_t
    mu_new = (a * g) * mu + w_new * uu                  # mu_t = a g_t mu_{t-1} + w_t u_t
    return tl.where(valid, w_new, w), tl.where(valid, mu_new, mu)


@triton.jit
def _start_state(w, mu, sumw_ptr, summu_ptr, b, c, NC, M, S, ms, lmask, WITH_MU: tl.constexpr):
    """Apply the chunk maps of chunks 0..c-1 (in order) to the initial (w, mu)."""
    MSs = M * S
    for cc in range(0, c):
        base = (b.to(tl.int64) * NC + cc) * 4 * MSs
        x = tl.load(sumw_ptr + base + ms, mask=lmask, other=1.0)
        y = tl.load(sumw_ptr + base + MSs + ms, mask=lmask, other=0.0)
        z = tl.load(sumw_ptr + base + 2 * MSs + ms, mask=lmask, other=0.0)
        u = tl.load(sumw_ptr + base + 3 * MSs + ms, mask=lmask, other=1.0)
        if WITH_MU:
            base2 = (b.to(tl.int64) * NC + cc) * 2 * MSs
            A = tl.load(summu_ptr + base2 + ms, mask=lmask, other=1.0)
            bb = tl.load(summu_ptr + base2 + MSs + ms, mask=lmask, other=0.0)
            mu = A * mu + bb                            # mu_end = A mu_start + b
        w = (x * w + y) / (z * w + u)                   # w_end = (x w + y) / (z w + u)
    return w, mu


# ----------------------------------------------------------------------------- forward
@triton.jit
def _fwd_kernel(
    v_ptr, lv_ptr, k_ptr, q_ptr, a_ptr, p_ptr, w0_ptr, mu0_ptr,
    y_ptr, yv_ptr, lamL_ptr, etaL_ptr, ck_ptr, sumw_ptr, summu_ptr,
    B, L, M, S, LC, NC, NMB, NSB,
    MODE: tl.constexpr, PRIOR: tl.constexpr, WRITE_CK: tl.constexpr,
    MO: tl.constexpr, SB: tl.constexpr, MI: tl.constexpr, CK: tl.constexpr,
):
    pid = tl.program_id(0)
    pid_m = pid % NMB
    rest = pid // NMB
    sb = rest % NSB
    rest = rest // NSB
    b = rest % B
    c = rest // B

    m, s, mmask, smask = _lanes(pid_m, sb, M, S, MO, SB, MI)
    lmask = mmask & smask
    ms = m * S + s                                      # lane offset in an [M, S] plane
    MSs = M * S
    a = tl.load(a_ptr + ms, mask=lmask, other=1.0).to(tl.float32)
    p = tl.load(p_ptr + ms, mask=lmask, other=0.0).to(tl.float32)
    a2 = a * a
    bms = b.to(tl.int64) * MSs
    w = tl.load(w0_ptr + bms + ms, mask=lmask, other=1.0)
    mu = tl.load(mu0_ptr + bms + ms, mask=lmask, other=0.0)
    if MODE != 1:
        w, mu = _start_state(w, mu, sumw_ptr, summu_ptr, b, c, NC, M, S, ms, lmask, MODE == 0)

    t_start = c * LC
    t_end = tl.minimum(t_start + LC, L)
    # MODE 1: Möbius map [[x, y], [z, u]] of w; MODE 2: affine map (A, bb) of mu
    x = 0.0 * w + 1.0
    y = 0.0 * w
    z = 0.0 * w
    u = x
    A = x
    bb = y

    for t0 in range(t_start, t_end, CK):
        if MODE == 0:
            if WRITE_CK:
                ckb = ((b.to(tl.int64) * ((L + CK - 1) // CK) + t0 // CK) * 2) * MSs
                tl.store(ck_ptr + ckb + ms, w, mask=lmask)
                tl.store(ck_ptr + ckb + MSs + ms, mu, mask=lmask)
        for i in tl.static_range(CK):
            tok = t0 + i
            valid = tok < t_end
            vv, lv, kk, qq = _tok(v_ptr, lv_ptr, k_ptr, q_ptr, tok, t_end, b, L, M, S, m, s,
                                  mmask, smask)
            if MODE == 1:
                phi = lv * kk * kk                      # phi_t
                x2 = a2 * x + p * z                     # rows of M_t @ R: numerator
                y2 = a2 * y + p * u
                z2 = z + phi * x2                       # denominator = phi * numerator + old
                u2 = u + phi * y2
                nrm = 1.0 / (x2 + y2 + z2 + u2)         # renormalise (all entries >= 0)
                x = tl.where(valid, x2 * nrm, x)
                y = tl.where(valid, y2 * nrm, y)
                z = tl.where(valid, z2 * nrm, z)
                u = tl.where(valid, u2 * nrm, u)
            else:
                phi = lv * kk * kk                      # phi_t = Lv_t k_t^2
                uu = lv * vv * kk                       # u_t = Lv_t v_t k_t
                P = a2 * w + p                          # P_t = a^2 w_{t-1} + p
                g = 1.0 / (1.0 + phi * P)               # g_t = 1/(1 + phi_t P_t)
                w_new = P * g                           # w_t = P_t g_t
                ag = a * g                              # f_t lam_{t-1} w_t = a g_t
                mu_new = ag * mu + w_new * uu           # mu_t = a g_t mu_{t-1} + w_t u_t
                w = tl.where(valid, w_new, w)
                mu = tl.where(valid, mu_new, mu)
                if MODE == 2:
                    A = tl.where(valid, ag * A, A)
                    bb = tl.where(valid, ag * bb + w_new * uu, bb)
                else:
                    if PRIOR:
                        yt = tl.sum(qq * a * mu, axis=1, keep_dims=True)              # sum_s q a mu_t
                        yvt = tl.sum(qq * qq * (a2 * w + p), axis=1, keep_dims=True)  # sum_s q^2 (a^2 w_t + p)
                    else:
                        yt = tl.sum(qq * mu, axis=1, keep_dims=True)                  # sum_s q mu_t
                        yvt = tl.sum(qq * qq * w, axis=1, keep_dims=True)             # sum_s q^2 w_t
                    orow = ((sb.to(tl.int64) * B + b) * L + tok) * M
                    tl.store(y_ptr + orow + m, yt, mask=_live(mmask, m, tok, t_end))
                    tl.store(yv_ptr + orow + m, yvt, mask=_live(mmask, m, tok, t_end))

    if MODE == 1:
        base = (b.to(tl.int64) * NC + c) * 4 * MSs
        tl.store(sumw_ptr + base + ms, x, mask=lmask)
        tl.store(sumw_ptr + base + MSs + ms, y, mask=lmask)
        tl.store(sumw_ptr + base + 2 * MSs + ms, z, mask=lmask)
        tl.store(sumw_ptr + base + 3 * MSs + ms, u, mask=lmask)
    elif MODE == 2:
        base2 = (b.to(tl.int64) * NC + c) * 2 * MSs
        tl.store(summu_ptr + base2 + ms, A, mask=lmask)
        tl.store(summu_ptr + base2 + MSs + ms, bb, mask=lmask)
    else:
        if c == NC - 1:
            lam = 1.0 / w                               # lam_L = 1 / w_L
            tl.store(lamL_ptr + bms + ms, lam, mask=lmask)
            tl.store(etaL_ptr + bms + ms, mu * lam, mask=lmask)   # eta_L = mu_L lam_L


# ----------------------------------------------------------------------------- backward
@triton.jit
def _frec(w, mu, tok, t_end, a, a2, p, v_ptr, lv_ptr, k_ptr, q_ptr, b, L, M, S, m, s,
          mmask, smask):
    """Recompute one forward step (token tok) from the state before it."""
    valid = tok < t_end
    vv, lv, kk, qq = _tok(v_ptr, lv_ptr, k_ptr, q_ptr, tok, t_end, b, L, M, S, m, s, mmask, smask)
    return _fstep(w, mu, a, a2, p, vv, lv, kk, valid)


@triton.jit
def _brec(w_prev, mu_prev, Gw, Gm, ga, gp, cww, cwm, cmm, tok, t_end, a, a2, p,
          v_ptr, lv_ptr, k_ptr, q_ptr, gy_ptr, gyv_ptr, gv_ptr, glv_ptr, gk_ptr, gq_ptr,
          b, pid_m, sb, B, L, M, S, m, s, mmask, smask,
          SUMMARY: tl.constexpr, PRIOR: tl.constexpr):
    """Adjoint of one step (token tok), given the state before it and the adjoint after it.

    (Gw, Gm) is the adjoint of (w_t, mu_t) from later steps; returns the adjoint of
    (w_{t-1}, mu_{t-1}) and the updated accumulators. Formulas: docs/kla_kernels.md.
    """
    valid = tok < t_end
    vv, lv, kk, qq = _tok(v_ptr, lv_ptr, k_ptr, q_ptr, tok, t_end, b, L, M, S, m, s, mmask, smask)
    row = b.to(tl.int64) * L + tok
    gy = tl.load(gy_ptr + row * M + m, mask=_live(mmask, m, tok, t_end), other=0.0)
    gyv = tl.load(gyv_ptr + row * M + m, mask=_live(mmask, m, tok, t_end), other=0.0)
    phi = lv * kk * kk                                  # phi_t = Lv k^2
    uu = lv * vv * kk                                   # u_t = Lv v k
    P = a2 * w_prev + p                                 # P_t
    g = 1.0 / (1.0 + phi * P)                           # g_t
    w = P * g                                           # w_t
    ag = a * g                                          # a g_t
    mu = ag * mu_prev + w * uu                          # mu_t
    q2 = qq * qq
    if PRIOR:
        Gm_t = Gm + gy * qq * a                         # d y / d mu_t = q a
        Gw_t = Gw + gyv * q2 * a2                       # d y_var / d w_t = q^2 a^2
    else:
        Gm_t = Gm + gy * qq                             # d y / d mu_t = q
        Gw_t = Gw + gyv * q2                            # d y_var / d w_t = q^2
    Gu = Gm_t * w                                       # mu_t = ... + w_t u_t
    Gw_t = Gw_t + Gm_t * uu
    Gag = Gm_t * mu_prev                                # mu_t = (a g) mu_{t-1} + ...
    Gg = Gag * a + Gw_t * P                             # through a g_t and w_t = P g_t
    gg2 = g * g
    GP = Gw_t * g - Gg * phi * gg2                      # dg/dP = -phi g^2
    Gw_o = tl.where(valid, GP * a2, Gw)                 # P = a^2 w_{t-1} + p
    Gm_o = tl.where(valid, Gm_t * ag, Gm)
    if SUMMARY:
        al = a2 * gg2                                   # d w_t / d w_{t-1}
        be = al * (uu - phi * a * mu_prev)              # d mu_t / d w_{t-1}
        cwm = tl.where(valid, al * cwm + be * cmm, cwm)
        cww = tl.where(valid, al * cww, cww)
        cmm = tl.where(valid, ag * cmm, cmm)
    else:
        Gphi = -Gg * P * gg2                            # dg/dphi = -P g^2
        ga_n = ga + Gag * g + GP * 2.0 * a * w_prev
        gp_n = gp + GP
        if PRIOR:
            ga_n = ga_n + gy * qq * mu + gyv * q2 * 2.0 * a * w
            gp_n = gp_n + gyv * q2
            Xq = gy * a * mu + 2.0 * qq * gyv * (a2 * w + p)
        else:
            Xq = gy * mu + 2.0 * qq * gyv * w
        ga = tl.where(valid, ga_n, ga)
        gp = tl.where(valid, gp_n, gp)
        R1 = tl.sum(Gu * kk, axis=1, keep_dims=True)                  # sum_s Gu k
        R2 = tl.sum(Gphi * kk * kk, axis=1, keep_dims=True)           # sum_s Gphi k^2
        orow = (sb.to(tl.int64) * B + b) * L + tok
        tl.store(gv_ptr + orow * M + m, lv * R1, mask=_live(mmask, m, tok, t_end))            # dv
        tl.store(glv_ptr + orow * M + m, R2 + vv * R1, mask=_live(mmask, m, tok, t_end))      # dLv
        Xk = lv * (2.0 * kk * Gphi + vv * Gu)
        gk = tl.sum(tl.sum(Xk, axis=2, keep_dims=True), axis=0, keep_dims=True)
        gq = tl.sum(tl.sum(Xq, axis=2, keep_dims=True), axis=0, keep_dims=True)
        krow = (pid_m.to(tl.int64) * B + b) * L + tok
        tl.store(gk_ptr + krow * S + s, gk, mask=_live(smask, s, tok, t_end))
        tl.store(gq_ptr + krow * S + s, gq, mask=_live(smask, s, tok, t_end))
    return Gw_o, Gm_o, ga, gp, cww, cwm, cmm


@triton.jit
def _bwd_kernel(
    v_ptr, lv_ptr, k_ptr, q_ptr, a_ptr, p_ptr, gy_ptr, gyv_ptr, ck_ptr, gwL_ptr, gmL_ptr,
    bsum_ptr, gv_ptr, glv_ptr, gk_ptr, gq_ptr, ga_ptr, gp_ptr, gw0_ptr, gm0_ptr,
    B, L, M, S, LC, NC, NMB, NSB,
    MODE: tl.constexpr, PRIOR: tl.constexpr,
    MO: tl.constexpr, SB: tl.constexpr, MI: tl.constexpr,
):
    pid = tl.program_id(0)
    pid_m = pid % NMB
    rest = pid // NMB
    sb = rest % NSB
    rest = rest // NSB
    b = rest % B
    c = rest // B

    m, s, mmask, smask = _lanes(pid_m, sb, M, S, MO, SB, MI)
    lmask = mmask & smask
    ms = m * S + s
    MSs = M * S
    a = tl.load(a_ptr + ms, mask=lmask, other=1.0).to(tl.float32)
    p = tl.load(p_ptr + ms, mask=lmask, other=0.0).to(tl.float32)
    a2 = a * a
    bms = b.to(tl.int64) * MSs
    zero = 0.0 * a
    if MODE == 1:
        Gw = zero
        Gm = zero
    else:
        Gw = tl.load(gwL_ptr + bms + ms, mask=lmask, other=0.0)
        Gm = tl.load(gmL_ptr + bms + ms, mask=lmask, other=0.0)
        for j in range(0, NC - 1 - c):                  # chunks NC-1, ..., c+1 (end -> start)
            cc = NC - 1 - j
            base = (b.to(tl.int64) * NC + cc) * 5 * MSs
            cww = tl.load(bsum_ptr + base + ms, mask=lmask, other=1.0)
            cwm = tl.load(bsum_ptr + base + MSs + ms, mask=lmask, other=0.0)
            cmm = tl.load(bsum_ptr + base + 2 * MSs + ms, mask=lmask, other=1.0)
            ow = tl.load(bsum_ptr + base + 3 * MSs + ms, mask=lmask, other=0.0)
            om = tl.load(bsum_ptr + base + 4 * MSs + ms, mask=lmask, other=0.0)
            Gw = cww * Gw + cwm * Gm + ow
            Gm = cmm * Gm + om
    cww = zero + 1.0
    cwm = zero
    cmm = zero + 1.0
    ga = zero
    gp = zero

    CK = BWD_CK                                         # the recompute below is written for 8
    t_start = c * LC
    t_end = tl.minimum(t_start + LC, L)
    n_sub = (t_end - t_start + CK - 1) // CK
    NCK = (L + CK - 1) // CK
    for jj in range(0, n_sub):
        t0 = t_start + (n_sub - 1 - jj) * CK
        ckb = (b.to(tl.int64) * NCK + t0 // CK) * 2 * MSs
        w0 = tl.load(ck_ptr + ckb + ms, mask=lmask, other=1.0)
        m0 = tl.load(ck_ptr + ckb + MSs + ms, mask=lmask, other=0.0)
        # recompute the 7 states after tokens t0 .. t0+6 (kept in registers)
        w1, m1 = _frec(w0, m0, t0 + 0, t_end, a, a2, p, v_ptr, lv_ptr, k_ptr, q_ptr, b, L, M, S, m, s, mmask, smask)
        w2, m2 = _frec(w1, m1, t0 + 1, t_end, a, a2, p, v_ptr, lv_ptr, k_ptr, q_ptr, b, L, M, S, m, s, mmask, smask)
        w3, m3 = _frec(w2, m2, t0 + 2, t_end, a, a2, p, v_ptr, lv_ptr, k_ptr, q_ptr, b, L, M, S, m, s, mmask, smask)
        w4, m4 = _frec(w3, m3, t0 + 3, t_end, a, a2, p, v_ptr, lv_ptr, k_ptr, q_ptr, b, L, M, S, m, s, mmask, smask)
        w5, m5 = _frec(w4, m4, t0 + 4, t_end, a, a2, p, v_ptr, lv_ptr, k_ptr, q_ptr, b, L, M, S, m, s, mmask, smask)
        w6, m6 = _frec(w5, m5, t0 + 5, t_end, a, a2, p, v_ptr, lv_ptr, k_ptr, q_ptr, b, L, M, S, m, s, mmask, smask)
        w7, m7 = _frec(w6, m6, t0 + 6, t_end, a, a2, p, v_ptr, lv_ptr, k_ptr, q_ptr, b, L, M, S, m, s, mmask, smask)
        # reverse: tokens t0+7 .. t0
        Gw, Gm, ga, gp, cww, cwm, cmm = _brec(w7, m7, Gw, Gm, ga, gp, cww, cwm, cmm, t0 + 7, t_end, a, a2, p, v_ptr, lv_ptr, k_ptr, q_ptr, gy_ptr, gyv_ptr, gv_ptr, glv_ptr, gk_ptr, gq_ptr, b, pid_m, sb, B, L, M, S, m, s, mmask, smask, MODE == 1, PRIOR)
        Gw, Gm, ga, gp, cww, cwm, cmm = _brec(w6, m6, Gw, Gm, ga, gp, cww, cwm, cmm, t0 + 6, t_end, a, a2, p, v_ptr, lv_ptr, k_ptr, q_ptr, gy_ptr, gyv_ptr, gv_ptr, glv_ptr, gk_ptr, gq_ptr, b, pid_m, sb, B, L, M, S, m, s, mmask, smask, MODE == 1, PRIOR)
        Gw, Gm, ga, gp, cww, cwm, cmm = _brec(w5, m5, Gw, Gm, ga, gp, cww, cwm, cmm, t0 + 5, t_end, a, a2, p, v_ptr, lv_ptr, k_ptr, q_ptr, gy_ptr, gyv_ptr, gv_ptr, glv_ptr, gk_ptr, gq_ptr, b, pid_m, sb, B, L, M, S, m, s, mmask, smask, MODE == 1, PRIOR)
        Gw, Gm, ga, gp, cww, cwm, cmm = _brec(w4, m4, Gw, Gm, ga, gp, cww, cwm, cmm, t0 + 4, t_end, a, a2, p, v_ptr, lv_ptr, k_ptr, q_ptr, gy_ptr, gyv_ptr, gv_ptr, glv_ptr, gk_ptr, gq_ptr, b, pid_m, sb, B, L, M, S, m, s, mmask, smask, MODE == 1, PRIOR)
        Gw, Gm, ga, gp, cww, cwm, cmm = _brec(w3, m3, Gw, Gm, ga, gp, cww, cwm, cmm, t0 + 3, t_end, a, a2, p, v_ptr, lv_ptr, k_ptr, q_ptr, gy_ptr, gyv_ptr, gv_ptr, glv_ptr, gk_ptr, gq_ptr, b, pid_m, sb, B, L, M, S, m, s, mmask, smask, MODE == 1, PRIOR)
        Gw, Gm, ga, gp, cww, cwm, cmm = _brec(w2, m2, Gw, Gm, ga, gp, cww, cwm, cmm, t0 + 2, t_end, a, a2, p, v_ptr, lv_ptr, k_ptr, q_ptr, gy_ptr, gyv_ptr, gv_ptr, glv_ptr, gk_ptr, gq_ptr, b, pid_m, sb, B, L, M, S, m, s, mmask, smask, MODE == 1, PRIOR)
        Gw, Gm, ga, gp, cww, cwm, cmm = _brec(w1, m1, Gw, Gm, ga, gp, cww, cwm, cmm, t0 + 1, t_end, a, a2, p, v_ptr, lv_ptr, k_ptr, q_ptr, gy_ptr, gyv_ptr, gv_ptr, glv_ptr, gk_ptr, gq_ptr, b, pid_m, sb, B, L, M, S, m, s, mmask, smask, MODE == 1, PRIOR)
        Gw, Gm, ga, gp, cww, cwm, cmm = _brec(w0, m0, Gw, Gm, ga, gp, cww, cwm, cmm, t0 + 0, t_end, a, a2, p, v_ptr, lv_ptr, k_ptr, q_ptr, gy_ptr, gyv_ptr, gv_ptr, glv_ptr, gk_ptr, gq_ptr, b, pid_m, sb, B, L, M, S, m, s, mmask, smask, MODE == 1, PRIOR)

    if MODE == 1:
        base = (b.to(tl.int64) * NC + c) * 5 * MSs
        tl.store(bsum_ptr + base + ms, cww, mask=lmask)
        tl.store(bsum_ptr + base + MSs + ms, cwm, mask=lmask)
        tl.store(bsum_ptr + base + 2 * MSs + ms, cmm, mask=lmask)
        tl.store(bsum_ptr + base + 3 * MSs + ms, Gw, mask=lmask)
        tl.store(bsum_ptr + base + 4 * MSs + ms, Gm, mask=lmask)
    else:
        pbase = (b.to(tl.int64) * NC + c) * MSs
        tl.store(ga_ptr + pbase + ms, ga, mask=lmask)
        tl.store(gp_ptr + pbase + ms, gp, mask=lmask)
        if c == 0:
            tl.store(gw0_ptr + bms + ms, Gw, mask=lmask)
            tl.store(gm0_ptr + bms + ms, Gm, mask=lmask)


# ----------------------------------------------------------------------------- decode step
@triton.jit
def _step_kernel(
    v_ptr, lv_ptr, k_ptr, q_ptr, a_ptr, p_ptr, lam_ptr, eta_ptr,
    y_ptr, yv_ptr, lamo_ptr, etao_ptr, M, S, NMB,
    PRIOR: tl.constexpr, MO: tl.constexpr, SB: tl.constexpr, MI: tl.constexpr,
):
    """One token in information form (exactly the reference's equations)."""
    pid = tl.program_id(0)
    pid_m = pid % NMB
    b = pid // NMB
    m, s, mmask, smask = _lanes(pid_m, 0, M, S, MO, SB, MI)
    lmask = mmask & smask
    ms = m * S + s
    bms = b.to(tl.int64) * M * S
    vv, lv, kk, qq = _tok(v_ptr, lv_ptr, k_ptr, q_ptr, 0, 1, b, 1, M, S, m, s, mmask, smask)
    a = tl.load(a_ptr + ms, mask=lmask, other=1.0).to(tl.float32)
    p = tl.load(p_ptr + ms, mask=lmask, other=0.0).to(tl.float32)
    lam = tl.load(lam_ptr + bms + ms, mask=lmask, other=1.0).to(tl.float32)
    eta = tl.load(eta_ptr + bms + ms, mask=lmask, other=0.0).to(tl.float32)
    a2 = a * a
    d = a2 + p * lam                                    # d = a^2 + p lam_{t-1}
    lam_n = lam / d + lv * kk * kk                      # lam_t = lam_{t-1}/d + Lv k^2
    eta_n = (a / d) * eta + lv * vv * kk                # eta_t = (a/d) eta_{t-1} + Lv v k
    w = 1.0 / lam_n
    mu = eta_n * w                                      # mu_t = eta_t / lam_t
    if PRIOR:
        yt = tl.sum(qq * a * mu, axis=1, keep_dims=True)                  # sum_s q a mu
        yvt = tl.sum(qq * qq * (a2 * w + p), axis=1, keep_dims=True)      # sum_s q^2 (a^2/lam + p)
    else:
        yt = tl.sum(qq * mu, axis=1, keep_dims=True)                      # sum_s q mu
        yvt = tl.sum(qq * qq * w, axis=1, keep_dims=True)                 # sum_s q^2 / lam
    tl.store(y_ptr + b.to(tl.int64) * M + m, yt, mask=mmask)
    tl.store(yv_ptr + b.to(tl.int64) * M + m, yvt, mask=mmask)
    tl.store(lamo_ptr + bms + ms, lam_n, mask=lmask)
    tl.store(etao_ptr + bms + ms, eta_n, mask=lmask)
