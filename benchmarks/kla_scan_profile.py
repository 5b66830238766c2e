"""One forward and one forward+backward of the Triton KLA scan for Nsight Compute (issue 4's "profile it").

The main benchmark shape of TARGETS.md §1 (B=8, L=2048, M=2048, S=16, float32), warmed up first, then
the profiled range (cudaProfilerStart/Stop) holds exactly one forward (no grad) and one
forward+backward. Usage (device tool)::

    ncu --clock-control none --profile-from-start off --section SpeedOfLight --section Occupancy \\
        --section LaunchStats --section WarpStateStats -o /tmp/kla python benchmarks/kla_scan_profile.py
"""

from __future__ import annotations

import argparse
import json

import torch

from bayesfilt.nn.functional import kla_scan
from bayesfilt.nn.kernels.kla import kla_scan_triton


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="8,2048,2048,16", help="B,L,M,S")
    ap.add_argument("--tune", type=json.loads, default=None,
                    help='private launch knobs of the kernels, e.g. \'{"fwd_l2pf": 0}\' (then the kernels are '
                         "called directly, without kla_scan's input checks)")
    args = ap.parse_args()
    B, L, M, S = (int(v) for v in args.shape.split(","))
    if args.tune is None:
        scan = lambda *xs: kla_scan(*xs, backend="triton")[:2]                    # noqa: E731
    else:
        scan = lambda *xs: kla_scan_triton(*xs, _tune=args.tune)[:2]              # noqa: E731
    g = torch.Generator(device="cuda").manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g, device="cuda")                   # noqa: E731
    u = lambda *s: torch.rand(*s, generator=g, device="cuda")                    # noqa: E731
    xs = [r(B, L, M), 0.5 + u(B, L, M), r(B, L, S) / S ** 0.5, r(B, L, S) / S ** 0.5,
          0.5 + 0.5 * u(M, S), 0.1 * u(M, S)]
    xs = [x.requires_grad_() for x in xs]
    gy, gyv = r(B, L, M), r(B, L, M)
    for _ in range(2):                                     # compile and warm up outside the profiled range
        y, yv = scan(*xs)
        torch.autograd.backward((y, yv), (gy, gyv))
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStart()
    with torch.no_grad():
        scan(*xs)
    y, yv = scan(*xs)
    torch.autograd.backward((y, yv), (gy, gyv))
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStop()
    print("profiled one forward and one forward+backward at", (B, L, M, S), "tune", args.tune)


if __name__ == "__main__":
    main()
