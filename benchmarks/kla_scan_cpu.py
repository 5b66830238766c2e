"""The KLA scan's torch backend on the CPU: the parallel tree against the time loop (session 21).

``bayesfilt.nn.functional`` runs the ``"torch"`` backend on the CPU as a loop over time vectorised over the
B x M x S lanes (``bayesfilt.scan.diagonal.diagonal_filter_loop`` / ``diagonal_filter_adjoint_loop``) from
``LOOP_MIN_LANES`` lanes, and as the parallel Möbius + affine tree below. This script times both forms at
shapes from few lanes and long sequences to MAD's training shape (d_model 128: M = 256, S = 16, batch 128,
L = 128), float32, forward alone and forward + adjoint backward (each backward recomputes its forward, as the
custom op does), best of a few runs (``_common.best_of``), and the public ``kla_scan`` (forward + backward
through autograd) as a user gets it. Parity first: at every shape the two forms' y, y_var and every gradient
against each other (float32, relative RMS). From ``LOOP_MIN_LANES`` lanes also p = 0, where the backend runs the
moment form and differentiates it by its adjoint (``diagonal_filter_adjoint_moments(_loop)``; before session 25 by
``torch.func.vjp``, timed beside it): the time loop (``diagonal_filter_loop_moments``) and, while memory allows
(``P0_TREE_MAX``), the tree.

Usage: python benchmarks/kla_scan_cpu.py [--quick] [--out benchmarks/results/kla_scan_cpu.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import best_of, git_state, torch_record  # noqa: E402

from bayesfilt.nn.functional import LOOP_MIN_LANES, kla_scan  # noqa: E402
from bayesfilt.scan.diagonal import (diagonal_filter_adjoint, diagonal_filter_adjoint_loop,  # noqa: E402
                                     diagonal_filter_adjoint_moments, diagonal_filter_adjoint_moments_loop,
                                     diagonal_filter_loop, diagonal_filter_loop_moments, diagonal_filter_scan,
                                     diagonal_filter_scan_moments)

#: (B, L, M, S): few lanes and long L, where the tree wins, up to MAD's training shape, where the loop does
SHAPES = [(1, 4096, 2, 3), (1, 4096, 16, 8), (1, 4096, 32, 16), (2, 2048, 64, 16), (4, 1024, 64, 16),
          (8, 512, 64, 16), (4, 1024, 128, 16), (8, 512, 128, 16), (32, 128, 256, 16), (128, 128, 256, 16)]
#: largest B L M S at which the p = 0 (moment form) rows also time the tree, whose reverse-mode pass keeps several
#: [B, L, M, S] arrays per level (an uncommitted probe on the 2-core dev machine peaked at 5.2 GB at 2^24, so MAD's
#: shape, 2^26, would need most of its 23 GB)
P0_TREE_MAX = 2 ** 24
QUICK = [(1, 256, 2, 3), (2, 64, 128, 32)]
#: relative RMS within which the two float32 forms must agree before they are timed
PARITY_TOL = 1e-4


def inputs(B: int, L: int, M: int, S: int, seed: int = 0) -> tuple:
    """Float32 filter inputs and upstream gradients: v, lambda_v, k, q, a_bar, p_bar, lam0, eta0, g_y, g_y_var."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, L, M, generator=g), torch.rand(B, L, M, generator=g) + 0.5,
            torch.randn(B, L, S, generator=g) / S ** 0.5, torch.randn(B, L, S, generator=g) / S ** 0.5,
            torch.rand(M, S, generator=g) * 0.5 + 0.45, torch.rand(M, S, generator=g) * 0.01,
            torch.ones(B, M, S), torch.zeros(B, M, S), torch.randn(B, L, M, generator=g),
            torch.randn(B, L, M, generator=g))


def rel_rms(x, ref) -> float:
    err = torch.linalg.vector_norm((x - ref).double())
    return float(err / torch.linalg.vector_norm(ref.double()).clamp(min=1e-300))


def one_shape(B: int, L: int, M: int, S: int, repeats: int) -> dict:
    """Times (s) of both forms at one shape, and their agreement."""
    x = inputs(B, L, M, S)
    fwd_args, grads = x[:8], x[8:]
    with torch.no_grad():
        tree_out, loop_out = diagonal_filter_scan(*fwd_args), diagonal_filter_loop(*fwd_args)
        tree_g = diagonal_filter_adjoint(*fwd_args, *grads)
        loop_g = diagonal_filter_adjoint_loop(*fwd_args, *grads)
        parity = {"y": rel_rms(loop_out.y, tree_out.y), "y_var": rel_rms(loop_out.y_var, tree_out.y_var),
                  **{f"grad_{n}": rel_rms(a, b) for n, a, b in
                     zip(("v", "lambda_v", "k", "q", "a_bar", "p_bar", "lam0", "eta0"), loop_g, tree_g)}}
        row = {"shape": [B, L, M, S], "lanes": B * M * S, "parity_rel_rms_loop_vs_tree": parity}
        if max(parity.values()) >= PARITY_TOL:                   # parity first: no times for forms that disagree
            return dict(row, status="parity failed")
        row.update({"tree_forward_s": best_of(lambda: diagonal_filter_scan(*fwd_args), repeats),
                    "loop_forward_s": best_of(lambda: diagonal_filter_loop(*fwd_args), repeats),
                    "tree_backward_s": best_of(lambda: diagonal_filter_adjoint(*fwd_args, *grads), repeats),
                    "loop_backward_s": best_of(lambda: diagonal_filter_adjoint_loop(*fwd_args, *grads), repeats)})
    leaves = [t.clone().requires_grad_() for t in x[:6]]

    def public():
        y, y_var, _ = kla_scan(*leaves, backend="torch")
        torch.autograd.grad((y * grads[0]).sum() + (y_var * grads[1]).sum(), leaves)

    row["kla_scan_forward_backward_s"] = best_of(public, repeats)
    if B * M * S >= LOOP_MIN_LANES:                               # p = 0: the moment form, differentiated by vjp
        row.update(p0_moments(x, repeats, tree=B * L * M * S <= P0_TREE_MAX))
        if row.get("p0_status") == "parity failed":
            row["status"] = "parity failed"
    row["kla_scan_form"] = "loop" if B * M * S >= LOOP_MIN_LANES else "tree"
    row["loop_speedup_forward_backward"] = ((row["tree_forward_s"] + row["tree_backward_s"])
                                            / (row["loop_forward_s"] + row["loop_backward_s"]))
    return row


def p0_moments(x: tuple, repeats: int, tree: bool) -> dict:
    """Forward + backward of the moment form at p = 0 two ways: its adjoint (docs/math/kla.md §7; the forward's
    paths, then ``diagonal_filter_adjoint_moments(_loop)``, as the torch backend differentiates p = 0 since session
    25) and reverse-mode autodiff of the forward (``torch.func.vjp``, the backend's way before), as the time loop
    and, when ``tree``, the tree. Parity first: every gradient of the adjoint against the vjp's, and the loop
    against the tree, agree (relative RMS) before anything is timed."""
    args = list(x[:8])
    args[5] = torch.zeros_like(args[5])                           # p = 0
    B, _, M = args[0].shape
    S = args[2].shape[-1]
    ones = (torch.ones_like(args[0]), torch.ones_like(args[0]), torch.ones(B, M, S), torch.ones(B, M, S))

    def vjp(loop: bool):
        def fwd(*xs):
            if loop:
                o = diagonal_filter_loop_moments(*xs)
                return o.y, o.y_var, o.lams, o.etas
            o = diagonal_filter_scan_moments(*xs)
            return o.y, o.y_var, o.lams[:, -1], o.etas[:, -1]
        outs, pull = torch.func.vjp(fwd, *args)
        return (outs[0], *pull(ones))

    def adjoint(loop: bool):
        with torch.no_grad():
            if loop:
                o = diagonal_filter_loop_moments(*args, paths=True)
                return (o.y, *diagonal_filter_adjoint_moments_loop(*args, *ones, paths=(o.lams, o.etas)))
            o = diagonal_filter_scan_moments(*args)
            return (o.y, *diagonal_filter_adjoint_moments(*args, *ones, paths=(o.lams, o.etas)))

    forms = [True, False] if tree else [True]
    runs = {(how, loop): fn(loop) for how, fn in (("vjp", vjp), ("adjoint", adjoint)) for loop in forms}
    ref = runs[("vjp", True)]
    out = {"p0_parity_rel_rms_vs_loop_vjp": {f"{how}_{'loop' if loop else 'tree'}": max(rel_rms(a, b) for a, b in
                                                                                       zip(got, ref))
                                             for (how, loop), got in runs.items() if (how, loop) != ("vjp", True)}}
    del runs
    if max(out["p0_parity_rel_rms_vs_loop_vjp"].values()) >= PARITY_TOL:
        return dict(out, p0_status="parity failed")
    for loop in forms:
        name = "loop" if loop else "tree"
        out[f"p0_{name}_vjp_s"] = best_of(lambda: vjp(loop), repeats)
        out[f"p0_{name}_adjoint_s"] = best_of(lambda: adjoint(loop), repeats)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="two small shapes, one run each (a smoke test)")
    ap.add_argument("--repeats", type=int, default=3, help="best of this many runs per timing (default 3)")
    ap.add_argument("--out", default=None, help="result JSON (default benchmarks/results/kla_scan_cpu.json; "
                                                 "--quick: kla_scan_cpu_quick.json there)")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error(f"--repeats is {args.repeats}; pass 1 or more")
    shapes, repeats = (QUICK, 1) if args.quick else (SHAPES, args.repeats)
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                   "kla_scan_cpu_quick.json" if args.quick else "kla_scan_cpu.json")
    sha, dirty = git_state()
    rows = []
    for shp in shapes:
        rows.append(one_shape(*shp, repeats))
        r = rows[-1]
        if r.get("status") == "parity failed":
            print(f"B, L, M, S = {tuple(shp)}: parity failed {r['parity_rel_rms_loop_vs_tree']}; not timed", flush=True)
            continue
        print(f"B, L, M, S = {tuple(shp)} ({r['lanes']} lanes): tree {r['tree_forward_s']:.3f} + "
              f"{r['tree_backward_s']:.3f} s, loop {r['loop_forward_s']:.3f} + {r['loop_backward_s']:.3f} s "
              f"(x{r['loop_speedup_forward_backward']:.2f}); kla_scan ({r['kla_scan_form']}) "
              f"{r['kla_scan_forward_backward_s']:.3f} s; parity max "
              f"{max(r['parity_rel_rms_loop_vs_tree'].values()):.1e}"
              + (f"; p = 0 (moments), adjoint / vjp: loop {r['p0_loop_adjoint_s']:.3f} / {r['p0_loop_vjp_s']:.3f} s"
                 if "p0_loop_vjp_s" in r else "")
              + (f", tree {r['p0_tree_adjoint_s']:.3f} / {r['p0_tree_vjp_s']:.3f} s" if "p0_tree_vjp_s" in r else ""),
              flush=True)
    worst = max([max(r["parity_rel_rms_loop_vs_tree"].values()) for r in rows]
                + [max(r["p0_parity_rel_rms_vs_loop_vjp"].values()) for r in rows
                   if "p0_parity_rel_rms_vs_loop_vjp" in r])
    record = {"benchmark": "kla_scan_cpu", **torch_record(), "cpu_count": os.cpu_count(),
              "torch_threads": torch.get_num_threads(), "numpy": np.__version__, "git_commit": sha,
              "git_dirty_bayesfilt": dirty, "dtype": "float32", "repeats": repeats,
              "loop_min_lanes": LOOP_MIN_LANES, "parity_worst_rel_rms": worst,
              "what": "seconds, best of repeats; backward = the adjoint with its forward recomputed; kla_scan = "
                      "the public call's forward + backward (autograd), with the form it picks; p0_*: the moment "
                      "form at p = 0, forward + backward by its adjoint (p0_*_adjoint_s, the torch backend's way since "
                      "session 25) and by torch.func.vjp (p0_*_vjp_s, before), loop and (up to P0_TREE_MAX) tree",
              "rows": rows}
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(record, f, indent=1)
    print(f"wrote {out}")
    return 0 if worst < PARITY_TOL else 1


if __name__ == "__main__":
    sys.exit(main())
