"""A5 word problem: which depth of KLA (and of the attention baseline) reaches 90% at which length.

A time-boxed sweep for the GPU: every (mixer, layers, length) run is one ``bayesfilt train a5``
process; they run concurrently on one GPU (the models are tiny) with the same wall-clock budget
each. The score is the test accuracy of the last position (the product of the whole word);
token accuracy over all positions is reported too. The paper (arXiv 2602.10743) reports KLA
solving A5 (>= 90%, best of 5 seeds) with 1 block up to length 8 and 2 blocks up to length 20.

Usage::

    python benchmarks/kla_a5.py --out benchmarks/results/kla_a5.json --max-seconds 150
    python benchmarks/kla_a5.py --quick          # CPU smoke run: two tiny runs of a few steps
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
from _common import git_state, read_run, run_processes, torch_record, train_command  # noqa: E402

DEFAULT_RUNS = ([("kla", 1, L) for L in (4, 6, 8, 10, 12)] + [("kla", 2, L) for L in (8, 12, 16, 20)]
                + [("attention", 1, 8), ("attention", 2, 8), ("attention", 4, 8)])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None)
    ap.add_argument("--max-seconds", type=float, default=150.0, help="training time per run")
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args(argv)
    runs = DEFAULT_RUNS
    extra = []
    if args.quick:
        runs = [("kla", 1, 4), ("attention", 1, 4)]
        args.steps, args.d_model, args.batch_size, args.max_seconds = 4, 16, 8, 60
        extra = ["--n-train", "64", "--n-test", "16", "--d-state", "4", "--heads", "2", "--warmup", "1",
                 "--eval-every", "2"]
    else:
        extra = ["--n-train", "200000", "--n-test", "2000", "--warmup", "200", "--eval-every", "250",
                 "--target-acc", "0.99"]
    work = Path(args.workdir or tempfile.mkdtemp(prefix="kla_a5_"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    jobs = []
    for mixer, layers, length in runs:
        name = f"{mixer}-{layers}-{length}"
        jobs.append(dict(mixer=mixer, layers=layers, length=length, out=work / name, log=work / f"{name}.log",
                         cmd=train_command("a5", work / name, mixer=mixer, layers=layers, length=length,
                                           d_model=args.d_model, batch_size=args.batch_size, lr=args.lr,
                                           steps=args.steps, seed=args.seed, max_seconds=args.max_seconds)
                         + extra))
    results = []
    for job in run_processes(jobs):
        row = {"mixer": job["mixer"], "layers": job["layers"], "length": job["length"], "rc": job["rc"]}
        run = read_run(job["out"], job["log"])
        r = run["result"]
        if r is not None:
            evals = [h for h in run["history"] if "eval_acc" in h]
            row.update(status=r["status"], steps=r["step"], best_token_acc=r["best_eval_acc"],
                       best_last_acc=r.get("best_eval_last_acc"), parameters=r["parameters"],
                       solved_90=bool((r.get("best_eval_last_acc") or 0) >= 0.9),
                       curve=[(h["step"], round(h["eval_acc"], 4), round(h.get("eval_last_acc", -1), 4))
                              for h in evals])
        else:
            row["log_tail"] = run["log_tail"]
        results.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "curve"}), flush=True)
    record = {"benchmark": "kla_a5", "seed": args.seed, "seeds": 1, "d_model": args.d_model,
              "batch_size": args.batch_size, "lr": args.lr, "max_seconds_per_run": args.max_seconds,
              "max_steps": args.steps, "concurrent_runs": len(runs), "wall_s": time.time() - t0,
              **torch_record(), "git_commit": git_state()[0],
              "score": "test accuracy at the last position (product of the whole word); >= 0.9 counts as solved",
              "paper": "KLA: 1 block up to length 8, 2 blocks up to 20 (best of 5 seeds)", "runs": results}
    out = Path(args.out) if args.out else HERE / "results" / ("kla_a5_quick.json" if args.quick else "kla_a5.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1))
    print("wrote", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
