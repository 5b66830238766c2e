"""Decoding speed: tokens/s of KLA (layer states, O(1) memory) vs attention (KV cache) after a long context.

For each mixer, batch size B and context length C: a randomly initialised language model
(speed does not depend on the weights) prefills C random tokens through its states, then
decodes ``--new-tokens`` tokens one at a time (greedy), each step feeding the previous step's
argmax. Reported: decode tokens/s (B x new tokens / decode time, median of ``--repeats``),
prefill time, and the bytes held by the decoding states at the end (KLA: constant; attention:
grows with C). Parity first: on a small shape, decoding through the states must equal the full
forward's logits (float32) for every mixer, or nothing is timed.

H200 (docs/lm.md)::

    python benchmarks/decode_speed.py --device cuda --layers 6 --d-model 256 --match-params --batches 1 64 \\
        --contexts 1024 8192 --out benchmarks/results/decode_speed_h200.json

``--cuda-graph`` adds, for KLA, rows decoded through one CUDA graph per step
(``bayesfilt.nn.decode.capture_decode_step``) and whether their greedy tokens equal the plain rows'.

CPU smoke (tiny; says nothing about the GPU)::

    python benchmarks/decode_speed.py --quick --match-params --out benchmarks/results/decode_speed_cpu_smoke.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import git_state  # noqa: E402

from bayesfilt.nn import KLAConfig, KLALanguageModel  # noqa: E402
from bayesfilt.nn.decode import capture_decode_step, decode_step, state_nbytes  # noqa: E402
from bayesfilt.nn.lm import count_parameters  # noqa: E402

VOCAB = 75


def build(mixer: str, d_model: int, args, device) -> KLALanguageModel:
    torch.manual_seed(0)
    lm = KLALanguageModel(VOCAB, d_model, args.layers, mixer=mixer, n_heads=args.heads,
                          kla_config=KLAConfig(d_state=args.d_state, expand=args.expand, backend=args.backend))
    return lm.to(device).eval()


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.no_grad()
def parity(mixer: str, d_model: int, args, device) -> float:
    """Max |logits(decode through states) - logits(full forward)| / max |logits| on a small shape."""
    lm = build(mixer, d_model, args, device)
    x = torch.randint(0, VOCAB, (2, 48), device=device, generator=torch.Generator(device).manual_seed(1))
    full = lm(x)
    logits, states = decode_step(lm, x[:, :16], lm.init_state(2, device=device))
    outs = [logits]
    for t in range(16, 48):
        logits, states = decode_step(lm, x[:, t:t + 1], states)
        outs.append(logits)
    step = torch.cat(outs, 1)
    return float((step - full).abs().max() / full.abs().max())


@torch.no_grad()
def time_decode(lm, B: int, C: int, args, device, graph: bool = False) -> dict:
    """Decode tokens/s after a C-token prefill at batch B; ``graph``: each step a replay of one CUDA graph
    (``capture_decode_step``, captured after the prefill; its time is ``capture_s``, not in the rate)."""
    amp = dict(device_type=device.type, dtype=torch.bfloat16, enabled=args.dtype == "bfloat16")
    prompt = torch.randint(0, VOCAB, (B, C), device=device, generator=torch.Generator(device).manual_seed(2))
    rates, prefills, captures = [], [], []
    nbytes = 0
    for _ in range(args.repeats):
        sync(device)
        t0 = time.perf_counter()
        with torch.autocast(**amp):
            logits, states = decode_step(lm, prompt, lm.init_state(B, device=device))
        sync(device)
        prefills.append(time.perf_counter() - t0)
        nxt = logits[:, -1:].argmax(-1)
        with torch.autocast(**amp):                                  # warm-up step (not timed)
            logits, states = decode_step(lm, nxt, states)
        nxt = logits[:, -1:].argmax(-1)
        if graph:
            sync(device)
            t0 = time.perf_counter()
            with torch.autocast(**amp):
                step, states = capture_decode_step(lm, states)
            sync(device)
            captures.append(time.perf_counter() - t0)
        ids = []
        sync(device)
        t0 = time.perf_counter()
        with torch.autocast(**amp):
            for _ in range(args.new_tokens):
                if graph:
                    logits = step(nxt)
                else:
                    logits, states = decode_step(lm, nxt, states, validate=False)
                nxt = logits[:, -1:].argmax(-1)
                ids.append(nxt)
        sync(device)
        rates.append(B * args.new_tokens / (time.perf_counter() - t0))
        last_ids = torch.cat(ids, 1)
        nbytes = state_nbytes(states)
        del states, logits
    out = {"decode_tokens_per_s": statistics.median(rates), "prefill_s": statistics.median(prefills),
           "state_bytes_at_end": nbytes, "context_at_end": C + 1 + args.new_tokens, "ids": last_ids}
    if graph:
        out["capture_s"] = statistics.median(captures)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mixers", nargs="+", default=["kla", "attention"], choices=["kla", "attention", "hybrid"])
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--d-model", type=int, default=256, help="width of every mixer (see --match-params)")
    p.add_argument("--match-params", action="store_true",
                   help="give attention/hybrid the width of benchmarks/lm_text.py's parameter matching")
    p.add_argument("--d-state", type=int, default=16)
    p.add_argument("--expand", type=int, default=2)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    p.add_argument("--contexts", type=int, nargs="+", default=[1024, 8192])
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    p.add_argument("--backend", default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (CPU runs)")
    p.add_argument("--out", default=None)
    p.add_argument("--label", default=None)
    p.add_argument("--cuda-graph", action="store_true",
                   help="also time KLA decoding through one CUDA graph per step (rows with graph: true; CUDA only)")
    p.add_argument("--quick", action="store_true", help="CPU smoke: 2 layers, d_model 32, B 1/8, C 256/1024, 16 tokens")
    if p.parse_known_args(argv)[0].quick:                              # the preset's values are defaults: flags win
        p.set_defaults(layers=2, d_model=32, d_state=8, heads=2, batches=[1, 8], contexts=[256, 1024], new_tokens=16,
                       repeats=1, device="cpu", threads=1)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    label = args.label or ("H200" if device.type == "cuda" else "CPU smoke")
    widths = {m: args.d_model for m in args.mixers}
    if args.match_params:
        from lm_text import match_width, n_params
        budget = n_params(VOCAB, args.d_model, args, "kla")
        for m in args.mixers:
            if m != "kla":
                widths[m] = match_width(VOCAB, budget, args, m)[0]
    par = {m: parity(m, widths[m], args, device) for m in args.mixers}
    print("parity (max rel. logits difference, decode vs full):", par, flush=True)
    if any(not v < 1e-4 for v in par.values()):
        raise SystemExit("decoding through the states does not reproduce the full forward: nothing timed")
    results = []
    if args.cuda_graph and (device.type != "cuda" or "kla" not in args.mixers):
        p.error("--cuda-graph needs --device cuda and the kla mixer")
    for m in args.mixers:
        lm = build(m, widths[m], args, device)
        for C in args.contexts:
            for B in args.batches:
                plain_ids = None
                for graph in (False, True) if args.cuda_graph and m == "kla" else (False,):
                    try:
                        r = time_decode(lm, B, C, args, device, graph=graph)
                    except torch.cuda.OutOfMemoryError:
                        r = {"error": "out of memory"}
                        torch.cuda.empty_cache()
                    ids = r.pop("ids", None)
                    if graph and ids is not None and plain_ids is not None:
                        r["same_tokens_as_plain"] = bool(torch.equal(ids, plain_ids))
                    plain_ids = ids if not graph else plain_ids
                    rec = {"mixer": m, "graph": graph, "d_model": widths[m], "parameters": count_parameters(lm),
                           "batch": B, "context": C, **r}
                    results.append(rec)
                    print(json.dumps(rec), flush=True)
        del lm
    out = {"benchmark": "decode_speed", "label": label,
           "note": ("CPU smoke test (tiny model): not the H200 measurement of issue 10" if label == "CPU smoke"
                    else "issue 10: decoding tokens/s, KLA (states) vs attention (KV cache)"),
           "machine": platform.node(), "platform": platform.platform(), "python": platform.python_version(),
           "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
           "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "git_commit": git_state()[0],
           "settings": {k: v for k, v in vars(args).items() if k not in ("out", "label")},
           "parity_max_rel_diff": par, "results": results}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
