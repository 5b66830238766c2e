"""The generic associative scan: every schedule equals the left fold, on NumPy and torch."""

from collections import namedtuple

import numpy as np
import pytest

from bayesfilt import BayesfiltValueError
from bayesfilt.scan import SCHEDULES, scan

Pair = namedtuple("Pair", "A u")


def affine(e1, e2):
    """(A1, u1) then (A2, u2): x -> A2 (A1 x + u1) + u2 (not commutative)."""
    return Pair(e2.A @ e1.A, (e2.A @ e1.u[..., None])[..., 0] + e2.u)


def fold(elems):
    out = [Pair(elems.A[0], elems.u[0])]
    for t in range(1, len(elems.A)):
        out.append(affine(out[-1], Pair(elems.A[t], elems.u[t])))
    return np.stack([o.A for o in out]), np.stack([o.u for o in out])


@pytest.mark.parametrize("T", [1, 2, 3, 5, 7, 8, 64, 100])
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_schedules_equal_left_fold(T, schedule):
    rng = np.random.default_rng(T)
    elems = Pair(0.6 * rng.standard_normal((T, 3, 3)), rng.standard_normal((T, 2, 3)))  # batch axis 2 on u
    elems = Pair(np.broadcast_to(elems.A[:, None], (T, 2, 3, 3)), elems.u)
    A, u = fold(elems)
    for chunk in (None, 1, 3, 16):
        out = scan(elems, affine, schedule, chunk_size=chunk)
        assert isinstance(out, Pair)
        np.testing.assert_allclose(out.A, A, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(out.u, u, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_reverse_and_dict_pytrees(schedule):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(11)
    M = rng.standard_normal((11, 2, 2))
    out = scan({"s": x, "m": (M,)}, lambda a, b: {"s": a["s"] + b["s"], "m": (a["m"][0] @ b["m"][0],)},
               schedule, reverse=True, chunk_size=3)
    np.testing.assert_allclose(out["s"], np.cumsum(x[::-1])[::-1])
    ref = [M[-1]]
    for t in range(9, -1, -1):
        ref.insert(0, M[t] @ ref[0])                          # suffix products M_t M_{t+1} ... M_{T-1}
    np.testing.assert_allclose(out["m"][0], np.array(ref), rtol=1e-12)


def test_torch_backend_and_autograd():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    A = torch.tensor(0.5 * rng.standard_normal((13, 2, 2)), requires_grad=True)
    u = torch.tensor(rng.standard_normal((13, 2)), requires_grad=True)

    def comb(e1, e2):
        return (e2[0] @ e1[0], (e2[0] @ e1[1][..., None])[..., 0] + e2[1])

    ref = scan((A, u), comb, "sequential")
    for schedule in ("tree", "chunked"):
        out = scan((A, u), comb, schedule, chunk_size=4)
        assert torch.allclose(out[1], ref[1], atol=1e-12)
        g1 = torch.autograd.grad(out[1].sum(), (A, u))
        g0 = torch.autograd.grad(ref[1].sum(), (A, u), retain_graph=True)
        assert all(torch.allclose(a, b, atol=1e-12) for a, b in zip(g1, g0))
    assert torch.autograd.gradcheck(lambda a, v: scan((a, v), comb, "tree")[1], (A[:5].detach().requires_grad_(),
                                                                                  u[:5].detach().requires_grad_()))


def test_bad_arguments():
    x = np.zeros(3)
    with pytest.raises(BayesfiltValueError, match="schedule"):
        scan(x, lambda a, b: a + b, "blelloch")
    with pytest.raises(BayesfiltValueError, match="elements"):
        scan((np.zeros(3), np.zeros(4)), lambda a, b: a, "tree")
    with pytest.raises(BayesfiltValueError, match="chunk_size"):
        scan(x, lambda a, b: a + b, "chunked", chunk_size=0)
