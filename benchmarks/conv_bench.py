"""Micro-benchmark of the fused causal depthwise convolution's backward variants (bayesfilt.nn.kernels.conv).

Shape (the KLA layer benchmark's): z a column slice [B=8, L=2048, C=2048] of in_proj's [B, L, 2C]
output in bf16 (token stride 2C), K = 4 taps, SiLU on, upstream g bf16 [B, L, C], weight and bias
float32. Timed: each backward variant of ``conv_backward`` (``_BWD_TILES``, with a few tile
choices each), the fused forward kernel, and the peer, PyTorch's F.conv1d depthwise path
(``causal_conv1d_reference``: a transposed float32 copy, F.conv1d with groups = C, SiLU) forward
and backward (autograd of the same loss). Times: CUDA events around each call, after warm-up
calls; best and median of ``--reps`` calls (L2 not flushed: 200 MB per call against a 50 MB L2).

Parity first: each variant's (dz, dw, dbias) against the float32 reference's gradients on the same
(bf16-rounded) inputs, relative RMS, and the largest |dz - dz_recompute| (bf16 outputs).
``floor_us``: the fewest bytes a backward must move (read z and g, write dz) at 4.3 TB/s.

Usage (GPU): python benchmarks/conv_bench.py --out benchmarks/results/conv_bench_h200.json
CPU smoke (interpreter, tiny shape, wall times meaningless):
    TRITON_INTERPRET=1 python benchmarks/conv_bench.py --quick --out /tmp/conv_bench_quick.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import git_state, torch_record  # noqa: E402

COPY_RATE = 4.3e12          # bytes/s, device-to-device copy on the H200 (read + write)

#: (name, variant, tile overrides): the defaults of each variant first, then tile choices
CONFIGS = [("recompute", "recompute", {}),
           ("split", "split", {}),
           ("split_bt16", "split", dict(BT=16)),
           ("window", "window", {}),
           ("window_tch64", "window", dict(TCH=64)),
           ("window_tch256", "window", dict(TCH=256)),
           ("window_bc64", "window", dict(BC=64, TCH=64)),
           ("window_bc256_w2", "window", dict(BC=256, warps=2)),
           ("window_bc512_w4", "window", dict(BC=512, warps=4))]
QUICK_CONFIGS = [("recompute", "recompute", {}), ("split", "split", {}), ("window", "window", dict(TCH=16))]


def timer(fn, reps: int, warmup: int, cuda: bool) -> dict:
    """Best and median microseconds of ``fn()`` over ``reps`` calls (CUDA events on the GPU, else wall)."""
    import torch
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) * 1e3)
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e6)
    return {"best_us": round(min(times), 2), "median_us": round(statistics.median(times), 2), "n": reps}


def _rel(a, b) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="JSON path (default: print only)")
    ap.add_argument("--quick", action="store_true", help="tiny shape, one tile per variant (CPU smoke test)")
    ap.add_argument("--reps", type=int, default=None, help="timed calls per configuration (default 50; quick 2)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed calls first (default 5; quick 1)")
    args = ap.parse_args(argv)

    import torch
    import triton
    cuda = torch.cuda.is_available()
    if not cuda and os.environ.get("TRITON_INTERPRET") != "1":
        raise SystemExit("no CUDA device: run with TRITON_INTERPRET=1 and --quick")
    from bayesfilt.nn.kernels import conv
    from bayesfilt.nn.reference import causal_conv1d_reference

    dev = "cuda" if cuda else "cpu"
    B, L, C, Kw = (2, 37, 40, 4) if args.quick else (8, 2048, 2048, 4)
    reps = args.reps or (2 if args.quick else 50)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 5)
    configs = QUICK_CONFIGS if args.quick else CONFIGS
    dtype = torch.bfloat16

    g0 = torch.Generator(device=dev).manual_seed(0)
    wide = torch.randn(B, L, 2 * C, generator=g0, device=dev).to(dtype)          # in_proj's output
    z = wide[..., :C]                                                            # column slice, stride 2C
    w = 0.5 * torch.randn(C, Kw, generator=g0, device=dev)
    b = 0.1 * torch.randn(C, generator=g0, device=dev)
    g = torch.randn(B, L, C, generator=g0, device=dev).to(dtype)

    # the float32 reference's gradients on the same rounded inputs
    zr, wr, br = (t.detach().float().clone().requires_grad_() for t in (z, w, b))
    (causal_conv1d_reference(zr, wr, br, silu=True) * g.float()).sum().backward()

    rec = {"benchmark": "conv_bench", **torch_record(), "triton": triton.__version__,
           "interpreted": os.environ.get("TRITON_INTERPRET") == "1"}
    rec["commit"], rec["dirty"] = git_state()
    rec["shape"] = {"B": B, "L": L, "C": C, "K": Kw, "z": f"bf16 column slice of [B, L, {2 * C}]", "g": "bf16",
                    "weight": "float32", "silu": True, "quick": args.quick}
    floor_bytes = 3 * B * L * C * 2                                              # read z, g; write dz (bf16)
    rec["floor_bytes"] = floor_bytes
    rec["floor_us"] = round(floor_bytes / COPY_RATE * 1e6, 2)
    rec["reps"], rec["warmup"] = reps, warmup
    rec["tiles"] = {k: dict(v) for k, v in conv._BWD_TILES.items()}
    rec["default_variant"] = conv._BWD_VARIANT

    base = conv.conv_backward(z, w, b, g, True, variant="recompute")
    rows = {}
    for name, variant, tiles in configs:
        out = conv.conv_backward(z, w, b, g, True, variant=variant, **tiles)
        row = {"variant": variant, "tiles": {**conv._BWD_TILES[variant], **tiles},
               "rel_dz": _rel(out[0], zr.grad), "rel_dw": _rel(out[1], wr.grad), "rel_db": _rel(out[2], br.grad),
               "max_abs_dz_vs_recompute": float((out[0].float() - base[0].float()).abs().max())}
        row["parity_ok"] = max(row["rel_dw"], row["rel_db"]) < 1e-5 and row["rel_dz"] < 1e-2   # dz is bf16
        if row["parity_ok"]:
            call = lambda: conv.conv_backward(z, w, b, g, True, variant=variant, **tiles)     # noqa: E731
            row.update(timer(call, reps, warmup, cuda))
            row["GBps_floor"] = round(floor_bytes / (row["median_us"] * 1e-6) / 1e9, 1)
        rows[name] = row
        print(name, {k: row.get(k) for k in ("best_us", "median_us", "rel_dz", "rel_dw", "parity_ok")}, flush=True)
    rec["backward"] = rows

    # the fused forward, and the peer: F.conv1d depthwise (transposed float32 copy) forward and backward
    rec["fused_forward"] = timer(lambda: conv.conv_forward(z, w, b, True), reps, warmup, cuda)
    zp, wp, bp = (t.detach().clone().requires_grad_() for t in (z, w, b))
    rec["peer_forward"] = timer(lambda: causal_conv1d_reference(zp, wp, bp, silu=True), reps, warmup, cuda)
    up = causal_conv1d_reference(zp, wp, bp, silu=True)
    rec["peer_backward"] = timer(lambda: torch.autograd.grad(up, (zp, wp, bp), g, retain_graph=True),
                                 reps, warmup, cuda)
    rec["peer"] = "causal_conv1d_reference: F.conv1d(groups=C) on a transposed float32 copy, SiLU; autograd backward"
    print("fused_forward", rec["fused_forward"], "peer_forward", rec["peer_forward"],
          "peer_backward", rec["peer_backward"], flush=True)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(rec, f, indent=1)
    return rec


if __name__ == "__main__":
    main()
