"""KLALayer and KLAConfig: stateful decoding, return types, backends, variance propagation, validation."""

import dataclasses
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from bayesfilt.errors import BayesfiltError  # noqa: E402
from bayesfilt.nn import KLAConfig, KLALayer, KLALayerState, KLAState  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_layer(d_model=8, seed=0, dtype=torch.float64, **cfg):
    torch.manual_seed(seed)
    cfg.setdefault("d_state", 4)
    layer = KLALayer(d_model, KLAConfig(**cfg)).to(dtype)
    with torch.no_grad():                       # make p̄ large enough that the filter is clearly non-linear
        if layer.p_raw is not None:
            layer.p_raw.uniform_(-1.0, 1.0)
        layer.log_dt.uniform_(math.log(0.05), math.log(0.5))
    return layer


@pytest.mark.parametrize("splits", [(9,), (1, 1, 1, 1, 1, 1, 1, 1, 1), (2, 7), (5, 1, 1, 2), (3, 6)])
def test_prefill_plus_decode_equals_full_forward(splits):
    layer = make_layer()
    x = torch.randn(3, sum(splits), 8, dtype=torch.float64)
    y_full, var_full = layer(x, return_variance=True)
    state = layer.init_state(3)
    ys, vs, t = [], [], 0
    for n in splits:
        y, v, state = layer(x[:, t:t + n], state=state, return_variance=True)
        ys.append(y)
        vs.append(v)
        t += n
    torch.testing.assert_close(torch.cat(ys, 1), y_full, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(torch.cat(vs, 1), var_full, rtol=1e-12, atol=1e-12)
    # the final state continues the sequence exactly like the full forward would
    x2 = torch.randn(3, 4, 8, dtype=torch.float64)
    y_cont, _ = layer(x2, state=state)
    torch.testing.assert_close(y_cont, layer(torch.cat([x, x2], 1))[:, -4:], rtol=1e-12, atol=1e-12)


def test_init_precision_applies_without_a_state():
    """init_precision is the prior precision of a fresh sequence whether or not a state is passed:
    the full forward, filter_readout and prefill from init_state agree (it was ignored without a
    state), and it changes the output (so the test can fail)."""
    layer = make_layer(init_precision=5.0)
    x = torch.randn(2, 7, 8, dtype=torch.float64)
    y, y_var = layer(x, return_variance=True)
    y_s, var_s, _ = layer(x, state=layer.init_state(2), return_variance=True)
    torch.testing.assert_close(y, y_s, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(y_var, var_s, rtol=1e-12, atol=1e-12)
    other = make_layer(init_precision=1.0)
    assert (other(x) - y).abs().max() > 1e-4
    r, r_var = layer.filter_readout(x)
    lam0 = torch.full((2, layer.d_inner, layer.d_state), 5.0, dtype=torch.float64)
    _, _, _, inputs = layer._sensor(x, None)
    from bayesfilt.nn.reference import kla_scan_reference
    ref = kla_scan_reference(*inputs, lam0, torch.zeros_like(lam0))
    torch.testing.assert_close(r, ref[0], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(r_var, ref[1], rtol=1e-10, atol=1e-12)


def test_prefill_state_owns_its_conv_cache():
    """The conv cache handed on after a prefill holds K - 1 columns, not a view of the prefill's buffer."""
    layer = make_layer()
    _, state = layer(torch.randn(2, 300, 8, dtype=torch.float64), state=layer.init_state(2))
    conv = state.conv
    assert conv.shape[-1] == layer.conv_kernel - 1
    assert conv.untyped_storage().nbytes() == conv.numel() * conv.element_size()


def test_return_types_never_depend_on_config():
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    for cfg in ({}, {"gating": False, "skip": False, "qk_norm": False, "process_noise": False}):
        layer = make_layer(**cfg)
        assert isinstance(layer(x), torch.Tensor)
        out = layer(x, return_variance=True)
        assert isinstance(out, tuple) and len(out) == 2 and out[0].shape == out[1].shape == x.shape
        out = layer(x, state=layer.init_state(2))
        assert len(out) == 2 and isinstance(out[1], KLALayerState) and isinstance(out[1].kla, KLAState)
        out = layer(x, state=layer.init_state(2), return_variance=True)
        assert len(out) == 3 and isinstance(out[2], KLALayerState)


def test_init_state_shapes():
    layer = make_layer(d_model=6, d_state=5, expand=3, conv_kernel=2)
    s = layer.init_state(4)
    assert s.conv.shape == (4, 18, 1)
    assert s.kla.lam.shape == s.kla.eta.shape == (4, 18, 5)
    assert bool((s.kla.lam == 1).all()) and bool((s.kla.eta == 0).all())
    with pytest.raises(BayesfiltError, match="batch"):
        layer.init_state(0)


def test_discretisation_is_the_exact_ou_formula():
    layer = make_layer()
    a = torch.exp(layer.log_a).detach().numpy()
    dt = torch.exp(layer.log_dt).detach().numpy()[:, None]
    p = np.log1p(np.exp(layer.p_raw.detach().numpy()))
    a_bar, p_bar = (t.detach().numpy() for t in layer.discretize())
    np.testing.assert_allclose(a_bar, np.exp(-a * dt), rtol=1e-13)
    # p̄ = ∫_0^Δ e^{-2 a s} p ds, integrated numerically
    s = np.linspace(0, 1, 20001)[None, None, :] * dt[..., None]
    integral = np.trapezoid(p[..., None] * np.exp(-2 * a[..., None] * s), s, axis=-1)
    np.testing.assert_allclose(p_bar, integral, rtol=1e-7)


def test_step_per_state_is_one_delta_per_lane():
    """``dt_per_state``: Δ is [M, S] (the authors' code), drawn log-uniform in [dt_min, dt_max] per
    lane, and ā, p̄ use each lane's own Δ; the default keeps one Δ per channel, [M]."""
    torch.manual_seed(0)
    layer = KLALayer(32, KLAConfig(d_state=8, dt_per_state=True))
    assert tuple(layer.log_dt.shape) == (64, 8) and tuple(KLALayer(32, KLAConfig(d_state=8)).log_dt.shape) == (64,)
    dt = torch.exp(layer.log_dt.detach()).double()
    assert float(dt.min()) >= 0.001 * (1 - 1e-6) and float(dt.max()) <= 0.1 * (1 + 1e-6)
    assert float(dt.std(dim=1).min()) > 0                      # the states of a channel differ
    a = torch.exp(layer.log_a.detach()).double()
    p = F.softplus(layer.p_raw.detach()).double()
    a_bar, p_bar = (t.detach().double() for t in layer.discretize())
    torch.testing.assert_close(a_bar, torch.exp(-a * dt), rtol=1e-6, atol=0)
    torch.testing.assert_close(p_bar, p * (1 - torch.exp(-2 * a * dt)) / (2 * a), rtol=1e-5, atol=0)
    x = torch.randn(2, 5, 32)
    y, y_var = layer(x, return_variance=True)
    y.sum().backward()
    assert y.shape == x.shape and bool((y_var >= 0).all()) and layer.log_dt.grad.shape == (64, 8)


def test_initialisation_follows_the_paper():
    torch.manual_seed(0)
    layer = KLALayer(64)
    dt = torch.exp(layer.log_dt.detach())
    assert float(dt.min()) >= 0.001 * (1 - 1e-6) and float(dt.max()) <= 0.1 * (1 + 1e-6)
    torch.testing.assert_close(F.softplus(layer.p_raw), torch.full_like(layer.p_raw, 0.01))
    assert layer.d_state == 16 and layer.conv_kernel == 4 and layer.d_inner == 128
    torch.testing.assert_close(torch.exp(layer.log_a[0]), torch.arange(1.0, 17.0))


@pytest.mark.parametrize("dt_per_state", [False, True])
def test_p_init_rule_3a_dt_starts_each_lane_at_three_a_dt(dt_per_state):
    """p_init_rule="3a-dt": p = 3·a·Δ from each lane's own initial a and Δ (the authors' newer rule), not p_init."""
    torch.manual_seed(1)
    layer = KLALayer(16, KLAConfig(d_state=4, p_init_rule="3a-dt", p_init=0.5, dt_per_state=dt_per_state))
    a = torch.exp(layer.log_a.detach())                                # a_s = s + 1 (s4d-real)
    dt = torch.exp(layer.log_dt.detach())
    dt = dt if dt.ndim == 2 else dt[:, None].expand(-1, 4)
    torch.testing.assert_close(F.softplus(layer.p_raw.detach()), 3 * a * dt)
    assert float(dt.std()) > 0                                         # Δ differs between lanes: a real check


def test_lambda_v_init_makes_the_value_precision_constant_at_the_start():
    """lambda_v_init = c: Λv = c for every token and channel at initialisation (zero weights, a bias), and those
    weights learn from there; the default starts input-dependent."""
    torch.manual_seed(2)
    x = torch.randn(2, 7, 16)
    seen = {}
    for c in (None, 4.0, 16.0):
        layer = KLALayer(16, KLAConfig(d_state=4, lambda_v_init=c))
        lambda_v = layer._sensor(x, None)[3][1]                         # [B, L, M]
        seen[c] = lambda_v.detach()
        if c is not None:
            torch.testing.assert_close(lambda_v, torch.full_like(lambda_v, c))
            lambda_v.sum().backward()
            M = layer.d_inner
            assert float(layer.sensor.weight.grad[M:2 * M].abs().sum()) > 0
    assert float(seen[None].std()) > 1e-3                             # input-dependent without the option


def test_gradients_agree_across_backends():
    x = torch.randn(2, 7, 8, dtype=torch.float64)
    grads = {}
    for backend in ("reference", "torch"):
        layer = make_layer(backend=backend, seed=3)
        xi = x.clone().requires_grad_(True)
        y, var = layer(xi, return_variance=True)
        (y.square().sum() + var.sum()).backward()
        grads[backend] = [xi.grad] + [p.grad for p in layer.parameters()]
    for g_ref, g_torch in zip(grads["reference"], grads["torch"]):
        torch.testing.assert_close(g_torch, g_ref, rtol=1e-9, atol=1e-11)


def test_variance_non_negative_and_equals_analytic_propagation_in_linear_case():
    """p̄ = 0: λ_t = λ_0 ā^{-2t} + Σ_j ā^{-2(t-j)} Λv_j k_j² in closed form; the output variance is
    Σ_m W_dm² SiLU(g_m)² Σ_s q_s² / λ_t[m, s]. Recomputed here from the layer's weights in NumPy."""
    layer = make_layer(process_noise=False, seed=5)
    B, L = 2, 6
    x = torch.randn(B, L, 8, dtype=torch.float64)
    _, var = layer(x, return_variance=True)
    assert bool((var >= 0).all())
    P = {n: p.detach().numpy() for n, p in layer.named_parameters()}
    M, S, K = layer.d_inner, layer.d_state, layer.conv_kernel
    xn = x.numpy()
    zg = xn @ P["in_proj.weight"].T
    z, g = zg[..., :M], zg[..., M:]
    zp = np.concatenate([np.zeros((B, K - 1, M)), z], axis=1)
    u = np.stack([sum(zp[:, t + j] * P["conv_weight"][:, j] for j in range(K)) for t in range(L)], 1) + P["conv_bias"]
    u = u / (1 + np.exp(-u))
    s = u @ P["sensor.weight"].T + P["sensor.bias"]
    raw, k, q = s[..., M:2 * M], s[..., 2 * M:2 * M + S], s[..., 2 * M + S:]
    lv = 1 / (np.log1p(np.exp(raw)) + 1e-4)
    k = k / np.linalg.norm(k, axis=-1, keepdims=True)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    a_bar = np.exp(-np.exp(P["log_a"]) * np.exp(P["log_dt"])[:, None])
    expected = np.empty((B, L, 8))
    for t in range(L):
        lam = a_bar[None] ** (-2 * (t + 1)) * 1.0                     # λ_0 = 1 propagated t+1 steps
        for j in range(t + 1):
            lam = lam + a_bar[None] ** (-2 * (t - j)) * lv[:, j, :, None] * k[:, j, None, :] ** 2
        y_var = (q[:, t, None, :] ** 2 / lam).sum(-1)                 # [B, M]
        silu_g = g[:, t] / (1 + np.exp(-g[:, t]))
        expected[:, t] = (y_var * silu_g ** 2) @ (P["out_proj.weight"] ** 2).T
    np.testing.assert_allclose(var.detach().numpy(), expected, rtol=1e-10, atol=1e-14)


def test_variance_non_negative_with_process_noise_float32():
    layer = make_layer(dtype=torch.float32, seed=1)
    _, var = layer(torch.randn(2, 30, 8), return_variance=True)
    assert bool(torch.isfinite(var).all()) and bool((var >= 0).all())


def test_bf16_autocast_forward_backward():
    layer = make_layer(dtype=torch.float32, seed=2)
    x = torch.randn(2, 12, 8, requires_grad=True)
    ref = layer(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, var = layer(x, return_variance=True)
    assert y.dtype == torch.bfloat16
    assert bool(torch.isfinite(y).all()) and bool((var >= 0).all())
    (y.float().sum() + var.float().sum()).backward()
    assert bool(torch.isfinite(x.grad).all())
    assert float((y.float() - ref).abs().max().detach()) < 0.1 * float(ref.abs().max().detach()) + 0.05


def test_torch_compile_matches_eager():
    layer = make_layer(dtype=torch.float32, seed=4)
    x = torch.randn(2, 6, 8)
    compiled = torch.compile(layer, backend="aot_eager", fullgraph=False)
    torch.testing.assert_close(compiled(x), layer(x), rtol=1e-5, atol=1e-6)


def test_layer_rejects_bad_inputs():
    layer = make_layer()
    with pytest.raises(BayesfiltError, match="x"):
        layer(torch.randn(2, 5, 7, dtype=torch.float64))
    with pytest.raises(BayesfiltError, match="state"):
        layer(torch.randn(2, 5, 8, dtype=torch.float64), state=(1, 2))
    with pytest.raises(BayesfiltError, match="d_model"):
        KLALayer(0)
    with pytest.raises(BayesfiltError, match="config"):
        KLALayer(8, {"d_state": 4})


BAD_VALUES = {
    "d_state": [0, 2.5, True], "expand": [0, "2"], "conv_kernel": [0, None], "dt_min": [0.0, -1.0, float("nan")],
    "dt_max": [0.0, float("inf")], "a_init": ["zeros"], "a_init_value": [0.0, -2.0], "p_init": [-0.01, "x"],
    "p_init_rule": ["3a_dt", None], "lambda_v_init": [0.0, -1.0, 1e4, float("nan"), "16"],
    "process_noise": [1, "yes"], "dt_per_state": [1, "no"], "qk_norm": [0], "gating": [None], "skip": [1.0], "precision_floor": [0.0],
    "init_precision": [-1.0, 0.0], "bias": ["no"], "backend": ["cuda", ""],
}


def test_every_config_field_is_validated():
    names = {f.name for f in dataclasses.fields(KLAConfig)}
    assert names == set(BAD_VALUES), "add bad values for new KLAConfig fields"
    for name, values in BAD_VALUES.items():
        for value in values:
            with pytest.raises(BayesfiltError, match=f"KLAConfig.{name}"):
                KLAConfig(**{name: value})
    with pytest.raises(BayesfiltError, match="dt_min"):
        KLAConfig(dt_min=0.5, dt_max=0.1)
    with pytest.raises(BayesfiltError, match="unknown fields"):
        KLAConfig.from_dict({"d_state": 4, "nope": 1})
    assert KLAConfig.from_dict(KLAConfig(d_state=3).to_dict()) == KLAConfig(d_state=3)


def test_config_defaults_are_the_papers():
    c = KLAConfig()
    assert (c.d_state, c.expand, c.conv_kernel, c.dt_min, c.dt_max, c.p_init) == (16, 2, 4, 0.001, 0.1, 0.01)
    assert c.qk_norm and c.gating and c.skip and c.process_noise


def test_filter_readout_is_the_scan_before_gate_and_projection():
    layer = make_layer(seed=6)
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    y_f, var_f = layer.filter_readout(x)
    assert y_f.shape == var_f.shape == (2, 5, layer.d_inner) and bool((var_f > 0).all())
    # with a unit gate (gating off), no skip and out_proj = identity on the first d_model channels,
    # the layer's output variance is the first channels of the filter variance
    lay = make_layer(seed=6, d_model=8, expand=1, gating=False, skip=False)
    with torch.no_grad():
        lay.out_proj.weight.copy_(torch.eye(8, dtype=torch.float64))
    _, var = lay(x, return_variance=True)
    torch.testing.assert_close(var, lay.filter_readout(x)[1])


TRITON_LAYER_SCRIPT = r'''
import os
os.environ["TRITON_INTERPRET"] = "1"
import torch
torch.set_num_threads(1)
from bayesfilt.nn import KLAConfig, KLALayer
x = torch.randn(2, 7, 4, generator=torch.Generator().manual_seed(1))
outs = {}
for be in ("reference", "triton"):
    torch.manual_seed(0)
    layer = KLALayer(4, KLAConfig(d_state=2, backend=be))
    with torch.no_grad():
        layer.p_raw.uniform_(-1, 1)
    xi = x.clone().requires_grad_(True)
    y, var = layer(xi, return_variance=True)
    (y.square().sum() + var.sum()).backward()
    with torch.no_grad():
        s = layer.init_state(2)
        y1, s = layer(x[:, :5], state=s)
        y2, s = layer(x[:, 5:6], state=s)
        y3, s = layer(x[:, 6:], state=s)
    outs[be] = [y, var, xi.grad, torch.cat([y1, y2, y3], 1)] + [p.grad for p in layer.parameters()]
errs = [float((a.detach() - b.detach()).norm() / b.detach().norm().clamp_min(1e-30))
        for a, b in zip(outs["triton"], outs["reference"])]
errs.append(float((outs["triton"][3] - outs["reference"][0].detach()).norm() / outs["reference"][0].detach().norm()))
print("MAXERR", max(errs))
'''


def test_triton_backend_layer_gradients_and_decode_under_interpreter(tmp_path):
    """The layer through backend "triton" (Triton interpreter on the CPU, in a fresh process so that
    TRITON_INTERPRET is set before triton is imported) equals backend "reference": outputs, every
    gradient, and prefill + decode against the full forward."""
    import os
    import subprocess
    import sys
    script = tmp_path / "tri.py"
    script.write_text(TRITON_LAYER_SCRIPT)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, TRITON_INTERPRET="1", CUDA_VISIBLE_DEVICES=""))
    assert proc.returncode == 0, proc.stderr[-3000:]
    err = float(proc.stdout.split("MAXERR")[-1])
    assert err < 1e-5, err


TRITON_LAYER_NO_VARIANCE_SCRIPT = r'''
import os
os.environ["TRITON_INTERPRET"] = "1"
import torch
torch.set_num_threads(1)
from bayesfilt.nn import KLAConfig, KLALayer
x = torch.randn(2, 7, 4, generator=torch.Generator().manual_seed(1))


def run(be, return_variance):
    """Output, prefill output and state, and every gradient of a loss of y (and the state) alone."""
    torch.manual_seed(0)
    layer = KLALayer(4, KLAConfig(d_state=2, backend=be))
    with torch.no_grad():
        layer.p_raw.uniform_(-1, 1)
    xi = x.clone().requires_grad_(True)
    out = layer(xi, return_variance=return_variance)
    y = out[0] if return_variance else out
    y.square().sum().backward()
    grads = [xi.grad] + [p.grad for p in layer.parameters()]
    layer.zero_grad()
    xs = x[:, :5].clone().requires_grad_(True)
    out = layer(xs, state=layer.init_state(2), return_variance=return_variance)
    y5, st = out[0], out[-1]
    (y5.square().sum() + st.kla.eta.sum()).backward()
    return [y, y5, st.kla.lam, st.kla.eta] + grads + [xs.grad] + [p.grad for p in layer.parameters()]


off, ref, on = run("triton", False), run("reference", False), run("triton", True)
errs = [float((a.detach() - b.detach()).norm() / b.detach().norm().clamp_min(1e-30)) for a, b in zip(off, ref)]
print("MAXERR", max(errs))
print("SAME", all(torch.equal(a, b) for a, b in zip(off, on)))
torch.manual_seed(0)
layer = KLALayer(4, KLAConfig(d_state=2, backend="triton"))
xc, xe = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
yc = torch.compile(layer, fullgraph=True)(xc)
yc.square().sum().backward()
ye = layer(xe)
ye.square().sum().backward()
y_err = float((yc - ye).abs().max() / ye.abs().max())
print("COMPILED", y_err, float((xc.grad - xe.grad).abs().max() / xe.grad.abs().max()))
'''


def test_triton_layer_without_variance_under_interpreter(tmp_path):
    """Without ``return_variance`` the layer's scan runs without the variance (``kla_scan(variance=False)``:
    the Triton kernels skip y_var and g_yvar). Under the interpreter (a fresh process): the output, the
    prefill's output and state and every gradient of a loss of y equal backend "reference"'s, and equal
    bit for bit those of the same layer with ``return_variance=True`` (the variance-on kernels, a zero
    g_yvar: what the layer ran before); torch.compile(fullgraph) of the layer (inductor on the CPU)
    reproduces one forward and backward."""
    import os
    import subprocess
    import sys
    script = tmp_path / "tri_novar.py"
    script.write_text(TRITON_LAYER_NO_VARIANCE_SCRIPT)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, TRITON_INTERPRET="1", CUDA_VISIBLE_DEVICES=""))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert float(out.split("MAXERR")[-1].split()[0]) < 1e-5, out
    assert out.split("SAME")[-1].split()[0] == "True", out
    y_err, g_err = (float(e) for e in out.split("COMPILED")[-1].split()[:2])
    assert y_err < 1e-5 and g_err < 1e-5, out


def test_skip_is_a_per_channel_vector_on_the_convolved_input_as_documented():
    """The skip term is ``y += skip ⊙ u`` with skip: [M] and u = SiLU(conv(z)) (before gate and
    out_proj, variance unchanged), and KLAConfig/KLALayer/docs say exactly that (it deviates from
    DESIGN.md's learned scalar times z, which the docstrings must say too)."""
    from pathlib import Path
    layer = make_layer(seed=3)
    M = layer.d_inner
    assert tuple(layer.skip.shape) == (M,)
    x = torch.randn(2, 6, 8, dtype=torch.float64)
    with torch.no_grad():
        layer.skip.copy_(torch.linspace(-1.0, 2.0, M, dtype=torch.float64))
        y, var = layer(x, return_variance=True)
        no_skip = make_layer(seed=3, skip=False)
        no_skip.load_state_dict({k: v for k, v in layer.state_dict().items() if k != "skip"})
        y0, var0 = no_skip(x, return_variance=True)
        z, gate = layer.in_proj(x).split(M, dim=-1)
        u = F.silu(F.conv1d(F.pad(z.transpose(1, 2), (layer.conv_kernel - 1, 0)), layer.conv_weight.unsqueeze(1),
                            layer.conv_bias, groups=M).transpose(1, 2))
        expected = (layer.skip * u * F.silu(gate)) @ layer.out_proj.weight.T
    torch.testing.assert_close(y - y0, expected)
    torch.testing.assert_close(var, var0)
    docs = [KLAConfig.__doc__, KLALayer.__doc__,
            (Path(__file__).resolve().parents[1] / "docs" / "kla.md").read_text()]
    for text in docs:
        assert "per channel" in text and "SiLU(conv(z))" in text and "DESIGN.md" in text, text[:200]


def test_no_process_noise_trains_finitely():
    """p = 0: lam_t grows like a^(-2t). The layer keeps its backend ("auto": torch on the CPU, the Triton
    kernels on CUDA, whose backward runs the moment form; tests/test_kla_layer_gpu.py) and trains finitely
    over a sequence where a^(-2t) overflows float32."""
    torch.manual_seed(0)
    layer = KLALayer(8, KLAConfig(d_state=4, process_noise=False, a_init="constant", a_init_value=2.0))
    x = torch.randn(2, 300, 8)
    y, y_var = layer(x, return_variance=True)
    assert torch.isfinite(y).all() and torch.isfinite(y_var).all()
    y.square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters() if p.grad is not None)
