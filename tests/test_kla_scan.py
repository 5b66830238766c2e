"""Parallel forms and the public API of the KLA scan against the sequential references.

Chain: NumPy float64 reference (bayesfilt.filters.diagonal, itself tested against the classical
filters in test_kla_reference.py) = Möbius/affine scans on NumPy and torch (any schedule) to
1e-10; the adjoint backward = autograd of the sequential torch reference to 1e-10 in float64;
float32 within the promised tolerance (bayesfilt.tolerances) of float64.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from bayesfilt import BayesfiltError  # noqa: E402
from bayesfilt.filters.diagonal import diagonal_information_filter  # noqa: E402
from bayesfilt.nn.functional import (KLAScanFunction, KLAState, check_backends, kla_scan,  # noqa: E402
                                     kla_step, random_inputs)
from bayesfilt.nn.reference import kla_scan_reference  # noqa: E402
import bayesfilt.nn.functional as kla_functional  # noqa: E402
from bayesfilt.scan.diagonal import (affine_combine, diagonal_filter_adjoint,  # noqa: E402
                                     diagonal_filter_adjoint_loop, diagonal_filter_loop, diagonal_filter_scan,
                                     mobius_combine)
from bayesfilt.tolerances import tolerance  # noqa: E402

F64 = torch.float64
GRAD_NAMES = ("v", "lambda_v", "k", "q", "a_bar", "p_bar", "lam0", "eta0")


def rel_rms(x, ref):
    x = np.asarray(x.detach().double() if hasattr(x, "detach") else x, dtype=np.float64)
    ref = np.asarray(ref.detach().double() if hasattr(ref, "detach") else ref, dtype=np.float64)
    return float(np.linalg.norm(x - ref) / max(np.linalg.norm(ref), 1e-300))


def max_rel(x, ref):
    x = np.asarray(x.detach() if hasattr(x, "detach") else x, dtype=np.float64)
    ref = np.asarray(ref.detach() if hasattr(ref, "detach") else ref, dtype=np.float64)
    return float(np.abs(x - ref).max() / max(np.abs(ref).max(), 1e-300))


def numpy_ref(ins, prior=False):
    a = [x.detach().double().numpy() for x in ins]
    return diagonal_information_filter(*a[:6], (a[6], a[7]), prior_readout=prior)


# ---------------------------------------------------------------------------------- combine laws
def test_combines_are_associative_and_compose_maps():
    rng = np.random.default_rng(0)
    mats = [tuple(rng.uniform(0.1, 2.0, 5) for _ in range(4)) for _ in range(3)]
    left = mobius_combine(mobius_combine(mats[0], mats[1]), mats[2])
    right = mobius_combine(mats[0], mobius_combine(mats[1], mats[2]))
    lam = rng.uniform(0.1, 3.0, 5)

    def apply(m, x):
        return (m[0] * x + m[1]) / (m[2] * x + m[3])

    for l_, r_ in zip(left, right):       # same map: equal up to the (trace) normalisation, which is fixed
        np.testing.assert_allclose(l_, r_, rtol=1e-13)
    np.testing.assert_allclose(apply(left, lam), apply(mats[2], apply(mats[1], apply(mats[0], lam))), rtol=1e-13)
    aff = [(rng.standard_normal(5), rng.standard_normal(5)) for _ in range(3)]
    l2 = affine_combine(affine_combine(aff[0], aff[1]), aff[2])
    r2 = affine_combine(aff[0], affine_combine(aff[1], aff[2]))
    x = rng.standard_normal(5)
    np.testing.assert_allclose(l2[0] * x + l2[1], aff[2][0] * (aff[1][0] * (aff[0][0] * x + aff[0][1]) + aff[1][1])
                               + aff[2][1], rtol=1e-12)
    np.testing.assert_allclose(l2[1], r2[1], rtol=1e-12)


# ---------------------------------------------------------------------------------- float64 parity
SHAPES = [(1, 1, 2, 3), (2, 3, 3, 5), (3, 64, 2, 7), (2, 1000, 2, 3), (1, 4097, 2, 3)]


def _force_loop(monkeypatch, loop: bool):
    """Make the torch backend on the CPU take the time loop (loop=True) or the tree (False) at any lane count."""
    monkeypatch.setattr(kla_functional, "LOOP_MIN_LANES", 0 if loop else 2 ** 62)


@pytest.mark.parametrize("B, L, M, S", SHAPES)
@pytest.mark.parametrize("initial", [True, False])
@pytest.mark.parametrize("loop", [False, True])
def test_parallel_forms_equal_reference_float64(B, L, M, S, initial, loop, monkeypatch):
    _force_loop(monkeypatch, loop)
    ins = random_inputs(B, L, M, S, seed=L + B, with_initial_state=initial)
    prior = L % 2 == 0                                  # both readouts across the matrix
    ref = numpy_ref(ins, prior)
    a = [x.numpy() for x in ins]
    schedules = ["tree", "chunked"] + (["sequential"] if L <= 64 else [])
    for sched in schedules:
        out = diagonal_filter_scan(*a, prior_readout=prior, schedule=sched, chunk=7 if L > 7 else None)
        for got, want in ((out.y, ref.y), (out.y_var, ref.y_var), (out.lams, ref.lams), (out.etas, ref.etas)):
            assert max_rel(got, want) < 1e-10, sched
    out = diagonal_filter_loop(*a, prior_readout=prior, paths=True)            # the time loop, paths kept
    for got, want in ((out.y, ref.y), (out.y_var, ref.y_var), (out.lams, ref.lams), (out.etas, ref.etas)):
        assert max_rel(got, want) < 1e-10, "loop"
    init = KLAState(ins[6], ins[7]) if initial else None
    for backend in ("torch", "reference"):
        y, y_var, st = kla_scan(*ins[:6], initial_state=init, prior_readout=prior, backend=backend)
        assert y.dtype == F64 and st.lam.dtype == F64
        for got, want in ((y, ref.y), (y_var, ref.y_var), (st.lam, ref.lam), (st.eta, ref.eta)):
            assert max_rel(got, want) < 1e-10, backend


# ---------------------------------------------------------------------------------- gradients
def _grads(fn, ins, cot):
    ins = [x.detach().clone().requires_grad_() for x in ins]
    y, y_var, lam, eta = fn(*ins)
    loss = sum((o * c).sum() for o, c in zip((y, y_var, lam, eta), cot))
    return torch.autograd.grad(loss, ins)


def _cot(B, L, M, S, seed, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g, dtype=F64).to(dtype) for s in ((B, L, M), (B, L, M), (B, M, S), (B, M, S))]


@pytest.mark.parametrize("B, L, M, S", [(1, 1, 2, 3), (2, 3, 3, 5), (2, 64, 2, 7), (1, 300, 2, 3)])
@pytest.mark.parametrize("prior", [False, True])
@pytest.mark.parametrize("loop", [False, True])
def test_adjoint_equals_autograd_of_reference_float64(B, L, M, S, prior, loop, monkeypatch):
    _force_loop(monkeypatch, loop)
    ins = random_inputs(B, L, M, S, seed=2 * L + prior)
    cot = _cot(B, L, M, S, seed=L)
    want = _grads(lambda *x: kla_scan_reference(*x, prior_readout=prior), ins, cot)

    def via_api(*x):
        y, y_var, st = kla_scan(*x[:6], initial_state=KLAState(x[6], x[7]), prior_readout=prior, backend="torch")
        return y, y_var, st.lam, st.eta

    for fn in (via_api, lambda *x: KLAScanFunction.apply(*x, prior)):
        got = _grads(fn, ins, cot)
        for name, g, w in zip(GRAD_NAMES, got, want):
            assert rel_rms(g, w) < 1e-10, name
    # the adjoint as plain NumPy (array-generic code) agrees too
    adjoint = diagonal_filter_adjoint_loop if loop else diagonal_filter_adjoint
    npg = adjoint(*[x.numpy() for x in ins], *[c.numpy() for c in cot], prior_readout=prior)
    for name, g, w in zip(GRAD_NAMES, npg, want):
        assert rel_rms(g, w) < 1e-10, name
    # no upstream gradient given for a readout or the final state (None) is a zero one
    npg = adjoint(*[x.numpy() for x in ins], cot[0].numpy(), None, prior_readout=prior)
    want = _grads(lambda *x: kla_scan_reference(*x, prior_readout=prior), ins, [cot[0]] + [c * 0 for c in cot[1:]])
    for name, g, w in zip(GRAD_NAMES, npg, want):
        assert rel_rms(g, w) < 1e-10, name


def test_gradcheck_custom_op_and_function():
    for prior in (False, True):
        args = [x.requires_grad_() for x in random_inputs(1, 5, 2, 3, seed=5)]

        def f(*x):
            y, y_var, st = kla_scan(*x[:6], initial_state=KLAState(x[6], x[7]), prior_readout=prior, backend="torch")
            return y, y_var, st.lam, st.eta

        assert torch.autograd.gradcheck(f, args)
        assert torch.autograd.gradcheck(lambda *x: KLAScanFunction.apply(*x, prior), args)


def test_gradient_of_unused_outputs_and_no_initial_state():
    """Autograd passes None for unused outputs; lam_0 = 1, eta_0 = 0 constants get no gradient."""
    ins = [x.requires_grad_() for x in random_inputs(2, 20, 3, 4, seed=9)[:6]]
    y, _, _ = kla_scan(*ins, backend="torch")
    g = torch.autograd.grad(y.sum(), ins)
    ref_in = [x.detach().clone().requires_grad_() for x in ins]
    yr, _, _ = kla_scan(*ref_in, backend="reference")
    gr = torch.autograd.grad(yr.sum(), ref_in)
    for name, a, b in zip(GRAD_NAMES, g, gr):
        assert rel_rms(a, b) < 1e-10, name


def test_custom_op_opcheck():
    ins = list(random_inputs(1, 6, 2, 3, seed=1))
    torch.library.opcheck(torch.ops.bayesfilt.kla_scan.default, (*[x.requires_grad_() for x in ins], False))
    cot = _cot(1, 6, 2, 3, seed=2)
    torch.library.opcheck(torch.ops.bayesfilt.kla_scan_backward.default,
                          (*[x.detach() for x in ins], *cot, True))


def test_torch_compile_gives_equal_results():
    ins = random_inputs(2, 40, 3, 4, seed=4, dtype=torch.float32)

    def f(v, lv, k, q, a, p, lam0, eta0):
        y, y_var, st = kla_scan(v, lv, k, q, a, p, initial_state=KLAState(lam0, eta0), backend="torch")
        return (y * 2).sum() + y_var.mean() + st.lam.sum() + st.eta.sum()

    eager_in = [x.clone().requires_grad_() for x in ins]
    comp_in = [x.clone().requires_grad_() for x in ins]
    want = f(*eager_in)
    want.backward()
    torch._dynamo.reset()
    got = torch.compile(f, fullgraph=True, backend="aot_eager")(*comp_in)
    got.backward()
    assert torch.allclose(got, want, rtol=1e-6)
    for a, b in zip(comp_in, eager_in):
        assert torch.allclose(a.grad, b.grad, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------------------------- float32
@pytest.mark.parametrize("B, L, M, S, initial", [(2, 1, 3, 5, True), (2, 3, 2, 3, False), (3, 64, 4, 6, True),
                                                 (2, 1000, 2, 3, False), (1, 4097, 3, 5, True)])
@pytest.mark.parametrize("loop", [False, True])
def test_float32_within_tolerance_of_float64(B, L, M, S, initial, loop, monkeypatch):
    _force_loop(monkeypatch, loop)
    ins64 = random_inputs(B, L, M, S, seed=11 + L, with_initial_state=initial)
    ins32 = [x.float() for x in ins64]
    rounded = [x.double() for x in ins32]              # the float64 reference sees the same (rounded) inputs
    cot = _cot(B, L, M, S, seed=3)
    tol = tolerance("kla_scan", "torch", "float32").bound
    prior = L == 64
    ref = kla_scan_reference(*rounded, prior_readout=prior)
    gref = _grads(lambda *x: kla_scan_reference(*x, prior_readout=prior), rounded, cot)

    def f(*x):
        y, y_var, st = kla_scan(*x[:6], initial_state=KLAState(x[6], x[7]), prior_readout=prior, backend="torch")
        return y, y_var, st.lam, st.eta

    got = f(*ins32)
    assert got[0].dtype == torch.float32 and got[2].dtype == torch.float32
    for o, r in zip(got, ref):
        assert rel_rms(o, r) < tol
    for name, g, w in zip(GRAD_NAMES, _grads(f, ins32, [c.float() for c in cot]), gref):
        assert rel_rms(g, w) < tol, name


@pytest.mark.slow
def test_float32_long_sequence_65536():
    """L = 65536: outputs against the NumPy reference, gradients against the float64 adjoint
    (itself equal to autograd of the reference above)."""
    B, L, M, S = 1, 65536, 2, 3
    ins32 = [x.float() for x in random_inputs(B, L, M, S, seed=7)]
    rounded = [x.double() for x in ins32]
    tol = tolerance("kla_scan", "torch", "float32").bound
    ref = numpy_ref(rounded)

    def f(*x):
        y, y_var, st = kla_scan(*x[:6], initial_state=KLAState(x[6], x[7]), backend="torch")
        return y, y_var, st.lam, st.eta

    cot = _cot(B, L, M, S, seed=1)
    got = f(*ins32)
    for o, r in zip(got, (ref.y, ref.y_var, ref.lam, ref.eta)):
        assert rel_rms(o, r) < tol
    g32 = _grads(f, ins32, [c.float() for c in cot])
    g64 = _grads(f, rounded, cot)
    for name, g, w in zip(GRAD_NAMES, g32, g64):
        assert rel_rms(g, w) < tol, name


# ---------------------------------------------------------------------------------- extremes
def _extreme(L, a=None, p=None, lv_scale=1.0, M=2, S=3, seed=0):
    ins = list(random_inputs(1, L, M, S, seed=seed))
    if a is not None:
        ins[4] = torch.full((M, S), a, dtype=F64)
    if p is not None:
        ins[5] = torch.full((M, S), p, dtype=F64)
    ins[1] = ins[1] * lv_scale
    return [x.float() for x in ins]


@pytest.mark.parametrize("L, a, p, lv_scale", [
    (65536, 1.0, 0.0, 1.0),          # no forgetting: lam_L ~ sum phi grows linearly, must stay finite
    (4097, 1.0, 0.0, 1e6),           # no forgetting, huge precision
    (4097, 1e-3, 1e-2, 1.0),         # a near 0
    (4097, 1.0 - 1e-6, 1e-4, 1.0),   # a near 1
    (4097, 0.9, 0.05, 1e6),          # huge lambda_v
    (4097, 0.9, 0.05, 1e-6),         # tiny lambda_v
    (300, 0.97, 0.0, 1.0),           # p = 0, a < 1: lam grows like a^(-2t) (finite at this L)
])
@pytest.mark.parametrize("loop", [False, True])
def test_extreme_inputs_float32_finite_and_accurate(L, a, p, lv_scale, loop, monkeypatch):
    _force_loop(monkeypatch, loop)
    ins32 = _extreme(L, a, p, lv_scale)
    ref = numpy_ref([x.double() for x in ins32])
    ins = [x.clone().requires_grad_() for x in ins32]
    y, y_var, st = kla_scan(*ins[:6], initial_state=KLAState(ins[6], ins[7]), backend="torch")
    for o, r in ((y, ref.y), (y_var, ref.y_var), (st.lam, ref.lam), (st.eta, ref.eta)):
        assert torch.isfinite(o).all()
        assert rel_rms(o, r) < tolerance("kla_scan", "torch", "float32").bound
    (y.sum() + y_var.sum() + st.lam.sum() + st.eta.sum()).backward()
    for x in ins:
        assert torch.isfinite(x.grad).all()


def _spy(monkeypatch, *names) -> list:
    """Wrap these functions of bayesfilt.nn.functional so that each call appends its name to the returned list."""
    calls = []
    for name in names:
        real = getattr(kla_functional, name)
        monkeypatch.setattr(kla_functional, name, lambda *a, _real=real, _name=name, **kw: calls.append(_name)
                            or _real(*a, **kw))
    return calls


def _torch_api(*x):
    """kla_scan's torch backend from an explicit initial state: (y, y_var, lam_L, eta_L)."""
    y, y_var, st = kla_scan(*x[:6], initial_state=KLAState(x[6], x[7]), backend="torch")
    return y, y_var, st.lam, st.eta


def test_cpu_dispatch_takes_the_loop_from_loop_min_lanes(monkeypatch):
    """The torch backend on the CPU runs the time loop (forward and adjoint) at >= LOOP_MIN_LANES lanes and the tree
    below; both give the reference's outputs and gradients."""
    calls = _spy(monkeypatch, "diagonal_filter_loop", "diagonal_filter_adjoint_loop", "diagonal_filter_scan",
                 "diagonal_filter_adjoint")
    lanes = kla_functional.LOOP_MIN_LANES
    for B, M, S, want in ((2, lanes // 32, 16, "loop"), (1, lanes // 32 - 1, 32, "tree")):
        calls.clear()
        ins = random_inputs(B, 5, M, S, seed=B)
        cot = _cot(B, 5, M, S, seed=B)
        got = _grads(_torch_api, ins, cot)
        ref = _grads(kla_scan_reference, ins, cot)
        for name, g, w in zip(GRAD_NAMES, got, ref):
            assert rel_rms(g, w) < 1e-10, name
        # the forward, then the backward's recomputed paths and the adjoint
        loops = ["diagonal_filter_loop", "diagonal_filter_loop", "diagonal_filter_adjoint_loop"]
        trees = ["diagonal_filter_scan", "diagonal_filter_scan", "diagonal_filter_adjoint"]
        assert calls == (loops if want == "loop" else trees), calls
    # off the CPU (CUDA; here the meta device stands in for it) the tree stays at any lane count
    for dev, loop in (("cpu", True), ("meta", False)):
        v, k = torch.empty(2, 5, lanes // 32, device=dev), torch.empty(2, 5, 16, device=dev)
        assert kla_functional._use_loop(v, k) == loop, dev


def test_range_overflow_saturates_the_state():
    """p = 0, a = 1e-3: lam_t >= a^(-2t) leaves float32 after ~6 tokens (docs/math/kla.md, Ranges
    and section 6). The readouts come from the moment form and the returned state is saturated at
    LAM_MAX (it raised a range error before: the state was inf), with the float64 run's readouts."""
    from bayesfilt.nn.reference import LAM_MAX
    ins = _extreme(20, 1e-3, 0.0)
    y, y_var, st = kla_scan(*ins[:6], initial_state=KLAState(ins[6], ins[7]), backend="torch")
    assert torch.isfinite(st.lam).all() and torch.isfinite(st.eta).all()
    assert float(st.lam.max()) <= LAM_MAX[torch.float32] * 1.0001
    y64, yv64, st64 = kla_scan(*[x.double() for x in ins[:6]], initial_state=KLAState(ins[6].double(),
                                                                                         ins[7].double()),
                               backend="torch")                      # float64 holds it at this L
    assert torch.isfinite(y64).all() and torch.isfinite(st64.lam).all()
    assert rel_rms(y, y64) < 1e-4 and rel_rms(y_var, yv64) < 1e-4


# ---------------------------------------------------------------------------------- dtypes, step
def test_bfloat16_inputs_use_float32_state():
    ins = [x.to(torch.bfloat16) for x in random_inputs(2, 50, 3, 4, seed=2)]
    y, y_var, st = kla_scan(*ins[:6], initial_state=KLAState(ins[6], ins[7]), backend="torch")
    assert y.dtype == torch.bfloat16 and y_var.dtype == torch.bfloat16 and st.lam.dtype == torch.float32
    ref = numpy_ref([x.double() for x in ins])
    tol = tolerance("kla_scan", "torch", "bfloat16").bound
    for o, r in ((y, ref.y), (y_var, ref.y_var), (st.lam, ref.lam), (st.eta, ref.eta)):
        assert rel_rms(o.float(), r) < tol


def test_step_chain_equals_scan():
    ins = random_inputs(2, 12, 3, 4, seed=6)
    y, y_var, st = kla_scan(*ins[:6], initial_state=KLAState(ins[6], ins[7]), backend="torch", prior_readout=True)
    state = KLAState(ins[6], ins[7])
    for t in range(12):
        yt, yvt, state = kla_step(ins[0][:, t], ins[1][:, t], ins[2][:, t], ins[3][:, t], ins[4], ins[5], state,
                                  prior_readout=True)
        assert max_rel(yt, y[:, t]) < 1e-12 and max_rel(yvt, y_var[:, t]) < 1e-12
    assert max_rel(state.lam, st.lam) < 1e-12 and max_rel(state.eta, st.eta) < 1e-12


def test_check_backends_rows_pass_on_cpu(monkeypatch):
    # another test module in the same worker may have set TRITON_INTERPRET=1 for its kernels
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    for dtype in (torch.float32, torch.float64):
        rows = check_backends(shape=(2, 70, 3, 5), dtype=dtype)
        assert {r.backend for r in rows} == {"reference", "torch"}
        assert len(rows) == 2 * 12
        assert all(r.passed for r in rows), [r for r in rows if not r.passed]
    rows = check_backends(["triton"], shape=(1, 4, 2, 3))       # CPU tensors: triton unavailable, one row says so
    assert len(rows) == 1 and np.isnan(rows[0].error) and "triton" in rows[0].note
    assert rows[0].passed is None                                # unavailable, not failed


def test_flags_are_bools():
    """prior_readout="no" was read as True; validate likewise (and variance, a kla_scan flag)."""
    from bayesfilt.errors import BayesfiltError
    ins = random_inputs(1, 4, 2, 3, dtype=torch.float32)
    with pytest.raises(BayesfiltError, match="variance"):
        kla_scan(*ins[:6], variance="no")
    for kw in ({"prior_readout": "no"}, {"validate": "no"}):
        with pytest.raises(BayesfiltError, match=next(iter(kw))):
            kla_scan(*ins[:6], **kw)
        with pytest.raises(BayesfiltError, match=next(iter(kw))):
            kla_step(ins[0][:, 0], ins[1][:, 0], ins[2][:, 0], ins[3][:, 0], ins[4], ins[5],
                     KLAState(ins[6], ins[7]), **kw)


@pytest.mark.parametrize("fault", ["nan", "raise"])
def test_check_reports_a_backend_that_runs_and_fails(monkeypatch, capsys, fault):
    """A backend whose scan returns NaN (a named error with validate=True) or raises is a failed row
    and `bayesfilt check` exits 1; before, it was reported like an unavailable backend (error NaN,
    no verdict), its other rows vanished and the exit code was 0."""
    import bayesfilt.nn.functional as F
    from bayesfilt.cli import main
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    real = F._forward_raw

    def broken(*args, **kwargs):
        if fault == "raise":
            raise F.value_error("v", "made the scan fail", "nothing: a test")
        y, y_var, lam, eta = real(*args, **kwargs)
        return y * float("nan"), y_var, lam, eta

    monkeypatch.setattr(F, "_forward_raw", broken)
    rows = check_backends(["reference", "torch"], shape=(1, 8, 2, 3))
    torch_rows = [r for r in rows if r.backend == "torch"]
    assert len(torch_rows) == 1 and torch_rows[0].passed is False and torch_rows[0].note
    assert all(r.passed for r in rows if r.backend == "reference")
    assert main(["check", "--T", "20"]) == 1
    assert "raised:" in capsys.readouterr().out


# ---------------------------------------------------------------------------------- bad inputs
def _good():
    return dict(zip(("v", "lambda_v", "k", "q", "a_bar", "p_bar"), random_inputs(1, 4, 2, 3, dtype=torch.float32)[:6]))


@pytest.mark.parametrize("change, arg", [
    (lambda kw: kw.update(v=kw["v"][0]), "v"),
    (lambda kw: kw.update(lambda_v=kw["lambda_v"][:, :3]), "lambda_v"),
    (lambda kw: kw.update(k=kw["k"][:, :2]), "k"),
    (lambda kw: kw.update(q=kw["q"][..., :2]), "q"),
    (lambda kw: kw.update(a_bar=kw["a_bar"].T), "a_bar"),
    (lambda kw: kw.update(p_bar=kw["p_bar"][:1]), "p_bar"),
    (lambda kw: kw.update(v=kw["v"].to(torch.int64)), "v"),
    (lambda kw: kw.update(k=kw["k"].numpy()), "k"),
    (lambda kw: kw.update(a_bar=kw["a_bar"].double()), "a_bar"),
    (lambda kw: kw.update(q=kw["q"].to("meta")), "q"),
    (lambda kw: kw.update(lambda_v=-kw["lambda_v"]), "lambda_v"),
    (lambda kw: kw.update(a_bar=kw["a_bar"] * 0), "a_bar"),
    (lambda kw: kw.update(a_bar=kw["a_bar"] + 1), "a_bar"),
    (lambda kw: kw.update(p_bar=kw["p_bar"] - 1), "p_bar"),
    (lambda kw: kw.update(v=kw["v"] * float("nan")), "v"),
    (lambda kw: kw.update(k=kw["k"] * float("inf")), "k"),
    (lambda kw: kw.update(initial_state=KLAState(torch.zeros(1, 2, 3), torch.zeros(1, 2, 3))), "initial_state.lam"),
    (lambda kw: kw.update(initial_state=KLAState(torch.ones(1, 2, 2), torch.zeros(1, 2, 3))), "initial_state.lam"),
    (lambda kw: kw.update(initial_state=torch.ones(1, 2, 3)), "initial_state"),
    (lambda kw: kw.update(backend="cuda"), "backend"),
    (lambda kw: kw.update(backend="triton"), "triton"),
])
def test_kla_scan_rejects_bad_inputs(change, arg, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)   # the triton case expects CPU tensors to be refused
    kw = _good()
    change(kw)
    with pytest.raises(BayesfiltError, match=arg):
        kla_scan(**kw)


def test_kla_step_rejects_bad_inputs():
    kw = _good()
    args = [kw["v"][:, 0], kw["lambda_v"][:, 0], kw["k"][:, 0], kw["q"][:, 0], kw["a_bar"], kw["p_bar"]]
    state = KLAState(torch.ones(1, 2, 3), torch.zeros(1, 2, 3))
    kla_step(*args, state)                                        # valid
    with pytest.raises(BayesfiltError, match="state.lam"):
        kla_step(*args, KLAState(-state.lam, state.eta))
    with pytest.raises(BayesfiltError, match="v"):
        kla_step(kw["v"], *args[1:], state)
    with pytest.raises(BayesfiltError, match="state"):
        kla_step(*args, (state.lam,))


@pytest.mark.parametrize("backend", ["reference", "torch"])
@pytest.mark.parametrize("prior", [False, True])
def test_variance_off_returns_none_and_the_same_rest(backend, prior):
    """``variance=False``: y_var is None; y, the final state and the gradients of a loss of them are
    those of ``variance=True`` bit for bit (these backends compute y_var and drop it; the Triton
    kernels skip it: tests/test_kla_triton.py)."""
    ins = random_inputs(2, 9, 3, 4, dtype=torch.float32, seed=5, with_initial_state=True)
    runs = []
    for variance in (True, False):
        xs = [x.detach().clone().requires_grad_() for x in ins]
        y, y_var, st = kla_scan(*xs[:6], initial_state=KLAState(xs[6], xs[7]), prior_readout=prior,
                                variance=variance, backend=backend)
        assert (y_var is None) == (not variance)
        loss = y.square().sum() + st.lam.sum() + st.eta.sum()
        runs.append([y, st.lam, st.eta] + list(torch.autograd.grad(loss, xs)))
    for a, b in zip(*runs):
        assert torch.equal(a, b)


def test_check_command_covers_the_cpu_loop(monkeypatch):
    """`bayesfilt check` has rows for the torch backend's time loop (LOOP_MIN_LANES lanes on the CPU) beside the
    default shape's tree rows; the loop rows come from the loop (a broken loop fails them, not the tree rows)."""
    from bayesfilt.cli.check import kla_rows
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    rows = kla_rows()
    loop = [r for r in rows if r.variant.startswith("cpu loop: ")]
    assert len(loop) == 12 and all(r.backend == "torch" and r.passed for r in loop)
    real = kla_functional.diagonal_filter_loop

    def broken(*args, **kwargs):
        out = real(*args, **kwargs)
        return out._replace(y=out.y * 1.01)

    monkeypatch.setattr(kla_functional, "diagonal_filter_loop", broken)
    rows = kla_rows()
    assert [r.variant for r in rows if r.passed is False] == ["cpu loop: y"]


@pytest.mark.parametrize("loop", [False, True])
def test_moment_form_takes_the_loop_with_the_information_form(loop, monkeypatch):
    """Where the torch backend falls back to the moment form (p = 0 with its gradient wanted; an overflowing
    information form), it runs the moment form and its adjoint (docs/math/kla.md §7) as time loops when the
    information form runs as one, else as the tree; the gradients are float64 autograd of the reference's either
    way."""
    _force_loop(monkeypatch, loop)
    names = ("diagonal_filter_loop_moments", "diagonal_filter_scan_moments", "diagonal_filter_adjoint_moments_loop",
             "diagonal_filter_adjoint_moments")
    calls = _spy(monkeypatch, *names)
    ins = list(random_inputs(2, 30, 3, 4, seed=4))
    ins[5] = ins[5] * 0                                            # p = 0: the backward differentiates the moments
    cot = _cot(2, 30, 3, 4, seed=4)
    got = _grads(_torch_api, ins, cot)
    want = _grads(kla_scan_reference, ins, cot)
    for name, g, w in zip(GRAD_NAMES, got, want):
        assert rel_rms(g, w) < 1e-10, name
    forms = set(names[0::2] if loop else names[1::2])
    assert calls and set(calls) == forms, calls
