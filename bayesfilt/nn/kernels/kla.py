"""Host side of the Triton KLA kernels: launch plans, the autograd Function, the decode step.

Model (per lane (m, s); docs/math/kla.md): phi_t = Lv_t k_t^2,
lam_t = lam_{t-1} / (a^2 + p lam_{t-1}) + phi_t, eta_t = a / (a^2 + p lam_{t-1}) eta_{t-1}
+ Lv_t v_t k_t, y_t = sum_s q_t mu_t, y_var_t = sum_s q_t^2 / lam_t (mu = eta / lam);
prior readout: y_t = sum_s q_t a mu_t, y_var_t = sum_s q_t^2 (a^2 / lam_t + p).
y_var on demand: without it (``variance=False``) the forward neither computes nor stores y_var and the
backward neither allocates nor loads g_yvar (the kernels' constexpr VAR; docs/kla_kernels.md).
Kernel design and measured numbers: docs/kla_kernels.md.

Dtypes: inputs float32 or bfloat16 (or float16); the state, all arithmetic and the outputs
y, y_var, lam_L, eta_L are float32 whatever the input dtype; gradients come back in each
input's dtype. Shapes: v, lambda_v (B, L, M); k, q (B, L, S); a_bar, p_bar (M, S); states
(B, M, S). No validation here (``bayesfilt.nn.functional`` validates); tensors must be on
one CUDA device (or on the CPU under ``TRITON_INTERPRET=1``).
"""

from __future__ import annotations

import functools
import numbers
from dataclasses import dataclass
from typing import Optional

import torch

from bayesfilt.errors import value_error
from bayesfilt.nn.kernels import _kla_triton as K
from bayesfilt.nn.reference import LAM_MAX
from bayesfilt.scan._triton import cdiv, interpreting, launch_all, next_pow2

#: tokens between checkpoints of (w, mu) kept for the backward
CHECKPOINT_EVERY = 8
#: lanes along m per program of the forward (4 per thread x 8 threads) and of the backward
#: (measured on the H200 at 02cb14f, kla_scan_bwd16_02cb14f.json: the backward's 4 x 16 tile has no
#: spills where 4 x 32 spills 904 bytes; forward+backward 5.124 -> 4.627 ms at B=8 L=2048 M=2048,
#: 14.561 -> 14.260 ms at B=1 L=65536 M=1024; the forward's 16 x 16 tile was slower, 0be35ce)
_BM_FWD, _BM_BWD = 32, 16
#: the forward's m-tile when time is not chunked, built without M's divisibility (one m and 8 s-lanes
#: per thread): with the prefetch, 0.659 -> 0.623 ms at B=8 L=2048 M=2048 (kla_scan_pf11d_2aaa93f.json);
#: at B=1 L=65536 M=1024 (chunked) the 16-channel build was slower (2.72 -> 3.74 ms, kla_scan_pf11_11fb0b0.json)
_BM_FWD_UNCHUNKED = 16
#: channels per program of the decode step (one token; 4 warps)
_STEP_BM = 16
#: defaults of the prefetch (docs/kla_kernels.md, "Prefetch and layout"; Nsight Compute's stall samples and the
#: rows of kla_scan_pf11b_8298b76.json, kla_scan_pf11c_7277e47.json, kla_scan_pf11d_2aaa93f.json): each 8-token block asks L2 for the k, q rows and the program's
#: m-columns of the block 2 blocks ahead, and the backward loads each block's checkpoint a block ahead
_L2PF, _PFROWS, _CKPF = 2, True, True
#: at most this many s-lanes per program in the forward / backward (larger S: several
#: s-blocks and a fixed-order sum of their partial outputs)
_MAX_SB_FWD = 16
_MAX_SB_BWD = 8
#: the backward's m-tile: 8 channels beside an 8-lane s-block, else 16 (64 lanes per one-warp program either way).
#: The 8 x 8 tile (S >= 8) folds half as many partial dv, dLv over s-blocks as the 4 x 16 tile, the default before
#: session 19: on the H200 forward+backward 3.396 -> 3.345 ms at B=8 L=2048 M=2048 S=16 (s18d, 60bfd93,
#: kla_scan_ab_s18d_60bfd93.json) and 9.689 -> 9.545 ms at B=1 L=65536 M=1024 S=16 (s19a, c9c1016,
#: kla_scan_ab_s19a_long_c9c1016.json); timed at S = 16 only. S < 8 keeps the 4 x 16 tile
_BM_BWD_SB8 = 8
#: shortest time chunk worth a separate program
_MIN_CHUNK = 256


def _bwd_tile(S: int, tune: dict) -> tuple:
    """(max_sb, bm) of the backward for S state lanes under the tuning keys ``bwd_sb``, ``bwd_bm``: at most 8
    s-lanes when S >= 8, else 4; 8 channels beside an s-block of 8 or more lanes (also an explicit ``bwd_sb`` 16
    without ``bwd_bm``: a 16 x 8 tile), else ``_BM_BWD`` = 16."""
    max_sb = tune.get("bwd_sb", _MAX_SB_BWD if S >= 8 else 4)
    return max_sb, tune.get("bwd_bm", _BM_BWD_SB8 if min(next_pow2(S), max_sb) >= 8 else _BM_BWD)


@dataclass(frozen=True)
class Plan:
    """How a scan of shape (B, L, M, S) is cut into programs (see docs/kla_kernels.md)."""

    B: int
    L: int
    M: int
    S: int
    BM: int
    SB: int
    NSB: int
    NMB: int
    LC: int
    NC: int
    num_warps: int = 1
    maxnreg: int | None = None
    defer_y: bool = True           # forward: store y, y_var once per 8-token block (tune fwd_defer)
    defer_g: int = 8               # backward: store dv, dLv, dk, dq once per this many tokens (1, 2, 4, 8;
                                   # 0: per token as computed; tune bwd_defer, bwd_group)
    stages: int = 1                # software-pipelined token blocks (1 none, 2, 3; tune fwd_stages, bwd_stages)
    mspec: bool = True             # forward: the build specialised on M's divisibility by 16 (fwd_mspec)
    l2pf: int = _L2PF              # L2 prefetch this many 8-token blocks ahead (0 none, 1, 2, 4; fwd_l2pf, bwd_l2pf)
    pfrows: bool = _PFROWS         # ... of the m-columns too: v, Lv (backward: and g_y, g_yvar) (fwd_pfrows, bwd_pfrows)
    ckpf: bool = _CKPF             # backward: each block's checkpoint loaded one block ahead (bwd_ckpf)
    rel: bool = False              # backward: a block's loads from its first row, M and S compile-time constants (bwd_rel)
    alg: bool = False              # backward: lam_t shared by recompute and adjoint, a shorter readout adjoint (bwd_alg)
    mom: bool = False              # backward: the adjoint in moment form, finite for p = 0 (bwd_mom; alg then unused)
    joint: bool = True             # forward, time chunked: each chunk's map of (w, mu) in one sweep (MODE 3) instead
                                   # of the map of w and then the affine map of mu (MODE 1, 2) (fwd_joint)
    fold: bool = False             # backward: a program sweeps its s-blocks in turn and adds up dv, dLv itself,
                                   # instead of one program per s-block and NSB partial sums (bwd_fold)
    mean: bool = False             # forward (and the moment-form backward's recompute): the mean update switches
                                   # to g a mu + w u where g < 1/2, accurate after a weak prior (mean_switch)

    @property
    def s_partials(self) -> int:
        """How many partial sums over s-blocks the backward returns dv, dLv as (1: folded in the kernel)."""
        return 1 if self.fold else self.NSB

    @property
    def grid(self) -> tuple[int]:
        return (self.NMB * self.s_partials * self.B * self.NC,)   # fold: a program sweeps the s-blocks


def _sm_count(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 4


def make_plan(B: int, L: int, M: int, S: int, device: torch.device, *, num_chunks: int | None = None,
              max_sb: int = _MAX_SB_FWD, bm: int | None = None, maxnreg: int | None = None,
              defer_y: bool = True, defer_g: int = 8, num_warps: int = 1, stages: int = 1,
              mspec: bool | None = None, l2pf: int = _L2PF, pfrows: bool = _PFROWS, ckpf: bool = _CKPF,
              rel: bool = False, alg: bool = False, mom: bool = False, joint: bool = True,
              fold: bool = False, mean: bool = False) -> Plan:
    """Choose the lane tile and the number of time chunks for one scan.

    Time is split into chunks only when the lanes alone give fewer programs than the GPU
    has multiprocessors (then into enough chunks for about 16 one-warp programs per
    multiprocessor); ``num_chunks`` forces a count. ``defer_y``: the forward stores y, y_var
    once per 8-token block; ``defer_g`` (0, 1, 2, 4 or 8): the backward stores its per-token
    gradients once per that many tokens, 0 as it computes them. Same values either way
    (docs/kla_kernels.md, "Deferred stores"). ``num_warps`` (1, 2 or 4): warps per program, which
    Triton spreads over the program's [SB, BM] lane tile (the same lanes, more threads; the
    chunking heuristic still counts programs, not warps; docs/kla_kernels.md, "Multi-warp programs").
    ``stages`` (1, 2 or 3): the pass's token-block loop as a Triton pipelined loop that copies the
    next ``stages - 1`` blocks' inputs into shared memory while a block computes (1: no pipelining;
    docs/kla_kernels.md, "Pipelined loads"). Without ``bm`` the m-tile is 32 channels, or 16 when
    time is not chunked. ``mspec`` False: the forward's build that does not specialise on M's
    divisibility by 16 (another thread layout; the default exactly when the 16-channel tile is chosen
    here, not when ``bm`` asks for it; docs/kla_kernels.md, "Prefetch and layout"). ``l2pf`` (0, 1, 2 or 4): each block first asks L2
    for the k, q rows of the block that many blocks ahead (0: no prefetch), with ``pfrows`` also for
    the program's m-columns of v, Λv (backward: and of the output gradients); ``ckpf``: the backward
    loads each block's checkpoint one block ahead. ``rel``: the backward addresses each 8-token block's
    rows once and its tokens by immediate offsets, compiled for this M and S (constexprs), without lane
    masks where the tile divides M and S (same values; docs/kla_kernels.md, "Instruction counts").
    ``alg``: the backward's recompute rounds phi as its adjoint does (so that they share lam_t) and
    factors the posterior readout's adjoint (the same formulas, other roundings; same section).
    ``mom``: the backward's recompute and adjoint run in covariance (moment) form, (w, mu) and their
    adjoint, whose factors stay bounded when p = 0 (docs/math/kla.md, "The adjoint in moment form").
    ``joint`` (default): a time-chunked forward composes each chunk's map of (w, mu) in one sweep, linear in
    homogeneous coordinates (MODE 3; docs/math/kla.md, "Chunk maps in homogeneous coordinates"); False: the
    map of w and then, from the true w, the affine map of mu (two sweeps, MODE 1 and 2).
    ``fold`` (backward): one program per m-block sweeps the s-blocks in turn and adds each one's dv, dLv
    to the earlier ones' in a fixed order, so they come back as one (1, B, L, M) tensor each instead of
    NSB partial sums that the caller adds up (``scan_backward``).
    ``mean``: the forward's mean update (and the moment-form backward's recompute of it) is
    g_t a mu_{t-1} + w_t u_t where g_t < 1/2 and the innovation form elsewhere, accurate after a weak prior
    with a large mean (docs/math/kla.md §7, "Weak priors in the Triton kernels"; docs/kla_kernels.md, "Forward").
    """
    SB, NSB, BM, NMB = _blocks(M, S, max_sb, bm)
    programs = NMB * NSB * B
    if num_chunks is None:
        # Chunking costs an extra sweep in each pass (two in the forward before session 17's joint
        # chunk maps): only when the lanes give fewer than ~1 one-warp program per multiprocessor
        # (measured on the H200, 2026-11-29, with the two-sweep maps: B=8, L=2048, M=2048 chunked 5
        # ways ran the forward in 1.9 ms).
        target = 16 * _sm_count(device)
        want = cdiv(target, programs) if programs < _sm_count(device) else 1
        num_chunks = max(1, min(want, L // _MIN_CHUNK))
    num_chunks = max(1, min(int(num_chunks), cdiv(L, CHECKPOINT_EVERY)))
    LC = cdiv(cdiv(L, num_chunks), CHECKPOINT_EVERY) * CHECKPOINT_EVERY
    NC = cdiv(L, LC)
    auto16 = bm is None and NC == 1                     # more programs never call for chunks
    if auto16:
        BM = _BM_FWD_UNCHUNKED
        NMB = cdiv(M, BM)
    mspec = not auto16 if mspec is None else bool(mspec)   # an explicit bm keeps the specialised build
    return Plan(B, L, M, S, BM, SB, NSB, NMB, LC, NC, num_warps=int(num_warps), maxnreg=maxnreg,
                defer_y=bool(defer_y), defer_g=int(defer_g), stages=int(stages), mspec=mspec, l2pf=int(l2pf),
                pfrows=bool(pfrows), ckpf=bool(ckpf), rel=bool(rel), alg=bool(alg), mom=bool(mom),
                joint=bool(joint), fold=bool(fold), mean=bool(mean))


def _blocks(M, S, max_sb: int, bm) -> tuple:
    """The lane tile before any chunking decision: (SB, NSB, BM, NMB) for at most ``max_sb`` s-lanes per
    program and ``bm`` channels (None: 32); ``make_plan`` may then narrow BM to 16 when it does not chunk."""
    SB = min(next_pow2(S), max_sb)
    BM = bm or _BM_FWD
    return SB, cdiv(S, SB), BM, cdiv(M, BM)


def _new(shape, device, poison: bool):
    if poison:
        return torch.full(shape, float("nan"), device=device, dtype=torch.float32)
    return torch.empty(shape, device=device, dtype=torch.float32)


def _new_like(x, poison: bool):
    """A new float32 tensor shaped like ``x`` (contiguous), on its device: ``torch.empty_like(x)`` when x
    is float32 (half of ``torch.empty``'s host time on the dev machine), else :func:`_new`."""
    if x.dtype is torch.float32 and not poison:
        return torch.empty_like(x)
    return _new(x.shape, x.device, poison)


def _dims(plan: Plan):
    return (plan.B, plan.L, plan.M, plan.S, plan.LC, plan.NC, plan.NMB, plan.NSB)


def _fast() -> bool:
    """Use inline PTX (rcp.approx) unless running under the Triton interpreter."""
    return not interpreting()


def _consts(plan: Plan):
    kw = dict(SB=plan.SB, BM=plan.BM, FAST=_fast(), num_warps=plan.num_warps)
    if plan.maxnreg and _fast():                        # register cap (compile option; not interpreted)
        kw["maxnreg"] = plan.maxnreg
    return kw


def _pf_kw(plan: Plan, nrows: int) -> dict:
    """Launch options of the prefetch: its distance and the rows it covers (absent when off)."""
    kw = {"L2PF": plan.l2pf} if plan.l2pf else {}
    if plan.l2pf and plan.pfrows:
        kw["PFROWS"] = nrows
    return kw


def scan_forward(v, lv, k, q, aT, pT, w0T, mu0T, plan: Plan, prior: bool, keep_checkpoints: bool,
                 poison: bool = False, var: bool = True):
    """Launch the forward; returns y, y_var (B, L, M), lam_L, eta_L (B, S, M), checkpoints.

    Planes are transposed: ``aT, pT`` (S, M); the initial state in covariance form
    ``w0T = 1/lam_0, mu0T = eta_0/lam_0`` (B, S, M), float32. ``var`` False: y_var is None, neither
    allocated nor computed (the MODE 0 launch with VAR=False; y's buffer stands in for its pointer).
    """
    B, L, M, S = plan.B, plan.L, plan.M, plan.S
    dev = v.device
    ysh = (plan.NSB, B, L, M)
    y = _new(ysh, dev, poison)
    yv = _new(ysh, dev, poison) if var else y           # without the variance: a pointer never written
    lamL, etaL = _new((B, S, M), dev, poison), _new((B, S, M), dev, poison)
    nck = cdiv(L, CHECKPOINT_EVERY)
    ck = _new((B, nck, 2, S, M), dev, poison) if keep_checkpoints else y
    sumw = _new((B, plan.NC, 4, S, M), dev, poison) if plan.NC > 1 else y
    summu = _new((B, plan.NC, 3 if plan.joint else 2, S, M), dev, poison) if plan.NC > 1 else y
    args = (v, lv, k, q, aT, pT, w0T, mu0T, y, yv, lamL, etaL, ck, sumw, summu) + _dims(plan)
    kw = dict(PRIOR=prior, WRITE_CK=keep_checkpoints, CK=CHECKPOINT_EVERY, **_consts(plan))
    if plan.stages > 1:                                 # absent by default: the default launch is unchanged
        kw["NSTAGES"] = plan.stages
    kw.update(_pf_kw(plan, 2))
    kern = K._fwd_kernel if plan.mspec else K._fwd_kernel_any_m
    if plan.NC == 1:
        launches = []
    elif plan.joint:                                    # one sweep for the chunk maps of (w, mu)
        launches = [(kern, plan.grid, args, dict(kw, MODE=3))]
    else:                                               # the map of w, then the affine map of mu
        launches = [(kern, plan.grid, args, dict(kw, MODE=1)), (kern, plan.grid, args, dict(kw, MODE=2))]
    kw0 = dict(kw, MODE=0, **({"DEFER_Y": True} if plan.defer_y else {}))
    if plan.joint and plan.NC > 1:                      # absent otherwise: the default launch is unchanged
        kw0["JOINT"] = True
    if not var:                                         # absent by default: the default launch is unchanged
        kw0["VAR"] = False                              # (MODE 1, 2, 3 never touch y_var: one build for both)
    if plan.mean:                                       # absent by default: the default launch is unchanged
        kw0["MEAN"] = True                              # (MODE 1, 2, 3 carry maps, not the mean itself)
    launch_all(launches + [(kern, plan.grid, args, kw0)])
    y = y.sum(0) if plan.NSB > 1 else y[0]
    yv = (yv.sum(0) if plan.NSB > 1 else yv[0]) if var else None
    return y, yv, lamL, etaL, (ck if keep_checkpoints else None)


def scan_backward(v, lv, k, q, aT, pT, gy, gyv, ck, glamT, getaT, plan: Plan, prior: bool,
                  poison: bool = False):
    """Launch the backward; returns dv, dLv as their per-s-block partial sums (NSB, B, L, M; with
    ``plan.fold`` (1, B, L, M), already summed), dk, dq as
    their per-m-block partial sums (NMB, B, L, S) (the caller sums them over the first axis in a fixed
    order: ``_fold``), da, dp (S, M) and dlam0, deta0 (B, S, M). ``gyv`` None: no gradient reaches y_var;
    the launches (MODE 1 and 0) run with VAR=False and never read g_yvar (gy stands in for its pointer)."""
    B, L, M, S = plan.B, plan.L, plan.M, plan.S
    dev = v.device
    gsh = (plan.s_partials, B, L, M)
    gv, glv = _new(gsh, dev, poison), _new(gsh, dev, poison)
    gk, gq = _new((plan.NMB, B, L, S), dev, poison), _new((plan.NMB, B, L, S), dev, poison)
    ga, gp = _new((B, plan.NC, S, M), dev, poison), _new((B, plan.NC, S, M), dev, poison)
    gl0, ge0 = _new((B, S, M), dev, poison), _new((B, S, M), dev, poison)
    bsum = _new((B, plan.NC, 5, S, M), dev, poison) if plan.NC > 1 else ga
    var = gyv is not None
    args = (v, lv, k, q, aT, pT, gy, gyv if var else gy, ck, glamT, getaT, bsum, gv, glv, gk, gq, ga, gp, gl0,
            ge0) + _dims(plan)
    kw = dict(PRIOR=prior, **_consts(plan))
    if not var:                                         # absent by default: the default launch is unchanged
        kw["VAR"] = False
    if plan.stages > 1:                                 # absent by default: the default launch is unchanged
        kw["BSTAGES"] = plan.stages
    kw.update(_pf_kw(plan, 4))
    if plan.ckpf:
        kw["CKPF"] = True
    if plan.rel:                                        # absent by default: the default launch is unchanged
        kw.update(REL=True, MC=M, SC=S)
    if plan.mom:                                        # (the moment form has no ALG variant)
        kw["MOM"] = True
        if plan.mean:                                   # its recompute follows the forward's mean update
            kw["MEAN"] = True
    elif plan.alg:
        kw["ALG"] = True
    if plan.fold:                                       # absent by default: the default launch is unchanged
        kw["FOLD"] = True
    launches = [(K._bwd_kernel, plan.grid, args, dict(kw, MODE=1))] if plan.NC > 1 else []
    launch_all(launches + [(K._bwd_kernel, plan.grid, args,
                            dict(kw, MODE=0, **({"DEFER_G": plan.defer_g} if plan.defer_g else {})))])
    return gv, glv, gk, gq, ga.sum((0, 1)), gp.sum((0, 1)), gl0, ge0


def _fold(parts: torch.Tensor) -> torch.Tensor:
    """The sum of per-program partial sums over their first axis (the only one when there is one):
    a fixed-order reduction (deterministic, no atomics)."""
    return parts[0] if parts.shape[0] == 1 else parts.sum(0)


def _c(x):
    return x.contiguous()


def _T(x):
    """(…, M, S) -> contiguous (…, S, M)."""
    return x.transpose(-1, -2).contiguous()


#: every private tuning key (``_tune`` of kla_scan_triton; docs/kla_kernels.md)
_TUNE_KEYS = frozenset({"num_chunks", "fwd_sb", "bwd_sb", "fwd_bm", "bwd_bm", "fwd_maxnreg", "bwd_maxnreg",
                        "fwd_defer", "bwd_defer", "bwd_group", "fwd_warps", "bwd_warps", "fwd_stages",
                        "bwd_stages", "fwd_mspec", "fwd_l2pf", "bwd_l2pf", "bwd_ckpf", "fwd_pfrows",
                        "bwd_pfrows", "bwd_rel", "bwd_alg", "bwd_mom", "fwd_joint", "bwd_fold",
                        "mean_switch"})


def _tune_str(tune) -> str:
    """Private launch knobs as a string (custom ops take str, not dict): "k1=v1,k2=v2". An unknown
    key or a value that is not a whole number is refused (a misspelt key in a benchmark would
    otherwise time the defaults under another name)."""
    tune = dict(tune or {})
    for key, val in tune.items():
        if key not in _TUNE_KEYS:
            raise value_error("_tune", f"has the unknown key {key!r}", f"use one of {sorted(_TUNE_KEYS)}")
        if isinstance(val, bool) or not isinstance(val, numbers.Real) or not float(val).is_integer():
            raise value_error(f"_tune[{key!r}]", f"is {val!r}", "pass a whole number")
    return ",".join(f"{k}={int(v)}" for k, v in sorted(tune.items()))


def _tune_dict(tune: str) -> dict:
    return {k: int(v) for k, v in (kv.split("=") for kv in tune.split(",") if kv)}


#: defaults of the deferred-store tuning keys (see make_plan; docs/kla_kernels.md)
# defaults measured on the H200 (benchmarks/kla_scan.py --sweep, B=8 L=2048 M=2048 S=16): fwd_defer
# 1.28 -> 0.80 ms forward (418af3a); bwd_defer with 8-token groups 5.69 -> 5.07 ms forward+backward
# (groups of 1, 2, 4: 5.72, 5.46, 5.66 ms; B=1 L=65536 M=1024: 15.94 -> 14.36 ms)
_FWD_DEFER, _BWD_DEFER, _BWD_GROUP = 1, 1, 8
#: backward: block-relative loads with M, S as constexprs (tune key bwd_rel) and the recompute sharing lam_t
#: with the adjoint, a factored readout adjoint (tune key bwd_alg); docs/kla_kernels.md, "Instruction counts".
#: On the H200 (s13c, 465426c, benchmarks/results/kla_scan_s13c_465426c.json) forward+backward 3.674 ms
#: (both 0) -> 3.476 (bwd_rel) -> 3.433 ms (both) at B=8 L=2048 M=2048 S=16; 11.598 -> 10.258 ms at
#: B=1 L=65536 M=1024 S=16
_BWD_REL = 1
_BWD_ALG = 1
#: backward: the adjoint in moment form (tune key bwd_mom; docs/math/kla.md, "The adjoint in moment form";
#: kla_scan(..., adjoint="moment")). Finite for p = 0, where the information form's adjoint gives NaN, but
#: converting a final-state gradient into it lost up to 4.8e-4 relative accuracy at a = 1, p = 0, L = 65536 on
#: the H200 (s14e, tests/test_kla_triton.py::test_gpu_long_sequence_65536; the information form held 1e-4 in
#: the a = 1, p = 0 case at 684eb35); and 2% slower at B=8 L=2048 M=2048 (backward 2.103 against 2.057 ms),
#: 2% faster at B=1 L=65536 M=1024 (6.092 against 6.226 ms; s14c, benchmarks/kla_scan_ab.py). So the
#: information form stays the default.
_BWD_MOM = 0
#: forward, time chunked: the chunk maps of (w, mu) in one sweep (tune key fwd_joint; MODE 3 of the kernel) instead of
#: two (MODE 1, 2). On the H200 (s17e, afe3677, kla_scan_ab_s17e_afe3677.json, five interleaved rounds) at B=1 L=65536
#: M=1024 S=16: forward 2.551 -> 2.161 ms, forward+backward 10.121 -> 9.706 ms (medians); the default since then
_FWD_JOINT = 1
#: backward: each program sweeps its s-blocks in turn and adds dv, dLv up itself (tune key bwd_fold; FOLD of the
#: kernel) instead of NSB partial [B, L, M] tensors summed afterwards. Slower on the H200 (s17h, 496f315,
#: kla_scan_ab_s17h_496f315.json, B=8 L=2048 M=2048 S=16: backward op 2.054 -> 3.032 ms, forward+backward 3.373 ->
#: 3.967 ms), so off
_BWD_FOLD = 0
#: warps per program of both passes (tune keys fwd_warps, bwd_warps: 1, 2 or 4); 1 is what was measured
_WARPS = 1


def _key(tune: dict, key: str, default: int, allowed: tuple, fix: str) -> int:
    """The tuning key ``key`` (``default`` when absent), refused unless one of ``allowed``."""
    val = int(tune.get(key, default))
    if val not in allowed:
        raise value_error(f"_tune[{key!r}]", f"is {val}", fix)
    return val


def _bwd_defer(tune: dict) -> int:
    """The backward's store group from the tuning keys: ``bwd_defer`` (0 off, 1 on) and
    ``bwd_group`` (tokens per store when on: 1, 2, 4 or 8; default 8, the whole block)."""
    if not _key(tune, "bwd_defer", _BWD_DEFER, (0, 1), "pass 0 (per-token stores) or 1 (grouped stores)"):
        return 0
    return _key(tune, "bwd_group", _BWD_GROUP, (1, 2, 4, 8), "pass 1, 2, 4 or 8 (a power of two dividing the 8-token block)")


def _scan_plan(v, k, tune: dict, pass_: str) -> Plan:
    """One pass's plan for v (B, L, M) and k (B, L, S) under the private tuning keys (``_plan_for``)."""
    return _plan_for(tuple(v.shape), k.shape[-1], v.device, tune, pass_)


def _plan_for(shape: tuple, S: int, device: torch.device, tune: dict, pass_: str) -> Plan:
    """One pass's plan under the private tuning keys. Both passes take the forward plan's number of
    time chunks unless ``num_chunks`` is given: the backward's narrower tile would otherwise count
    enough programs to run unchunked at B=1, L=65536, M=1024 (256 one-warp programs, two per
    multiprocessor), and the benchmarks have always timed both passes at the forward's count.

    Keys per pass (``fwd_*`` / ``bwd_*``): ``*_warps`` 1, 2 or 4 (default 1; 2 warps were slower in
    both passes on the H200, 4 in the backward: docs/kla_kernels.md, "Multi-warp programs");
    ``*_stages`` 1, 2 or 3 (default 1, no pipelining; 2 and 3 were slower: "Pipelined loads"; the
    pipelined loops have no prefetch and no checkpoint a block ahead); ``*_l2pf`` 0, 1, 2 or 4 and
    ``*_pfrows`` 0 or 1 (the prefetch hints), ``bwd_ckpf`` and ``fwd_mspec`` 0 or 1 ("Prefetch and
    layout"); ``bwd_rel`` and ``bwd_alg`` 0 or 1 (default 1 since session 13: fewer instructions per
    backward block, "Instruction counts"; 0 gives session 12's backward; the pipelined backward,
    ``bwd_stages`` > 1, has neither); ``bwd_mom`` 0 or 1: the backward's adjoint in moment form (finite
    for p = 0; docs/math/kla.md, "The adjoint in moment form"); ``fwd_joint`` 0 or 1: a time-chunked
    forward's chunk maps of (w, mu) in one sweep (``make_plan``'s ``joint``); ``bwd_fold`` 0 or 1: the
    backward adds dv, dLv over its s-blocks itself (``make_plan``'s ``fold``); ``mean_switch`` 0 or 1 (both
    passes; ``kla_scan_triton`` sets 1 exactly when an initial state is given): ``make_plan``'s ``mean``."""
    B, L, M = shape
    num_chunks = tune.get("num_chunks")
    if num_chunks is None and pass_ == "bwd":          # (the forward's own plan makes this choice itself)
        num_chunks = _plan_for(shape, S, device, tune, "fwd").NC
    stages = _key(tune, pass_ + "_stages", 1, (1, 2, 3), "pass 1 (no pipelining), 2 or 3")
    l2pf = _key(tune, pass_ + "_l2pf", _L2PF, (0, 1, 2, 4), "pass 0 (no prefetch), 1, 2 or 4 (blocks ahead)")
    ckpf = _key(tune, "bwd_ckpf", _CKPF, (0, 1), "pass 0 or 1")
    rel = _key(tune, "bwd_rel", _BWD_REL, (0, 1), "pass 0 or 1")
    alg = _key(tune, "bwd_alg", _BWD_ALG, (0, 1), "pass 0 or 1")
    mom = _key(tune, "bwd_mom", _BWD_MOM, (0, 1), "pass 0 or 1")
    joint = _key(tune, "fwd_joint", _FWD_JOINT, (0, 1), "pass 0 or 1")
    fold = _key(tune, "bwd_fold", _BWD_FOLD, (0, 1), "pass 0 or 1")
    mean = _key(tune, "mean_switch", 0, (0, 1), "pass 0 or 1")
    mspec = _key(tune, "fwd_mspec", 1, (0, 1), "pass 0 or 1") if "fwd_mspec" in tune else None  # None: the plan decides
    max_sb, bm = (tune.get("fwd_sb", _MAX_SB_FWD), tune.get("fwd_bm")) if pass_ == "fwd" else _bwd_tile(S, tune)
    return make_plan(B, L, M, S, device, num_chunks=num_chunks,
                     max_sb=max_sb, bm=bm,
                     maxnreg=tune.get(pass_ + "_maxnreg"),
                     defer_y=bool(tune.get("fwd_defer", _FWD_DEFER)) and pass_ == "fwd",
                     defer_g=_bwd_defer(tune) if pass_ == "bwd" else 0,
                     num_warps=_key(tune, pass_ + "_warps", _WARPS, (1, 2, 4), "pass 1, 2 or 4 (warps per program)"),
                     stages=stages, mspec=mspec if pass_ == "fwd" else True,
                     l2pf=l2pf if stages == 1 else 0,
                     pfrows=bool(_key(tune, pass_ + "_pfrows", _PFROWS, (0, 1), "pass 0 or 1")),
                     ckpf=bool(ckpf) and pass_ == "bwd" and stages == 1,
                     rel=bool(rel) and pass_ == "bwd" and stages == 1,   # (the pipelined backward
                     alg=bool(alg) and pass_ == "bwd" and stages == 1,   # has neither)
                     mom=bool(mom) and pass_ == "bwd", joint=bool(joint) and pass_ == "fwd",
                     fold=bool(fold) and pass_ == "bwd", mean=bool(mean))


def _bwd_blocks(M, S, tune: dict) -> tuple:
    """(NSB, NMB) of the backward's plan (``_plan_for``), from M, S and the tune keys alone: the fake
    backward op's partial-sum shapes, without make_plan's decisions on B and L (which would put guards
    on them under torch.compile with dynamic shapes)."""
    _, NSB, _, NMB = _blocks(M, S, *_bwd_tile(S, tune))
    if tune.get("bwd_fold", _BWD_FOLD):                 # the kernel adds dv, dLv over the s-blocks itself
        NSB = 1
    return NSB, NMB                                     # (an explicit bm: make_plan keeps it)


def _op_plan(v, k, tune: str, pass_: str) -> Plan:
    """``_scan_plan`` for the custom ops' launches, remembered per shape, device, tune string and
    multiprocessor count (a plan is a pure function of these): 25-47 us of Python per pass on the
    dev machine's CPU otherwise, host time that the GPU waits for when the kernels before it are short."""
    B, L, M = (int(x) for x in v.shape)
    return _plan_cached(B, L, M, int(k.shape[-1]), v.device, tune, pass_, _sm_count(v.device))


@functools.lru_cache(maxsize=256)
def _plan_cached(B: int, L: int, M: int, S: int, device: torch.device, tune: str, pass_: str, sms: int) -> Plan:
    return _plan_for((B, L, M), S, device, _tune_dict(tune), pass_)


# The scan is a pair of torch custom ops (forward, backward) tied by register_autograd, so that
# torch.compile treats it as one opaque node (no graph break) and CUDA graphs capture it: the
# launches read no host values from device memory.
@torch.library.custom_op("bayesfilt::kla_scan_triton", mutates_args=())
def _scan_op(v: torch.Tensor, lv: torch.Tensor, k: torch.Tensor, q: torch.Tensor, a: torch.Tensor,
             p: torch.Tensor, lam0: torch.Tensor, eta0: torch.Tensor, prior: bool, keep: bool, tune: str,
             poison: bool, var: bool = True
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Forward launch: (y, y_var, lam_L, eta_L, checkpoints); checkpoints are empty unless ``keep``.
    ``var`` False: y_var is not computed and comes back as an empty float32 tensor of shape (0,) (a
    placeholder, like the checkpoints without ``keep``: an op returns tensors, not None; its shape does
    not depend on B, L, M, so the fake op and torch.compile with dynamic shapes need no guard)."""
    plan = _op_plan(v, k, tune, "fwd")
    lam0T, eta0T = _T(lam0.float()), _T(eta0.float())
    w0T = 1.0 / lam0T                                   # w_0 = 1 / lam_0
    mu0T = eta0T * w0T                                  # mu_0 = eta_0 / lam_0
    y, yv, lamLT, etaLT, ck = scan_forward(_c(v), _c(lv), _c(k), _c(q), _T(a), _T(p), w0T, mu0T, plan,
                                           prior, keep, poison, var)
    if ck is None:
        ck = y.new_empty(0)
    if yv is None:
        yv = y.new_empty(0)                             # the placeholder of an unwanted y_var
    return y, yv, _T(lamLT), _T(etaLT), ck


@_scan_op.register_fake
def _scan_op_fake(v, lv, k, q, a, p, lam0, eta0, prior, keep, tune, poison, var=True):
    B, L, M = v.shape
    S = k.shape[-1]
    f32 = dict(dtype=torch.float32, device=v.device)
    ck = (B, cdiv(L, CHECKPOINT_EVERY), 2, S, M) if keep else (0,)
    yv = (B, L, M) if var else (0,)
    return (torch.empty(B, L, M, **f32), torch.empty(yv, **f32), torch.empty(B, M, S, **f32),
            torch.empty(B, M, S, **f32), torch.empty(ck, **f32))


@torch.library.custom_op("bayesfilt::kla_scan_triton_backward", mutates_args=())
def _scan_bwd_op(v: torch.Tensor, lv: torch.Tensor, k: torch.Tensor, q: torch.Tensor, a: torch.Tensor,
                 p: torch.Tensor, ck: torch.Tensor, gy: torch.Tensor, gyv: Optional[torch.Tensor],
                 glam: torch.Tensor, geta: torch.Tensor, prior: bool, tune: str, poison: bool
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                            torch.Tensor, torch.Tensor, torch.Tensor]:
    """Backward launch: the gradients of v, lv (as per-s-block partial sums, float32, (NSB, B, L, M)), of
    k, q (per-m-block partial sums, float32, (NMB, B, L, S)), of a, p (their dtypes) and of lam0, eta0
    (float32). The partial sums are summed by the autograd backward (``_scan_backward``), outside this
    op, so that under torch.compile the sums fuse with the ops that consume the gradients. ``gyv`` None
    says that y_var is not wanted (not computed, or no gradient reaches it): the kernels then run
    without g_yvar (VAR=False), and no [B, L, M] zeros stand in for it."""
    plan = _op_plan(v, k, tune, "bwd")
    gv, glv, gk, gq, gaT, gpT, glam0, geta0 = scan_backward(
        _c(v), _c(lv), _c(k), _c(q), _T(a), _T(p), _c(gy.float()), None if gyv is None else _c(gyv.float()), ck,
        _T(glam.float()), _T(geta.float()), plan, prior, poison)
    return gv, glv, gk, gq, _T(gaT).to(a.dtype), _T(gpT).to(p.dtype), _T(glam0), _T(geta0)


@_scan_bwd_op.register_fake
def _scan_bwd_op_fake(v, lv, k, q, a, p, ck, gy, gyv, glam, geta, prior, tune, poison):
    B, L, M = v.shape
    S = k.shape[-1]
    NSB, NMB = _bwd_blocks(M, S, _tune_dict(tune))
    st = dict(dtype=torch.float32, device=v.device)
    return (torch.empty(NSB, B, L, M, **st), torch.empty(NSB, B, L, M, **st),
            torch.empty(NMB, B, L, S, **st), torch.empty(NMB, B, L, S, **st),
            torch.empty_like(a), torch.empty_like(p), torch.empty(B, M, S, **st), torch.empty(B, M, S, **st))


def _scan_setup_context(ctx, inputs, output):
    v, lv, k, q, a, p, lam0, eta0, prior, keep, tune, poison, var = inputs
    ctx.save_for_backward(v, lv, k, q, a, p, output[4], output[2], output[3])
    ctx.prior, ctx.tune, ctx.poison, ctx.var = prior, tune, poison, var
    ctx.state_dtypes = (lam0.dtype, eta0.dtype)


def _moment_adjoint(tune: str) -> bool:
    """Whether the backward of this tune string runs its adjoint in moment form (``bwd_mom``), as
    ``_plan_for`` decides it (not cached: ``_BWD_MOM`` is read now, like a plan made now; the tune strings
    of ``kla_scan_triton`` carry the key, so that for them it is fixed at the forward)."""
    return bool(_tune_dict(tune).get("bwd_mom", _BWD_MOM))


def _final_adjoint_moments(glam, geta, lamL, etaL):
    """The adjoint of the final state (dL/dlam_L, dL/deta_L) as the adjoint of its moments (w_L, mu_L),
    for the moment-form backward: lam_L = 1/max(w_L, 1/LAM_MAX), eta_L = mu_L lam_L, so
    dL/dw_L = -lam_L^2 (dL/dlam_L + mu_L dL/deta_L) (0 where lam_L is saturated) and
    dL/dmu_L = lam_L dL/deta_L. None for an adjoint no gradient reached."""
    if glam is None and geta is None:
        return None, None
    lam = lamL.float()
    mu = etaL.float() / lam
    gl = torch.zeros_like(lam) if glam is None else glam.float()
    ge = torch.zeros_like(lam) if geta is None else geta.float()
    saturated = lam >= 0.5 * LAM_MAX[torch.float32]
    gw = torch.where(saturated, torch.zeros_like(lam), -(lam * (lam * (gl + mu * ge))))
    return gw, lam * ge


def _scan_backward(ctx, gy, gyv, glam, geta, gck):
    v, lv, k, q, a, p, ck, lamL, etaL = ctx.saved_tensors
    B, L, M = v.shape
    S = k.shape[-1]
    zs = v.new_zeros(B, M, S, dtype=torch.float32)
    if _moment_adjoint(ctx.tune):                      # the kernels take the final adjoint as (w_L, mu_L)'s
        glam, geta = _final_adjoint_moments(glam, geta, lamL, etaL)
    # g_yvar only where y_var was computed (autograd materialises zeros for an output no gradient
    # reached, so with the variance the variance-on kernels run, as before); without it None: no
    # [B, L, M] zeros, and the kernels run without the variance's adjoint (the (0,) placeholder's
    # gradient is dropped)
    gyv = gyv if ctx.var and gyv is not None else None
    grads = torch.ops.bayesfilt.kla_scan_triton_backward(
        v, lv, k, q, a, p, ck, v.new_zeros(B, L, M, dtype=torch.float32) if gy is None else gy, gyv,
        zs if glam is None else glam, zs if geta is None else geta, ctx.prior, ctx.tune, ctx.poison)
    gv, glv, gk, gq = (_fold(g).to(x.dtype) for g, x in zip(grads[:4], (v, lv, k, q)))
    g_lam0, g_eta0 = (g.to(dt) for g, dt in zip(grads[6:], ctx.state_dtypes))
    return (gv, glv, gk, gq, *grads[4:6], g_lam0, g_eta0, None, None, None, None, None)


_scan_op.register_autograd(_scan_backward, setup_context=_scan_setup_context)


def kla_scan_triton(v, lambda_v, k, q, a_bar, p_bar, initial_state=None, prior_readout=False, *,
                    variance=True, _num_chunks=None, _tune=None, _poison=False):
    """Fused Triton KLA scan over L tokens, differentiable (exact gradients).

    Args:
        v, lambda_v: (B, L, M) values and value precisions (> 0); float32 or bfloat16.
        k, q: (B, L, S) keys and queries, S <= 128 (any S).
        a_bar, p_bar: (M, S) decay in (0, 1] and process noise >= 0.
        initial_state: None (lam_0 = 1, eta_0 = 0) or ``(lam0, eta0)`` of shape (B, M, S),
            lam0 > 0.
        prior_readout: read out the one-step-ahead prior (a mu_t, a^2/lam_t + p).
        variance: False: y_var is None, and the kernels neither compute y_var nor (backward) load
            its gradient; y, the final state and every gradient are those of the default.

    Returns:
        ``(y, y_var, lam_L, eta_L)``: (B, L, M), (B, L, M) (None without ``variance``), (B, M, S),
        (B, M, S), float32. Gradients flow to every input and to the initial state.

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
    # the backward's form is fixed here, in the tune string that both the backward's plan (_plan_for) and
    # the autograd function's final-state conversion (_moment_adjoint) read: a later change of _BWD_MOM (or a
    # cached plan or decision from before it) cannot make them disagree (a silently wrong gradient)
    # the mean update's switch for weak priors (mean_switch; docs/kla_kernels.md, "Forward") only with an
    # initial state: from the default one (lam_0 = 1, eta_0 = 0) no mean is large enough for the innovation form to
    # cancel, and the switch costs the forward 6.5% at the main shape and 8.5% at the long one (s26b)
    tune = {"bwd_mom": _BWD_MOM, "mean_switch": int(initial_state is not None), **dict(_tune or {}),
            **({"num_chunks": _num_chunks} if _num_chunks else {})}
    if initial_state is None:
        lam0 = torch.ones(B, M, S, device=v.device, dtype=torch.float32)
        eta0 = torch.zeros(B, M, S, device=v.device, dtype=torch.float32)
    else:
        lam0, eta0 = initial_state
    keep = torch.is_grad_enabled() and any(
        t.requires_grad for t in (v, lambda_v, k, q, a_bar, p_bar, lam0, eta0))
    y, y_var, lam_L, eta_L, _ = torch.ops.bayesfilt.kla_scan_triton(
        v, lambda_v, k, q, a_bar, p_bar, lam0, eta0, bool(prior_readout), keep, _tune_str(tune), bool(_poison),
        bool(variance))
    return y, (y_var if variance else None), lam_L, eta_L


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
    # The plain call is host-bound (the kernel takes a few us): outputs like float32 inputs come from
    # torch.empty_like (about half of torch.empty's host time), sizes from int arithmetic (kla_step_triton's
    # host time: benchmarks/kla_decode.py).
    B, M = v.shape
    S = k.shape[-1]
    v, lam, eta = _c(v), _c(lam), _c(eta)
    y, yv = _new_like(v, _poison), _new_like(v, _poison)
    lam_o, eta_o = _new_like(lam, _poison), _new_like(lam, _poison)
    NMB = cdiv(M, _STEP_BM)
    args = (v, _c(lambda_v), _c(k), _c(q), _c(a_bar), _c(p_bar), lam, eta, y, yv, lam_o, eta_o, M, S, NMB)
    launch_all([(K._step_kernel, (NMB * B,), args,
                 dict(PRIOR=bool(prior_readout), SB=next_pow2(S), BM=_STEP_BM, num_warps=4))])
    return y, yv, lam_o, eta_o
