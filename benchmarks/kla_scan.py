"""Benchmark of the fused Triton KLA scan (bayesfilt.nn.kernels) on the GPU; TARGETS.md §1.

Shapes (float32 unless noted): B=8, L=2048, M=2048, S=16 forward and forward+backward;
B=1, L=65536, M=1024, S=16 forward and forward+backward (time-chunked kernels); the decode
step at B=1, M=2048, S=16 (a plain call under do_bench, 1000 calls back to back with the host's
time included, and CUDA-graph replay); flash-linear-attention's
chunk_gla at the same state size (H=16, K=16, V=128), bf16 and float32, in the same process
when the ``fla`` package imports.

Parity first: before timing a configuration, the same kernels (same plan: tile, number of
time chunks) run at the same L on fewer channels against a float64 reference (the
parallel torch scans in float64, themselves tested to 1e-10 against the sequential loop)
for y, y_var, the final state and every gradient; a configuration that fails parity is
not timed. Times: triton.testing.do_bench, median. Bandwidth: the fewest bytes the
operation must move (inputs read once, outputs and gradients written once) over the
median time, as a fraction of the 4.3 TB/s copy rate measured on this machine kind.

Usage (on the GPU machine): python benchmarks/kla_scan.py --out benchmarks/results/kla_scan.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import torch
import triton
from triton.testing import do_bench

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import cuda_graph, git_state  # noqa: E402

from bayesfilt.nn.kernels import kla_scan_triton, kla_step_triton  # noqa: E402
from bayesfilt.nn.kernels.kla import _scan_plan, make_plan  # noqa: E402

DEV = "cuda" if torch.cuda.is_available() else "cpu"
COPY_RATE = 4.3e12          # bytes/s, device-to-device copy on the H200 (read + write)
TARGETS_MS = {"main_fwd": 0.5, "main_fwdbwd": 2.5, "long_fwd": 1.0, "long_fwdbwd": 5.0,
              "decode": 0.020}


def _inputs(B, L, M, S, dtype=torch.float32, seed=0, device=DEV, grad=False):
    g = torch.Generator(device=device).manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, device=device)                   # noqa: E731
    u = lambda *s: torch.rand(*s, generator=g, device=device)                    # noqa: E731
    xs = [r(B, L, M), 0.5 + u(B, L, M), r(B, L, S) / S ** 0.5, r(B, L, S) / S ** 0.5,
          0.5 + 0.5 * u(M, S), 0.1 * u(M, S)]
    xs = [x.to(dtype) if i < 4 else x for i, x in enumerate(xs)]
    return [x.requires_grad_(grad) for x in xs]


def _rel(a, b):
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def parity(B, L, M, S, tune, seed=1):
    """Errors of the Triton kernels (plan `tune`) against the float64 sequential reference."""
    from bayesfilt.nn.reference import kla_scan_reference
    xs = _inputs(B, L, M, S, seed=seed)
    g = torch.Generator(device=DEV).manual_seed(seed + 1)
    w = [torch.randn(B, L, M, generator=g, device=DEV), torch.randn(B, L, M, generator=g, device=DEV)]
    xr = [x.detach().double().requires_grad_() for x in xs]
    y, yv, lam, eta = kla_scan_reference(*xr, torch.ones(B, M, S, dtype=torch.float64, device=DEV),
                                         torch.zeros(B, M, S, dtype=torch.float64, device=DEV))
    ((y * w[0]).sum() + (yv * w[1]).sum()).backward()
    xt = [x.detach().requires_grad_() for x in xs]
    out = kla_scan_triton(*xt, _tune=tune, _poison=True)
    ((out[0] * w[0]).sum() + (out[1] * w[1]).sum()).backward()
    errs = {n: _rel(a, b) for n, a, b in zip(("y", "y_var", "lam_L", "eta_L"), out, (y, yv, lam, eta))}
    errs.update({"grad_" + n: _rel(a.grad, b.grad) for n, a, b in zip(("v", "lambda_v", "k", "q", "a_bar", "p_bar"), xt, xr)})
    return errs


def scan_fns(xs, tune, gy, gyv):
    """The two timed callables of one configuration: the forward without gradients, and forward plus the
    backward of a loss on y and y_var with output gradients gy, gyv."""
    def fwd():
        with torch.no_grad():
            return kla_scan_triton(*xs, _tune=tune)

    def fwdbwd():
        y, yv, _, _ = kla_scan_triton(*xs, _tune=tune)
        torch.autograd.backward((y, yv), (gy, gyv))

    return fwd, fwdbwd


def bench_scan(B, L, M, S, tune, dtype=torch.float32, reps=200):
    """Median ms of forward (no grad) and forward+backward, peak memory of fwd+bwd."""
    xs = _inputs(B, L, M, S, dtype=dtype, grad=True)
    gy, gyv = torch.randn(B, L, M, device=DEV), torch.randn(B, L, M, device=DEV)
    fwd, fwdbwd = scan_fns(xs, tune, gy, gyv)
    t_f = do_bench(fwd, warmup=25, rep=reps, return_mode="median")
    t_fb = do_bench(fwdbwd, warmup=25, rep=reps, grad_to_none=xs, return_mode="median")
    for x in xs:
        x.grad = None
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fwdbwd()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    esz = xs[0].element_size()
    in_bytes = 2 * B * L * M * esz + 2 * B * L * S * esz + 2 * M * S * 4
    out_bytes = 2 * B * L * M * 4 + 2 * B * M * S * 4
    grad_bytes = in_bytes                                 # one gradient per input
    return {"fwd_ms": t_f, "fwdbwd_ms": t_fb, "input_bytes": in_bytes,
            "peak_extra_bytes_fwdbwd": int(peak),
            "fwd_bw_frac": (in_bytes + out_bytes) / (t_f * 1e-3) / COPY_RATE,
            "fwdbwd_bw_frac": (2 * in_bytes + out_bytes + 2 * B * L * M * 4 + grad_bytes)
            / (t_fb * 1e-3) / COPY_RATE}


def bench_decode(B=1, M=2048, S=16):
    xs = _inputs(B, 1, M, S)
    v, lv, k, q = (x[:, 0].contiguous() for x in xs[:4])
    a, p = xs[4], xs[5]
    lam, eta = torch.ones(B, M, S, device=DEV), torch.zeros(B, M, S, device=DEV)
    with torch.no_grad():
        t_call = do_bench(lambda: kla_step_triton(v, lv, k, q, a, p, lam, eta), warmup=25, rep=200,
                          return_mode="median")
        graph, _ = cuda_graph(lambda: kla_step_triton(v, lv, k, q, a, p, lam, eta))
        t_graph = do_bench(graph.replay, warmup=25, rep=200, return_mode="median")
        # 100 steps in one graph: per-step time without the replay launch
        graph100 = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph100):
            for _ in range(100):
                kla_step_triton(v, lv, k, q, a, p, lam, eta)
        t_graph100 = do_bench(graph100.replay, warmup=10, rep=200, return_mode="median") / 100
        # host included: 1000 calls back to back, one sync (what a generation loop without graphs pays)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(1000):
            kla_step_triton(v, lv, k, q, a, p, lam, eta)
        torch.cuda.synchronize()
        t_loop = (time.perf_counter() - t0) / 1000 * 1e3
    return {"call_ms": t_call, "call_loop_ms": t_loop, "graph_replay_ms": t_graph, "graph_per_step_of_100_ms": t_graph100}


def bench_fla(B=8, T=2048, H=16, K=16, V=128):
    try:
        from fla.ops.gla import chunk_gla
    except Exception as exc:                              # noqa: BLE001
        return {"available": False, "error": repr(exc)[:200]}
    res = {"available": True, "shape": dict(B=B, T=T, H=H, K=K, V=V)}
    for name, dt in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        try:
            q = torch.randn(B, T, H, K, device=DEV, dtype=dt, requires_grad=True)
            k = torch.randn(B, T, H, K, device=DEV, dtype=dt, requires_grad=True)
            v = torch.randn(B, T, H, V, device=DEV, dtype=dt, requires_grad=True)
            g = torch.nn.functional.logsigmoid(torch.randn(B, T, H, K, device=DEV)).to(dt).requires_grad_()
            do = torch.randn(B, T, H, V, device=DEV, dtype=dt)

            def fwd():
                with torch.no_grad():
                    return chunk_gla(q, k, v, g)

            def fwdbwd():
                o, _ = chunk_gla(q, k, v, g)
                o.backward(do)

            res[name] = {"fwd_ms": do_bench(fwd, warmup=25, rep=200, return_mode="median"),
                         "fwdbwd_ms": do_bench(fwdbwd, warmup=25, rep=200, grad_to_none=[q, k, v, g],
                                               return_mode="median")}
        except Exception as exc:                          # noqa: BLE001
            res[name] = {"error": repr(exc)[:300]}
    return res


WARM_SHAPE = dict(B=1, L=64, M=64, S=16)


def _warm_one(job):
    """Compile one configuration's kernels (fresh process): forward without and with checkpoints,
    backward. The kernels do not specialise on B, L or the number of chunks, so a tiny problem
    with the same M % 16, S, dtype and tune compiles exactly the kernels of the timed shape."""
    tune, dtype_name = job
    t0 = time.time()
    xs = _inputs(**WARM_SHAPE, dtype=getattr(torch, dtype_name), grad=True)
    with torch.no_grad():
        kla_scan_triton(*xs, _tune=tune)
    y, yv, _, _ = kla_scan_triton(*xs, _tune=tune)
    (y.sum() + yv.sum()).backward()
    if tune is None:
        v, lv, k, q = (x.detach()[:, 0].contiguous() for x in xs[:4])
        B, M, S = WARM_SHAPE["B"], WARM_SHAPE["M"], WARM_SHAPE["S"]
        kla_step_triton(v, lv, k, q, xs[4].detach(), xs[5].detach(), torch.ones(B, M, S, device=DEV),
                        torch.zeros(B, M, S, device=DEV))
    if DEV == "cuda":
        torch.cuda.synchronize()
    return {"tune": dict(tune or ()), "dtype": dtype_name, "compile_s": time.time() - t0}


def warm_jobs(sweep: bool, rows: list | None = None):
    """Every (tune, dtype) the benchmark launches; the long shape's plan has several chunks. With
    ``rows`` ([shape name, tune] pairs, ``--rows``) only theirs: number of chunks 1, and 2 for "long"."""
    if rows:
        return sorted({(tuple(sorted({**cfg, "num_chunks": nc}.items())), "float32")
                       for name, cfg in rows for nc in ((1, 2) if name == "long" else (1,))}, key=str)
    jobs = [(None, "float32"), ((("num_chunks", 1),), "float32"), ((("num_chunks", 2),), "float32"),
            (None, "bfloat16")]
    if sweep:
        jobs += [((("bwd_sb", 8), ("num_chunks", 1)), "float32"), ((("bwd_sb", 2), ("num_chunks", 1)), "float32"),
                 ((("fwd_sb", 8), ("num_chunks", 1)), "float32"), ((("fwd_sb", 4), ("num_chunks", 1)), "float32"),
                 ((("fwd_defer", 0), ("num_chunks", 1)), "float32"),
                 ((("bwd_defer", 0), ("num_chunks", 1)), "float32"),
                 ((("bwd_defer", 0), ("num_chunks", 2)), "float32")]       # the long shape's chunked kernels
        # one-warp programs of 16 m-lanes (docs/kla_kernels.md, "Narrower m-tiles"; multi-warp programs
        # (19e24c8) and pipelined loads (5ff5fac) were slower than the defaults and left the sweep)
        jobs += [((("bwd_bm", 16), ("fwd_bm", 16), ("num_chunks", nc)), "float32")
                 for nc in (1, 2)]                                          # nc 2: the long shape's chunked kernels
    return jobs


def pass_settings(shape: dict, tune: dict) -> dict:
    """The store schedules, warps, pipelining, lane tile and time chunks each pass runs with under ``tune``
    (recorded per row: the defaults change between commits)."""
    dev = "cuda" if torch.cuda.is_available() else "cpu"           # the plan counts the device's multiprocessors
    v = torch.empty(1, device=dev).expand(shape["B"], shape["L"], shape["M"])
    k = torch.empty(1, device=dev).expand(shape["B"], shape["L"], shape["S"])
    return {ps: {f: getattr(_scan_plan(v, k, tune, ps), f) for f in ("defer_y", "defer_g", "num_warps", "stages", "mspec", "l2pf", "pfrows", "ckpf", "rel", "alg", "mom", "BM", "SB", "NC")}
            for ps in ("fwd", "bwd")}


def warm(sweep: bool, workers: int, rows: list | None = None, extra_rows: list | None = None):
    """Compile all configurations in parallel processes (the Triton cache is shared on disk)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    jobs = warm_jobs(sweep, rows)
    if extra_rows:
        jobs = sorted(set(jobs) | set(warm_jobs(False, extra_rows)), key=str)
    t0 = time.time()
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=mp.get_context("spawn")) as ex:
        done = list(ex.map(_warm_one, jobs))
    return {"jobs": done, "wall_s": time.time() - t0}


def fla_background(go_file: str, out_file: str, wait_s: float = 1500.0):
    """Child started early (``--fla-only --fla-go F --fla-out J``): compile and autotune chunk_gla
    (one forward and one forward+backward per dtype) while other work runs, then wait until F
    exists (the GPU is free) and time; the result goes to J."""
    t0 = time.time()
    try:
        from fla.ops.gla import chunk_gla
        B, T, H, K, V = 8, 2048, 16, 16, 128
        for dt in (torch.bfloat16, torch.float32):
            q, k = (torch.randn(B, T, H, K, device=DEV, dtype=dt, requires_grad=True) for _ in range(2))
            v = torch.randn(B, T, H, V, device=DEV, dtype=dt, requires_grad=True)
            g = torch.nn.functional.logsigmoid(torch.randn(B, T, H, K, device=DEV)).to(dt).requires_grad_()
            o, _ = chunk_gla(q, k, v, g)
            o.float().sum().backward()
        torch.cuda.synchronize()
    except Exception as exc:                              # noqa: BLE001
        res = {"available": False, "error": repr(exc)[:300]}
    else:
        compile_s = time.time() - t0
        while not os.path.exists(go_file) and time.time() - t0 < wait_s:
            time.sleep(0.5)
        res = bench_fla()
        res["compile_and_autotune_s"] = compile_s
        res["note"] = "compiled and autotuned in a background process while other GPU work ran; timed alone"
    _save(res, out_file)
    return res


def fla_wait(go_file: str, out_file: str, timeout_s: float):
    """Release the background FLA child (create go_file) and wait for its result."""
    open(go_file, "w").close()
    t0 = time.time()
    while time.time() - t0 < timeout_s:
        if os.path.exists(out_file):
            time.sleep(0.5)
            with open(out_file) as fh:
                return json.load(fh)
        time.sleep(1.0)
    return {"available": None, "error": f"background child gave no result within {timeout_s:.0f} s of the release "
                                        "(still compiling/autotuning)"}


def fla_in_child(timeout_s: float):
    """bench_fla in a child process with a time limit (its autotuning compiles many kernels)."""
    import subprocess
    t0 = time.time()
    try:
        p = subprocess.run([sys.executable, os.path.abspath(__file__), "--fla-only"], capture_output=True,
                           text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"available": None, "error": f"not finished within {timeout_s:.0f} s (compilation/autotuning)"}
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("FLA ")]
    if not lines:
        return {"available": None, "error": (p.stderr or p.stdout)[-600:]}
    res = json.loads(lines[-1][4:])
    res["child_wall_s"] = time.time() - t0
    return res


def _save(res, path):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as fh:
        json.dump(res, fh, indent=1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="benchmarks/results/kla_scan.json")
    ap.add_argument("--sweep", action="store_true", help="also time other tile configurations")
    ap.add_argument("--no-fla", action="store_true", help="skip flash-linear-attention")
    ap.add_argument("--parity-L", type=int, default=0, help="parity at this L (default: the timed L)")
    ap.add_argument("--warm-only", action="store_true", help="only compile every configuration, in parallel")
    ap.add_argument("--warm-workers", type=int, default=8)
    ap.add_argument("--fla-timeout", type=float, default=240.0, help="seconds for the flash-linear-attention child")
    ap.add_argument("--fla-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--fla-go", default=None, help="go-file of a background FLA child (see fla_background)")
    ap.add_argument("--fla-out", default=None, help="result file of the background FLA child")
    ap.add_argument("--rows", type=json.loads, default=None,
                    help='only these float32 rows, e.g. \'[["main", {}], ["main", {"bwd_bm": 16}]]\' '
                         "(no decode, bf16 or fla rows; --warm-only compiles only theirs)")
    ap.add_argument("--extra-rows", type=json.loads, default=None,
                    help="rows as for --rows, timed after the default rows (with decode, bf16 and fla as usual)")
    args = ap.parse_args()
    for opt, rows in (("--rows", args.rows), ("--extra-rows", args.extra_rows)):
        if rows is not None and not (isinstance(rows, list) and all(
                isinstance(r, list) and len(r) == 2 and r[0] in ("main", "long") and isinstance(r[1], dict)
                for r in rows)):
            ap.error(f"{opt} {rows!r}: give a JSON list of [\"main\" or \"long\", {{tune key: value}}] pairs")
    if args.fla_only and args.fla_go:
        print("FLA " + json.dumps(fla_background(args.fla_go, args.fla_out)), flush=True)
        return 0
    if args.fla_only:
        print("FLA " + json.dumps(bench_fla()), flush=True)
        return 0
    if args.warm_only:
        print("WARM " + json.dumps(warm(args.sweep, args.warm_workers, args.rows, args.extra_rows)), flush=True)
        return 0
    dev = torch.cuda.get_device_name()
    commit = os.environ.get("GIT_COMMIT") or git_state()[0]
    res = {"device": dev, "torch": torch.__version__, "triton": triton.__version__,
           "python": platform.python_version(), "commit": commit, "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
           "copy_rate_bytes_per_s": COPY_RATE, "targets_ms": TARGETS_MS, "runs": []}
    main_shape = dict(B=8, L=2048, M=2048, S=16)
    long_shape = dict(B=1, L=65536, M=1024, S=16)
    shapes = {"main": main_shape, "long": long_shape}
    jobs = [("main", {}), ("long", {})] if args.rows is None else [tuple(r) for r in args.rows]
    jobs += [tuple(r) for r in args.extra_rows or ()]
    if args.sweep and args.rows is None:
        jobs += [("main", {"bwd_sb": 8}), ("main", {"bwd_sb": 2}), ("main", {"fwd_sb": 8}), ("main", {"fwd_sb": 4}),
                 ("main", {"fwd_defer": 0}), ("long", {"fwd_defer": 0}),           # the old per-token forward stores
                 # the old per-token backward stores (the default stores per 8 tokens since 5adddcc; groups
                 # of 1, 2 and 4 were timed at 418af3a and were slower than 8: kla_scan.json)
                 ("main", {"bwd_defer": 0}), ("long", {"bwd_defer": 0}),
                 # one-warp programs of 16 m-lanes (docs/kla_kernels.md, "Narrower m-tiles"); 2 and 4 warps
                 # per program (19e24c8) and pipelined loads (5ff5fac) were slower (kla_scan_19e24c8.json,
                 # kla_scan_5ff5fac.json) and left the sweep
                 ("main", {"fwd_bm": 16, "bwd_bm": 16}), ("long", {"fwd_bm": 16, "bwd_bm": 16})]
    for i, (shape_name, cfg) in enumerate(jobs):
        shape = shapes[shape_name]
        plan = make_plan(shape["B"], shape["L"], shape["M"], shape["S"], torch.device("cuda"))
        tune = tuple(sorted({"num_chunks": plan.NC, **cfg}.items()))
        row = {"shape_name": shape_name, "shape": shape, "dtype": "float32", "tune": dict(tune),
               "plan": {"NC": plan.NC, "LC": plan.LC},         # the tiles of each pass are in "passes"
               "passes": pass_settings(shape, dict(tune))}
        t0 = time.time()
        pl = min(args.parity_L or shape["L"], shape["L"])
        ptune = tune if pl == shape["L"] else tuple((k, v) for k, v in tune if k != "num_chunks") + (
            ("num_chunks", min(dict(tune)["num_chunks"], 4)),)
        row["parity_L"] = pl
        row["parity"] = parity(1 if shape["B"] == 1 else 2, pl, 64, shape["S"], ptune)
        row["parity_ok"] = all(e <= 1e-4 for e in row["parity"].values())
        if row["parity_ok"]:
            row.update(bench_scan(**shape, tune=tune))
        row["wall_s"] = time.time() - t0
        res["runs"].append(row)
        _save(res, args.out)
        print(json.dumps({k: row.get(k) for k in ("shape_name", "tune", "parity_ok", "fwd_ms", "fwdbwd_ms",
                                                   "fwd_bw_frac", "peak_extra_bytes_fwdbwd", "wall_s")}),
              flush=True)
        if not row["parity_ok"]:
            print("PARITY FAILED", row["parity"], flush=True)
        if i == 1 and args.rows is None:
            res["decode"] = bench_decode()
            _save(res, args.out)
            print("decode", json.dumps(res["decode"]), flush=True)
    if args.rows is None:                  # bf16 inputs at the main shape (default plan)
        row = {"shape_name": "main", "shape": main_shape, "dtype": "bfloat16", "tune": {}}
        row.update(bench_scan(**main_shape, tune=None, dtype=torch.bfloat16))
        res["runs"].append(row)
        print(json.dumps({k: row.get(k) for k in ("shape_name", "dtype", "fwd_ms", "fwdbwd_ms")}), flush=True)
    if args.no_fla or args.rows is not None:
        res["fla_chunk_gla"] = {"available": False, "error": "skipped (--no-fla or --rows)"}
    elif args.fla_go:
        res["fla_chunk_gla"] = fla_wait(args.fla_go, args.fla_out, args.fla_timeout)
    else:
        res["fla_chunk_gla"] = fla_in_child(args.fla_timeout)
    print("fla", json.dumps(res["fla_chunk_gla"]), flush=True)
    _save(res, args.out)
    # summary table
    print(f"\n{dev}  torch {torch.__version__}  triton {triton.__version__}  commit {commit[:10]}")
    print(f"{'shape':6} {'dtype':9} {'tune':40} {'fwd ms':>8} {'f+b ms':>8} {'bw fwd':>7} {'peak GB':>8}")
    for r in res["runs"]:
        if "fwd_ms" in r:
            print(f"{r['shape_name']:6} {r['dtype']:9} {str(r['tune'])[:40]:40} {r['fwd_ms']:8.3f} {r['fwdbwd_ms']:8.3f} "
                  f"{r['fwd_bw_frac']:7.2f} {r['peak_extra_bytes_fwdbwd'] / 2**30:8.2f}")
    d = res.get("decode", {})
    d = {k: d.get(k, float("nan")) for k in ("call_ms", "call_loop_ms", "graph_replay_ms", "graph_per_step_of_100_ms")}
    print(f"decode B=1 M=2048 S=16: call {d['call_ms'] * 1e3:.1f} us, in a loop {d['call_loop_ms'] * 1e3:.1f} us, "
          f"graph replay {d['graph_replay_ms'] * 1e3:.1f} us, "
          f"per step in a 100-step graph {d['graph_per_step_of_100_ms'] * 1e3:.1f} us")
    f = res["fla_chunk_gla"]
    if f.get("available"):
        for n in ("bf16", "fp32"):
            print(f"fla chunk_gla {n}: {f.get(n)}")


if __name__ == "__main__":
    sys.exit(main())
