"""Triton kernels of the shared-gain ("riccati") Kalman filter for many series (n <= 8).

Specification: :func:`bayesfilt.kalman_filter`; the NumPy form of the same method is
:func:`bayesfilt.scan.covariance.riccati_filter`. With no missing observations and
parameters without batch axes, the covariances P_{t|t-1}, P_t, the gains K_t and the
innovation covariances S_t do not depend on the data, so all B series share them:

1. covariances once: :func:`bayesfilt.scan.triton_filter.triton_filter` on the first series
   alone (B = 1) gives P_{t|t-1} and P_t (T, n, n); ``_gains`` (one program per step) turns
   them into K_t = P_{t|t-1} H_t^T S_t^{-1}, S_t^{-1} and log|S_t| (float64);
2. means of all series: with the gains fixed the filter is an affine recursion per series,
   m_t = m_{t|t-1} + K_t (y_t - d_t - H_t m_{t|t-1}), m_{t|t-1} = F_t m_{t-1} + b_t
   (m_{1|0} = m0). It is chunked over time like the element kernel: ``_fold_means``, program
   (series block, chunk k), runs chunk k from a zero state (chunk 0 from m0), which gives the
   chunk's offset z_k (B, K, n), and the chunk's slope Φ_k = Π (I - K_t H_t) F_t (K, n, n);
   ``_carry_means`` links the chunks per series (end_k = Φ_k end_{k-1} + z_k); ``_sweep_means``
   reruns each chunk from its start, writing predicted and filtered means and the
   log-likelihood terms -½ (r^T S^{-1} r + log|S| + m log 2π).

Precision: the means, innovations and log-likelihood are carried in float64 inside the
kernels whatever the input dtype (float32 y and parameters are widened when loaded; outputs
are stored in y's dtype). On a long constant-velocity track the positions reach ~1e7, where a
float32 ulp (~1) is the size of the observation noise, and a float32 mean would lose the
innovations the log-likelihood is made of. The covariances come from the element kernel in
y's dtype (they stay O(1)). Mathematics: docs/math/parallel_scan.md §5; docs/parallel.md
("Many series: the shared-gain path (Triton)"). Forward only; kernels do not validate.
"""

from __future__ import annotations

import math

try:
    import triton
    import triton.language as tl
except Exception:  # pragma: no cover - triton is optional
    triton = None
    tl = None

from . import _ops as ops
from ._triton import jit_unspecialized as _jit
from ._triton import launch_all
from .triton_filter import LOG_2PI, _next_pow2, loglik_plan, loglik_total, triton_filter, triton_params

if triton is not None:
    from .triton_filter import _count_bad, _mm, _spd_solve

    _GAIN_INTS = ['n', 'm', 'sHt', 'sRt']
    _MEAN_INTS = ['B', 'T', 'L_chunk', 'K', 'n', 'm', 's_yb', 's_yt', 'sFt', 'sbt', 'sHt', 'sdt']

    @_jit(_GAIN_INTS)
    def _gains(pP_ptr, H_ptr, R_ptr, K_ptr, Si_ptr, ln_ptr, n, m, sHt, sRt,
               LOG2PI: tl.constexpr, N: tl.constexpr, Mo: tl.constexpr):
        """Program t: gain K_t (N, Mo), S_t^{-1} (Mo, Mo) and log|S_t| + m log 2π from P_{t|t-1} (T, n, n), in float64."""
        t = tl.program_id(0)
        ri = tl.arange(0, N)
        oi = tl.arange(0, Mo)
        inside = (ri[:, None] < n) & (ri[None, :] < n)
        P = tl.load(pP_ptr + t * n * n + ri[:, None] * n + ri[None, :], mask=inside, other=0.0).to(tl.float64)
        H = tl.load(H_ptr + t * sHt + oi[:, None] * N + ri[None, :]).to(tl.float64)   # padded rows are 0
        R = tl.load(R_ptr + t * sRt + oi[:, None] * Mo + oi[None, :]).to(tl.float64)
        eye = tl.where(oi[:, None] == oi[None, :], 1.0, 0.0).to(tl.float64)
        real = (oi[:, None] < m) & (oi[None, :] < m)
        R = tl.where(real, R, eye)                                            # padded components: unit variance
        HP = _mm(H, P)                                                        # H P_{t|t-1}   (Mo, N)
        S = _mm(HP, tl.trans(H)) + R                                          # S_t = H P_{t|t-1} H^T + R_t
        S = 0.5 * (S + tl.trans(S))
        Si, logdet = _spd_solve(S, eye, Mo)                                   # S_t^{-1}, log|S_t|
        Si = 0.5 * (Si + tl.trans(Si))
        KT = _mm(Si, HP)                                                      # K_t^T = S_t^{-1} H P_{t|t-1}
        tl.store(K_ptr + t * N * Mo + ri[None, :] * Mo + oi[:, None], KT)     # K_t[i, o] = K_t^T[o, i]
        tl.store(Si_ptr + t * Mo * Mo + oi[:, None] * Mo + oi[None, :], Si)
        m_f = tl.sum(tl.where(oi < m, 1.0, 0.0).to(tl.float64), axis=0)      # m as float64 (int * float is float32)
        tl.store(ln_ptr + t, logdet + m_f * LOG2PI)                           # log|S_t| + m log 2π

    @triton.jit
    def _load_shared(F_ptr, b_ptr, H_ptr, d_ptr, K_ptr, t, sFt, sbt, sHt, sdt,
                     N: tl.constexpr, Mo: tl.constexpr):
        """The step-t quantities all series share, widened to float64 (F = I, b = 0 at t = 0: m_{1|0} = m0)."""
        ri = tl.arange(0, N)
        oi = tl.arange(0, Mo)
        first = t == 0
        F = tl.load(F_ptr + t * sFt + ri[:, None] * N + ri[None, :]).to(tl.float64)
        F = tl.where(first, tl.where(ri[:, None] == ri[None, :], 1.0, 0.0), F)
        b = tl.where(first, 0.0, tl.load(b_ptr + t * sbt + ri).to(tl.float64))
        H = tl.load(H_ptr + t * sHt + oi[:, None] * N + ri[None, :]).to(tl.float64)
        d = tl.load(d_ptr + t * sdt + oi).to(tl.float64)
        G = tl.load(K_ptr + t * N * Mo + ri[:, None] * Mo + oi[None, :])     # K_t (N, Mo), float64
        return F, b, H, d, G

    @triton.jit
    def _mean_step(mean, y, F, b, H, d, G):
        """One filter step of a block of series: mean (BS, N) -> predicted, innovation (BS, Mo), filtered."""
        pred = tl.sum(F[None, :, :] * mean[:, None, :], axis=2) + b[None, :]  # m_{t|t-1} = F_t m_{t-1} + b_t
        r = y - d[None, :] - tl.sum(H[None, :, :] * pred[:, None, :], axis=2)  # r_t = y_t - d_t - H_t m_{t|t-1}
        new = pred + tl.sum(G[None, :, :] * r[:, None, :], axis=2)            # m_t = m_{t|t-1} + K_t r_t
        return pred, r, new

    @triton.jit
    def _load_y(y_ptr, s, t, B, m, s_yb, s_yt, Mo: tl.constexpr):
        """y_t of the series ``s`` (BS,) as float64 (BS, Mo); padding and series past B read 0."""
        oi = tl.arange(0, Mo)
        ok = (s[:, None] < B) & (oi[None, :] < m)
        return tl.load(y_ptr + s[:, None] * s_yb + t * s_yt + oi[None, :], mask=ok, other=0.0).to(tl.float64)

    @_jit(_MEAN_INTS)
    def _fold_means(y_ptr, F_ptr, b_ptr, H_ptr, d_ptr, m0_ptr, K_ptr, z_ptr, Phi_ptr,
                    B, T, L_chunk, K, n, m, s_yb, s_yt, sFt, sbt, sHt, sdt,
                    N: tl.constexpr, Mo: tl.constexpr, BS: tl.constexpr):
        """Program (series block, chunk k < K-1): the chunk's affine map, offset z_k (B, K, N), slope Φ_k (K, N, N)."""
        pb = tl.program_id(0)
        pk = tl.program_id(1)
        ri = tl.arange(0, N)
        s = pb * BS + tl.arange(0, BS)
        m0 = tl.load(m0_ptr + ri).to(tl.float64)
        mean = tl.where(pk == 0, 1.0, 0.0) * m0[None, :] + tl.zeros((BS, N), dtype=tl.float64)  # chunk 0 from m0
        Phi = tl.where(ri[:, None] == ri[None, :], 1.0, 0.0).to(tl.float64)  # Φ = I
        t0 = pk * L_chunk
        for j in range(0, L_chunk):
            t = t0 + j
            F, b, H, d, G = _load_shared(F_ptr, b_ptr, H_ptr, d_ptr, K_ptr, t, sFt, sbt, sHt, sdt, N, Mo)
            y = _load_y(y_ptr, s, t, B, m, s_yb, s_yt, Mo)
            _pred, _r, mean = _mean_step(mean, y, F, b, H, d, G)              # z <- (I - K H)(F z + b) + K (y - d)
            FPhi = _mm(F, Phi)
            Phi = FPhi - _mm(G, _mm(H, FPhi))                                 # Φ <- (I - K_t H_t) F_t Φ
        tl.store(z_ptr + (s[:, None] * K + pk) * N + ri[None, :], mean, mask=(s[:, None] < B) & (ri[None, :] < N))
        tl.store(Phi_ptr + pk * N * N + ri[:, None] * N + ri[None, :], Phi,
                 mask=(ri[:, None] + pb * N < N) & (ri[None, :] < N))                 # written by series block 0

    @_jit(['B', 'K'])
    def _carry_means(z_ptr, Phi_ptr, start_ptr, B, K, N: tl.constexpr, BS: tl.constexpr):
        """Program (series block): start of chunk k = end of chunk k-1, end_k = Φ_k end_{k-1} + z_k."""
        pb = tl.program_id(0)
        ri = tl.arange(0, N)
        s = pb * BS + tl.arange(0, BS)
        ok = (s[:, None] < B) & (ri[None, :] < N)                             # (BS, N)
        end = tl.load(z_ptr + (s[:, None] * K) * N + ri[None, :], mask=ok, other=0.0)   # end_0 = z_0
        for k in range(1, K - 1):
            tl.store(start_ptr + (s[:, None] * K + k) * N + ri[None, :], end, mask=ok)
            Phi = tl.load(Phi_ptr + k * N * N + ri[:, None] * N + ri[None, :])
            z = tl.load(z_ptr + (s[:, None] * K + k) * N + ri[None, :], mask=ok, other=0.0)
            end = tl.sum(Phi[None, :, :] * end[:, None, :], axis=2) + z     # end_k = Φ_k end_{k-1} + z_k
        tl.store(start_ptr + (s[:, None] * K + K - 1) * N + ri[None, :], end, mask=ok)   # start of the last chunk

    @_jit(_MEAN_INTS)
    def _sweep_means(y_ptr, F_ptr, b_ptr, H_ptr, d_ptr, m0_ptr, K_ptr, Si_ptr, ln_ptr, start_ptr,
                     out_m, out_pm, out_ll, bad_ptr,
                     B, T, L_chunk, K, n, m, s_yb, s_yt, sFt, sbt, sHt, sdt,
                     N: tl.constexpr, Mo: tl.constexpr, BS: tl.constexpr):
        """Program (series block, chunk k): the filter over chunk k from its start; means, predictions, terms.

        Sets bad_ptr[0] to 1 (atomic max) if a filtered mean or log-likelihood term is NaN or infinite."""
        pb = tl.program_id(0)
        pk = tl.program_id(1)
        ri = tl.arange(0, N)
        oi = tl.arange(0, Mo)
        s = pb * BS + tl.arange(0, BS)
        ok = (s[:, None] < B) & (ri[None, :] < N)                             # (BS, N)
        okn = ok & (ri[None, :] < n)
        m0 = tl.load(m0_ptr + ri).to(tl.float64)
        start = tl.load(start_ptr + (s[:, None] * K + pk) * N + ri[None, :], mask=ok, other=0.0)
        mean = tl.where(pk == 0, m0[None, :] + tl.zeros((BS, N), dtype=tl.float64), start)  # chunk 0: m0 (slot unset)
        bad_m = tl.zeros((BS, N), dtype=tl.float32)                           # non-finite counts, elementwise
        bad_l = tl.zeros((BS,), dtype=tl.float32)
        t0 = pk * L_chunk
        for j in range(0, L_chunk):
            t = t0 + j
            if t < T:
                F, b, H, d, G = _load_shared(F_ptr, b_ptr, H_ptr, d_ptr, K_ptr, t, sFt, sbt, sHt, sdt, N, Mo)
                y = _load_y(y_ptr, s, t, B, m, s_yb, s_yt, Mo)
                pred, r, mean = _mean_step(mean, y, F, b, H, d, G)
                Si = tl.load(Si_ptr + t * Mo * Mo + oi[:, None] * Mo + oi[None, :])
                Sr = tl.sum(Si[None, :, :] * r[:, None, :], axis=2)           # S_t^{-1} r_t
                quad = tl.sum(r * Sr, axis=1)                                 # r_t^T S_t^{-1} r_t
                ll = -0.5 * (quad + tl.load(ln_ptr + t))                      # log N(r_t; 0, S_t)
                o = s[:, None] * T + t
                tl.store(out_pm + o * n + ri[None, :], pred.to(out_pm.dtype.element_ty), mask=okn)
                tl.store(out_m + o * n + ri[None, :], mean.to(out_m.dtype.element_ty), mask=okn)
                tl.store(out_ll + s * T + t, ll.to(out_ll.dtype.element_ty), mask=s < B)
                bad_m = _count_bad(bad_m, mean.to(out_m.dtype.element_ty))   # as stored (float64 -> float32
                bad_l = _count_bad(bad_l, ll.to(out_ll.dtype.element_ty))     # may overflow); past B: zeros
        nbad = tl.sum(tl.sum(bad_m, axis=1), axis=0) + tl.sum(bad_l, axis=0)
        tl.atomic_max(bad_ptr, (nbad > 0).to(tl.int32))


def shared_covariances(out: dict) -> dict:
    """The shared (T, n, n) ``covs`` and ``predicted_covs`` behind the stride-0 batch views of a
    :func:`triton_riccati` result (to check or copy them once, not once per series)."""
    return {k: out[k][(0,) * (out[k].ndim - 3)] for k in ("covs", "predicted_covs")}


def chunk_length(T: int) -> int:
    """Default steps per chunk of the means kernels: about sqrt(T) (a power of two, at least 16), which
    balances the per-chunk sweeps (L steps) against the sequential link of the chunks (T / L steps)."""
    return max(16, _next_pow2(int(math.isqrt(max(T, 1)))))


def series_block(N: int, Mo: int) -> int:
    """Series per program: 32 (one warp) unless the (BS, N, max(N, Mo)) float64 tiles would exceed 1024 entries."""
    return max(2, min(32, 1024 // (N * max(N, Mo))))


def triton_riccati(model, y, chunk: int | None = None, time_first: bool = False,
                   params=None, covariances=None, offer_stage: bool = False):
    """Kalman filter of many series with shared covariances and gains (Triton; no missing data).

    Model (docs/math/notation.md): x_1 ~ N(m0, P0), x_t = F_t x_{t-1} + b_t + w_t,
    y_t = H_t x_t + d_t + v_t, the same parameters for every series. Covariances once
    (the element kernel on one series), then the means of all series by the chunked affine
    recursion of the module docstring, in float64.

    Args:
        model: a validated LinearGaussianSSM with n <= 8 and no parameter batch axes.
        y: torch tensor (*B, T, m), float32 or float64, no NaN (not checked here).
        chunk: steps per chunk of the means kernels (default :func:`chunk_length`).
        time_first: return time-first arrays (T, *B, ...) (the layout of the scan drivers).
        params: the output of :func:`~bayesfilt.scan.triton_filter.triton_params` for (model, (1,), dtype,
            device) (computed here when None).
        covariances: optional ``(predicted_covs, covs)``, each (T, n, n) on y's device in y's dtype, to use
            instead of computing them (e.g. kept from an earlier call with the same model and T).

    Without ``params`` and ``covariances``, a call reuses the shared stage (covariances, gains, S^{-1},
    log-normalisers) that an earlier call with the same model contents, T, dtype and device kept on
    the model (:data:`SHARED_MEMO`, at most :data:`SHARED_MEMO_BYTES`; ``parallel_filter`` keeps it
    after the call's non-finite flag reads clean: :func:`keep_shared_stage`): the covariance kernels
    and ``_gains`` are skipped, and the result's covariances are copies of the kept ones.
    ``offer_stage``: a call that computes the stage returns it as ``shared_stage`` (what to keep),
    for a caller that keeps it once the call's flag has been read (``parallel_filter``).

    Returns:
        dict with means (*B, T, n), covs (*B, T, n, n), predicted_means, predicted_covs,
        loglik_terms (*B, T) and loglik (*B), in y's dtype, and ``nonfinite``: an int32 device tensor (1,)
        that is nonzero if a filtered mean, log-likelihood term, the log-likelihood or (unless
        ``covariances`` are given) a covariance came out NaN or infinite (NaN in y shows up there:
        this path has no missing-data handling); covs and predicted_covs are ``expand``-ed
        views of the shared (T, n, n) tensors (no memory, no kernel; copy before writing into them).
        With ``offer_stage``, when this call computed a shared stage that may be kept:
        ``shared_stage``, the ``(key, tensors)`` pair for :func:`keep_shared_stage`.

    Example:
        >>> import numpy as np, torch, bayesfilt
        >>> model = bayesfilt.models.constant_velocity(q=0.05, r=4.0)
        >>> y = torch.as_tensor(np.zeros((1024, 1024, 2)), dtype=torch.float32, device="cuda")  # doctest: +SKIP
        >>> out = triton_riccati(model, y)          # doctest: +SKIP
        >>> out["means"].shape, out["covs"].stride()[0]   # doctest: +SKIP
        (torch.Size([1024, 1024, 4]), 0)
    """
    import torch
    n, m = model.n, model.m
    N, Mo = _next_pow2(n), _next_pow2(m)
    batch = tuple(y.shape[:-2])
    T = int(y.shape[-2])
    B = math.prod(batch) if batch else 1
    yb = y.reshape(B, T, m)                                                   # a view where possible (stride-0 batch ok)
    if yb.stride(2) != 1:
        yb = yb.contiguous()                                                  # the kernels read components at stride 1
    dt, dev = yb.dtype, yb.device
    # the parameters' contents, read once: the memo keys of the uploaded parameters and of the shared stage
    contents = model._contents() if params is None and not model.time_varying else None
    P = params if params is not None else triton_params(model, (1,), dt, dev, contents=contents)
    L = chunk or chunk_length(T)
    K = -(-T // L)
    BS = series_block(N, Mo)
    nb = -(-B // BS)
    # the shared stage (covariances, gains, S^{-1}, log-normalisers) of an earlier call with this model,
    # T, dtype and device (memo_key None: not kept for this call; see shared_stage_key)
    memo_key = (shared_stage_key(model, T, N, Mo, dt, dev, contents) if covariances is None and params is None
                else None)
    stage = model._kept(SHARED_MEMO, memo_key) if memo_key is not None else None
    kept = stage is not None
    offer = offer_stage and memo_key is not None and not kept
    # float64 scratch in one allocation: chunk starts (B, K, N), chunk offsets (B, K, N), chunk slopes
    # (K, N, N); gains (T, N, Mo), S^{-1} (T, Mo, Mo) and log-normalisers (T,) before them unless they are
    # kept (then in an allocation of their own when the call offers them for keeping)
    sizes = [B * K * N, B * K * N, K * N * N]
    gsizes = [T * N * Mo, T * Mo * Mo, T]
    if kept or offer:
        start, z, Phi = torch.empty(sum(sizes), dtype=torch.float64, device=dev).split(sizes)
        gain, Sinv, lognorm = (stage[2:] if kept else
                               torch.empty(sum(gsizes), dtype=torch.float64, device=dev).split(gsizes))
    else:
        gain, Sinv, lognorm, start, z, Phi = torch.empty(sum(gsizes + sizes), dtype=torch.float64,
                                                         device=dev).split(gsizes + sizes)
    plan = []                                                                 # (kernel, grid, args, kwargs)
    if kept:                       # P_{t|t-1}, P_t copied (the results' own), the gains read in place
        covariances = (stage[0].clone(), stage[1].clone())
        bad = torch.zeros((1,), dtype=torch.int32, device=dev)               # set by a kernel on NaN / inf
    elif covariances is None:
        bad = torch.empty((1,), dtype=torch.int32, device=dev)               # zeroed by the first kernel
        cov = triton_filter(model, yb[:1], params=P, wide_vectors=False,      # P_{t|t-1}, P_t: (1, T, n, n)
                            bad=bad, means_out=False, launches=plan)
        covariances = (cov["predicted_covs"][0], cov["covs"][0])
    else:
        bad = torch.zeros((1,), dtype=torch.int32, device=dev)               # set by a kernel on NaN / inf
    pcov, fcov = covariances                                                  # (T, n, n), contiguous
    if not (pcov.is_contiguous() and fcov.is_contiguous()):
        pcov, fcov = pcov.contiguous(), fcov.contiguous()
    if not kept:
        plan.append((_gains, (T,), (pcov, P["H"][0], P["R"][0], gain, Sinv, lognorm, n, m, P["H"][2], P["R"][2]),
                     dict(LOG2PI=LOG_2PI, N=N, Mo=Mo, num_warps=1)))
    shared = (P["F"][0], P["b"][0], P["H"][0], P["d"][0], P["m0"][0], gain)
    ints = (B, T, L, K, n, m, yb.stride(0), yb.stride(1), P["F"][2], P["b"][2], P["H"][2], P["d"][2])
    if K > 1:
        plan.append((_fold_means, (nb, K - 1), (yb, *shared, z, Phi, *ints), dict(N=N, Mo=Mo, BS=BS, num_warps=1)))
        plan.append((_carry_means, (nb,), (z, Phi, start, B, K), dict(N=N, BS=BS, num_warps=1)))
    means = torch.empty(batch + (T, n), dtype=dt, device=dev)
    pm = torch.empty(batch + (T, n), dtype=dt, device=dev)
    ll = torch.empty(batch + (T,), dtype=dt, device=dev)
    plan.append((_sweep_means, (nb, K), (yb, *shared, Sinv, lognorm, start, means, pm, ll, bad, *ints),
                 dict(N=N, Mo=Mo, BS=BS, num_warps=1)))
    ll_plan = loglik_plan(batch, torch.float64, dt, dev, bad)
    launch_all(plan, warm_also=ll_plan[2])

    def spread(c):                                    # (T, n, n) -> (*B, T, n, n), a view (copy before writing)
        return c.expand(batch + (T, n, n))

    out = dict(means=means, covs=spread(fcov), predicted_means=pm, predicted_covs=spread(pcov), loglik_terms=ll,
               loglik=loglik_total(ll, ll_plan))                              # Σ_t terms; flag on overflow
    if time_first:
        out = {k: (v if k == "loglik" else ops.moveaxis(v, len(batch), 0)) for k, v in out.items()}
    out["nonfinite"] = bad
    if offer:                                      # to keep once the call's flag reads clean (api.py)
        out["shared_stage"] = (memo_key, (pcov.clone(), fcov.clone(), gain, Sinv, lognorm))
    return out


#: the model attribute (in its ``__dict__``) holding the shared stage of the last call
#: (``(key, (P_{t|t-1}, P_t, gains, S^{-1}, log-normalisers))``); never pickled (``*_memo``)
SHARED_MEMO = "_riccati_shared_memo"

#: Largest shared stage, in bytes, kept on a model between calls (T = 36157 at n = 4, m = 2, float32 y;
#: 232 bytes per step: shared_stage_key)
SHARED_MEMO_BYTES = 8 << 20


def shared_stage_key(model, T: int, N: int, Mo: int, dtype, device, contents=None):
    """The key under which a call keeps its shared stage on the model, or None when it is not kept:
    parameters that vary in time (their contents would be hashed on every call) or a stage larger than
    SHARED_MEMO_BYTES. The stage depends on nothing else: no data (no missing values on this path).
    ``contents``: ``model._contents()`` when the caller has it already."""
    if model.time_varying:
        return None
    size = T * (2 * N * N * dtype.itemsize + 8 * (N * Mo + Mo * Mo + 1))       # covariances; float64 gains
    if size > SHARED_MEMO_BYTES:
        return None
    return (model._contents() if contents is None else contents, T, dtype, device)


def keep_shared_stage(model, out: dict) -> None:
    """Keep a result's shared stage on its model (after its non-finite flag read clean): later calls with
    the same model, T, dtype and device skip the covariance kernels and the gains. Drops it from ``out``."""
    stage = out.pop("shared_stage", None)
    if stage is not None:
        model._keep(SHARED_MEMO, *stage)
