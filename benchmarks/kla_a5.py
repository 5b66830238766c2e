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
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import git_state  # noqa: E402

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
    procs = []
    t0 = time.time()
    for mixer, layers, length in runs:
        out = work / f"{mixer}-{layers}-{length}"
        cmd = [sys.executable, "-m", "bayesfilt", "train", "a5", "--mixer", mixer, "--layers", str(layers),
               "--length", str(length), "--d-model", str(args.d_model), "--batch-size", str(args.batch_size),
               "--lr", str(args.lr), "--steps", str(args.steps), "--seed", str(args.seed),
               "--max-seconds", str(args.max_seconds), "--out", str(out), "--force", "--no-progress"] + extra
        env = dict(os.environ, OMP_NUM_THREADS="1")
        log = open(work / f"{mixer}-{layers}-{length}.log", "w")
        procs.append(((mixer, layers, length), out, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                                                     env=env)))
    results = []
    for (mixer, layers, length), out, p in procs:
        rc = p.wait()
        row = {"mixer": mixer, "layers": layers, "length": length, "rc": rc}
        if (out / "result.json").exists():
            r = json.loads((out / "result.json").read_text())
            hist = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
            evals = [h for h in hist if "eval_acc" in h]
            row.update(status=r["status"], steps=r["step"], best_token_acc=r["best_eval_acc"],
                       best_last_acc=r.get("best_eval_last_acc"), parameters=r["parameters"],
                       solved_90=bool((r.get("best_eval_last_acc") or 0) >= 0.9),
                       curve=[(h["step"], round(h["eval_acc"], 4), round(h.get("eval_last_acc", -1), 4))
                              for h in evals])
        else:
            row["log_tail"] = (work / f"{mixer}-{layers}-{length}.log").read_text()[-1500:]
        results.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "curve"}), flush=True)
    import torch
    record = {"benchmark": "kla_a5", "seed": args.seed, "seeds": 1, "d_model": args.d_model,
              "batch_size": args.batch_size, "lr": args.lr, "max_seconds_per_run": args.max_seconds,
              "max_steps": args.steps, "concurrent_runs": len(runs), "wall_s": time.time() - t0,
              "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
              "machine": platform.node(), "torch": torch.__version__, "git_commit": git_state()[0],
              "score": "test accuracy at the last position (product of the whole word); >= 0.9 counts as solved",
              "paper": "KLA: 1 block up to length 8, 2 blocks up to 20 (best of 5 seeds)", "runs": results}
    out = Path(args.out) if args.out else HERE / "results" / ("kla_a5_quick.json" if args.quick else "kla_a5.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1))
    print("wrote", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
