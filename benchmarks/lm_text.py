"""Character-level language modelling on the King James Bible: KLA vs attention vs GLA vs hybrid.

The experiment of issue 10 (docs/lm.md). Every mixer trains with the same corpus split, the
same windows and batch order (same seed), the same number of optimiser steps, batch size,
context, learning-rate schedule and weight decay, at the same parameter count (within ±5%):
KLA sets the budget at ``--d-model``; every other mixer gets the width (a multiple of
the number of heads) whose total parameter count is closest to KLA's, and the script stops if none is
within the tolerance. Mixers:

- ``kla``: every block's mixer is KLA;
- ``attention``: causal softmax attention (SDPA, rotary positions) in every block;
- ``gla``: flash-linear-attention's GatedLinearAttention (only when ``fla`` is installed: GPU);
- ``hybrid``: attention blocks with KLA as the last block's mixer.

Reported per run: validation bits per character (bpc) during training (curve), final
validation and test bpc (the test split is touched once, at the end), training tokens/s
(median of timed optimiser steps after warm-up, measured separately from the run), and the
parameter count. JSON goes to ``--out`` (curves to a ``*_curves.jsonl`` beside it); ``--plot``
draws the validation curves.

H200 (the settings of docs/lm.md)::

    python benchmarks/lm_text.py --device cuda --dtype bfloat16 --layers 6 --d-model 256 --context 512 \\
        --batch-size 32 --steps 2500 --eval-every 250 --eval-size 128 --seeds 0 1 \\
        --run-dir runs/lm_text --out benchmarks/results/lm_text_h200.json --plot docs/lm_curves_h200.png

On a machine that limits each command's time (e.g. 10 minutes), add ``--time-budget 500`` and run
the same command again with ``--resume`` until the JSON says ``"complete": true``: training stops
at checkpoints and continues exactly.

CPU smoke (tiny model, minutes; its numbers say nothing about the H200 comparison)::

    python benchmarks/lm_text.py --quick --out benchmarks/results/lm_text_cpu_smoke.json --plot docs/lm_curves_cpu_smoke.png
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import tempfile
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import git_state  # noqa: E402

from bayesfilt.nn import KLAConfig, KLALanguageModel  # noqa: E402
from bayesfilt.nn.lm import count_parameters, fla_available  # noqa: E402
from bayesfilt.nn.text import bits_per_char, lm_task, load_lm_data  # noqa: E402
from bayesfilt.nn.train import TaskModel, TrainConfig, train  # noqa: E402

ALL_MIXERS = ("kla", "attention", "gla", "hybrid")
TOLERANCE = 0.05


def n_params(vocab: int, d_model: int, args, mixer: str) -> int:
    """Parameters of the language model (built on the meta device: no memory, no init cost)."""
    def build():
        return KLALanguageModel(vocab, d_model, args.layers, mixer=mixer, n_heads=args.heads,
                                kla_config=KLAConfig(d_state=args.d_state, expand=args.expand))
    try:
        with torch.device("meta"):
            return count_parameters(build())
    except Exception:                                                  # a layer that cannot be built on meta
        return count_parameters(build())


def match_width(vocab: int, target: int, args, mixer: str) -> tuple[int, int]:
    """The width (a multiple of the number of heads) whose parameter count is closest to ``target``."""
    step = args.heads
    lo, hi = 1, max(2, 8 * args.d_model // step)                       # widths lo*step .. hi*step
    while lo < hi:                                                     # first width with >= target parameters
        mid = (lo + hi) // 2
        if n_params(vocab, mid * step, args, mixer) < target:
            lo = mid + 1
        else:
            hi = mid
    cands = [w * step for w in (lo - 1, lo) if w >= 1]
    counts = {d: n_params(vocab, d, args, mixer) for d in cands}
    best = min(counts, key=lambda d: abs(counts[d] - target))
    return best, counts[best]


def throughput(cfg: TrainConfig, task, device: torch.device, steps: int, warmup: int = 3) -> float:
    """Training tokens/s: median over ``steps`` timed optimiser steps (forward, backward, AdamW) after warm-up."""
    torch.manual_seed(cfg.seed)
    model = TaskModel(cfg, task).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=cfg.weight_decay)
    x = torch.from_numpy(task.train.inputs[: cfg.batch_size]).to(device)
    y = torch.from_numpy(task.train.targets[: cfg.batch_size]).to(device)
    amp = dict(device_type=device.type, dtype=torch.bfloat16, enabled=cfg.dtype == "bfloat16")
    times = []
    for i in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast(**amp):
            loss, _ = model.loss_and_logits(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return cfg.batch_size * cfg.length / statistics.median(times)


def advance(cfg: TrainConfig, run: Path, task, args, deadline: float | None) -> dict | None:
    """Train ``run`` to the end, or until ``deadline`` (then None; the checkpoint lets --resume continue).

    Without a deadline this is one :func:`train` call. With one, training goes in chunks of
    ``eval_every`` steps, each resumed exactly from the previous chunk's checkpoint.
    """
    progress = sys.stderr.isatty()
    if deadline is None:
        return train(cfg, run, resume=args.resume, force=not args.resume, progress=progress, task=task,
                     max_seconds=args.max_seconds)
    from bayesfilt.nn.checkpoint import load_checkpoint
    ck = run / "checkpoint.pt"
    step = int(load_checkpoint(ck)["step"]) if args.resume and ck.is_file() else 0
    first = True
    while True:
        if time.perf_counter() > deadline:
            return None
        res = train(cfg, run, resume=args.resume or not first, force=not args.resume and first, progress=progress,
                    task=task, stop_after=min(cfg.steps, step + cfg.eval_every), max_seconds=args.max_seconds)
        first = False
        step = res["step"]
        if res["status"] != "stopped":
            return res


def load_model(run: Path, cfg: TrainConfig, vocab: int, device: torch.device):
    from bayesfilt.nn.checkpoint import load_checkpoint
    ck = load_checkpoint(run / "checkpoint.pt", map_location=device)
    lm = KLALanguageModel(vocab, cfg.d_model, cfg.layers, mixer=cfg.mixer, kla_config=cfg.kla_config(),
                          n_heads=cfg.n_heads)
    lm.load_state_dict({k[3:]: v for k, v in ck["model"].items() if k.startswith("lm.")})
    return lm.to(device).eval()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mixers", nargs="+", default=list(ALL_MIXERS), choices=ALL_MIXERS)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--d-model", type=int, default=256, help="KLA's width; it sets the parameter budget")
    p.add_argument("--d-state", type=int, default=16)
    p.add_argument("--expand", type=int, default=2)
    p.add_argument("--heads", type=int, default=8, help="heads of attention / GLA")
    p.add_argument("--context", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=2500)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--eval-size", type=int, default=128, help="validation windows per evaluation during training")
    p.add_argument("--test-windows", type=int, default=None,
                   help="validation and test windows scored at the end (default: all)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    p.add_argument("--backend", default="auto", help="kla_scan backend")
    p.add_argument("--timing-steps", type=int, default=20)
    p.add_argument("--max-seconds", type=float, default=None, help="time box per run (the run records it)")
    p.add_argument("--resume", action="store_true",
                   help="continue the runs in --run-dir from their checkpoints (finished runs are only scored)")
    p.add_argument("--time-budget", type=float, default=None,
                   help="stop training (at a checkpoint, every --eval-every steps) after this many seconds in this "
                        "invocation; the JSON then lists the finished runs and 'complete': false")
    p.add_argument("--run-dir", default="runs/lm_text", help="where each run's folder goes")
    p.add_argument("--cache-dir", default=None, help="token cache (default: $BAYESFILT_CACHE or ~/.cache/bayesfilt)")
    p.add_argument("--out", default=None, help="JSON results file")
    p.add_argument("--plot", default=None, help="PNG of the validation curves")
    p.add_argument("--label", default=None, help="what this run is (default: 'H200' on cuda, 'CPU smoke' on cpu)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (CPU runs)")
    p.add_argument("--quick", action="store_true",
                   help="CPU smoke preset: 2 layers, d_model 32, d_state 8, context 64, batch 8, 100 steps, 1 thread")
    if p.parse_known_args(argv)[0].quick:                              # the preset's values are defaults: flags win
        p.set_defaults(layers=2, d_model=32, d_state=8, heads=2, context=64, batch_size=8, steps=100, warmup=10,
                       eval_every=25, eval_size=16, test_windows=128, timing_steps=3, lr=3e-3, device="cpu",
                       backend="reference", threads=1,
                       run_dir=str(Path(tempfile.gettempdir()) / "bayesfilt_lm_text_cpu_smoke"))
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    label = args.label or ("H200" if device.type == "cuda" else "CPU smoke")
    mixers = [m for m in args.mixers if m != "gla" or fla_available()]
    skipped = {m: "flash-linear-attention (fla) is not installed" for m in args.mixers if m not in mixers}
    data = load_lm_data(args.cache_dir)
    vocab = data.tokenizer.vocab_size

    budget = n_params(vocab, args.d_model, args, "kla")
    widths = {}
    for m in mixers:
        d, n = (args.d_model, budget) if m == "kla" else match_width(vocab, budget, args, m)
        widths[m] = {"d_model": d, "parameters": n, "relative_to_kla": n / budget - 1}
        print(f"{m:10s} d_model {d:5d}  parameters {n:,}  ({100 * (n / budget - 1):+.2f}% vs KLA)", flush=True)
        if abs(n / budget - 1) > TOLERANCE:
            raise SystemExit(f"{m}: no width within ±{TOLERANCE:.0%} of KLA's {budget} parameters")

    runs, curves, incomplete = [], [], []
    deadline = None if args.time_budget is None else time.perf_counter() + args.time_budget
    for seed in args.seeds:
        task = lm_task(seed=seed, length=args.context, n_test=None, cache_dir=args.cache_dir)
        for m in mixers:
            cfg = TrainConfig(task="lm", length=args.context, mixer=m, layers=args.layers,
                              d_model=widths[m]["d_model"], d_state=args.d_state, expand=args.expand,
                              n_heads=args.heads, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                              weight_decay=args.weight_decay, warmup=args.warmup, eval_every=args.eval_every,
                              eval_size=args.eval_size, seed=seed, device=str(device), dtype=args.dtype,
                              backend=args.backend)
            run = Path(args.run_dir) / f"{m}-seed{seed}"
            t0 = time.perf_counter()
            res = advance(cfg, run, task, args, deadline)
            wall = time.perf_counter() - t0
            if res is None:                                            # the time budget ran out: resume later
                incomplete.append(run.name)
                print(f"{run.name}: stopped at a checkpoint (--time-budget); run the same command with --resume",
                      flush=True)
                continue
            hist = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
            curve = [[r["step"], r["eval_loss"] / math.log(2)] for r in hist if "eval_loss" in r]
            train_curve = [[r["step"], (math.nan if r["loss"] is None else r["loss"]) / math.log(2)]
                           for r in hist]                      # null: a diverged step's NaN (strict JSON)
            lm = load_model(run, cfg, vocab, device)
            amp = torch.bfloat16 if args.dtype == "bfloat16" else None
            val = bits_per_char(lm, data.val, length=args.context, max_windows=args.test_windows, device=device,
                                autocast_dtype=amp)
            test = bits_per_char(lm, data.test, length=args.context, max_windows=args.test_windows, device=device,
                                 autocast_dtype=amp)
            del lm
            tps = throughput(cfg, task, device, args.timing_steps)
            rec = {"mixer": m, "seed": seed, "d_model": cfg.d_model, "parameters": res["parameters"],
                   "steps": res["step"], "status": res["status"],
                   "train_tokens": res["step"] * args.batch_size * args.context,
                   "val_bpc": val, "test_bpc": test, "final_train_bpc": train_curve[-1][1],
                   "train_tokens_per_s": tps, "wall_s": wall}
            runs.append(rec)
            curves.append({"mixer": m, "seed": seed, "val_bpc": curve, "train_bpc": train_curve})
            print(json.dumps(rec), flush=True)

    summary = {}
    for m in mixers:
        rs = [r for r in runs if r["mixer"] == m]
        if not rs:
            continue
        summary[m] = {"test_bpc_mean": statistics.mean(r["test_bpc"] for r in rs),
                      "val_bpc_mean": statistics.mean(r["val_bpc"] for r in rs),
                      "train_tokens_per_s_mean": statistics.mean(r["train_tokens_per_s"] for r in rs),
                      "seeds": len(rs), "parameters": widths[m]["parameters"], "d_model": widths[m]["d_model"]}
    best = min(summary, key=lambda m: summary[m]["test_bpc_mean"]) if summary and not incomplete else None
    sha, dirty = git_state(("bayesfilt", "benchmarks/lm_text.py"))
    out = {
        "benchmark": "lm_text", "label": label,
        "note": ("CPU smoke test of the pipeline (tiny model, few steps): not the H200 comparison of issue 10"
                 if label == "CPU smoke" else "issue 10: equal parameters (±5%), tokens and optimiser budget"),
        "machine": platform.node(), "platform": platform.platform(), "python": platform.python_version(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "git_commit": sha,
        "git_dirty": dirty is not False,
        "corpus": {"name": "King James Bible (bayesfilt/data/kjv.txt.xz)", "vocab": vocab,
                   "train_chars": int(data.train.size), "val_chars": int(data.val.size),
                   "test_chars": int(data.test.size)},
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "plot", "label")},
        "skipped": skipped, "widths": widths, "summary": summary, "best_test_bpc": best, "runs": runs,
        "complete": not incomplete, "unfinished_runs": incomplete,
    }
    if args.out:
        path = Path(args.out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out, indent=1) + "\n")
        path.with_name(path.stem + "_curves.jsonl").write_text("".join(json.dumps(c) + "\n" for c in curves))
        print(f"wrote {path}")
    if args.plot:
        plot_curves(curves, args.plot, f"{label}: validation bits per character "
                    f"({args.layers} layers, ~{budget / 1e6:.2f}M parameters, context {args.context})")
    if incomplete:
        print(f"incomplete: {incomplete} stopped at checkpoints; run the same command with --resume", flush=True)
    for m, s in summary.items():
        print(f"{m:10s} test bpc {s['test_bpc_mean']:.4f}  val bpc {s['val_bpc_mean']:.4f}  "
              f"train {s['train_tokens_per_s_mean']:,.0f} tokens/s  ({s['seeds']} seed(s), {label})")
    return 0


def plot_curves(curves: list, path: str, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.2))
    colors = {m: f"C{i}" for i, m in enumerate(ALL_MIXERS)}
    seen = set()
    for c in curves:
        if not c["val_bpc"]:
            continue
        s, b = zip(*c["val_bpc"])
        ax.plot(s, b, color=colors[c["mixer"]], lw=1.4, label=None if c["mixer"] in seen else c["mixer"])
        seen.add(c["mixer"])
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("validation bits per character")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
