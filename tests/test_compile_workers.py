"""Compiling Triton kernels in worker processes (``bayesfilt.scan._triton.compile_in_processes``).

The workers must compile exactly what the JIT would, so that the parent then finds every variant in
Triton's on-disk cache under its own key instead of compiling it again. Checked without a GPU: a
stand-in driver answers the JIT's questions (device 0, an sm_90 target), the workers compile for
sm_90 (ptxas included), and the parent's ``warmup`` of the same launches must load, not compile:
the cache holds one binary per variant afterwards, not two.
"""

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("triton")
pytest.importorskip("torch")

SCRIPT = textwrap.dedent(r"""
    import glob, os
    import numpy as np, torch, triton
    from triton.backends.compiler import GPUTarget
    from triton.runtime import driver

    class StandInDriver:
        # what the JIT's warmup path asks of a driver, answered without a GPU
        def get_current_device(self): return 0
        def get_current_stream(self, device=None): return 0
        def get_current_target(self): return GPUTarget("cuda", 90, 32)
    driver.set_active(StandInDriver())

    import bayesfilt
    from bayesfilt.scan import _triton, triton_filter as tf

    model = bayesfilt.models.constant_velocity(q=0.05, r=4.0)
    y = torch.tensor(np.random.default_rng(0).standard_normal((5, 300, 2)), dtype=torch.float32)
    plan = []
    tf.triton_filter(model, y, chunk=16, group=2, launches=plan, means_out=False)   # every kernel of a scan
    plan += tf.loglik_plan((5,), torch.float64, torch.float32, y.device, torch.zeros(1, dtype=torch.int32))[2]
    distinct = len({(id(k), tuple(sorted(kw.items()))) for k, _g, _a, kw in plan})
    cubins = lambda: len(glob.glob(os.path.join(os.environ["TRITON_CACHE_DIR"], "*", "*.cubin")))
    n = _triton.compile_in_processes(plan, GPUTarget("cuda", 90, 32))
    after_workers = cubins()
    loaded = [k.warmup(*a, grid=g, **kw) for k, g, a, kw in plan]           # must find them in the cache
    print("RESULT", distinct, n, after_workers, cubins(), all(c is not None for c in loaded))
""")


def test_workers_compile_what_the_jit_loads(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(TRITON_CACHE_DIR=str(tmp_path / "cache"), TRITON_DEFAULT_FP_FUSION="1")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][0].split()
    distinct, n, after_workers, after_load, all_loaded = int(line[1]), int(line[2]), int(line[3]), int(line[4]), line[5]
    assert distinct >= 5                            # _fold_steps, _fold_elements, _absorb x 2, _sweep, _finish_loglik
    assert n == distinct == after_workers           # one worker per distinct variant, each wrote its binary
    assert after_load == after_workers              # the parent compiled nothing of its own: same cache keys
    assert all_loaded == "True"
    assert "compile worker failed" not in proc.stderr


def test_worker_setting(monkeypatch):
    import triton
    from bayesfilt.scan import _triton
    supported = triton.__version__.startswith(_triton.WORKER_VERSIONS)
    monkeypatch.setenv("BAYESFILT_COMPILE_WORKERS", "0")
    assert not _triton.use_workers(6)
    monkeypatch.setenv("BAYESFILT_COMPILE_WORKERS", "1")
    assert _triton.use_workers(6) == supported
    assert not _triton.use_workers(1)               # one variant: a worker would only add its start-up
