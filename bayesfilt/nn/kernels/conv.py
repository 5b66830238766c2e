"""Host side of the Triton causal depthwise convolution (+ SiLU): launches and the custom ops.

``causal_conv1d_triton(z, weight, bias, silu)`` computes, per channel, u_t = SiLU(bias + sum_j
w_j z_{t-K+1+j}) with z = 0 before the first token (maths: ``_conv_triton``), differentiable with
respect to z, weight and bias. It is what ``KLALayer`` runs on CUDA in place of F.conv1d on a
transposed copy (docs/kla_kernels.md, "Causal convolution and the backward's partial sums"). Launches
go through ``bayesfilt.scan._triton.launch_all`` (compiled launchers remembered). No validation here:
the layer calls it with tensors it made (z from ``in_proj``, its own weight and bias).

Dtypes: z float32, bfloat16 or float16 (u and dz in z's dtype); weight and bias any float dtype
(their gradients in their own dtypes); all arithmetic in float32.
"""

from __future__ import annotations

import torch

from bayesfilt.errors import type_error, value_error
from bayesfilt.nn.kernels import _conv_triton as K
from bayesfilt.scan._triton import cdiv, launch_all, next_pow2

#: tokens x channels per tile (forward, backward), warps per program, and the tokens one backward
#: program sweeps (its partial sums of dw, dbias cover that many)
_BT_FWD, _BT_BWD, _BC, _WARPS, _TCH = 16, 8, 128, 4, 256

#: the backward's variants (kernels and maths: _conv_triton) and the tiles of each: "recompute" (one
#: kernel recomputing pre at K tokens per token), "split" (d to a float32 scratch [B, L, C], then dz
#: from it; BT2 tokens per tile of the second kernel), "window" (one kernel, each thread sweeping its
#: channels through TCH tokens with the last three z and d in registers). "split" and "window" take
#: K <= 4 and fall back to "recompute" above it.
_BWD_TILES = {"recompute": dict(BT=_BT_BWD, BC=_BC, TCH=_TCH, warps=_WARPS),
              "split": dict(BT=8, BC=128, TCH=256, warps=4, BT2=16),
              "window": dict(BC=128, TCH=128, warps=1)}
#: the default: on the H200 at B=8, L=2048, C=2048, K=4, bf16 (s13b, 8b42d3b,
#: benchmarks/results/conv_bench_s13b_8b42d3b.json) window 152 us best / 159 us median against
#: 364 / 448 us for recompute and 251 / 332 us for split
_BWD_VARIANT = "window"
_WIDE_K = 4                                      # the widest kernel "split" and "window" are written for


assert _TCH % _BT_BWD == 0, "a backward program's tokens must be whole tiles (else dw, dbias count tokens twice)"


def _channels_contiguous(z: torch.Tensor) -> torch.Tensor:
    """z with contiguous channels (a column slice of a wider tensor is kept as it is)."""
    return z if z.stride(-1) == 1 else z.contiguous()


def conv_forward(z, weight, bias, silu: bool) -> torch.Tensor:
    """u [B, L, C] in z's dtype from z [B, L, C] (channels contiguous), weight [C, K], bias [C]."""
    B, L, C = z.shape
    u = torch.empty(B, L, C, device=z.device, dtype=z.dtype)
    grid = (cdiv(L, _BT_FWD), cdiv(C, _BC), B)
    launch_all([(K._conv_fwd_kernel, grid, (z, weight.contiguous(), bias.contiguous(), u, L, C, z.stride(0), z.stride(1)),
                 dict(K=weight.shape[1], BT=_BT_FWD, BC=_BC, SILU=silu, num_warps=_WARPS))])
    return u


def conv_backward(z, weight, bias, g, silu: bool, variant: str | None = None, **tiles):
    """(dz [B, L, C] in z's dtype, dweight [C, K], dbias [C] in their dtypes) for upstream g [B, L, C].

    ``variant``: one of ``_BWD_TILES`` (None: ``_BWD_VARIANT``); ``tiles`` override its entries
    (benchmarks). All variants compute the same sums; they differ in how often they recompute
    pre and in what they store (``_conv_triton``)."""
    B, L, C = z.shape
    Kw = weight.shape[1]
    variant = _BWD_VARIANT if variant is None else variant
    if variant not in _BWD_TILES:
        raise value_error("variant", f"is {variant!r}", f"pass one of {sorted(_BWD_TILES)}")
    if Kw > _WIDE_K:
        variant = "recompute"
    unknown = sorted(set(tiles) - set(_BWD_TILES[variant]))
    if unknown:
        raise value_error("tiles", f"name {unknown} for variant {variant!r}",
                          f"pass only {sorted(_BWD_TILES[variant])}")
    tile = {**_BWD_TILES[variant], **tiles}
    TCH, BC, warps = tile["TCH"], tile["BC"], tile["warps"]
    if variant != "window" and TCH % tile["BT"]:
        raise value_error("TCH", f"is {TCH} for BT = {tile['BT']}",
                          "pass a multiple of BT (else dw and dbias count tokens twice)")
    NT = cdiv(L, TCH)
    w, b, g = weight.contiguous(), bias.contiguous(), g.contiguous()
    gz = torch.empty(B, L, C, device=z.device, dtype=z.dtype)
    gw = torch.empty(B * NT, C, Kw, device=z.device, dtype=torch.float32)
    gb = torch.empty(B * NT, C, device=z.device, dtype=torch.float32)
    grid = (NT, cdiv(C, BC), B)
    args = (z, w, b, g, gz, gw, gb, L, C, z.stride(0), z.stride(1), NT, TCH)   # recompute and window
    if variant == "recompute":
        launches = [(K._conv_bwd_kernel, grid, args,
                     dict(K=Kw, KP=next_pow2(Kw), BT=tile["BT"], BC=BC, SILU=silu, num_warps=warps))]
    elif variant == "window":
        launches = [(K._conv_bwd_window_kernel, grid, args, dict(K=Kw, BC=BC, SILU=silu, num_warps=warps))]
    else:                                        # split: without SiLU d = g, so nothing is written
        d = torch.empty(B, L, C, device=z.device, dtype=torch.float32) if silu else g
        launches = [(K._conv_bwd_d_kernel, grid, (z, w, b, g, d, gw, gb, L, C, z.stride(0), z.stride(1), NT, TCH),
                     dict(K=Kw, BT=tile["BT"], BC=BC, SILU=silu, STORE_D=silu, num_warps=warps)),
                    (K._conv_bwd_dz_kernel, (cdiv(L, tile["BT2"]), cdiv(C, BC), B), (d, w, gz, L, C),
                     dict(K=Kw, BT=tile["BT2"], BC=BC, num_warps=warps))]
    launch_all(launches)
    # fixed-order sums of the per-program partials (deterministic, no atomics)
    return gz, gw.sum(0).to(weight.dtype), gb.sum(0).to(bias.dtype)


@torch.library.custom_op("bayesfilt::causal_conv1d_triton", mutates_args=())
def _conv_op(z: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, silu: bool) -> torch.Tensor:
    """Forward launch: u [B, L, C] in z's dtype."""
    return conv_forward(_channels_contiguous(z), weight, bias, silu)


@_conv_op.register_fake
def _conv_op_fake(z, weight, bias, silu):
    return torch.empty(z.shape, device=z.device, dtype=z.dtype)


@torch.library.custom_op("bayesfilt::causal_conv1d_triton_backward", mutates_args=())
def _conv_bwd_op(z: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, g: torch.Tensor,
                 silu: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Backward launch: (dz, dweight, dbias)."""
    return conv_backward(_channels_contiguous(z), weight, bias, g, silu)


@_conv_bwd_op.register_fake
def _conv_bwd_op_fake(z, weight, bias, g, silu):
    return (torch.empty(z.shape, device=z.device, dtype=z.dtype), weight.new_empty(weight.shape),
            bias.new_empty(bias.shape))                  # contiguous, as the sums the real op returns


def _setup_context(ctx, inputs, output):
    z, weight, bias, silu = inputs
    ctx.save_for_backward(z, weight, bias)
    ctx.silu = silu


def _backward(ctx, g):
    z, weight, bias = ctx.saved_tensors
    gz, gw, gb = torch.ops.bayesfilt.causal_conv1d_triton_backward(z, weight, bias, g, ctx.silu)
    return gz, gw, gb, None


_conv_op.register_autograd(_backward, setup_context=_setup_context)


def causal_conv1d_triton(z, weight, bias, silu: bool = True):
    """Causal depthwise convolution of z [B, L, C] (+ SiLU), fused, differentiable.

    Args:
        z: [B, L, C] input (z = 0 before its first token); channels must be the last axis.
        weight: [C, K] taps (w_{K-1} multiplies the current token).
        bias: [C].
        silu: apply SiLU to the result.

    Returns:
        u: [B, L, C] in z's dtype.

    Raises:
        BayesfiltValueError / BayesfiltTypeError: wrong shapes, dtypes or devices (values are not
        checked). Reference: :func:`bayesfilt.nn.reference.causal_conv1d_reference`.

    Example:
        >>> import torch
        >>> from bayesfilt.nn.kernels.conv import causal_conv1d_triton
        >>> u = causal_conv1d_triton(torch.randn(2, 10, 256, device="cuda"),  # doctest: +SKIP
        ...                          torch.randn(256, 4, device="cuda"), torch.zeros(256, device="cuda"))
    """
    _check(z, weight, bias)
    return torch.ops.bayesfilt.causal_conv1d_triton(z, weight, bias, bool(silu))


def _check(z, weight, bias) -> None:
    """Shapes, dtypes and devices (no device sync): the kernels read C channels of weight and bias."""
    for name, x in (("z", z), ("weight", weight), ("bias", bias)):
        if not isinstance(x, torch.Tensor) or not torch.is_floating_point(x):
            raise type_error(name, f"must be a floating torch.Tensor, got {getattr(x, 'dtype', type(x).__name__)}",
                             "pass a float32 or bfloat16 tensor")
    if z.ndim != 3 or z.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise value_error("z", f"has shape {tuple(z.shape)} and dtype {z.dtype}",
                          "pass [B, L, C] in float32, bfloat16 or float16 (float64: causal_conv1d_reference)")
    C = z.shape[-1]
    if weight.ndim != 2 or weight.shape[0] != C or weight.shape[1] < 1:
        raise value_error("weight", f"has shape {tuple(weight.shape)} for z with {C} channels", f"pass [{C}, K], K >= 1")
    if tuple(bias.shape) != (C,):
        raise value_error("bias", f"has shape {tuple(bias.shape)}", f"pass [{C}]")
    if not (z.device == weight.device == bias.device):
        raise value_error("weight", f"is on {weight.device}, bias on {bias.device}, z on {z.device}",
                          "move them to one device")
