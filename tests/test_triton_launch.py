"""Direct launches of compiled Triton kernels (bayesfilt.scan._triton): the launch key and, on a GPU,
results equal to Triton's own launch path and to the sequential reference."""

import numpy as np
import pytest

import bayesfilt
from bayesfilt.scan._triton import _launch_key

torch = pytest.importorskip("torch")


def test_launch_key_separates_what_triton_specialises_on():
    """Different dtype, alignment, int or float (by value: finer than Triton's classes), bool value,
    constexpr, option or device (index and runtime knobs): different keys."""
    a = torch.zeros(64, dtype=torch.float32)
    base = _launch_key((a, 32, 2.0, True), dict(N=4, num_warps=1), 0)
    assert base == _launch_key((torch.ones(64), 32, 2.0, True), dict(N=4, num_warps=1), 0)
    assert base != _launch_key((a, 32, 3.5, True), dict(N=4, num_warps=1), 0)  # floats by value (constexprs)
    assert _launch_key((a, 1), {}, 0) != _launch_key((a, True), {}, 0)          # True is not the int 1
    for args, kw in (((a.double(), 32, 2.0, True), dict(N=4, num_warps=1)),     # dtype
                     ((a[1:], 32, 2.0, True), dict(N=4, num_warps=1)),           # 4-byte offset: unaligned
                     ((a, 48, 2.0, True), dict(N=4, num_warps=1)),               # another int
                     ((a, 1, 2.0, True), dict(N=4, num_warps=1)),                # the value 1
                     ((a, 2**31, 2.0, True), dict(N=4, num_warps=1)),            # i64
                     ((a, 32, 2.0, False), dict(N=4, num_warps=1)),              # bool value
                     ((a, 32, 2.0, True), dict(N=8, num_warps=1)),               # constexpr
                     ((a, 32, 2.0, True), dict(N=4, num_warps=2))):              # launch option
        assert _launch_key(args, kw, 0) != base
    assert _launch_key((a,), {}, 1) != _launch_key((a,), {}, 0)                  # device
    assert _launch_key((a, np.int64(3)), {}, 0) is None                          # unclassified: Triton's path
    assert _launch_key((a,), dict(x=[1]), 0) is None                             # unhashable keyword


def test_int_helpers_equal_tritons():
    """cdiv and next_pow2 (host-side stand-ins for triton.cdiv / triton.next_power_of_2, which cost
    microseconds per call) give Triton's values on every size the kernels use and beyond."""
    triton = pytest.importorskip("triton")
    from bayesfilt.scan._triton import cdiv, next_pow2
    rng = np.random.default_rng(0)
    sizes = list(range(1, 4200)) + [int(x) for x in rng.integers(1, 2**40, 300)] + [2**31 - 1, 2**31, 2**31 + 1]
    for n in sizes:
        assert next_pow2(n) == triton.next_power_of_2(n), n
        for b in (1, 2, 7, 8, 16, 32, 128, 256):
            assert cdiv(n, b) == triton.cdiv(n, b), (n, b)
    assert cdiv(0, 8) == triton.cdiv(0, 8) == 0


def test_launch_now_waits_for_a_first_call(monkeypatch):
    """launch_now launches and empties the plan only when every kernel of the call has compiled here;
    on a first call it leaves the plan to launch_all (which compiles all variants together)."""
    from types import SimpleNamespace

    from bayesfilt.scan import _triton
    launched = []
    monkeypatch.setattr(_triton, "interpreting", lambda: False)
    monkeypatch.setattr(_triton, "launch_all", lambda plan, warm_also=(): launched.extend(plan))
    compiled = {"a": True, "b": True, "c": False}
    monkeypatch.setattr(_triton, "_compiled_here", lambda k, index: compiled[k])
    arg = SimpleNamespace(device=SimpleNamespace(index=0))
    plan = [("a", (1,), (arg,), {}), ("b", (1,), (arg,), {})]
    assert not _triton.launch_now(plan, ["a", "b", "c"])                      # c (launched later) not compiled
    assert len(plan) == 2 and not launched
    assert _triton.launch_now(plan, ["a", "b"])
    assert plan == [] and [e[0] for e in launched] == ["a", "b"]
    assert not _triton.launch_now(plan, ["a"])                                 # nothing left to launch


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (device tool)")
def test_direct_launches_equal_triton_launches():
    """Repeated calls (direct launches after the first), a misaligned y view and another dtype give the
    same numbers as a first call and as kalman_filter."""
    from bayesfilt.scan import _triton
    rng = np.random.default_rng(2)
    from conftest import random_model
    model = random_model(rng, 3, 2)
    _, y = model.simulate(700, seed=4, batch_shape=(600,))          # >= 512 series: the shared-gain kernels
    ref = bayesfilt.kalman_filter(model, y)
    for dtype, tol in ((torch.float64, 1e-9), (torch.float32, 1e-3)):
        yc = torch.as_tensor(y, dtype=dtype, device="cuda")
        first = bayesfilt.parallel_filter(model, yc)
        again = [bayesfilt.parallel_filter(model, yc) for _ in range(3)]
        for res in again:
            assert torch.equal(res.means, first.means) and torch.equal(res.loglik, first.loglik)
        wide = torch.zeros(y.shape[:-1] + (3,), dtype=dtype, device="cuda")
        wide[..., 1:] = yc
        odd = bayesfilt.parallel_filter(model, wide[..., 1:])        # a view 1 element off alignment
        assert torch.equal(odd.means, first.means)
        bayesfilt.parallel_filter(model, yc, verify=True)           # the step check passes on Triton results
        bayesfilt.parallel_filter(model, yc[:2], method="elements", verify=True)
        one = bayesfilt.parallel_filter(model, yc[:1])              # element kernels, one series
        assert torch.equal(bayesfilt.parallel_filter(model, yc[:1]).means, one.means)
        scale = np.abs(ref.means).max()
        assert np.abs(first.means.cpu().numpy() - ref.means).max() <= tol * max(scale, 1.0)
    assert _triton._direct_launch_supported() is False or any(
        "_bayesfilt_launchers" in k.__dict__ for k in _triton_kernels())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (device tool)")
def test_kla_kernels_direct_launches_equal_first_launch():
    """The KLA scan (unchunked and time-chunked), its backward, the decode step and the fused convolution
    launch through launch_all: repeated calls (direct launches after the first) give bit-identical results,
    and the compiled launchers are remembered on the kernels."""
    from bayesfilt.nn.kernels import _conv_triton, _kla_triton, kla_scan_triton, kla_step_triton
    from bayesfilt.nn.kernels.conv import causal_conv1d_triton
    from bayesfilt.scan import _triton
    g = torch.Generator(device="cuda").manual_seed(0)
    B, L, M, S = 2, 300, 48, 16
    x = [torch.randn(B, L, M, device="cuda", generator=g), torch.rand(B, L, M, device="cuda", generator=g) + 0.5,
         torch.randn(B, L, S, device="cuda", generator=g), torch.randn(B, L, S, device="cuda", generator=g),
         torch.rand(M, S, device="cuda", generator=g) * 0.5 + 0.5, torch.rand(M, S, device="cuda", generator=g) * 0.1]

    def scan(chunks):
        leaves = [t.clone().requires_grad_() for t in x]
        y, yv, lam, eta = kla_scan_triton(*leaves, _num_chunks=chunks)
        (y.square().sum() + yv.sum() + lam.sum() + eta.sum()).backward()
        return [y, yv, lam, eta] + [t.grad for t in leaves]

    def step():
        return kla_step_triton(x[0][:, 0], x[1][:, 0], x[2][:, 0], x[3][:, 0], x[4], x[5],
                               torch.ones(B, M, S, device="cuda"), torch.zeros(B, M, S, device="cuda"))

    def conv():
        z, w, b = (t.clone().requires_grad_() for t in (x[0], x[4][:, :4].contiguous(), x[5][:, 0].contiguous()))
        u = causal_conv1d_triton(z, w, b)
        u.square().sum().backward()
        return [u, z.grad, w.grad, b.grad]

    for run in (lambda: scan(None), lambda: scan(3), step, conv):
        first = run()
        for _ in range(2):
            assert all(torch.equal(a, b) for a, b in zip(run(), first))
    from bayesfilt.nn.kernels import conv as conv_mod
    conv_bwd = {"recompute": [_conv_triton._conv_bwd_kernel],      # the default variant's kernels only ran
                "split": [_conv_triton._conv_bwd_d_kernel, _conv_triton._conv_bwd_dz_kernel],
                "window": [_conv_triton._conv_bwd_window_kernel]}[conv_mod._BWD_VARIANT]
    kernels = [_kla_triton._fwd_kernel_any_m, _kla_triton._fwd_kernel, _kla_triton._bwd_kernel,
               _kla_triton._step_kernel, _conv_triton._conv_fwd_kernel, *conv_bwd]
    assert _triton._direct_launch_supported() is False or all("_bayesfilt_launchers" in k.__dict__ for k in kernels)


def _triton_kernels():
    from bayesfilt.scan import triton_filter, triton_riccati
    return [getattr(mod, name) for mod in (triton_filter, triton_riccati) for name in dir(mod)
            if hasattr(getattr(mod, name), "device_caches")]


def test_hooks_are_detected():
    from bayesfilt.scan._triton import _hooked

    class Chain:
        def __init__(self, calls):
            self.calls = calls
    assert not _hooked(None) and not _hooked(Chain([])) and _hooked(Chain([print])) and _hooked(print)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (device tool)")
def test_direct_launch_refuses_a_host_tensor():
    """Direct launches pass raw device addresses (the launcher's own per-pointer check is skipped), so a
    tensor in host memory must not match a remembered launch: it takes Triton's path, which raises, and
    the device stays usable."""
    from bayesfilt.nn.kernels import kla_step_triton
    g = torch.Generator(device="cuda").manual_seed(5)
    B, M, S = 2, 40, 16
    args = [torch.randn(B, M, device="cuda", generator=g), torch.rand(B, M, device="cuda", generator=g) + 0.5,
            torch.randn(B, S, device="cuda", generator=g), torch.randn(B, S, device="cuda", generator=g),
            torch.rand(M, S, device="cuda", generator=g) * 0.5 + 0.5, torch.rand(M, S, device="cuda", generator=g),
            torch.rand(B, M, S, device="cuda", generator=g) + 0.5, torch.randn(B, M, S, device="cuda", generator=g)]
    first = kla_step_triton(*args)
    again = kla_step_triton(*args)                      # a direct launch
    host = list(args)
    host[6] = args[6].cpu()
    with pytest.raises(ValueError, match="cpu tensor|accessed"):
        kla_step_triton(*host)
    after = kla_step_triton(*args)
    torch.cuda.synchronize()
    for a, b, c in zip(first, again, after):
        assert torch.equal(a, b) and torch.equal(a, c)


def test_direct_launch_passes_addresses_and_never_remembers_a_foreign_tensor(monkeypatch):
    """After Triton's own first launch (remembered), a launch with an equal key goes to the compiled
    launcher with every tensor replaced by its address (ints, None and the constexpr tail as given); a
    launch with a tensor in host memory or on another device is never remembered, so each one takes
    Triton's path (pinned or peer memory passes Triton's check; pageable memory or an unreachable device
    of the same key must not reach the kernel as an address)."""
    import inspect
    from types import SimpleNamespace

    from bayesfilt.scan import _triton

    class Fake:                                           # stands for torch.Tensor (on device 0 unless told)
        def __init__(self, ptr, device=0):
            self.ptr, self.dtype, self.device = ptr, torch.float32, device

        def data_ptr(self):
            return self.ptr

        def get_device(self):
            return self.device

    monkeypatch.setattr(_triton, "_tensor_type", lambda: Fake)
    runs, triton_path = [], []
    compiled = SimpleNamespace(function="fn", packed_metadata="meta", run=lambda *a: runs.append(a))

    class Kernel:
        signature = inspect.signature(lambda x, n, y, z, BLOCK: None)

        def __getitem__(self, grid):
            return lambda *args, **kw: triton_path.append(args) or compiled

    k, x, y = Kernel(), Fake(4096), Fake(8192)
    for _ in range(2):
        assert _triton._launch_direct(k, (3,), (x, 7, y, None), dict(BLOCK=16), (0,), 99)
    assert len(triton_path) == 1 and len(runs) == 1
    assert runs[0][:6] == (3, 1, 1, 99, "fn", "meta") and runs[0][9:] == (4096, 7, 8192, None, 16)
    for device in (-1, 1):                                # host memory, another device: same dtype, alignment
        for _ in range(2):
            assert _triton._launch_direct(k, (3,), (x, 7, Fake(8192, device), None), dict(BLOCK=16), (0,), 99)
    assert len(triton_path) == 5 and len(runs) == 1


def test_first_call_hashes_once_and_makes_every_cache_first(monkeypatch):
    """A first call's concurrent compile: Triton's key hash runs once, off the calling thread, while the
    calling thread starts Triton's driver; every kernel's cache entry is made on the calling thread before
    any compile thread runs (two threads making one would lose a compiled variant); ``_compiled_here``
    makes no entry (a new entry starts the driver, which the compile then waits for)."""
    import collections
    import contextlib
    import threading

    from bayesfilt.scan import _triton
    main = threading.main_thread()
    events = []

    def record(what):
        events.append((what, threading.current_thread() is main))

    class Kernel:
        def __init__(self, name):
            self.name = name
            self.device_caches = collections.defaultdict(lambda: record(("cache", self.name)) or [{}])

        def warmup(self, *args, grid, **kw):
            self.device_caches[0][0][kw.get("N")] = object()        # Triton's warmup reads the entry too
            record(("warm", self.name))

    monkeypatch.setattr(_triton, "_triton_key", lambda: record("key"))
    monkeypatch.setattr(_triton, "_start_driver", lambda: record("driver"))
    monkeypatch.setattr(torch.cuda, "device", lambda index: contextlib.nullcontext())
    a, b = Kernel("a"), Kernel("b")
    assert not _triton._compiled_here(a, 0) and 0 not in a.device_caches
    launches = [(a, (1,), (1,), {"N": 1}), (a, (1,), (1,), {"N": 2}), (b, (1,), (2,), {})]
    assert _triton._warm_concurrently(launches, 0) == 3
    assert [e for e in events if e[0] == "key"] == [("key", False)]
    assert ("driver", True) in events
    caches = [i for i, e in enumerate(events) if e[0][0] == "cache"]
    warms = [i for i, e in enumerate(events) if e[0][0] == "warm"]
    assert len(caches) == 2 and all(events[i][1] for i in caches)              # one each, on this thread
    assert len(warms) == 3 and not any(events[i][1] for i in warms) and max(caches) < min(warms)
    assert _triton._compiled_here(a, 0) and _triton._compiled_here(b, 0)
