"""Where the time of the GPU parallel filter goes (issue 3's speed targets): a diagnostic, not a result.

Nine parts, each printed as a short table (device tool, after ``pip install --no-deps -e .``):

- ``first``: time to first result in a fresh process, split into phases (imports, CUDA start,
  the first call with its compilation, a second call), with the given Triton cache directory;
- ``firstprof``: the first call of a fresh process under cProfile (cold cache, then warm; kernels
  loaded on the main thread or in launch_all's threads), and Triton's cache-key hash alone;
- ``firsttrace``: the first call of a fresh process with an empty Triton cache, as it runs (kernels
  compiled in launch_all's threads), as a timeline: per thread, when each of Triton's phases started
  and ended (the cache-key hash, the Python code generator, each compiler stage, the C builds, the
  loading of each binary), for T = 1024 and 1024 x 1024 (session 17);
- ``torch``: the public call at T = 262144 (one series) and 1024 x 1024 under the torch profiler:
  device time per kernel, host time per call (to the return, without and with a sync), the
  number of torch operations on the host;
- ``host``: host time of the pieces of a call (allocations, splits, a Triton launch, the parameter
  upload, the flag read) and a cProfile of the public call;
- ``copies``: why ``capture_filter``'s default output copies seemed to cost 0.07-1.1 ms more than the
  replay when their device time is ~10 µs (the cause, found with ``gaps``: a freed parameter buffer
  that the graph still read, fixed at f356c56; docs/parallel.md): after the same replay, no copies, allocations only, clones (what ``copy=True`` does),
  ``copy_`` into buffers kept across calls, the same bytes through an elementwise kernel, and clones
  while the previous results stay alive, called in interleaved rounds; per variant the wall clock,
  the part after the run, the thread's CPU time and the GPU time of the copies alone (CUDA events
  behind a queued GPU sleep)
  (the first run, at 5ff5fac, timed the variants one after another: docs/parallel.md);
- ``l2``: the public call and ``capture_filter`` back to back and after an L2 flush (CUDA events
  and wall clock): whether the copies' cost is lost L2 residency (the interleaved ``copies`` run at
  0be35ce timed every variant alike, 1.6-1.8 ms, against 0.34-0.6 ms for repeated replays before);
- ``gaps``: every call of the same three under the torch profiler, per call the kernels' span, their
  summed durations and the host time before the first kernel (where the spread of ``l2`` lies);
- ``ncu``: one call of each workload for Nsight Compute (``ncu --clock-control none ... python
  benchmarks/parallel_gpu_profile.py ncu``), after a warm-up outside the profiled range.

Usage::

    python benchmarks/parallel_gpu_profile.py first --cache /tmp/cold
    python benchmarks/parallel_gpu_profile.py torch --out $OUT/profile.json
    python benchmarks/parallel_gpu_profile.py copies --out $OUT/copies.json
    ncu --clock-control none --profile-from-start off --section WarpStateStats ... python benchmarks/parallel_gpu_profile.py ncu
"""

from __future__ import annotations

import argparse
import json
import os
import re
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


FIRSTPROF = r"""
import cProfile, io, pstats, sys, time
t0 = time.perf_counter()
import numpy as np, torch, bayesfilt, triton
torch.zeros(1, device="cuda"); torch.cuda.synchronize()
print(f"READY imports+cuda {time.perf_counter() - t0:.3f} s")
mode, key_first, shape = sys.argv[1], sys.argv[2] == "key", tuple(int(s) for s in sys.argv[3].split("x"))
if mode == "serial":                 # compile/load in the launches themselves: the main thread does it all
    import bayesfilt.scan._triton as tr
    tr._warm_concurrently = lambda *a, **k: 0
if key_first:
    from triton.runtime.cache import triton_key
    t = time.perf_counter(); triton_key(); print(f"triton_key {time.perf_counter() - t:.3f} s")
model = bayesfilt.models.constant_velocity(q=0.05, r=4.0)
y = torch.as_tensor(np.random.default_rng(0).standard_normal(shape + (2,)), dtype=torch.float32, device="cuda")
pr = cProfile.Profile()
t = time.perf_counter()
pr.enable()
res = bayesfilt.parallel_filter(model, y)
ll = float(res.loglik.sum())
pr.disable()
print(f"FIRSTCALL {mode} key_first={key_first} {time.perf_counter() - t:.3f} s")
buf = io.StringIO()
pstats.Stats(pr, stream=buf).sort_stats("cumulative").print_stats(40)
print(buf.getvalue())
"""


def firstprof(args):
    """The first call of a fresh process under cProfile, with the kernels compiled or loaded in the
    launches (``serial``: everything on the main thread, where cProfile sees it) and as usual
    (``threads``), after a cold run fills the cache; also Triton's cache-key hash timed alone."""
    env = dict(os.environ, TRITON_CACHE_DIR=args.cache)
    for mode, key, shape in (("serial", "nokey", "1024"), ("serial", "nokey", "1024"), ("threads", "nokey", "1024"),
                             ("threads", "key", "1024"), ("serial", "key", "1024")):
        p = subprocess.run([sys.executable, "-c", FIRSTPROF, mode, key, shape], env=env, capture_output=True,
                           text=True, timeout=300)
        print(f"===== {mode} {key} {shape} rc={p.returncode}")
        print(p.stdout[:9000] if p.returncode == 0 else p.stderr[-3000:])


FIRSTTRACE = r"""
import inspect, sys, threading, time
t0 = time.perf_counter()
import numpy as np, torch, bayesfilt, triton
import triton.runtime.build as build, triton.runtime.cache as cache, triton.compiler.compiler as comp
from triton.backends.nvidia import compiler as nvc, driver as nvd
torch.zeros(1, device="cuda"); torch.cuda.synchronize()
print(f"READY imports+cuda {time.perf_counter() - t0:.3f} s")
events = []
def wrap(owner, name, label):
    f = getattr(owner, name)
    def w(*a, **k):
        s = time.perf_counter()
        try:
            return f(*a, **k)
        finally:
            events.append((threading.current_thread().name, label, s, time.perf_counter()))
    setattr(owner, name, staticmethod(w) if isinstance(inspect.getattr_static(owner, name), staticmethod) else w)
wrap(cache, "triton_key", "key hash")
wrap(build, "_build", "C build")
wrap(comp.ASTSource, "make_ir", "codegen (Python)")
for st in ("make_ttir", "make_ttgir", "make_llir", "make_ptx", "make_cubin"):
    wrap(nvc.CUDABackend, st, st)
wrap(comp.CompiledKernel, "_init_handles", "load + launcher")
wrap(nvd.CudaUtils, "__init__", "driver utils")
shape = tuple(int(s) for s in sys.argv[1].split("x"))
model = bayesfilt.models.constant_velocity(q=0.05, r=4.0)
y = torch.as_tensor(np.random.default_rng(0).standard_normal(shape + (2,)), dtype=torch.float32, device="cuda")
t = time.perf_counter()
res = bayesfilt.parallel_filter(model, y)
ll = float(res.loglik.sum())
print(f"FIRSTCALL {sys.argv[1]} {time.perf_counter() - t:.3f} s")
for th, label, s, e in sorted(events, key=lambda x: x[2]):
    print(f"  {th[:16]:16s} {label:18s} {s - t:7.3f} -> {e - t:7.3f}  ({e - s:.3f} s)")
"""


def firsttrace(args):
    for shape in ("1024", "1024x1024"):
        env = dict(os.environ, TRITON_CACHE_DIR=os.path.join(args.cache, shape))
        p = subprocess.run([sys.executable, "-c", FIRSTTRACE, shape], env=env, capture_output=True, text=True,
                           timeout=300)
        print(f"===== {shape} rc={p.returncode}")
        print(p.stdout[:12000] if p.returncode == 0 else p.stderr[-3000:])


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
    cases = []
    for shape, y in workloads().items():
        cases.append((shape, "public call", lambda y=y: bayesfilt.parallel_filter(model, y, validate=False)))
        if args.graph:              # capture_filter with its output copies (why do they cost ~0.6-0.9 ms?)
            run = bayesfilt.capture_filter(model, y)
            cases.append((shape, "capture_filter", lambda y=y, run=run: run(y)))
    for shape, what, call in cases:
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
        res["x".join(map(str, shape)) + ("" if what == "public call" else " " + what)] = row
        print(f"\n{shape} {what}: host to return {row['host_to_return_ms']:.3f} ms, call+sync {row['call_to_sync_ms']:.3f} ms,"
              f" {row['torch_ops_per_call']:.0f} torch ops")
        for k, v in sorted(kern.items(), key=lambda kv: -kv[1]["device_us_per_call"]):
            print(f"   {v['device_us_per_call']:9.1f} us  x{v['count']:.0f}  {k[:90]}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1)


def owned(x):
    """The data a copy of output ``x`` must hold: the shared-gain path's covariances are one (T, n, n)
    tensor expanded over the batch (batch stride 0), which ``capture_filter(copy=True)`` clones once
    and expands again; every other output whole."""
    return x[(0,) * (x.ndim - 3)] if x.ndim > 3 and x.stride(0) == 0 else x


def copy_variants(first, outputs):
    """The output handlings compared by ``copies``: name -> function of a ``capture_filter(...,
    copy=False)`` result, called right after the run returned (its flag read, so the replay has
    finished). ``first`` is one such result (it shapes the kept buffers), ``outputs`` the names of its
    tensor outputs. The copies are of :func:`owned` data, as ``capture_filter(copy=True)`` makes them."""
    import torch
    bufs = [torch.empty_like(owned(getattr(first, k))) for k in outputs]
    held = []

    def clones(r):
        return [owned(getattr(r, k)).clone().expand(getattr(r, k).shape) for k in outputs]

    def into_buffers(r):                                # cudaMemcpyAsync device to device
        for buf, k in zip(bufs, outputs):
            buf.copy_(owned(getattr(r, k)))
        return bufs

    def kernel_into_buffers(r):                         # the same bytes through an elementwise kernel
        for buf, k in zip(bufs, outputs):
            torch.mul(owned(getattr(r, k)), 1.0, out=buf)
        return bufs

    def clones_held(r):                                 # a caller keeping the last two results
        held.append(clones(r))
        del held[:-2]
        return held[-1]

    return {"none (copy=False)": lambda r: r,
            "allocations only": lambda r: [torch.empty_like(owned(getattr(r, k))) for k in outputs],
            "clones, dropped": clones, "copy_ into kept buffers": into_buffers,
            "elementwise kernel into kept buffers": kernel_into_buffers, "clones, last two kept": clones_held}


def _meta(timing: str) -> dict:
    """The record's header: device, versions, commit, date and how it was timed."""
    import torch
    import triton
    from _common import git_state
    return {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
            "commit": git_state()[0], "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "timing": timing}


def time_interleaved(calls, rounds=40, gpu_reps=5):
    """Each round calls every entry of ``calls`` (name -> (run, handle)) once, the order reversed
    every other round, so that every variant meets the same host and GPU conditions. Per call: the
    wall clock between syncs, the part after ``run`` returned (the output handling and the final
    sync) and the calling thread's CPU time over the call (``time.thread_time``: wall far above it
    means the thread was off the CPU). Then, per variant, the GPU time of the handling alone: CUDA
    events around it while the GPU is held busy by ``torch.cuda._sleep`` queued first (so that the
    handling's launches wait on the GPU and the events time the device work only, not the host's
    enqueueing), median of ``gpu_reps``. Returns name -> medians and minima in ms."""
    import numpy as np
    import torch
    names = list(calls)
    rec = {n: {"wall": [], "after_run": [], "thread_cpu": [], "gpu_handling": []} for n in names}
    for i in range(rounds + 2):                         # two warm-up rounds, not recorded
        for n in (names if i % 2 == 0 else names[::-1]):
            run, handle = calls[n]
            torch.cuda.synchronize()
            t0, c0 = time.perf_counter(), time.thread_time()
            r = run()
            t1 = time.perf_counter()
            handle(r)
            torch.cuda.synchronize()
            t2, c2 = time.perf_counter(), time.thread_time()
            if i >= 2:
                rec[n]["wall"].append(1e3 * (t2 - t0))
                rec[n]["after_run"].append(1e3 * (t2 - t1))
                rec[n]["thread_cpu"].append(1e3 * (c2 - c0))
    ev0, ev1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    sleep = getattr(torch.cuda, "_sleep", None)
    for n in names:
        run, handle = calls[n]
        for _ in range(gpu_reps):
            r = run()
            if sleep is not None:
                sleep(4_000_000)                        # ~2 ms of GPU cycles, ahead of the handling
            ev0.record()
            handle(r)
            ev1.record()
            torch.cuda.synchronize()
            rec[n]["gpu_handling"].append(ev0.elapsed_time(ev1))
    return {n: {f"{k}_median_ms": float(np.median(v)) for k, v in d.items()}
            | {f"{k}_min_ms": float(np.min(v)) for k, v in d.items()} for n, d in rec.items()}


def copies_part(args):
    import dataclasses

    import torch

    import bayesfilt
    model = bayesfilt.models.constant_velocity(q=0.05, r=4.0)
    res = {"meta": _meta(time_interleaved.__doc__.split("Returns")[0].strip())}
    for shape, y in workloads().items():
        run_nc = bayesfilt.capture_filter(model, y, copy=False)
        run_default = bayesfilt.capture_filter(model, y)
        r = run_nc(y)
        outputs = [f.name for f in dataclasses.fields(r) if isinstance(getattr(r, f.name), torch.Tensor)]
        calls = {name: (lambda: run_nc(y), h) for name, h in copy_variants(r, outputs).items()}
        calls["capture_filter default (copy=True)"] = (lambda: run_default(y), lambda r: r)
        n0 = torch.cuda.memory_stats()["num_device_alloc"]
        rows = time_interleaved(calls, rounds=args.rounds)
        rows["device allocations during the rounds"] = torch.cuda.memory_stats()["num_device_alloc"] - n0
        rows["output MB"] = sum(owned(getattr(r, k)).numel() * getattr(r, k).element_size() for k in outputs) / 1e6
        key = "x".join(map(str, shape))
        res[key] = rows
        print(f"\n{key}: {rows['output MB']:.1f} MB of outputs in {len(outputs)} tensors; medians (min) in ms; "
              f"{rows['device allocations during the rounds']} device allocations in the rounds")
        print(f"   {'':38s} {'wall':>15s} {'after run':>15s} {'thread CPU':>11s} {'GPU handling':>13s}")
        for name, v in rows.items():
            if isinstance(v, dict):
                print(f"   {name:38s} {v['wall_median_ms']:6.3f} ({v['wall_min_ms']:6.3f}) "
                      f"{v['after_run_median_ms']:6.3f} ({v['after_run_min_ms']:6.3f}) {v['thread_cpu_median_ms']:11.3f} "
                      f"{v['gpu_handling_median_ms']:13.4f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1)


def l2_part(args):
    """Is the slow-down of the copies an L2 effect? The workloads' data (tens of MB) nearly fit the
    H200's 60-MB L2 (``l2_bytes`` in the JSON), so a call repeated back to back finds its inputs and intermediates there, and
    anything that touches other memory in between (the copies into kept buffers, a second graph)
    evicts them. Per call: back to back, and after zeroing a 256-MB buffer (an L2 flush, not timed);
    the public call and ``capture_filter`` (no copies, default copies); blocks of ``--rounds`` calls,
    warm and flushed alternating three times. CUDA events time the device work, the wall clock the
    call to its sync."""
    import numpy as np
    import torch

    import bayesfilt
    model = bayesfilt.models.constant_velocity(q=0.05, r=4.0)
    flush = torch.empty(256 * 2**20, dtype=torch.uint8, device="cuda")
    ev0, ev1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    res = {"meta": {**_meta(l2_part.__doc__),
                    "l2_bytes": getattr(torch.cuda.get_device_properties(0), "L2_cache_size", None)}}
    for shape, y in workloads().items():
        calls = {"parallel_filter (public call)": lambda: bayesfilt.parallel_filter(model, y, validate=False),
                 "capture_filter copy=False": bayesfilt.capture_filter(model, y, copy=False),
                 "capture_filter default": bayesfilt.capture_filter(model, y)}
        calls["capture_filter copy=False"] = (lambda run: lambda: run(y))(calls["capture_filter copy=False"])
        calls["capture_filter default"] = (lambda run: lambda: run(y))(calls["capture_filter default"])
        rec = {n: {"warm_gpu": [], "warm_wall": [], "flushed_gpu": [], "flushed_wall": []} for n in calls}
        for name, run in calls.items():
            for _ in range(3):
                run()
            for _block in range(3):
                for mode in ("warm", "flushed"):
                    for _ in range(args.rounds):
                        if mode == "flushed":
                            flush.zero_()
                        torch.cuda.synchronize()
                        t0 = time.perf_counter()
                        ev0.record()
                        run()
                        ev1.record()
                        torch.cuda.synchronize()
                        rec[name][f"{mode}_wall"].append(1e3 * (time.perf_counter() - t0))
                        rec[name][f"{mode}_gpu"].append(ev0.elapsed_time(ev1))
        key = "x".join(map(str, shape))
        res[key] = {n: {f"{k}_median_ms": float(np.median(v)) for k, v in d.items()}
                    | {f"{k}_min_ms": float(np.min(v)) for k, v in d.items()} for n, d in rec.items()}
        print(f"\n{key}: medians (min) in ms, {3 * args.rounds} calls each")
        print(f"   {'':32s} {'warm GPU':>15s} {'warm wall':>15s} {'flushed GPU':>15s} {'flushed wall':>15s}")
        for n, v in res[key].items():
            print(f"   {n:32s} " + " ".join(f"{v[k + '_median_ms']:6.3f} ({v[k + '_min_ms']:6.3f})"
                                          for k in ("warm_gpu", "warm_wall", "flushed_gpu", "flushed_wall")))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1)


def gaps_part(args):
    """Where the spread of a call's time lies (the ``l2`` run at 85b4d40: ``capture_filter``'s default
    call took 1.07 ms median but 0.62 ms min at T = 262144, ``copy=False`` 0.557 / 0.548): every call of
    the public call, ``capture_filter`` default and ``copy=False`` under the torch profiler, one
    ``record_function`` range per call (the call and its sync). Per call, from the device events that
    start inside its range: the span from the first kernel's start to the last kernel's end, the sum of
    the kernel durations (busy), the host time from the range's start to the first kernel, and the
    longest kernel. A span far above busy means the GPU waited on the host inside the call; a busy
    that varies means the kernels themselves ran slower."""
    import numpy as np
    import torch
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile, record_function

    import bayesfilt
    model = bayesfilt.models.constant_velocity(q=0.05, r=4.0)
    res = {"meta": _meta(gaps_part.__doc__)}
    for shape, y in workloads().items():
        run_nc, run_default = bayesfilt.capture_filter(model, y, copy=False), bayesfilt.capture_filter(model, y)
        calls = {"parallel_filter (public call)": lambda: bayesfilt.parallel_filter(model, y, validate=False),
                 "capture_filter copy=False": lambda: run_nc(y), "capture_filter default": lambda: run_default(y)}
        key = "x".join(map(str, shape))
        res[key] = {}
        for name, call in calls.items():
            for _ in range(3):
                call()
            torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                for i in range(args.rounds):
                    with record_function(f"call{i:04d}"):
                        call()
                        torch.cuda.synchronize()
            evs = prof.events()
            # the record_function ranges appear twice: on the host and as a device annotation
            ranges = sorted((e.time_range.start, e.time_range.end) for e in evs
                            if re.fullmatch(r"call\d+", e.name) and e.device_type == DeviceType.CPU)
            dev = sorted((e.time_range.start, e.time_range.end, e.name) for e in evs
                         if e.device_type == DeviceType.CUDA and not re.fullmatch(r"call\d+", e.name))
            rows = []
            for cs, ce in ranges:
                ks = [k for k in dev if cs <= k[0] <= ce]
                if not ks:
                    continue
                top = max(ks, key=lambda k: k[1] - k[0])
                by_name = {}
                for k in ks:
                    n, t = by_name.get(k[2][:60], (0, 0.0))
                    by_name[k[2][:60]] = (n + 1, t + k[1] - k[0])
                rows.append({"wall_us": ce - cs, "span_us": max(k[1] for k in ks) - ks[0][0],
                             "busy_us": sum(k[1] - k[0] for k in ks), "to_first_kernel_us": ks[0][0] - cs,
                             "kernels": len(ks), "longest_us": top[1] - top[0], "longest": top[2][:80],
                             "by_kernel": {n: {"count": c, "us": t} for n, (c, t) in by_name.items()}})
            order = sorted(range(len(rows)), key=lambda i: rows[i]["span_us"])
            summary = {f"{k}_median": float(np.median([r[k] for r in rows]))
                       for k in ("wall_us", "span_us", "busy_us", "to_first_kernel_us", "kernels", "longest_us")}
            res[key][name] = {"summary": summary, "calls": rows}
            print(f"\n{key} {name}: {len(rows)} calls; medians: " +
                  ", ".join(f"{k[:-7]} {v:.1f}" for k, v in summary.items()))
            for i in order[:2] + order[-3:]:
                r = rows[i]
                print(f"   call {i:3d}: wall {r['wall_us']:7.1f} span {r['span_us']:7.1f} busy {r['busy_us']:7.1f} "
                      f"to first {r['to_first_kernel_us']:6.1f} n {r['kernels']:3d} longest {r['longest_us']:6.1f} "
                      f"{r['longest'][:50]}")
            for i in (order[0], order[-1]):             # the fastest and the slowest call, kernel by kernel
                print(f"   call {i} kernels: " + "; ".join(f"{n[:40]} x{v['count']} {v['us']:.1f}"
                                                         for n, v in rows[i]["by_kernel"].items()))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1)


def host_part(args):
    """Host cost of the pieces of a call (no sync inside the timed loops), and a cProfile of the call."""
    import cProfile
    import io
    import pstats

    import torch

    import bayesfilt
    from bayesfilt.scan import triton_filter as tf
    model = bayesfilt.models.constant_velocity(q=0.05, r=4.0)
    dev = torch.device("cuda")
    buf = torch.zeros(1 << 20, device=dev)
    flag = torch.zeros(1, dtype=torch.int32, device=dev)
    host = torch.zeros(64, dtype=torch.float64)
    y = torch.randn(4096, 2, device=dev)
    prm = tf.triton_params(model, (), torch.float32, dev)
    tf.triton_filter(model, y, params=prm)
    torch.cuda.synchronize()

    def per_call_us(fn, reps=2000):
        fn()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        t1 = time.perf_counter()
        torch.cuda.synchronize()
        return 1e6 * (t1 - t0) / reps

    sm = torch.empty((1, 1, 4), device=dev)
    sP = torch.empty((1, 1, 4, 4), device=dev)
    el = tuple(torch.empty(16, device=dev) for _ in range(5))
    costs = {
        "torch.empty (cuda)": per_call_us(lambda: torch.empty((64, 4, 4), device=dev)),
        "torch.zeros (cuda)": per_call_us(lambda: torch.zeros((1,), dtype=torch.int32, device=dev)),
        "split into 8": per_call_us(lambda: torch.split(buf[:70], [16, 16, 8, 4, 4, 2, 4, 16])),
        "slice+view": per_call_us(lambda: buf[16:32].view(4, 4)),
        "reshape": per_call_us(lambda: y.reshape(1, 4096, 2)),
        "H2D 64 float64 (pageable)": per_call_us(lambda: host.to(dev), reps=500),
        "item() of a ready int": per_call_us(lambda: flag.item(), reps=500),
        "triton_params (static model)": per_call_us(lambda: tf.triton_params(model, (), torch.float32, dev), reps=500),
        "triton launch _absorb (1 program)": per_call_us(
            lambda: tf._absorb[(1, 1)](*el, sm, sP, sm, sP, 1, 1, 1, N=4, EPS=1e-6, ZERO_START=False, num_warps=1),
            reps=500),
        "triton_filter T=4096 (params given)": per_call_us(lambda: tf.triton_filter(model, y, params=prm), reps=300),
        "parallel_filter T=4096": per_call_us(lambda: bayesfilt.parallel_filter(model, y, validate=False), reps=300),
    }
    # the compiled kernel launched without the JIT's argument binding and cache lookup
    args = (*el, sm, sP, sm, sP, 1, 1, 1)
    ck = tf._absorb[(1, 1)](*args, N=4, EPS=1e-6, ZERO_START=False, num_warps=1)
    try:
        stream = torch.cuda.current_stream().cuda_stream
        full = args + (4, 1e-6, False)
        costs["compiled kernel.run (1 program)"] = per_call_us(
            lambda: ck.run(1, 1, 1, stream, ck.function, ck.packed_metadata, None, None, None, *full), reps=500)
    except Exception as exc:                       # the launcher's calling convention differs by version
        print("direct launch failed:", repr(exc)[:300])
    print("\nhost cost per call (us, no sync in the loop):")
    for k, v in costs.items():
        print(f"   {v:8.1f}  {k}")
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(200):
        bayesfilt.parallel_filter(model, y, validate=False)
    pr.disable()
    txt = io.StringIO()
    pstats.Stats(pr, stream=txt).sort_stats("tottime").print_stats(22)
    print("\ncProfile of 200 public calls, T=4096 (tottime):")
    print("\n".join(ln for ln in txt.getvalue().splitlines() if ln.strip())[:5000])
    if args.out:
        with open(args.out, "w") as f:
            json.dump(costs, f, indent=1)


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
    ap.add_argument("part", choices=("first", "firstprof", "firsttrace", "torch", "ncu", "host", "copies", "l2", "gaps"))
    ap.add_argument("--cache", default="/tmp/tcache_first")
    ap.add_argument("--out", default="")
    ap.add_argument("--rounds", type=int, default=40, help="copies: rounds of the interleaved calls; l2: calls per block")
    ap.add_argument("--graph", action="store_true", help="torch: also profile capture_filter's replay with copies")
    args = ap.parse_args()
    {"first": first, "firstprof": firstprof, "firsttrace": firsttrace, "torch": torch_part, "ncu": ncu_part, "host": host_part, "copies": copies_part,
     "l2": l2_part, "gaps": gaps_part}[args.part](args)


if __name__ == "__main__":
    main()
