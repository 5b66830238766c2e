"""Public KLA scan: ``kla_scan`` / ``kla_step`` with validation, backend dispatch and exact gradients.

The filter (docs/math/kla.md; spec: ``bayesfilt.filters.diagonal.diagonal_information_filter``):
every lane (channel m, state s) is a scalar Kalman filter in information form,

    lam_t = lam_{t-1} / (a^2 + p lam_{t-1}) + lambda_v_t k_t^2
    eta_t = a / (a^2 + p lam_{t-1}) * eta_{t-1} + lambda_v_t v_t k_t
    y_t = sum_s q_t eta_t / lam_t,       y_var_t = sum_s q_t^2 / lam_t

(prior readout instead: y_t = sum_s q_t a mu_t, y_var_t = sum_s q_t^2 (a^2 / lam_t + p)).

Backends:

- ``"reference"``: the sequential torch loop (``bayesfilt.nn.reference``), differentiated
  by autograd: slow, the yardstick.
- ``"torch"``: the parallel Möbius + affine scans (``bayesfilt.scan.diagonal``), vectorised
  over lanes and time, CPU or GPU (on the CPU with at least ``LOOP_MIN_LANES`` lanes B x M x S: the
  same recurrences as a loop over time vectorised over the lanes, much faster there); gradients by the
  exact adjoint recurrences (reverse affine scans, or the reverse loop), registered as the torch
  custom ops ``bayesfilt::kla_scan`` / ``bayesfilt::kla_scan_backward`` (so ``torch.compile`` and CUDA
  graphs see one opaque op with a fake-tensor shape rule and an autograd formula). :class:`KLAScanFunction`
  is the same forward/backward as a ``torch.autograd.Function``. Where the information form
  overflows (p = 0: lam_t grows like a^(-2t)), forward and backward are recomputed in the
  identical moment form (``bayesfilt.scan.diagonal.diagonal_filter_scan_moments``, or
  ``diagonal_filter_loop_moments`` where the loop runs; gradients by its adjoint, ``diagonal_filter_adjoint_moments``
  or ``diagonal_filter_adjoint_moments_loop``), so y and
  y_var stay finite; the returned state (lam, eta) then has lam saturated at ``LAM_MAX``
  (``bayesfilt.nn.reference.moments_to_state``; docs/math/kla.md, section 6). The reference loop runs the
  moment form.
- ``"triton"``: the fused GPU kernels of ``bayesfilt.nn.kernels`` (imported lazily).
- ``"auto"``: ``"triton"`` for CUDA tensors when the kernels import, else ``"torch"``.

dtypes: float32, float64 and bfloat16 inputs. bfloat16 inputs are computed with float32
state and accumulation; y and y_var come back in the dtype of ``v``; the state comes back
in the compute dtype (float32 for bfloat16 / float32 inputs, float64 for float64), except
from the ``"triton"`` backend, whose kernels compute in float32 (its state is float32 and its
results have float32 accuracy for float64 inputs too).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from ..errors import BayesfiltError, type_error, value_error
from ..validation import check_bool
from ..scan.diagonal import (diagonal_filter_adjoint, diagonal_filter_adjoint_loop, diagonal_filter_adjoint_moments,
                             diagonal_filter_adjoint_moments_loop, diagonal_filter_loop, diagonal_filter_loop_moments,
                             diagonal_filter_scan, diagonal_filter_scan_moments)
from .reference import kla_scan_reference, kla_step_reference, lam_max, moments_to_state

__all__ = ["BACKENDS", "CheckRow", "KLAScanFunction", "KLAState", "check_backends", "kla_scan", "kla_step",
           "random_inputs"]

#: Names accepted by ``backend=``.
BACKENDS = ("auto", "reference", "torch", "triton")
_DTYPES = (torch.float32, torch.float64, torch.bfloat16)


class KLAState(NamedTuple):
    """Filter state of every lane: precision ``lam`` (> 0) and information vector ``eta``.

    Both of shape (B, M, S); the posterior mean is ``eta / lam``, the variance ``1 / lam``.

    Attributes:
        lam: precision of every lane, (B, M, S), > 0.
        eta: information vector (precision times mean) of every lane, (B, M, S).

    Example:
        >>> import torch
        >>> s = KLAState(lam=torch.ones(1, 2, 3), eta=torch.zeros(1, 2, 3))
        >>> (s.eta / s.lam).shape
        torch.Size([1, 2, 3])
    """

    lam: torch.Tensor
    eta: torch.Tensor


# ============================================================================ schedule choice
def _schedule(L: int) -> tuple[str, Optional[int]]:
    """Schedule of the torch parallel form: the shared work-efficient tree (bayesfilt.scan.core).

    Measured on the 2-core CPU (float32, forward + adjoint backward): at B=1, L=65536, M=2,
    S=3 tree 0.17 s vs chunked 0.56 s; at B=2, L=2048, M=64, S=16 tree 3.4 s vs chunked 3.5 s.
    """
    return "tree", None


#: Lanes (B x M x S) from which the ``"torch"`` backend runs on the CPU as a loop over time, vectorised over the
#: lanes (``bayesfilt.scan.diagonal.diagonal_filter_loop`` and ``diagonal_filter_adjoint_loop``), instead of the
#: parallel tree. The loop pays a fixed host cost per step (about 0.36 ms for forward + adjoint on the 2-core dev
#: machine), the tree memory traffic per lane-step that grows once its [B, L, M, S] arrays leave the caches:
#: ``benchmarks/results/kla_scan_cpu_c9db663.json`` and ``kla_scan_cpu.json`` (float32, forward + adjoint, two
#: runs) have the tree faster up to 2,048 lanes, the two close at 4,096 (the loop 1.2x and 1.5x faster; the tree
#: 1.5x in an earlier run not kept), and the loop 1.7-11.6x faster from 8,192 (docs/kla.md, "The scan on the CPU").
#: On CUDA the tree stays (``"triton"`` is the fast path there).
LOOP_MIN_LANES = 8192


def _use_loop(v, k) -> bool:
    """Whether the torch backend runs the time loop (CPU, at least LOOP_MIN_LANES lanes) rather than the tree."""
    B, _, M = v.shape
    return v.device.type == "cpu" and B * M * k.shape[-1] >= LOOP_MIN_LANES


def _saturated(lam, eta) -> KLAState:
    """The state with its precision capped at LAM_MAX (bayesfilt.nn.reference) and the mean kept:
    (lam s, eta s), s = min(1, LAM_MAX / lam). With p = 0, lam_t grows like a^(-2t); a capped state
    stays finite, so a following kla_step / kla_scan from it does not overflow (y and the mean are
    unchanged; the variance 1/lam is floored at 1/LAM_MAX). s = 1 (and its gradient 0) otherwise.
    Every backend returns its state saturated: the torch op's information form through this (its backward
    undoes it by hand, ``_saturation_adjoint``), the moment form and the reference through ``moments_to_state``,
    the Triton kernels themselves (no extra launches per decoded token)."""
    s = (lam_max(lam.dtype) / lam).clamp(max=1.0)
    return KLAState(lam * s, eta * s)


def _finite(*xs) -> bool:
    return all(bool(torch.isfinite(x).all()) for x in xs)


def _forward_raw(v, lambda_v, k, q, a_bar, p_bar, lam0, eta0, prior_readout: bool):
    sched, chunk = _schedule(v.shape[1])
    if _use_loop(v, k):
        res = tuple(diagonal_filter_loop(v, lambda_v, k, q, a_bar, p_bar, lam0, eta0, prior_readout))
    else:
        out = diagonal_filter_scan(v, lambda_v, k, q, a_bar, p_bar, lam0, eta0, prior_readout, sched, chunk)
        res = out.y, out.y_var, out.lams[:, -1].clone(), out.etas[:, -1].clone()
    if _finite(*res) or not _finite(v, lambda_v, k, q, a_bar, p_bar, lam0, eta0):
        # (a finite y beside an inf lam_L: moment form.) The state saturated at LAM_MAX as the moment form's is, so
        # that one backward boundary fits both forms (_saturation_adjoint, _moments_backward_at)
        return (*res[:2], *_saturated(*res[2:]))
    # the information form overflowed (p = 0: lam_t grows like a^(-2t)); the moment form (variance
    # and mean per lane) is the same filter with bounded quantities (docs/math/kla.md)
    out = _moments_forward(v, lambda_v, k, q, a_bar, p_bar, lam0, eta0, prior_readout)
    return (out.y, out.y_var, *moments_to_state(out.lams, out.etas))     # (lams, etas: sig2_L, mu_L here)


def _moments_forward(v, lambda_v, k, q, a_bar, p_bar, lam0, eta0, prior_readout: bool, paths: bool = False):
    """The moment form's y, y_var and variance and mean as a DiagonalScanOutput: the time loop where the information
    form runs as one (``_use_loop``), else the parallel tree; ``lams``, ``etas`` the final sig2_L, mu_L, or with
    ``paths`` the paths sig2_1..sig2_L, mu_1..mu_L (B, L, M, S)."""
    if _use_loop(v, k):
        return diagonal_filter_loop_moments(v, lambda_v, k, q, a_bar, p_bar, lam0, eta0, prior_readout, paths)
    sched, chunk = _schedule(v.shape[1])
    out = diagonal_filter_scan_moments(v, lambda_v, k, q, a_bar, p_bar, lam0, eta0, prior_readout, sched, chunk)
    return out if paths else out._replace(lams=out.lams[:, -1], etas=out.etas[:, -1])


def _backward_raw(v, lambda_v, k, q, a_bar, p_bar, lam0, eta0, g_y, g_y_var, g_lam, g_eta, prior_readout: bool,
                  grad_p: bool = True):
    sched, chunk = _schedule(v.shape[1])
    if grad_p and bool((p_bar == 0).any()):
        # p = 0: the adjoint's two terms in dLoss/dp grow like a^(-4t) and cancel, and float32 loses
        # that gradient long before anything overflows (0.8 relative error at a = 0.8, L = 90; docs/math/kla.md,
        # Ranges); float64 only later (-737 for 77.4 at a = 0.5, L = 60): differentiate the moment form
        # instead, which is exact
        return _moments_backward(v, lambda_v, k, q, a_bar, p_bar, lam0, eta0, g_y, g_y_var, g_lam, g_eta,
                                 prior_readout)
    xs = (v, lambda_v, k, q, a_bar, p_bar, lam0, eta0)
    if _use_loop(v, k):
        out = diagonal_filter_loop(*xs, prior_readout, paths=True)
        g_lam_u, g_eta_u = _saturation_adjoint(out.lams[:, -1], out.etas[:, -1], g_lam, g_eta)
        grads = tuple(diagonal_filter_adjoint_loop(*xs, g_y, g_y_var, g_lam_u, g_eta_u, prior_readout,
                                                   (out.lams, out.etas)))
    else:
        out = diagonal_filter_scan(*xs, prior_readout, sched, chunk)
        g_lam_u, g_eta_u = _saturation_adjoint(out.lams[:, -1], out.etas[:, -1], g_lam, g_eta)
        grads = tuple(diagonal_filter_adjoint(*xs, g_y, g_y_var, g_lam_u, g_eta_u, prior_readout, sched, chunk,
                                              (out.lams, out.etas)))
    if _finite(*grads) or not _finite(v, lambda_v, k, q, a_bar, p_bar, lam0, eta0, g_y, g_y_var, g_lam, g_eta):
        return grads
    return _moments_backward(v, lambda_v, k, q, a_bar, p_bar, lam0, eta0, g_y, g_y_var, g_lam, g_eta, prior_readout)


def _saturation_adjoint(lam, eta, g_lam, g_eta):
    """The cotangents of the information form's unsaturated final state (lam, eta) from those of the saturated
    state the forward returns, (lam s, eta s) with s = min(1, LAM_MAX / lam) (``_saturated``). Unsaturated lanes
    pass them on; in a saturated lane lam s = LAM_MAX is a constant and eta s = eta LAM_MAX / lam, so
    dL/dlam = -g_eta eta LAM_MAX / lam^2 and dL/deta = g_eta LAM_MAX / lam."""
    sat = lam_max(lam.dtype)
    over = lam > sat
    if not bool(over.any()):
        return g_lam, g_eta
    s = sat / lam
    return (torch.where(over, -(g_eta * (eta * s)) / lam, g_lam), torch.where(over, g_eta * s, g_eta))


def _moments_backward(v, lambda_v, k, q, a_bar, p_bar, lam0, eta0, g_y, g_y_var, g_lam, g_eta, prior_readout: bool):
    """Exact gradients by the moment form's adjoint (docs/math/kla.md §7; the loop or the tree as the forward).

    Used where the information-form adjoint overflows or cancels (p = 0: its factors grow like a^(-2t)); the
    moment form's factors are bounded by 1. In float32 the cotangent of the final variance,
    -(g_lam + g_eta mu_L) lam_L^2, overflows once lam_L passes ~1e19 although lam_L itself (up to LAM_MAX = 1e30)
    and most gradients are representable; where the result is not finite from finite inputs it is recomputed in
    float64 with float32's saturation and cast back (only d/dp, ~ -lam_L^2 at p = 0, may then be inf: its true
    value). A backward with a cotangent on the final state runs in float64 from the start (below)."""
    xs = (v, lambda_v, k, q, a_bar, p_bar, lam0, eta0)
    gs = (g_y, g_y_var, g_lam, g_eta)
    sat = lam_max(v.dtype)
    # a cotangent on the final state enters as dL/dw_L = -lam_L^2 (g_lam + mu_L g_eta) and dL/dmu_L = lam_L g_eta,
    # which cancel in the steps before (docs/math/kla.md §7): float32 lost d/dp to 26% at a = 0.5, p = 0, L = 48
    # (lam_L = 1.3e29), so such a backward runs in float64 from the start
    final = bool((g_lam != 0).any()) or bool((g_eta != 0).any())
    if v.dtype == torch.float64 or not final:
        grads = _moments_backward_at(xs, gs, prior_readout, sat)
        if v.dtype == torch.float64 or _finite(*grads) or not _finite(*xs, *gs):
            return grads
    wide = _moments_backward_at(tuple(x.double() for x in xs), tuple(g.double() for g in gs), prior_readout, sat)
    return tuple(g.to(x.dtype) for g, x in zip(wide, xs))


def _moments_backward_at(xs, gs, prior_readout: bool, sat: float):
    """``_moments_backward`` in the inputs' dtype, the final state saturating at precision ``sat``."""
    g_y, g_y_var, g_lam, g_eta = gs
    out = _moments_forward(*xs, prior_readout, paths=True)
    sig2, mu = out.lams[:, -1], out.etas[:, -1]                  # w_L, mu_L
    # the state the forward returned (moments_to_state, or the information form's saturated): lam_L =
    # 1/max(sig2_L, 1/sat), eta_L = mu_L lam_L. Unsaturated: dL/dsig2 = -(g_lam + g_eta mu) lam^2, dL/dmu = g_eta lam;
    # saturated (p = 0 shrinks sig2_L, in float32 to 0): lam_L is the constant sat, so dL/dsig2 = 0 and
    # dL/dmu = g_eta sat. (The clamp keeps lam_L finite: 1/sig2 with sig2 = 0 gave inf and NaN gradients.)
    inv = 1.0 / sig2.clamp(min=1.0 / sat)                        # lam_L
    g_sig2 = torch.where(sig2 * sat > 1.0, -((g_lam + g_eta * mu) * inv) * inv, torch.zeros_like(sig2))
    g_mu = g_eta * inv
    paths = (out.lams, out.etas)
    if _use_loop(xs[0], xs[2]):
        return tuple(diagonal_filter_adjoint_moments_loop(*xs, g_y, g_y_var, g_sig2, g_mu, prior_readout, paths))
    sched, chunk = _schedule(xs[0].shape[1])
    return tuple(diagonal_filter_adjoint_moments(*xs, g_y, g_y_var, g_sig2, g_mu, prior_readout, sched, chunk, paths))


# ============================================================================ custom ops
@torch.library.custom_op("bayesfilt::kla_scan", mutates_args=())
def _kla_scan_op(v: torch.Tensor, lambda_v: torch.Tensor, k: torch.Tensor, q: torch.Tensor,
                 a_bar: torch.Tensor, p_bar: torch.Tensor, lam0: torch.Tensor, eta0: torch.Tensor,
                 prior_readout: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Forward of the torch parallel KLA scan: returns (y, y_var, lam_L, eta_L)."""
    with torch.no_grad():
        return _forward_raw(v, lambda_v, k, q, a_bar, p_bar, lam0, eta0, prior_readout)


@_kla_scan_op.register_fake
def _kla_scan_fake(v, lambda_v, k, q, a_bar, p_bar, lam0, eta0, prior_readout):
    B, L, M = v.shape
    S = k.shape[-1]
    return v.new_empty(B, L, M), v.new_empty(B, L, M), v.new_empty(B, M, S), v.new_empty(B, M, S)


@torch.library.custom_op("bayesfilt::kla_scan_backward", mutates_args=())
def _kla_scan_bwd_op(v: torch.Tensor, lambda_v: torch.Tensor, k: torch.Tensor, q: torch.Tensor,
                     a_bar: torch.Tensor, p_bar: torch.Tensor, lam0: torch.Tensor, eta0: torch.Tensor,
                     g_y: torch.Tensor, g_y_var: torch.Tensor, g_lam: torch.Tensor, g_eta: torch.Tensor,
                     prior_readout: bool, grad_p: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                                                   torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Exact adjoint backward of ``bayesfilt::kla_scan``: gradients of the 8 tensor inputs."""
    with torch.no_grad():
        grads = _backward_raw(v, lambda_v, k, q, a_bar, p_bar, lam0, eta0, g_y, g_y_var, g_lam, g_eta,
                              prior_readout, grad_p)
        return tuple(g.contiguous() for g in grads)


@_kla_scan_bwd_op.register_fake
def _kla_scan_bwd_fake(v, lambda_v, k, q, a_bar, p_bar, lam0, eta0, g_y, g_y_var, g_lam, g_eta, prior_readout,
                       grad_p=True):
    return tuple(torch.empty_like(x) for x in (v, lambda_v, k, q, a_bar, p_bar, lam0, eta0))


def _op_setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs[:8])
    ctx.prior_readout = inputs[8]


def _zeros_if_none(g, like):
    return torch.zeros_like(like) if g is None else g


def _op_backward(ctx, g_y, g_y_var, g_lam, g_eta):
    v, lambda_v, k, q, a_bar, p_bar, lam0, eta0 = ctx.saved_tensors
    ref_y = v
    grads = torch.ops.bayesfilt.kla_scan_backward(
        v, lambda_v, k, q, a_bar, p_bar, lam0, eta0,
        _zeros_if_none(g_y, ref_y), _zeros_if_none(g_y_var, ref_y),
        _zeros_if_none(g_lam, lam0), _zeros_if_none(g_eta, eta0), ctx.prior_readout, bool(ctx.needs_input_grad[5]))
    return (*grads, None)


_kla_scan_op.register_autograd(_op_backward, setup_context=_op_setup_context)


class KLAScanFunction(torch.autograd.Function):
    """The torch parallel KLA scan with the exact adjoint backward, as an autograd Function.

    ``forward(v, lambda_v, k, q, a_bar, p_bar, lam0, eta0, prior_readout)`` returns
    ``(y, y_var, lam_L, eta_L)``; ``backward`` runs (from ``LOOP_MIN_LANES`` lanes on the CPU as the reverse
    loop ``diagonal_filter_adjoint_loop``) the reverse affine scans of
    ``bayesfilt.scan.diagonal.diagonal_filter_adjoint`` (docs/math/kla.md, "Adjoint"): the
    specification the fused GPU backward follows. The inputs must already be validated
    and of one float dtype (use :func:`kla_scan` for checked inputs).

    Example:
        >>> import torch
        >>> B, L, M, S = 1, 6, 2, 3
        >>> args = [torch.randn(B, L, M, dtype=torch.float64), torch.ones(B, L, M, dtype=torch.float64),
        ...         torch.randn(B, L, S, dtype=torch.float64), torch.randn(B, L, S, dtype=torch.float64),
        ...         torch.full((M, S), 0.9, dtype=torch.float64), torch.full((M, S), 0.1, dtype=torch.float64),
        ...         torch.ones(B, M, S, dtype=torch.float64), torch.zeros(B, M, S, dtype=torch.float64)]
        >>> args = [a.requires_grad_() for a in args]
        >>> torch.autograd.gradcheck(lambda *x: KLAScanFunction.apply(*x, False), args)
        True
    """

    @staticmethod
    def forward(ctx, v, lambda_v, k, q, a_bar, p_bar, lam0, eta0, prior_readout=False):
        ctx.save_for_backward(v, lambda_v, k, q, a_bar, p_bar, lam0, eta0)
        ctx.prior_readout = bool(prior_readout)
        return _forward_raw(v, lambda_v, k, q, a_bar, p_bar, lam0, eta0, bool(prior_readout))

    @staticmethod
    def backward(ctx, g_y, g_y_var, g_lam, g_eta):
        v, lambda_v, k, q, a_bar, p_bar, lam0, eta0 = ctx.saved_tensors
        grads = _backward_raw(v, lambda_v, k, q, a_bar, p_bar, lam0, eta0, g_y, g_y_var, g_lam, g_eta,
                              ctx.prior_readout, bool(ctx.needs_input_grad[5]))
        return (*grads, None)


# ============================================================================ validation
def _check_tensor(x, name):
    if not isinstance(x, torch.Tensor):
        raise type_error(name, f"is a {type(x).__name__}", "pass a torch.Tensor (torch.as_tensor(x))")
    if x.dtype not in _DTYPES:
        raise type_error(name, f"has dtype {x.dtype}", "pass float32, float64 or bfloat16")


def _check_shape(x, name, shape, what):
    if x.shape != shape:                                   # torch.Size == tuple (no conversions: decode's host time)
        raise value_error(name, f"has shape {tuple(x.shape)}", f"pass shape {what} = {tuple(shape)}")


def _validate(v, lambda_v, k, q, a_bar, p_bar, state, *, step: bool, state_name: str, check_values: bool):
    """Check types, shapes, dtypes, devices and (optionally) values; return (compute_dtype, lam0, eta0)."""
    named = [("v", v), ("lambda_v", lambda_v), ("k", k), ("q", q), ("a_bar", a_bar), ("p_bar", p_bar)]
    for name, x in named:
        _check_tensor(x, name)
    if step:
        if v.ndim != 2:
            raise value_error("v", f"has shape {tuple(v.shape)}", "pass one token of values of shape (B, M)")
        B, M = v.shape
        _check_shape(lambda_v, "lambda_v", (B, M), "(B, M)")
        if k.ndim != 2 or k.shape[0] != B:
            raise value_error("k", f"has shape {tuple(k.shape)}", f"pass one token of keys of shape (B, S) with B = {B}")
        S = k.shape[1]
        _check_shape(q, "q", (B, S), "(B, S)")
    else:
        if v.ndim != 3:
            raise value_error("v", f"has shape {tuple(v.shape)}", "pass values of shape (B, L, M)")
        B, L, M = v.shape
        if L == 0:
            raise value_error("v", "has zero tokens (L = 0)", "pass at least one token")
        _check_shape(lambda_v, "lambda_v", (B, L, M), "(B, L, M)")
        if k.ndim != 3 or k.shape[:2] != (B, L):
            raise value_error("k", f"has shape {tuple(k.shape)}", f"pass keys of shape (B, L, S) with (B, L) = {(B, L)}")
        S = k.shape[2]
        _check_shape(q, "q", (B, L, S), "(B, L, S)")
    _check_shape(a_bar, "a_bar", (M, S), "(M, S)")
    _check_shape(p_bar, "p_bar", (M, S), "(M, S)")
    if state is not None:
        if not (isinstance(state, tuple) and len(state) == 2):
            raise type_error(state_name, f"is a {type(state).__name__}", "pass a KLAState(lam, eta) of (B, M, S) tensors")
        for name, x in ((f"{state_name}.lam", state[0]), (f"{state_name}.eta", state[1])):
            _check_tensor(x, name)
            _check_shape(x, name, (B, M, S), "(B, M, S)")
        named += [(f"{state_name}.lam", state[0]), (f"{state_name}.eta", state[1])]
    dev = v.device
    for name, x in named:
        if x.device != dev:
            raise value_error(name, f"is on {x.device} but v is on {dev}", f"move every input to {dev}")
    dtypes = {x.dtype for _, x in named}
    if torch.float64 in dtypes and len(dtypes) > 1:
        f64 = next(name for name, x in named if x.dtype == torch.float64)
        other = next(name for name, x in named if x.dtype != torch.float64)
        raise type_error(f64, f"is float64 while {other} is {dict(named)[other].dtype}",
                         "cast all inputs to float64, or none")
    compute = torch.float64 if torch.float64 in dtypes else torch.float32
    if check_values and not _is_compiling():
        _check_values(named, state_name)
    if state is None:
        lam0 = torch.ones(B, M, S, dtype=compute, device=dev)       # lam_0 = 1
        eta0 = torch.zeros(B, M, S, dtype=compute, device=dev)      # eta_0 = 0
    else:
        lam0, eta0 = _as_dtype(state[0], compute), _as_dtype(state[1], compute)
    return compute, lam0, eta0


def _as_dtype(x, dtype):
    """x in ``dtype`` (x itself when it already is: ``Tensor.to`` costs host time even then)."""
    return x if x.dtype is dtype else x.to(dtype)


def _is_compiling() -> bool:
    try:
        return torch.compiler.is_compiling()
    except AttributeError:  # pragma: no cover - old torch
        return False


def _check_values(named, state_name):
    """Value checks with one device synchronisation; the slow path only runs to word the error."""
    d = dict(named)
    flags = [torch.isfinite(x).all() for _, x in named]
    flags += [(d["lambda_v"] > 0).all(), ((d["a_bar"] > 0) & (d["a_bar"] <= 1)).all(), (d["p_bar"] >= 0).all()]
    lam_name = f"{state_name}.lam"
    if lam_name in d:
        flags.append((d[lam_name] > 0).all())
    if bool(torch.stack(flags).all()):
        return
    for name, x in named:
        if not bool(torch.isfinite(x).all()):
            idx = tuple(int(i) for i in torch.nonzero(~torch.isfinite(x))[0])
            raise value_error(name, f"holds a non-finite value {float(x[idx])!r} at index {idx}",
                              "replace NaN/inf (masking of missing tokens is not supported: use lambda_v tiny instead)")
    lv = d["lambda_v"]
    if not bool((lv > 0).all()):
        raise value_error("lambda_v", f"has a non-positive entry (min {float(lv.min()):.6g})",
                          "pass precisions > 0, e.g. 1 / (softplus(x) + 1e-4)")
    a = d["a_bar"]
    if not bool(((a > 0) & (a <= 1)).all()):
        raise value_error("a_bar", f"has an entry outside (0, 1] (min {float(a.min()):.6g}, max {float(a.max()):.6g})",
                          "pass a_bar = exp(-a * dt) with a >= 0, dt > 0")
    p = d["p_bar"]
    if not bool((p >= 0).all()):
        raise value_error("p_bar", f"has a negative entry (min {float(p.min()):.6g})", "pass p_bar >= 0")
    lam = d[lam_name]
    raise value_error(lam_name, f"has a non-positive entry (min {float(lam.min()):.6g})", "pass a precision > 0")


def _resolve_backend(backend, device):
    if backend not in BACKENDS:
        raise value_error("backend", f"is {backend!r}", f"pass one of {BACKENDS}")
    if backend != "auto":
        return backend
    if device.type == "cuda":
        try:
            import bayesfilt.nn.kernels  # noqa: F401
            import triton  # noqa: F401
            return "triton"
        except ImportError:
            return "torch"
    return "torch"


class _Unavailable(BayesfiltError):
    """A backend that cannot run here (no CUDA, no triton): ``check_backends`` reports it as
    unavailable; any other error of a backend is a failure."""


def _import_triton(name, device):
    from bayesfilt.scan._triton import interpreting
    if device.type != "cuda" and not interpreting():
        raise _Unavailable(f"backend: 'triton' needs CUDA tensors, got tensors on {device}. Fix: move the "
                             "inputs to a CUDA device, set TRITON_INTERPRET=1 (slow, for tests), or pass "
                             "backend='torch'.")
    try:
        from bayesfilt.nn import kernels
        return getattr(kernels, name)
    except (ImportError, AttributeError) as exc:
        raise _Unavailable(f"backend: 'triton' is not available ({exc}). Fix: install triton and run on a "
                             "CUDA device, or pass backend='torch'.") from None


def _check_outputs(outs, validate: bool, dtype):
    """With ``validate``: raise instead of returning inf/NaN computed from finite inputs (range overflow)."""
    if not validate or _is_compiling():
        return outs
    if bool(torch.stack([torch.isfinite(x).all() for x in outs if x is not None]).all()):
        return outs
    names = ("y", "y_var", "lam", "eta")
    bad = next(nm for nm, x in zip(names, outs) if x is not None and not bool(torch.isfinite(x).all()))
    raise value_error("v", f"the scan's {bad} left the {dtype} range (finite inputs, overflowed result)",
                      "rescale v, lambda_v, k, q or p_bar (e.g. normalise keys), or compute in float64")


# ============================================================================ public API
def _to_or_none(x, dtype):
    """x in ``dtype``, or None for an output not asked for (y_var without ``variance``)."""
    return None if x is None else x.to(dtype)


def kla_scan(v, lambda_v, k, q, a_bar, p_bar, *, initial_state=None, prior_readout: bool = False,
             variance: bool = True, backend: str = "auto", validate: bool = True, adjoint: str = "information"):
    """Run the KLA diagonal information filter over a sequence (docs/math/kla.md).

    Model per lane (m, s): x_t = a_bar x_{t-1} + N(0, p_bar); v_t[m] = k_t[s] x_t + N(0, 1/lambda_v_t[m]).

    Args:
        v: values, (B, L, M).
        lambda_v: value precisions, (B, L, M), > 0.
        k: keys, (B, L, S).
        q: queries, (B, L, S).
        a_bar: decay, (M, S), in (0, 1].
        p_bar: process-noise variance, (M, S), >= 0.
        initial_state: optional :class:`KLAState` (lam_0, eta_0) of (B, M, S) tensors, the
            belief before token 1 (token 1 is predicted from it); default lam_0 = 1, eta_0 = 0.
        prior_readout: False: read out the posterior of x_t (y = sum q mu_t, y_var =
            sum q^2 / lam_t). True: read out the one-step-ahead prior of x_{t+1} instead
            (y = sum q a mu_t, y_var = sum q^2 (a^2/lam_t + p)), with the same q_t.
        variance: False: y_var is not wanted and comes back as None. The ``"triton"`` kernels then
            skip it (the forward neither sums nor stores y_var, the backward neither allocates nor
            loads its gradient); y, the final state and every gradient are the same as with True
            (bit for bit on the CPU interpreter; docs/kla_kernels.md, "Variance on demand"). The
            ``"reference"`` and ``"torch"`` backends compute y_var and drop it.
        backend: "auto", "reference", "torch" or "triton" (module docstring).
        adjoint: the form in which the ``"triton"`` backward differentiates the filter:
            ``"information"`` (default; (lam, eta), so that a gradient of the final state enters as it
            is) or ``"moment"`` ((w, mu) = (1/lam, eta/lam), docs/math/kla.md section 7: finite and
            exact for p_bar = 0 with a_bar < 1, where the information form's adjoint overflows to NaN; a
            loss on the final state then loses accuracy over long sequences: up to 4.8e-4 relative at
            a_bar = 1, p_bar = 0, L = 65536). ``KLALayer`` without process noise uses ``"moment"``. The
            ``"reference"`` and ``"torch"`` backends ignore it (their backward handles p_bar = 0 itself).
        validate: check values too (positivity, finiteness; one device sync) and that the
            outputs are finite (a second sync): e.g. p_bar = 0 with a_bar < 1 makes lam grow
            like a_bar^(-2t) and leave the float32 range (docs/math/kla.md, "Ranges"). Shapes,
            dtypes and devices are always checked. Skipped automatically under torch.compile.

    Returns:
        ``(y, y_var, final_state)``: y and y_var (B, L, M) in v's dtype (y_var None without
        ``variance``); the posterior
        :class:`KLAState` after token L (compute dtype; float32 from ``"triton"``), its precision
        saturated at ``bayesfilt.nn.reference.LAM_MAX`` (p_bar = 0; docs/math/kla.md section 6).

    Raises:
        BayesfiltValueError / BayesfiltTypeError: bad shapes, dtypes, devices or values.
        BayesfiltError: backend "triton" requested but not available.

    Example:
        >>> import torch
        >>> from bayesfilt.nn.functional import kla_scan
        >>> B, L, M, S = 2, 10, 4, 3
        >>> y, y_var, st = kla_scan(torch.randn(B, L, M), torch.ones(B, L, M), torch.randn(B, L, S),
        ...     torch.randn(B, L, S), torch.full((M, S), 0.9), torch.full((M, S), 0.01))
        >>> y.shape, st.lam.shape
        (torch.Size([2, 10, 4]), torch.Size([2, 4, 3]))
        >>> y2, no_var, _ = kla_scan(torch.randn(B, L, M), torch.ones(B, L, M), torch.randn(B, L, S),
        ...     torch.randn(B, L, S), torch.full((M, S), 0.9), torch.full((M, S), 0.01), variance=False)
        >>> no_var is None
        True
        >>> p0 = torch.zeros(M, S)                # no process noise: the moment-form adjoint on "triton"
        >>> y3, _, _ = kla_scan(torch.randn(B, L, M), torch.ones(B, L, M), torch.randn(B, L, S),
        ...     torch.randn(B, L, S), torch.full((M, S), 0.5), p0, adjoint="moment")
        >>> bool(torch.isfinite(y3).all())
        True
    """
    prior_readout, validate = check_bool(prior_readout, "prior_readout"), check_bool(validate, "validate")
    variance = check_bool(variance, "variance")
    if adjoint not in ("information", "moment"):
        raise value_error("adjoint", f"is {adjoint!r}", 'pass "information" or "moment"')
    compute, lam0, eta0 = _validate(v, lambda_v, k, q, a_bar, p_bar, initial_state, step=False,
                                    state_name="initial_state", check_values=validate)
    backend = _resolve_backend(backend, v.device)
    out_dtype = v.dtype
    if backend == "triton":
        fn = _import_triton("kla_scan_triton", v.device)
        y, y_var, lam, eta = _check_outputs(fn(v, lambda_v, k, q, a_bar, p_bar,
                                initial_state=None if initial_state is None else (lam0.float(), eta0.float()),
                                prior_readout=bool(prior_readout), variance=variance,
                                _tune={"bwd_mom": 1} if adjoint == "moment" else None), validate, torch.float32)
        return y.to(out_dtype), _to_or_none(y_var, out_dtype), KLAState(lam, eta)   # saturated in the kernels
    args = [x.to(compute) for x in (v, lambda_v, k, q, a_bar, p_bar)] + [lam0, eta0]
    if backend == "reference":
        y, y_var, lam, eta = kla_scan_reference(*args, prior_readout=bool(prior_readout))
    else:
        y, y_var, lam, eta = torch.ops.bayesfilt.kla_scan(*args, bool(prior_readout))
    y_var = y_var if variance else None                 # computed by these backends, dropped unasked
    y, y_var, lam, eta = _check_outputs((y, y_var, lam, eta), validate, compute)
    return y.to(out_dtype), _to_or_none(y_var, out_dtype), KLAState(lam, eta)   # saturated by the backend


def kla_step(v, lambda_v, k, q, a_bar, p_bar, state, *, prior_readout: bool = False, backend: str = "auto",
             validate: bool = True):
    """One token of the KLA filter (decoding): state in, readout and new state out.

    Equal to :func:`kla_scan` over a sequence of length 1 with ``initial_state=state``.

    Args:
        v, lambda_v: (B, M) value and its precision (> 0) of this token.
        k, q: (B, S) key and query of this token.
        a_bar, p_bar: (M, S).
        state: :class:`KLAState` (lam, eta) of (B, M, S) tensors, or None for the default
            initial state (lam = 1, eta = 0).
        prior_readout, backend, validate: as in :func:`kla_scan`.

    Returns:
        ``(y, y_var, new_state)`` with y, y_var (B, M).

    Example:
        >>> import torch
        >>> from bayesfilt.nn.functional import kla_step, KLAState
        >>> B, M, S = 1, 4, 3
        >>> st = KLAState(torch.ones(B, M, S), torch.zeros(B, M, S))
        >>> y, y_var, st = kla_step(torch.randn(B, M), torch.ones(B, M), torch.randn(B, S),
        ...     torch.randn(B, S), torch.full((M, S), 0.9), torch.full((M, S), 0.01), st)
        >>> y.shape
        torch.Size([1, 4])
    """
    prior_readout, validate = check_bool(prior_readout, "prior_readout"), check_bool(validate, "validate")
    compute, lam0, eta0 = _validate(v, lambda_v, k, q, a_bar, p_bar, state, step=True, state_name="state",
                                    check_values=validate)
    backend = _resolve_backend(backend, v.device)
    if backend == "triton":
        fn = _import_triton("kla_step_triton", v.device)
        f32 = torch.float32
        y, y_var, lam, eta = _check_outputs(fn(v, lambda_v, k, q, a_bar, p_bar, _as_dtype(lam0, f32),
                                               _as_dtype(eta0, f32), prior_readout=prior_readout), validate, f32)
        return _as_dtype(y, v.dtype), _as_dtype(y_var, v.dtype), KLAState(lam, eta)   # saturated in the kernel
    args = [x.to(compute) for x in (v, lambda_v, k, q, a_bar, p_bar)]
    y, y_var, lam, eta = _check_outputs(kla_step_reference(*args, lam0, eta0, prior_readout=bool(prior_readout)),
                                        validate, compute)
    return y.to(v.dtype), y_var.to(v.dtype), KLAState(lam, eta)   # saturated by the reference (moments_to_state)


# ============================================================================ backend check
class CheckRow(NamedTuple):
    """One line of :func:`check_backends`: a backend's error on one output or gradient.

    Attributes:
        backend: backend name ("reference", "torch", "triton").
        output: "y", "y_var", "lam_L", "eta_L" or "grad_<input>" ("-" if the backend is unavailable).
        error: relative RMS error against the float64 reference (NaN if unavailable).
        tolerance: the promised bound from ``bayesfilt.tolerances`` (None if none is promised).
        passed: ``error <= tolerance`` (None without a tolerance, or for an unavailable backend;
            False for a backend that ran and raised).
        note: why a backend was unavailable or failed, else "".

    Example:
        >>> row = CheckRow("torch", "y", 1e-7, 1e-4, True)
        >>> row.passed
        True
    """

    backend: str
    output: str
    error: float
    tolerance: Optional[float]
    passed: Optional[bool]
    note: str = ""


_GRAD_NAMES = ("v", "lambda_v", "k", "q", "a_bar", "p_bar", "lam0", "eta0")


def _rel_rms(x, ref) -> float:
    x = x.detach().to("cpu", torch.float64)
    ref = ref.detach().to("cpu", torch.float64)
    den = float(torch.linalg.vector_norm(ref))
    num = float(torch.linalg.vector_norm(x - ref))
    return num / den if den > 0 else num


def random_inputs(B: int, L: int, M: int, S: int, *, dtype=torch.float64, device="cpu", seed: int = 0,
                  with_initial_state: bool = True):
    """Random valid KLA inputs (v, lambda_v, k, q, a_bar, p_bar, lam0, eta0), as in the tests and benchmarks.

    Keys and queries are L2-normalised over S (as in the layer); lambda_v = exp(N(0, 0.5^2));
    a_bar in (0.5, 1); p_bar in (0, 0.1); lam0 = exp(N(0, 0.5^2)) (or 1) and eta0 ~ N(0, 1) (or 0).
    Drawn in float64 from a seeded generator, then cast.

    Args:
        B, L, M, S: batch, tokens, channels, state size.
        dtype: dtype of the returned tensors.
        device: device of the returned tensors.
        seed: seed of the generator.
        with_initial_state: random (lam0, eta0) if True, else the default (1, 0).

    Returns:
        Tuple (v, lambda_v, k, q, a_bar, p_bar, lam0, eta0) with shapes (B, L, M) x2,
        (B, L, S) x2, (M, S) x2, (B, M, S) x2.

    Example:
        >>> v, lv, k, q, a, p, lam0, eta0 = random_inputs(1, 5, 2, 3)
        >>> v.shape, a.shape, lam0.shape
        (torch.Size([1, 5, 2]), torch.Size([2, 3]), torch.Size([1, 2, 3]))
    """
    g = torch.Generator().manual_seed(seed)
    f64 = torch.float64

    def rn(*s):
        return torch.randn(*s, generator=g, dtype=f64)

    v = rn(B, L, M)
    lambda_v = (0.5 * rn(B, L, M)).exp()
    k = torch.nn.functional.normalize(rn(B, L, S), dim=-1)
    q = torch.nn.functional.normalize(rn(B, L, S), dim=-1)
    a_bar = 0.5 + 0.5 * torch.rand(M, S, generator=g, dtype=f64).clamp(min=1e-3)
    p_bar = 0.1 * torch.rand(M, S, generator=g, dtype=f64)
    if with_initial_state:
        lam0 = (0.5 * rn(B, M, S)).exp()
        eta0 = rn(B, M, S)
    else:
        lam0 = torch.ones(B, M, S, dtype=f64)
        eta0 = torch.zeros(B, M, S, dtype=f64)
    return tuple(x.to(device=device, dtype=dtype) for x in (v, lambda_v, k, q, a_bar, p_bar, lam0, eta0))


def check_backends(backends=None, *, shape=(2, 64, 4, 5), dtype=torch.float32, device="cpu",
                   prior_readout: bool = False, grads: bool = True, seed: int = 0) -> list:
    """Measure each backend of :func:`kla_scan` against the float64 sequential reference.

    Runs every backend on the same random inputs (rounded to ``dtype``), and compares y,
    y_var, the final state and (``grads``) the gradients of a random linear loss with
    respect to every input (v, lambda_v, k, q, a_bar, p_bar, lam0, eta0) with the
    float64 reference (``bayesfilt.nn.reference`` differentiated by autograd on CPU, fed
    the same rounded inputs). The error metric is the relative RMS ||x - ref|| / ||ref||;
    the promised bound is read from ``bayesfilt.tolerances`` (component "kla_scan").

    Args:
        backends: names to check (default: "reference", "torch", and "triton" on CUDA).
        shape: (B, L, M, S).
        dtype: input dtype (torch.float32, torch.float64 or torch.bfloat16).
        device: where the backends run.
        prior_readout: check the prior readout instead of the posterior one.
        grads: also check gradients.
        seed: random seed of the inputs.

    Returns:
        A list of :class:`CheckRow` (backend, output, error, tolerance, passed, note); an
        unavailable backend gives one row with error NaN and the reason in ``note``.

    Example:
        >>> rows = check_backends(["torch"], shape=(1, 8, 2, 3))
        >>> all(r.passed for r in rows)
        True
    """
    from ..tolerances import TOLERANCES

    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise value_error("device", f"is {device!r}", "pass 'cpu', 'cuda' or a torch.device") from None
    if dtype not in (torch.float32, torch.float64, torch.bfloat16):
        raise type_error("dtype", f"is {dtype!r}", "pass torch.float32, torch.float64 or torch.bfloat16")
    if (not isinstance(shape, (tuple, list)) or len(shape) != 4
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape)):
        raise value_error("shape", f"is {shape!r}", "pass (B, L, M, S), four positive ints")
    if backends is None:
        backends = ["reference", "torch"] + (["triton"] if device.type == "cuda" else [])
    B, L, M, S = shape
    base = random_inputs(B, L, M, S, seed=seed)
    rounded = [x.to(dtype).to(torch.float64) for x in base]
    ref_in = [x.clone().requires_grad_(grads) for x in rounded]
    y, y_var, lam, eta = kla_scan_reference(*ref_in, prior_readout=prior_readout)
    g = torch.Generator().manual_seed(seed + 1)
    cot = [torch.randn(x.shape, generator=g, dtype=torch.float64).to(dtype).to(torch.float64)
           for x in (y, y_var, lam, eta)]
    ref_out = {"y": y, "y_var": y_var, "lam_L": lam, "eta_L": eta}
    ref_grads = {}
    if grads:
        loss = sum((o * c).sum() for o, c in zip((y, y_var, lam, eta), cot))
        ref_grads = dict(zip(_GRAD_NAMES, torch.autograd.grad(loss, ref_in)))
    dname = str(dtype).replace("torch.", "")
    rows = []
    for name in backends:
        tol = TOLERANCES.get(("kla_scan", name, dname))
        bound = None if tol is None else tol.bound
        ins = [x.to(device=device, dtype=dtype).requires_grad_(grads) for x in rounded]
        try:
            out = kla_scan(*ins[:6], initial_state=KLAState(ins[6], ins[7]), prior_readout=prior_readout,
                           backend=name)
        except _Unavailable as exc:
            rows.append(CheckRow(name, "-", float("nan"), bound, None, str(exc)))
            continue
        except BayesfiltError as exc:                # it runs here but fails (e.g. a non-finite output): a failure
            rows.append(CheckRow(name, "-", float("nan"), bound, False, str(exc)))
            continue
        outs = {"y": out[0], "y_var": out[1], "lam_L": out[2].lam, "eta_L": out[2].eta}
        results = [(k_, _rel_rms(outs[k_], ref_out[k_])) for k_ in outs]
        if grads:
            loss = sum((o.to(torch.float64) * c.to(o.device)).sum()
                       for o, c in zip((out[0], out[1], out[2].lam, out[2].eta), cot))
            gs = torch.autograd.grad(loss, ins)
            results += [(f"grad_{n}", _rel_rms(gx, ref_grads[n])) for n, gx in zip(_GRAD_NAMES, gs)]
        for oname, err in results:
            rows.append(CheckRow(name, oname, err, bound, None if bound is None else bool(err <= bound)))
    return rows
