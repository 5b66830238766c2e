"""A5 word problem: which depth of KLA (and of the attention baseline) reaches 90% at which length.

A sweep for the GPU: every (mixer, layers, length, seed) run is one ``bayesfilt train a5``
process; they run concurrently on one GPU (the models are tiny), ``--concurrency`` at a time.

Score (docs/notes_a5.md): Merrill, Petty & Sabharwal (2024), whose setup the KLA paper's A5
figure compares against, train token tagging (a label at every position) and count a length
as solved when the held-out *sequence accuracy* (every position of the word right) reaches
0.9; their code stops a run at 0.99. ``solved_90`` here is that: best test sequence accuracy
>= 0.9 on words never seen in training. Token accuracy (all positions) and last-position
accuracy (the product of the whole word) are reported beside it; token accuracy is far too
lenient (positions 1-3 are easy), the last position is close to sequence accuracy.

Long runs: a device command may last 10 minutes. ``--kill-after S`` ends each child after S
seconds of wall time with its last checkpoint (written at every evaluation) intact; rerun the
same command with ``--resume`` (same ``--workdir``) to continue every unfinished run exactly
where it stopped (same learning-rate schedule, since ``--steps`` fixes it). Runs that reached
``--target-acc`` are finished and are not restarted.

Usage::

    python benchmarks/kla_a5.py --quick                       # CPU smoke run (two tiny runs)
    python benchmarks/kla_a5.py --runs kla:1:3-8 kla:2:8-20/4 --seeds 0,1 --steps 10000 \\
        --batch-size 1024 --n-train 2000000 --kill-after 540 --workdir /tmp/a5 --out benchmarks/results/kla_a5.json
    python benchmarks/kla_a5.py ... same arguments ... --resume  # next device command: continue
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_kla_init_args, git_state, read_run, run_processes, torch_record, train_command  # noqa: E402

#: The default sweep (docs/notes_a5.md): KLA 1 block at 3..10, 2 blocks at 8..20 every 4, attention 1/2/4 at 4 and 8.
DEFAULT_RUNS = ("kla:1:3-10", "kla:2:8-20/4", "attention:1:4,8", "attention:2:4,8", "attention:4:8")


def parse_runs(specs) -> list:
    """``MIXER:LAYERS:LENGTHS`` strings -> sorted unique ``(mixer, layers, length)`` tuples.

    LENGTHS is ``L``, ``A-B`` (every length A..B), ``A-B/K`` (A, A+K, ... up to B) or a comma
    list of those.

    Example:
        >>> parse_runs(["kla:1:3-5", "kla:2:8-16/4", "attention:4:8,12"])
        [('attention', 4, 8), ('attention', 4, 12), ('kla', 1, 3), ('kla', 1, 4), ('kla', 1, 5), ('kla', 2, 8), ('kla', 2, 12), ('kla', 2, 16)]
    """
    runs = set()
    for spec in specs:
        parts = str(spec).split(":")
        if len(parts) != 3:
            raise SystemExit(f"--runs: {spec!r} is not MIXER:LAYERS:LENGTHS (e.g. kla:1:3-8)")
        mixer, layers, lengths = parts
        try:
            n_layers = int(layers)
            for item in lengths.split(","):
                rng, _, step = item.partition("/")
                lo, _, hi = rng.partition("-")
                lo, hi, step = int(lo), int(hi or lo), int(step or 1)
                if n_layers < 1 or lo < 1 or hi < lo or step < 1:
                    raise ValueError
                runs.update((mixer, n_layers, L) for L in range(lo, hi + 1, step))
        except ValueError:
            raise SystemExit(f"--runs: {spec!r} has bad LAYERS or LENGTHS (positive ints: 1:3-8, 2:8-20/4)") from None
    return sorted(runs)


def run_row(job: dict, run: dict) -> dict:
    """One output row from a job and what its run left (:func:`_common.read_run`).

    Scores are the best over the run's evaluations: ``best_seq_acc`` (every position right, the
    score of Merrill et al.), ``best_last_acc`` (last position) and ``best_token_acc``.

    Example:
        >>> job = dict(mixer="kla", layers=1, length=4, seed=0, rc=0, killed=False)
        >>> hist = [{"step": 100, "eval_acc": 0.5, "eval_last_acc": 0.2, "eval_seq_acc": 0.1},
        ...         {"step": 200, "eval_acc": 0.99, "eval_last_acc": 0.97, "eval_seq_acc": 0.95}]
        >>> row = run_row(job, {"result": None, "history": hist})
        >>> row["best_seq_acc"], row["solved_90"], row["steps"], row["status"]
        (0.95, True, 200, 'unfinished')
    """
    row = {k: job[k] for k in ("mixer", "layers", "length", "seed")}
    row.update(rc=job.get("rc"), killed=job.get("killed", False))
    evals = [h for h in run["history"] if "eval_acc" in h]
    res = run["result"]
    if not evals:
        row.update(status=res["status"] if res else "no evaluation", solved_90=False, log_tail=run.get("log_tail", ""))
        return row
    best = lambda key: max(h.get(key, -1.0) for h in evals)  # noqa: E731
    row.update(status=res["status"] if res else "unfinished", steps=max(h["step"] for h in run["history"]),
               best_seq_acc=best("eval_seq_acc"), best_last_acc=best("eval_last_acc"), best_token_acc=best("eval_acc"),
               solved_90=best("eval_seq_acc") >= 0.9, solved_90_last_position=best("eval_last_acc") >= 0.9,
               curve=[(h["step"], round(h["eval_acc"], 4), round(h.get("eval_last_acc", -1), 4),
                       round(h.get("eval_seq_acc", -1), 4)) for h in evals])
    if res is not None:
        row["parameters"] = res["parameters"]
    return row


def prefix_seq_acc(run_dir, device: str | None = None, batch: int = 1024) -> list:
    """Test sequence accuracy of every prefix length 1..L of the run's final checkpoint.

    The model is causal and labels every position, so its first t outputs on a length-L word
    are its answers to the length-t word problem (a prefix of a uniform random word is one):
    entry t - 1 is the fraction of test words whose first t labels are all right, i.e. the
    length-t score of the same model. A run at L = 20 thus scores lengths 1..20 at once.
    Its test words are new at length L, not necessarily at shorter t (at t <= 4 some prefixes
    occur in training); dedicated runs at those lengths stay the reference.

    Returns:
        list of L floats (empty when the run left no checkpoint).
    """
    import torch

    from bayesfilt.nn.checkpoint import load_checkpoint
    from bayesfilt.nn.tasks import make_task
    from bayesfilt.nn.train import TaskModel, TrainConfig
    ck_path = Path(run_dir) / "checkpoint.pt"
    if not ck_path.exists():
        return []
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    ck = load_checkpoint(ck_path, map_location=dev)
    cfg = TrainConfig(**ck["config"])
    task = make_task(cfg.task, seed=cfg.seed, length=cfg.length, n_train=cfg.n_train, n_test=cfg.n_test,
                     bos=cfg.bos)
    model = TaskModel(cfg, task).to(dev)
    model.load_state_dict(ck["model"])
    model.eval()
    ok = []
    with torch.no_grad():
        for i in range(0, len(task.test), batch):
            x = torch.from_numpy(task.test.inputs[i:i + batch]).to(dev)
            y = torch.from_numpy(task.test.targets[i:i + batch]).to(dev)
            ok.append((model.lm(x).argmax(-1) == y)[:, int(cfg.bos):].cpu())   # a BOS position is unlabelled
    right = torch.cat(ok).cummin(dim=1).values                  # [N, L]: first t labels all right
    return [round(v, 4) for v in right.float().mean(0).tolist()]


def min_blocks(rows) -> dict:
    """``{mixer: {length: fewest layers with a solved seed, or None}}`` over the rows.

    Example:
        >>> rows = [dict(mixer="kla", layers=1, length=8, solved_90=False),
        ...         dict(mixer="kla", layers=2, length=8, solved_90=True),
        ...         dict(mixer="kla", layers=1, length=4, solved_90=True)]
        >>> min_blocks(rows)
        {'kla': {4: 1, 8: 2}}
    """
    out: dict = {}
    for r in rows:
        cell = out.setdefault(r["mixer"], {})
        best = cell.get(r["length"])
        if r["solved_90"] and (best is None or r["layers"] < best):
            cell[r["length"]] = r["layers"]
        else:
            cell.setdefault(r["length"], None)
    return {m: dict(sorted(c.items())) for m, c in sorted(out.items())}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None)
    ap.add_argument("--runs", nargs="+", default=None,
                    help=f"MIXER:LAYERS:LENGTHS, e.g. kla:1:3-8 (default: {' '.join(DEFAULT_RUNS)})")
    ap.add_argument("--seeds", default="0", help="comma list; the best seed counts (default: %(default)s)")
    ap.add_argument("--max-seconds", type=float, default=None, help="training time per run; ends it for good")
    ap.add_argument("--kill-after", type=float, default=None,
                    help="wall seconds per child in this command; the run stays resumable with --resume")
    ap.add_argument("--resume", action="store_true", help="continue the runs in --workdir")
    ap.add_argument("--concurrency", type=int, default=None, help="children at once (default: all)")
    ap.add_argument("--steps", type=int, default=10000, help="steps per run; also fixes the lr schedule")
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--n-train", type=int, default=2_000_000)
    ap.add_argument("--n-test", type=int, default=2000)
    ap.add_argument("--target-acc", type=float, default=0.999,
                    help="stop a run at this test token accuracy (0.999 at L<=20 implies sequence accuracy >= 0.98)")
    ap.add_argument("--dtype", default=None, help="float32 (default) or bfloat16")
    ap.add_argument("--a-init", default=None, choices=("s4d-real", "constant"),
                    help="KLA decay-rate init passed to every run (default: the CLI's, s4d-real; constant: a = 1, "
                         "the authors' code; docs/notes_a5.md section 5)")
    ap.add_argument("--conv-kernel", type=int, default=None,
                    help="KLA's causal convolution width passed to every run (default: the CLI's, 4; 1: the scan is "
                         "the only path between positions; docs/notes_a5.md section 5.6)")
    ap.add_argument("--p-init", type=float, default=None,
                    help="KLA's initial process noise passed to every run (default: the CLI's, 0.01)")
    add_kla_init_args(ap, ", passed to every run")
    ap.add_argument("--no-decay-dynamics", action="store_true",
                    help="every run leaves KLA's a and p out of weight decay (docs/notes_a5.md 5.7)")
    ap.add_argument("--dt-per-state", action="store_true",
                    help="every KLA run learns one step Δ per lane instead of per channel (the authors' code; "
                         "docs/notes_a5.md section 5.1)")
    ap.add_argument("--bos", action="store_true",
                    help="a beginning-of-sequence token before every word, unlabelled (Merrill et al.'s input format)")
    ap.add_argument("--prefix-scores", action="store_true",
                    help="also score every prefix length 1..L of each final checkpoint (prefix_seq_acc)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--workdir", default=None)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    runs = parse_runs(args.runs or (["kla:1:4", "attention:1:4"] if args.quick else DEFAULT_RUNS))
    seeds = [int(s) for s in str(args.seeds).split(",")]
    extra = []
    if args.quick:
        args.steps, args.d_model, args.batch_size, args.n_train, args.n_test = 4, 16, 8, 64, 16
        args.max_seconds, args.warmup, args.eval_every, args.target_acc = args.max_seconds or 60, 1, 2, None
        extra = ["--d-state", "4", "--heads", "2"]
    if args.a_init:
        extra = extra + ["--a-init", args.a_init]
    if args.conv_kernel is not None:
        extra = extra + ["--conv-kernel", str(args.conv_kernel)]
    if args.dt_per_state:
        extra = extra + ["--dt-per-state"]
    if args.p_init is not None:
        extra = extra + ["--p-init", str(args.p_init)]
    if args.p_init_rule:
        extra = extra + ["--p-init-rule", args.p_init_rule]
    if args.lambda_v_init is not None:
        extra = extra + ["--lambda-v-init", str(args.lambda_v_init)]
    if args.bos:
        extra = extra + ["--bos"]
    if args.no_decay_dynamics:
        extra = extra + ["--no-decay-dynamics"]
    if args.resume and args.workdir is None:
        raise SystemExit("--resume needs the --workdir of the runs to continue")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="kla_a5_"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    jobs = []
    for mixer, layers, length in runs:
        for seed in seeds:
            name = f"{mixer}-{layers}-{length}-s{seed}"
            out = work / name
            done = (out / "result.json").exists()
            if args.resume and done:                   # finished earlier: keep it, do not rerun
                jobs.append(dict(mixer=mixer, layers=layers, length=length, seed=seed, out=out, log=work / f"{name}.log",
                                 skip=True))
                continue
            cmd = train_command("a5", out, mixer=mixer, layers=layers, length=length, d_model=args.d_model,
                                batch_size=args.batch_size, lr=args.lr, steps=args.steps, seed=seed,
                                max_seconds=args.max_seconds, n_train=args.n_train, n_test=args.n_test,
                                warmup=args.warmup, eval_every=args.eval_every, target_acc=args.target_acc,
                                dtype=args.dtype, resume=args.resume and (out / "checkpoint.pt").exists()) + extra
            jobs.append(dict(mixer=mixer, layers=layers, length=length, seed=seed, out=out,
                             log=work / (f"{name}.log" if not args.resume else f"{name}.resume{int(t0)}.log"), cmd=cmd))
    todo = [j for j in jobs if not j.get("skip")]
    finished = {id(j): j for j in run_processes(todo, concurrency=args.concurrency, kill_after=args.kill_after)}
    rows = []
    for job in todo:
        job.update({k: v for k, v in finished.get(id(job), {}).items() if k in ("rc", "killed", "wall_s")})
    for job in jobs:
        row = run_row(dict(job, rc=job.get("rc", 0)), read_run(job["out"], job["log"] if not job.get("skip") else None))
        if args.prefix_scores:
            row["prefix_seq_acc"] = prefix_seq_acc(job["out"], "cpu" if args.quick else None)
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "curve"}), flush=True)
    record = {"benchmark": "kla_a5", "seeds": seeds, "d_model": args.d_model, "batch_size": args.batch_size,
              "lr": args.lr, "steps": args.steps, "warmup": args.warmup, "n_train": args.n_train,
              "n_test": args.n_test, "target_acc": args.target_acc, "a_init": args.a_init or "s4d-real", "bos": args.bos,
              "conv_kernel": args.conv_kernel or 4, "dt_per_state": args.dt_per_state,
              "p_init": 0.01 if args.p_init is None else args.p_init, "decay_dynamics": not args.no_decay_dynamics,
              "p_init_rule": args.p_init_rule or "constant", "lambda_v_init": args.lambda_v_init,
              "max_seconds_per_run": args.max_seconds,
              "kill_after": args.kill_after, "resumed": args.resume, "concurrency": args.concurrency or len(todo),
              "wall_s": time.time() - t0, **torch_record(), "git_commit": git_state()[0],
              "score": "best test sequence accuracy (every position right, words unseen in training) >= 0.9 "
                       "(Merrill et al. 2024); last-position and token accuracy beside it",
              "paper": "KLA: 1 block up to length 8, 2 blocks up to 20 (best of 5 seeds)",
              "min_blocks_solved": min_blocks(rows), "runs": rows}
    out = Path(args.out) if args.out else HERE / "results" / ("kla_a5_quick.json" if args.quick else "kla_a5.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1))
    print("min blocks solved:", json.dumps(record["min_blocks_solved"]))
    print("wrote", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
