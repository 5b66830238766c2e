"""The Triton kernels' parameter upload is kept on the model between calls (triton_params' memo):
reused only for equal contents, dtype and device; never pickled or deep-copied with the model."""

import copy
import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import bayesfilt  # noqa: E402
from bayesfilt.scan.triton_filter import _PARAMS_MEMO, triton_params  # noqa: E402

CPU = torch.device("cpu")


def _values(params):
    return {k: v[0].clone() for k, v in params.items()}


def test_memo_reused_only_for_the_same_contents_dtype_and_device():
    model = bayesfilt.models.constant_velocity(q=0.05, r=4.0)
    first = triton_params(model, (), torch.float32, CPU)
    assert triton_params(model, (7,), torch.float32, CPU) is first          # static: any batch, same upload
    assert triton_params(model, (), torch.float64, CPU) is not first        # another dtype: a new upload
    again = triton_params(model, (), torch.float32, CPU)                    # (the memo holds the last only)
    before = _values(again)
    model.F[0, 2] = 0.5                                                      # changed in place
    changed = triton_params(model, (), torch.float32, CPU)
    assert changed is not again
    assert changed["F"][0][2].item() == 0.5 and before["F"][2].item() == 1.0
    assert torch.equal(again["F"][0], before["F"])                          # the old upload was not written


def test_equal_models_get_equal_uploads():
    a = bayesfilt.models.constant_velocity(q=0.05, r=4.0)
    b = bayesfilt.models.constant_velocity(q=0.05, r=4.0)
    pa, pb = triton_params(a, (), torch.float32, CPU), triton_params(b, (), torch.float32, CPU)
    assert all(torch.equal(pa[k][0], pb[k][0]) for k in pa)
    c = bayesfilt.models.constant_velocity(q=0.05, r=4.0 + 1e-12)           # differs in the last bits of R
    pc = triton_params(c, (), torch.float64, CPU)
    assert not torch.equal(pc["R"][0], triton_params(a, (), torch.float64, CPU)["R"][0])


def test_batched_and_time_varying_models_are_not_kept():
    rng = np.random.default_rng(0)
    base = bayesfilt.models.constant_velocity(q=0.05, r=4.0)
    tv = base.replace(F=np.stack([base.F] * 5), time_varying=("F",))
    triton_params(tv, (), torch.float32, CPU)
    assert _PARAMS_MEMO not in tv.__dict__
    batched = base.replace(R=base.R * (1 + rng.random((3, 1, 1))))
    triton_params(batched, (3,), torch.float32, CPU)
    assert _PARAMS_MEMO not in batched.__dict__


def test_memo_is_not_pickled_or_deep_copied():
    model = bayesfilt.models.constant_velocity(q=0.05, r=4.0)
    triton_params(model, (), torch.float32, CPU)
    assert _PARAMS_MEMO in model.__dict__
    for other in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
        assert _PARAMS_MEMO not in other.__dict__
        assert other._contents() == model._contents()
        out = triton_params(other, (), torch.float32, CPU)
        assert all(torch.equal(out[k][0], model.__dict__[_PARAMS_MEMO][1][k][0]) for k in out)
