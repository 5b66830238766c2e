"""A5 word problem on the CPU: test accuracy per position while a small model trains (docs/notes_a5.md).

The model (``bayesfilt.nn.train.TaskModel``), optimiser (AdamW, betas 0.9/0.95, weight decay on
the matrices ``bayesfilt.nn.train.decayed`` picks, KLA's log_a and p_raw among them unless
``--no-decay-dynamics``; ``make_optimizer``), warm-up + cosine schedule (``lr_at``) and gradient clip are those of ``bayesfilt
train``; what differs: ``--fresh`` draws new random words every step (no fixed training set),
and every evaluation prints the test accuracy of each position, the last position and whole
words (sequence accuracy, Merrill et al.'s score) as one JSON line; the run stops at sequence
accuracy 0.99 or ``--max-seconds``. ``--save``/``--load`` continue a run (model, optimiser,
step, data stream). A diagnostic, not a benchmark: no peers, nothing written to results/.

Usage::

    python benchmarks/a5_probe.py --length 3 --d-model 64 --d-state 8 --batch 128 --lr 5e-3 --fresh \
        --steps 6000 --eval-every 500 --max-seconds 540
"""

import argparse
import json
import time

import numpy as np
import torch

from bayesfilt.nn.tasks import make_task, multiplication_table
from bayesfilt.nn.train import TaskModel, TrainConfig, lr_at, make_optimizer

ap = argparse.ArgumentParser()
ap.add_argument("--length", type=int, default=4)
ap.add_argument("--mixer", default="kla")
ap.add_argument("--layers", type=int, default=1)
ap.add_argument("--d-model", type=int, default=64)
ap.add_argument("--d-state", type=int, default=16)
ap.add_argument("--batch", type=int, default=256)
ap.add_argument("--lr", type=float, default=2e-3)
ap.add_argument("--wd", type=float, default=0.1)
ap.add_argument("--steps", type=int, default=2000)
ap.add_argument("--warmup", type=int, default=100)
ap.add_argument("--n-train", type=int, default=200000)
ap.add_argument("--fresh", action="store_true", help="fresh random words every step (infinite data)")
ap.add_argument("--curriculum", default="", help="comma list of lengths trained in turn, e.g. 2,3,4 (fresh data)")
ap.add_argument("--eval-every", type=int, default=250)
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--max-seconds", type=float, default=540)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--const-lr", action="store_true")
ap.add_argument("--backend", default="reference")
ap.add_argument("--save", default="")
ap.add_argument("--load", default="")
ap.add_argument("--a0", type=float, default=None, help="start every KLA lane at this a (default: the layer's init)")
ap.add_argument("--p0", type=float, default=None, help="start every KLA lane at this p (default: the layer's, 0.01)")
ap.add_argument("--no-decay-dynamics", action="store_true",
                help="leave KLA's log_a and p_raw out of weight decay (TrainConfig.decay_dynamics=False; docs/notes_a5.md 5.7)")
a = ap.parse_args()
torch.set_num_threads(a.threads)
L = a.length
cfg = TrainConfig(task="a5", length=L, mixer=a.mixer, layers=a.layers, d_model=a.d_model, d_state=a.d_state,
                  steps=a.steps, batch_size=a.batch, lr=a.lr, warmup=a.warmup, weight_decay=a.wd, backend=a.backend,
                  decay_dynamics=not a.no_decay_dynamics)
task = make_task("a5", length=L, n_train=a.n_train if not a.fresh else 8, n_test=2000, seed=a.seed)
torch.manual_seed(a.seed)
model = TaskModel(cfg, task)
with torch.no_grad():                                  # --a0 / --p0: every lane's a and p at the start
    for n, prm in model.named_parameters():
        if n.endswith("log_a") and a.a0 is not None:
            prm.fill_(np.log(a.a0))
        if n.endswith("p_raw") and a.p0 is not None:
            prm.fill_(np.log(np.expm1(a.p0)))           # softplus^-1(p0)
opt = make_optimizer(model, cfg)
rng = np.random.default_rng(1000 + a.seed)
T = multiplication_table("a5")
def fresh(n, length):
    x = rng.integers(0, 60, size=(n, length)); y = np.empty_like(x); y[:, 0] = x[:, 0]
    for t in range(1, length): y[:, t] = T[x[:, t], y[:, t - 1]]
    return x, y
cur = [int(c) for c in a.curriculum.split(",")] if a.curriculum else []
Xte, Yte = torch.from_numpy(task.test.inputs), torch.from_numpy(task.test.targets)
@torch.no_grad()
def evaluate():
    model.eval(); _, lg = model.loss_and_logits(Xte, Yte); model.train()
    ok = (lg.argmax(-1) == Yte)
    return dict(pos=[round(v, 3) for v in ok.float().mean(0).tolist()], tok=round(ok.float().mean().item(), 4),
                last=round(ok[:, -1].float().mean().item(), 4), seq=round(ok.all(-1).float().mean().item(), 4))
t0 = time.time(); hist = []
start = 0
if a.load:
    ck = torch.load(a.load, weights_only=True); model.load_state_dict(ck["model"]); opt.load_state_dict(ck["opt"])
    start = ck["step"]; rng.bit_generator.state = ck["rng"]
for step in range(start, a.steps):
    if cur:
        length = cur[min(len(cur) - 1, step * len(cur) // a.steps)]
        x, y = fresh(a.batch, length)
    elif a.fresh:
        x, y = fresh(a.batch, L)
    else:
        idx = rng.integers(0, len(task.train), a.batch); x, y = task.train.inputs[idx], task.train.targets[idx]
    lr = a.lr if a.const_lr and step >= a.warmup else lr_at(cfg, step)
    for g in opt.param_groups: g["lr"] = lr
    loss, _ = model.loss_and_logits(torch.from_numpy(x), torch.from_numpy(y))
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step()
    if (step + 1) % a.eval_every == 0 or step + 1 == a.steps or time.time() - t0 > a.max_seconds:
        ev = evaluate(); ev.update(step=step + 1, loss=round(float(loss.detach()), 4), s=round(time.time() - t0, 1))
        with torch.no_grad():                          # where KLA's a and p have moved (mean over lanes)
            prm = dict(model.named_parameters())
            ev.update({k: round(float(f(v).mean()), 4) for n, v in prm.items()
                       for k, suffix, f in (("a_mean", "log_a", torch.exp), ("p_mean", "p_raw", torch.nn.functional.softplus))
                       if n.endswith(suffix)})
        hist.append(ev); print(json.dumps(ev), flush=True)
        if ev["seq"] >= 0.99 or time.time() - t0 > a.max_seconds: break
if a.save:
    torch.save(dict(model=model.state_dict(), opt=opt.state_dict(), step=step + 1, rng=rng.bit_generator.state), a.save)
print("FINAL", json.dumps(dict(args=vars(a), final=hist[-1], best_last=max(h["last"] for h in hist),
      best_seq=max(h["seq"] for h in hist), params=sum(p.numel() for p in model.parameters()), wall=round(time.time()-t0,1))))
