"""Train a tiny KLA model on selective copy (CPU, about a minute) and plot its posterior variance.

The task (MAD suite; here shortened to length 48 with 16 tokens to copy): data tokens are
scattered among blanks; after a copy marker the model must emit them in order. The plot shows the
layer's mean posterior variance over positions, with the data tokens marked: the paper
(arXiv 2602.10743) shows it decaying as evidence accumulates and spiking at the tokens to copy.

    python examples/kla_train_tiny.py --steps 150 --out kla_tiny
"""

import argparse
from pathlib import Path

import numpy as np
import torch

from bayesfilt.nn.train import TaskModel, TrainConfig, train
from bayesfilt.nn.tasks import make_task
from bayesfilt.plot import posterior_variance


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--out", default="kla_tiny")
    args = ap.parse_args()
    torch.set_num_threads(1)
    # backend "reference" (the sequential loop) is the fastest on a CPU at these small shapes
    cfg = TrainConfig(task="selective_copy", length=48, n_train=4096, n_test=128, layers=1, d_model=32, d_state=8,
                      steps=args.steps, batch_size=16, lr=5e-3, warmup=20, eval_every=max(1, args.steps // 4),
                      backend="reference")
    out = Path(args.out)
    res = train(cfg, out, force=True, progress=False)
    print(f"status {res['status']}, step {res['step']}, best test accuracy {res['best_eval_acc']:.3f}")

    task = make_task(cfg.task, seed=cfg.seed, length=cfg.length, n_train=cfg.n_train, n_test=cfg.n_test)
    from bayesfilt.nn.checkpoint import load_checkpoint
    model = TaskModel(cfg, task)
    model.load_state_dict(load_checkpoint(out / "checkpoint.pt")["model"])
    x = torch.from_numpy(task.test.inputs[:1])
    with torch.no_grad():
        var = model.lm.posterior_variance(x, kind="filter")         # [layers, 1, L]: Σ_s q² / λ_t
    marks = np.flatnonzero((task.test.inputs[0] != 14) & (task.test.inputs[0] != 15))
    fig = posterior_variance(var, marks=marks, title="selective copy: KLA filter posterior variance (data tokens marked)")
    fig.savefig(out / "posterior_variance.png", dpi=120, bbox_inches="tight")
    print("wrote", out / "posterior_variance.png")


if __name__ == "__main__":
    main()
