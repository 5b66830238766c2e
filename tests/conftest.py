"""Shared fixtures: random stable models for parity tests."""

import numpy as np
import pytest

import bayesfilt


@pytest.fixture
def one_torch_thread():
    """One intra-op torch thread for the test, restored afterwards: tiny shapes run far faster on one
    thread on the shared 2-core machine (e.g. CPU conv1d with an output of length 1, each decode step:
    ~10 ms instead of ~70 us with 2 threads under load). Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def load_script(path, name: str):
    """Import the Python file ``path`` (a benchmark or docs script, not a package module) as module ``name``.
    Its own folder goes on sys.path first, for scripts that import their siblings (benchmarks/_common.py)."""
    import importlib.util
    import sys
    from pathlib import Path
    path = Path(path)
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def max_rel(a, b):
    """max |a - b| / max(|b|, 1), elementwise: relative where b is large, absolute near 0."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float((np.abs(a - b) / np.maximum(np.abs(b), 1.0)).max())


def scale_rel(a, b):
    """max |a - b| / max |b|: the error relative to the output's scale."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.abs(a - b).max() / np.abs(b).max())


def run_interpreted(code: str, timeout: float = 600) -> str:
    """Run ``code`` in a fresh Python with TRITON_INTERPRET=1 (set before triton is imported, and not
    leaked into this process); its stdout. The tests folder is importable there (``conftest``)."""
    import os
    import subprocess
    import sys
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=os.pathsep.join(
        [os.path.dirname(os.path.abspath(__file__))] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def compile_for_sm90(module: str, kernels, pointers=(), wide=(), dtypes=("fp32",), timeout: float = 300,
                     typed=None) -> None:
    """Compile Triton kernels ahead of time for an H100/H200 (sm_90) on the CPU, in a fresh process
    without the interpreter flag: the interpreter does not type-check the way the compiler does.

    ``kernels``: (name in ``module``, constexpr values) pairs. An argument is a pointer when its name
    is in ``pointers``, ends with ``_ptr`` or starts with ``out_``: ``*fp64`` when in ``wide``, else
    each of ``dtypes`` in turn; other arguments are i32. ``typed`` maps argument names to a fixed
    signature type (e.g. ``{"bad_ptr": "*i32"}``).
    """
    import os
    import subprocess
    import sys
    code = (
        "import warnings; warnings.filterwarnings('ignore')\n"
        "import importlib, triton\n"
        "from triton.backends.compiler import GPUTarget\n"
        "from triton.compiler import ASTSource\n"
        f"mod = importlib.import_module({module!r})\n"
        f"pointers, wide, typed = {set(pointers)!r}, {set(wide)!r}, {dict(typed or {})!r}\n"
        f"for dt in {tuple(dtypes)!r}:\n"
        f"    for name, consts in {list(kernels)!r}:\n"
        "        kern = getattr(mod, name)\n"
        "        sig, cx = {}, {}\n"
        "        for i, nm in enumerate(kern.arg_names):\n"
        "            if nm in typed:\n"
        "                sig[nm] = typed[nm]\n"
        "            elif nm in consts:\n"
        "                sig[nm] = 'constexpr'; cx[(i,)] = consts[nm]\n"
        "            elif nm in pointers or nm.endswith('_ptr') or nm.startswith('out_'):\n"
        "                sig[nm] = '*fp64' if nm in wide else '*' + dt\n"
        "            else:\n"
        "                sig[nm] = 'i32'\n"
        "        triton.compile(ASTSource(fn=kern, signature=sig, constexprs=cx), target=GPUTarget('cuda', 90, 32))\n"
        "print('COMPILED')\n")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout)
    assert "COMPILED" in proc.stdout, proc.stderr[-3000:]


def random_model(rng, n, m, *, time_varying=(), T=None, bias=False, psd_q=False):
    """A random stable LinearGaussianSSM (spectral radius < 1, well-conditioned R)."""
    def spd(k, scale=1.0, rank=None):
        A = rng.standard_normal((k, rank or k))
        return scale * (A @ A.T / (rank or k) + (0 if rank else 0.1 * np.eye(k)))

    def stable(k):
        A = rng.standard_normal((k, k))
        return 0.9 * A / max(1.0, np.abs(np.linalg.eigvals(A)).max())

    def maybe_tv(name, make):
        if name in time_varying:
            return np.stack([make() for _ in range(T)])
        return make()

    kw = dict(
        m0=rng.standard_normal(n), P0=spd(n),
        F=maybe_tv("F", lambda: stable(n)),
        Q=maybe_tv("Q", lambda: spd(n, 0.3, rank=1 if psd_q else None)),
        H=maybe_tv("H", lambda: rng.standard_normal((m, n))),
        R=maybe_tv("R", lambda: spd(m, 0.5)),
        time_varying=tuple(time_varying),
    )
    if bias:
        kw["b"] = maybe_tv("b", lambda: rng.standard_normal(n))
        kw["d"] = maybe_tv("d", lambda: rng.standard_normal(m))
    return bayesfilt.LinearGaussianSSM(**kw)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


# ---------------------------------------------------------------- fuzz-case counting
# Fuzz tests record how many generated cases they tried (record_property("fuzz_cases", n));
# the counts travel with the test reports (also from xdist workers) and are summed here.

def pytest_configure(config):
    config._fuzz_counts = {}


def pytest_runtest_logreport(report):
    if report.when != "call":
        return
    for key, value in getattr(report, "user_properties", ()):
        if key == "fuzz_cases":
            counts = getattr(pytest_runtest_logreport, "_config")._fuzz_counts
            counts[report.nodeid] = counts.get(report.nodeid, 0) + int(value)


def pytest_sessionstart(session):
    pytest_runtest_logreport._config = session.config


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    counts = getattr(config, "_fuzz_counts", {})
    if counts:
        terminalreporter.write_line(
            f"fuzz: {sum(counts.values())} generated cases tried in {len(counts)} fuzz tests "
            f"(BAYESFILT_FUZZ_EXAMPLES raises the budget)")


def nearly_redundant_model(r2):
    """Two nearly redundant states whose difference is measured with variance ``r2`` (docs/reliability.md,
    "Open problems"): F = I, P0 = I, Q = 0.5 11^T + 1e-12 I, H = [[1, 0], [1, -1]], R = diag(1, r2)."""
    return bayesfilt.LinearGaussianSSM(m0=np.zeros(2), P0=np.eye(2), F=np.eye(2),
                                       Q=0.5 * np.ones((2, 2)) + 1e-12 * np.eye(2),
                                       H=np.array([[1.0, 0.0], [1.0, -1.0]]), R=np.diag([1.0, r2]))
