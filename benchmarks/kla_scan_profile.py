"""One forward and one forward+backward of the Triton KLA scan for Nsight Compute (issue 4's "profile it").

The main benchmark shape of TARGETS.md §1 (B=8, L=2048, M=2048, S=16, float32), warmed up first, then
the profiled range (cudaProfilerStart/Stop) holds exactly one forward (no grad) and one
forward+backward. Usage (device tool)::

    ncu --clock-control none --profile-from-start off --section SpeedOfLight --section Occupancy \\
        --section LaunchStats --section WarpStateStats -o /tmp/kla python benchmarks/kla_scan_profile.py
"""

from __future__ import annotations

import argparse

import torch

from bayesfilt.nn.functional import kla_scan


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="8,2048,2048,16", help="B,L,M,S")
    B, L, M, S = (int(v) for v in ap.parse_args().shape.split(","))
    g = torch.Generator(device="cuda").manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g, device="cuda")                   # noqa: E731
    u = lambda *s: torch.rand(*s, generator=g, device="cuda")                    # noqa: E731
    xs = [r(B, L, M), 0.5 + u(B, L, M), r(B, L, S) / S ** 0.5, r(B, L, S) / S ** 0.5,
          0.5 + 0.5 * u(M, S), 0.1 * u(M, S)]
    xs = [x.requires_grad_() for x in xs]
    gy, gyv = r(B, L, M), r(B, L, M)
    for _ in range(2):                                     # compile and warm up outside the profiled range
        y, yv, _state = kla_scan(*xs, backend="triton")
        torch.autograd.backward((y, yv), (gy, gyv))
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStart()
    with torch.no_grad():
        kla_scan(*xs, backend="triton")
    y, yv, _state = kla_scan(*xs, backend="triton")
    torch.autograd.backward((y, yv), (gy, gyv))
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStop()
    print("profiled one forward and one forward+backward at", (B, L, M, S))


if __name__ == "__main__":
    main()
