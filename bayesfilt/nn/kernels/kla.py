"""Host side of the Triton KLA kernels: launch plans, the autograd Function, the decode step.

Model (per lane (m, s); docs/math/kla.md): phi_t = Lv_t k_t^2,
lam_t = lam_{t-1} / (a^2 + p lam_{t-1}) + phi_t, eta_t = a / (a^2 + p lam_{t-1}) eta_{t-1}
+ Lv_t v_t k_t, y_t = sum_s q_t mu_t, y_var_t = sum_s q_t^2 / lam_t (mu = eta / lam);
prior readout: y_t = sum_s q_t a mu_t, y_var_t = sum_s q_t^2 (a^2 / lam_t + p).
Kernel design and measured numbers: docs/kla_kernels.md.

Dtypes: inputs float32 or bfloat16 (or float16); the state, all arithmetic and the outputs
y, y_var, lam_L, eta_L are float32 whatever the input dtype; gradients come back in each
input's dtype. Shapes: v, lambda_v (B, L, M); k, q (B, L, S); a_bar, p_bar (M, S); states
(B, M, S). No validation here (``bayesfilt.nn.functional`` validates); tensors must be on
one CUDA device (or on the CPU under ``TRITON_INTERPRET=1``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton

from bayesfilt.nn.kernels import _kla_triton as K

#: tokens between checkpoints of (w, mu) kept for the backward
CHECKPOINT_EVERY = 8
#: lanes along m per program are MO * MI; MI = 8 threads along m, 4 along s (for S >= 4)
_MI = 8
#: at most this many s-lanes per program (larger S: several s-blocks, partial sums)
_MAX_SB = 16
#: shortest time chunk worth a separate program
_MIN_CHUNK = 256


@dataclass(frozen=True)
class Plan:
    """How a scan of shape (B, L, M, S) is cut into programs (see docs/kla_kernels.md)."""

    B: int
    L: int
    M: int
    S: int
    MO: int
    SB: int
    NSB: int
    NMB: int
    LC: int
    NC: int
    num_warps: int = 1

    @property
    def grid(self) -> tuple[int]:
        return (self.NMB * self.NSB * self.B * self.NC,)


def _sm_count(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 4


def make_plan(B: int, L: int, M: int, S: int, device: torch.device, *, num_chunks: int | None = None,
              mo: int | None = None) -> Plan:
    """Choose the lane tile and the number of time chunks for one scan.

    Time is split into chunks only when the lanes alone give too few programs to fill the
    GPU (about 16 one-warp programs per multiprocessor); ``num_chunks`` forces a count.
    """
    s_pad = triton.next_power_of_2(S)
    SB = min(s_pad, _MAX_SB)
    NSB = triton.cdiv(S, SB)
    MO = mo or 1
    NMB = triton.cdiv(M, MO * _MI)
    programs = NMB * NSB * B
    if num_chunks is None:
        target = 16 * _sm_count(device)
        want = triton.cdiv(target, programs) if programs < target // 2 else 1
        num_chunks = max(1, min(want, L // _MIN_CHUNK))
    num_chunks = max(1, min(int(num_chunks), triton.cdiv(L, CHECKPOINT_EVERY)))
    LC = triton.cdiv(triton.cdiv(L, num_chunks), CHECKPOINT_EVERY) * CHECKPOINT_EVERY
    NC = triton.cdiv(L, LC)
    return Plan(B, L, M, S, MO, SB, NSB, NMB, LC, NC)


def _new(shape, device, poison: bool):
    if poison:
        return torch.full(shape, float("nan"), device=device, dtype=torch.float32)
    return torch.empty(shape, device=device, dtype=torch.float32)


def _dims(plan: Plan):
    return (plan.B, plan.L, plan.M, plan.S, plan.LC, plan.NC, plan.NMB, plan.NSB)


def _consts(plan: Plan):
    return dict(MO=plan.MO, SB=plan.SB, MI=_MI, num_warps=plan.num_warps)


def scan_forward(v, lv, k, q, a, p, w0, mu0, plan: Plan, prior: bool, keep_checkpoints: bool,
                 poison: bool = False):
    """Launch the forward: returns y, y_var (B, L, M), lam_L, eta_L (B, M, S), checkpoints.

    ``w0, mu0`` are the initial state in covariance form (1/lam_0, eta_0/lam_0), float32.
    """
    B, L, M, S = plan.B, plan.L, plan.M, plan.S
    dev = v.device
    ysh = (plan.NSB, B, L, M)
    y, yv = _new(ysh, dev, poison), _new(ysh, dev, poison)
    lamL, etaL = _new((B, M, S), dev, poison), _new((B, M, S), dev, poison)
    nck = triton.cdiv(L, CHECKPOINT_EVERY)
    ck = _new((B, nck, 2, M, S), dev, poison) if keep_checkpoints else y
    sumw = _new((B, plan.NC, 4, M, S), dev, poison) if plan.NC > 1 else y
    summu = _new((B, plan.NC, 2, M, S), dev, poison) if plan.NC > 1 else y
    args = (v, lv, k, q, a, p, w0, mu0, y, yv, lamL, etaL, ck, sumw, summu) + _dims(plan)
    kw = dict(PRIOR=prior, WRITE_CK=keep_checkpoints, CK=CHECKPOINT_EVERY, **_consts(plan))
    if plan.NC > 1:
        K._fwd_kernel[plan.grid](*args, MODE=1, **kw)
        K._fwd_kernel[plan.grid](*args, MODE=2, **kw)
    K._fwd_kernel[plan.grid](*args, MODE=0, **kw)
    if plan.NSB > 1:
        y, yv = y.sum(0), yv.sum(0)
    else:
        y, yv = y[0], yv[0]
    return y, yv, lamL, etaL, (ck if keep_checkpoints else None)


def scan_backward(v, lv, k, q, a, p, gy, gyv, ck, gwL, gmL, plan: Plan, prior: bool,
                  poison: bool = False):
    """Launch the backward; returns dv, dLv (B,L,M), dk, dq (B,L,S), da, dp (M,S), dw0, dmu0."""
    B, L, M, S = plan.B, plan.L, plan.M, plan.S
    dev = v.device
    gsh = (plan.NSB, B, L, M)
    gv, glv = _new(gsh, dev, poison), _new(gsh, dev, poison)
    gk, gq = _new((plan.NMB, B, L, S), dev, poison), _new((plan.NMB, B, L, S), dev, poison)
    ga, gp = _new((B, plan.NC, M, S), dev, poison), _new((B, plan.NC, M, S), dev, poison)
    gw0, gm0 = _new((B, M, S), dev, poison), _new((B, M, S), dev, poison)
    bsum = _new((B, plan.NC, 5, M, S), dev, poison) if plan.NC > 1 else ga
    args = (v, lv, k, q, a, p, gy, gyv, ck, gwL, gmL, bsum, gv, glv, gk, gq, ga, gp, gw0,
            gm0) + _dims(plan)
    kw = dict(PRIOR=prior, **_consts(plan))
    if plan.NC > 1:
        K._bwd_kernel[plan.grid](*args, MODE=1, **kw)
    K._bwd_kernel[plan.grid](*args, MODE=0, **kw)
    # fixed-order reductions of the per-program partial sums (deterministic)
    gv = gv.sum(0) if plan.NSB > 1 else gv[0]
    glv = glv.sum(0) if plan.NSB > 1 else glv[0]
    gk = gk.sum(0) if plan.NMB > 1 else gk[0]
    gq = gq.sum(0) if plan.NMB > 1 else gq[0]
    return gv, glv, gk, gq, ga.sum((0, 1)), gp.sum((0, 1)), gw0, gm0


def _f32c(x):
    return x.contiguous()


class KLAScanFunction(torch.autograd.Function):
    """Autograd node of the fused scan: forward keeps only inputs and (w, mu) checkpoints."""

    @staticmethod
    def forward(ctx, v, lv, k, q, a, p, lam0, eta0, prior, num_chunks, mo, poison):
        B, L, M = v.shape
        S = k.shape[-1]
        plan = make_plan(B, L, M, S, v.device, num_chunks=num_chunks, mo=mo)
        lam0f, eta0f = lam0.float(), eta0.float()
        w0 = (1.0 / lam0f).contiguous()                 # w_0 = 1 / lam_0
        mu0 = (eta0f * w0).contiguous()                 # mu_0 = eta_0 / lam_0
        need = any(ctx.needs_input_grad[:8])
        y, yv, lamL, etaL, ck = scan_forward(v, lv, k, q, a, p, w0, mu0, plan, prior, need, poison)
        if need:
            ctx.save_for_backward(v, lv, k, q, a, p, lam0f, eta0f, ck, lamL, etaL)
        ctx.plan, ctx.prior, ctx.poison = plan, prior, poison
        return y, yv, lamL, etaL

    @staticmethod
    def backward(ctx, gy, gyv, glam, geta):
        v, lv, k, q, a, p, lam0, eta0, ck, lamL, etaL = ctx.saved_tensors
        z = torch.zeros_like
        gy = z(v, dtype=torch.float32) if gy is None else gy.float().contiguous()
        gyv = z(v, dtype=torch.float32) if gyv is None else gyv.float().contiguous()
        glam = z(lamL) if glam is None else glam.float()
        geta = z(etaL) if geta is None else geta.float()
        # (lam, eta) = (1/w, mu/w): adjoint of the final (w, mu)
        gwL = (-(lamL * lamL) * glam - etaL * lamL * geta).contiguous()
        gmL = (lamL * geta).contiguous()
        gv, glv, gk, gq, ga, gp, gw0, gm0 = scan_backward(
            v, lv, k, q, a, p, gy, gyv, ck, gwL, gmL, ctx.plan, ctx.prior, ctx.poison)
        # (w0, mu0) = (1/lam0, eta0/lam0)
        il = 1.0 / lam0
        glam0 = -(gw0 + gm0 * eta0) * il * il
        geta0 = gm0 * il
        return (gv.to(v.dtype), glv.to(lv.dtype), gk.to(k.dtype), gq.to(q.dtype), ga.to(a.dtype),
                gp.to(p.dtype), glam0, geta0, None, None, None, None)


def kla_scan_triton(v, lambda_v, k, q, a_bar, p_bar, initial_state=None, prior_readout=False, *,
                    _num_chunks=None, _mo=None, _poison=False):
    """Fused Triton KLA scan over L tokens, differentiable (exact gradients).

    Args:
        v, lambda_v: (B, L, M) values and value precisions (> 0); float32 or bfloat16.
        k, q: (B, L, S) keys and queries, S <= 128 (any S).
        a_bar, p_bar: (M, S) decay in (0, 1] and process noise >= 0.
        initial_state: None (lam_0 = 1, eta_0 = 0) or ``(lam0, eta0)`` of shape (B, M, S),
            lam0 > 0.
        prior_readout: read out the one-step-ahead prior (a mu_t, a^2/lam_t + p).

    Returns:
        ``(y, y_var, lam_L, eta_L)``: (B, L, M), (B, L, M), (B, M, S), (B, M, S), float32.
        Gradients flow to every input and to the initial state.

    Example:
        >>> import torch
        >>> from bayesfilt.nn.kernels import kla_scan_triton
        >>> B, L, M, S = 2, 64, 32, 16
        >>> dev = "cuda" if torch.cuda.is_available() else "cpu"  # CPU needs TRITON_INTERPRET=1
        >>> y, y_var, lam, eta = kla_scan_triton(  # doctest: +SKIP
        ...     torch.randn(B, L, M, device=dev), torch.ones(B, L, M, device=dev),
        ...     torch.randn(B, L, S, device=dev), torch.randn(B, L, S, device=dev),
        ...     torch.full((M, S), 0.9, device=dev), torch.full((M, S), 0.01, device=dev))
    """
    B, L, M = v.shape
    S = k.shape[-1]
    if initial_state is None:
        lam0 = torch.ones(B, M, S, device=v.device, dtype=torch.float32)
        eta0 = torch.zeros(B, M, S, device=v.device, dtype=torch.float32)
    else:
        lam0, eta0 = initial_state
    return KLAScanFunction.apply(
        _f32c(v), _f32c(lambda_v), _f32c(k), _f32c(q), _f32c(a_bar), _f32c(p_bar), lam0, eta0,
        bool(prior_readout), _num_chunks, _mo, _poison)


def kla_step_triton(v, lambda_v, k, q, a_bar, p_bar, lam, eta, prior_readout=False, *, _poison=False):
    """One token of the filter, fused (decode): state in, state out.

    Args:
        v, lambda_v: (B, M); k, q: (B, S); a_bar, p_bar: (M, S); lam, eta: (B, M, S).
        prior_readout: as in :func:`kla_scan_triton`.

    Returns:
        ``(y, y_var, lam_new, eta_new)``: (B, M), (B, M), (B, M, S), (B, M, S), float32.
        When any input needs a gradient the step runs through the scan's autograd node
        (L = 1), so gradients flow as in :func:`kla_scan_triton`.

    Example:
        >>> import torch
        >>> from bayesfilt.nn.kernels import kla_step_triton
        >>> B, M, S = 1, 2048, 16
        >>> y, y_var, lam, eta = kla_step_triton(  # doctest: +SKIP
        ...     torch.randn(B, M, device="cuda"), torch.ones(B, M, device="cuda"),
        ...     torch.randn(B, S, device="cuda"), torch.randn(B, S, device="cuda"),
        ...     torch.full((M, S), 0.9, device="cuda"), torch.full((M, S), 0.01, device="cuda"),
        ...     torch.ones(B, M, S, device="cuda"), torch.zeros(B, M, S, device="cuda"))
    """
    if torch.is_grad_enabled() and any(t.requires_grad for t in (v, lambda_v, k, q, a_bar, p_bar, lam, eta)):
        y, yv, lam_n, eta_n = kla_scan_triton(v[:, None], lambda_v[:, None], k[:, None], q[:, None],
                                              a_bar, p_bar, (lam, eta), prior_readout, _poison=_poison)
        return y[:, 0], yv[:, 0], lam_n, eta_n
    B, M = v.shape
    S = k.shape[-1]
    SB = triton.next_power_of_2(S)
    NMB = triton.cdiv(M, _MI)
    dev = v.device
    y, yv = _new((B, M), dev, _poison), _new((B, M), dev, _poison)
    lam_o, eta_o = _new((B, M, S), dev, _poison), _new((B, M, S), dev, _poison)
    K._step_kernel[(NMB * B,)](_f32c(v), _f32c(lambda_v), _f32c(k), _f32c(q), _f32c(a_bar),
                               _f32c(p_bar), _f32c(lam), _f32c(eta), y, yv, lam_o, eta_o, M, S,
                               NMB, PRIOR=bool(prior_readout), MO=1, SB=SB, MI=_MI, num_warps=1)
    return y, yv, lam_o, eta_o
