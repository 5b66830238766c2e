"""MAD synthetic suite: KLA, KLA without process noise, attention and GLA, single block, d_model 128.

A time-boxed benchmark for one GPU, run unattended: every (task, mixer, seed) is one
``bayesfilt train TASK`` process; they run concurrently (``--concurrency`` at most at once)
with the same wall-clock budget each (``--max-seconds``), and their ``result.json`` files are
gathered into one JSON (rewritten after every finished run, so a cut-off call still leaves
the runs done so far).

Runs. The six MAD tasks of the KLA paper (arXiv 2602.10743) with the task defaults of
:func:`bayesfilt.nn.tasks.mad_task` (in-context, fuzzy and noisy recall: vocab 16 (+16 noise),
L = 128, 12,800 training sequences; selective copy: L = 256; compression: L = 32, read out
through the 240/120 MLP decoder; memorisation: vocab 256, L = 32, 256 training sequences),
times the mixers

- ``kla``: KLA, d_state S = 16, expand 2 (paper defaults);
- ``kla_p0``: the same with the process noise fixed to 0 (``--no-process-noise``; the paper's
  ablation, -4.71 points on average);
- ``attention``: causal softmax attention, 4 heads (d_head 32);
- ``gla``: flash-linear-attention's GatedLinearAttention, 2 heads, when ``import fla`` works
  and CUDA is there (otherwise recorded as skipped, with the reason; never an error);
- ``gdn`` (only when asked for with ``--mixers``): fla's GatedDeltaNet, 8 heads.

All with one block (``--layers 1``), d_model 128, seeds from ``--seeds``.

Matched state size. KLA's recurrent state per sequence is M x S = (2 x 128) x 16 = 4,096
posterior means (plus as many precisions, and a 3-step convolution cache). fla's GLA keeps one
d_k x d_v matrix per head with d_k = d_model / 2 and d_v = d_model split over the heads
(fla's defaults expand_k = 0.5, expand_v = 1; the CLI sets only the number of heads H), i.e.
64 x 128 / H = 8,192 / H numbers: H = 2 gives 4,096, the same as KLA's means (and as Mamba's
d_inner x d_state with the same expand and S). H = 1 would match KLA's means and precisions
together (8,192); ``--gla-heads 1`` runs that. GatedDeltaNet (head_dim d_model / H, values
expanded 2x) keeps 2 x 128^2 / H: H = 8 gives 4,096. Attention's state (its KV cache,
2 x L x d_model) grows with L and does not depend on the heads, so it cannot be matched; it
keeps the CLI default of 4 heads.

Score. ``bayesfilt train`` evaluates the token accuracy over the labelled positions of the
test split (``eval_acc``: the recalled values, the copied tokens, every reconstructed token of
compression, every memorised value); that is MAD's accuracy (Poli et al. 2024), the metric the
paper's table reports, in percent. The score of a run is its best evaluation over training
(MAD's own score is the test accuracy of the checkpoint with the lowest test perplexity, the best over its
learning-rate and weight-decay grid; ours records the final evaluation and that score beside the best).
The summary is the mean over seeds, next to the paper's numbers (TARGETS.md section 4: KLA per task,
and the averages of GLA, Gated DeltaNet and Mamba) and the difference in points.

Learning rate and weight decay. ``--lr`` and ``--weight-decay`` take several values: every
(task, mixer, seed) then runs once per pair, and the summary takes the best run of the grid for
each (task, mixer, seed), then the mean over seeds. MAD's protocol (Poli et al. 2024) also keeps the
best run of its grid (lr 1e-4, 5e-4, 1e-3 x weight decay 0, 0.1, 200 epochs) for each task setting,
and then averages over harder variants of the task (not run here). Each row keeps its lr and weight
decay; the summary names the grid point each score came from, and gives beside each cell
``final_pct``: the same scored by each run's final evaluation (the grid point chosen on it; before session 20
this was taken for MAD's way of scoring a run, which mad-lab's code does not bear out: see ``mad_pct``), and
``final_class_pct``: that final evaluation's accuracy averaged over classes over the whole test split
(``bayesfilt.nn.train.class_accuracy``), for runs since session 19; and ``mad_pct``: the accuracy as MAD's
reference code (mad-lab) reports it, for runs since session 20: torchmetrics' ``MulticlassAccuracy`` (macro
average) of each test batch of 128 rows, averaged over the batches (``eval_mad_acc``,
``bayesfilt.nn.train.batch_class_accuracy``), taken at the evaluation with the lowest test perplexity as mad-lab
logs it (``eval_mad_ppl``: torchmetrics' ``Perplexity`` of each 128-row test batch, averaged over the batches;
``bayesfilt.nn.train.batch_perplexity``; mad-lab scores the checkpoint that minimises it), the best over the grid per
seed, then the mean over seeds. mad-lab's
published per-task score also averages that over harder variants of each task (not run here).

Usage::

    python benchmarks/kla_mad.py --max-seconds 240 --out benchmarks/results/kla_mad.json
    python benchmarks/kla_mad.py --tasks in_context_recall selective_copy --mixers kla kla_p0 --seeds 0 1
    python benchmarks/kla_mad.py --tasks selective_copy --mixers kla --lr 5e-4 1e-3 --weight-decay 0 0.1
    python benchmarks/kla_mad.py --quick          # CPU smoke run: 2 tasks x 2 mixers, a few steps, tiny sizes
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import math
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import add_kla_init_args, git_state, read_run, run_processes, torch_record, train_command  # noqa: E402

#: The MAD tasks, with the names the CLI uses.
TASKS = ("in_context_recall", "fuzzy_recall", "noisy_recall", "selective_copy", "compression", "memorization")
#: Mixers run by default (gdn only when asked for).
DEFAULT_MIXERS = ("kla", "kla_p0", "attention", "gla")
ALL_MIXERS = DEFAULT_MIXERS + ("gdn",)
#: The paper's KLA accuracy per task (%, mean of 5 seeds; TARGETS.md section 4).
PAPER_KLA = {"compression": 85.03, "memorization": 98.87, "in_context_recall": 99.95, "noisy_recall": 99.93,
             "fuzzy_recall": 45.70, "selective_copy": 90.67}
#: The paper's average over the six tasks (%); kla_p0's is KLA's minus the reported drop of 4.71 points.
PAPER_AVERAGE = {"kla": 86.69, "gla": 68.15, "gdn": 82.11, "mamba": 81.60, "kla_p0": round(86.69 - 4.71, 2)}
PAPER_P0_DROP = -4.71
QUICK_LENGTH = {"in_context_recall": 16, "fuzzy_recall": 16, "noisy_recall": 16, "selective_copy": 40,
                "compression": 8, "memorization": 16}


def mixer_flags(mixer: str, args) -> dict:
    """The ``bayesfilt train`` flags that make ``mixer`` (``kla_p0`` is ``kla`` with ``--no-process-noise``)."""
    if mixer == "kla":
        return {"mixer": "kla", "d_state": args.d_state, "p_init_rule": args.p_init_rule,
                "lambda_v_init": args.lambda_v_init}
    if mixer == "kla_p0":                                                # p = 0: no p to initialise
        return {"mixer": "kla", "d_state": args.d_state, "no_process_noise": True, "lambda_v_init": args.lambda_v_init}
    heads = {"attention": args.attention_heads, "gla": args.gla_heads, "gdn": args.gdn_heads}[mixer]
    if mixer == "gla" and args.gla_kernel == "recurrent":
        return {"mixer": "gla_recurrent", "heads": heads}                # same layer, fla's recurrent kernel
    return {"mixer": mixer, "heads": heads}


def state_size(mixer: str, args, length: int | None = None) -> dict:
    """Numbers a mixer carries from one token to the next, per sequence and block (see the docstring)."""
    d = args.d_model
    if mixer in ("kla", "kla_p0"):
        n = 2 * d * args.d_state                                   # expand 2: M = 2 d_model lanes of S states
        return {"state": n, "what": f"M x S = {2 * d} x {args.d_state} posterior means (+ as many precisions)"}
    if mixer == "gla":
        h = args.gla_heads
        return {"state": (d // 2) * d // h,
                "what": f"{h} heads x ({d // 2}/{h} x {d}/{h}) (fla expand_k 0.5, expand_v 1)"}
    if mixer == "gdn":
        h = args.gdn_heads
        hd = max(d // h, 16)
        return {"state": h * hd * 2 * hd, "what": f"{h} heads x ({hd} x {2 * hd}) (fla expand_v 2)"}
    return {"state": None if length is None else 2 * length * d,
            "what": "KV cache 2 x L x d_model, grows with L, independent of the heads"}


def unavailable(mixer: str, cuda: bool) -> str | None:
    """Why ``mixer`` cannot run here (None when it can)."""
    if mixer in ("gla", "gdn"):
        if importlib.util.find_spec("fla") is None:
            return "flash-linear-attention (the optional 'fla' extra) is not installed"
        if not cuda:
            return "flash-linear-attention needs a CUDA GPU"
    return None


def _mad_checkpoint(evals: list) -> dict | None:
    """The evaluation with the lowest ``eval_mad_ppl`` (mad-lab's checkpoint: the lowest test perplexity as it logs
    it; the first of equals), None when the run's evaluations did not record both ``eval_mad_ppl`` and
    ``eval_mad_acc`` (before session 20) or no perplexity is finite (a NaN is written as null)."""
    scored = [h for h in evals if h.get("eval_mad_ppl") is not None and h.get("eval_mad_acc") is not None
              and math.isfinite(h["eval_mad_ppl"])]
    return min(scored, key=lambda h: h["eval_mad_ppl"]) if scored else None


def _mad_accuracy(evals: list) -> float | None:
    """``eval_mad_acc`` of ``_mad_checkpoint(evals)``: mad-lab's score of a run (None where it has no checkpoint)."""
    h = _mad_checkpoint(evals)
    return None if h is None else h["eval_mad_acc"]


def _score(run: dict) -> dict:
    """Status, steps and accuracies of one finished or killed run (accuracies as fractions)."""
    r, hist = run["result"], run["history"]
    evals = [h for h in hist if "eval_acc" in h]
    best = max((h["eval_acc"] for h in evals), default=None)
    ckpt = _mad_checkpoint(evals) or {}                     # the evaluation mad-lab scores (empty: none recorded)
    row = {"steps": hist[-1]["step"] if hist else 0, "accuracy": best,
           "final_accuracy": evals[-1]["eval_acc"] if evals else None,
           # the final evaluation's accuracy averaged over classes over the whole test split (absent before session 19)
           "final_class_accuracy": evals[-1].get("eval_class_acc") if evals else None,
           # MAD's reported accuracy (per-batch class average, eval_mad_acc, since session 20) of the evaluation with
           # the lowest test perplexity as mad-lab logs it (eval_mad_ppl): mad-lab scores that checkpoint
           "mad_accuracy": ckpt.get("eval_mad_acc"),
           # that evaluation's step, and the highest eval_mad_acc of the run (at any evaluation; not mad-lab's score)
           "mad_step": ckpt.get("step"),
           "best_mad_accuracy": max((h["eval_mad_acc"] for h in evals if h.get("eval_mad_acc") is not None),
                                    default=None),
           "curve": [(h["step"], round(h["eval_acc"], 4)) for h in evals],
           # predicted-but-never-labelled classes per 128-row batch at that evaluation (eval_mad_stray; session 21)
           "mad_stray": ckpt.get("eval_mad_stray"),
           # (step, eval_mad_acc, eval_mad_ppl, eval_mad_stray or None) of every evaluation that recorded the first
           # two (since session 21)
           "mad_curve": [(h["step"], round(h["eval_mad_acc"], 4), round(h["eval_mad_ppl"], 4),
                          None if h.get("eval_mad_stray") is None else round(h["eval_mad_stray"], 3)) for h in evals
                         if h.get("eval_mad_acc") is not None and h.get("eval_mad_ppl") is not None
                         and math.isfinite(h["eval_mad_ppl"])]}
    if r is not None:
        row.update(status=r["status"], steps=r["step"], parameters=r["parameters"],
                   accuracy=r["best_eval_acc"] if r["best_eval_acc"] >= 0 else best,
                   final_accuracy=r.get("last_eval", {}).get("eval_acc", row["final_accuracy"]))
        if r.get("message"):
            row["message"] = r["message"]
    if run["stdout"] and "train_seconds_this_run" in run["stdout"]:
        row["seconds"] = round(run["stdout"]["train_seconds_this_run"], 1)
    return row


def best_of_grid(rows: list, score: str = "accuracy") -> list:
    """One row per (task, mixer, seed): the best ``score`` over the lr x weight-decay grid (MAD's protocol);
    ties keep the first row. Rows without that score are left out. ``score``: "accuracy" (a run's best
    evaluation, ours), "final_accuracy" (its last) or "mad_accuracy" (mad-lab's score of a run: ``_mad_accuracy``)."""
    best = {}
    for r in rows:
        if r.get(score) is None:
            continue
        key = (r["task"], r["mixer"], r["seed"])
        if key not in best or r[score] > best[key][score]:
            best[key] = r
    return list(best.values())


def summarize(rows: list, tasks, mixers) -> dict:
    """Mean score per (task, mixer) over the seeds that ran (each seed's best run of the lr x weight-decay grid),
    the paper beside it, averages and the p = 0 drop."""
    def mean(xs):
        return sum(xs) / len(xs) if xs else None

    final = best_of_grid(rows, "final_accuracy")            # final evaluations, best of the grid
    rows_all, rows = rows, best_of_grid(rows)

    table, averages = {}, {}
    for task in tasks:
        table[task] = {}
        for mixer in mixers:
            mine = [r for r in rows if r["task"] == task and r["mixer"] == mixer]
            accs = [100 * r["accuracy"] for r in mine]
            fin = [100 * r["final_accuracy"] for r in final if r["task"] == task and r["mixer"] == mixer]
            fin_cls = [100 * r["final_class_accuracy"] for r in final if r["task"] == task and r["mixer"] == mixer
                       and r.get("final_class_accuracy") is not None]
            mad_rows = [r for r in rows_all if r["task"] == task and r["mixer"] == mixer]
            mad_best = [100 * r["mad_accuracy"] for r in best_of_grid(mad_rows, "mad_accuracy")]
            n_seeds = len({r["seed"] for r in mad_rows})
            cell = {"ours_pct": None if not accs else round(mean(accs), 2), "seeds": len(accs),
                    "per_seed_pct": [round(a, 2) for a in accs],
                    "grid_point": [{"seed": r["seed"], "lr": r.get("lr"), "weight_decay": r.get("weight_decay")}
                                   for r in mine],
                    "final_pct": None if not fin else round(mean(fin), 2),         # the final evaluations
                    # and their accuracy averaged over classes (whole test split), where the runs recorded it
                    "final_class_pct": None if not fin_cls or len(fin_cls) < len(fin) else round(mean(fin_cls), 2),
                    # scored as mad-lab reports a task setting: per seed the best over the grid of eval_mad_acc at
                    # the lowest test perplexity, then the mean over seeds (None unless every seed recorded it)
                    "mad_pct": None if not mad_best or len(mad_best) < n_seeds else round(mean(mad_best), 2)}
            if mixer == "kla":
                cell["paper_pct"] = PAPER_KLA[task]
                if accs:
                    cell["diff_pts"] = round(mean(accs) - PAPER_KLA[task], 2)
            table[task][mixer] = cell
    for mixer in mixers:
        vals = [table[t][mixer]["ours_pct"] for t in tasks if table[t][mixer]["ours_pct"] is not None]
        avg = {"ours_pct": None if not vals else round(mean(vals), 2), "tasks": len(vals),
               "all_six_tasks": len(vals) == len(TASKS)}
        if mixer in PAPER_AVERAGE:
            avg["paper_pct"] = PAPER_AVERAGE[mixer]
            if avg["all_six_tasks"]:                 # the paper's average is over six tasks: no difference to fewer
                avg["diff_pts"] = round(mean(vals) - PAPER_AVERAGE[mixer], 2)
        averages[mixer] = avg
    drop = None
    if "kla" in mixers and "kla_p0" in mixers:
        per_task = {t: round(table[t]["kla_p0"]["ours_pct"] - table[t]["kla"]["ours_pct"], 2) for t in tasks
                    if table[t]["kla"]["ours_pct"] is not None and table[t]["kla_p0"]["ours_pct"] is not None}
        drop = {"ours_pts": None if not per_task else round(mean(list(per_task.values())), 2),
                "paper_pts": PAPER_P0_DROP, "tasks": len(per_task), "per_task_pts": per_task,
                "what": "mean over tasks of (kla_p0 - kla), each the mean over seeds, in points"}
    return {"table": table, "averages": averages, "p0_drop": drop,
            "paper_other": {"mamba_average_pct": PAPER_AVERAGE["mamba"],
                            "note": "the paper gives per-task numbers for KLA only (TARGETS.md section 4); "
                                    "GLA, Gated DeltaNet and Mamba as averages; no attention numbers"}}


def format_table(summary: dict, tasks, mixers) -> str:
    """The summary as a plain-text table: ours (paper) per task and mixer, averages, the p = 0 drop."""
    def cell(c):
        s = "-" if c.get("ours_pct") is None else f"{c['ours_pct']:.2f}"
        return s + (f" ({c['paper_pct']:.2f})" if "paper_pct" in c else "")

    w = 20
    lines = ["task".ljust(20) + "".join(m.rjust(w) for m in mixers)]
    for t in tasks:
        lines.append(t.ljust(20) + "".join(cell(summary["table"][t][m]).rjust(w) for m in mixers))
    avg = {m: summary["averages"][m] for m in mixers}           # the paper's six-task average beside six tasks only
    lines.append("average".ljust(20) + "".join(
        cell(a if a["all_six_tasks"] else {k: v for k, v in a.items() if k != "paper_pct"}).rjust(w)
        for a in avg.values()))
    lines.append("accuracy in % (best test token accuracy, mean over seeds); (paper) where TARGETS.md gives it")
    for t in tasks:                                             # mad-lab's score where the runs recorded it
        mad = {m: summary["table"][t][m].get("mad_pct") for m in mixers}
        if any(v is not None for v in mad.values()):
            lines.append(f"{t}, mad-lab's score (mad_pct): " + ", ".join(
                f"{m} {'-' if v is None else f'{v:.2f}'}" for m, v in mad.items()))
    d = summary["p0_drop"]
    if d is not None and d["ours_pts"] is not None:
        lines.append(f"kla_p0 - kla: {d['ours_pts']:+.2f} points over {d['tasks']} tasks (paper {d['paper_pts']:+.2f})")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="result JSON (default: benchmarks/results/kla_mad.json; "
                                                "--quick: kla_mad_quick.json in the workdir)")
    ap.add_argument("--workdir", default=None, help="run folders and logs (default: a new temporary folder)")
    ap.add_argument("--tasks", nargs="+", default=None, choices=TASKS, help="default: all six")
    ap.add_argument("--mixers", nargs="+", default=None, choices=ALL_MIXERS,
                    help=f"default: {' '.join(DEFAULT_MIXERS)}")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--max-seconds", type=float, default=240.0, help="training time per run (default: %(default)s)")
    ap.add_argument("--concurrency", type=int, default=None, help="runs at once (default: all)")
    ap.add_argument("--kill-after", type=float, default=None,
                    help="kill a run after this many wall seconds (default: --max-seconds + 300)")
    ap.add_argument("--warm", action=argparse.BooleanOptionalAction, default=None,
                    help="first compile the Triton kernels with one tiny run per kernel family (kla; gla/gdn "
                         "when they run), so the runs do not all compile at once (default: on with CUDA)")
    ap.add_argument("--steps", type=int, default=20000,
                    help="maximum steps; also the length of the cosine schedule (default: %(default)s, "
                         "200 epochs of 12,800 sequences at batch 128)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, nargs="+", default=[2e-3], help="one or more (a grid with --weight-decay)")
    ap.add_argument("--weight-decay", type=float, nargs="+", default=[0.1], help="one or more")
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--target-acc", type=float, default=0.995, help="stop a run early at this test accuracy")
    ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--d-state", type=int, default=16, help="KLA's S (default: %(default)s)")
    add_kla_init_args(ap)
    ap.add_argument("--attention-heads", type=int, default=4)
    ap.add_argument("--gla-heads", type=int, default=2, help="2: GLA state = KLA's 4,096 means (docstring)")
    ap.add_argument("--gla-kernel", choices=("recurrent", "chunk"), default="recurrent",
                    help="fla kernel of the GLA layer: 'recurrent' (fused_recurrent: the same maths, compiles "
                         "in seconds) or 'chunk' (fla's default for L > 64; autotunes for minutes per shape)")
    ap.add_argument("--gdn-heads", type=int, default=8, help="8: GDN state = 4,096 (docstring)")
    ap.add_argument("--quick", action="store_true", help="CPU smoke run: 2 tasks x 2 mixers, tiny, a few steps")
    args = ap.parse_args(argv)
    if min(args.lr) <= 0 or min(args.weight_decay) < 0:
        ap.error(f"--lr must be > 0 and --weight-decay >= 0, got {args.lr} and {args.weight_decay}")

    import torch
    cuda = torch.cuda.is_available()
    tasks = tuple(args.tasks or (("in_context_recall", "compression") if args.quick else TASKS))
    mixers = tuple(args.mixers or (("kla", "kla_p0") if args.quick else DEFAULT_MIXERS))
    extra = {}
    if args.quick:
        args.steps, args.d_model, args.d_state, args.batch_size, args.max_seconds = 4, 16, 4, 8, 60.0
        args.attention_heads = args.gla_heads = args.gdn_heads = 2
        args.warmup, args.eval_every, args.target_acc = 1, 2, None
        extra = {"n_train": 64, "n_test": 16}
    kill_after = args.kill_after if args.kill_after is not None else args.max_seconds + 300
    warm = cuda if args.warm is None else args.warm
    work = Path(args.workdir or tempfile.mkdtemp(prefix="kla_mad_"))
    work.mkdir(parents=True, exist_ok=True)
    out = Path(args.out) if args.out else (work / "kla_mad_quick.json" if args.quick
                                           else HERE / "results" / "kla_mad.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    grid = [(lr, wd) for lr in args.lr for wd in args.weight_decay]
    common = dict(layers=1, d_model=args.d_model, batch_size=args.batch_size, lr=args.lr[0],
                  weight_decay=args.weight_decay[0], warmup=args.warmup, steps=args.steps, eval_every=args.eval_every,
                  target_acc=args.target_acc, max_seconds=args.max_seconds, dtype=args.dtype, **extra)

    from bayesfilt.nn.tasks import mad_task
    task_settings = {}
    for t in tasks:
        length = QUICK_LENGTH[t] if args.quick else None
        task = mad_task(t, n_train=1, n_test=1, length=length)
        s = {k: v for k, v in task.settings.items() if k not in ("name", "seed", "n_train", "n_test")}
        s.update(vocab_size=task.vocab_size, readout=task.readout,          # sizes: mad_task's defaults
                 n_train=extra.get("n_train", 256 if t == "memorization" else 12_800),
                 n_test=extra.get("n_test", 256 if t == "memorization" else 1_280))
        task_settings[t] = s

    skipped, jobs = [], []
    for t in tasks:
        for m in mixers:
            reason = unavailable(m, cuda)
            for seed, (lr, wd) in itertools.product(args.seeds, grid):
                base = {"task": t, "mixer": m, "seed": seed, "lr": lr, "weight_decay": wd}
                if reason:
                    skipped.append({**base, "status": "skipped", "reason": reason})
                    continue
                name = f"{t}-{m}-{seed}" + (f"-lr{lr:g}-wd{wd:g}" if len(grid) > 1 else "")
                flags = dict(common, **mixer_flags(m, args), seed=seed, lr=lr, weight_decay=wd,
                             length=QUICK_LENGTH[t] if args.quick else None)
                jobs.append({**base, "out": work / name, "log": work / f"{name}.log",
                             "cmd": train_command(t, work / name, **flags)})
    record = {"benchmark": "kla_mad", **torch_record(), "git_commit": git_state()[0], "quick": args.quick,
              "settings": {"layers": 1, "d_model": args.d_model, "kla_d_state": args.d_state, "kla_expand": 2,
                           "kla_p_init_rule": args.p_init_rule or "constant", "kla_lambda_v_init": args.lambda_v_init,
                           "heads": {"attention": args.attention_heads, "gla": args.gla_heads,
                                     "gdn": args.gdn_heads},
                           "gla_kernel": args.gla_kernel,
                           "batch_size": args.batch_size, "lr": args.lr, "weight_decay": args.weight_decay,
                           "grid": "each (task, mixer, seed) runs every lr x weight_decay pair; the summary "
                                   "takes its best run (MAD's protocol)" if len(grid) > 1 else None,
                           "warmup": args.warmup, "max_steps": args.steps, "eval_every": args.eval_every,
                           "target_acc": args.target_acc, "dtype": args.dtype, "seeds": args.seeds,
                           "max_seconds_per_run": args.max_seconds, "kill_after_s": kill_after,
                           "concurrency": args.concurrency or len(jobs), "runs": len(jobs),
                           "omp_num_threads_per_run": 1, "tasks": task_settings},
              "state_size": {m: state_size(m, args, length=None) for m in mixers},
              "score": "test token accuracy over the labelled positions (eval_acc; MAD's own score is mad_accuracy). A run's "
                       "'accuracy' is its best evaluation, 'final_accuracy' its last (fractions); the summary "
                       "is the mean of 'accuracy' over seeds, in %",
              "notes": ["Matched state size (numbers carried from token to token, per sequence and block): "
                        + "; ".join(f"{m}: {state_size(m, args)['state'] or 'grows with L'} = "
                                    f"{state_size(m, args)['what']}" for m in ALL_MIXERS) + ".",
                        "GLA: fla GatedLinearAttention keeps (d_model/2) x d_model / H numbers (expand_k 0.5, "
                        "expand_v 1); the CLI sets only H, and H = 2 equals KLA's posterior means at d_model 128, "
                        "S = 16 (H = 1 would equal means + precisions). GDN (only with --mixers gdn): "
                        "2 d_model^2 / H, 4,096 at H = 8. Attention: its KV cache grows with L and does not "
                        "depend on the heads (4, d_head 32: the CLI default), so it cannot be matched.",
                        "kla_p0: --no-process-noise (p = 0), the paper's ablation.",
                        "Each run is cut at max_seconds of training (evaluated then); the cosine learning-rate "
                        "schedule is laid out over max_steps, so a run cut early stops high in it."],
              "warm": None, "wall_s": None, "runs": skipped, "summary": None}
    t0 = time.time()

    def save(rows):
        record["runs"] = sorted(rows + skipped, key=lambda r: (TASKS.index(r["task"]), ALL_MIXERS.index(r["mixer"]),
                                                                 r["seed"], r["lr"], r["weight_decay"]))
        record["summary"] = summarize([r for r in rows if r.get("accuracy") is not None], tasks, mixers)
        record["wall_s"] = round(time.time() - t0, 1)
        out.write_text(json.dumps(record, indent=1))

    for row in skipped:
        print(json.dumps(row), flush=True)
    if warm and jobs:
        families = sorted({"kla" if j["mixer"] in ("kla", "kla_p0") else j["mixer"] for j in jobs}
                          & {"kla", "gla", "gdn"})
        # KLA's kernels do not specialise on B or L (and L < 512 is never split into chunks): one run
        # compiles them all. fla's GLA switches kernels at L = 64 (fused_recurrent below, chunk above):
        # one run at L = 32 and one at L = 128 for gla and gdn.
        wjobs = [{"family": f, "length": n, "log": work / f"warm-{f}-{n}.log",
                  "cmd": train_command("in_context_recall", work / f"warm-{f}-{n}",
                                       **dict(common, **mixer_flags(f, args), length=n, n_train=args.batch_size,
                                              n_test=64, steps=2, eval_every=2, warmup=1, max_seconds=None,
                                              target_acc=None))}
                 for f in families for n in ((128,) if f == "kla" else (32, 128))]
        print(f"warming the Triton caches: {families}", flush=True)
        tw = time.time()
        done = run_processes(wjobs, kill_after=600)
        record["warm"] = {"wall_s": round(time.time() - tw, 1),
                          "runs": [{"family": d["family"], "length": d["length"], "rc": d["rc"], "wall_s": d["wall_s"],
                                    "killed": d["killed"]} for d in done]}
        print(json.dumps(record["warm"]), flush=True)
    finished = []

    def on_done(job):
        row = {k: job[k] for k in ("task", "mixer", "seed", "lr", "weight_decay")}
        row.update(rc=job["rc"], wall_s=job["wall_s"], status="killed" if job["killed"] else "no result")
        run = read_run(job["out"], job["log"])
        row.update(_score(run))
        ts = task_settings[job["task"]]                                 # recall rows hold L - 1 positions
        row["state_size"] = state_size(job["mixer"], args, ts.get("row_length", ts["length"]))["state"]
        if run["result"] is None:
            row["log_tail"] = run["log_tail"]
        row["command"] = " ".join(job["cmd"][1:])
        finished.append(row)
        save(finished)
        print(json.dumps({k: v for k, v in row.items() if k not in ("curve", "log_tail", "command")}), flush=True)

    print(f"{len(jobs)} runs, {args.concurrency or len(jobs)} at once, {args.max_seconds:g} s each; logs in {work}",
          flush=True)
    run_processes(jobs, concurrency=args.concurrency, kill_after=kill_after, on_done=on_done)
    save(finished)
    print(format_table(record["summary"], tasks, mixers))
    print("wrote", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
