"""Distributed training throughput of a KLA language model: tokens/s per GPU and scaling efficiency.

Issue 9, item 3 (docs/distributed.md). For each GPU count N in ``--gpus`` and each engine in
``--engines`` (ddp, fsdp) the driver launches ``torchrun --standalone --nproc-per-node N`` on
this script in worker mode. Every worker trains the character-level "lm" task (the shipped
King James Bible) with exactly the code of ``bayesfilt train --distributed``
(:func:`bayesfilt.nn.distributed.wrap_model` and :func:`~bayesfilt.nn.distributed.train_step`):
weak scaling, a fixed per-GPU batch (global batch = N x ``--per-gpu-batch``), bf16 autocast,
``--warmup`` untimed steps, then ``--steps`` timed steps between ``torch.cuda.synchronize()``
calls. Reported per (engine, N): global tokens/s, tokens/s per GPU, peak GPU memory, and the
scaling efficiency ``tokens_per_s(N) / (N * tokens_per_s(1))`` against the same engine on one
GPU, measured in the same run (the peer). NVLink multicast stays off (NCCL_NVLS_ENABLE=0,
TORCH_SYMM_MEM_DISABLE_MULTICAST=1, NVSHMEM_DISABLE_NVLS=1 are set for every launch). The JSON
is rewritten after every measurement.

Run at 19e24c8 on the device tool's nvidia-h200-x2 (benchmarks/results/distributed_lm.json,
docs/distributed.md): DDP 94% and FSDP2 85% efficiency at 2 GPUs. Not run on more than 2 GPUs.

On a machine with 8 GPUs::

    python benchmarks/distributed_lm.py --gpus 1 2 4 8 --engines ddp fsdp \\
        --out benchmarks/results/distributed_lm.json

CPU smoke (checks that the script runs; writes to /tmp)::

    python benchmarks/distributed_lm.py --device cpu --gpus 1 2 --quick --out /tmp/distributed_lm_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from _common import git_state  # noqa: E402

MULTICAST_ENV = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--gpus", type=int, nargs="+", default=[1, 2, 4, 8], help="process counts to measure")
    p.add_argument("--engines", nargs="+", default=["ddp", "fsdp"], choices=("ddp", "fsdp"))
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--d-model", type=int, default=512)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--d-state", type=int, default=16)
    p.add_argument("--context", type=int, default=1024, help="sequence length L")
    p.add_argument("--per-gpu-batch", type=int, default=16)
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
    p.add_argument("--backend", default="auto", help="kla_scan backend")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps (compilation, allocator)")
    p.add_argument("--steps", type=int, default=20, help="timed steps")
    p.add_argument("--quick", action="store_true", help="tiny shapes for a CPU smoke run")
    p.add_argument("--cache-dir", default=None, help="lm token cache folder")
    p.add_argument("--timeout", type=float, default=580, help="seconds per launch")
    p.add_argument("--out", default=str(HERE / "results" / "distributed_lm.json"))
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--engine", default="ddp", help=argparse.SUPPRESS)
    p.add_argument("--worker-json", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.d_model, args.layers, args.d_state, args.context = 16, 1, 4, 32
        args.per_gpu_batch, args.warmup, args.steps, args.dtype = 4, 1, 3, "float32"
    return args


def worker(args) -> None:
    """One rank: train ``warmup + steps`` steps of the lm task and (rank 0) write the timing JSON."""
    import torch
    import torch.distributed as dist

    from bayesfilt.nn.distributed import (DistributedConfig, init_distributed, make_optimizer, train_step,
                                          wrap_model)
    from bayesfilt.nn.lm import count_parameters
    from bayesfilt.nn.text import lm_task
    from bayesfilt.nn.train import TaskModel, TrainConfig

    world = int(os.environ.get("WORLD_SIZE", "1"))
    total_steps = args.warmup + args.steps
    cfg = TrainConfig(task="lm", length=args.context, mixer="kla", layers=args.layers, d_model=args.d_model,
                      d_state=args.d_state, steps=total_steps, batch_size=args.per_gpu_batch * world,
                      warmup=1, eval_every=total_steps, device=args.device, dtype=args.dtype, backend=args.backend,
                      n_test=1)
    dcfg = DistributedConfig(fsdp=args.engine == "fsdp", grad_accum=args.grad_accum)
    rank, world, device, started = init_distributed(cfg)
    try:
        if rank == 0:
            task = lm_task(seed=0, length=cfg.length, n_train=cfg.n_train, n_test=1, cache_dir=args.cache_dir)
        dist.barrier()                                          # rank 0 builds the token cache once
        if rank != 0:
            task = lm_task(seed=0, length=cfg.length, n_train=cfg.n_train, n_test=1, cache_dir=args.cache_dir)
        torch.manual_seed(0)
        model = TaskModel(cfg, task).to(device)
        n_params = count_parameters(model)
        fwd = wrap_model(model, task, dcfg, device)
        opt = make_optimizer(model, cfg)

        def sync():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            dist.barrier()

        losses = []
        for step in range(args.warmup):
            losses.append(train_step(fwd, model, opt, task, cfg, dcfg, step, rank, world, device)["loss"])
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        sync()
        t0 = time.perf_counter()
        for step in range(args.warmup, total_steps):
            losses.append(train_step(fwd, model, opt, task, cfg, dcfg, step, rank, world, device)["loss"])
        sync()
        seconds = time.perf_counter() - t0
        mem = torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else None
        mems = [None] * world
        dist.all_gather_object(mems, mem)
        if rank == 0:
            tokens = cfg.batch_size * cfg.length * args.steps
            rec = {"engine": args.engine, "world_size": world, "global_batch": cfg.batch_size,
                   "per_gpu_batch": args.per_gpu_batch, "grad_accum": args.grad_accum, "context": cfg.length,
                   "timed_steps": args.steps, "seconds": seconds, "tokens_per_s": tokens / seconds,
                   "tokens_per_s_per_gpu": tokens / seconds / world, "step_ms": 1e3 * seconds / args.steps,
                   "peak_mem_gib_per_rank": mems, "parameters": n_params, "first_loss": losses[0],
                   "last_loss": losses[-1], "backend": dist.get_backend(),
                   "env": {k: os.environ.get(k) for k in MULTICAST_ENV}}
            Path(args.worker_json).write_text(json.dumps(rec))
    finally:
        if started:
            dist.barrier()
            dist.destroy_process_group()


def machine(device: str) -> dict:
    import torch

    info = {"host": socket.gethostname(), "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "cpu_count": os.cpu_count()}
    if device == "cuda" and torch.cuda.is_available():
        info.update(gpu=torch.cuda.get_device_name(0), gpu_count=torch.cuda.device_count(),
                    cuda=torch.version.cuda, nccl=".".join(map(str, torch.cuda.nccl.version())))
    return info


def driver(args) -> None:
    import torch

    if args.device == "cuda":
        have = torch.cuda.device_count()
        if not have:
            sys.exit("no CUDA device: pass --device cpu for the smoke mode")
        skipped = [n for n in args.gpus if n > have]
        args.gpus = [n for n in args.gpus if n <= have]
    else:
        skipped = []
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sha, dirty = git_state()
    res = {"benchmark": "distributed_lm", "what": "KLA LM training tokens/s per GPU and weak-scaling efficiency "
           "vs 1 GPU (same engine, same run)", "git_commit": sha, "git_dirty": dirty, "machine": machine(args.device),
           "settings": {k: v for k, v in vars(args).items() if k not in ("worker", "engine", "worker_json")},
           "skipped_gpu_counts": skipped, "runs": [], "failures": [], "complete": False}
    env = {**os.environ, **MULTICAST_ENV, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    passthrough = ["--device", args.device, "--d-model", str(args.d_model), "--layers", str(args.layers),
                   "--d-state", str(args.d_state), "--context", str(args.context), "--per-gpu-batch",
                   str(args.per_gpu_batch), "--grad-accum", str(args.grad_accum), "--dtype", args.dtype,
                   "--backend", args.backend, "--warmup", str(args.warmup), "--steps", str(args.steps)]
    if args.cache_dir:
        passthrough += ["--cache-dir", args.cache_dir]
    for engine in args.engines:
        for n in args.gpus:
            with tempfile.TemporaryDirectory() as tmp:
                wj = Path(tmp) / "rank0.json"
                cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(n),
                       str(Path(__file__).resolve()), "--worker", "--engine", engine, "--worker-json", str(wj),
                       *passthrough]
                print(f"{engine} x{n}: {' '.join(cmd[1:])}", flush=True)
                try:
                    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
                    ok = proc.returncode == 0 and wj.exists()
                    err = proc.stderr[-3000:]
                except subprocess.TimeoutExpired:
                    ok, err = False, f"timed out after {args.timeout} s"
                if ok:
                    rec = json.loads(wj.read_text())
                    base = next((r for r in res["runs"] if r["engine"] == engine and r["world_size"] == 1), None)
                    if base is not None:
                        rec["scaling_efficiency"] = rec["tokens_per_s"] / (n * base["tokens_per_s"])
                    res["runs"].append(rec)
                    print(f"  {rec['tokens_per_s_per_gpu']:.0f} tokens/s per GPU"
                          + (f", efficiency {rec['scaling_efficiency']:.3f}" if "scaling_efficiency" in rec else ""),
                          flush=True)
                else:
                    res["failures"].append({"engine": engine, "world_size": n, "stderr_tail": err})
                    print(f"  failed:\n{err}", flush=True)
            out.write_text(json.dumps(res, indent=1))
    res["complete"] = not res["failures"]
    out.write_text(json.dumps(res, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    a = parse()
    worker(a) if a.worker else driver(a)
