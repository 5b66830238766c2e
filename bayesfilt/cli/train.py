"""``bayesfilt train TASK``: train a KLA (or baseline) model on a synthetic task (see :mod:`bayesfilt.nn.train`)."""

from __future__ import annotations

import json


def register(sub) -> None:
    """Add the ``train`` subcommand."""
    p = sub.add_parser("train", help="train a KLA or baseline model on A5/S5 or a MAD task",
                       description="Train a model on a synthetic task; writes config.json, metrics.jsonl, "
                                   "checkpoint.pt and result.json into --out (never overwritten without --force).")
    p.add_argument("task", help="a5, s5, in_context_recall, fuzzy_recall, noisy_recall, selective_copy, "
                                "compression, memorization, or lm (characters of the King James Bible; docs/lm.md)")
    p.add_argument("--mixer", default="kla", help="kla, attention, gla, gla_recurrent, gdn (these three need the 'fla' extra) or hybrid "
                                           "(attention, the last block KLA)")
    p.add_argument("--layers", type=int, default=1, help="number of blocks (default: %(default)s)")
    p.add_argument("--d-model", type=int, default=128, help="width (default: %(default)s)")
    p.add_argument("--d-state", type=int, default=16, help="KLA state size S (default: %(default)s)")
    p.add_argument("--expand", type=int, default=2, help="KLA d_inner / d_model (default: %(default)s)")
    p.add_argument("--heads", type=int, default=4, help="heads of attention/GLA/GDN (default: %(default)s)")
    p.add_argument("--no-process-noise", action="store_true", help="fix KLA's process noise p = 0 (ablation)")
    p.add_argument("--a-init", default="s4d-real", choices=("s4d-real", "constant"),
                   help="KLA decay-rate init: s4d-real (a_s = s + 1, default) or constant (a = 1 in every lane, "
                        "as in the authors' released code)")
    p.add_argument("--p-init", type=float, default=0.01,
                   help="KLA's initial process noise p (default: %(default)s, the paper's)")
    p.add_argument("--p-init-rule", default="constant", choices=("constant", "3a-dt"),
                   help="KLA's initial p: constant (--p-init in every lane, default) or 3a-dt (p = 3·a·Δ per lane, "
                        "the authors' newer code; docs/notes_a5.md 5.12)")
    p.add_argument("--lambda-v-init", type=float, default=None,
                   help="KLA's initial value precision, the same for every token (zero weights, a bias; the authors' "
                        "newer code uses d_state); default: input-dependent from the start")
    p.add_argument("--conv-kernel", type=int, default=4,
                   help="KLA's causal convolution width (default: %(default)s; 1: no mixing outside the scan)")
    p.add_argument("--dt-per-state", action="store_true",
                   help="KLA learns one step Δ per lane (channel, state) instead of one per channel (the shape "
                        "of the authors' released code); other mixers ignore it")
    p.add_argument("--no-decay-dynamics", action="store_true",
                   help="leave KLA's a and p out of AdamW's weight decay (by default they are decayed with the "
                        "matrices, which pulls a towards 1 and p towards 0.69; docs/notes_a5.md 5.7)")
    p.add_argument("--bos", action="store_true",
                   help="word problems: a beginning-of-sequence token before every word (as Merrill et al.'s code; "
                        "attention needs it to tell the positions of a constant prefix apart)")
    p.add_argument("--posterior-samples", type=int, default=0, help="KLA+: loss averaged over K posterior samples")
    p.add_argument("--length", type=int, default=None, help="sequence length (default: the task's)")
    p.add_argument("--n-train", type=int, default=None, help="training sequences (default: the task's)")
    p.add_argument("--n-test", type=int, default=None, help="test sequences (default: the task's)")
    p.add_argument("--steps", type=int, default=2000, help="maximum optimiser steps (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=64, help="(default: %(default)s)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default: %(default)s)")
    p.add_argument("--weight-decay", type=float, default=0.1, help="(default: %(default)s)")
    p.add_argument("--warmup", type=int, default=100, help="warm-up steps (default: %(default)s)")
    p.add_argument("--grad-clip", type=float, default=1.0, help="gradient-norm clip (default: %(default)s)")
    p.add_argument("--eval-every", type=int, default=100, help="steps between evaluations (default: %(default)s)")
    p.add_argument("--eval-size", type=int, default=None, help="test sequences per evaluation (default: all)")
    p.add_argument("--target-acc", type=float, default=None, help="stop once test accuracy reaches this")
    p.add_argument("--patience", type=int, default=0, help="stop after this many evaluations without improvement")
    p.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    p.add_argument("--max-seconds", type=float, default=None, help="stop after this much training time (time-boxed runs)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"), help="bfloat16: autocast")
    p.add_argument("--backend", default="auto", help="kla_scan backend (default: %(default)s)")
    p.add_argument("--out", default=None, help="output folder (default: runs/TASK-MIXER-LAYERS-SEED)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--force", action="store_true", help="overwrite a run already in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--cache-dir", default=None, help="lm: token cache folder (default: $BAYESFILT_CACHE or ~/.cache/bayesfilt)")
    p.add_argument("--distributed", action="store_true",
                   help="train on every process of a torchrun launch (DDP; gloo on cpu, nccl on cuda); "
                        "--batch-size is the global batch (docs/distributed.md)")
    p.add_argument("--fsdp", action="store_true", help="with --distributed: shard with FSDP2 instead of DDP")
    p.add_argument("--grad-accum", type=int, default=1,
                   help="with --distributed: micro-batches per step on each process (default: %(default)s)")
    p.set_defaults(func=run)


def run(args) -> int:
    """Build the TrainConfig from the flags and train; prints the result record as JSON."""
    from ._deps import require_torch
    torch = require_torch()

    from ..nn.train import TrainConfig, train
    from ..errors import value_error
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise value_error("--device", f"is {device!r}", "pass cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise value_error("--device", f"is {device!r} but no CUDA device is available", "pass --device cpu")
    from ..nn.tasks import GROUPS
    if args.bos and args.task not in GROUPS:                 # the flag, not TrainConfig's field, is what to drop
        raise value_error("--bos", f"is for the word problems {GROUPS}, not task {args.task!r}", "drop --bos")
    cfg = TrainConfig(task=args.task, length=args.length, n_train=args.n_train, n_test=args.n_test,
                      mixer=args.mixer, layers=args.layers, d_model=args.d_model, d_state=args.d_state,
                      expand=args.expand, n_heads=args.heads, process_noise=not args.no_process_noise,
                      a_init=args.a_init, p_init=args.p_init, p_init_rule=args.p_init_rule,
                      lambda_v_init=args.lambda_v_init, conv_kernel=args.conv_kernel, dt_per_state=args.dt_per_state,
                      decay_dynamics=not args.no_decay_dynamics, bos=args.bos,
                      posterior_samples=args.posterior_samples,
                      steps=args.steps,
                      batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, warmup=args.warmup, grad_clip=args.grad_clip,
                      eval_every=args.eval_every, eval_size=args.eval_size, target_acc=args.target_acc,
                      patience=args.patience, seed=args.seed, device=device, dtype=args.dtype, backend=args.backend)
    out = args.out or f"runs/{args.task}-{args.mixer}-{args.layers}-{args.seed}"
    from ..nn.text import cli_task
    if args.distributed or args.fsdp or args.grad_accum != 1:
        from ..nn.distributed import run_cli                 # issue 9: torchrun / DDP / FSDP2
        return run_cli(args, cfg, out)
    res = train(cfg, out, resume=args.resume, force=args.force, progress=not args.no_progress,
                max_seconds=args.max_seconds, task=cli_task(cfg, args.cache_dir))
    print(json.dumps({k: v for k, v in res.items() if k != "config"}, sort_keys=True))
    from ..nn.train import raise_if_diverged
    raise_if_diverged(res)                                  # NaN/inf loss: a BayesfiltError, exit code 2
    return 0
