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
import torch, torch.nn.functional as F
from bayesfilt.nn.kernels.conv import causal_conv1d_triton

def reference(z, w, b, silu):
    B, L, C = z.shape
    full = torch.cat([z.new_zeros(B, C, w.shape[1] - 1), z.transpose(1, 2)], -1)
    u = F.conv1d(full, w.unsqueeze(1), b, groups=C).transpose(1, 2)
    return F.silu(u) if silu else u

def errors(B, L, C, K, silu, strided, device="cpu", dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    wide = torch.randn(B, L, 2 * C if strided else C, generator=g, dtype=torch.float64)
    w = torch.randn(C, K, generator=g, dtype=torch.float64)
    b = torch.randn(C, generator=g, dtype=torch.float64)
    up = torch.randn(B, L, C, generator=g, dtype=torch.float64)
    wide = wide.to(dtype).double()                   # the reference sees the same rounded input
    zr, wr, br = (t.clone().requires_grad_() for t in (wide[..., :C], w, b))
    ur = reference(zr, wr, br, silu)
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
        out.append(float((a.detach().double().cpu() - r.detach()).norm() / r.detach().norm()))
    return out
'''


OPCHECK = r'''
ops = torch.ops.bayesfilt
z = torch.randn(2, 37, 130, dtype=torch.float64).float()[..., ::1]
w, b, up = torch.randn(130, 4), torch.randn(130), torch.randn(2, 37, 130)
for silu in (True, False):
    torch.library.opcheck(ops.causal_conv1d_triton, (z, w, b, silu), test_utils=("test_schema", "test_faketensor"))
    torch.library.opcheck(ops.causal_conv1d_triton_backward, (z, w, b, up, silu),
                          test_utils=("test_schema", "test_faketensor"))
print("OPCHECK")
'''


@pytest.mark.skipif(HAS_CUDA, reason="with CUDA the compiled kernels run the same cases (test_conv_matches_reference_gpu); "
                    "triton 3.6's interpreter (the device's) cannot index a loop bound under numpy 2.4")
def test_conv_matches_reference_interpreted():
    code = CHECK + f"\nprint('ERRS', max(max(errors(*c)) for c in {CASES!r}))\n" + OPCHECK
    out = run_interpreted(code)
    err = float(out.split("ERRS")[-1].split()[0])
    assert err < 1e-5, err
    assert "OPCHECK" in out            # the fake (meta) kernels agree with the real ones on shapes and dtypes


def test_conv_kernels_compile_for_sm90():
    """The interpreter does not type-check as the compiler does: compile both kernels for sm_90."""
    compile_for_sm90("bayesfilt.nn.kernels._conv_triton",
                     [("_conv_fwd_kernel", {"K": 4, "BT": 16, "BC": 128, "SILU": True}),
                      ("_conv_bwd_kernel", {"K": 3, "KP": 4, "BT": 8, "BC": 128, "SILU": True}),
                      ("_conv_bwd_kernel", {"K": 4, "KP": 4, "BT": 8, "BC": 128, "SILU": False})],
                     dtypes=("fp32", "bf16"))


def test_layer_uses_the_fused_conv_exactly_when_the_scan_runs_on_triton():
    from bayesfilt.nn import KLAConfig, KLALayer
    z32, z64 = torch.zeros(1, 2, 3), torch.zeros(1, 2, 3, dtype=torch.float64)
    assert KLALayer(8, KLAConfig(d_state=2, backend="triton"))._triton_conv(z32)
    assert not KLALayer(8, KLAConfig(d_state=2, backend="triton"))._triton_conv(z64)     # the kernel is float32
    assert not KLALayer(8, KLAConfig(d_state=2, backend="torch"))._triton_conv(z32)
    assert not KLALayer(8, KLAConfig(d_state=2))._triton_conv(z32)                       # auto on the CPU: torch
    assert not KLALayer(8, KLAConfig(d_state=2, process_noise=False))._triton_conv(z32)   # auto, p = 0: torch


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
