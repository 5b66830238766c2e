"""Triton KLA kernels (bayesfilt.nn.kernels) against the float64 sequential reference.

Without CUDA the kernels run under the Triton interpreter (``TRITON_INTERPRET=1``) on small
shapes, in a child pytest process of this module (see ``test_interpreted`` below: triton must be
imported with the variable set, and neither the variable nor interpreted triton may leak into
the other test modules of a worker); with CUDA the same small tests run
compiled on the GPU, and the ``gpu``-marked tests add the full matrix of shapes
(L up to 65536, bf16 inputs, extremes). Every output buffer is poisoned with NaN before
the kernels write it. The error metric is the relative RMS ||fast - ref|| / ||ref|| of
y, y_var, the final state and every gradient (bound: bayesfilt.tolerances, "kla_scan",
"triton").
"""

import importlib
import os
import sys

import pytest

torch = pytest.importorskip("torch")
HAS_CUDA = torch.cuda.is_available()
# the child process that runs this module's CPU tests under the interpreter (set by test_interpreted)
CHILD = os.environ.get("BAYESFILT_KLA_TRITON_CHILD") == "1"
if CHILD:
    assert os.environ.get("TRITON_INTERPRET") == "1" and "triton" not in sys.modules
pytest.importorskip("triton")

from bayesfilt.nn.reference import kla_scan_reference, kla_step_reference  # noqa: E402
from bayesfilt.tolerances import TOLERANCES  # noqa: E402


def _kernels():
    """The kernel modules, re-imported if triton decorated them before the interpreter was set."""
    import bayesfilt.nn.kernels._kla_triton as K
    if not HAS_CUDA and "Interpreted" not in type(K._fwd_kernel).__name__:
        K = importlib.reload(K)
        importlib.reload(sys.modules["bayesfilt.nn.kernels.kla"])
        importlib.reload(sys.modules["bayesfilt.nn.kernels"])
    import bayesfilt.nn.kernels.kla as kla
    return kla


DEV = "cuda" if HAS_CUDA else "cpu"
TOL = TOLERANCES.get(("kla_scan", "triton", "float32"))
RTOL = TOL.bound if TOL is not None else 1e-4
NAMES = ("v", "lambda_v", "k", "q", "a_bar", "p_bar", "lam0", "eta0")


def _inputs(B, L, M, S, *, seed=0, a_range=(0.5, 1.0), p_range=(0.0, 0.2), lv_scale=(0.5, 1.5),
            device=DEV):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)          # noqa: E731
    u = lambda *s: torch.rand(*s, generator=g, dtype=torch.float64)           # noqa: E731
    xs = [r(B, L, M), lv_scale[0] + (lv_scale[1] - lv_scale[0]) * u(B, L, M), r(B, L, S) / S ** 0.5,
          r(B, L, S) / S ** 0.5, a_range[0] + (a_range[1] - a_range[0]) * u(M, S),
          p_range[0] + (p_range[1] - p_range[0]) * u(M, S), 0.5 + u(B, M, S), r(B, M, S)]
    return [x.to(device) for x in xs]


def _rel(a, b):
    a, b = a.double(), b.double()
    n = b.norm()
    return float((a - b).norm() / (n if n > 0 else 1.0))


def _reference(xs, prior, with_grad=True, weights=None):
    """float64 sequential reference (autograd) on the same (rounded) inputs."""
    xr = [x.detach().double().requires_grad_(with_grad) for x in xs]
    out = kla_scan_reference(*xr, prior_readout=prior)
    if with_grad:
        sum((o * w).sum() for o, w in zip(out, weights)).backward()
    return [o.detach() for o in out], [x.grad for x in xr] if with_grad else None


def _triton(xs, prior, init, weights=None, dtype=torch.float32, num_chunks=None, tune=None):
    kla = _kernels()
    xt = [x.detach().to(dtype).requires_grad_(weights is not None) for x in xs]
    out = kla.kla_scan_triton(*xt[:6], initial_state=(xt[6], xt[7]) if init else None,
                              prior_readout=prior, _num_chunks=num_chunks, _tune=tune, _poison=True)
    if weights is not None:
        sum((o * w.float()).sum() for o, w in zip(out, weights)).backward()
    return [o.detach() for o in out], [x.grad for x in xt] if weights is not None else None


def _check(B, L, M, S, *, init, prior, num_chunks=None, seed=0, tol=RTOL, grads=True, tune=None, lam0=None, **kw):
    """Every output and gradient of the Triton scan against float64 autograd of the reference (relative RMS
    within ``tol``). ``lam0``: an initial precision of that value in every lane (with ``init``; eta_0 stays
    of order 1, so the prior mean is of order 1/lam0)."""
    xs = _inputs(B, L, M, S, seed=seed, **kw)
    if lam0 is not None:
        xs[6] = torch.full_like(xs[6], lam0)
    if not init:
        xs[6], xs[7] = torch.ones_like(xs[6]), torch.zeros_like(xs[7])
    g = torch.Generator().manual_seed(seed + 1)
    shapes = [(B, L, M), (B, L, M), (B, M, S), (B, M, S)]
    weights = [torch.randn(*s, generator=g, dtype=torch.float64).to(DEV) for s in shapes] if grads else None
    out_r, g_r = _reference(xs, prior, grads, weights)
    out_t, g_t = _triton(xs, prior, init, weights, num_chunks=num_chunks, tune=tune)
    errs = {}
    for name, a, b in zip(("y", "y_var", "lam_L", "eta_L"), out_t, out_r):
        assert a.dtype == torch.float32 and a.shape == b.shape
        assert torch.isfinite(a).all(), f"{name}: non-finite (unwritten?)"
        errs[name] = _rel(a, b)
    if grads:
        for i, (name, a, b) in enumerate(zip(NAMES, g_t, g_r)):
            if i >= 6 and not init:
                continue
            assert a is not None and torch.isfinite(a).all(), f"grad {name}: missing or non-finite"
            errs["grad_" + name] = _rel(a, b)
    bad = {k: v for k, v in errs.items() if not v <= tol}
    assert not bad, f"rel RMS over {tol}: {bad} (all: {errs})"
    return errs, out_t, g_t


def _check_same(B, L, M, S, tune, base_tune, inexact=(), **kw):
    """``tune`` and ``base_tune`` (two store schedules of the same maths) each pass ``_check`` against
    the float64 reference, and their outputs and gradients are bit-identical under the interpreter
    (the same operations in the same order), except the names in ``inexact``, which then agree like
    compiled kernels (below; e.g. another m-tile sums ∂k, ∂q over m in another order). On a GPU the two schedules are different compiled
    kernels, whose multiply-adds the compiler may contract differently, so there they must agree
    within a tenth of the promised bound (bit identity is not promised; at 418af3a 3 of 10 of these tests
    failed on the H200 with the bit-identity check, their report cut by a time limit)."""
    _, out, g = _check(B, L, M, S, tune=tune, **kw)
    _, out0, g0 = _check(B, L, M, S, tune=base_tune, **kw)
    names = ("y", "y_var", "lam_L", "eta_L") + tuple("grad_" + n for n in NAMES)
    close = names if DEV == "cuda" else tuple(inexact)
    # each is within RTOL of the reference already; the two must agree 10x closer (rounding of
    # differently contracted multiply-adds: ~2e-7 in the H200 benchmark's parity at 418af3a)
    rel = {n: _rel(a, b) for n, a, b in zip(names, out + g, out0 + g0) if a is not None and n in close}
    bad = {n: e for n, e in rel.items() if not e <= RTOL / 10}
    assert not bad, f"{tune} differs from {base_tune} (rel RMS): {bad}"
    diff = {n: float((a - b).abs().max()) for n, a, b in zip(names, out + g, out0 + g0)
            if a is not None and n not in close and not torch.equal(a, b)}
    assert not diff, f"{tune} differs from {base_tune} (max abs difference): {diff}"


# ----------------------------------------------------------------------------- small shapes (CI)
@pytest.mark.parametrize("B,L,M,S,init,prior,nc", [
    (2, 1, 5, 3, False, False, None),
    (1, 3, 4, 16, True, False, None),
    (2, 37, 5, 3, True, True, None),
    (1, 37, 9, 16, False, False, None),
    (2, 37, 5, 3, True, False, 3),          # time-chunked variant, 3 chunks
    (1, 37, 3, 16, True, True, 4),          # chunked + prior readout
    (1, 11, 3, 20, True, False, None),      # S > 16 and not a power of two: two s-blocks
])
def test_scan_matches_float64_reference(B, L, M, S, init, prior, nc):
    _check(B, L, M, S, init=init, prior=prior, num_chunks=nc)


@pytest.mark.parametrize("B,L,M,S,init,prior,nc", [
    (2, 37, 5, 3, True, True, None),        # 4 whole 8-token blocks and a partial one, prior readout
    (1, 11, 3, 20, True, False, None),      # two s-blocks
    (1, 37, 3, 16, True, False, 4),         # time-chunked
])
def test_deferred_output_stores_match(B, L, M, S, init, prior, nc):
    """The forward's store schedules: the default (``fwd_defer=1``: y, y_var stored once per 8-token
    block) and ``fwd_defer=0`` (per token) both match the reference and each other bit for bit."""
    _check_same(B, L, M, S, {"fwd_defer": 0}, {"fwd_defer": 1}, init=init, prior=prior, num_chunks=nc)


@pytest.mark.parametrize("B,L,M,S,init,prior,nc,group", [
    (2, 1, 5, 7, False, False, None, 8),    # one token: a block with 7 masked tokens; 2 s-blocks
    (1, 3, 37, 6, True, True, None, 8),     # M = 37: two m-blocks, the second partial; S = 6: s-blocks 4 + 2
    (2, 13, 5, 7, True, False, 2, 8),       # two time chunks (8 + 5 tokens: a partial block in the last)
    (1, 64, 9, 5, False, True, 3, 2),       # three chunks of whole blocks, stores per 2 tokens
    (1, 13, 6, 3, True, False, None, 4),    # stores per 4 tokens, partial last block (5 of 8)
    (1, 13, 3, 20, True, True, None, 1),    # 5 s-blocks, stores per token from the tiles
])
def test_deferred_gradient_stores_match(B, L, M, S, init, prior, nc, group):
    """The backward's ``bwd_defer`` tuning option (dv, dLv, dk, dq of ``bwd_group`` tokens gathered in
    register tiles and stored together) gives every gradient within the bound of the float64
    reference and bit-identical to the per-token stores (``bwd_defer=0``)."""
    _check_same(B, L, M, S, {"bwd_defer": 1, "bwd_group": group}, {"bwd_defer": 0}, init=init,
                prior=prior, num_chunks=nc, seed=L + S)


def test_plan_store_schedules():
    """Defaults and parsing of the deferred-store tuning keys (host side only)."""
    kla = _kernels()
    from bayesfilt.errors import BayesfiltValueError
    v, k = torch.zeros(1, 9, 40), torch.zeros(1, 9, 6)
    plan = lambda tune, pass_: kla._scan_plan(v, k, tune, pass_)      # noqa: E731
    assert plan({}, "fwd").defer_y and not plan({"fwd_defer": 0}, "fwd").defer_y
    assert plan({}, "bwd").defer_g == 8 and plan({"bwd_defer": 0}, "bwd").defer_g == 0
    assert plan({"bwd_defer": 1, "bwd_group": 2}, "bwd").defer_g == 2
    assert plan({"bwd_defer": 1}, "fwd").defer_g == 0 and not plan({}, "bwd").defer_y
    with pytest.raises(BayesfiltValueError, match="bwd_group"):
        plan({"bwd_defer": 1, "bwd_group": 3}, "bwd")
    with pytest.raises(BayesfiltValueError, match="bwd_defer"):
        plan({"bwd_defer": 2}, "bwd")


def test_tune_keys_are_checked():
    """The private tuning dict is checked where it enters (host side): a misspelt key or a
    fractional value is refused naming it, known keys pass through unchanged."""
    kla = _kernels()
    from bayesfilt.errors import BayesfiltValueError
    assert kla._tune_str({"bwd_bm": 16, "num_chunks": 2.0}) == "bwd_bm=16,num_chunks=2"
    assert kla._tune_dict(kla._tune_str({"fwd_stages": 2})) == {"fwd_stages": 2}
    with pytest.raises(BayesfiltValueError, match="bwd_bms"):
        kla._tune_str({"bwd_bms": 16})
    with pytest.raises(BayesfiltValueError, match="fwd_sb"):
        kla._tune_str({"fwd_sb": 2.5})
    v, k, q = torch.rand(1, 3, 4) + 0.5, torch.rand(1, 3, 2), torch.rand(1, 3, 2)
    a, p = torch.full((4, 2), 0.9), torch.full((4, 2), 0.01)
    with pytest.raises(BayesfiltValueError, match="_tune"):
        kla.kla_scan_triton(v, v, k, q, a, p, _tune={"bwd_warp": 2})


def test_plan_warps():
    """The warps-per-program tuning keys (host side): default 1 in both passes, each pass reads its
    own key, anything but 1, 2 or 4 is refused naming the key."""
    kla = _kernels()
    from bayesfilt.errors import BayesfiltValueError
    v, k = torch.zeros(1, 9, 40), torch.zeros(1, 9, 6)
    plan = lambda tune, pass_: kla._scan_plan(v, k, tune, pass_)      # noqa: E731
    assert plan({}, "fwd").num_warps == 1 and plan({}, "bwd").num_warps == 1
    tune = {"fwd_warps": 2, "bwd_warps": 4}
    assert plan(tune, "fwd").num_warps == 2 and plan(tune, "bwd").num_warps == 4
    assert plan({"fwd_warps": 4}, "bwd").num_warps == 1 and plan({"bwd_warps": 2}, "fwd").num_warps == 1
    assert kla._consts(plan(tune, "bwd"))["num_warps"] == 4
    for key, bad in (("fwd_warps", 3), ("bwd_warps", 8), ("bwd_warps", 0)):
        with pytest.raises(BayesfiltValueError, match=key):
            plan({key: bad}, key[:3])


def test_backward_fake_blocks_match_the_plan():
    """The fake backward op's partial-sum shapes (_bwd_blocks) are the real plan's NSB, NMB."""
    from bayesfilt.nn.kernels import kla
    for B, L, M, S in ((8, 2048, 2048, 16), (1, 65536, 1024, 16), (2, 19, 40, 5), (3, 7, 33, 33), (1, 1, 1, 1)):
        v, k = torch.empty(1).expand(B, L, M), torch.empty(1).expand(B, L, S)
        for tune in ({}, {"bwd_sb": 8}, {"bwd_bm": 8}, {"bwd_bm": 32, "num_chunks": 2}, {"bwd_sb": 2, "bwd_warps": 2},
                     {"bwd_fold": 1}, {"bwd_fold": 1, "bwd_sb": 2, "num_chunks": 2}):
            plan = kla._scan_plan(v, k, tune, "bwd")
            assert kla._bwd_blocks(M, S, tune) == (plan.s_partials, plan.NMB), (B, L, M, S, tune)


def test_plan_stages():
    """The pipelining keys (host side): default 1 (the launches then pass no NSTAGES / BSTAGES, so the
    default kernels are unchanged), each pass reads its own key, anything but 1, 2 or 3 is refused."""
    kla = _kernels()
    from bayesfilt.errors import BayesfiltValueError
    v, k = torch.zeros(1, 9, 40), torch.zeros(1, 9, 6)
    plan = lambda tune, pass_: kla._scan_plan(v, k, tune, pass_)      # noqa: E731
    assert plan({}, "fwd").stages == 1 and plan({"fwd_stages": 3}, "fwd").stages == 3
    assert plan({"fwd_stages": 3}, "bwd").stages == 1 and plan({"bwd_stages": 2}, "bwd").stages == 2
    assert plan({"bwd_stages": 2}, "fwd").stages == 1
    for key in ("fwd_stages", "bwd_stages"):
        for bad in (0, 4):
            with pytest.raises(BayesfiltValueError, match=key):
                plan({key: bad}, key[:3])


def test_pipelined_forward_interpreted():
    """``fwd_stages`` / ``bwd_stages`` 2 and 3 run the token-block loops as ``tl.range(..., num_stages=N)``
    (the backward's last block peeled off the loop); under the interpreter the values equal the
    default's (the pipelining itself exists only in compiled code: its PTX copies the next blocks
    with cp.async, docs/kla_kernels.md, "Pipelined loads"; ``test_gpu_matrix_multi_warp`` checks the
    compiled kernels). L = 19, 27, 8: a partial last block, time chunks, a single block. The pipelined
    backward has neither ``bwd_rel`` nor ``bwd_alg`` (the defaults since session 13), so it is compared
    with session 12's backward (``BWD_S12``; ``bwd_alg`` rounds otherwise), and in the moment form
    (``bwd_mom``, which has no ``bwd_alg``) with the backward without ``bwd_rel``."""
    _check_same(2, 19, 5, 7, {"fwd_stages": 2, "bwd_stages": 2}, BWD_S12, init=True, prior=True)
    _check_same(1, 27, 3, 4, {"fwd_stages": 3, "bwd_stages": 3}, BWD_S12, init=False, prior=False, num_chunks=2)
    _check_same(1, 8, 3, 4, {"bwd_stages": 2}, BWD_S12, init=True, prior=False)
    _check_same(1, 27, 3, 4, {**MOM, "fwd_stages": 2, "bwd_stages": 2}, {**MOM, "bwd_rel": 0}, init=True, prior=True,
                num_chunks=2)


def test_multi_warp_launch_interpreted():
    """A tune with ``fwd_warps`` / ``bwd_warps`` runs through both passes and gives the one-warp
    values. Under the interpreter num_warps changes nothing, so this cannot show that the keys reach
    the launches: ``test_plan_warps`` checks the plans, ``test_gpu_matrix_multi_warp`` the compiled
    multi-warp kernels on a GPU."""
    _check_same(2, 11, 5, 7, {"fwd_warps": 2, "bwd_warps": 4}, {}, init=True, prior=True)


def test_narrow_m_tiles_interpreted():
    """``fwd_bm`` 16 / ``bwd_bm`` 8 (narrower lane tiles: fewer registers, more programs;
    docs/kla_kernels.md, "Narrower m-tiles"): M = 21 leaves a partial last m-block at both widths
    (with a partial last token block, 2 time chunks and the prior readout);
    every output and gradient within the bound of the float64 reference, and bit-identical to the
    32-channel tiles' under the interpreter (the forward's default and the backward's default until
    session 9, ``bwd_bm`` 32) except ∂k, ∂q (summed over m in m-blocks, so in another order: within a
    tenth of the bound). The backward's default 16-channel tile runs in every other test here."""
    from bayesfilt.nn.kernels.kla import _scan_plan
    v, k = torch.empty(2, 19, 21), torch.empty(2, 19, 4)
    assert _scan_plan(v, k, {"fwd_bm": 16}, "fwd").NMB == 2 and _scan_plan(v, k, {"bwd_bm": 8}, "bwd").NMB == 3
    assert _scan_plan(v, k, {"num_chunks": 2}, "fwd").BM == 32 and _scan_plan(v, k, {}, "bwd").BM == 16   # defaults
    assert _scan_plan(v, k, {}, "fwd").BM == 16          # unchunked (L = 19): the 16-channel build (session 11)
    _check_same(2, 19, 21, 4, {"fwd_bm": 16, "bwd_bm": 8}, {"bwd_bm": 32}, inexact=("grad_k", "grad_q"), init=True,
                prior=True, num_chunks=2)


#: the tuning keys that switch off what session 11 made the default (docs/kla_kernels.md, "Prefetch and
#: layout"): the prefetch hints, the backward's checkpoint one block ahead, the forward's 16-channel build
NO_PREFETCH = {"fwd_l2pf": 0, "bwd_l2pf": 0, "bwd_ckpf": 0, "fwd_bm": 32, "fwd_mspec": 1}


def test_prefetch_and_layout_interpreted():
    """The defaults since session 11: L2 prefetch hints for the k, q rows and the program's m-columns
    (``fwd_l2pf`` / ``bwd_l2pf``, ``*_pfrows``; no-ops under the interpreter, which has no inline PTX:
    their GPU cases are in ``test_gpu_matrix_multi_warp``), the backward's checkpoint loaded one block
    ahead (``bwd_ckpf``) and, when time is not chunked, the forward's 16-channel build without M's
    divisibility (``fwd_bm`` 16, ``fwd_mspec`` 0): the same operations in the same order as with all of
    them off, so bit-identical under the interpreter, and within the bound of the float64 reference.
    L = 27 in 2 chunks of 16 and 11 tokens: the checkpoint carried from block to block inside each
    chunk, the second chunk's blocks whole and partial; M = 21 a partial m-block; the prior readout.
    An explicit ``fwd_bm`` 16 keeps the specialised build (the tile is not chosen by the plan)."""
    from bayesfilt.nn.kernels.kla import _scan_plan, make_plan
    v, k = torch.empty(2, 19, 21), torch.empty(2, 19, 4)
    fwd, bwd = _scan_plan(v, k, {"num_chunks": 3}, "fwd"), _scan_plan(v, k, {}, "bwd")
    assert (fwd.l2pf, fwd.pfrows, fwd.ckpf, bwd.l2pf, bwd.pfrows, bwd.ckpf) == (2, True, False, 2, True, True)
    one = _scan_plan(v, k, {}, "fwd")                   # unchunked (L = 19): 16 channels, unspecialised
    assert (one.BM, one.mspec, one.NC) == (16, False, 1) and (fwd.BM, fwd.mspec) == (32, True)
    assert make_plan(8, 2048, 2048, 16, v.device, num_chunks=1).BM == 16
    assert _scan_plan(v, k, {"fwd_bm": 16}, "fwd").mspec                 # asked for: the specialised build
    staged = _scan_plan(v, k, {"bwd_stages": 2}, "bwd")                 # the pipelined loop: no prefetch
    assert (staged.l2pf, staged.ckpf) == (0, False)
    off = _scan_plan(v, k, NO_PREFETCH, "bwd")
    assert (off.l2pf, off.ckpf) == (0, False)
    with pytest.raises(ValueError, match="bwd_l2pf"):
        _scan_plan(v, k, {"bwd_l2pf": 3}, "bwd")
    with pytest.raises(ValueError, match="fwd_mspec"):
        _scan_plan(v, k, {"fwd_mspec": 2}, "fwd")
    _check_same(2, 27, 21, 4, {"num_chunks": 2}, {**NO_PREFETCH, "num_chunks": 2}, init=True, prior=True)
    _check_same(1, 19, 21, 4, {"num_chunks": 1}, {**NO_PREFETCH, "num_chunks": 1}, init=False, prior=False)


#: the backward as built before bwd_rel and bwd_alg became the defaults (session 13) and bwd_mom (session 14)
BWD_S12 = {"bwd_rel": 0, "bwd_alg": 0, "bwd_mom": 0}
#: the information-form adjoint (the default before session 14): the keys bwd_rel, bwd_alg act on it
INFO = {"bwd_mom": 0}


def test_block_relative_backward_loads_interpreted():
    """``bwd_rel`` 1: the backward addresses each 8-token block's input rows once and a token's lanes
    from there, compiled for the call's M and S (constexprs MC, SC), without lane masks where the
    16 x 4 tile divides M and S (docs/kla_kernels.md, "Instruction counts"). Only addresses and masks
    change, so every output and gradient is bit-identical to the default's under the interpreter and
    within the bound of the float64 reference. M = 21: a partial m-block (masks kept); M = 32, S = 4:
    the tile divides both (no masks), with a partial last token block, time chunks and the prior readout."""
    from bayesfilt.nn.kernels.kla import _scan_plan
    v, k = torch.empty(2, 19, 21), torch.empty(2, 19, 4)
    assert not _scan_plan(v, k, {"bwd_rel": 0}, "bwd").rel and _scan_plan(v, k, {"bwd_rel": 1}, "bwd").rel
    assert not _scan_plan(v, k, {"bwd_rel": 1}, "fwd").rel
    with pytest.raises(ValueError, match="bwd_rel"):
        _scan_plan(v, k, {"bwd_rel": 2}, "bwd")
    _check_same(2, 27, 21, 4, {**INFO, "bwd_rel": 1, "bwd_alg": 0}, BWD_S12, init=True, prior=True, num_chunks=2)
    _check_same(1, 19, 32, 4, {**INFO, "bwd_rel": 1, "bwd_alg": 0}, BWD_S12, init=False, prior=False)


def test_shorter_backward_arithmetic_interpreted():
    """``bwd_alg`` 1: the backward's recompute rounds phi = Lv (k k) as its adjoint step does (so the
    compiler shares lam_t between them) and the posterior readout's adjoint is factored through
    g_yvar w and q w (docs/kla_kernels.md, "Instruction counts"): the same formulas in another
    order, so the gradients are within the bound of the float64 reference and within a tenth of it of
    the default's, not bit-identical; the forward's outputs are. With ``bwd_rel`` too (the combination
    to time), a partial m-block, time chunks, a partial last block; the prior readout keeps its own
    adjoint (``bwd_alg`` changes only the recompute there)."""
    from bayesfilt.nn.kernels.kla import _scan_plan
    v, k = torch.empty(2, 19, 21), torch.empty(2, 19, 4)
    assert not _scan_plan(v, k, {"bwd_alg": 0}, "bwd").alg and _scan_plan(v, k, {"bwd_alg": 1}, "bwd").alg
    grads = tuple("grad_" + n for n in NAMES)
    _check_same(2, 27, 21, 4, {**INFO, "bwd_alg": 1, "bwd_rel": 1}, BWD_S12, inexact=grads, init=True, prior=False,
                num_chunks=2)
    _check_same(1, 19, 32, 4, {**INFO, "bwd_alg": 1, "bwd_rel": 0}, BWD_S12, inexact=grads, init=True, prior=True)


#: the backward's adjoint in moment form (tune key bwd_mom)
MOM = {"bwd_mom": 1}


def test_moment_form_adjoint_interpreted():
    """``bwd_mom`` 1: the backward recomputes and differentiates the covariance form (w, mu) instead of the
    information form (docs/math/kla.md, "The adjoint in moment form"): other formulas, so every gradient
    is compared with the float64 reference (within its bound), here with gradients reaching the final
    state too (its adjoint is converted to (w_L, mu_L) before the kernels, and the initial state's
    back to (lam_0, eta_0) after them). Block-relative loads and the default stores, time chunks (the
    chunk summaries of the moment-form adjoint), the prior readout, a partial m-block and last block,
    L = 1, per-token stores without block-relative loads, the pipelined loop; the forward is unchanged."""
    from bayesfilt.nn.kernels.kla import _scan_plan
    v, k = torch.empty(2, 19, 21), torch.empty(2, 19, 4)
    assert _scan_plan(v, k, MOM, "bwd").mom and not _scan_plan(v, k, MOM, "fwd").mom
    assert _scan_plan(v, k, {**MOM, "bwd_stages": 2}, "bwd").mom      # the pipelined loop has it too
    with pytest.raises(ValueError, match="bwd_mom"):
        _scan_plan(v, k, {"bwd_mom": 2}, "bwd")
    _check(2, 27, 21, 4, init=True, prior=True, num_chunks=2, tune=MOM)
    _check(1, 19, 32, 4, init=False, prior=False, tune=MOM)
    _check(2, 45, 5, 3, init=True, prior=False, num_chunks=3, tune=MOM)
    _check(2, 1, 5, 3, init=True, prior=True, tune=MOM)
    _check(1, 19, 21, 4, init=True, prior=False, tune={**MOM, "bwd_rel": 0, "bwd_defer": 0})
    _check(1, 27, 21, 4, init=True, prior=True, num_chunks=2, tune={**MOM, "bwd_stages": 2})
    _check_variance_off(2, 27, 21, 4, True, False, 2, MOM)
    _check_variance_off(1, 19, 5, 3, True, True, None, MOM)


def test_scan_backward_compiles_for_sm90():
    """The interpreter does not type-check as the compiler does: the backward kernel compiled for sm_90
    on the CPU in both forms of the adjoint, with the defaults' constexprs (block-relative loads, shared
    lam_t, prefetch, the checkpoint a block ahead, grouped stores), the chunk summaries (MODE 1), the
    prior readout and the variance off."""
    from conftest import compile_for_sm90
    base = {"SB": 4, "BM": 16, "FAST": True, "DEFER_G": 8, "BSTAGES": 1, "CKPF": True, "L2PF": 2, "PFROWS": 4,
            "REL": True, "MC": 2048, "SC": 16, "ALG": True, "VAR": True, "MOM": False, "PRIOR": False, "MODE": 0,
            "FOLD": False}
    compile_for_sm90("bayesfilt.nn.kernels._kla_triton",
                     [("_bwd_kernel", base),
                      ("_bwd_kernel", {**base, "MOM": True}),
                      ("_bwd_kernel", {**base, "MOM": True, "MODE": 1, "PRIOR": True, "VAR": False}),
                      ("_bwd_kernel", {**base, "FOLD": True})])


def test_scan_forward_compiles_for_sm90():
    """The forward compiled for sm_90 on the CPU (the interpreter does not type-check as the compiler does):
    the time-chunked plan's joint chunk maps (MODE 3: ``_pow2_inv``'s bit casts) and the sweep that applies
    them (MODE 0 with JOINT), the two-sweep maps (MODE 1, 2), and the unchunked default (MODE 0)."""
    from conftest import compile_for_sm90
    base = {"SB": 16, "BM": 32, "CK": 8, "FAST": True, "DEFER_Y": True, "L2PF": 2, "PFROWS": 2, "PRIOR": False,
            "WRITE_CK": True, "MODE": 0, "NSTAGES": 1, "VAR": True, "JOINT": False}
    compile_for_sm90("bayesfilt.nn.kernels._kla_triton",
                     [("_fwd_kernel", {**base, "MODE": 3}), ("_fwd_kernel", {**base, "JOINT": True}),
                      ("_fwd_kernel", {**base, "MODE": 1}), ("_fwd_kernel", {**base, "MODE": 2}),
                      ("_fwd_kernel_any_m", {**base, "BM": 16})])


def test_kla_scan_adjoint_argument_interpreted():
    """``kla_scan(..., adjoint="moment")`` runs the Triton backward in moment form (p = 0, a well below 1:
    finite gradients within the bound of the float64 reference); a bad value is refused by name; the layer
    without process noise asks for the moment form, the layer with it for the information form."""
    from bayesfilt.errors import BayesfiltError
    from bayesfilt.nn import KLAConfig, KLALayer
    from bayesfilt.nn.functional import kla_scan
    _kernels()
    xs = _inputs(1, 64, 5, 4, seed=3, a_range=(0.05, 0.3), p_range=(0.0, 0.0))
    w = torch.randn(1, 64, 5, generator=torch.Generator().manual_seed(4), dtype=torch.float64).to(DEV)
    xr = [x.detach().double().requires_grad_() for x in xs]
    (kla_scan_reference(*xr)[0] * w).sum().backward()
    xt = [x.detach().float().requires_grad_() for x in xs]
    y, _, _ = kla_scan(*xt[:6], initial_state=(xt[6], xt[7]), backend="triton", adjoint="moment", validate=False)
    (y * w.float()).sum().backward()
    for name, a, b in zip(NAMES, xt, xr):
        assert torch.isfinite(a.grad).all() and _rel(a.grad, b.grad) <= RTOL, name
    with pytest.raises(BayesfiltError, match="adjoint"):
        kla_scan(*xt[:6], backend="triton", adjoint="covariance")
    assert KLALayer(8, KLAConfig(d_state=4, process_noise=False))._adjoint == "moment"
    assert KLALayer(8, KLAConfig(d_state=4))._adjoint == "information"


def test_adjoint_form_is_fixed_at_the_forward_interpreted(monkeypatch):
    """The backward's plan (``_plan_for``) and the autograd function's conversion of the final state's
    adjoint (``_moment_adjoint``) must agree on the form, also when ``_BWD_MOM`` changes between calls
    (benchmarks/kla_layer.py's ROW_DEFAULTS does, clearing only the plan cache): a disagreement feeds
    (dL/dlam_L, dL/deta_L) unconverted to the moment-form kernels, a silently wrong gradient (review 14:
    50-100% off). The same inputs with the default flipped must give the gradients of that form."""
    kla = _kernels()

    def grads():
        xs = [x.detach().float().requires_grad_() for x in _inputs(1, 16, 4, 3, seed=5)]
        y, _, lam, eta = kla.kla_scan_triton(*xs[:6], initial_state=(xs[6], xs[7]))
        (y.sum() + lam.mean() + eta.sum()).backward()
        return [x.grad for x in xs]

    monkeypatch.setattr(kla, "_BWD_MOM", 0)
    g_info = grads()                                    # (a decision for the default tune string, made once)
    monkeypatch.setattr(kla, "_BWD_MOM", 1)
    kla._plan_cached.cache_clear()
    g_mom = grads()
    kla._plan_cached.cache_clear()
    for name, a, b in zip(NAMES, g_mom, g_info):
        assert _rel(a, b) <= RTOL, name                 # the same gradient, in the other form


def test_moment_form_final_state_gradient_saturated_interpreted():
    """p = 0, a in (0.3, 0.4), L = 70: every lane of the final state saturates (lam_L = LAM_MAX, eta_L =
    mu_L LAM_MAX). A loss on lam_L and eta_L through the moment-form adjoint: ``_final_adjoint_moments``
    gives dL/dw_L = 0 there (lam_L does not depend on w_L), as autograd of the float32 reference (which
    clamps the variance at 1/LAM_MAX); without that branch dL/dp comes out ~1e29 times too large."""
    from bayesfilt.nn.reference import LAM_MAX
    kla = _kernels()
    xs = _inputs(1, 70, 3, 4, seed=7, a_range=(0.3, 0.4), p_range=(0.0, 0.0))
    g = torch.Generator().manual_seed(1)
    w = [torch.randn(*shape, generator=g).to(DEV) for shape in ((1, 70, 3), (1, 3, 4), (1, 3, 4))]

    def loss(y, lam, eta):
        return (y * w[0]).sum() + 1e-30 * ((lam * w[1]).sum() + (eta * w[2]).sum())

    xr = [x.detach().float().requires_grad_() for x in xs]
    y, _, lam, eta = kla_scan_reference(*xr)
    assert bool((lam >= 0.5 * LAM_MAX[torch.float32]).all())
    loss(y, lam, eta).backward()
    xt = [x.detach().float().requires_grad_() for x in xs]
    y, _, lam, eta = kla.kla_scan_triton(*xt[:6], initial_state=(xt[6], xt[7]), _tune=MOM)
    loss(y, lam, eta).backward()
    errs = {n: _rel(a.grad, b.grad) for n, a, b in zip(NAMES, xt, xr)}
    assert all(e <= RTOL for e in errs.values()), errs


def test_filter_readout_without_process_noise_has_finite_gradients_interpreted():
    """``KLALayer.filter_readout`` without process noise on the Triton kernels: its scan asks for the
    moment-form adjoint as ``forward`` does (the information form's overflows to NaN at p = 0, a < 1)."""
    from bayesfilt.nn import KLAConfig, KLALayer
    _kernels()
    torch.manual_seed(0)
    layer = KLALayer(8, KLAConfig(d_state=4, process_noise=False, a_init="constant", a_init_value=2.0,
                                  backend="triton")).to(DEV)
    with torch.no_grad():
        layer.log_dt.fill_(0.0)                          # a = exp(-2): lam_t ~ a^(-2t) overflows after ~22 tokens
    y, y_var = layer.filter_readout(torch.randn(1, 40, 8).to(DEV))
    (y.sum() + y_var.sum()).backward()
    bad = [n for n, p in layer.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert torch.isfinite(y).all() and not bad, bad


def _p0_gradients(B, L, M, S, *, prior, num_chunks=None, tune=None, a_range=(0.05, 0.3), seed=11, ref=None,
                  lam0=None):
    """p = 0 with a well below 1 (lam_t ~ a^(-2t) leaves float32's range within 30-80 tokens): the
    gradients of a loss on y and y_var (none reaches the final state, which saturates) through the
    Triton backward, against the float64 ``ref`` (default: autograd of the sequential reference).
    ``lam0``: an initial precision of that value in every lane (eta_0 of order 1)."""
    xs = _inputs(B, L, M, S, seed=seed, a_range=a_range, p_range=(0.0, 0.0))
    if lam0 is not None:
        xs[6] = torch.full_like(xs[6], lam0)
    g = torch.Generator().manual_seed(seed + 1)
    w = [torch.randn(B, L, M, generator=g, dtype=torch.float64).to(DEV) for _ in range(2)]
    if ref is None:
        xr = [x.detach().double().requires_grad_() for x in xs]
        out = kla_scan_reference(*xr, prior_readout=prior)
        sum((o * wi).sum() for o, wi in zip(out[:2], w)).backward()
        g_r = [x.grad for x in xr]
    else:
        g_r = ref(xs, prior, w)
    kla = _kernels()
    xt = [x.detach().float().requires_grad_() for x in xs]
    out = kla.kla_scan_triton(*xt[:6], initial_state=(xt[6], xt[7]), prior_readout=prior,
                              _num_chunks=num_chunks, _tune=tune, _poison=True)
    sum((o * wi.float()).sum() for o, wi in zip(out[:2], w)).backward()
    errs = {}
    for name, a, b in zip(NAMES, [x.grad for x in xt], g_r):
        assert torch.isfinite(b).all(), f"reference grad {name} non-finite"
        assert torch.isfinite(a).all(), f"grad {name}: non-finite"
        errs[name] = _rel(a, b)
    bad = {k: v for k, v in errs.items() if not v <= RTOL}
    assert not bad, f"rel RMS over {RTOL}: {bad} (all: {errs})"


def test_moment_form_adjoint_p0_interpreted():
    """p = 0, a in (0.05, 0.3): the information form's lam_t passes float32's range within ~30 tokens;
    its adjoint (``bwd_mom`` 0) gives NaN gradients here, while the forward, which runs the covariance
    form, stays finite. The moment-form adjoint's factors are bounded: every gradient finite and within
    the bound of the float64 reference, also across time chunks (their summaries) and with the prior
    readout, where the gradient of p, 0 in the forward, is exact."""
    _p0_gradients(1, 200, 5, 4, prior=False, tune=MOM)
    _p0_gradients(2, 131, 5, 3, prior=True, num_chunks=3, tune=MOM)
    _p0_gradients(1, 64, 21, 4, prior=False, num_chunks=2, tune={**MOM, "bwd_stages": 2}, a_range=(0.5, 0.9))


def test_weak_prior_with_a_large_mean_interpreted():
    """An initial state lam_0 = 1e-8 with eta_0 of order 1: a prior mean of order 1e8 that the first token
    overrides (g_1 ~ 1e-8). The kernels' innovation form a mu + w_t (u_t - phi_t a mu) cancels there; with an
    initial state they switch to g_t a mu + w_t u_t where g_t < 1/2 (docs/math/kla.md §7, "Weak priors in the
    Triton kernels"). Before (d3a6f3c, interpreter): y 1.7e-2 off after one token, the moment-form gradients up to
    0.35 off (benchmarks/kla_weak_prior.py). Both adjoint forms, one token and several, p = 0 (moment form only:
    the information form's adjoint overflows there) and p > 0, the prior readout, time chunks (the joint chunk
    maps carry the start state), and the moment-form backward's pipelined loop and s-block fold (which carry
    token 1's adjoint for dlam_0 their own way)."""
    for tune in (INFO, MOM):
        _check(2, 1, 5, 3, init=True, prior=False, lam0=1e-8, tune=tune)
        _check(2, 9, 5, 3, init=True, prior=True, lam0=1e-8, tune=tune)
        _check(1, 27, 21, 4, init=True, prior=False, num_chunks=2, lam0=1e-8, tune=tune)
    _check(2, 9, 5, 3, init=True, prior=False, lam0=1e-8, tune=MOM, p_range=(0.0, 0.0))
    _check(1, 20, 5, 3, init=True, prior=True, lam0=1e-8, tune=MOM, p_range=(0.0, 0.0), num_chunks=2)
    _check(2, 1, 5, 3, init=True, prior=False, lam0=1e-8, tune={**MOM, "bwd_stages": 2})
    _check(1, 20, 5, 3, init=True, prior=True, lam0=1e-8, tune={**MOM, "bwd_stages": 2}, num_chunks=2)
    _check(1, 13, 21, 20, init=True, prior=False, lam0=1e-8, tune={**MOM, "bwd_fold": 1})
    # the switch is kla_scan_triton's default exactly when an initial state is given (tune key mean_switch);
    # forced off, the innovation form alone is what the kernels computed before
    from bayesfilt.nn.kernels.kla import _scan_plan
    v, k = torch.empty(2, 19, 21), torch.empty(2, 19, 4)
    assert not _scan_plan(v, k, {}, "fwd").mean and _scan_plan(v, k, {"mean_switch": 1}, "bwd").mean
    with pytest.raises(ValueError, match="mean_switch"):
        _scan_plan(v, k, {"mean_switch": 2}, "fwd")
    with pytest.raises(AssertionError, match="rel RMS over"):
        _check(2, 1, 5, 3, init=True, prior=False, lam0=1e-8, tune={"mean_switch": 0})


def _library_moment_adjoint(xs, prior, w):
    """float64 gradients of sum(w0 y + w1 y_var) by the library's moment-form adjoint
    (``diagonal_filter_adjoint_moments_loop``; checked against 50-digit derivatives in
    tests/test_kla_moment_adjoint.py), where autograd of the reference cancels (d/dlam_0 after lam_0 << 1e-8)."""
    from bayesfilt.scan.diagonal import diagonal_filter_adjoint_moments_loop
    x64 = [x.detach().double().cpu() for x in xs]
    return [g.to(DEV) for g in diagonal_filter_adjoint_moments_loop(*x64, w[0].cpu(), w[1].cpu(), prior_readout=prior)]


def test_very_weak_prior_moment_form_interpreted():
    """lam_0 = 1e-25: g_1 ~ 1e-25, so g_1^2 underflows float32 (the adjoint forms g (g X)), and float64
    autograd's own d/dlam_0 has no digits left; the reference is the library's float64 moment-form adjoint.
    Every gradient of a loss on y and y_var (p = 0, the moment form) within the bound, with time chunks."""
    _p0_gradients(2, 9, 5, 3, prior=False, tune=MOM, a_range=(0.5, 1.0), lam0=1e-25, ref=_library_moment_adjoint)
    _p0_gradients(1, 27, 21, 4, prior=True, num_chunks=2, tune=MOM, a_range=(0.5, 1.0), lam0=1e-25,
                  ref=_library_moment_adjoint)


def test_both_passes_take_the_forward_chunk_count(monkeypatch):
    """Without ``num_chunks`` the backward is cut into as many time chunks as the forward (its own
    narrower tile would leave B=1, L=65536, M=1024 unchunked on the H200's 132 multiprocessors:
    256 programs); with it, both obey it."""
    from bayesfilt.nn.kernels import kla
    monkeypatch.setattr(kla, "_sm_count", lambda device: 132)
    v, k = torch.empty(1).expand(1, 65536, 1024), torch.empty(1).expand(1, 65536, 16)
    fwd, bwd = kla._scan_plan(v, k, {}, "fwd"), kla._scan_plan(v, k, {}, "bwd")
    max_sb, bm = kla._bwd_tile(16, {})
    own = kla.make_plan(1, 65536, 1024, 16, v.device, max_sb=max_sb, bm=bm)
    assert fwd.NC > 1 and bwd.NC == fwd.NC and own.NC == 1
    assert kla._scan_plan(v, k, {"num_chunks": 3}, "bwd").NC == 3


def test_joint_chunk_maps_interpreted():
    """fwd_joint (the default): a time-chunked forward whose chunk maps of (w, mu) come from one sweep in
    homogeneous coordinates (MODE 3) gives the float64 reference's outputs and gradients, as the two-sweep
    maps do (MODE 1, 2; fwd_joint 0): several chunks with a partial last block (only the last chunk has
    one, and its map is never read), the prior readout, S above 16 (two s-blocks),
    without and with an initial state, the extremes of test_extreme_inputs_small (a = 1 with p = 0
    and large value precisions, where the two-sweep maps carry the slope of mu as 1 - A), and chunks
    whose unscaled map would overflow."""
    from bayesfilt.nn.kernels.kla import _scan_plan
    v, k = torch.empty(1).expand(1, 4096, 64), torch.empty(1).expand(1, 4096, 16)
    assert _scan_plan(v, k, {"num_chunks": 3}, "fwd").joint
    assert not _scan_plan(v, k, {"num_chunks": 3, "fwd_joint": 0}, "fwd").joint
    assert not _scan_plan(v, k, {"num_chunks": 3}, "bwd").joint
    J = {"fwd_joint": 1}
    _check(2, 37, 5, 3, init=True, prior=False, num_chunks=3, tune=J)          # with gradients
    _check(2, 37, 5, 3, init=True, prior=False, num_chunks=3, tune={"fwd_joint": 0})
    for B, L, M, S, init, prior, nc, kw in ((1, 45, 3, 16, True, True, 4, {}), (1, 27, 3, 20, False, False, 2, {}),
                                           (1, 40, 3, 3, True, False, 4, dict(a_range=(1.0, 1.0), p_range=(0.0, 0.0),
                                                                               lv_scale=(1e3, 1e4))),
                                           (1, 40, 3, 3, True, False, 4, dict(a_range=(1e-3, 2e-3),
                                                                               p_range=(1e-3, 1e-2))),
                                           # 1 + phi p ~ 1e3 per token: a chunk of 24 tokens overflows
                                           # float32 unless the map is rescaled as it is composed
                                           (1, 40, 3, 3, True, False, 2, dict(p_range=(0.3, 0.5),
                                                                               lv_scale=(1e3, 1e4)))):
        _check(B, L, M, S, init=init, prior=prior, num_chunks=nc, tune=J, grads=False, **kw)


def test_backward_fold_interpreted():
    """bwd_fold: the backward's programs sweep their s-blocks in turn and add dv, dLv up in the kernel (one
    [B, L, M] tensor each, no partial sums for the caller): the float64 reference's gradients and the unfolded
    backward's (dv, dLv summed in another order: to rounding; the rest bit for bit), with 4 and 5 s-blocks (a
    partial last one: the 4 x 16 tile), time chunks, the prior readout, per-token stores and the moment-form
    adjoint, and with the default 8 x 8 tile's 2 s-blocks."""
    from bayesfilt.nn.kernels.kla import _scan_plan
    v, k = torch.empty(1).expand(2, 64, 48), torch.empty(1).expand(2, 64, 16)
    T4 = {"bwd_sb": 4, "bwd_bm": 16}
    plain, folded = _scan_plan(v, k, T4, "bwd"), _scan_plan(v, k, {**T4, "bwd_fold": 1}, "bwd")
    assert folded.fold and not plain.fold and folded.s_partials == 1 and plain.s_partials == plain.NSB == 4
    assert folded.grid[0] * plain.NSB == plain.grid[0]
    F = {**T4, "bwd_fold": 1}
    sums = ("grad_v", "grad_lambda_v")
    _check_same(1, 27, 5, 16, F, T4, inexact=sums, init=True, prior=True, num_chunks=2)
    _check_same(1, 19, 5, 20, F, T4, inexact=sums, init=False, prior=False)
    _check_same(1, 19, 5, 16, {**F, "bwd_defer": 0}, {**T4, "bwd_defer": 0}, inexact=sums, init=True, prior=False)
    _check_same(1, 19, 5, 16, {**F, "bwd_mom": 1}, {**T4, "bwd_mom": 1}, inexact=sums, init=True, prior=False)
    _check_same(1, 19, 5, 16, {"bwd_fold": 1}, {}, inexact=sums, init=True, prior=False)


def test_backward_tile_8x8_interpreted():
    """The backward's 8 x 8 tile (the default for S >= 8 since session 19: 2 s-block partial sums of dv, dLv
    instead of 4, twice the m-block partial sums of dk, dq; docs/kla_kernels.md, "The backward's 8 x 8 tile")
    against the float64 reference and the 4 x 16 tile, with partial last s- and m-blocks (S = 12, M = 21) and
    the prior readout."""
    sums = ("grad_v", "grad_lambda_v", "grad_k", "grad_q")
    _check_same(1, 19, 21, 12, {}, {"bwd_sb": 4, "bwd_bm": 16}, inexact=sums, init=True, prior=True)


def test_backward_default_tile():
    """The backward's default lane tile: 8 x 8 when S >= 8, 4 x 16 below (S = 5..7 in two 4-lane s-blocks, as
    before session 19); explicit ``bwd_sb`` / ``bwd_bm`` keys win, and ``bwd_sb`` 4 alone gives the 4 x 16 tile."""
    from bayesfilt.nn.kernels import kla
    tile = lambda M, S, tune: (lambda p: (p.SB, p.BM, p.NSB))(          # noqa: E731
        kla._scan_plan(torch.empty(1).expand(8, 64, M), torch.empty(1).expand(8, 64, S), tune, "bwd"))
    assert tile(64, 16, {}) == (8, 8, 2) and tile(64, 33, {}) == (8, 8, 5) and tile(64, 8, {}) == (8, 8, 1)
    assert tile(64, 7, {}) == (4, 16, 2) and tile(64, 4, {}) == (4, 16, 1) and tile(64, 1, {}) == (1, 16, 1)
    assert tile(64, 16, {"bwd_sb": 4}) == (4, 16, 4) and tile(64, 16, {"bwd_bm": 16}) == (8, 16, 2)
    assert tile(64, 7, {"bwd_sb": 8}) == (8, 8, 1) and tile(64, 16, {"bwd_sb": 16}) == (16, 8, 1)


def test_extreme_inputs_small():
    """a near 0 and 1, p = 0, very large and very small value precisions.

    (a near 0 with p = 0 makes lam grow like a^(-2t): past float32's range in ~7 steps for
    any float32 implementation, so a near 0 is tested with a small p > 0.)"""
    _check(1, 37, 4, 3, init=True, prior=False, a_range=(1e-3, 2e-3), p_range=(1e-3, 1e-2))
    _check(1, 37, 4, 3, init=True, prior=False, a_range=(1.0, 1.0), p_range=(0.0, 0.0),
           lv_scale=(1e3, 1e4))
    _check(1, 37, 4, 3, init=False, prior=True, a_range=(0.99, 1.0), lv_scale=(1e-4, 1e-3))


def test_p0_final_state_saturates_interpreted():
    """p = 0 with a in (0.3, 0.4): lam_t ~ a^(-2t) leaves float32's range after ~40 tokens. The
    scan's final state is saturated at LAM_MAX = 1e30 (it was 1 / w = inf, so a decode step from it
    gave NaN), and decoding from it continues finite, like the float64 reference."""
    from bayesfilt.nn.reference import LAM_MAX
    kla = _kernels()
    xs = _inputs(1, 70, 3, 4, seed=7, a_range=(0.3, 0.4), p_range=(0.0, 0.0))
    y, y_var, lam, eta = kla.kla_scan_triton(*[x.float() for x in xs[:6]], initial_state=(xs[6].float(), xs[7].float()))
    assert torch.isfinite(y).all() and torch.isfinite(lam).all() and torch.isfinite(eta).all()
    assert float(lam.max()) <= LAM_MAX[torch.float32] * 1.0001
    nxt = _inputs(1, 1, 3, 4, seed=8)[:4]
    y1, yv1, lam1, eta1 = kla.kla_step_triton(*[x[:, 0].float() for x in nxt], xs[4].float(), xs[5].float(), lam, eta)
    assert torch.isfinite(y1).all() and torch.isfinite(yv1).all() and torch.isfinite(lam1).all()
    assert float(lam1.max()) <= LAM_MAX[torch.float32] * 1.0001             # the step saturates too
    ref = kla_scan_reference(*[torch.cat([a, b], 1).double() for a, b in zip(xs[:4], nxt)], *xs[4:])
    assert float((y1.double() - ref[0][:, -1]).abs().max()) < 1e-4
    # a decay below ~5e-5: lam / a^2 from a saturated state overflowed inside the step (NaN state)
    tiny = torch.full_like(xs[4], 1e-5).float()
    y2, yv2, lam2, eta2 = kla.kla_step_triton(*[x[:, 0].float() for x in nxt], tiny, xs[5].float(), lam, eta)
    assert all(torch.isfinite(t).all() for t in (y2, yv2, lam2, eta2))
    lam_r, eta_r = torch.full_like(lam, 1e30).double(), (eta / lam).double() * 1e30
    ref2 = kla_scan_reference(*[x.double() for x in nxt], tiny.double(), xs[5], lam_r, eta_r)
    assert float((y2.double() - ref2[0][:, -1]).abs().max()) < 1e-4


def test_bf16_inputs_float32_state():
    """bf16 inputs: outputs float32 and as accurate as for the same inputs in float32."""
    xs = [x.to(torch.bfloat16).double() for x in _inputs(1, 19, 4, 16, seed=3)]
    out_r, _ = _reference(xs, False, with_grad=False)
    out_t, _ = _triton(xs, False, True, dtype=torch.bfloat16)
    for a, b in zip(out_t, out_r):
        assert a.dtype == torch.float32
        assert _rel(a, b) <= RTOL
    w = [torch.randn_like(o) for o in out_r]
    _, gt = _triton(xs, False, True, weights=w, dtype=torch.bfloat16)
    assert all(gi.dtype == torch.bfloat16 and torch.isfinite(gi).all() for gi in gt[:6])


@pytest.mark.parametrize("prior", [False, True])
def test_decode_step_matches_reference(prior):
    kla = _kernels()
    B, M, S = 2, 11, 5
    xs = _inputs(B, 1, M, S, seed=4)
    step_args = [xs[0][:, 0], xs[1][:, 0], xs[2][:, 0], xs[3][:, 0], xs[4], xs[5], xs[6], xs[7]]
    ref = kla_step_reference(*step_args, prior_readout=prior)
    out = kla.kla_step_triton(*[x.float() for x in step_args], prior_readout=prior, _poison=True)
    for a, b in zip(out, ref):
        assert a.shape == b.shape and torch.isfinite(a).all()
        assert _rel(a, b) <= RTOL
    # with gradients it runs through the scan's autograd node (L = 1)
    xt = [x.float().requires_grad_() for x in step_args]
    out = kla.kla_step_triton(*xt, prior_readout=prior)
    sum(o.sum() for o in out).backward()
    xr = [x.clone().requires_grad_() for x in step_args]
    sum(o.sum() for o in kla_step_reference(*xr, prior_readout=prior)).backward()
    for a, b in zip(xt, xr):
        assert _rel(a.grad, b.grad) <= RTOL


def test_gradients_deterministic():
    """Two backward passes give bit-identical gradients (no atomics in the reductions)."""
    xs = _inputs(1, 21, 9, 16, seed=5)
    w = [torch.randn(1, 21, 9, device=DEV), torch.randn(1, 21, 9, device=DEV),
         torch.randn(1, 9, 16, device=DEV), torch.randn(1, 9, 16, device=DEV)]
    _, g1 = _triton(xs, False, True, weights=w, num_chunks=2)
    _, g2 = _triton(xs, False, True, weights=w, num_chunks=2)
    for a, b in zip(g1, g2):
        assert torch.equal(a, b)


def test_plan_chunks_cover_time():
    kla = _kernels()
    for L in (1, 7, 8, 37, 1000, 65536):
        for nc in (None, 1, 3, 64):
            p = kla.make_plan(1, L, 1024, 16, torch.device("cpu"), num_chunks=nc)
            assert p.LC % kla.CHECKPOINT_EVERY == 0 and p.NC * p.LC >= L > (p.NC - 1) * p.LC


def _assert_compiled_matches_eager(loss_fn, xs):
    """torch.compile(loss_fn, fullgraph=True) (inductor with CUDA, else aot_eager) reproduces the eager
    loss and its gradients with respect to every tensor of xs; returns the eager (loss, gradients)."""
    leaves = [x.clone().requires_grad_() for x in xs]
    ref = loss_fn(*leaves)
    g_ref = torch.autograd.grad(ref, leaves)
    compiled = torch.compile(loss_fn, fullgraph=True, backend="inductor" if HAS_CUDA else "aot_eager")
    out = compiled(*leaves)
    g_out = torch.autograd.grad(out, leaves)
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=0)
    for a, b in zip(g_out, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    return ref, g_ref


def test_torch_compile_and_cuda_graph():
    """The scan is one opaque pair of custom ops: torch.compile(fullgraph=True) traces it with no
    graph break and reproduces the eager loss and gradients; with CUDA, one CUDA graph captures
    forward and backward and its replay reproduces them too."""
    kla = _kernels()
    xs = [x.float() for x in _inputs(2, 19, 8, 5, seed=11)]

    def loss_fn(*a):
        y, yv, lam, eta = kla.kla_scan_triton(*a[:6], initial_state=(a[6], a[7]))
        return (y * y).sum() + yv.sum() + (lam * a[6]).sum() + eta.sum()

    # fake (meta) kernels agree with the real ones on shapes, dtypes and strides
    ops = torch.ops.bayesfilt
    fwd_args = (*xs, False, True, "", False)
    torch.library.opcheck(ops.kla_scan_triton, fwd_args, test_utils=("test_schema", "test_faketensor"))
    ck = ops.kla_scan_triton(*fwd_args)[4]
    g = [torch.randn(2, 19, 8, device=DEV), torch.randn(2, 19, 8, device=DEV), torch.randn(2, 8, 5, device=DEV),
         torch.randn(2, 8, 5, device=DEV)]
    torch.library.opcheck(ops.kla_scan_triton_backward, (*xs[:6], ck, *g, False, "", False),
                          test_utils=("test_schema", "test_faketensor"))
    ref, g_ref = _assert_compiled_matches_eager(loss_fn, xs)
    if HAS_CUDA:
        static = [x.clone().requires_grad_() for x in xs]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):                   # warm-up outside the capture
            for _ in range(2):
                torch.autograd.grad(loss_fn(*static), static)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            loss = loss_fn(*static)
            grads = torch.autograd.grad(loss, static)
        graph.replay()
        torch.cuda.synchronize()
        torch.testing.assert_close(loss, ref, rtol=1e-6, atol=0)
        for a, b in zip(grads, g_ref):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def _variance_pair(B, L, M, S, *, init, prior, num_chunks=None, tune=None, seed=0):
    """The scan with ``variance=True`` and ``variance=False`` on the same inputs and a loss of y and the
    final state only: y, lam_L, eta_L and every gradient of both runs, and the off run's y_var (None).
    The on run's loss adds ``0 * y_var``, so a zero g_yvar [B, L, M] reaches its backward and it runs
    the kernels built with the variance (VAR=True), as every backward did before variance on demand."""
    kla = _kernels()
    xs = _inputs(B, L, M, S, seed=seed)
    if not init:
        xs[6], xs[7] = torch.ones_like(xs[6]), torch.zeros_like(xs[7])
    g = torch.Generator().manual_seed(seed + 1)
    w = [torch.randn(*sh, generator=g, dtype=torch.float64).to(DEV).float() for sh in [(B, L, M), (B, M, S), (B, M, S)]]
    runs = []
    for var in (True, False):
        xt = [x.detach().float().requires_grad_() for x in xs]
        y, yv, lam, eta = kla.kla_scan_triton(*xt[:6], initial_state=(xt[6], xt[7]) if init else None,
                                              prior_readout=prior, variance=var, _num_chunks=num_chunks, _tune=tune,
                                              _poison=True)
        loss = (y * w[0]).sum() + (lam * w[1]).sum() + (eta * w[2]).sum()
        if var:
            assert yv is not None and yv.shape == y.shape and torch.isfinite(yv).all()
            loss = loss + (yv * 0.0).sum()
        else:
            assert yv is None
        loss.backward()
        grads = [x.grad for x in (xt if init else xt[:6])]
        assert all(gr is not None and torch.isfinite(gr).all() for gr in grads)
        runs.append([o.detach() for o in (y, lam, eta)] + grads)
    return runs


@pytest.mark.parametrize("B,L,M,S,init,prior,nc,tune", [
    (2, 19, 5, 3, True, False, None, None),                     # a partial last block, initial state
    (2, 19, 5, 3, False, True, None, None),                     # prior readout, no initial state
    (1, 27, 21, 4, True, True, 2, None),                        # 2 time chunks (MODE 1 summaries), partial m-block
    (1, 27, 21, 4, False, False, 2, None),
    (2, 27, 21, 4, True, False, 2, {"bwd_rel": 0, "bwd_alg": 0}),   # session 12's backward (the defaults: None)
    (1, 19, 32, 4, True, True, None, {"bwd_rel": 1, "bwd_alg": 0}),  # no lane masks, prior readout
    (1, 19, 32, 4, False, False, None, {"bwd_rel": 0, "bwd_alg": 1}),
    (1, 13, 3, 20, True, True, None, {"fwd_defer": 0, "bwd_defer": 0}),   # per-token stores, two s-blocks
    (1, 13, 6, 3, True, False, None, {"bwd_group": 4, "fwd_stages": 2, "bwd_stages": 2}),   # pipelined loops
])
def test_variance_off_matches_variance_on(B, L, M, S, init, prior, nc, tune):
    _check_variance_off(B, L, M, S, init, prior, nc, tune)


def _check_variance_off(B, L, M, S, init, prior, nc, tune):
    """``variance=False`` (the kernels built with VAR=False: no y_var in the forward, no g_yvar in the
    backward) gives y, the final state and every gradient of the variance-on kernels whose y_var
    receives a zero gradient: bit for bit under the interpreter (the same operations in the same order,
    g_yvar's terms left out instead of added as zeros), within a tenth of the bound on a GPU (separately
    compiled kernels: bit identity is not promised there). Posterior and prior readout, with and without
    an initial state, time chunks, a partial last block, ``bwd_rel`` / ``bwd_alg``, per-token and
    deferred stores, the pipelined loops."""
    on, off = _variance_pair(B, L, M, S, init=init, prior=prior, num_chunks=nc, tune=tune, seed=L + M)
    names = ("y", "lam_L", "eta_L") + tuple("grad_" + n for n in NAMES)
    if DEV == "cuda":
        rel = {n: _rel(a, b) for n, a, b in zip(names, off, on)}
        assert all(e <= RTOL / 10 for e in rel.values()), rel
    else:
        diff = {n: float((a - b).abs().max()) for n, a, b in zip(names, off, on) if not torch.equal(a, b)}
        assert not diff, f"variance off differs from on (max abs difference): {diff}"
    # and the variance-off run is within the bound of the float64 reference (y_var's weight 0)
    xs = _inputs(B, L, M, S, seed=L + M)
    if not init:
        xs[6], xs[7] = torch.ones_like(xs[6]), torch.zeros_like(xs[7])
    g = torch.Generator().manual_seed(L + M + 1)
    w = [torch.randn(*sh, generator=g, dtype=torch.float64).to(DEV).float().double()
         for sh in [(B, L, M), (B, M, S), (B, M, S)]]
    out_r, g_r = _reference(xs, prior, True, [w[0], torch.zeros_like(w[0]), w[1], w[2]])
    ref = [out_r[0], out_r[2], out_r[3]] + list(g_r if init else g_r[:6])
    errs = {n: _rel(a, b) for n, a, b in zip(names, off, ref)}
    assert all(e <= RTOL for e in errs.values()), errs


def test_variance_off_passes_no_g_yvar(monkeypatch):
    """Without the variance the backward gets no g_yvar (None: no [B, L, M] zeros are made) and the
    forward returns y_var None. With the variance, g_yvar is passed on, also when no gradient reaches
    y_var (autograd then materialises zeros for it, as before: the variance-on kernels run)."""
    kla = _kernels()
    seen = []
    real = kla.scan_backward

    def spy(v, lv, k, q, aT, pT, gy, gyv, *rest, **kw):
        seen.append(gyv is None)
        return real(v, lv, k, q, aT, pT, gy, gyv, *rest, **kw)

    monkeypatch.setattr(kla, "scan_backward", spy)
    xs = [x.float().requires_grad_() for x in _inputs(1, 9, 3, 2, seed=2)[:6]]
    y, yv, lam, eta = kla.kla_scan_triton(*xs, variance=False)
    assert yv is None
    y.sum().backward()
    y, yv, lam, eta = kla.kla_scan_triton(*xs, variance=True)
    (y.sum() + lam.sum()).backward()
    y, yv, lam, eta = kla.kla_scan_triton(*xs, variance=True)
    (y.sum() + yv.sum()).backward()
    assert seen == [True, False, False]
    from bayesfilt.errors import BayesfiltTypeError
    from bayesfilt.nn.functional import kla_scan
    with pytest.raises(BayesfiltTypeError, match="variance"):
        kla_scan(*[x.detach() for x in xs], variance="no", backend="torch")


def test_variance_off_ops_and_compile():
    """The custom ops without the variance: the fake forward's (0,) y_var placeholder and the backward
    with g_yvar None agree with the real ops (``torch.library.opcheck``), and torch.compile(fullgraph)
    of a loss of y and the final state reproduces the eager loss and gradients."""
    kla = _kernels()
    xs = [x.float() for x in _inputs(2, 19, 8, 5, seed=12)]
    ops = torch.ops.bayesfilt
    fwd_args = (*xs, True, True, "", False, False)
    torch.library.opcheck(ops.kla_scan_triton, fwd_args, test_utils=("test_schema", "test_faketensor"))
    out = ops.kla_scan_triton(*fwd_args)
    assert out[1].shape == (0,) and out[1].dtype == torch.float32
    g = [torch.randn(2, 19, 8, device=DEV), None, torch.randn(2, 8, 5, device=DEV), torch.randn(2, 8, 5, device=DEV)]
    torch.library.opcheck(ops.kla_scan_triton_backward, (*xs[:6], out[4], *g, True, "", False),
                          test_utils=("test_schema", "test_faketensor"))

    def loss_fn(*a):
        y, yv, lam, eta = kla.kla_scan_triton(*a[:6], initial_state=(a[6], a[7]), variance=False)
        assert yv is None
        return (y * y).sum() + (lam * a[6]).sum() + eta.sum()

    _assert_compiled_matches_eager(loss_fn, xs)


def test_chunk_maps_keep_float32_precision_as_precision_grows():
    """ā = 1, p̄ = 0 (precision grows without bound) over 64 time chunks. The slope of each chunk's
    affine map, a product of 64 factors ā g_t just below 1, drifted when carried as a product
    (final η 4.7e-6 off here under the interpreter; 1.4e-4 at L = 65536 on the H200); carried as
    its deviation from 1 every output stays near float32 rounding (η 5.9e-7 here)."""
    from bayesfilt.nn.functional import kla_scan
    kla = _kernels()
    xs = _inputs(1, 4096, 8, 16, seed=7, a_range=(1.0, 1.0), p_range=(0.0, 0.0))
    xr = [x.double() for x in xs]
    y, yv, st = kla_scan(*xr[:6], initial_state=(xr[6], xr[7]), backend="torch")
    with torch.no_grad():
        out = kla.kla_scan_triton(*[x.float() for x in xs[:6]], initial_state=(xs[6].float(), xs[7].float()),
                                  _num_chunks=64, _poison=True)
    errs = {n: _rel(a, b) for n, a, b in zip(("y", "y_var", "lam_L", "eta_L"), out, (y, yv, st.lam, st.eta))}
    assert all(e <= 2e-6 for e in errs.values()), errs


# ----------------------------------------------------------------------------- GPU matrix
gpu = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device (run on the GPU machine)")

GPU_CASES = [  # B, L, M, S, init, prior, num_chunks
    (2, 1, 64, 16, True, False, None),
    (3, 3, 40, 5, False, True, None),
    (2, 64, 100, 16, True, False, None),
    (4, 1000, 64, 7, True, False, None),
    (2, 1000, 32, 16, False, False, 8),
    (1, 4097, 48, 16, True, True, None),
    (1, 4097, 32, 33, True, False, 16),
]


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("case", GPU_CASES)
def test_gpu_matrix(case):
    B, L, M, S, init, prior, nc = case
    _check(B, L, M, S, init=init, prior=prior, num_chunks=nc)


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("case", [GPU_CASES[4], GPU_CASES[6], (1, 4097, 48, 16, True, True, 16)])
def test_gpu_matrix_joint_chunk_maps(case):
    """fwd_joint (the time-chunked forward's chunk maps of (w, mu) in one sweep, the default) against the
    reference and the two-sweep maps (fwd_joint 0), compiled."""
    B, L, M, S, init, prior, nc = case
    _check_same(B, L, M, S, {"fwd_joint": 1}, {"fwd_joint": 0}, init=init, prior=prior, num_chunks=nc)


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("case", [(2, 1000, 64, 16, True, False, None), (2, 1000, 32, 16, False, True, 8)])
def test_gpu_matrix_backward_fold(case):
    """bwd_fold (the backward adds dv, dLv over its s-blocks itself) against the reference and the
    unfolded backward, compiled; unchunked and time-chunked."""
    B, L, M, S, init, prior, nc = case
    _check_same(B, L, M, S, {"bwd_fold": 1}, {}, init=init, prior=prior, num_chunks=nc)


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("case", [GPU_CASES[1], GPU_CASES[3], GPU_CASES[4], GPU_CASES[6]])
def test_gpu_matrix_backward_tile_8x8(case):
    """The backward's 8 x 8 tile against the reference and the 4 x 16 tile (the default before session 19),
    compiled (S = 5, 7, 33: partial s-blocks; a time-chunked case). Passed on an H200 in stage s19a (c9c1016)."""
    B, L, M, S, init, prior, nc = case
    _check_same(B, L, M, S, {"bwd_sb": 8, "bwd_bm": 8}, {"bwd_sb": 4, "bwd_bm": 16}, init=init, prior=prior,
                num_chunks=nc)


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("case", [GPU_CASES[2], GPU_CASES[4], GPU_CASES[5]])
def test_gpu_matrix_deferred_stores(case):
    """Forward: the per-token stores (``fwd_defer=0``) against the default (deferred) ones."""
    B, L, M, S, init, prior, nc = case
    _check_same(B, L, M, S, {"fwd_defer": 0}, {"fwd_defer": 1}, init=init, prior=prior, num_chunks=nc)


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("case,group", [(GPU_CASES[2], 8), (GPU_CASES[4], 8), (GPU_CASES[5], 8),
                                        (GPU_CASES[4], 2), (GPU_CASES[3], 2), (GPU_CASES[6], 8),
                                        (GPU_CASES[1], 4), (GPU_CASES[3], 1)])
def test_gpu_matrix_deferred_gradient_stores(case, group):
    """Backward: deferred gradient stores (``bwd_defer=1``, groups of 8 = the default, 4, 2, 1) against
    the per-token stores (``bwd_defer=0``); S = 7, 5 and 33 (not multiples of the backward's 4-lane
    s-block) exercise the s >= S masks of the [SB, G] tiles."""
    B, L, M, S, init, prior, nc = case
    _check_same(B, L, M, S, {"bwd_defer": 1, "bwd_group": group}, {"bwd_defer": 0}, init=init, prior=prior,
                num_chunks=nc)


# tune of the multi-warp variants (docs/kla_kernels.md, "Multi-warp programs"): the [SB, BM] tile spread
# over 2 or 4 warps, so that the reductions over s (y, y_var, dv, dLv) and over m (dk, dq) may cross warps
W2, W4 = {"fwd_warps": 2, "bwd_warps": 2}, {"fwd_warps": 4, "bwd_warps": 4}
W2_BM64 = {**W2, "fwd_bm": 64, "bwd_bm": 64}


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("case,tune", [
    (GPU_CASES[2], W2),                                       # M = 100: a partial m-block
    (GPU_CASES[2], W4),
    (GPU_CASES[5], W2_BM64),                                  # L = 4097, prior readout, a partial last block
    (GPU_CASES[6], W4),                                       # S = 33 (s-blocks with masked lanes), 16 time chunks
    (GPU_CASES[4], {**W2, "fwd_defer": 0, "bwd_defer": 0}),   # per-token stores, 8 time chunks
    (GPU_CASES[2], {"fwd_stages": 2, "bwd_stages": 2}),       # pipelined loads
    (GPU_CASES[5], {"fwd_stages": 3, "bwd_stages": 3}),
    (GPU_CASES[6], {"fwd_stages": 2, "fwd_defer": 0, "bwd_stages": 2, "bwd_defer": 0}),   # time chunks, per-token stores
    (GPU_CASES[1], {"fwd_stages": 2, "bwd_stages": 2}),       # L = 3: the pipelined loops run no whole block
    ((1, 17, 64, 16, True, False, 2), {"fwd_stages": 3, "bwd_stages": 3}),   # chunk 1 holds one token
    (GPU_CASES[2], {"fwd_bm": 16, "bwd_bm": 16}),             # narrower m-tiles, a partial m-block
    (GPU_CASES[6], {"fwd_bm": 16, "bwd_bm": 16}),             # S = 33, 16 time chunks
    (GPU_CASES[5], {"fwd_bm": 16}),                           # prior readout, a partial last block
    (GPU_CASES[2], NO_PREFETCH),                              # without the session-11 defaults
    (GPU_CASES[6], NO_PREFETCH),                              # S = 33, 16 time chunks
    (GPU_CASES[5], {"fwd_l2pf": 4, "bwd_l2pf": 1}),           # other prefetch distances, prior readout
    (GPU_CASES[6], {"fwd_mspec": 0, "fwd_bm": 16}),           # the 16-channel build with time chunks, S = 33
    (GPU_CASES[1], {"fwd_l2pf": 1, "bwd_l2pf": 4}),           # L = 3: no whole block
    (GPU_CASES[2], {"bwd_rel": 1, "bwd_alg": 0}),             # block-relative loads alone, a partial m-block
    (GPU_CASES[5], {"bwd_rel": 1, "bwd_alg": 0}),             # prior readout, a partial last block
    (GPU_CASES[6], {"bwd_rel": 1, "bwd_alg": 0}),             # S = 33 (masked s-lanes), 16 time chunks
    (GPU_CASES[4], {"bwd_rel": 1, "bwd_alg": 0}),             # M = 32, S = 16: no lane masks, 8 time chunks
    (GPU_CASES[2], {"bwd_rel": 0, "bwd_alg": 1}),             # the shorter adjoint arithmetic alone
    (GPU_CASES[5], {"bwd_rel": 0, "bwd_alg": 1}),             # prior readout
    (GPU_CASES[4], {"bwd_rel": 0, "bwd_alg": 1}),             # no lane masks, 8 time chunks
    # (both keys are the defaults since session 13: the cases with tune {} above run them)
    (GPU_CASES[2], {"bwd_rel": 0, "bwd_alg": 0}),             # the backward before they were the defaults
    (GPU_CASES[5], {"bwd_rel": 0, "bwd_alg": 0}),
    (GPU_CASES[0], MOM),                                      # the moment-form adjoint: L = 1
    (GPU_CASES[1], MOM),                                      # prior readout, no initial state, S = 5
    (GPU_CASES[2], MOM),                                      # a partial m-block
    (GPU_CASES[4], MOM),                                      # 8 time chunks (the adjoint's chunk summaries)
    (GPU_CASES[5], MOM),                                      # L = 4097, prior readout, a partial last block
    (GPU_CASES[6], MOM),                                      # S = 33, 16 time chunks
    (GPU_CASES[4], {**MOM, "bwd_rel": 0, "bwd_defer": 0}),   # per-token stores, absolute loads
    (GPU_CASES[2], {**MOM, "bwd_stages": 2}),                # the pipelined loop
])
def test_gpu_matrix_multi_warp(case, tune):
    """Programs of 2 or 4 warps (tune keys ``fwd_warps`` / ``bwd_warps``, with ``*_bm`` 64 too), the pipelined
    loops (``fwd_stages`` / ``bwd_stages``) and one-warp programs of 16 m-lanes (``*_bm`` 16): every output and gradient within the bound of the float64 reference, and within
    the bound of the default."""
    B, L, M, S, init, prior, nc = case
    _check_same(B, L, M, S, tune, {}, init=init, prior=prior, num_chunks=nc)


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("case,tune", [
    (GPU_CASES[0], None),                                     # L = 1
    (GPU_CASES[1], None),                                     # prior readout, no initial state, S = 5
    (GPU_CASES[2], None),                                     # M = 100: a partial m-block
    (GPU_CASES[4], None),                                     # 8 time chunks, no initial state
    (GPU_CASES[5], None),                                     # L = 4097, prior readout, a partial last block
    (GPU_CASES[6], None),                                     # S = 33, 16 time chunks
    (GPU_CASES[2], {"bwd_rel": 0, "bwd_alg": 0}),             # session 12's backward, a partial m-block
    (GPU_CASES[4], {"bwd_rel": 1, "bwd_alg": 0}),             # no lane masks, 8 time chunks
    (GPU_CASES[5], {"bwd_rel": 0, "bwd_alg": 1}),             # prior readout
    (GPU_CASES[4], {"fwd_defer": 0, "bwd_defer": 0}),         # per-token stores
    (GPU_CASES[2], {"fwd_stages": 2, "bwd_stages": 2}),       # pipelined loops
    (GPU_CASES[6], NO_PREFETCH),                              # without the prefetch
])
def test_gpu_matrix_variance_off(case, tune):
    """Variance on demand compiled: ``variance=False`` against the variance-on kernels (zero g_yvar) and
    the float64 reference (``_check_variance_off``)."""
    B, L, M, S, init, prior, nc = case
    _check_variance_off(B, L, M, S, init, prior, nc, tune)


def _torch_f64(xs, prior, weights):
    """float64 reference for long L: the parallel torch scans (tested to 1e-10 vs the loop)."""
    from bayesfilt.nn.functional import kla_scan
    xr = [x.detach().double().requires_grad_() for x in xs]
    y, yv, st = kla_scan(*xr[:6], initial_state=(xr[6], xr[7]), prior_readout=prior, backend="torch")
    out = (y, yv, st.lam, st.eta)
    sum((o * w).sum() for o, w in zip(out, weights)).backward()
    return [o.detach() for o in out], [x.grad for x in xr]


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("nc,kw", [
    (None, {}),
    (None, dict(a_range=(1.0, 1.0), p_range=(0.0, 0.0))),        # precision grows without bound
    (None, dict(a_range=(1e-3, 1e-2))),
    (None, dict(lv_scale=(1e3, 1e4))),
    (None, dict(a_range=(1.0, 1.0), p_range=(0.0, 0.0), lv_scale=(1e3, 1e4))),   # both (the moment form, bwd_mom
    (32, {}),                                                   # 1, missed 1e-4 here and at kw1: s14e)
])
@pytest.mark.parametrize("tune", [None, {"fwd_joint": 0}])        # fwd_joint 0: the two-sweep chunk maps
def test_gpu_long_sequence_65536(nc, kw, tune):
    B, L, M, S = 1, 65536, 8, 16
    xs = _inputs(B, L, M, S, seed=7, **kw)
    g = torch.Generator().manual_seed(8)
    w = [torch.randn(*s, generator=g, dtype=torch.float64).to(DEV)
         for s in [(B, L, M), (B, L, M), (B, M, S), (B, M, S)]]
    out_r, g_r = _torch_f64(xs, False, w)
    out_t, g_t = _triton(xs, False, True, w, num_chunks=nc, tune=tune)
    errs = {n: _rel(a, b) for n, a, b in zip(("y", "y_var", "lam_L", "eta_L"), out_t, out_r)}
    errs.update({"grad_" + n: _rel(a, b) for n, a, b in zip(NAMES, g_t, g_r)})
    assert all(torch.isfinite(o).all() for o in out_t)
    bad = {k: v for k, v in errs.items() if not v <= RTOL}
    assert not bad, f"rel RMS over {RTOL}: {bad} (all: {errs})"


def _torch_f64_y(xs, prior, weights):
    """float64 gradients of a loss on y and y_var through the parallel torch scans (``_torch_f64``)."""
    from bayesfilt.nn.functional import kla_scan
    xr = [x.detach().double().requires_grad_() for x in xs]
    y, yv, _ = kla_scan(*xr[:6], initial_state=(xr[6], xr[7]), prior_readout=prior, backend="torch")
    ((y * weights[0]).sum() + (yv * weights[1]).sum()).backward()
    return [x.grad for x in xr]


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("nc,prior,a_range", [(None, False, (0.3, 0.9)), (32, True, (0.05, 0.3)),
                                              (None, False, (0.99, 0.9999))])
def test_gpu_p0_moment_adjoint_65536(nc, prior, a_range):
    """p = 0 over L = 65536 (``bwd_mom`` 1): every gradient finite and within the bound of float64."""
    _p0_gradients(1, 65536, 8, 16, prior=prior, num_chunks=nc, tune=MOM, a_range=a_range, ref=_torch_f64_y)


@pytest.mark.gpu
@gpu
def test_gpu_bf16_inputs_long():
    xs = [x.to(torch.bfloat16).double() for x in _inputs(2, 1000, 64, 16, seed=9)]
    out_r, _ = _reference(xs, False, with_grad=False)
    out_t, _ = _triton(xs, False, True, dtype=torch.bfloat16)
    for a, b in zip(out_t, out_r):
        assert _rel(a, b) <= RTOL


# ----------------------------------------------------------------------------- CPU: run the above interpreted
def _cpu_tests() -> list:
    """This module's tests that run on the CPU (under the interpreter), by function name."""
    return [n for n, f in globals().items() if n.startswith("test_") and callable(f)
            and not any(m.name == "gpu" for m in getattr(f, "pytestmark", []))]


if not HAS_CUDA and not CHILD:
    INTERPRETED = _cpu_tests()
    for _name in INTERPRETED:               # they run in the child process, reported here one by one
        del globals()[_name]

    @pytest.fixture(scope="module")
    def interpreted_outcomes(tmp_path_factory):
        """Run this module once in a fresh pytest process with TRITON_INTERPRET=1 set before triton
        is imported; returns {function name: [outcome of each (parametrised) case]} and the log."""
        import subprocess
        import xml.etree.ElementTree as ET
        xml = tmp_path_factory.mktemp("kla_triton") / "junit.xml"
        env = {**os.environ, "TRITON_INTERPRET": "1", "BAYESFILT_KLA_TRITON_CHILD": "1", "CUDA_VISIBLE_DEVICES": ""}
        env.pop("PYTEST_XDIST_WORKER", None)
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                               "-p", "no:xdist", f"--junitxml={xml}", os.path.abspath(__file__)],
                              capture_output=True, text=True, timeout=1400, env=env,
                              cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        outcomes = {}
        if xml.exists():
            for case in ET.parse(xml).getroot().iter("testcase"):
                kind = next((c.tag for c in case if c.tag in ("failure", "error", "skipped")), "passed")
                outcomes.setdefault(case.get("name").split("[")[0], []).append(kind)
        return outcomes, proc.stdout[-6000:] + proc.stderr[-2000:]

    # the child runs every interpreted test of this module (~9 minutes alone on the 2-core dev machine, more
    # beside the other xdist worker): its first user waits for it, past pytest-timeout's default 900 s (session
    # 17's CI: the worker was stopped there)
    @pytest.mark.timeout(1500)
    @pytest.mark.parametrize("name", INTERPRETED)
    def test_interpreted(name, interpreted_outcomes):
        """Each CPU test of this module passed (every parametrised case, none skipped) in the child."""
        outcomes, log = interpreted_outcomes
        assert outcomes.get(name) and all(o == "passed" for o in outcomes[name]), f"{name}: {outcomes.get(name)}\n{log}"

    def test_interpreter_does_not_leak():
        """The interpreter lives in the child only: this process has neither the variable nor
        interpreted kernels (another module of the worker would otherwise inherit them)."""
        assert os.environ.get("TRITON_INTERPRET") != "1"
        K = sys.modules.get("bayesfilt.nn.kernels._kla_triton")
        assert K is None or "Interpreted" not in type(K._fwd_kernel).__name__
