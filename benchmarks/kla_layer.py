"""KLA layer forward+backward on the GPU, beside flash-linear-attention's GatedLinearAttention.

Workload (issue 5, TARGETS.md §1): one mixer layer, d_model 1024, B=8, L=2048, bf16 autocast,
forward + backward of ``(y * g).sum()`` with a fixed random g. Reported per layer: median time
of the timed iterations (CUDA events), tokens/s, and the peak GPU memory of one step above what
was allocated before it. Peers in the same process: fla's ``GatedLinearAttention`` layer with
its default settings (expand_k 0.5, expand_v 1, 4 heads) and with the state size matched to
KLA's (16 heads, key dim 16, value dim 128 per head: 16 x 16 x 128 = 2048 x 16 = M x S); with
``--compile`` also the default GLA layer under torch.compile (``gla_compiled``), as KLA's
``kla_compiled``. Each GPU row also reports the median host time to enqueue one step
(``host_median_s``; every step starts on an idle GPU, so a host time near the step time means the
GPU waited for Python).

Parity first: on a small shape the layer's outputs and gradients with backend "triton" are
compared with backend "torch" (float32); nothing is timed if they disagree.

Usage (GPU)::

    python benchmarks/kla_layer.py --out benchmarks/results/kla_layer.json
    python benchmarks/kla_layer.py --quick       # small shapes (also runs on the CPU, torch backend)
    python benchmarks/kla_layer.py --compile --profile 3   # + device time per kernel and category, GPU idle time
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import git_state  # noqa: E402


def parity(device: str) -> dict:
    """Layer outputs and gradients: backend triton (or the default) against backend torch, float32."""
    from bayesfilt.nn import KLAConfig, KLALayer
    backends = ("torch", "triton") if device == "cuda" else ("torch", "reference")
    res = {}
    x = torch.randn(2, 300, 64, device=device)
    outs = {}
    for be in backends:
        torch.manual_seed(0)
        layer = KLALayer(64, KLAConfig(backend=be)).to(device)
        with torch.no_grad():
            layer.p_raw.uniform_(-3, 0)
        xi = x.clone().requires_grad_(True)
        y, var = layer(xi, return_variance=True)
        (y.square().sum() + var.sum()).backward()
        outs[be] = [y, var, xi.grad] + [p.grad for p in layer.parameters()]
    for i, (a, b) in enumerate(zip(*outs.values())):
        err = float((a.detach() - b.detach()).norm() / b.detach().norm().clamp_min(1e-30))
        res[f"rel_rms_{i}"] = err
    res["max_rel_rms"] = max(res.values())
    res["backends"] = list(backends)
    return res


#: kernel-name patterns of profile categories, first match wins (``--profile``)
CATEGORIES = (("kla_scan", r"^_(fwd|bwd)_kernel"), ("matmul", r"gemm|nvjet|cutlass|sm90_|matmul|xmma"),
              ("inductor", r"^triton_"), ("conv", r"conv|depthwise|cudnn"),
              ("fla", r"^(chunk|fused|layer_norm|rms|l2norm|parallel)"), ("reduce", r"reduce|sum"),
              ("copy", r"copy|Memcpy|Memset|elementwise"))
# (in session 12's runs "conv" came before "inductor", so inductor kernels named after the
# convolution counted as "conv": 107 us at 97fa65f, 65 us at 887721b)


def profile_steps(step, n: int) -> dict:
    """``n`` calls of ``step`` under the torch profiler: device time per step of every kernel and the
    sum per category (``CATEGORIES``; the rest is "other")."""
    import re

    from torch.profiler import ProfilerActivity, profile
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(n):
            step()
        torch.cuda.synchronize()
    kern, cats = {}, {}
    for e in prof.key_averages():
        dev = getattr(e, "device_time_total", None) or getattr(e, "cuda_time_total", 0)
        if not dev or e.key.startswith(("aten::", "ProfilerStep", "cuda")):
            continue
        row = kern.setdefault(e.key[:120], {"count": 0.0, "us": 0.0})   # (names equal in 120 characters: summed)
        row["count"] += e.count / n
        row["us"] += dev / n
        cat = next((c for c, pat in CATEGORIES if re.search(pat, e.key)), "other")
        cats[cat] = cats.get(cat, 0.0) + dev / n
    top = dict(sorted(kern.items(), key=lambda kv: -kv[1]["us"])[:40])
    return {"steps": n, "device_us_per_step": sum(v["us"] for v in kern.values()),
            "categories_us": dict(sorted(cats.items(), key=lambda kv: -kv[1])), "top_kernels": top,
            "idle": idle_gaps(prof, n), "launchers": _safe(launchers, step)}


def _safe(fn, *args):
    """fn(*args), or {"error": ...}: a diagnostic must not cost the row its numbers."""
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001
        return {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}


def launchers(step, top: int = 25) -> dict:
    """One more step under the profiler with host activity, shapes and Python stacks: the device
    time of the kernels each host op launched itself, by (op, input shapes, the innermost Python frame
    in bayesfilt/ or benchmarks/): which code launches the copies and small kernels. (A separate
    pass: recording host activity slows the host, so its gaps are not the timed ones.)"""
    from torch.profiler import ProfilerActivity, profile
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], record_shapes=True,
                 with_stack=True) as prof:
        step()
        torch.cuda.synchronize()
    rows = {}
    for e in prof.events():
        kern = getattr(e, "kernels", None) or []
        if not kern:
            continue
        chain, shapes, frame, p = [], None, "?", e         # e: the runtime's launch call; its parents: the ops
        while p is not None:
            if not p.name.startswith(("cuda", "cu", "Memcpy", "Memset")) and len(chain) < 4:
                chain.append(p.name)
                shapes = shapes if shapes is not None else (p.input_shapes or None)
            if frame == "?" and p.stack:
                frame = next((f for f in p.stack if "bayesfilt" in f or "benchmarks" in f), "?")
            p = p.cpu_parent
        key = f"{' < '.join(chain) or e.name} {str(shapes)[:80]} @ {frame[-90:]}"
        row = rows.setdefault(key, {"count": 0, "us": 0.0})
        row["count"] += 1
        row["us"] += sum(k.duration for k in kern)
    return dict(sorted(rows.items(), key=lambda kv: -kv[1]["us"])[:top])


def idle_gaps(prof, n: int, top: int = 12) -> dict:
    """Where the GPU waited for the host: the kernels' span over the ``n`` back-to-back steps, the
    time inside it with no kernel running, and the longest such gaps with the kernels around them."""
    from torch.autograd import DeviceType
    ivs = sorted((e.time_range.start, e.time_range.end, e.name) for e in prof.events()
                 if e.device_type == DeviceType.CUDA and e.time_range.end > e.time_range.start)
    if not ivs:
        return {}
    gaps, end, prev = [], ivs[0][1], ivs[0][2]
    for s0, e0, name in ivs[1:]:
        if s0 > end:
            gaps.append((s0 - end, prev, name))
        if e0 > end:
            end, prev = e0, name
    span = end - ivs[0][0]
    idle = sum(g for g, _, _ in gaps)
    return {"span_us_per_step": span / n, "idle_us_per_step": idle / n,
            "longest": [{"us": g, "after": a[:80], "before": b[:80]} for g, a, b in sorted(gaps, reverse=True)[:top]]}


#: rows of the compiled layer with other kernel defaults: (module, attribute) -> value while the row runs
#: (the convolution's backward variant: bayesfilt.nn.kernels.conv._BWD_TILES, benchmarks/conv_bench.py;
#: the scan backward's bwd_rel, bwd_alg and s-block width: bayesfilt.nn.kernels.kla, docs/kla_kernels.md)
#: kla_compiled_s12: the kernels as built before session 13's defaults (recompute convolution backward,
#: bwd_rel 0, bwd_alg 0; and the variance computed, VARIANCE_ROWS)
ROW_DEFAULTS = {"kla_compiled_s12": {("conv", "_BWD_VARIANT"): "recompute", ("kla", "_BWD_REL"): 0,
                                    ("kla", "_BWD_ALG"): 0, ("kla", "_BWD_MOM"): 0},
                "kla_compiled_convsplit": {("conv", "_BWD_VARIANT"): "split"},
                # the scan backward's moment-form adjoint (bwd_mom; s14b and s14c ran it as the default, rows
                # kla_compiled, and the information form as kla_compiled_info)
                "kla_compiled_mom": {("kla", "_BWD_MOM"): 1}}


#: rows whose layer also returns its variance (the scan computes y_var; the loss uses y only): the
#: cost of the variance, which the layer skips since session 13 when it is not asked for
VARIANCE_ROWS = ("kla_compiled_var", "kla_compiled_s12")


class WithVariance(torch.nn.Module):
    """``layer(x, return_variance=True)``: (y, y_var)."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return self.layer(x, return_variance=True)


@contextlib.contextmanager
def row_defaults(name):
    """The module defaults of ROW_DEFAULTS[name] while one row runs (none for other rows), restored
    after; the scan's remembered plans are forgotten on both sides."""
    changes = ROW_DEFAULTS.get(name)
    if not changes:
        yield
        return
    from bayesfilt.nn.kernels import conv, kla
    mods = {"conv": conv, "kla": kla}
    before = {key: getattr(mods[key[0]], key[1]) for key in changes}
    try:
        for (mod, attr), value in changes.items():
            setattr(mods[mod], attr, value)
        kla._plan_cached.cache_clear()
        yield
    finally:
        for (mod, attr), value in before.items():
            setattr(mods[mod], attr, value)
        kla._plan_cached.cache_clear()


def host_profile(step, n: int, top: int = 40) -> dict:
    """``n`` calls of ``step`` under cProfile (the host's side: Python and the C calls it makes), each call
    followed by a device sync: the ``top`` functions by own time and by cumulative time, in microseconds per
    step, and the host time per step outside the final sync."""
    import cProfile
    import pstats
    torch.cuda.synchronize()
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    for _ in range(n):
        step()
    prof.disable()
    host_s = time.perf_counter() - t0
    torch.cuda.synchronize()
    stats = pstats.Stats(prof).stats                     # {(file, line, name): (cc, nc, tottime, cumtime, callers)}

    def rows(col):
        ranked = sorted(stats.items(), key=lambda kv: -kv[1][col])[:top]
        return [{"fn": f"{k[2]} ({os.path.basename(k[0])}:{k[1]})", "calls_per_step": v[1] / n,
                 "own_us": v[2] / n * 1e6, "cum_us": v[3] / n * 1e6} for k, v in ranked]
    return {"steps": n, "host_us_per_step_profiled": host_s / n * 1e6, "by_own_time": rows(2), "by_cum_time": rows(3)}


def time_layer(make, B, L, D, device, iters, warmup, autocast=True, profile: int = 0, hostprof: int = 0) -> dict:
    torch.manual_seed(0)
    layer = make().to(device)
    x = torch.randn(B, L, D, device=device, requires_grad=True)
    g = torch.randn(B, L, D, device=device)

    def step():
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=autocast):
            y = layer(x)
            y = y[0] if isinstance(y, tuple) else y
        (y.float() * g).sum().backward()
        x.grad = None
        for p in layer.parameters():
            p.grad = None

    for _ in range(warmup):
        step()
    times = []
    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        host = []                      # host time to enqueue one step (the GPU starts each step idle)
        for _ in range(iters):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            t0 = time.perf_counter()
            step()
            host.append(time.perf_counter() - t0)
            e.record()
            torch.cuda.synchronize()
            times.append(s.elapsed_time(e) / 1e3)
        peak = torch.cuda.max_memory_allocated() - base
    else:
        for _ in range(iters):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        peak = None
    times.sort()
    med = times[len(times) // 2]
    res = {"median_s": med, "min_s": times[0], "tokens_per_s": B * L / med,
           "peak_mem_gib": None if peak is None else peak / 2 ** 30,
           "params": sum(p.numel() for p in layer.parameters())}
    if device == "cuda":
        res["host_median_s"] = sorted(host)[len(host) // 2]     # near median_s: the GPU waited for the host
    if profile and device == "cuda":
        res["profile"] = profile_steps(step, profile)
    if hostprof and device == "cuda":
        res["host_profile"] = host_profile(step, hostprof)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d-model", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--length", type=int, default=2048)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="small shapes, few iterations")
    ap.add_argument("--no-torch-backend", action="store_true", help="skip timing KLA's pure-torch backend")
    ap.add_argument("--out", default=None, help="JSON path (default: benchmarks/results/kla_layer[_quick].json)")
    ap.add_argument("--compile", action="store_true",
                    help="also time torch.compile(KLALayer) (inductor fuses the elementwise work around the "
                         "scan, which stays one opaque custom op)")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="after timing a row, N more steps under the torch profiler: device time per kernel and "
                         "per category (GPU only)")
    ap.add_argument("--host-profile", type=int, default=0, metavar="N",
                    help="after timing a row, N more steps under cProfile: the host's functions by own and cumulative "
                         "time per step (GPU only)")
    ap.add_argument("--only", nargs="*", default=None,
                    help="time only these rows (e.g. kla kla_compiled; kla_compiled_conv1d: the compiled layer with "
                         "its convolution through F.conv1d on a transposed copy, as before session 12; "
                         "kla_compiled_s12, kla_compiled_convsplit, kla_compiled_mom: other kernel defaults, ROW_DEFAULTS; kla_compiled_var: "
                         "the layer asked for its variance)")
    args = ap.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    B, L, D = args.batch, args.length, args.d_model
    if args.quick:
        B, L, D, args.iters, args.warmup = 2, 256, 128, 3, 1
    from bayesfilt.nn import KLAConfig, KLALayer
    from bayesfilt.nn.lm import fla_available

    out = Path(args.out) if args.out else HERE / "results" / ("kla_layer_quick.json" if args.quick else "kla_layer.json")
    out.parent.mkdir(parents=True, exist_ok=True)

    def write(rec):                  # after every measurement, so a run stopped at its time limit keeps its numbers
        out.write_text(json.dumps(rec, indent=1))

    par = parity(device)
    print("parity", json.dumps(par), flush=True)
    record = {"benchmark": "kla_layer", "shape": {"B": B, "L": L, "d_model": D, "d_state": 16, "expand": 2},
              "autocast": "bfloat16", "iters": args.iters, "warmup": args.warmup, "device": device,
              "gpu": torch.cuda.get_device_name() if device == "cuda" else None,
              "machine": platform.node(), "python": sys.version.split()[0], "torch": torch.__version__,
              "git_commit": git_state()[0], "parity": par, "results": {}}
    if par["max_rel_rms"] > 1e-3:
        record["error"] = "parity failed: nothing timed"
        print(record["error"], file=sys.stderr)
    else:
        try:
            import triton
            record["triton"] = triton.__version__
        except ImportError:
            pass
        runs = {"kla": lambda: KLALayer(D, KLAConfig())}
        if args.compile:
            runs["kla_compiled"] = lambda: torch.compile(KLALayer(D, KLAConfig()).to(device))

            def conv1d_path():                 # the layer before session 12: F.conv1d on a transposed copy
                layer = KLALayer(D, KLAConfig()).to(device)
                layer._triton_conv = lambda z: False
                return torch.compile(layer)
            runs["kla_compiled_conv1d"] = conv1d_path
            for name in ROW_DEFAULTS:          # the compiled layer with other kernel defaults
                runs[name] = lambda: torch.compile(KLALayer(D, KLAConfig()).to(device))
            for name in VARIANCE_ROWS:         # ... asked for its variance (computed, left out of the loss)
                runs[name] = lambda: torch.compile(WithVariance(KLALayer(D, KLAConfig()).to(device)))
        if device == "cuda" and not args.no_torch_backend:
            runs["kla_torch_backend"] = lambda: KLALayer(D, KLAConfig(backend="torch"))
        if fla_available() and device == "cuda":
            import fla
            from fla.layers import GatedLinearAttention
            record["fla"] = getattr(fla, "__version__", "?")
            runs["gla_default"] = lambda: GatedLinearAttention(hidden_size=D, layer_idx=0)
            runs["gla_matched_state"] = lambda: GatedLinearAttention(hidden_size=D, num_heads=16, expand_k=0.25,
                                                                     expand_v=2.0, layer_idx=0)
            if args.compile:                   # the same treatment as kla_compiled: torch.compile of the layer
                runs["gla_compiled"] = lambda: torch.compile(GatedLinearAttention(hidden_size=D, layer_idx=0).to(device))
        if args.compile:                       # last: a failed graph capture must not cost the other rows
            # diagnostic: the host's share, removed by CUDA graphs (torch.compile's "reduce-overhead" mode)
            runs["kla_compiled_graphs"] = lambda: torch.compile(KLALayer(D, KLAConfig()).to(device),
                                                               mode="reduce-overhead")
        if args.only is not None:
            unknown = sorted(set(args.only) - set(runs))
            if unknown:
                ap.error(f"--only {' '.join(unknown)}: no such row here (rows: {' '.join(runs)}; "
                         "kla_compiled needs --compile, gla_* need fla and CUDA)")
            runs = {k: v for k, v in runs.items() if k in args.only}
        for name, make in runs.items():
            try:
                with row_defaults(name):
                    r = time_layer(make, B, L, D, device, args.iters, args.warmup, profile=args.profile,
                                   hostprof=args.host_profile)
            except Exception as exc:  # an OOM or a missing kernel must not hide the other numbers
                r = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
                if device == "cuda":
                    torch.cuda.empty_cache()
            if name in ROW_DEFAULTS:
                r["defaults"] = {f"{m}.{a}": v for (m, a), v in ROW_DEFAULTS[name].items()}
            record["results"][name] = r
            write(record)
            print(name, json.dumps({k: v for k, v in r.items() if k not in ("profile", "host_profile")}), flush=True)
            for row in r.get("host_profile", {}).get("by_cum_time", [])[:25]:
                print(f"   host {row['cum_us']:9.1f} us cum {row['own_us']:8.1f} own x{row['calls_per_step']:.0f}  "
                      f"{row['fn'][:110]}", flush=True)
            if "profile" in r:
                print("  categories (us/step):", json.dumps({k: round(v) for k, v in r["profile"]["categories_us"].items()}))
                idle = r["profile"].get("idle", {})
                if idle:
                    print(f"  span {idle['span_us_per_step']:.0f} us/step, GPU idle {idle['idle_us_per_step']:.0f} us/step;"
                          " longest gaps:", "; ".join(f"{g['us']:.0f} us before {g['before'][:40]}" for g in idle["longest"][:6]))
                for kname, kv in list(r["profile"]["top_kernels"].items())[:15]:
                    print(f"   {kv['us']:9.1f} us x{kv['count']:.0f}  {kname[:100]}", flush=True)
                print("  launched by (op, shapes, frame):")
                for key, kv in r["profile"]["launchers"].items():
                    print(f"   {kv['us']:9.1f} us x{kv['count']}  {key[:200]}" if isinstance(kv, dict) else f"   {kv}",
                          flush=True)
        res = record["results"]
        for peer in ("gla_default", "gla_matched_state", "gla_compiled"):
            for ours in ("kla", "kla_compiled", "kla_compiled_graphs"):
                if "median_s" in res.get(ours, {}) and "median_s" in res.get(peer, {}):
                    record[f"{ours}_time_over_{peer}"] = res[ours]["median_s"] / res[peer]["median_s"]
        record["target"] = "KLA time within 1.25x of GLA's (issue 5)"
    write(record)
    print("wrote", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
