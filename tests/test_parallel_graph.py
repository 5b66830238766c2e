"""bayesfilt.capture_filter: the Triton parallel filter captured as a CUDA graph (bayesfilt/scan/graph.py).

CPU: the argument errors. GPU (marked ``gpu``, run through the device tool): a replay returns what
``parallel_filter`` returns on the same data (the same kernels), outputs survive the next call,
the shared-gain variant, inputs held by the replay (allocations between calls do not overwrite what
the graph reads), NaN (redone by parallel_filter, matching kalman_filter's missing-data
handling), an infinite y (named error) and a y of another shape (named error).
"""

import numpy as np
import pytest

import bayesfilt
from bayesfilt.errors import BayesfiltTypeError, BayesfiltValueError

torch = pytest.importorskip("torch")


def test_capture_needs_a_cuda_tensor():
    model = bayesfilt.models.constant_velocity(q=0.05, r=4.0)
    with pytest.raises(BayesfiltTypeError, match="like"):
        bayesfilt.capture_filter(model, torch.zeros(8, 2))
    with pytest.raises(BayesfiltTypeError, match="like"):
        bayesfilt.capture_filter(model, np.zeros((8, 2)))


def _same(a, b):
    for name in ("means", "covs", "predicted_means", "predicted_covs", "loglik_terms", "loglik"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.shape == y.shape, name
        assert torch.equal(x, y), (name, float((x - y).abs().max()))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (device tool)")
@pytest.mark.parametrize("batch, method", [((), "elements"), ((3,), "elements"), ((5,), "riccati")])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_replay_equals_parallel_filter(batch, method, dtype):
    model = bayesfilt.models.constant_velocity(q=0.05, r=4.0)
    _, y1 = model.simulate(700, seed=1, batch_shape=batch)
    _, y2 = model.simulate(700, seed=2, batch_shape=batch)
    y1, y2 = (torch.tensor(a, dtype=dtype, device="cuda") for a in (y1, y2))
    run = bayesfilt.capture_filter(model, y1, method=method)
    r1 = run(y1)
    r2 = run(y2)                                        # must not overwrite r1 (copy=True)
    _same(r1, bayesfilt.parallel_filter(model, y1, backend="triton", method=method))
    _same(r2, bayesfilt.parallel_filter(model, y2, backend="triton", method=method))
    ref = bayesfilt.kalman_filter(model, y2.double().cpu().numpy())
    tol = 1e-9 if dtype == torch.float64 else 1e-3
    assert float(np.abs(r2.loglik.double().cpu().numpy() - ref.loglik).max() / np.abs(ref.loglik).max()) < tol


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (device tool)")
@pytest.mark.parametrize("method", ["elements", "riccati"])
def test_cuda_replay_holds_its_inputs(method, monkeypatch):
    # the graph reads the model's parameters by address: before the fix their buffer was freed when
    # capture_filter returned, and tensors allocated later took it over (finite junk here, so the
    # non-finite flag would not catch it and redo the call)
    # (or non-finite junk, which the flag catches and parallel_filter redoes: so the replay must not
    # have called parallel_filter either)
    import gc

    import bayesfilt.scan.api as api
    model = bayesfilt.models.constant_velocity(q=0.05, r=4.0)
    _, y = model.simulate(300, seed=4, batch_shape=(3,))
    yc = torch.tensor(y, dtype=torch.float32, device="cuda")
    redone = []
    original = api.parallel_filter

    def counting(*args, **kwargs):
        redone.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(api, "parallel_filter", counting)     # what capture_filter imports for its redo
    run = bayesfilt.capture_filter(model, yc, method=method, copy=False)
    gc.collect()
    junk = [torch.full((k,), 0.5, device="cuda") for k in (16, 32, 64, 128, 256, 512, 1024) for _ in range(16)]
    res = run(yc)
    assert not redone, "the replay's flag was set: the graph read overwritten inputs"
    _same(res, original(model, yc, backend="triton", method=method))
    del junk


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (device tool)")
def test_cuda_replay_checks():
    model = bayesfilt.models.constant_velocity(q=0.05, r=4.0)
    _, y = model.simulate(300, seed=3, batch_shape=(4,))
    yc = torch.tensor(y, device="cuda")
    run = bayesfilt.capture_filter(model, yc, method="riccati")
    y_nan = y.copy()
    y_nan[1, 20, 0] = np.nan
    with pytest.raises(BayesfiltValueError, match="method"):     # explicit riccati refuses missing data
        run(torch.tensor(y_nan, device="cuda"))
    run_auto = bayesfilt.capture_filter(model, yc)                # auto: elements below 512 series
    res = run_auto(torch.tensor(y_nan, device="cuda"))
    ref = bayesfilt.kalman_filter(model, y_nan)
    assert np.abs(res.means.cpu().numpy() - ref.means).max() < 1e-9
    y_inf = y.copy()
    y_inf[2, 5, 1] = np.inf
    with pytest.raises(BayesfiltValueError, match="infinite"):
        run_auto(torch.tensor(y_inf, device="cuda"))
    with pytest.raises(BayesfiltValueError, match="shape"):
        run_auto(yc[:, :100])
