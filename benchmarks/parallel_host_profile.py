"""Where the host time of ``bayesfilt.parallel_filter`` on a CUDA float32 tensor goes (Triton backend).

Two workloads (a constant-velocity model, q=0.05, r=4, random-walk tracks as in
benchmarks/parallel_gpu_profile.py): one series of T=262144 (element kernels, 7 Triton launches) and
1024 series x 1024 steps (method auto -> shared gains, 9 Triton launches). Per workload, after a warm-up:

  (a) wall clock (median/min over --calls public calls; each call ends in its own flag read, plus a
      synchronize) with validate=True (default) and validate=False, CUDA-event time of the same calls,
      and capture_filter(copy=False) replays as the floor (same kernels, no host work);
  (a3) the same, alternating rounds with triton_params' memo kept (the default since session 15) and
      removed before each call (the upload of every call before);
  (a4) the same with the early launches (``launch_now``: the scan's prefix kernels launched before the
      outputs are allocated, since session 15, in calls of at least triton_filter.EARLY_LAUNCH_STEPS
      series x steps; at f3c4879 also on the shared-gain path) and with every launch at the end;
  (a5) shared-gain workloads: the covariances and gains kept on the model (since session 15) or
      computed in every call (the memo removed before each call);
  (b) cProfile over --calls public calls: top 25 by tottime and by cumtime;
  (c) torch.profiler (CPU + CUDA) over --prof-calls calls: key_averages() sorted by self CPU time
      (25 rows), and per call the host time before the first kernel, the kernels' span and busy time;
  (d) host stages with torch.cuda.synchronize() around each (median of --stage-reps): _prepare,
      check_observations, model.validate, triton_params and its pieces (numpy padding, the pageable
      upload, a pinned non_blocking upload for comparison, the split), the kernel wrapper with params
      given (host-to-return and to-sync), launch_all of a pre-built plan, every Triton launch alone
      (JIT path, and the compiled kernel's launcher called directly where this Triton allows it), the
      post-kernel torch ops (loglik sum/cast, isinf/sum/add into the flag), torch.empty, flag.item(),
      FilterResult.

Writes $OUT/host_profile.json (OUT defaults to /tmp). About 20-40 s on an H200 with a warm Triton cache.

Usage (device machine, repo root, after ``pip install --no-deps -e .``)::

    python benchmarks/parallel_host_profile.py                       # everything, JSON to $OUT/host_profile.json
    python benchmarks/parallel_host_profile.py --shapes 1024x1024    # one workload
    python benchmarks/parallel_host_profile.py --cpu-smoke           # no GPU: TRITON_INTERPRET=1, tiny shapes, few reps
                                                        # (kernels replaced by no-ops: checks the script only)
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import statistics
import sys
import time


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="262144,1024x1024",
                    help="comma-separated: T (one series) or BxT (B series); default 262144,1024x1024")
    ap.add_argument("--ab-rounds", type=int, default=4, help="rounds of the direct-launch A/B (a2)")
    ap.add_argument("--calls", type=int, default=200, help="calls for (a) and (b)")
    ap.add_argument("--prof-calls", type=int, default=20, help="calls under torch.profiler (c)")
    ap.add_argument("--stage-reps", type=int, default=200, help="repetitions per stage timing (d)")
    ap.add_argument("--out", default=None, help="JSON path (default $OUT/host_profile.json, OUT default /tmp)")
    ap.add_argument("--cpu-smoke", action="store_true",
                    help="no GPU: run the code paths under TRITON_INTERPRET=1 on tiny CPU shapes, few reps")
    ap.add_argument("--no-profiler", action="store_true", help="skip (c)")
    return ap.parse_args(argv)


def parse_shape(s):
    parts = [int(p) for p in s.lower().split("x")]
    return tuple(parts)          # (T,) or (B, T)


def med(xs):
    return float(statistics.median(xs)) if xs else None


def _no_op_kernels(torch, tf, tr):
    """--cpu-smoke: replace the Triton kernels by no-ops (the first zeroes the flag, the last the
    log-likelihood terms, so the call finishes as a finite one)."""
    class NoKernel:
        def __init__(self, name):
            self.name = name

        def __getitem__(self, grid):
            def launch(*args, **kw):
                if self.name == "_fold_steps":
                    for a in args:
                        if isinstance(a, torch.Tensor) and a.dtype == torch.int32:
                            a.zero_()
                if self.name in ("_sweep", "_sweep_means"):
                    args[15 if self.name == "_sweep" else 12].zero_()
            return launch

    for name in ("_fold_steps", "_fold_elements", "_absorb", "_sweep"):
        setattr(tf, name, NoKernel(name))
    for name in ("_gains", "_fold_means", "_carry_means", "_sweep_means"):
        setattr(tr, name, NoKernel(name))


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.cpu_smoke:
        os.environ["TRITON_INTERPRET"] = "1"          # before triton is imported
        args.calls, args.prof_calls, args.stage_reps = min(args.calls, 3), min(args.prof_calls, 2), min(args.stage_reps, 3)
        if args.shapes == "262144,1024x1024":
            args.shapes = "256,512x8"                  # element path; shared gains (>= 512 series)
    out_path = args.out or os.path.join(os.environ.get("OUT", "/tmp"), "host_profile.json")
    t_start = time.perf_counter()

    import numpy as np
    import torch

    import bayesfilt
    import bayesfilt.scan._triton as trt
    import bayesfilt.scan.api as api
    import bayesfilt.scan.triton_filter as tf
    import bayesfilt.scan.triton_riccati as tr
    from bayesfilt.validation import check_observations

    if args.cpu_smoke:
        _no_op_kernels(torch, tf, tr)                 # the interpreter takes ~20 s a call: check the script only
    cuda = torch.cuda.is_available() and not args.cpu_smoke
    if not cuda and not args.cpu_smoke:
        print("no CUDA device: run with --cpu-smoke to check the script on the CPU", file=sys.stderr)
        return 2
    dev = torch.device("cuda" if cuda else "cpu")

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def commit():
        from _common import git_state                  # $GIT_COMMIT (gpu_run.sh) or git's HEAD
        return git_state()[0]

    try:
        import triton
        triton_version = triton.__version__
    except Exception:
        triton_version = None
    res = {"meta": {"device": torch.cuda.get_device_name() if cuda else "cpu (smoke: TRITON_INTERPRET=1)",
                    "torch": torch.__version__, "triton": triton_version, "numpy": np.__version__,
                    "python": platform.python_version(), "host_cpu": platform.processor() or platform.machine(),
                    "commit": commit(), "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                    "calls": args.calls, "prof_calls": args.prof_calls, "stage_reps": args.stage_reps,
                    "smoke": bool(args.cpu_smoke)}}

    model = bayesfilt.models.constant_velocity(q=0.05, r=4.0)
    rng = np.random.default_rng(0)

    def workload(shape):
        T = shape[-1]
        B = shape[0] if len(shape) == 2 else 1
        vel = np.cumsum(rng.standard_normal((B, T, 2)) * 0.2, axis=1)
        pos = np.cumsum(vel, axis=1) + rng.standard_normal((B, T, 2)) * 2.0
        arr = pos if len(shape) == 2 else pos[0]
        return torch.tensor(arr, dtype=torch.float32, device=dev)

    def timed(fn, reps, bracket=True):
        """Per rep: (host-to-return s, to-sync s), with a sync before each rep (bracket)."""
        host, total = [], []
        for _ in range(reps):
            if bracket:
                sync()
            t0 = time.perf_counter()
            fn()
            t1 = time.perf_counter()
            sync()
            t2 = time.perf_counter()
            host.append(t1 - t0)
            total.append(t2 - t0)
        return host, total

    def stage(fn, reps=None, warm=2):
        reps = reps or args.stage_reps
        for _ in range(warm):
            fn()
        sync()
        host, total = timed(fn, reps)
        return {"host_us_median": 1e6 * med(host), "synced_us_median": 1e6 * med(total),
                "host_us_min": 1e6 * min(host)}

    def launch_loop_us(fn, reps):
        """Host time per call of fn repeated without a sync in between (launch cost; the GPU queue absorbs it)."""
        fn()
        sync()
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        t1 = time.perf_counter()
        sync()
        return 1e6 * (t1 - t0) / reps

    # record the launch plans the wrappers build (the real launch_all still runs)
    plans = []
    real_launch_all = trt.launch_all

    def recording_launch_all(launches, warm_also=()):
        plans.append(list(launches))
        return real_launch_all(launches, warm_also)

    direct_jobs = []

    def dump():
        res["meta"]["elapsed_s"] = time.perf_counter() - t_start
        os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
        with open(out_path, "w") as f:
            json.dump(res, f, indent=1)

    for shape_s in args.shapes.split(","):
        shape = parse_shape(shape_s)
        key = "x".join(map(str, shape))
        print(f"\n=== workload {key} " + "=" * 60, flush=True)
        y = workload(shape)
        row = res[key] = {"shape": list(y.shape)}

        kw = {"backend": "triton"} if args.cpu_smoke else {}          # CUDA: the default backend="auto"

        def public():
            return bayesfilt.parallel_filter(model, y, **kw)

        def public_nv():
            return bayesfilt.parallel_filter(model, y, validate=False, **kw)

        t0 = time.perf_counter()
        first = public()
        sync()
        row["first_call_s"] = time.perf_counter() - t0
        for _ in range(5):
            public()
        sync()
        _m, yb, _backend, _sched, method = api._prepare(model, y, "covariance", "triton", "auto", "auto", True,
                                                        lazy=True)
        row["method"] = method
        row["loglik_sum"] = float(first.loglik.double().sum())

        # ---------------------------------------------------------------- (a) wall clock
        a = {}
        variants = {"public validate=True": public, "public validate=False": public_nv}
        if cuda:
            try:
                run_nc = bayesfilt.capture_filter(model, y, copy=False)
                run_nc(y)
                variants["capture_filter copy=False (floor)"] = lambda: run_nc(y)
            except Exception as exc:
                a["capture_filter error"] = repr(exc)[:300]
        for name, fn in variants.items():
            for _ in range(3):
                fn()
            sync()
            host, total = timed(fn, args.calls)
            ev = []
            if cuda:
                for _ in range(min(args.calls, 100)):
                    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    sync()
                    e0.record()
                    fn()
                    e1.record()
                    e1.synchronize()
                    ev.append(e0.elapsed_time(e1) / 1e3)
            a[name] = {"wall_ms_median": 1e3 * med(total), "wall_ms_min": 1e3 * min(total),
                       "host_to_return_ms_median": 1e3 * med(host),
                       "cuda_event_ms_median": 1e3 * med(ev) if ev else None}
            print(f"(a) {name:36s} wall {a[name]['wall_ms_median']:.3f} ms (min {a[name]['wall_ms_min']:.3f}), "
                  f"events {a[name]['cuda_event_ms_median'] or float('nan'):.3f} ms", flush=True)
        row["a_wall"] = a

        def ab_rounds(tag, key, label, arms):
            """Alternating rounds of ``arms`` ((name, setup, call) each: setup() before the arm's calls,
            then 3 warm-up calls and max(calls // 4, 10) timed ones); per arm the wall-clock median of
            each round, in ms, stored under ``row[key]`` and printed."""
            out = {name: [] for name, _setup, _fn in arms}
            for _round in range(args.ab_rounds):
                for name, setup, fn in arms:
                    setup()
                    for _ in range(3):
                        fn()
                    sync()
                    _host, total = timed(fn, max(args.calls // 4, 10))
                    out[name].append(1e3 * med(total))
            row[key] = out
            for name, vals in out.items():
                print(f"({tag}) {label}, {name:24s} wall medians per round (ms): "
                      + " ".join(f"{v:.3f}" for v in vals), flush=True)

        def nothing():
            pass

        def setting(obj, name, value):        # a setup that sets obj.name = value (restored by the caller)
            return lambda: setattr(obj, name, value)

        # ------------------------------------------- (a2) direct launches off / on, same process, alternating
        from bayesfilt.scan import _triton as tri
        versions = tri.DIRECT_LAUNCH_VERSIONS
        try:
            ab_rounds("a2", "a2_direct_ab_wall_ms_medians", "public call",
                      [("direct launches off", setting(tri, "DIRECT_LAUNCH_VERSIONS", ()), public),
                       ("direct launches on", setting(tri, "DIRECT_LAUNCH_VERSIONS", versions), public)])
        finally:
            tri.DIRECT_LAUNCH_VERSIONS = versions

        # ------------------------- (a3) the parameter upload kept on the model (triton_params' memo) or redone
        from bayesfilt.scan.triton_filter import _PARAMS_MEMO

        def drop(memo):                       # the state before session 15: the memo gone before each call
            def call():
                model.__dict__.pop(memo, None)
                return public_nv()
            return call

        ab_rounds("a3", "a3_params_memo_ab_wall_ms_medians", "public call validate=False",
                  [("upload per call", nothing, drop(_PARAMS_MEMO)), ("upload kept", nothing, public_nv)])

        # ---- (a5) the shared-gain path's covariances and gains kept on the model (triton_riccati.SHARED_MEMO)
        if method == "riccati":
            from bayesfilt.scan.triton_riccati import SHARED_MEMO
            ab_rounds("a5", "a5_shared_stage_ab_wall_ms_medians", "public call validate=False",
                      [("shared stage per call", nothing, drop(SHARED_MEMO)), ("shared stage kept", nothing, public_nv)])

        # --------- (a4) the early launches (launch_now: the prefix kernels before the outputs are allocated)
        from bayesfilt.scan import triton_filter as tfm
        early = tfm.launch_now
        try:
            ab_rounds("a4", "a4_early_launch_ab_wall_ms_medians", "public call validate=False",
                      [("all launches at the end", setting(tfm, "launch_now", lambda plan, kernels: False), public_nv),
                       ("early launches", setting(tfm, "launch_now", early), public_nv)])
        finally:
            tfm.launch_now = early

        # ---------------------------------------------------------------- (b) cProfile
        sync()
        pr = cProfile.Profile()
        pr.enable()
        for _ in range(args.calls):
            public()
        pr.disable()
        sync()
        b = {}
        for sort in ("tottime", "cumtime"):
            txt = io.StringIO()
            st = pstats.Stats(pr, stream=txt)
            st.sort_stats(sort).print_stats(25)
            b[sort] = txt.getvalue()
            print(f"\n(b) cProfile of {args.calls} public calls, {key}, by {sort}:")
            print("\n".join(ln for ln in txt.getvalue().splitlines() if ln.strip()))
        b["python_calls_per_call"] = pstats.Stats(pr).total_calls / args.calls
        row["b_cprofile"] = b

        # ---------------------------------------------------------------- (c) torch.profiler
        if not args.no_profiler:
            from torch.profiler import ProfilerActivity, profile, record_function
            acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
            with profile(activities=acts) as prof:
                for i in range(args.prof_calls):
                    with record_function(f"pubcall{i:04d}"):
                        public()
                        sync()
            table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)
            print(f"\n(c) torch.profiler, {args.prof_calls} public calls, {key}, by self CPU time:\n{table}")
            c = {"table": table}
            try:
                from torch.autograd import DeviceType
                evs = prof.events()
                ranges = sorted((e.time_range.start, e.time_range.end) for e in evs
                                if e.name.startswith("pubcall") and e.device_type == DeviceType.CPU)
                devk = sorted((e.time_range.start, e.time_range.end, e.name) for e in evs
                              if e.device_type == DeviceType.CUDA and not e.name.startswith("pubcall"))
                tops = [e.name for e in evs if e.device_type == DeviceType.CPU and e.cpu_parent is not None
                        and e.cpu_parent.name.startswith("pubcall") and e.name.startswith("aten::")]
                per = []
                for cs, ce in ranges:
                    ks = [k for k in devk if cs <= k[0] <= ce]
                    if ks:
                        per.append({"wall_us": ce - cs, "to_first_kernel_us": ks[0][0] - cs,
                                    "span_us": max(k[1] for k in ks) - ks[0][0], "busy_us": sum(k[1] - k[0] for k in ks),
                                    "device_ops": len(ks)})
                c["per_call_medians"] = {k: med([p[k] for p in per]) for k in per[0]} if per else None
                c["top_level_aten_ops_per_call"] = len(tops) / max(args.prof_calls, 1)
                if per:
                    print("(c) per call (medians, us, under the profiler): " +
                          ", ".join(f"{k} {v:.1f}" for k, v in c["per_call_medians"].items()))
            except Exception as exc:
                c["per_call_error"] = repr(exc)[:300]
            row["c_torch_profiler"] = c

        # ---------------------------------------------------------------- (d) host stages
        d = {}
        batch_params = (1,) if method == "riccati" else tuple(yb.shape[:-2])
        d["_prepare(lazy=True)"] = stage(lambda: api._prepare(model, y, "covariance", kw.get("backend", "auto"), "auto", "auto", True,
                                                                lazy=True))
        d["  check_observations(check_inf=False)"] = stage(
            lambda: check_observations(y, model.m, model.batch_shape, allow_torch=True, check_inf=False))
        d["  model.validate(num_timesteps=T) (memo hit)"] = stage(lambda: model.validate(num_timesteps=int(y.shape[-2])))
        d["  triton_available(device)"] = stage(lambda: api.triton_available(y.device))
        d["triton_params (whole, incl. upload)"] = stage(lambda: tf.triton_params(model, batch_params, y.dtype, dev))
        host_blocks = tf._static_host(model, 4, 2)
        d["  _static_host (numpy padding)"] = stage(lambda: tf._static_host(model, 4, 2))
        flat = np.concatenate([v[0].ravel() for v in host_blocks.values()]).astype(np.float32)
        d["  np.concatenate+astype"] = stage(
            lambda: np.concatenate([v[0].ravel() for v in host_blocks.values()]).astype(np.float32, copy=False))
        d["  torch.from_numpy(flat).to(device) (pageable H2D)"] = stage(lambda: torch.from_numpy(flat).to(device=dev))
        if cuda:
            pinned = torch.from_numpy(flat).pin_memory()
            d["  pinned .to(device, non_blocking=True) (alternative)"] = stage(
                lambda: pinned.to(device=dev, non_blocking=True))
            d["  pin_memory()+.to(non_blocking=True) per call (alternative)"] = stage(
                lambda: torch.from_numpy(flat).pin_memory().to(device=dev, non_blocking=True))
        devflat = torch.from_numpy(flat).to(device=dev)
        sizes = [v[0].size for v in host_blocks.values()]
        d["  torch.split into 8"] = stage(lambda: torch.split(devflat, sizes))
        P = tf.triton_params(model, batch_params, y.dtype, dev)

        if method == "riccati":
            def kernels():
                return tr.triton_riccati(model, yb, params=P)
        else:
            def kernels():
                return tf.triton_filter(model, yb, params=P)
        d["kernel wrapper, params given (launches+allocs+torch ops)"] = stage(kernels)
        d["_triton_filter_checked (wrapper + params + flag read)"] = stage(
            lambda: api._triton_filter_checked(model, yb, method, "auto"))

        # record the plan of one call, then relaunch it
        plans.clear()
        tf.launch_all, tr.launch_all = recording_launch_all, recording_launch_all
        try:
            out = kernels()
        finally:
            tf.launch_all, tr.launch_all = real_launch_all, real_launch_all
        sync()
        plan = [p for pl in plans for p in pl]
        if method == "riccati":                  # the covariance stage (5 launches + gains input) skipped
            nb = out["covs"].ndim - 3
            shared = (out["predicted_covs"][(0,) * nb], out["covs"][(0,) * nb])
            d["triton_riccati means-only (covariances given, params given)"] = stage(
                lambda: tr.triton_riccati(model, yb, params=P, covariances=shared))
        d["launch_all(plan) (pre-built plan)"] = stage(lambda: real_launch_all(plan))
        d["launch_all(plan) host us, back to back (no sync)"] = launch_loop_us(lambda: real_launch_all(plan),
                                                                               max(args.stage_reps // 10, 2))
        per_kernel = []
        for i, (k, grid, kargs, kw) in enumerate(plan):
            name = getattr(getattr(k, "fn", None), "__name__", None) or getattr(k, "name", str(k))
            entry = {"kernel": name, "grid": list(grid), "n_args": len(kargs) + len(kw)}
            entry["jit_launch_host_us"] = launch_loop_us(lambda: k[grid](*kargs, **kw), max(args.stage_reps // 2, 2))
            per_kernel.append(entry)
        d["per_kernel_launch"] = per_kernel
        direct_jobs.append((key, plan, per_kernel))                # timed at the end (see below)
        # post-kernel torch ops (as in triton_filter / triton_riccati)
        ll, bad = out["loglik_terms"], out["nonfinite"]
        vt = torch.float64
        d["ll.sum(-1, float64).to(dt)"] = stage(lambda: ll.sum(-1, dtype=vt).to(ll.dtype))
        lg = ll.sum(-1, dtype=vt).to(ll.dtype)
        flag = bad.clone()
        d["flag += isinf(loglik).sum(int32)"] = stage(lambda: flag.add_(torch.isinf(lg).sum(dtype=torch.int32)))
        d["torch.empty (one of 8 per call)"] = stage(lambda: torch.empty((1024, 4), dtype=y.dtype, device=dev))
        d["torch.empty x8 (the call's count)"] = stage(
            lambda: [torch.empty((1024, 4), dtype=y.dtype, device=dev) for _ in range(8)])
        d["flag.item() (GPU idle)"] = stage(lambda: bool(flag.item()))
        fields = {k: v for k, v in out.items() if k != "nonfinite"}
        d["FilterResult(**out)"] = stage(lambda: bayesfilt.FilterResult(**fields))
        if method == "riccati":
            d["expand x2 + select (riccati views)"] = stage(
                lambda: (out["covs"].expand(out["covs"].shape), out["predicted_covs"].expand(out["covs"].shape)))
        row["d_stages"] = d
        print(f"\n(d) host stages, {key} (us; host-to-return median / to-sync median):")
        for name, v in d.items():
            if isinstance(v, dict):
                print(f"   {v['host_us_median']:9.1f} / {v['synced_us_median']:9.1f}  {name}")
            elif isinstance(v, float):
                print(f"   {v:9.1f}              {name}")
        for e in per_kernel:
            print(f"   launch {e['kernel']:15s} grid {str(tuple(e['grid'])):12s} args {e['n_args']:3d}: "
                  f"JIT {e['jit_launch_host_us']:7.1f} us" +
                  "")
        out = None                                                # free the call's buffers
        plans.clear()
        sync()
        print(f"[{time.perf_counter() - t_start:.1f} s elapsed]", flush=True)

        dump()                                                     # after each workload

    # Last (a wrong launcher convention could break the CUDA context): each compiled kernel launched
    # through its launcher directly, without JITFunction.run's binding, specialisation and cache lookup
    # (what caching the compiled kernels per call shape would save), Triton >= 3.3 convention.
    if cuda:
        print("\n(d') direct launches of the compiled kernels (host us per launch, no sync in the loop):")
        for key, plan, per_kernel in direct_jobs:
            for (k, grid, kargs, kw), entry in zip(plan, per_kernel):
                try:
                    ck = k[grid](*kargs, **kw)
                    sig = k.signature
                    bound = list(sig.bind(*kargs, **{n: v for n, v in kw.items() if n in sig.parameters}).arguments.values())
                    if len(bound) != len(sig.parameters):
                        raise RuntimeError(f"bound {len(bound)} of {len(sig.parameters)} parameters")
                    stream = torch.cuda.current_stream().cuda_stream
                    g = tuple(grid) + (1,) * (3 - len(grid))

                    def direct():
                        ck.run(g[0], g[1], g[2], stream, ck.function, ck.packed_metadata, None, None, None, *bound)
                    direct()
                    sync()
                    entry["direct_launch_host_us"] = launch_loop_us(direct, max(args.stage_reps // 2, 2))
                    print(f"   {key:10s} {entry['kernel']:15s} JIT {entry['jit_launch_host_us']:7.1f} us, "
                          f"direct {entry['direct_launch_host_us']:6.1f} us")
                except Exception as exc:
                    entry["direct_launch_error"] = repr(exc)[:300]
                    print(f"   {key:10s} {entry['kernel']:15s} direct launch failed: {repr(exc)[:150]}")
        dump()
    print(f"\nwrote {out_path} ({res['meta']['elapsed_s']:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
