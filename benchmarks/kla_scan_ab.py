"""Interleaved A/B timing of KLA scan kernel variants (private tune keys) on the GPU.

``kla_scan.py`` times each configuration once, one after another, so a difference of a few percent
between two rows can be the machine drifting between them (in s14a the identical forward kernel took
0.819 ms in the first row and 0.629 ms in the second). Here every round times each variant once, in
turn, on the same inputs: forward (no grad) and forward+backward under ``triton.testing.do_bench``
(median of each round), and the backward alone as the custom backward op on the forward's saved
checkpoints. The JSON holds every round's times per variant and their median and minimum.

``--baseline FILE`` adds variants: the tunes of ``--baseline-tunes`` (default: ``[{}]``) run by another version of the kernel module
(``bayesfilt/nn/kernels/_kla_triton.py`` as it was at some commit, e.g. ``git show SHA:bayesfilt/nn/kernels/
_kla_triton.py > /tmp/base.py``), swapped in for those variants' calls only: an A/B of a kernel change in one
process (the launch code of the working tree drives both, so the change must keep the kernels' signatures).

Usage (GPU): python benchmarks/kla_scan_ab.py --tunes '[{}, {"bwd_mom": 0}]' --out r.json
             python benchmarks/kla_scan_ab.py --tunes '[{}, {"bwd_mom": 1}]' --baseline /tmp/base.py --out r.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys

import torch
import triton
from triton.testing import do_bench

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import git_state  # noqa: E402
from kla_scan import _inputs, scan_fns  # noqa: E402

from bayesfilt.nn.kernels import kla  # noqa: E402
from bayesfilt.nn.kernels.kla import _tune_str  # noqa: E402

SHAPES = {"main": (8, 2048, 2048, 16), "long": (1, 65536, 1024, 16)}


def _timers(shape, tune, gy, gyv, xs):
    """Callables for one variant: forward, forward+backward, backward alone (the backward op on the
    checkpoints of one forward, with the loss's output gradients)."""
    tstr = _tune_str(tune)
    ops = torch.ops.bayesfilt
    B, L, M, S = shape
    with torch.no_grad():
        lam0, eta0 = torch.ones(B, M, S, device="cuda"), torch.zeros(B, M, S, device="cuda")
        ck = ops.kla_scan_triton(*xs, lam0, eta0, False, True, tstr, False)[4]
    zs = torch.zeros(B, M, S, device="cuda")
    fwd, fwdbwd = scan_fns(xs, tune, gy, gyv)

    def bwd():
        return ops.kla_scan_triton_backward(*[x.detach() for x in xs], ck, gy, gyv, zs, zs, False, tstr, False)

    return {"fwd": fwd, "fwdbwd": fwdbwd, "bwd": bwd}


def _load_kernels(path: str):
    """Another version of the kernel module, from a file, under its own module name (its Triton functions
    compile on their own)."""
    spec = importlib.util.spec_from_file_location("bayesfilt_baseline_kla_triton", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _with_kernels(mod, timers: dict) -> dict:
    """The timers with ``mod`` as the launch code's kernel module during each call."""
    def wrap(f):
        def call():
            saved, kla.K = kla.K, mod
            try:
                return f()
            finally:
                kla.K = saved
        return call
    return {k: wrap(f) for k, f in timers.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tunes", type=json.loads, required=True, help="JSON list of tune dicts ({} = the defaults)")
    ap.add_argument("--shapes", nargs="+", default=["main", "long"], choices=sorted(SHAPES))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--rep", type=int, default=100, help="do_bench's rep (ms) per measurement")
    ap.add_argument("--baseline", help="a file with another version of bayesfilt/nn/kernels/_kla_triton.py: one more "
                                       "variant per --baseline-tunes on those kernels")
    ap.add_argument("--baseline-tunes", type=json.loads, default=[{}],
                    help="JSON list of tune dicts for the --baseline kernels (default: [{}])")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    if "--baseline-tunes" in (argv if argv is not None else sys.argv) and not args.baseline:
        ap.error("--baseline-tunes needs --baseline FILE (the kernels to run them on)")
    if args.baseline and not os.path.isfile(args.baseline):
        ap.error(f"--baseline {args.baseline!r} is not a file; pass a copy of bayesfilt/nn/kernels/_kla_triton.py")
    for t in args.tunes + args.baseline_tunes:
        _tune_str(t)                                    # refuse unknown keys before anything runs
    base = _load_kernels(args.baseline) if args.baseline else None
    btunes = list(args.baseline_tunes) if base else []
    labels = [json.dumps(t) for t in args.tunes] + [f"baseline {json.dumps(t)} ({args.baseline})" for t in btunes]
    tunes = list(args.tunes) + btunes
    res = {"benchmark": "kla_scan_ab", "device": torch.cuda.get_device_name(), "torch": torch.__version__,
           "triton": triton.__version__, "commit": os.environ.get("GIT_COMMIT") or git_state()[0],
           "tunes": args.tunes, "baseline": args.baseline, "baseline_tunes": btunes, "rounds": args.rounds, "rep_ms": args.rep, "shapes": {},
           # what {} means: the defaults of the keys that session 14 changed (an absent key takes these)
           "defaults": {"bwd_mom": kla._BWD_MOM, "bwd_rel": kla._BWD_REL, "bwd_alg": kla._BWD_ALG}}
    for name in args.shapes:
        shape = SHAPES[name]
        xs = _inputs(*shape, grad=True)
        gy, gyv = torch.randn(*shape[:3], device="cuda"), torch.randn(*shape[:3], device="cuda")
        timers = [_timers(shape, t, gy, gyv, xs) for t in args.tunes]
        for t in btunes:                                # (their checkpoints for "bwd" from their own forward)
            saved, kla.K = kla.K, base
            try:
                timers.append(_with_kernels(base, _timers(shape, t, gy, gyv, xs)))
            finally:
                kla.K = saved
        grads = []
        for tm in timers:                               # compile / first launch outside the rounds
            for k, f in tm.items():
                f()
                if k == "fwdbwd":                       # this variant's gradients, for the parity row
                    grads.append([x.grad.clone() for x in xs])
            for x in xs:
                x.grad = None
        # each variant's gradients against the first variant's (relative RMS): a tune that computes
        # something else shows here before its times mean anything
        parity = [{n: float((g - g0).pow(2).mean().sqrt() / g0.pow(2).mean().sqrt().clamp_min(1e-30))
                   for n, g, g0 in zip(("v", "lambda_v", "k", "q", "a_bar", "p_bar"), gs, grads[0])}
                  for gs in grads]
        print(name, "gradients against the first variant (rel. RMS):", parity, flush=True)
        times = [{k: [] for k in ("fwd", "fwdbwd", "bwd")} for _ in tunes]
        for r in range(args.rounds):
            for i, tm in enumerate(timers):
                for k, f in tm.items():
                    times[i][k].append(do_bench(f, warmup=10, rep=args.rep, return_mode="median",
                                                grad_to_none=xs if k == "fwdbwd" else None))
            print(name, "round", r, [{k: round(v[-1], 4) for k, v in t.items()} for t in times], flush=True)
        res["shapes"][name] = {"B_L_M_S": shape, "variants": [
            {"tune": t, "label": labels[i], "grad_rel_rms_vs_first": parity[i], "ms": times[i],
             "median_ms": {k: statistics.median(v) for k, v in times[i].items()},
             "min_ms": {k: min(v) for k, v in times[i].items()}} for i, t in enumerate(tunes)]}
        with open(args.out, "w") as fh:
            json.dump(res, fh, indent=1)
        for v in res["shapes"][name]["variants"]:
            print(name, v["label"], json.dumps({k: round(x, 4) for k, x in v["median_ms"].items()}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
