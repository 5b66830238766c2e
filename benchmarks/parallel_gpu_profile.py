"""Where the time of the GPU parallel filter goes (issue 3's speed targets): a diagnostic, not a result.

Three parts, each printed as a short table (device tool, after ``pip install --no-deps -e .``):

- ``first``: time to first result in a fresh process, split into phases (imports, CUDA start,
  the first call with its compilation, a second call), with the given Triton cache directory;
- ``torch``: the public call at T = 262144 (one series) and 1024 x 1024 under the torch profiler:
  device time per kernel, host time per call (to the return, without and with a sync), the
  number of torch operations on the host;
- ``ncu``: one call of each workload for Nsight Compute (``ncu --clock-control none ... python
  benchmarks/parallel_gpu_profile.py ncu``), after a warm-up outside the profiled range.

Usage::

    python benchmarks/parallel_gpu_profile.py first --cache /tmp/cold
    python benchmarks/parallel_gpu_profile.py torch --out $OUT/profile.json
    ncu --clock-control none --profile-from-start off --section WarpStateStats ... python benchmarks/parallel_gpu_profile.py ncu
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

FIRST = r"""
import time
t0 = time.perf_counter()
marks = []
def mark(name):
    marks.append((name, time.perf_counter() - t0))
import numpy as np
mark("import numpy")
import torch
mark("import torch")
import bayesfilt
mark("import bayesfilt")
import triton
mark("import triton")
torch.zeros(1, device="cuda")
torch.cuda.synchronize()
mark("cuda start")
model = bayesfilt.models.constant_velocity(q=0.05, r=4.0)
y = torch.as_tensor(np.random.default_rng(0).standard_normal((1024, 2)), dtype=torch.float32, device="cuda")
mark("data")
res = bayesfilt.parallel_filter(model, y)
torch.cuda.synchronize()
mark("first call")
res = bayesfilt.parallel_filter(model, y)
torch.cuda.synchronize()
mark("second call")
print("MARKS", " ".join(f"{n.replace(' ', '_')}={t:.3f}" for n, t in marks))
"""


def first(args):
    env = dict(os.environ, TRITON_CACHE_DIR=args.cache)
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", FIRST], env=env, capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - t0
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("MARKS")]
    print(f"first result (cache {args.cache}): process wall {wall:.2f} s;", line[0] if line else p.stderr[-3000:])


def workloads():
    import numpy as np
    import torch
    rng = np.random.default_rng(0)
    # a constant-velocity track (positions grow like a random walk of velocities) and noisy positions
    out = {}
    for shape in ((262144,), (1024, 1024)):
        T = shape[-1]
        B = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
        vel = np.cumsum(rng.standard_normal((B, T, 2)) * 0.2, axis=1)
        pos = np.cumsum(vel, axis=1) + rng.standard_normal((B, T, 2)) * 2.0
        out[shape] = torch.tensor(pos.reshape(shape[:-1] + (T, 2)) if len(shape) > 1 else pos[0],
                                  dtype=torch.float32, device="cuda")
    return out


def torch_part(args):
    import numpy as np
    import torch
    from torch.profiler import ProfilerActivity, profile

    import bayesfilt
    model = bayesfilt.models.constant_velocity(q=0.05, r=4.0)
    res = {}
    for shape, y in workloads().items():
        def call():
            return bayesfilt.parallel_filter(model, y, validate=False)
        for _ in range(3):
            call()
        torch.cuda.synchronize()
        host, total = [], []
        for _ in range(30):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            call()
            t1 = time.perf_counter()
            torch.cuda.synchronize()
            t2 = time.perf_counter()
            host.append(t1 - t0)
            total.append(t2 - t0)
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(5):
                call()
            torch.cuda.synchronize()
        kern = {}
        for e in prof.key_averages():
            dev = getattr(e, "device_time_total", None) or getattr(e, "cuda_time_total", 0)
            if dev and not e.key.startswith(("aten::", "cuda", "ProfilerStep")):   # kernels and copies
                kern[e.key] = {"count": e.count / 5, "device_us_per_call": dev / 5}
        ops = [e.name for e in prof.events() if e.name.startswith("aten::") and e.cpu_parent is None]
        row = {"host_to_return_ms": 1e3 * float(np.median(host)), "call_to_sync_ms": 1e3 * float(np.median(total)),
               "torch_ops_per_call": len(ops) / 5, "kernels": kern}
        res["x".join(map(str, shape))] = row
        print(f"\n{shape}: host to return {row['host_to_return_ms']:.3f} ms, call+sync {row['call_to_sync_ms']:.3f} ms,"
              f" {row['torch_ops_per_call']:.0f} torch ops")
        for k, v in sorted(kern.items(), key=lambda kv: -kv[1]["device_us_per_call"]):
            print(f"   {v['device_us_per_call']:9.1f} us  x{v['count']:.0f}  {k[:90]}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1)


def ncu_part(args):
    import torch

    import bayesfilt
    model = bayesfilt.models.constant_velocity(q=0.05, r=4.0)
    for shape, y in workloads().items():
        bayesfilt.parallel_filter(model, y, validate=False)
        torch.cuda.synchronize()
        torch.cuda.cudart().cudaProfilerStart()
        bayesfilt.parallel_filter(model, y, validate=False)
        torch.cuda.synchronize()
        torch.cuda.cudart().cudaProfilerStop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("part", choices=("first", "torch", "ncu"))
    ap.add_argument("--cache", default="/tmp/tcache_first")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    {"first": first, "torch": torch_part, "ncu": ncu_part}[args.part](args)


if __name__ == "__main__":
    main()
