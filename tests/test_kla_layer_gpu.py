"""KLALayer on a CUDA device (run through the device tool): the Triton backend against the torch
backend, bf16 autocast, torch.compile (inductor) and prefill + decode through the fused step."""

import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

from bayesfilt.nn import KLAConfig, KLALayer  # noqa: E402

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (device tool)")]


def _layer(backend, seed=0, d_model=64, **config):
    torch.manual_seed(seed)
    layer = KLALayer(d_model, KLAConfig(d_state=16, backend=backend, **config)).cuda()
    with torch.no_grad():                       # p̄ large enough that the filter is clearly non-linear
        if layer.p_raw is not None:
            layer.p_raw.uniform_(-1.0, 1.0)
        layer.log_dt.uniform_(math.log(0.05), math.log(0.5))
    return layer


def _rel(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm())


def test_triton_layer_matches_torch_layer_with_gradients():
    tri, ref = _layer("triton"), _layer("torch")
    ref.load_state_dict(tri.state_dict())
    x = torch.randn(2, 333, 64, device="cuda")
    out = [layer(x, return_variance=True) for layer in (tri, ref)]
    for a, b in zip(*out):
        assert _rel(a, b) < 1e-4
    for layer, (y, v) in zip((tri, ref), out):
        (y.square().mean() + v.mean()).backward()
    for (name, pa), pb in zip(tri.named_parameters(), ref.parameters()):
        assert _rel(pa.grad, pb.grad) < 1e-4, name


def test_no_process_noise_on_triton_matches_torch():
    """p = 0 (the paper's ablation) with a fast decay, so that lam_t ~ a^(-2t) passes float32's range
    within the sequence: "auto" on CUDA runs the Triton kernels (covariance-form forward, moment-form
    adjoint) and matches the torch backend (its moment-form fallback), outputs and every gradient."""
    tri, ref = _layer("auto", process_noise=False), _layer("torch", process_noise=False)
    with torch.no_grad():
        tri.log_dt.uniform_(math.log(0.3), math.log(1.0))          # a = exp(-dt A) well below 1
    ref.load_state_dict(tri.state_dict())
    x = torch.randn(2, 333, 64, device="cuda")
    out = [layer(x, return_variance=True) for layer in (tri, ref)]
    for a, b in zip(*out):
        assert torch.isfinite(a).all() and _rel(a, b) < 1e-4
    for layer, (y, v) in zip((tri, ref), out):
        (y.square().mean() + v.mean()).backward()
    for (name, pa), pb in zip(tri.named_parameters(), ref.parameters()):
        assert torch.isfinite(pa.grad).all() and _rel(pa.grad, pb.grad) < 1e-4, name


def test_bf16_autocast_and_torch_compile():
    layer = _layer("triton")
    x = torch.randn(2, 256, 64, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        y, v = layer(x, return_variance=True)
        (y.float().square().mean() + v.float().mean()).backward()
    assert torch.isfinite(y).all() and torch.isfinite(v).all() and (v > 0).all()
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters() if p.grad is not None)
    eager = layer(x)
    compiled = torch.compile(layer, fullgraph=True)(x)
    torch.testing.assert_close(compiled, eager, rtol=2e-4, atol=2e-5)


def test_prefill_plus_fused_decode_equals_full_forward():
    layer = _layer("triton")
    x = torch.randn(3, 40, 64, device="cuda")
    with torch.no_grad():
        y_full, v_full = layer(x, return_variance=True)
        y_pre, v_pre, state = layer(x[:, :33], state=layer.init_state(3), return_variance=True)
        ys, vs = [y_pre], [v_pre]
        for t in range(33, 40):
            y, v, state = layer(x[:, t:t + 1], state=state, return_variance=True)
            ys.append(y)
            vs.append(v)
    assert _rel(torch.cat(ys, 1), y_full) < 1e-5
    assert _rel(torch.cat(vs, 1), v_full) < 1e-5
