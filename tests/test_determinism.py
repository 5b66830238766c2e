"""Determinism: with a seed, filters, scans (CPU) and training are bit-for-bit reproducible.

Each computation is run twice in this process and compared bit for bit (array_equal /
torch.equal, not a tolerance); a fresh Python process then recomputes the same fingerprints
(SHA-256 of the raw result bytes) and must print exactly the same ones.
"""

import hashlib
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

import bayesfilt

FINGERPRINT_SCRIPT = r'''
import hashlib, json, sys, tempfile
import numpy as np, torch
import bayesfilt
sys.path.insert(0, {tests!r})
from test_determinism import fingerprints
print(json.dumps(fingerprints()))
'''


def _digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        if isinstance(a, torch.Tensor):
            a = a.detach().cpu().contiguous().numpy()
        a = np.ascontiguousarray(a)
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _problem():
    model = bayesfilt.models.constant_velocity(q=0.05, r=2.0, dim=2)
    _, y = model.simulate(300, seed=11, batch_shape=(3,))
    y[:, 50:80, 0] = np.nan
    return model, y


def _kla_inputs(dtype=torch.float32):
    g = torch.Generator().manual_seed(5)
    B, L, M, S = 2, 257, 4, 3
    return (torch.randn(B, L, M, generator=g, dtype=dtype), torch.rand(B, L, M, generator=g, dtype=dtype) + 0.1,
            torch.randn(B, L, S, generator=g, dtype=dtype), torch.randn(B, L, S, generator=g, dtype=dtype),
            torch.rand(M, S, generator=g, dtype=dtype) * 0.5 + 0.5, torch.rand(M, S, generator=g, dtype=dtype) * 0.1)


def _train_digest():
    from bayesfilt.nn.checkpoint import load_checkpoint
    from bayesfilt.nn.train import TrainConfig, train
    cfg = TrainConfig(task="a5", length=4, n_train=32, n_test=16, d_model=8, d_state=2, steps=6, batch_size=8,
                      eval_every=3, warmup=2, seed=4, posterior_samples=2)
    with tempfile.TemporaryDirectory() as d:
        train(cfg, d, progress=False)
        ck = load_checkpoint(os.path.join(d, "checkpoint.pt"))
        tensors = [ck["model"][k] for k in sorted(ck["model"])]
        return _digest(*tensors) + ":" + hashlib.sha256(json.dumps(ck["history"], sort_keys=True).encode()).hexdigest()


def fingerprints() -> dict:
    """SHA-256 of every reproducible computation (also imported by the fresh-process check)."""
    torch.manual_seed(0)
    model, y = _problem()
    out = {}
    kf = bayesfilt.kalman_filter(model, y)
    out["simulate"] = _digest(y)
    out["kalman_filter"] = _digest(kf.means, kf.covs, kf.loglik)
    out["rts_smoother"] = _digest(bayesfilt.rts_smoother(model, kf).means)
    out["information_filter"] = _digest(bayesfilt.information_filter(model, y).means)
    out["sqrt_filter"] = _digest(bayesfilt.sqrt_filter(model, y).covs)
    for sched in ("sequential", "tree", "chunked"):
        r = bayesfilt.parallel_filter(model, y, schedule=sched)
        out[f"parallel_filter_numpy_{sched}"] = _digest(r.means, r.loglik)
    rt = bayesfilt.parallel_filter(model, torch.as_tensor(y), backend="torch")
    out["parallel_filter_torch"] = _digest(rt.means, rt.loglik)
    out["parallel_smoother_information"] = _digest(bayesfilt.parallel_smoother(model, y, form="information").means)
    from bayesfilt.nn import KLAConfig, KLALayer, kla_scan
    for backend in ("reference", "torch"):
        args = [a.clone().requires_grad_() for a in _kla_inputs()]
        yk, yv, st = kla_scan(*args, backend=backend)
        (yk.square().sum() + yv.sum()).backward()
        out[f"kla_scan_{backend}"] = _digest(yk, yv, st.lam, st.eta, *(a.grad for a in args))
    torch.manual_seed(1)
    layer = KLALayer(8, KLAConfig(d_state=4))
    x = torch.randn(2, 33, 8)
    yl, vl = layer(x, return_variance=True)
    (yl.sum() + vl.sum()).backward()
    out["kla_layer"] = _digest(yl, vl, *(p.grad for p in layer.parameters()))
    out["train"] = _train_digest()
    return out


_FIRST = {}


def _first():
    if not _FIRST:
        _FIRST.update(fingerprints())
    return dict(_FIRST)


def test_bit_for_bit_twice_in_process():
    a, b = _first(), fingerprints()
    diff = sorted(k for k in a if a[k] != b[k])
    assert not diff, f"not reproducible run to run: {diff}"


def test_bit_for_bit_in_a_fresh_process():
    here = _first()
    script = FINGERPRINT_SCRIPT.format(tests=os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONHASHSEED": "123"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    there = json.loads(proc.stdout.strip().splitlines()[-1])
    diff = sorted(k for k in here if here[k] != there.get(k))
    assert not diff, f"a fresh process computes different bits for: {diff}"
    assert len(here) == 14


def test_different_seeds_differ():
    """The fingerprints can fail: another seed changes them."""
    model, _ = _problem()
    _, y2 = model.simulate(300, seed=12, batch_shape=(3,))
    _, y1 = model.simulate(300, seed=11, batch_shape=(3,))
    assert _digest(y1) != _digest(y2)
    assert _digest(bayesfilt.kalman_filter(model, y1).means) != _digest(bayesfilt.kalman_filter(model, y2).means)
