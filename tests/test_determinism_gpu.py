"""GPU reproducibility (run through the device tool; needs CUDA): the Triton KLA scan (forward
and gradients), the Triton parallel Kalman filter and the torch-on-CUDA scans, each run twice
on the same inputs.

Not yet run: the session that wrote it had no device time left (run it with the device tool:
``PYTHONPATH=. python3 -m pytest -q -s tests/test_determinism_gpu.py``).

Bit-for-bit equality is required, except where a kernel is documented as not reproducible:
then the test measures by how much two runs differ and asserts that bound (docs/reliability.md
reports the numbers; ``-s`` prints them).
"""

import numpy as np
import pytest
import torch

import bayesfilt

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (device tool)")]


def _twice(fn):
    torch.cuda.synchronize()
    a = [t.detach().clone() for t in fn()]
    torch.cuda.synchronize()
    b = [t.detach().clone() for t in fn()]
    torch.cuda.synchronize()
    return a, b


def _max_rel(a, b):
    return max(float((x.double() - y.double()).abs().max() / max(float(x.double().abs().max()), 1e-30))
               for x, y in zip(a, b))


@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_kla_scan_gpu_reproducible(backend):
    from bayesfilt.nn import kla_scan
    from bayesfilt.nn.functional import random_inputs
    B, L, M, S = 4, 2048, 256, 16
    inputs = random_inputs(B, L, M, S, dtype=torch.float32, device="cuda", seed=0)
    leaves = [x.clone().requires_grad_() if isinstance(x, torch.Tensor) else x for x in inputs[:6]]
    g_y = torch.randn(B, L, M, device="cuda", generator=torch.Generator("cuda").manual_seed(1))

    def run():
        for x in leaves:
            x.grad = None
        y, y_var, st = kla_scan(*leaves, backend=backend)
        ((y * g_y).sum() + y_var.sum()).backward()
        return [y, y_var, st.lam, st.eta] + [x.grad for x in leaves]

    a, b = _twice(run)
    diffs = {name: _max_rel([x], [y]) for name, x, y in
             zip(["y", "y_var", "lam", "eta", "g_v", "g_lambda_v", "g_k", "g_q", "g_a_bar", "g_p_bar"], a, b)}
    print(f"kla_scan[{backend}] run-to-run max relative difference: {diffs}")
    assert all(v == 0.0 for v in diffs.values()), diffs


@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_parallel_filter_gpu_reproducible(backend):
    model = bayesfilt.models.constant_velocity(q=0.1, r=1.0, dim=2)
    _, y = model.simulate(16384, seed=0, batch_shape=(8,))
    yt = torch.tensor(y, device="cuda", dtype=torch.float32)
    m32 = model.astype(np.float32)

    def run():
        r = bayesfilt.parallel_filter(m32, yt, backend=backend)
        return [r.means, r.covs, r.loglik]

    a, b = _twice(run)
    diff = _max_rel(a, b)
    print(f"parallel_filter[{backend}] run-to-run max relative difference: {diff}")
    assert diff == 0.0
