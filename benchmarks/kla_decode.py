"""Host time of the KLA decode step (issue 4: one token through one layer's filter step, B=1, M=2048,
S=16, in <= 20 us): per-call wall time of loops of plain calls with the host included, and its parts.

The kernel takes a few microseconds (kla_scan.py's ``decode.call_ms`` under do_bench); a loop of plain
calls is host-bound, so what a Python generation loop pays per token is the host time of the call.
Rows (each: ``--rounds`` rounds of ``--calls`` back-to-back calls between two device syncs, per-call
microseconds, median over rounds):

- ``kla_step_triton``: the kernel entry point (``bayesfilt.nn.kernels``), no validation;
- ``kla_step``: the public ``bayesfilt.nn.functional.kla_step(..., validate=False)``;
- ``kla_step_validate``: the same with ``validate=True`` (value checks: device syncs);
- ``layer_step``: ``KLALayer(1024, d_state 16, expand 2)`` on one token with a state (M = 2048), float32;
- ``graph_replay``: ``kla_step_triton`` captured once in a CUDA graph, replayed (host included);
- parts of the call: ``torch_empty`` and ``empty_like`` (one [B, M, S] float32 output), ``launch_all``
  (the step kernel's launch through ``bayesfilt.scan._triton.launch_all`` with fixed buffers) and its
  pieces (``part_*``: ``launch_parts``);
- ``generation``: greedy ``KLALanguageModel.generate`` (4 blocks, d_model 1024, vocabulary 256, B = 1),
  microseconds per token without and with ``cuda_graph=True``, and whether the tokens agree; the same
  for ``bayesfilt.nn.decode.generate`` (sampled, recording entropy and variance per token).

Run it against another tree with ``PYTHONPATH=<tree>`` (the JSON records which ``bayesfilt`` ran) and
``--label``, in alternating processes, for a before/after comparison on one host.

Usage (GPU): python benchmarks/kla_decode.py --label after --out benchmarks/results/kla_decode.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import cuda_graph, git_state  # noqa: E402


def per_call_us(fn, calls: int, rounds: int) -> dict:
    """Per-call wall microseconds of ``calls`` back-to-back calls of ``fn`` between two device syncs."""
    for _ in range(min(calls, 50)):
        fn()
    torch.cuda.synchronize()
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
        out.append((time.perf_counter() - t0) / calls * 1e6)
    return {"median_us": statistics.median(out), "min_us": min(out), "rounds_us": out}


def launch_parts(launch, calls: int, rounds: int) -> dict:
    """The pieces of ``launch_all`` on one launch, each timed alone (``part_*`` rows; a piece missing in
    the tree that runs is left out): the device lookups, the runtime knobs and hooks, the stream, the
    launch key, and the compiled launcher's own call with the tensors and with their addresses."""
    from bayesfilt.scan import _triton as T
    kernel, grid, args, kw = launch[0]
    index = torch.cuda.current_device()
    parts = {"part_current_device": torch.cuda.current_device,
             "part_launch_device": lambda: T._launch_device(launch),
             "part_hooks_set": T._hooks_set, "part_knob_state": T._knob_state,
             "part_current_stream": lambda: T._current_stream(index),
             "part_launch_key": lambda: T._launch_key(args, kw, (index,) + T._knob_state())}
    memo = kernel.__dict__.get("_bayesfilt_launchers", {})
    if memo:
        compiled, tail = next(iter(memo.values()))
        stream = T._current_stream(index)
        addrs = [a.data_ptr() if isinstance(a, torch.Tensor) else a for a in args]

        def run(xs):
            compiled.run(grid[0], 1, 1, stream, compiled.function, compiled.packed_metadata, None, None, None,
                         *xs, *tail)
        parts["part_compiled_run_tensors"] = lambda: run(args)
        parts["part_compiled_run_addresses"] = lambda: run(addrs)
    out = {}
    for name, fn in parts.items():
        try:
            out[name] = per_call_us(fn, calls, rounds)
        except AttributeError as exc:                  # a piece this tree does not have
            out[name] = {"unavailable": str(exc)[:200]}
    return out


def generation_rows(tokens: int, vocab: int = 256, d_model: int = 1024, layers: int = 4) -> dict:
    """Greedy ``KLALanguageModel.generate`` of ``tokens`` tokens after a 16-token prompt at B = 1, float32:
    per-token wall time without and with ``cuda_graph`` (a tree without the option: "unavailable"), and
    whether both give the same tokens; the same for ``bayesfilt.nn.decode.generate`` (sampled, with each
    token's entropy and KLA variance: rows ``recorded_*``). Medians of three generations each, after one
    untimed."""
    from bayesfilt.nn import KLAConfig, KLALanguageModel
    from bayesfilt.nn.decode import generate
    torch.manual_seed(0)
    lm = KLALanguageModel(vocab, d_model, layers, kla_config=KLAConfig(d_state=16)).cuda().eval()
    prompt = torch.randint(0, vocab, (1, 16), device="cuda")
    res = {"vocab": vocab, "d_model": d_model, "layers": layers, "tokens": tokens,
           "params": sum(p.numel() for p in lm.parameters())}
    outs = {}
    def greedy(n, **kw):
        return lm.generate(prompt, n, **kw)

    def recorded(n, **kw):
        return generate(lm, prompt[0].tolist(), n, seed=1, **kw).ids

    graph = {"cuda_graph": True}
    for name, run, kw in (("plain", greedy, {}), ("cuda_graph", greedy, graph), ("recorded_plain", recorded, {}),
                          ("recorded_cuda_graph", recorded, graph)):
        try:
            run(4, **kw)
        except TypeError as exc:                       # the option is missing in that tree
            res[name] = {"unavailable": str(exc)[:200]}
            continue
        times = []
        for _ in range(3):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            outs[name] = run(tokens, **kw)
            torch.cuda.synchronize()                   # (the last token is on the device: count it)
            times.append((time.perf_counter() - t0) / tokens * 1e6)
        res[name] = {"us_per_token": statistics.median(times), "rounds_us": times,
                     "tokens_per_s": 1e6 / statistics.median(times)}
    if "plain" in outs and "cuda_graph" in outs:
        res["same_tokens"] = bool(torch.equal(outs["plain"], outs["cuda_graph"]))
    if "recorded_plain" in outs and "recorded_cuda_graph" in outs:
        res["recorded_same_tokens"] = bool((outs["recorded_plain"] == outs["recorded_cuda_graph"]).all())
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--label", default="")
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--tokens", type=int, default=256, help="tokens generated per generation row")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("kla_decode.py needs a CUDA device", file=sys.stderr)
        return 2
    import bayesfilt
    from bayesfilt.nn import KLAConfig, KLALayer
    from bayesfilt.nn.functional import KLAState, kla_step
    from bayesfilt.nn.kernels import _kla_triton as K
    from bayesfilt.nn.kernels import kla_step_triton
    from bayesfilt.scan._triton import launch_all

    dev = "cuda"
    B, M, S, D = 1, 2048, 16, 1024
    g = torch.Generator(device=dev).manual_seed(0)
    v, k, q = (torch.randn(B, n, device=dev, generator=g) for n in (M, S, S))
    lv = torch.rand(B, M, device=dev, generator=g) + 0.5
    a = torch.rand(M, S, device=dev, generator=g) * 0.5 + 0.5
    p = torch.rand(M, S, device=dev, generator=g) * 0.01
    lam, eta = torch.ones(B, M, S, device=dev), torch.zeros(B, M, S, device=dev)
    st = KLAState(lam, eta)
    layer = KLALayer(D, KLAConfig(d_state=S, expand=M // D)).to(dev)
    x = torch.randn(B, 1, D, device=dev, generator=g)
    lstate = layer.init_state(B)
    rows = {}
    with torch.no_grad():
        y_ref = kla_step_triton(v, lv, k, q, a, p, lam, eta)
        rows["kla_step_triton"] = per_call_us(lambda: kla_step_triton(v, lv, k, q, a, p, lam, eta),
                                              args.calls, args.rounds)
        rows["kla_step"] = per_call_us(lambda: kla_step(v, lv, k, q, a, p, st, validate=False),
                                       args.calls, args.rounds)
        rows["kla_step_validate"] = per_call_us(lambda: kla_step(v, lv, k, q, a, p, st), args.calls // 4,
                                                args.rounds)
        rows["layer_step"] = per_call_us(lambda: layer(x, state=lstate), args.calls, args.rounds)
        # parts: one output's allocation, and the launch alone (buffers fixed)
        rows["torch_empty"] = per_call_us(lambda: torch.empty((B, M, S), device=dev, dtype=torch.float32),
                                          args.calls, args.rounds)
        rows["empty_like"] = per_call_us(lambda: torch.empty_like(lam), args.calls, args.rounds)
        outs = [torch.empty(B, M, device=dev), torch.empty(B, M, device=dev), torch.empty(B, M, S, device=dev),
                torch.empty(B, M, S, device=dev)]
        nmb = (M + 15) // 16
        launch = [(K._step_kernel, (nmb * B,), (v, lv, k, q, a, p, lam, eta, *outs, M, S, nmb),
                   dict(PRIOR=False, SB=S, BM=16, num_warps=4))]
        rows["launch_all"] = per_call_us(lambda: launch_all(launch), args.calls, args.rounds)
        rows.update(launch_parts(launch, args.calls, args.rounds))
        # the same step in a CUDA graph (the target's number on the device), replayed with the host included
        graph, y_graph = cuda_graph(lambda: kla_step_triton(v, lv, k, q, a, p, lam, eta))
        rows["graph_replay"] = per_call_us(graph.replay, args.calls, args.rounds)
        graph.replay()
        torch.cuda.synchronize()
        same = bool(torch.equal(y_graph[0], y_ref[0]))
    gen = generation_rows(args.tokens)
    commit, dirty = git_state()
    rec = {"benchmark": "kla_decode", "label": args.label, "bayesfilt_file": bayesfilt.__file__,
           "shape": {"B": B, "M": M, "S": S, "d_model": D}, "calls": args.calls, "rounds": args.rounds,
           "gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
           "triton": __import__("triton").__version__, "python": platform.python_version(),
           "git_commit": commit, "dirty": dirty, "graph_equals_plain_call": same, "rows": rows,
           "generation": gen}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(rec, f, indent=1)
    print(args.label, json.dumps({k: round(r["median_us"], 2) for k, r in rows.items() if "median_us" in r}),
          flush=True)
    print(args.label, "generation", json.dumps(gen), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
