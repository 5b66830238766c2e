"""Triton kernel of the covariance-form parallel Kalman filter for small states (n <= 8).

The chunked schedule of :mod:`bayesfilt.scan.core`, fused: one program per (series, chunk)
keeps its state in registers and sweeps its chunk sequentially, so a long single series
costs a handful of kernel launches instead of one per tree level.

1. ``_fold_steps``: program (b, k) folds the steps of chunk k into one Särkkä element
   e = (A, b, C, η, J) (the prefix of chunk 0 starts from the prior), by the single-step
   update that equals ``filter_combine(e, e_t)`` (docs/math/parallel_scan.md);
2. the exclusive prefixes of the chunk elements, i.e. the filtered (m, P) just before each
   chunk: if there are more chunks than ``group``, they are folded in groups
   (``_fold_elements``, the general combine), the group prefixes computed recursively, and
   expanded (``_absorb``); otherwise one program per series absorbs them in order;
3. ``_sweep``: program (b, k) runs the sequential Kalman filter over chunk k from its
   starting (m, P), writing filtered and predicted moments and the log-likelihood terms.

The combine uses C_1 = L L^T (a semi-definite Cholesky) and the SPD matrix
G = I + L^T J_2 L, so that every solve is with a symmetric positive-definite matrix and
needs no pivoting: (I + C_1 J_2)^{-1} C_1 = L G^{-1} L^T. Shapes are padded to powers of
two N >= n, Mo >= m (padding is exact: zero states, unit-variance missing observations).
Forward only (no autograd; use the torch backend for gradients). Kernels: no validation.
"""

from __future__ import annotations

import math

import numpy as np

try:
    import triton
    import triton.language as tl
except Exception:  # pragma: no cover - triton is optional
    triton = None
    tl = None

from . import _ops as ops
from ._triton import jit_unspecialized as _jit
from ._triton import device_index, launch_all, launch_now

LOG_2PI = math.log(2.0 * math.pi)


def _next_pow2(k: int) -> int:
    return 1 << max(1, (k - 1).bit_length())


if triton is not None:

    # Integer arguments the kernels do not specialise on (value 1, divisibility by 16): one compile
    # per state size serves every length, chunking and layout (fast first result in a new process).
    _STRIDES = ['s_yb', 's_yt', 'sFb', 'sFt', 'sQb', 'sQt', 'sbb', 'sbt', 'sHb', 'sHt', 'sRb', 'sRt', 'sdb', 'sdt', 'sm0', 'sP0']
    _STEP_INTS = ['T', 'L_chunk', 'K', 'm'] + _STRIDES
    _GROUP_INTS = ['K', 'G_size', 'KG']
    _SWEEP_INTS = ['T', 'L_chunk', 'K', 'n', 'm'] + _STRIDES


    @triton.jit
    def _wide(x, V64: tl.constexpr):
        """x in float64 when V64 (the data-driven vectors of a float32 filter), else unchanged."""
        if V64:
            return x.to(tl.float64)
        else:
            return x

    @triton.jit
    def _mm(A, B):
        """A [P, Q] @ B [Q, R]."""
        return tl.sum(A[:, :, None] * B[None, :, :], axis=1)

    @triton.jit
    def _mv(A, x):
        """A [P, Q] @ x [Q]."""
        return tl.sum(A * x[None, :], axis=1)

    @triton.jit
    def _chol(A, N: tl.constexpr, EPS: tl.constexpr):
        """Lower L with L L^T = A for symmetric PSD A; a pivot counts as zero below EPS times its own
        diagonal entry A[k, k], or below EPS^2 times the largest (a diagonal entry that is itself
        rounding noise of the others)."""
        ri = tl.arange(0, N)
        ci = tl.arange(0, N)
        diag = tl.sum(tl.where(ri[:, None] == ci[None, :], A, 0.0), axis=1)
        floor = EPS * EPS * tl.max(tl.abs(diag), axis=0)
        L = tl.zeros((N, N), dtype=A.dtype)
        for k in tl.static_range(N):
            col = tl.sum(tl.where(ci[None, :] == k, A, 0.0), axis=1)          # A[:, k]
            akk = tl.sum(tl.where(ri == k, col, 0.0), axis=0)
            ok = (akk > EPS * tl.sum(tl.where(ri == k, diag, 0.0), axis=0)) & (akk > floor)  # vs its own A[k, k]
            d = tl.sqrt(tl.where(ok, akk, 1.0))
            l = tl.where(ri >= k, col / d, 0.0)                               # L[:, k]
            l = tl.where(ok, l, 0.0)
            L = tl.where(ci[None, :] == k, l[:, None], L)
            A = A - l[:, None] * l[None, :]
        return L

    @triton.jit
    def _spd_solve(G, B, N: tl.constexpr):
        """G^{-1} B for symmetric positive-definite G [N, N] (Gauss-Jordan, no pivoting); also log det G."""
        ri = tl.arange(0, N)
        logdet = tl.sum(tl.zeros((N,), dtype=G.dtype), axis=0)
        for k in tl.static_range(N):
            grow = tl.sum(tl.where(ri[:, None] == k, G, 0.0), axis=0)        # G[k, :]
            brow = tl.sum(tl.where(ri[:, None] == k, B, 0.0), axis=0)        # B[k, :]
            piv = tl.sum(tl.where(ri == k, grow, 0.0), axis=0)
            logdet += tl.log(piv)
            grow = grow / piv
            brow = brow / piv
            f = tl.sum(tl.where(ri[None, :] == k, G, 0.0), axis=1)           # G[:, k]
            f = tl.where(ri == k, 0.0, f)
            G = G - f[:, None] * grow[None, :]
            B = B - f[:, None] * brow[None, :]
            G = tl.where(ri[:, None] == k, grow[None, :], G)
            B = tl.where(ri[:, None] == k, brow[None, :], B)
        return B, logdet

    @triton.jit
    def _spd_solve_vec(G, v, N: tl.constexpr):
        """G^{-1} v for SPD G [N, N] and v [N]."""
        ri = tl.arange(0, N)
        for k in tl.static_range(N):
            grow = tl.sum(tl.where(ri[:, None] == k, G, 0.0), axis=0)
            vk = tl.sum(tl.where(ri == k, v, 0.0), axis=0)
            piv = tl.sum(tl.where(ri == k, grow, 0.0), axis=0)
            rpiv = 1.0 / piv                                                  # in G's dtype: a float64 v
            grow = grow * rpiv                                                #   (wide vectors) needs no
            vk = vk * rpiv                                                    #   float64 division
            f = tl.sum(tl.where(ri[None, :] == k, G, 0.0), axis=1)
            f = tl.where(ri == k, 0.0, f)
            G = G - f[:, None] * grow[None, :]
            v = v - f * vk
            G = tl.where(ri[:, None] == k, grow[None, :], G)
            v = tl.where(ri == k, vk, v)
        return v

    @triton.jit
    def _combine(A1, b1, C1, e1, J1, A2, b2, C2, e2, J2, N: tl.constexpr, EPS: tl.constexpr):
        """Särkkä combine of (A1, b1, C1, e1, J1) then (A2, b2, C2, e2, J2); W = M^{-1} C_1 = L G^{-1} L^T."""
        ri = tl.arange(0, N)
        I = tl.where(ri[:, None] == ri[None, :], 1.0, 0.0).to(A1.dtype)
        L = _chol(C1, N, EPS)                                                 # C_1 = L L^T
        LT = tl.trans(L)
        G = I + _mm(LT, _mm(J2, L))                                           # G = I + L^T J_2 L (SPD)
        Z, _ld = _spd_solve(G, LT, N)                                         # G^{-1} L^T
        W = _mm(L, Z)                                                         # W = (I + C_1 J_2)^{-1} C_1
        W = 0.5 * (W + tl.trans(W))
        JA = _mm(J2, A1)
        d = e2 - _mv(J2, b1)                                                  # η_2 - J_2 b_1
        A = _mm(A2, A1 - _mm(W, JA))                                          # A_2 (I - W J_2) A_1
        b = _mv(A2, b1 + _mv(W, d)) + b2                                      # A_2 (b_1 + W d) + b_2
        C = _mm(_mm(A2, W), tl.trans(A2)) + C2                                # A_2 W A_2^T + C_2
        JW = _mm(J2, W)
        AT = tl.trans(A1)
        e = _mv(AT, d - _mv(JW, d)) + e1                                      # A_1^T (I - J_2 W) d + η_1
        J = _mm(AT, JA - _mm(JW, JA)) + J1                                    # A_1^T (J_2 - J_2 W J_2) A_1 + J_1
        return A, b, 0.5 * (C + tl.trans(C)), e, 0.5 * (J + tl.trans(J))

    @triton.jit
    def _load_step(y_ptr, F_ptr, Q_ptr, bt_ptr, H_ptr, R_ptr, d_ptr, pb, t,
                   s_yb, s_yt, sFb, sFt, sQb, sQt, sbb, sbt, sHb, sHt, sRb, sRt, sdb, sdt,
                   m, N: tl.constexpr, Mo: tl.constexpr, V64: tl.constexpr):
        ri = tl.arange(0, N)
        oi = tl.arange(0, Mo)
        F = tl.load(F_ptr + pb * sFb + t * sFt + ri[:, None] * N + ri[None, :])
        Q = tl.load(Q_ptr + pb * sQb + t * sQt + ri[:, None] * N + ri[None, :])
        bt = tl.load(bt_ptr + pb * sbb + t * sbt + ri)
        H = tl.load(H_ptr + pb * sHb + t * sHt + oi[:, None] * N + ri[None, :])
        R = tl.load(R_ptr + pb * sRb + t * sRt + oi[:, None] * Mo + oi[None, :])
        d = tl.load(d_ptr + pb * sdb + t * sdt + oi)
        y = tl.load(y_ptr + pb * s_yb + t * s_yt + oi, mask=oi < m, other=float("nan"))
        return F, Q, bt, H, R, d, _wide(y, V64)

    @triton.jit
    def _observe(y, H, R, d, Mo: tl.constexpr):
        """Observed system: zero rows of H and decoupled unit R for missing/padded components."""
        oi = tl.arange(0, Mo)
        obs = y == y                                                          # not NaN
        H = tl.where(obs[:, None], H, 0.0)
        both = obs[:, None] & obs[None, :]
        R = tl.where(both, R, tl.where(oi[:, None] == oi[None, :], 1.0, 0.0))
        y0 = tl.where(obs, y - d, 0.0)
        nobs = tl.sum(obs.to(tl.int32), axis=0)
        return y0, H, R, nobs

    @_jit(_STEP_INTS)
    def _fold_steps(y_ptr, F_ptr, Q_ptr, bt_ptr, H_ptr, R_ptr, d_ptr, m0_ptr, P0_ptr,
                    oA, ob, oC, oe, oJ, bad_ptr,
                    T, L_chunk, K, m,
                    s_yb, s_yt, sFb, sFt, sQb, sQt, sbb, sbt, sHb, sHt, sRb, sRt, sdb, sdt, sm0, sP0,
                    N: tl.constexpr, Mo: tl.constexpr, V64: tl.constexpr):
        pb = tl.program_id(0)
        pk = tl.program_id(1)
        if pb + pk == 0:
            tl.store(bad_ptr, 0)                                              # the call's non-finite flag
        ri = tl.arange(0, N)
        I = tl.where(ri[:, None] == ri[None, :], 1.0, 0.0)
        m0 = _wide(tl.load(m0_ptr + pb * sm0 + ri), V64)
        P0 = tl.load(P0_ptr + pb * sP0 + ri[:, None] * N + ri[None, :])
        first = pk == 0
        A = tl.where(first, 0.0, I).to(P0.dtype)                             # chunk 0 starts from the prior
        b = tl.where(first, m0, 0.0)                                          # (A, b, C) = (0, m0, P0)
        C = tl.where(first, P0, 0.0)                                          # other chunks: the identity
        e = _wide(tl.zeros((N,), dtype=P0.dtype), V64)
        J = tl.zeros((N, N), dtype=P0.dtype)
        t0 = pk * L_chunk
        for j in range(0, L_chunk):
            t = t0 + j
            if t < T:
                F, Q, bt, H, R, d, y = _load_step(y_ptr, F_ptr, Q_ptr, bt_ptr, H_ptr, R_ptr, d_ptr, pb, t,
                                                  s_yb, s_yt, sFb, sFt, sQb, sQt, sbb, sbt, sHb, sHt, sRb, sRt,
                                                  sdb, sdt, m, N, Mo, V64)
                pred = t > 0
                F = tl.where(pred, F, I)
                A = _mm(F, A)                                                 # predict: A <- F A
                b = _mv(F, b) + tl.where(pred, bt, 0.0)                       #          b <- F b + b_t
                C = _mm(_mm(F, C), tl.trans(F)) + tl.where(pred, Q, 0.0)      #          C <- F C F^T + Q
                y0, Hm, Rm, nobs = _observe(y, H, R, d, Mo)
                r = y0 - _mv(Hm, b)                                           # r = y - d - H b
                HC = _mm(Hm, C)
                S = _mm(HC, tl.trans(Hm)) + Rm                                # S = H C H^T + R
                Kt, _ld = _spd_solve(S, HC, Mo)                               # K^T = S^{-1} H C
                Sr = _spd_solve_vec(S, r, Mo)                                 # S^{-1} r
                HA = _mm(Hm, A)
                SHA, _ld2 = _spd_solve(S, HA, Mo)                             # S^{-1} H A
                # (solves, not an explicit S^{-1}: the inverse was 13% faster on the H200 but made
                # float32 covariances 3-17x worse for an ill-conditioned S, review of 68e9d2c)
                J = J + _mm(tl.trans(HA), SHA)                                # J += (HA)^T S^{-1} H A
                e = e + _mv(tl.trans(HA), Sr)                                 # η += (HA)^T S^{-1} r
                KT = tl.trans(Kt)
                b = b + _mv(KT, r)                                            # b += K r
                A = A - _mm(KT, HA)                                           # A <- (I - K H) A
                C = C - _mm(KT, HC)                                           # C <- C - K S K^T
                C = 0.5 * (C + tl.trans(C))
        base = pb * K + pk
        tl.store(oA + base * N * N + ri[:, None] * N + ri[None, :], A)
        tl.store(ob + base * N + ri, b)
        tl.store(oC + base * N * N + ri[:, None] * N + ri[None, :], C)
        tl.store(oe + base * N + ri, e)
        tl.store(oJ + base * N * N + ri[:, None] * N + ri[None, :], J)

    @_jit(_GROUP_INTS)
    def _fold_elements(iA, ib, iC, ie, iJ, oA, ob, oC, oe, oJ, K, G_size, KG,
                       N: tl.constexpr, EPS: tl.constexpr):
        """Program (b, g) folds elements g*G .. g*G+G-1 (of K) into one.

        The running element lives in the output slot (stored and reloaded every step): carrying all
        five of its parts in registers through the loop made the compiler take minutes.
        """
        pb = tl.program_id(0)
        pg = tl.program_id(1)
        ri = tl.arange(0, N)
        mat = ri[:, None] * N + ri[None, :]
        i0 = pb * K + pg * G_size
        o = pb * KG + pg
        tl.store(oA + o * N * N + mat, tl.load(iA + i0 * N * N + mat))
        tl.store(ob + o * N + ri, tl.load(ib + i0 * N + ri))
        tl.store(oC + o * N * N + mat, tl.load(iC + i0 * N * N + mat))
        tl.store(oe + o * N + ri, tl.load(ie + i0 * N + ri))
        tl.store(oJ + o * N * N + mat, tl.load(iJ + i0 * N * N + mat))
        for j in range(1, G_size):
            if pg * G_size + j < K:
                i = i0 + j
                tl.debug_barrier()
                A, b, C, e, J = _combine(tl.load(oA + o * N * N + mat), tl.load(ob + o * N + ri),
                                         tl.load(oC + o * N * N + mat), tl.load(oe + o * N + ri),
                                         tl.load(oJ + o * N * N + mat),
                                         tl.load(iA + i * N * N + mat), tl.load(ib + i * N + ri),
                                         tl.load(iC + i * N * N + mat), tl.load(ie + i * N + ri),
                                         tl.load(iJ + i * N * N + mat), N, EPS)
                tl.debug_barrier()
                tl.store(oA + o * N * N + mat, A)
                tl.store(ob + o * N + ri, b)
                tl.store(oC + o * N * N + mat, C)
                tl.store(oe + o * N + ri, e)
                tl.store(oJ + o * N * N + mat, J)

    @_jit(_GROUP_INTS)
    def _absorb(iA, ib, iC, ie, iJ, sm, sP, om, oP, K, G_size, KG,
                N: tl.constexpr, EPS: tl.constexpr, ZERO_START: tl.constexpr):
        """Program (b, g): from the state (m, P) before group g, write the state before each of its elements.

        ZERO_START: start from m = 0, P = 0 (the state before the first element, which holds the
        prior) instead of reading sm, sP."""
        pb = tl.program_id(0)
        pg = tl.program_id(1)
        ri = tl.arange(0, N)
        mat = ri[:, None] * N + ri[None, :]
        s = pb * KG + pg
        Z = tl.zeros((N, N), dtype=iC.dtype.element_ty)
        z = tl.zeros((N,), dtype=iC.dtype.element_ty)
        if ZERO_START:
            mean = tl.zeros((N,), dtype=ib.dtype.element_ty)
            P = Z
        else:
            mean = tl.load(sm + s * N + ri)
            P = tl.load(sP + s * N * N + mat)
        for j in range(0, G_size):
            if pg * G_size + j < K:
                i = pb * K + pg * G_size + j
                tl.store(om + i * N + ri, mean)
                tl.store(oP + i * N * N + mat, P)
                _A, mean, P, _e, _J = _combine(Z, mean, P, z, Z,
                                               tl.load(iA + i * N * N + mat), tl.load(ib + i * N + ri),
                                               tl.load(iC + i * N * N + mat), tl.load(ie + i * N + ri),
                                               tl.load(iJ + i * N * N + mat), N, EPS)

    @triton.jit
    def _count_bad(acc, x):
        """acc + 1 where x is NaN or infinite (elementwise; no reduction inside the loop)."""
        return acc + tl.where(tl.abs(x) < float("inf"), 0.0, 1.0)

    @_jit(['B'])
    def _finish_loglik(total_ptr, out_ptr, bad_ptr, B, BLOCK: tl.constexpr):
        """loglik = the per-series sum of the terms (computed by torch in float64 or y's dtype), stored in
        y's dtype; bad_ptr[0] set to 1 (atomic max) if a stored value is infinite (finite terms whose sum
        overflows the dtype). One launch where a cast, an isinf, a sum and an add took four."""
        i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        ok = i < B
        total = tl.load(total_ptr + i, mask=ok, other=0.0)
        stored = total.to(out_ptr.dtype.element_ty)
        tl.store(out_ptr + i, stored, mask=ok)
        inf = tl.sum(tl.where(ok & (tl.abs(stored) == float("inf")), 1, 0), axis=0)
        tl.atomic_max(bad_ptr, (inf > 0).to(tl.int32))

    @_jit(_SWEEP_INTS)
    def _sweep(y_ptr, F_ptr, Q_ptr, bt_ptr, H_ptr, R_ptr, d_ptr, m0_ptr, P0_ptr, sm, sP,
               out_m, out_P, out_pm, out_pP, out_ll, bad_ptr,
               T, L_chunk, K, n, m,
               s_yb, s_yt, sFb, sFt, sQb, sQt, sbb, sbt, sHb, sHt, sRb, sRt, sdb, sdt, sm0, sP0,
               LOG2PI: tl.constexpr, N: tl.constexpr, Mo: tl.constexpr, V64: tl.constexpr,
               MEANS: tl.constexpr):
        """Program (b, k): sequential Kalman filter over chunk k from the state before it.

        Sets bad_ptr[0] to 1 (atomic max) if a value it writes is NaN or infinite. Without MEANS only
        the covariances are written (and checked)."""
        pb = tl.program_id(0)
        pk = tl.program_id(1)
        ri = tl.arange(0, N)
        s = pb * K + pk
        mean = tl.load(sm + s * N + ri)
        P = tl.load(sP + s * N * N + ri[:, None] * N + ri[None, :])
        outm = (ri < n)
        outP = (ri[:, None] < n) & (ri[None, :] < n)
        bad_m = tl.zeros((N,), dtype=tl.float32)                              # non-finite counts, elementwise
        bad_P = tl.zeros((N, N), dtype=tl.float32)
        bad_l = tl.sum(tl.zeros((N,), dtype=tl.float32), axis=0)
        t0 = pk * L_chunk
        for j in range(0, L_chunk):
            t = t0 + j
            if t < T:
                F, Q, bt, H, R, d, y = _load_step(y_ptr, F_ptr, Q_ptr, bt_ptr, H_ptr, R_ptr, d_ptr, pb, t,
                                                  s_yb, s_yt, sFb, sFt, sQb, sQt, sbb, sbt, sHb, sHt, sRb, sRt,
                                                  sdb, sdt, m, N, Mo, V64)
                if t == 0:
                    mean = _wide(tl.load(m0_ptr + pb * sm0 + ri), V64)        # m_{1|0} = m0
                    P = tl.load(P0_ptr + pb * sP0 + ri[:, None] * N + ri[None, :])  # P_{1|0} = P0
                else:
                    mean = _mv(F, mean) + bt                                  # m_{t|t-1} = F m + b
                    P = _mm(_mm(F, P), tl.trans(F)) + Q                       # P_{t|t-1} = F P F^T + Q
                    P = 0.5 * (P + tl.trans(P))
                o = pb * T + t
                if MEANS:
                    tl.store(out_pm + o * n + ri, mean, mask=outm)
                tl.store(out_pP + o * n * n + ri[:, None] * n + ri[None, :], P, mask=outP)
                y0, Hm, Rm, nobs = _observe(y, H, R, d, Mo)
                r = y0 - _mv(Hm, mean)                                        # r = y - d - H m
                HP = _mm(Hm, P)
                S = _mm(HP, tl.trans(Hm)) + Rm                                # S = H P H^T + R
                Kt, logdet = _spd_solve(S, HP, Mo)                            # K^T = S^{-1} H P, log|S|
                Sr = _spd_solve_vec(S, r, Mo)
                KT = tl.trans(Kt)
                mean = mean + _mv(KT, r)                                      # m = m + K r
                P = P - _mm(KT, HP)                                           # P = P - K S K^T
                P = 0.5 * (P + tl.trans(P))
                ll = -0.5 * (tl.sum(r * Sr, axis=0) + logdet + nobs.to(P.dtype) * LOG2PI)
                tl.store(out_P + o * n * n + ri[:, None] * n + ri[None, :], P, mask=outP)
                bad_P = _count_bad(bad_P, P)
                if MEANS:
                    tl.store(out_m + o * n + ri, mean, mask=outm)
                    tl.store(out_ll + o, ll)
                    bad_m = _count_bad(bad_m, mean.to(out_m.dtype.element_ty))  # as stored: float64 values
                    bad_l = _count_bad(bad_l, ll.to(out_ll.dtype.element_ty))   # may overflow float32
        nbad = tl.sum(bad_m, axis=0) + tl.sum(tl.sum(bad_P, axis=1), axis=0) + bad_l
        tl.atomic_max(bad_ptr, (nbad > 0).to(tl.int32))


def fits_int32(n: int, m: int, series: int, T: int) -> bool:
    """Whether the kernels' 32-bit element offsets cover a problem of ``series`` x ``T`` steps.

    The largest per-step blocks are the padded n x n (covariances, time-varying F, Q), m x n and
    m x m matrices; every offset stays below series * T * that block size.

    Example:
        >>> fits_int32(4, 2, 1024, 1024), fits_int32(4, 2, 4096, 262144)
        (True, False)
    """
    N, Mo = _next_pow2(n), _next_pow2(m)
    return series * max(T, 1) * max(N * N, Mo * N, Mo * Mo) < 2 ** 31


def _padded(arr_tf, core, lead_b, N, Mo):
    """Time-first parameter -> padded NumPy (Bp, Tp, *core_padded) array and its (batch, time) strides."""
    pad = tuple(N if c == "n" else Mo for c in core)
    a = arr_tf  # (Tp, *batch, *core) numpy
    k = len(core)
    core_shape = a.shape[a.ndim - k:]
    if a.size == math.prod(core_shape):                                        # static, unbatched: one block
        out = np.zeros((1, 1) + pad)
        out[(0, 0) + tuple(slice(0, s) for s in core_shape)] = a.reshape(core_shape)
        return out, 0, 0
    Tp = a.shape[0]
    batch = a.shape[1:a.ndim - k]
    if math.prod(batch) > 1 and tuple(batch) != tuple(lead_b):
        a = np.broadcast_to(a, (Tp,) + tuple(lead_b) + a.shape[a.ndim - k:])   # partial batch: expand
        batch = tuple(lead_b)
    Bp = math.prod(batch) if batch else 1
    a = a.reshape((Tp, Bp) + a.shape[a.ndim - k:])
    a = np.moveaxis(a, 0, 1)                                                   # (Bp, Tp, core)
    out = np.zeros((Bp, Tp) + pad)
    out[(slice(None), slice(None)) + tuple(slice(0, s) for s in a.shape[2:])] = a
    size = math.prod(pad)
    return out, (0 if Bp == 1 else Tp * size), (0 if Tp == 1 else size)


def loglik_plan(batch, sum_dtype, dtype, device, bad):
    """Buffers and the launch of the log-likelihood total (``_finish_loglik``), made before the filter's
    kernels so that a first call compiles it with them (``launch_all(..., warm_also=...)``).

    Returns:
        ``(total, out, launches)``: the sum buffer (*B,) in ``sum_dtype``, the result (*B,) in ``dtype``,
        and the launches, ``[(kernel, grid, args, kwargs)]`` (empty without series).
    """
    import torch
    total = torch.empty(batch, dtype=sum_dtype, device=device)
    out = torch.empty(batch, dtype=dtype, device=device)
    B = out.numel()
    BLOCK = 1024
    grid = (-(-B // BLOCK),)
    launches = [(_finish_loglik, grid, (total, out, bad, B), dict(BLOCK=BLOCK, num_warps=4))] if B else []
    return total, out, launches


def loglik_total(terms, plan):
    """Σ_t terms (*B, T) -> (*B,) in the terms' dtype, summed by torch in the plan's ``sum_dtype``, and
    the non-finite flag set if a total overflows that dtype (``_finish_loglik``; ``plan``: :func:`loglik_plan`)."""
    import torch
    total, out, launches = plan
    if launches:
        torch.sum(terms, -1, dtype=total.dtype, out=total)                    # log p(y_{1:T}) = Σ_t terms
        launch_all(launches)
    return out


def triton_filter_time_first(model, y_tf, chunk: int | None = None, group: int | None = None):
    """Run the Triton filter on time-first torch ``y_tf`` (T, *B, m); returns the dict of :func:`scan_filter`.

    The batch axes (and parameters' batch axes, which must broadcast to y's) are flattened.
    """
    y = ops.moveaxis(y_tf, 0, -2)                                              # (*B, T, m)
    return triton_filter(model, y, chunk=chunk, group=group, time_first=True)


#: Series x steps from which a call launches its prefix kernels before allocating its outputs
#: (``launch_now``): there the kernels run longer than the host's remaining work, which it then
#: hides (T = 262144, one series: 0.977-1.002 -> 0.929-0.936 ms per call on an H200 host); below,
#: the call is bound by its host work, which the second launch only lengthens (the shared-gain
#: path at 1024 x 1024, whose long kernels come last: 0.81-0.95 -> 0.92-1.03 ms, in the same run:
#: ``benchmarks/results/host_profile_s15d_f3c4879.json``, section a4).
EARLY_LAUNCH_STEPS = 1 << 16

#: the model attribute (in its ``__dict__``, like a cached_property) holding triton_params' last result
_PARAMS_MEMO = "_triton_params_memo"

_PARAM_CORES = (("F", "nn"), ("Q", "nn"), ("H", "on"), ("R", "oo"), ("b", "n"), ("d", "o"), ("m0", "n"), ("P0", "nn"))


def _static_host(model, N, Mo):
    """Padded host blocks of a model with neither batch axes nor time-varying parameters (the common case,
    built without the general layout code: it runs on every call): views of one zeroed flat array."""
    shapes = [tuple(N if c == "n" else Mo for c in core) for _name, core in _PARAM_CORES]
    flat = np.zeros(sum(math.prod(sh) for sh in shapes))
    out, i = {}, 0
    for (name, _core), shape in zip(_PARAM_CORES, shapes):
        size = math.prod(shape)
        block = flat[i:i + size].reshape(shape)
        arr = getattr(model, name)
        if arr is not None:
            block[tuple(slice(0, k) for k in arr.shape)] = arr
        out[name] = (block, 0, 0)
        i += size
    return out


def _indexed(device):
    """``device`` as a torch.device with its index (``"cuda"`` -> the current CUDA device), for keys."""
    import torch
    device = torch.device(device)
    return torch.device("cuda", device_index(device)) if device.type == "cuda" else device


def triton_params(model, batch: tuple, dtype, device, contents=None):
    """Padded parameter tensors and strides for the kernels (see :func:`triton_filter`); reusable across calls.

    Returns {name: (flat device tensor, batch stride, time stride)} for F, Q, H, R, b, d, m0, P0
    (padded to N x N, Mo x N, Mo x Mo, N, Mo blocks; the kernels index them flat). All parameters
    travel to the device in one copy (one flat buffer, then one split).

    A model without batch axes or time-varying parameters (the common case, a few hundred bytes)
    keeps its last result, keyed by its parameters' contents (``model._contents()``, compared
    exactly), dtype and device, so that repeated calls skip the padding, the upload and the split
    (96-118 µs of host time per call on an H200 host: ``benchmarks/results/host_profile_s15b_b22a4e9.json``).
    The tensors are never written after their upload; a model changed in place gets new ones.
    (``parallel_filter`` synchronises before it returns; a direct caller that runs kernels on several
    CUDA streams at once should not change the model or its dtype in between: the replaced tensors
    are freed while the other stream may still read them.) ``contents``: ``model._contents()`` when the
    caller has it already (one pass over the parameters' bytes per call instead of two).
    """
    import torch
    from ._params import static, time_first as tf
    n, m = model.n, model.m
    N, Mo = _next_pow2(n), _next_pow2(m)
    memo_key = None
    if not model.time_varying and all(getattr(model, k) is None or getattr(model, k).ndim == len(c)
                                      for k, c in _PARAM_CORES):
        memo_key = (model._contents() if contents is None else contents, dtype, _indexed(device))
        kept = model._kept(_PARAMS_MEMO, memo_key)
        if kept is not None:
            return kept
        host = _static_host(model, N, Mo)
    else:
        nb = len(batch)
        B = math.prod(batch) if batch else 1
        dummy = np.zeros((1,) + (1,) * nb)
        host = {}
        for name, core in _PARAM_CORES[:4]:
            host[name] = _padded(tf(model, name, nb, dummy), core, batch, N, Mo)
        for name, core, size in (("b", "n", n), ("d", "o", m)):
            arr = tf(model, name, nb, dummy)
            if arr is None:
                arr = np.zeros((1,) + (1,) * nb + (size,))
            host[name] = _padded(arr, core, batch, N, Mo)
        host["m0"] = _padded(static(model, "m0", nb, dummy)[None], "n", batch, N, Mo)
        host["P0"] = _padded(static(model, "P0", nb, dummy)[None], "nn", batch, N, Mo)
        for key, val in host.items():
            if val[0].shape[0] not in (1, B):
                raise NotImplementedError("parameter batch axes must equal y's (flattened) batch or be absent")
    np_dtype = {torch.float32: np.float32, torch.float64: np.float64}.get(dtype, np.float64)
    flat = np.concatenate([v[0].ravel() for v in host.values()]).astype(np_dtype, copy=False)
    dev = torch.from_numpy(flat).to(device=device, dtype=dtype)
    parts = torch.split(dev, [v[0].size for v in host.values()])
    out = {name: (part, sb, st) for (name, (_arr, sb, st)), part in zip(host.items(), parts)}
    if memo_key is not None:
        model._keep(_PARAMS_MEMO, memo_key, out)
    return out


def triton_filter(model, y, chunk: int | None = None, group: int | None = None, time_first: bool = False,
                  params=None, wide_vectors: bool | None = None, bad=None, means_out: bool = True,
                  launches: list | None = None):
    """Triton covariance-form filter of torch ``y`` (*B, T, m) on the GPU (or TRITON_INTERPRET=1 on CPU).

    Args:
        model: a validated LinearGaussianSSM with n <= 8 (no diffuse states).
        y: torch tensor (*B, T, m), float32 or float64, NaN for missing components.
        chunk: steps per program (default: 64 with wide vectors; otherwise about sqrt(T), at least
            16, at most 128).
        group: chunk elements per program in the prefix stage (default 16: fastest in the H200 sweep,
            benchmarks/results/parallel_gpu.json).
        time_first: return time-first arrays (the internal layout of the scan drivers).
        params: the output of :func:`triton_params` for this model, batch, dtype and device
            (computed here when None).
        wide_vectors: carry the data-driven vectors (element offsets b and η, means, innovations,
            log-likelihood terms) in float64 inside the kernels while the matrices stay in y's
            dtype. Default: True for float32 y. A float32 mean of a track at 1e7 is only known
            to ~1 (its ulp), the size of typical observation noise, which ruins the
            log-likelihood. With float64 vectors the float32 rounding perturbs the gains, whose
            errors scale with the innovations, and the chunks' float32 slope prod (I - K H) F,
            which multiplies the state at the chunk's start: exact only when the filter forgets
            within a chunk (e.g. constant velocity, q = 0.05, r = 4: 5e-7 over 64 steps; a
            long-memory filter keeps a ~1e-3 log-likelihood error; docs/parallel.md,
            "Precision"). No effect for float64 y.
        bad: an int32 device tensor (1,): the first kernel zeroes it, the last sets it nonzero if a
            filtered mean, covariance or log-likelihood term it writes is NaN or infinite, and so
            does an infinite log-likelihood sum (allocated here when None; pass one to let later
            kernels of the same call add to it).
        means_out: write the means and log-likelihood terms; False: only the covariances
            ``covs`` and ``predicted_covs`` (the shared-gain path's covariance stage).
        launches: a list to append the kernel launches to instead of running them (the caller runs
            them with :func:`~bayesfilt.scan._triton.launch_all`, e.g. after its own); only with
            ``means_out=False`` (the log-likelihood sum would precede the kernels).

    Returns:
        dict with means, covs, predicted_means, predicted_covs, loglik_terms, loglik (with
        ``means_out``) and ``nonfinite``
        (the ``bad`` tensor: read it once, one device sync, instead of scanning the outputs).

    Example:
        >>> out = triton_filter(model, torch.as_tensor(y, device="cuda"))  # doctest: +SKIP
    """
    import torch
    if launches is not None and means_out:
        raise ValueError("launches= needs means_out=False")                   # internal misuse
    n, m = model.n, model.m
    N, Mo = _next_pow2(n), _next_pow2(m)
    ybatch = tuple(y.shape[:-2])
    T = int(y.shape[-2])
    batch = ybatch if model.batch_shape == () else tuple(np.broadcast_shapes(ybatch, model.batch_shape))
    B = math.prod(batch) if batch else 1
    yb = y if ybatch == batch and y.is_contiguous() else y.expand(batch + (T, m)).contiguous()
    dev = y.device
    P = params if params is not None else triton_params(model, batch, yb.dtype, dev)
    m0, P0 = P["m0"], P["P0"]
    dt = yb.dtype
    v64 = bool(dt == torch.float32 if wide_vectors is None else wide_vectors) and dt != torch.float64
    vt = torch.float64 if v64 else dt                                          # dtype of the vector buffers
    # default chunk: 64 steps with float64 vectors (float32 y), else about sqrt(T) in [16, 128]. From
    # the H200 sweeps (benchmarks/results/parallel_gpu.json, T = 262144, float32 y: chunk 16 0.56 ms,
    # 64 0.67 ms, 128 0.74 ms; float64 y: 128 1.66 ms, 256 2.08 ms). Float64 vectors are exact when the
    # filter forgets within a chunk (docs/parallel.md, "Precision"): 64 steps, not the faster 16.
    L = chunk or (64 if v64 else int(min(128, max(16, _next_pow2(int(math.isqrt(max(T, 1))))))))
    K = -(-T // L)
    Gs = group or 16
    eps = 1e-6 if yb.dtype == torch.float32 else 1e-13
    levels = [K]                                   # elements per level of the prefix recursion
    while levels[-1] > Gs:
        levels.append(-(-levels[-1] // Gs))
    # scratch of every level in one allocation per dtype (few host operations per call): per level
    # the elements A, C, J and the prefix covariances (dt, B k N N each); b, η and prefix means (vt, B k N)
    mat, vec = [B * k * N * N for k in levels for _ in range(4)], [B * k * N for k in levels for _ in range(3)]
    if vt == dt:
        parts = torch.empty(sum(mat) + sum(vec), dtype=dt, device=dev).split(mat + vec)
        mats, vecs = parts[:len(mat)], parts[len(mat):]
    else:
        mats = torch.empty(sum(mat), dtype=dt, device=dev).split(mat)
        vecs = torch.empty(sum(vec), dtype=vt, device=dev).split(vec)

    def level(i):
        """(elements (A, b, C, η, J), prefix means, prefix covariances) of level i."""
        A, C, J, sP = mats[4 * i:4 * i + 4]
        b, e, sm = vecs[3 * i:3 * i + 3]
        return (A, b, C, e, J), sm, sP

    if bad is None:
        bad = torch.empty((1,), dtype=torch.int32, device=dev)                 # zeroed by _fold_steps
    strides = (T * m, m, P["F"][1], P["F"][2], P["Q"][1], P["Q"][2],                # yb contiguous (*B, T, m)
               P["b"][1], P["b"][2], P["H"][1], P["H"][2], P["R"][1], P["R"][2], P["d"][1], P["d"][2], m0[1], P0[1])
    tens = (yb, P["F"][0], P["Q"][0], P["b"][0], P["H"][0], P["R"][0], P["d"][0], m0[0], P0[0])
    plan = [] if launches is None else launches                                # (kernel, grid, args, kwargs)
    plan.append((_fold_steps, (B, K), (*tens, *level(0)[0], bad, T, L, K, m, *strides),
                 dict(N=N, Mo=Mo, V64=v64, num_warps=1)))
    for i in range(1, len(levels)):                # fold groups of Gs elements into the next level
        plan.append((_fold_elements, (B, levels[i]), (*level(i - 1)[0], *level(i)[0], levels[i - 1], Gs, levels[i]),
                     dict(N=N, EPS=eps, num_warps=1)))
    top = len(levels) - 1                          # one group: prefixes from the zero state
    plan.append((_absorb, (B, 1), (*level(top)[0], *level(top)[1:], *level(top)[1:], levels[top], levels[top], 1),
                 dict(N=N, EPS=eps, ZERO_START=True, num_warps=1)))
    for i in range(top - 1, -1, -1):               # expand each group's prefix over its elements
        plan.append((_absorb, (B, levels[i + 1]),
                     (*level(i)[0], *level(i + 1)[1:], *level(i)[1:], levels[i], Gs, levels[i + 1]),
                     dict(N=N, EPS=eps, ZERO_START=False, num_warps=1)))
    # a long call: the GPU starts on the prefixes while the outputs are allocated (once all has compiled)
    if launches is None and B * T >= EARLY_LAUNCH_STEPS:
        kernels = [_fold_steps, _absorb, _sweep] + [_fold_elements] * (len(levels) > 1)
        launch_now(plan, kernels + [_finish_loglik] * means_out)
    covs = torch.empty(batch + (T, n, n), dtype=dt, device=dev)
    pP = torch.empty(batch + (T, n, n), dtype=dt, device=dev)
    if means_out:
        means = torch.empty(batch + (T, n), dtype=dt, device=dev)
        pm = torch.empty(batch + (T, n), dtype=dt, device=dev)
        ll = torch.empty(batch + (T,), dtype=dt, device=dev)
    else:
        means = pm = ll = covs                                                 # not written (MEANS=False)
    sm, sP = level(0)[1:]
    plan.append((_sweep, (B, K), (*tens, sm, sP, means, covs, pm, pP, ll, bad, T, L, K, n, m, *strides),
                 dict(LOG2PI=LOG_2PI, N=N, Mo=Mo, V64=v64, MEANS=means_out, num_warps=1)))
    ll_plan = loglik_plan(batch, vt, dt, dev, bad) if means_out else None
    if launches is None:
        launch_all(plan, warm_also=ll_plan[2] if ll_plan else ())
    if not means_out:
        out = dict(covs=covs, predicted_covs=pP)
    else:
        out = dict(means=means, covs=covs, predicted_means=pm, predicted_covs=pP, loglik_terms=ll,
                   loglik=loglik_total(ll, ll_plan))                            # sum of the terms (float64 if v64)
    if time_first:
        out = {k: (v if k == "loglik" else ops.moveaxis(v, len(batch), 0)) for k, v in out.items()}
    out["nonfinite"] = bad
    return out
