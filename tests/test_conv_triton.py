"""The fused causal depthwise convolution + SiLU (bayesfilt.nn.kernels.conv) against F.conv1d in float64.

The reference is the layer's own F.conv1d path (zero history, the input transposed to [B, C, L]).
On the CPU the kernels run under the Triton interpreter in a fresh process; the ``gpu``-marked
tests run them compiled on the device, with bf16 inputs, a long sequence and a determinism check.
The error metric is the relative RMS ||fast - ref|| / ||ref|| of u and of the gradients of z,
weight and bias.
"""

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

from conftest import compile_for_sm90, run_interpreted  # noqa: E402

HAS_CUDA = torch.cuda.is_available()

#: (B, L, C, K, silu, strided): T = 1 and short odd lengths, a sequence longer than one backward
#: program's 256 tokens (its loop and several partial-sum rows), channels that do not fill a 128-wide
#: block, kernel widths 1-4, with and without SiLU, z as a column slice of a wider tensor
CASES = [(2, 1, 5, 4, True, False), (1, 3, 130, 4, True, True), (2, 67, 33, 3, False, False),
         (3, 130, 7, 1, True, True), (1, 300, 129, 2, True, False), (2, 517, 20, 4, True, True)]

CHECK = r'''
import torch
from bayesfilt.nn.kernels.conv import causal_conv1d_triton
from bayesfilt.nn.reference import causal_conv1d_reference as reference

def errors(B, L, C, K, silu, strided, device="cpu", dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    wide = torch.randn(B, L, 2 * C if strided else C, generator=g, dtype=torch.float64)
    w = torch.randn(C, K, generator=g, dtype=torch.float64)
    b = torch.randn(C, generator=g, dtype=torch.float64)
    up = torch.randn(B, L, C, generator=g, dtype=torch.float64)
    wide = wide.to(dtype).double()                   # the reference sees the same rounded input
    wide, w, b, up = (t.to(device) for t in (wide, w, b, up))   # (float64 on the GPU: the CPU is slow at 8x2048x2048)
    zr, wr, br = (t.clone().requires_grad_() for t in (wide[..., :C], w, b))
    ur = reference(zr, wr, br, silu=silu)
    (ur * up).sum().backward()
    zw = wide.to(device, dtype)[..., :C]
    z = zw.detach().requires_grad_() if not strided else zw
    if strided:
        z.requires_grad_()
    wt, bt = (t.to(device, torch.float32).requires_grad_() for t in (w, b))
    u = causal_conv1d_triton(z, wt, bt, silu)
    (u.double() * up.to(device)).sum().backward()
    out = []
    for a, r in ((u, ur), (z.grad, zr.grad), (wt.grad, wr.grad), (bt.grad, br.grad)):
        out.append(float((a.detach().double() - r.detach()).norm() / r.detach().norm()))
    return out
'''


#: the backward's variants (bayesfilt.nn.kernels.conv._BWD_TILES) on short cases under the interpreter:
#: programs of 8 tokens (the window's look-ahead across a program boundary and past L, several
#: partial-sum rows), K = 1-4 and a K = 6 that falls back to "recompute"
VARIANTS = ("recompute", "split", "window")
VARIANT_CASES = [(2, 1, 5, 4, True, False), (1, 3, 130, 4, True, True), (2, 21, 33, 3, False, False),
                 (3, 13, 7, 1, True, True), (1, 19, 129, 2, True, False), (2, 17, 20, 4, True, True),
                 (1, 9, 20, 6, True, True)]

BWD_CHECK = r'''
from bayesfilt.nn.kernels.conv import conv_backward

def bwd_errors(B, L, C, K, silu, strided, variant, device="cpu", dtype=torch.float32, seed=0, **tiles):
    """Relative RMS errors of (dz, dw, dbias) of one backward variant against the float64 reference."""
    g = torch.Generator().manual_seed(seed)
    wide = torch.randn(B, L, 2 * C if strided else C, generator=g, dtype=torch.float64)
    w = torch.randn(C, K, generator=g, dtype=torch.float64)
    b = torch.randn(C, generator=g, dtype=torch.float64)
    up = torch.randn(B, L, C, generator=g, dtype=torch.float64)
    wide, up = wide.to(dtype).double(), up.to(dtype).double()      # the reference sees the rounded inputs
    wide, w, b, up = (t.to(device) for t in (wide, w, b, up))
    zr, wr, br = (t.clone().requires_grad_() for t in (wide[..., :C], w, b))
    (reference(zr, wr, br, silu=silu) * up).sum().backward()
    z = wide.to(device, dtype)[..., :C]
    grads = conv_backward(z, w.to(device, torch.float32), b.to(device, torch.float32), up.to(device, dtype), silu,
                          variant=variant, **tiles)
    return [float((a.double() - r).norm() / r.norm()) for a, r in zip(grads, (zr.grad, wr.grad, br.grad))]
'''


OPCHECK = r'''
ops = torch.ops.bayesfilt
z = torch.randn(2, 37, 260)[..., 3:133]                 # a column slice: strided time and batch axes
w, b, up = torch.randn(4, 130).t(), torch.randn(130), torch.randn(2, 37, 130)   # w: non-contiguous
for silu in (True, False):
    torch.library.opcheck(ops.causal_conv1d_triton, (z, w, b, silu), test_utils=("test_schema", "test_faketensor"))
    torch.library.opcheck(ops.causal_conv1d_triton_backward, (z, w, b, up, silu),
                          test_utils=("test_schema", "test_faketensor"))
print("OPCHECK")
'''


@pytest.mark.skipif(HAS_CUDA, reason="with CUDA the compiled kernels run the same cases (test_conv_matches_reference_gpu); "
                    "triton 3.6's interpreter (the device's) fails on a loop bound under numpy 2.4")
def test_conv_matches_reference_interpreted():
    code = CHECK + f"\nprint('ERRS', max(max(errors(*c)) for c in {CASES!r}))\n" + OPCHECK
    out = run_interpreted(code)
    err = float(out.split("ERRS")[-1].split()[0])
    assert err < 1e-5, err
    assert "OPCHECK" in out            # the fake (meta) kernels agree with the real ones on shapes and dtypes


@pytest.mark.skipif(HAS_CUDA, reason="with CUDA the compiled kernels run them (test_conv_backward_variants_gpu)")
def test_conv_backward_variants_interpreted():
    """Every backward variant gives the reference's dz, dw, dbias (small tiles: several programs)."""
    code = CHECK + BWD_CHECK + (f"\nfor v in {VARIANTS!r}:\n"
                                f"    print('ERR', v, max(max(bwd_errors(*c, v, TCH=8)) for c in {VARIANT_CASES!r}))\n")
    out = run_interpreted(code)
    errs = {line.split()[1]: float(line.split()[2]) for line in out.splitlines() if line.startswith("ERR")}
    assert set(errs) == set(VARIANTS) and max(errs.values()) < 1e-5, errs


def test_conv_backward_refuses_unknown_variant():
    from bayesfilt.errors import BayesfiltValueError
    from bayesfilt.nn.kernels.conv import conv_backward
    z = torch.zeros(1, 4, 6)
    with pytest.raises(BayesfiltValueError, match="variant"):
        conv_backward(z, torch.zeros(6, 4), torch.zeros(6), z, True, variant="nope")
    with pytest.raises(BayesfiltValueError, match="tiles"):          # a tile the variant does not have
        conv_backward(z, torch.zeros(6, 4), torch.zeros(6), z, True, variant="window", BT=8)
    with pytest.raises(BayesfiltValueError, match="TCH"):            # a program's tokens not whole tiles
        conv_backward(z, torch.zeros(6, 4), torch.zeros(6), z, True, variant="recompute", TCH=12)


def test_conv_kernels_compile_for_sm90():
    """The interpreter does not type-check as the compiler does: compile both kernels for sm_90."""
    compile_for_sm90("bayesfilt.nn.kernels._conv_triton",
                     [("_conv_fwd_kernel", {"K": 4, "BT": 16, "BC": 128, "SILU": True}),
                      ("_conv_bwd_kernel", {"K": 3, "KP": 4, "BT": 8, "BC": 128, "SILU": True}),
                      ("_conv_bwd_kernel", {"K": 4, "KP": 4, "BT": 8, "BC": 128, "SILU": False}),
                      ("_conv_bwd_d_kernel", {"K": 4, "BT": 8, "BC": 128, "SILU": True, "STORE_D": True}),
                      ("_conv_bwd_d_kernel", {"K": 3, "BT": 8, "BC": 128, "SILU": False, "STORE_D": False}),
                      ("_conv_bwd_dz_kernel", {"K": 4, "BT": 16, "BC": 128}),
                      ("_conv_bwd_window_kernel", {"K": 4, "BC": 128, "SILU": True}),
                      ("_conv_bwd_window_kernel", {"K": 2, "BC": 256, "SILU": False})],
                     dtypes=("fp32", "bf16"))


def test_layer_uses_the_fused_conv_exactly_when_the_scan_runs_on_triton(monkeypatch):
    from bayesfilt.nn import KLAConfig, KLALayer
    from bayesfilt.scan import _triton
    z32, z64 = torch.zeros(1, 2, 3), torch.zeros(1, 2, 3, dtype=torch.float64)
    layer = lambda **kw: KLALayer(8, KLAConfig(d_state=2, **kw))                 # noqa: E731
    assert not layer(backend="triton")._triton_conv(z32)     # CPU without the interpreter: the scan's own error
    monkeypatch.setattr(_triton, "interpreting", lambda: True)
    assert layer(backend="triton")._triton_conv(z32)
    assert not layer(backend="triton")._triton_conv(z64)     # the kernel computes in float32
    assert not layer(backend="torch")._triton_conv(z32)
    assert not layer()._triton_conv(z32)                     # auto on the CPU: torch
    assert not layer(process_noise=False)._triton_conv(z32)  # auto on the CPU, p = 0: torch
    assert layer(process_noise=False, backend="triton")._triton_conv(z32)   # (interpreting, as above)


def test_layer_calls_the_fused_conv_only_for_a_fresh_sequence(monkeypatch):
    """_sensor runs the fused kernel (a spy here, returning the reference) without a state and the
    reference with one; both give the reference's u."""
    import bayesfilt.nn.kernels.conv as conv
    from bayesfilt.nn import KLAConfig, KLALayer
    from bayesfilt.nn.reference import causal_conv1d_reference
    calls = []

    def spy(z, weight, bias, silu=True):
        calls.append(tuple(z.shape))
        return causal_conv1d_reference(z, weight, bias, silu=silu)
    monkeypatch.setattr(conv, "causal_conv1d_triton", spy)
    lay = KLALayer(8, KLAConfig(d_state=2, backend="triton"))
    monkeypatch.setattr(lay, "_triton_conv", lambda z: True)
    x = torch.randn(2, 5, 8)
    u, _, full, _ = lay._sensor(x, None)
    assert calls == [(2, 5, lay.d_inner)] and full is None
    u2, _, full2, _ = lay._sensor(x, lay.init_state(2))     # a zero state: the same u, through the reference
    assert calls == [(2, 5, lay.d_inner)] and full2.shape == (2, lay.d_inner, lay.conv_kernel - 1 + 5)
    torch.testing.assert_close(u2, u)


def test_fused_conv_refuses_bad_inputs():
    from bayesfilt.errors import BayesfiltTypeError, BayesfiltValueError
    from bayesfilt.nn.kernels.conv import causal_conv1d_triton
    z, w, b = torch.zeros(1, 4, 6), torch.zeros(6, 4), torch.zeros(6)
    for args, err, name in (((z[0], w, b), BayesfiltValueError, "z"), ((z.double(), w, b), BayesfiltValueError, "z"),
                            ((z, w[:5], b), BayesfiltValueError, "weight"), ((z, w, b[:5]), BayesfiltValueError, "bias"),
                            ((z.long(), w, b), BayesfiltTypeError, "z"), ((z, "w", b), BayesfiltTypeError, "weight")):
        with pytest.raises(err, match=name):
            causal_conv1d_triton(*args)


gpu = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device (device tool)")


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("case", CASES + [(8, 2048, 2048, 4, True, True)])
def test_conv_matches_reference_gpu(case):
    ns = {}
    exec(CHECK, ns)
    assert max(ns["errors"](*case, device="cuda")) < 1e-5


@pytest.mark.gpu
@gpu
def test_conv_bf16_gpu():
    """bf16 z (the layer under autocast): u and dz rounded to bf16, within bf16's resolution."""
    ns = {}
    exec(CHECK, ns)
    errs = ns["errors"](4, 1000, 300, 4, True, True, device="cuda", dtype=torch.bfloat16)
    assert max(errs) < 1e-2, errs


@pytest.mark.gpu
@gpu
def test_conv_gradients_are_deterministic_gpu():
    from bayesfilt.nn.kernels.conv import causal_conv1d_triton
    z = torch.randn(4, 3000, 512, device="cuda")
    w, b = torch.randn(512, 4, device="cuda"), torch.randn(512, device="cuda")
    up = torch.randn_like(z)
    runs = []
    for _ in range(2):
        zi, wi, bi = (t.clone().requires_grad_() for t in (z, w, b))
        (causal_conv1d_triton(zi, wi, bi) * up).sum().backward()
        runs.append((zi.grad, wi.grad, bi.grad))
    assert all(torch.equal(a, b) for a, b in zip(*runs))


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("case", CASES + VARIANT_CASES + [(8, 2048, 2048, 4, True, True)])
def test_conv_backward_variants_gpu(variant, case):
    """Each backward variant, compiled, with its own tiles and with programs of 8 tokens."""
    ns = {}
    exec(CHECK + BWD_CHECK, ns)
    assert max(ns["bwd_errors"](*case, variant, device="cuda")) < 1e-5
    if case[1] < 1000:                                   # (programs of 8 tokens: many partial-sum rows)
        assert max(ns["bwd_errors"](*case, variant, device="cuda", TCH=8)) < 1e-5


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("variant", VARIANTS)
def test_conv_backward_variants_bf16_gpu(variant):
    """bf16 z and g: dz rounded to bf16 (the reference sees the same rounded inputs)."""
    ns = {}
    exec(CHECK + BWD_CHECK, ns)
    errs = ns["bwd_errors"](4, 1000, 300, 4, True, True, variant, device="cuda", dtype=torch.bfloat16)
    assert max(errs) < 1e-2, errs


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("variant", VARIANTS)
def test_conv_backward_variants_deterministic_gpu(variant):
    from bayesfilt.nn.kernels.conv import conv_backward
    z = torch.randn(4, 3000, 512, device="cuda")
    w, b, up = torch.randn(512, 4, device="cuda"), torch.randn(512, device="cuda"), torch.randn_like(z)
    first = conv_backward(z, w, b, up, True, variant=variant)
    assert all(torch.equal(a, b) for a, b in zip(conv_backward(z, w, b, up, True, variant=variant), first))
