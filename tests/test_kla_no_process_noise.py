"""KLA without process noise (p̄ = 0, the paper's ablation) in float32: no overflow.

With p̄ = 0 the precision grows like ā^(-2t) (0.9^(-2t) passes float32's range after ~420
tokens and float64's after ~3400), so the information form overflows; the torch and reference
backends then run the identical moment (covariance) form per lane (docs/math/kla.md). References:
the NumPy information-form specification in float64 where it is finite, and autograd of the
float64 sequential reference (moment form) beyond.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from bayesfilt.filters.diagonal import diagonal_information_filter  # noqa: E402
import bayesfilt.nn.functional as kla_functional  # noqa: E402
from bayesfilt.nn.functional import KLAState, kla_scan, kla_step  # noqa: E402
from bayesfilt.nn.reference import kla_scan_reference  # noqa: E402
from bayesfilt.scan.diagonal import (diagonal_filter_loop_moments, diagonal_filter_scan,  # noqa: E402
                                     diagonal_filter_scan_moments)

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def rel_rms(x, ref):
    x, ref = torch.as_tensor(np.asarray(x.detach() if hasattr(x, "detach") else x, dtype=float)), \
        torch.as_tensor(np.asarray(ref.detach() if hasattr(ref, "detach") else ref, dtype=float))
    return float((x - ref).norm() / ref.norm())


def inputs(L, B=2, M=3, S=4, a=0.9, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, L, M, generator=g, dtype=F64), 0.5 + torch.rand(B, L, M, generator=g, dtype=F64),
            torch.randn(B, L, S, generator=g, dtype=F64) / S ** 0.5, torch.randn(B, L, S, generator=g, dtype=F64),
            torch.full((M, S), a, dtype=F64), torch.zeros(M, S, dtype=F64),
            0.5 + torch.rand(B, M, S, generator=g, dtype=F64), torch.randn(B, M, S, generator=g, dtype=F64)]


@pytest.mark.parametrize("prior", [False, True])
def test_moment_form_equals_information_form_float64(prior):
    ins = [x.numpy() for x in inputs(40, seed=1)]
    ins[5] = np.random.default_rng(0).uniform(0.0, 0.2, ins[5].shape)        # p > 0 and p = 0 lanes
    ins[5][0] = 0.0
    info = diagonal_filter_scan(*ins, prior_readout=prior)
    mom = diagonal_filter_scan_moments(*ins, prior_readout=prior)
    assert rel_rms(mom.y, info.y) < 1e-12 and rel_rms(mom.y_var, info.y_var) < 1e-12
    assert rel_rms(mom.lams, 1 / info.lams) < 1e-12 and rel_rms(mom.etas, info.etas / info.lams) < 1e-12
    loop = diagonal_filter_loop_moments(*ins, prior_readout=prior)            # the time loop: final moments only
    assert rel_rms(loop.y, info.y) < 1e-12 and rel_rms(loop.y_var, info.y_var) < 1e-12
    assert rel_rms(loop.lams, 1 / info.lams[:, -1]) < 1e-12
    assert rel_rms(loop.etas, info.etas[:, -1] / info.lams[:, -1]) < 1e-12


@pytest.mark.parametrize("backend", ["torch", "reference"])
def test_p0_float32_equals_numpy_spec_where_float64_is_finite(backend):
    """L = 2000: lam reaches ~1e183, finite in float64 (the NumPy spec), far beyond float32."""
    ins = inputs(2000, B=1, M=2, S=3)
    spec = diagonal_information_filter(*[x.numpy() for x in ins[:6]], initial_state=(ins[6].numpy(), ins[7].numpy()))
    assert np.isfinite(spec.y).all() and spec.lam.max() > 1e150
    y, y_var, _ = kla_scan(*[x.float() for x in ins[:6]], initial_state=KLAState(ins[6].float(), ins[7].float()),
                           backend=backend, validate=False)
    assert torch.isfinite(y).all() and torch.isfinite(y_var).all()
    assert rel_rms(y, spec.y) < 1e-4 and rel_rms(y_var, spec.y_var) < 1e-4


@pytest.mark.parametrize("backend", ["torch", "reference", "torch-loop"])
def test_p0_a09_L4096_float32_finite_and_equal_to_float64_reference(backend, monkeypatch):
    if backend == "torch-loop":                       # the torch backend's CPU time loops
        _force_loop(monkeypatch, True)
        backend = "torch"
    ins = inputs(4096, B=1, M=2, S=3, seed=2)
    ref = kla_scan_reference(*ins)
    xs = [x.float().requires_grad_() for x in ins]
    y, y_var, st = kla_scan(*xs[:6], initial_state=KLAState(xs[6], xs[7]), backend=backend, validate=False)
    assert torch.isfinite(y).all() and torch.isfinite(y_var).all()
    assert rel_rms(y, ref[0]) < 1e-4 and rel_rms(y_var, ref[1]) < 1e-4
    assert st.lam.shape == ins[6].shape               # final state in information form, saturated at LAM_MAX
    assert torch.isfinite(st.lam).all() and torch.isfinite(st.eta).all() and float(st.lam.max()) <= 1.0001e30
    mu, mu_ref = (st.eta / st.lam).double(), ref[3] / ref[2]         # the mean mu_L kept (here ~1e-188: the
    assert float((mu - mu_ref).abs().max()) < 1e-6                   # prior mean a mu decays, no new evidence counts)
    if backend == "torch":                            # exact gradients: float64 autograd of the reference
        g = torch.Generator().manual_seed(3)
        w = [torch.randn(y.shape, generator=g, dtype=F64), torch.randn(y.shape, generator=g, dtype=F64)]
        (y * w[0].float()).sum().add((y_var * w[1].float()).sum()).backward()
        xr = [x.detach().clone().requires_grad_() for x in ins]
        yr, yvr, _, _ = kla_scan_reference(*xr)
        ((yr * w[0]).sum() + (yvr * w[1]).sum()).backward()
        for name, a, b in zip(("v", "lambda_v", "k", "q", "a_bar", "p_bar", "lam0", "eta0"), xs, xr):
            assert torch.isfinite(a.grad).all(), name
            assert rel_rms(a.grad, b.grad) < 1e-4, name


@pytest.mark.parametrize("backend", ["torch", "reference"])
def test_p0_step_chain_stays_finite(backend):
    """Prefill + decode (kla_step) from a state, float32, p = 0, past the overflow of the precision
    (lam_t ~ 0.81^(-t) leaves float32's range after ~420 tokens): every returned state is saturated
    at LAM_MAX = 1e30 with its mean kept, so the chain stays finite and equal to the float64
    reference (before, a state handed on past ~420 tokens was (inf, inf) and the next call NaN)."""
    ins = [x.float() for x in inputs(700, B=1, M=2, S=3, seed=4)]
    ref = kla_scan_reference(*[x.double() for x in ins])
    st = KLAState(ins[6], ins[7])
    ys = []
    for t in range(0, 700, 100):                      # prefill chunks through the scan, then steps
        y, _, st = kla_scan(*[x[:, t:t + 99] for x in ins[:4]], *ins[4:6], initial_state=st, backend=backend,
                            validate=False)
        ys.append(y)
        y1, _, st = kla_step(*[x[:, t + 99] for x in ins[:4]], *ins[4:6], st, backend=backend, validate=False)
        ys.append(y1[:, None])
        assert torch.isfinite(st.lam).all() and float(st.lam.max()) <= 1.0001e30
    y = torch.cat(ys, 1)
    assert torch.isfinite(y).all() and rel_rms(y, ref[0]) < 1e-4


def test_p0_layer_decodes_past_the_overflow():
    """The layer without process noise (the paper's ablation) at its default init, float32: prefill
    and token-by-token decoding equal the full forward past the precision's overflow (before the
    saturation of the state, decoding gave NaN from about token 38)."""
    from bayesfilt.nn import KLAConfig, KLALayer
    torch.manual_seed(0)
    layer = KLALayer(16, KLAConfig(d_state=16, process_noise=False))
    x = torch.randn(1, 90, 16)
    with torch.no_grad():
        full = layer(x)
        out, st = layer(x[:, :60], state=layer.init_state(1))
        outs = [out]
        for t in range(60, 90):
            o, st = layer(x[:, t:t + 1], state=st)
            outs.append(o)
    dec = torch.cat(outs, 1)
    assert torch.isfinite(dec).all()
    assert float((dec - full).abs().max()) < 1e-5 * float(full.abs().max())


def test_cli_training_without_process_noise_has_finite_losses(tmp_path, capsys):
    import json

    from bayesfilt.cli import main
    out = tmp_path / "run"
    args = ["train", "in_context_recall", "--no-process-noise", "--steps", "2", "--d-model", "8", "--d-state", "16",
            "--n-train", "16", "--n-test", "8", "--batch-size", "4", "--eval-every", "2", "--warmup", "1",
            "--device", "cpu", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["status"] == "done"
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(recs) == 2 and all(np.isfinite(r["loss"]) and np.isfinite(r["grad_norm"]) for r in recs)
    assert np.isfinite(recs[-1]["eval_loss"])


def _force_loop(monkeypatch, loop: bool):
    """The torch backend's CPU time loops (information and moment form) at any lane count, or the tree."""
    monkeypatch.setattr(kla_functional, "LOOP_MIN_LANES", 0 if loop else 2 ** 62)


@pytest.mark.parametrize("dtype,L,a", [(torch.float32, 90, 0.8), (torch.float64, 60, 0.5)])
@pytest.mark.parametrize("loop", [False, True])
def test_p0_gradient_wrt_p_torch_backend(dtype, L, a, loop, monkeypatch):
    """d/dp at p = 0: the adjoint's two terms grow like a^(-4t) and cancel (float32: 0.8 relative
    error at a = 0.8, L = 90, found in review, session 8; float64 later: -737 for 77.4 at a = 0.5,
    L = 60, session 9), so the torch backend differentiates the moment form when p has zeros and its
    gradient is wanted, in both dtypes. Against float64 autograd of the reference; the parallel tree and
    the CPU time loop alike."""
    _force_loop(monkeypatch, loop)
    ins = inputs(L, B=1, M=2, S=3, a=a, seed=5)
    xs = [x.to(dtype).requires_grad_() for x in ins[:6]]
    y, y_var, _ = kla_scan(*xs, backend="torch", validate=False)
    (y.sum() + y_var.sum()).backward()
    xr = [x.detach().clone().requires_grad_() for x in ins[:6]]
    yr, yvr, _, _ = kla_scan_reference(*xr, torch.ones(1, 2, 3, dtype=F64), torch.zeros(1, 2, 3, dtype=F64))
    (yr.sum() + yvr.sum()).backward()
    for name, a, b in zip(("v", "lambda_v", "k", "q", "a_bar", "p_bar"), xs, xr):
        assert rel_rms(a.grad, b.grad) < 1e-4, name


@pytest.mark.parametrize("L", [62, 63, 64, 65, 66])
@pytest.mark.parametrize("loop", [False, True])
def test_p0_state_finite_at_the_overflow_token(L, loop, monkeypatch):
    """a = 0.5, p = 0: lam_t ~ 4^t passes float32's range at t ~ 64. On that token y can still be
    finite while lam_L is inf; the torch backend then takes the moment form too (it returned the
    information form's inf state, and the saturation made it NaN; found in review, session 8)."""
    _force_loop(monkeypatch, loop)
    g = torch.Generator().manual_seed(L)
    ins = [torch.randn(1, L, 1, generator=g, dtype=F64), torch.ones(1, L, 1, dtype=F64),
           torch.ones(1, L, 1, dtype=F64), torch.ones(1, L, 1, dtype=F64),
           torch.full((1, 1), 0.5, dtype=F64), torch.zeros(1, 1, dtype=F64)]
    y, y_var, st = kla_scan(*[x.float() for x in ins], backend="torch", validate=False)
    ref = kla_scan_reference(*ins, torch.ones(1, 1, 1, dtype=F64), torch.zeros(1, 1, 1, dtype=F64))
    assert torch.isfinite(st.lam).all() and torch.isfinite(st.eta).all()
    assert float((y.double() - ref[0]).abs().max()) < 1e-4


@pytest.mark.parametrize("loop", [False, True])
def test_p0_gradient_through_a_saturated_final_state_is_finite(loop, monkeypatch):
    """float32, p = 0, a = 0.8, L = 200: the final variance underflows to 0 and the returned state is
    saturated at LAM_MAX. A loss through the final state's mean had NaN d/dp and inf d/d(eta0) (the
    backward divided by the underflowed variance); it now differentiates what the forward returned,
    and matches float64 autograd of the reference (whose state is not saturated there)."""
    _force_loop(monkeypatch, loop)
    ins = inputs(200, B=1, M=1, S=2, a=0.8, seed=1)
    lam0, eta0 = torch.ones(1, 1, 2, dtype=F64), torch.zeros(1, 1, 2, dtype=F64) + 0.3
    xs = [x.float().requires_grad_() for x in ins[:6]] + [lam0.float().requires_grad_(), eta0.float().requires_grad_()]
    _, _, st = kla_scan(*xs[:6], initial_state=KLAState(*xs[6:]), backend="torch", validate=False)
    (st.eta / st.lam).sum().backward()
    xr = [x.detach().clone().requires_grad_() for x in list(ins[:6]) + [lam0, eta0]]
    _, _, lamr, etar = kla_scan_reference(*xr)
    (etar / lamr).sum().backward()
    for name, a, b in zip(("p_bar", "eta0"), (xs[5], xs[7]), (xr[5], xr[7])):
        assert torch.isfinite(a.grad).all(), name
        assert rel_rms(a.grad, b.grad) < 1e-4, name


@pytest.mark.parametrize("loop", [False, True])
def test_p0_gradient_through_a_large_unsaturated_final_state(loop, monkeypatch):
    """float32, p = 0, a = 0.5, L = 40: lam_L ~ 4^40 ~ 1e24 is representable and not saturated, but the
    moment-form backward's cotangent of the final variance, -(g_lam + g_eta mu) lam_L^2 ~ 1e48, is not: a loss
    through the final state gave inf and NaN gradients for every input although the true ones (but d/dp) are
    ~1e24 at most. They now match float64 autograd of the reference; d/dp (~ -lam_L^2 here) is inf of the
    right sign where the float64 value passes float32's range."""
    _force_loop(monkeypatch, loop)
    ins = inputs(40, B=1, M=2, S=2, a=0.5, seed=3)
    xs = [x.float().requires_grad_() for x in ins]
    _, _, st = kla_scan(*xs[:6], initial_state=KLAState(*xs[6:]), backend="torch", validate=False)
    assert float(st.lam.detach().min()) > 1e20 and torch.isfinite(st.lam).all()
    (st.lam.sum() + st.eta.sum()).backward()
    xr = [x.detach().clone().requires_grad_() for x in ins]
    _, _, lamr, etar = kla_scan_reference(*xr)
    (lamr.sum() + etar.sum()).backward()
    names = ("v", "lambda_v", "k", "q", "a_bar", "p_bar", "lam0", "eta0")
    for name, a, b in zip(names, xs, xr):
        if name == "q":                                  # the state does not depend on q
            assert float(a.grad.abs().max()) == 0.0
            continue
        if name == "p_bar":
            big = b.grad.abs() > torch.finfo(torch.float32).max
            assert bool(big.any()), "the test wants d/dp past float32's range somewhere"
            assert torch.equal(torch.isinf(a.grad), big) and torch.equal(a.grad[big].sign(), b.grad[big].sign())
            a, b = a.grad[~big], b.grad[~big]
            assert a.numel() == 0 or rel_rms(a, b) < 1e-4, name
            continue
        assert torch.isfinite(a.grad).all(), name
        assert rel_rms(a.grad, b.grad) < 1e-4, name


@pytest.mark.parametrize("loop", [False, True])
@pytest.mark.parametrize("dtype, L, scale", [(torch.float32, 55, 1e-30), (F64, 405, 1e-240)])
def test_p0_gradient_through_an_information_form_state_past_lam_max(loop, dtype, L, scale, monkeypatch):
    """p = 0, a = 0.5: the information form's lam_L (float32: 2e33 at L = 55; float64: 1e244 at L = 405) is finite
    but past LAM_MAX, so the torch backend's forward keeps the information form and the state comes back saturated.
    A loss through the saturated eta_L: d/dp was 1.0e-1 (float32) and 1.8e-2 (float64) off, since the backward
    took the state for the moment form's (docs/math/kla.md §6, found in session 14). Now every gradient matches
    autograd of the reference in the same dtype (which saturates the same way)."""
    _force_loop(monkeypatch, loop)
    ins = inputs(L, B=1, M=2, S=2, a=0.5, seed=3)
    g = torch.Generator().manual_seed(9)
    w = [torch.randn(1, L, 2, generator=g, dtype=F64).to(dtype), torch.randn(1, 2, 2, generator=g, dtype=F64).to(dtype)]
    xs = [x.to(dtype).requires_grad_() for x in ins]
    with torch.no_grad():
        info = diagonal_filter_scan(*[x.detach() for x in xs])
    assert torch.isfinite(info.lams[:, -1]).all() and bool((info.lams[:, -1] > kla_functional.lam_max(dtype)).all())
    y, _, st = kla_scan(*xs[:6], initial_state=KLAState(*xs[6:]), backend="torch", validate=False)
    ((y * w[0]).sum() + scale * (st.eta * w[1]).sum()).backward()
    xr = [x.detach().clone().requires_grad_() for x in xs]
    yr, _, _, etar = kla_scan_reference(*xr)
    ((yr * w[0]).sum() + scale * (etar * w[1]).sum()).backward()
    for name, a, b in zip(("v", "lambda_v", "k", "q", "a_bar", "p_bar", "lam0", "eta0"), xs, xr):
        assert rel_rms(a.grad, b.grad) < 1e-4, name


@pytest.mark.parametrize("loop", [False, True])
def test_p0_final_state_cotangent_below_saturation_float32(loop, monkeypatch):
    """float32, p = 0, a = 0.5, L = 48: lam_L = 1.3e29, below saturation. A cotangent on the final state enters the
    moment-form adjoint as two large terms that cancel (docs/math/kla.md §7); in float32 d/dp came out 0.26 off.
    The backward now runs in float64 whenever the final state has a cotangent: every gradient matches float64
    autograd of the reference at the same (float32-rounded) inputs."""
    _force_loop(monkeypatch, loop)
    ins = inputs(48, B=1, M=2, S=2, a=0.5, seed=3)
    g = torch.Generator().manual_seed(9)
    w = [torch.randn(1, 48, 2, generator=g, dtype=F64), torch.randn(1, 2, 2, generator=g, dtype=F64)]
    xs = [x.float().requires_grad_() for x in ins]
    y, _, st = kla_scan(*xs[:6], initial_state=KLAState(*xs[6:]), backend="torch", validate=False)
    assert float(st.lam.detach().max()) < 1e30
    ((y * w[0].float()).sum() + 1e-30 * (st.eta * w[1].float()).sum()).backward()
    xr = [x.detach().double().requires_grad_() for x in xs]
    yr, _, _, etar = kla_scan_reference(*xr)
    ((yr * w[0]).sum() + 1e-30 * (etar * w[1]).sum()).backward()
    for name, a, b in zip(("v", "lambda_v", "k", "q", "a_bar", "p_bar", "lam0", "eta0"), xs, xr):
        assert torch.isfinite(a.grad).all() and rel_rms(a.grad, b.grad) < 1e-4, name


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_saturation_adjoint_is_autograd_of_the_saturation(dtype):
    """``_saturation_adjoint`` (the backward's chain rule through the saturation of the information form's state,
    (lam, eta) -> (lam s, eta s), s = min(1, LAM_MAX / lam)) against float64 autograd of the same map written in
    scaled variables lam = LAM_MAX l, where nothing overflows (autograd of ``_saturated`` itself forms lam^2, which
    overflows at these magnitudes and drops ds/dlam), with lanes below, at and above LAM_MAX."""
    sat = kla_functional.lam_max(dtype)
    g = torch.Generator().manual_seed(2)
    ell = torch.tensor([1e-6, 0.5, 1.0, 2.0, 1e3, 3.0], dtype=F64)              # lam / LAM_MAX
    eta_s = torch.randn(6, generator=g, dtype=F64) * ell                      # eta / LAM_MAX
    g_lam, g_eta = (torch.randn(6, generator=g, dtype=F64) for _ in range(2))  # cotangents times LAM_MAX
    leaves = [ell.clone().requires_grad_(), eta_s.clone().requires_grad_()]
    s = torch.where(leaves[0] > 1, 1 / leaves[0], torch.ones_like(leaves[0]))
    lam_out, eta_out = leaves[0] * s, leaves[1] * s                          # over LAM_MAX
    want = torch.autograd.grad((lam_out * g_lam).sum() + (eta_out * g_eta).sum(), leaves)
    got = kla_functional._saturation_adjoint((ell * sat).to(dtype), (eta_s * sat).to(dtype), (g_lam / sat).to(dtype),
                                             (g_eta / sat).to(dtype))
    for a, b in zip(got, want):                     # the same loss in both variables: d/dlam = (d/dl) / LAM_MAX
        assert torch.allclose(a.double() * sat, b, rtol=1e-5 if dtype == torch.float32 else 1e-12, atol=0), (a, b)
