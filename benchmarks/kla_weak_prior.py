"""Accuracy of the KLA scan after a weak prior with a large mean: the Triton kernels against the torch backend.

An initial state with a small precision lam_0 and an eta_0 of order 1 has a prior mean mu_0 = eta_0 / lam_0 of
order 1 / lam_0. The first token then moves the mean a long way. The Triton kernels form mu_t = a mu_{t-1} +
w_t nu_t in float32, two terms of the size of a mu_{t-1} that nearly cancel (docs/math/kla.md §7;
docs/reliability.md, open problems). This script measures, per lam_0 and length:

- forward: y and y_var of each backend against the float64 reference (relative RMS), p = 0;
- backward: every gradient of a loss on y against float64 autograd of the reference, p = 0 and p = 0.01, with the
  Triton backward in moment form (``bwd_mom`` 1) and information form (0), and the torch backend beside them.
  (Far smaller lam_0, e.g. 1e-30, make float64 autograd's own d/dlam_0 cancel; tests/test_kla_moment_adjoint.py
  checks the library there against 50-digit derivatives.)

Without CUDA the Triton kernels run under the Triton interpreter (set here before triton is imported), in
float32 like the compiled kernels.

Usage: python benchmarks/kla_weak_prior.py [--quick] [--out benchmarks/results/kla_weak_prior.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys

import torch

if not torch.cuda.is_available():                      # before anything imports triton
    os.environ.setdefault("TRITON_INTERPRET", "1")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import git_state, torch_record  # noqa: E402

from bayesfilt.nn.functional import KLAState, kla_scan  # noqa: E402
from bayesfilt.nn.reference import kla_scan_reference  # noqa: E402

NAMES = ("v", "lambda_v", "k", "q", "a_bar", "p_bar", "lam0", "eta0")
B, M, S = 2, 5, 3


def inputs(L: int, lam0: float, p: float, device) -> list:
    """float64 inputs, seeded: v, lambda_v, k, q, a_bar in [0.3, 1), p_bar = p, lam_0 = lam0, eta_0 ~ N(0, 1)."""
    g = torch.Generator().manual_seed(21)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)          # noqa: E731
    u = lambda *s: torch.rand(*s, generator=g, dtype=torch.float64)           # noqa: E731
    xs = [r(B, L, M), 0.5 + u(B, L, M), r(B, L, S) / S ** 0.5, r(B, L, S) / S ** 0.5, 0.3 + 0.7 * u(M, S),
          torch.full((M, S), p, dtype=torch.float64), torch.full((B, M, S), lam0, dtype=torch.float64), r(B, M, S)]
    return [x.to(device) for x in xs]


def rel(a, b) -> float:
    a, b = a.detach().double(), b.detach().double()
    n = b.norm()
    return float((a - b).norm() / (n if n > 0 else 1.0))


def run(xs32, backend: str, adjoint: str, w):
    """y, y_var and the gradients of sum(w * y) of one float32 backend."""
    leaves = [x.clone().requires_grad_() for x in xs32]
    y, y_var, _ = kla_scan(*leaves[:6], initial_state=KLAState(*leaves[6:]), backend=backend, adjoint=adjoint,
                           validate=False)
    (y.double() * w).sum().backward()
    return y.detach(), y_var.detach(), [x.grad for x in leaves]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="lam_0 in {1e-8, 1}, L = 1 only (a smoke test)")
    ap.add_argument("--out", default=None, help="result JSON (default benchmarks/results/kla_weak_prior.json; "
                                                 "--quick: kla_weak_prior_quick.json there)")
    args = ap.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    lam0s, lengths = ((1e-8, 1.0), (1,)) if args.quick else ((1e-8, 1e-4, 1e-2, 1.0), (1, 9, 100))
    runs = [("triton", "moment"), ("triton", "information"), ("torch", "information")]
    rows = []
    for lam0, L, p in itertools.product(lam0s, lengths, (0.0, 0.01)):
        xs = inputs(L, lam0, p, device)
        w = torch.randn(B, L, M, generator=torch.Generator().manual_seed(22), dtype=torch.float64).to(device)
        ref = [x.clone().requires_grad_() for x in xs]
        yr, yvr, _, _ = kla_scan_reference(*ref)
        (yr * w).sum().backward()
        row = {"lam0": lam0, "L": L, "p_bar": p}
        for backend, adjoint in runs:
            y, y_var, grads = run([x.float() for x in xs], backend, adjoint, w)
            name = f"{backend}_{adjoint}" if backend == "triton" else backend
            if adjoint == "information" or backend == "torch":    # the forward does not depend on the adjoint
                row[f"{backend}_y"], row[f"{backend}_y_var"] = rel(y, yr), rel(y_var, yvr)
            row[f"{name}_grads"] = {n: rel(g, r.grad) for n, g, r in zip(NAMES, grads, ref)}
        rows.append(row)
        print(f"lam0 {lam0:g} L {L} p {p:g}: y triton {row['triton_y']:.1e} torch {row['torch_y']:.1e}; worst grad "
              + ", ".join(f"{k[:-6]} {max(v.values()):.1e}" for k, v in row.items() if k.endswith("_grads")),
              flush=True)
    sha, dirty = git_state()
    record = {"benchmark": "kla_weak_prior", **torch_record(),
              "triton_mode": "compiled" if device == "cuda" else "interpreter (TRITON_INTERPRET=1)",
              "git_commit": sha, "git_dirty_bayesfilt": dirty, "dtype": "float32 against the float64 reference",
              "shape": {"B": B, "M": M, "S": S},
              "what": "relative RMS errors after an initial state lam_0 (eta_0 ~ N(0, 1)): y, y_var (p-independent "
                      "forward rows at each p) and every gradient of sum(w * y) against float64 autograd of the "
                      "reference; triton_moment / triton_information = the Triton backward's adjoint form",
              "rows": rows}
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                   "kla_weak_prior_quick.json" if args.quick else "kla_weak_prior.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(record, f, indent=1)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
