"""Training on several processes (GPUs or CPU cores) with ``torch.distributed``: DDP or FSDP2.

One entry point, :func:`train_distributed`, the distributed twin of
:func:`bayesfilt.nn.train.train`; ``bayesfilt train ... --distributed`` calls it, launched by
``torchrun --nproc-per-node N`` (env:// rendezvous). Guide: docs/distributed.md.

What it guarantees:

* **Same global batch as one process.** At step t every rank computes
  ``batch_indices(seed, t, batch_size, n)`` (the single-process batch of
  :func:`bayesfilt.nn.train.batch_indices`) and takes its contiguous slice, cut into
  ``grad_accum`` micro-batches (:func:`rank_batches`). ``batch_size`` is the *global* batch.
* **Same loss and gradient as one process.** Each micro-batch's mean loss is weighted by its
  share of the labelled tokens of the whole global batch (one all-reduce of the counts per
  step), so the averaged gradient is the gradient of the single-process mean loss; the runs
  differ only by floating-point summation order (tests/test_distributed.py measures it).
* **Engines.** DistributedDataParallel by default; ``fsdp=True`` shards parameters, gradients
  and optimiser state with FSDP2 (``torch.distributed.fsdp.fully_shard``), one unit per mixer and
  per MLP of every block plus the root (embedding, norms, head). Gradient accumulation skips
  the gradient all-reduce on all but the last micro-batch (``no_sync`` /
  ``set_requires_gradient_sync``). ``dtype="bfloat16"`` is autocast, as on one process: the
  parameters, gradients, optimiser state and the KLA scan state stay float32.
* **Checkpoints: rank-0 full state, atomic.** ``checkpoint.pt`` has exactly the format of a
  single-process run (model ``state_dict`` and optimiser ``state_dict`` keyed by parameter
  index), gathered with ``torch.distributed.checkpoint.state_dict`` (``full_state_dict=True,
  cpu_offload=True``) and written by rank 0 with :func:`bayesfilt.nn.checkpoint.save_checkpoint`
  (temp file + fsync + rename). On resume rank 0 reads and verifies it and broadcasts it
  (``broadcast_from_rank0=True``), so only rank 0's node needs the folder. Because the format
  and the global batch do not depend on the world size, a run can be resumed on a different
  number of processes, with or without FSDP, or on one process without ``--distributed``.
* **Rank 0 writes everything** (config.json, metrics.jsonl, checkpoint.pt, result.json,
  distributed.json) and shows the progress bar; logged loss/accuracy are all-reduced over the
  global batch; evaluation is split across ranks and all-reduced.

Not bitwise equal to one process: KLA+ (``posterior_samples > 0``) draws its posterior noise
per (seed, step, rank, micro-batch) when there is more than one micro-batch, so its samples
differ from the single-process ones (same distribution).

NVLink multicast stays off: :func:`set_multicast_env` sets ``NCCL_NVLS_ENABLE=0``,
``TORCH_SYMM_MEM_DISABLE_MULTICAST=1`` and ``NVSHMEM_DISABLE_NVLS=1`` (each unless already set)
before the process group starts.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import BayesfiltError, type_error, value_error
from .checkpoint import atomic_write_bytes, load_checkpoint, save_checkpoint
from .train import (MAD_TEST_BATCH, TaskModel, TrainConfig, _accuracy, _add_block_counts, _add_block_nll,
                    _append_metrics, _autocast, _check_limits, _evaluate_when_due, _finish, _param_names, _prepare_out,
                    _Progress, _progress_bar, _stop_for_time, _write_metrics, batch_class_accuracy, batch_indices,
                    batch_perplexity, batch_stray_classes, class_accuracy, lr_at, make_optimizer, make_task,
                    nonfinite_message, raise_if_diverged)

#: Environment variables set (with ``os.environ.setdefault``) before the process group starts.
MULTICAST_ENV = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}
#: Rows per evaluation forward pass on each rank (as :func:`bayesfilt.nn.train.evaluate`).
EVAL_BATCH = 256


@dataclass(frozen=True)
class DistributedConfig:
    """How a run is spread over processes (saved as ``distributed.json``, with the world size).

    Attributes:
        fsdp: shard parameters, gradients and optimiser state with FSDP2 (default: DDP).
        grad_accum: micro-batches per optimiser step on each rank; the global batch
            ``batch_size`` must be divisible by ``world_size * grad_accum``.

    Example:
        >>> DistributedConfig(fsdp=True, grad_accum=2).grad_accum
        2
    """

    fsdp: bool = False
    grad_accum: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.fsdp, bool):
            raise type_error("fsdp", f"must be a bool, got {self.fsdp!r}", "pass True or False")
        if isinstance(self.grad_accum, bool) or not isinstance(self.grad_accum, int) or self.grad_accum < 1:
            raise value_error("grad_accum", f"must be a positive int, got {self.grad_accum!r}",
                              "pass --grad-accum >= 1")


def set_multicast_env(environ=None) -> dict:
    """Keep NVLink multicast off: set the variables of :data:`MULTICAST_ENV` unless already set.

    ``NCCL_NVLS_ENABLE=0``, ``TORCH_SYMM_MEM_DISABLE_MULTICAST=1``, ``NVSHMEM_DISABLE_NVLS=1``.

    Uses ``setdefault``: a value the launcher's environment already holds wins.

    Args:
        environ: the mapping to update (default: ``os.environ``).

    Returns:
        dict of the three variables' values now in ``environ``.

    Example:
        >>> env = {"NCCL_NVLS_ENABLE": "1"}
        >>> set_multicast_env(env)
        {'NCCL_NVLS_ENABLE': '1', 'TORCH_SYMM_MEM_DISABLE_MULTICAST': '1', 'NVSHMEM_DISABLE_NVLS': '1'}
    """
    environ = os.environ if environ is None else environ
    for k, v in MULTICAST_ENV.items():
        environ.setdefault(k, v)
    return {k: environ[k] for k in MULTICAST_ENV}


def rank_batches(seed: int, step: int, global_batch: int, n: int, rank: int, world_size: int,
                 grad_accum: int = 1) -> list[np.ndarray]:
    """The training indices rank ``rank`` uses at ``step``: its slice of the global batch, in micro-batches.

    The global batch is ``batch_indices(seed, step, global_batch, n)`` (the single-process
    batch); rank r takes rows ``[r b, (r + 1) b)`` with ``b = global_batch / world_size`` and
    cuts them into ``grad_accum`` consecutive micro-batches. Concatenating every rank's
    micro-batches in rank order gives the global batch back.

    Args:
        seed, step: as in :func:`bayesfilt.nn.train.batch_indices`.
        global_batch: sequences per optimiser step over all ranks (``TrainConfig.batch_size``).
        n: number of training sequences.
        rank, world_size: this process and the number of processes.
        grad_accum: micro-batches per step on each rank.

    Returns:
        list of ``grad_accum`` int64 arrays of ``global_batch / (world_size * grad_accum)`` indices.

    Example:
        >>> [b.tolist() for b in rank_batches(0, 0, 8, 100, 1, 2, grad_accum=2)] == \\
        ...     [b.tolist() for b in np.split(batch_indices(0, 0, 8, 100)[4:], 2)]
        True
    """
    for name, v, low in (("global_batch", global_batch, 1), ("n", n, 1), ("world_size", world_size, 1),
                         ("grad_accum", grad_accum, 1), ("rank", rank, 0), ("step", step, 0), ("seed", seed, 0)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
            raise value_error(name, f"must be an int >= {low}, got {v!r}", f"pass {name} >= {low}")
    if rank >= world_size:
        raise value_error("rank", f"is {rank} but world_size is {world_size}", "pass 0 <= rank < world_size")
    if global_batch % (world_size * grad_accum):
        raise value_error("batch_size", f"global batch {global_batch} is not divisible by world_size * grad_accum "
                          f"= {world_size} * {grad_accum}",
                          f"pass --batch-size a multiple of {world_size * grad_accum}, or change --grad-accum")
    per_rank = global_batch // world_size
    idx = batch_indices(seed, step, global_batch, n)[rank * per_rank:(rank + 1) * per_rank]
    return np.split(idx, grad_accum)


class _LossForward(nn.Module):
    """Routes ``loss_and_logits`` through ``forward`` so that DDP's hooks run."""

    def __init__(self, model: TaskModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x, y, posterior_samples, generator):
        return self.model.loss_and_logits(x, y, posterior_samples, generator)


def init_distributed(cfg: TrainConfig) -> tuple[int, int, torch.device, bool]:
    """Start the process group (or join one already started) for ``cfg.device``.

    Sets the NVLink multicast variables (:func:`set_multicast_env`) first. Under torchrun
    (``RANK``/``WORLD_SIZE`` in the environment) it uses env:// rendezvous; otherwise a world of
    one process. Backend NCCL on CUDA (this rank's device is ``cuda:LOCAL_RANK``), gloo on the CPU.

    Args:
        cfg: the run's :class:`~bayesfilt.nn.train.TrainConfig` (its device type is used).

    Returns:
        ``(rank, world_size, device, started)``; ``started``: this call created the group (the
        caller then destroys it with ``torch.distributed.destroy_process_group()``).

    Example:
        >>> import torch.distributed as dist
        >>> rank, world, device, started = init_distributed(TrainConfig(task="a5"))
        >>> (rank, world, device.type, started)
        (0, 1, 'cpu', True)
        >>> dist.destroy_process_group()
    """
    import torch.distributed as dist

    set_multicast_env()
    dev = torch.device(cfg.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise value_error("device", f"is {cfg.device!r} but no CUDA device is available", "pass --device cpu")
    started = False
    if dev.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    else:
        device = dev
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        kw = {"device_id": device} if device.type == "cuda" else {}
        if "RANK" in os.environ and "WORLD_SIZE" in os.environ:         # torchrun: env:// rendezvous
            dist.init_process_group(backend, **kw)
        else:                                                           # a world of one process
            dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1, **kw)
        started = True
    return dist.get_rank(), dist.get_world_size(), device, started


def _unused_parameters(model: TaskModel, task, device) -> bool:
    """Whether a training loss leaves some parameter without a gradient (DDP must then search for them)."""
    x = torch.from_numpy(task.train.inputs[:1]).to(device)
    y = torch.from_numpy(task.train.targets[:1]).to(device)
    loss, _ = model.loss_and_logits(x, y)
    loss.backward()
    unused = any(p.grad is None for p in model.parameters() if p.requires_grad)
    model.zero_grad(set_to_none=True)
    return unused


def _shard(model: TaskModel) -> None:
    """FSDP2: one unit per mixer and per MLP of every block, then the root (embedding, norms, head, decoder)."""
    from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

    for block in model.lm.blocks:
        fully_shard(block.mixer)
        fully_shard(block.mlp)
    fully_shard(model)
    register_fsdp_forward_method(model, "loss_and_logits")


def wrap_model(model: TaskModel, task, dcfg: DistributedConfig, device: torch.device):
    """Make ``model`` distributed in place and return the callable that computes ``(loss, logits)``.

    DDP: the model is wrapped (``find_unused_parameters`` only if a training loss leaves some
    parameter without a gradient, found by one trial backward on one sequence). FSDP2: the
    model is sharded in place (:func:`fully_shard` per mixer, per MLP and at the root) and
    ``loss_and_logits`` is registered as a forward method. Needs an initialised process group.

    Args:
        model: the :class:`~bayesfilt.nn.train.TaskModel`, on ``device``, same weights on every rank.
        task: the task (one training sequence is used to look for unused parameters).
        dcfg: :class:`DistributedConfig`.
        device: this rank's device.

    Returns:
        ``fwd(x, y, posterior_samples, generator) -> (loss, logits)``; for DDP it also has ``no_sync()``.

    Example:
        >>> import torch.distributed as dist
        >>> from bayesfilt.nn.tasks import make_task
        >>> cfg = TrainConfig(task="a5", length=4, n_train=16, n_test=8, d_model=8, d_state=2, batch_size=4)
        >>> task = make_task("a5", length=4, n_train=16, n_test=8)
        >>> rank, world, device, started = init_distributed(cfg)        # a world of one process
        >>> model = TaskModel(cfg, task)
        >>> fwd = wrap_model(model, task, DistributedConfig(), device)
        >>> opt = make_optimizer(model, cfg)
        >>> type(fwd).__name__
        'DistributedDataParallel'
        >>> del fwd, opt                      # free the DDP reducer while its process group is alive
        >>> dist.destroy_process_group()
    """
    if dcfg.fsdp:
        _shard(model)
        return model.loss_and_logits                    # registered with FSDP2 (register_fsdp_forward_method)
    find_unused = _unused_parameters(model, task, device)
    ddp_kw = {"device_ids": [device.index]} if device.type == "cuda" else {}
    return nn.parallel.DistributedDataParallel(_LossForward(model), find_unused_parameters=find_unused, **ddp_kw)


def train_step(fwd, model: TaskModel, opt, task, cfg: TrainConfig, dcfg: DistributedConfig, step: int, rank: int,
               world_size: int, device: torch.device) -> dict:
    """One optimiser step on every rank (collective): the global batch of ``step``, accumulated and reduced.

    Each rank runs its ``grad_accum`` micro-batches of :func:`rank_batches`; micro-batch j's
    mean loss is weighted by ``world_size * labelled_j / labelled_global`` so that the
    averaged gradient is that of the single-process mean loss. The gradient all-reduce runs
    on the last micro-batch only. Then clipping (global norm), the learning rate of ``step``
    and AdamW. Two host syncs per step (the global label count, the logged statistics).

    Args:
        fwd: from :func:`wrap_model`.
        model: the (wrapped in place or sharded) :class:`~bayesfilt.nn.train.TaskModel`.
        opt: its AdamW optimiser.
        task: the task.
        cfg: the run's config (batch_size is the global batch).
        dcfg: :class:`DistributedConfig`.
        step: the step index (0-based) being taken.
        rank, world_size: this process and the number of processes.
        device: this rank's device.

    Returns:
        the metrics record of the step (step, loss, acc, lr, grad_norm), equal on every rank. When
        the loss or the gradient norm is not finite the update is skipped (the training loop then
        ends the run as "diverged").

    Example:
        >>> import torch.distributed as dist
        >>> from bayesfilt.nn.tasks import make_task
        >>> cfg = TrainConfig(task="a5", length=4, n_train=16, n_test=8, d_model=8, d_state=2, batch_size=4)
        >>> task = make_task("a5", length=4, n_train=16, n_test=8)
        >>> rank, world, device, started = init_distributed(cfg)        # a world of one process
        >>> model = TaskModel(cfg, task)
        >>> fwd = wrap_model(model, task, DistributedConfig(), device)
        >>> opt = make_optimizer(model, cfg)
        >>> rec = train_step(fwd, model, opt, task, cfg, DistributedConfig(), 0, rank, world, device)
        >>> rec["step"], sorted(rec)
        (1, ['acc', 'grad_norm', 'loss', 'lr', 'step'])
        >>> del fwd, opt                      # free the DDP reducer while its process group is alive
        >>> dist.destroy_process_group()
    """
    import torch.distributed as dist

    A = dcfg.grad_accum
    micro = rank_batches(cfg.seed, step, cfg.batch_size, len(task.train), rank, world_size, A)
    ys_np = [task.train.targets[i] for i in micro]
    xs = [torch.from_numpy(task.train.inputs[i]).to(device, non_blocking=True) for i in micro]
    ys = [torch.from_numpy(y).to(device, non_blocking=True) for y in ys_np]
    counts = [int((y != -100).sum()) for y in ys_np]                   # on the host: no device sync
    total = torch.tensor([float(sum(counts))], dtype=torch.float64, device=device)
    dist.all_reduce(total)                                              # labelled tokens of the global batch
    total = max(float(total), 1.0)
    for g in opt.param_groups:
        g["lr"] = lr_at(cfg, step)
    opt.zero_grad(set_to_none=True)
    stats = torch.zeros(3, dtype=torch.float64, device=device)          # sum of loss * count, correct, labelled
    for a in range(A):
        gen = None
        if cfg.posterior_samples:
            seed = cfg.seed * 1_000_003 + step
            if world_size * A > 1:                                      # per (seed, step, rank, micro-batch)
                seed = ((seed * 65_537 + rank) * 257 + a) % (2 ** 63)
            gen = torch.Generator(device=device).manual_seed(seed)
        last = a == A - 1
        if dcfg.fsdp:
            model.set_requires_gradient_sync(last)
            ctx = contextlib.nullcontext()
        else:
            ctx = contextlib.nullcontext() if last else fwd.no_sync()
        with ctx:
            with _autocast(cfg, device):
                loss, logits = fwd(xs[a], ys[a], cfg.posterior_samples, gen)
            # (a micro-batch without labels has loss 0 and zero gradients: labelled_cross_entropy)
            (loss * (world_size * counts[a] / total)).backward()
        with torch.no_grad():
            mask = ys[a] != -100
            stats[0] += loss.detach().double() * counts[a]
            stats[1] += ((logits.argmax(-1) == ys[a]) & mask).sum()
            stats[2] += mask.sum()
    gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    if hasattr(gnorm, "full_tensor"):                                   # FSDP2: a replicated DTensor
        gnorm = gnorm.full_tensor()
    dist.all_reduce(stats)
    loss_sum, correct, labelled = stats.tolist()
    rec = {"step": step + 1, "loss": loss_sum / total, "acc": correct / max(labelled, 1.0),
           "lr": lr_at(cfg, step), "grad_norm": float(gnorm)}
    if nonfinite_message(rec["loss"], rec["grad_norm"], step + 1) is None:  # the same values on every rank
        opt.step()                                                          # never step on NaN/inf
    return rec


def optimizer_state_by_index(state: dict) -> dict:
    """An optimiser state dict keyed by parameter name (``torch.distributed.checkpoint``) -> keyed by index.

    The index of a parameter is its position in the optimiser's parameter groups, as in
    ``torch.optim.Optimizer.state_dict()``: the result is what a single-process run saves.

    Args:
        state: ``{"state": {name: {...}}, "param_groups": [{"params": [name, ...], ...}, ...]}``.

    Returns:
        the same dict with integer parameter keys.

    Example:
        >>> s = {"state": {"b": {"step": 1}}, "param_groups": [{"params": ["a"]}, {"params": ["b"]}]}
        >>> optimizer_state_by_index(s)
        {'state': {1: {'step': 1}}, 'param_groups': [{'params': [0]}, {'params': [1]}]}
    """
    names = [n for g in state["param_groups"] for n in g["params"]]
    index = {n: i for i, n in enumerate(names)}
    return {"state": {index[n]: v for n, v in state["state"].items()},
            "param_groups": [{**g, "params": [index[n] for n in g["params"]]} for g in state["param_groups"]]}


def optimizer_state_by_name(state: dict, names: list[str]) -> dict:
    """The inverse of :func:`optimizer_state_by_index`: ``names[i]`` is the name of parameter index i.

    Args:
        state: an optimiser state dict keyed by parameter index.
        names: every parameter's name, in the optimiser's order.

    Returns:
        the same dict keyed by parameter name.

    Example:
        >>> optimizer_state_by_name({"state": {1: {"step": 1}}, "param_groups": [{"params": [0, 1]}]}, ["a", "b"])
        {'state': {'b': {'step': 1}}, 'param_groups': [{'params': ['a', 'b']}]}
    """
    n_params = sum(len(g["params"]) for g in state["param_groups"])
    if n_params != len(names):
        raise value_error("checkpoint", f"holds optimiser state for {n_params} parameters, the model has {len(names)}",
                          "resume with the settings the checkpoint was written with")
    return {"state": {names[int(i)]: v for i, v in state["state"].items()},
            "param_groups": [{**g, "params": [names[int(i)] for i in g["params"]]} for g in state["param_groups"]]}


def _gather_state(model: TaskModel, opt) -> tuple[dict, dict]:
    """(model state dict, optimiser state dict keyed by index), complete on rank 0 (collective)."""
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                         get_optimizer_state_dict)

    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    msd = get_model_state_dict(model, options=opts)
    osd = get_optimizer_state_dict(model, opt, options=opts)
    return msd, (optimizer_state_by_index(osd) if osd else {})


def _load_state(model: TaskModel, opt, ck: dict | None, rank: int, decay_dynamics: bool = True) -> None:
    """Load rank 0's checkpoint ``ck`` into every rank's (sharded) model and optimiser (collective);
    ``decay_dynamics`` as the run's :class:`TrainConfig` (it orders the optimiser's parameters)."""
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, set_model_state_dict,
                                                         set_optimizer_state_dict)

    opts = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
    if rank == 0:
        decay, no_decay = _param_names(model, decay_dynamics)
        msd, osd = ck["model"], optimizer_state_by_name(ck["optimizer"], decay + no_decay)
    else:
        msd, osd = {}, {}
    set_model_state_dict(model, msd, options=opts)
    set_optimizer_state_dict(model, opt, osd, options=opts)


def _broadcast(obj, rank: int):
    import torch.distributed as dist

    box = [obj if rank == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _on_rank0(fn, rank: int):
    """Run ``fn`` on rank 0 and give every rank its result; a BayesfiltError there is raised on every rank."""
    res, err = None, None
    if rank == 0:
        try:
            res = fn()
        except BayesfiltError as exc:
            err = exc
    msg = _broadcast(None if err is None else str(err), rank)
    if err is not None:
        raise err
    if msg is not None:
        raise value_error("out", f"rank 0 could not prepare the run: {msg}", "see rank 0's message")
    return _broadcast(res, rank)


@torch.no_grad()
def evaluate_distributed(model: nn.Module, task, cfg: TrainConfig, device: torch.device, rank: int,
                         world_size: int, *, fsdp: bool = False) -> dict:
    """:func:`bayesfilt.nn.train.evaluate` split over ranks (contiguous test slices), all-reduced.

    Every rank runs the same number of forward passes (FSDP's all-gathers need all ranks); a
    rank without rows left scores one dummy row that it discards.

    Args:
        model: the (unwrapped or FSDP) :class:`~bayesfilt.nn.train.TaskModel`.
        task: the task.
        cfg: the run's config (eval_size, dtype).
        device: this rank's device.
        rank, world_size: this process and the number of processes.
        fsdp: whether ``model`` is sharded with FSDP2.

    Returns:
        dict with eval_loss, eval_acc, eval_class_acc, eval_mad_acc, eval_mad_ppl, eval_mad_stray, eval_seq_acc,
        eval_last_acc (the same on every rank).

    Example:
        >>> import torch.distributed as dist
        >>> from bayesfilt.nn.tasks import make_task
        >>> cfg = TrainConfig(task="a5", length=4, n_train=16, n_test=8, d_model=8, d_state=2, batch_size=4)
        >>> task = make_task("a5", length=4, n_train=16, n_test=8)
        >>> rank, world, device, started = init_distributed(cfg)        # a world of one process
        >>> model = TaskModel(cfg, task)
        >>> fwd = wrap_model(model, task, DistributedConfig(), device)
        >>> opt = make_optimizer(model, cfg)
        >>> print(*sorted(evaluate_distributed(model, task, cfg, device, rank, world)))
        eval_acc eval_class_acc eval_last_acc eval_loss eval_mad_acc eval_mad_ppl eval_mad_stray eval_seq_acc
        >>> del fwd, opt                      # free the DDP reducer while its process group is alive
        >>> dist.destroy_process_group()
    """
    import torch.distributed as dist

    model.eval()
    n = len(task.test) if cfg.eval_size is None else min(cfg.eval_size, len(task.test))
    per = -(-n // world_size)
    lo, hi = min(n, rank * per), min(n, (rank + 1) * per)
    sums = torch.zeros(5, dtype=torch.float64, device=device)
    blocks = torch.zeros(-(-n // MAD_TEST_BATCH), 3, task.n_classes, dtype=torch.int64, device=device)  # per MAD batch
    nll = torch.zeros(blocks.shape[0], 2, dtype=torch.float64, device=device)       # NLL sum, tokens per MAD batch
    for b in range(-(-per // EVAL_BATCH)):
        i, j = lo + b * EVAL_BATCH, min(hi, lo + (b + 1) * EVAL_BATCH)
        if i >= j:
            if fsdp:                                                    # keep FSDP's collectives in step
                x = torch.from_numpy(task.test.inputs[:1]).to(device)
                with _autocast(cfg, device):
                    model.loss_and_logits(x, torch.from_numpy(task.test.targets[:1]).to(device))
            continue
        x = torch.from_numpy(task.test.inputs[i:j]).to(device)
        y = torch.from_numpy(task.test.targets[i:j]).to(device)
        with _autocast(cfg, device):
            loss, logits = model.loss_and_logits(x, y)
        c, t, s, _, last = _accuracy(logits, y)
        _add_block_counts(blocks, logits, y, i)         # tp, fp, fn per class of each MAD test batch (rows i..)
        _add_block_nll(nll, logits, y, i)
        part = float(loss) * t
        sums += torch.tensor([part, t, c, s, last], dtype=torch.float64, device=device)
    dist.all_reduce(sums)
    dist.all_reduce(blocks)
    dist.all_reduce(nll)
    model.train()
    loss_sum, tok, c_tok, c_seq, c_last = sums.tolist()
    return {"eval_loss": loss_sum / max(tok, 1), "eval_acc": c_tok / max(tok, 1),
            "eval_class_acc": class_accuracy(blocks.sum(0).cpu()) if n else 0.0,
            "eval_mad_acc": batch_class_accuracy(blocks.cpu(), n),
            "eval_mad_ppl": batch_perplexity(nll, n) if n else 0.0,
            "eval_mad_stray": batch_stray_classes(blocks.cpu(), n),
            "eval_seq_acc": c_seq / n,
            "eval_last_acc": c_last / n}


def train_distributed(cfg: TrainConfig, out: str | os.PathLike, dcfg: DistributedConfig | None = None, *,
                      resume: bool = False, force: bool = False, progress: bool = True,
                      stop_after: int | None = None, max_seconds: float | None = None, task=None) -> dict:
    """Train ``cfg`` on every process of the ``torch.distributed`` world; rank 0 writes into ``out``.

    Launch with ``torchrun --nproc-per-node N -m bayesfilt train ... --distributed`` (or call
    this from a script torchrun starts). Without torchrun's environment it runs as a world of
    one process (gradient accumulation on one device). Backend: NCCL on CUDA (rank i uses
    ``cuda:LOCAL_RANK``), gloo on the CPU. ``cfg.batch_size`` is the global batch.

    Args:
        cfg: the run's :class:`~bayesfilt.nn.train.TrainConfig`.
        out: output folder (as :func:`bayesfilt.nn.train.train`, plus distributed.json).
        dcfg: :class:`DistributedConfig` (default: DDP, no accumulation).
        resume: continue from ``out/checkpoint.pt`` (any world size; same settings).
        force: overwrite an existing run in ``out``.
        progress: progress bar on rank 0.
        stop_after: stop after this many steps in total, with a checkpoint written.
        max_seconds: stop after this much training time (rank 0's clock decides for all).
        task: a prebuilt task, or a function returning one (or None), which rank 0 calls first and
            the other ranks after it (default: built from the config on every rank).

    Returns:
        the result record of :func:`bayesfilt.nn.train.train` plus ``distributed``
        (world_size, backend, fsdp, grad_accum), on every rank.

    Example:
        >>> import tempfile
        >>> cfg = TrainConfig(task="a5", length=4, n_train=64, n_test=32, d_model=16, d_state=4,
        ...                   steps=2, batch_size=8, eval_every=2, warmup=1)
        >>> train_distributed(cfg, tempfile.mkdtemp(), DistributedConfig(grad_accum=2),
        ...                   progress=False, force=True)["step"]
        2
    """
    import torch.distributed as dist

    if not isinstance(cfg, TrainConfig):
        raise type_error("cfg", f"must be a TrainConfig, got {type(cfg).__name__}", "pass TrainConfig(...)")
    dcfg = DistributedConfig() if dcfg is None else dcfg
    if not isinstance(dcfg, DistributedConfig):
        raise type_error("dcfg", f"must be a DistributedConfig, got {type(dcfg).__name__}",
                         "pass DistributedConfig(...)")
    stop_after, max_seconds = _check_limits(stop_after, max_seconds)
    rank, world, device, started = init_distributed(cfg)
    ok = False
    try:
        res = _train(cfg, Path(out), dcfg, rank, world, device, resume=resume, force=force, progress=progress,
                     stop_after=stop_after, max_seconds=max_seconds, task=task)
        ok = True
        return res
    finally:
        if started:
            # FSDP2 modules hold reference cycles to the process group: free them while it is alive,
            # not at interpreter exit
            gc.collect()
            if ok:
                dist.barrier()                  # no rank tears down while another still has messages in flight
            dist.destroy_process_group()


def _train(cfg, out, dcfg, rank, world, device, *, resume, force, progress, stop_after, max_seconds, task):
    import torch.distributed as dist

    A = dcfg.grad_accum
    if cfg.batch_size % (world * A):
        raise value_error("batch_size", f"global batch {cfg.batch_size} is not divisible by world_size * grad_accum "
                          f"= {world} * {A}", f"pass --batch-size a multiple of {world * A}, or change --grad-accum")
    info = {"world_size": world, "backend": dist.get_backend(), "fsdp": dcfg.fsdp, "grad_accum": A,
            "micro_batch": cfg.batch_size // (world * A), "env": {k: os.environ.get(k) for k in MULTICAST_ENV}}

    def prepare():
        _prepare_out(out, cfg, resume=resume, force=force)
        atomic_write_bytes(out / "distributed.json", json.dumps(info, indent=1, sort_keys=True).encode())
        return (out / "checkpoint.pt").exists() if resume else False

    if callable(task):                                  # rank 0 first (e.g. it builds the lm token cache once)
        if rank == 0:
            task = task()
        dist.barrier()
        if rank != 0:
            task = task()
    task = make_task(cfg.task, seed=cfg.seed, length=cfg.length, n_train=cfg.n_train, n_test=cfg.n_test,
                     bos=cfg.bos) if task is None else task
    torch.manual_seed(cfg.seed)
    model = TaskModel(cfg, task).to(device)                 # same initial weights on every rank (same seed)
    # the output folder after the task and the model, as in train(): a setting that fails there
    # must not leave a config.json behind that blocks the corrected run
    has_ckpt = _on_rank0(prepare, rank)
    fwd = wrap_model(model, task, dcfg, device)
    opt = make_optimizer(model, cfg)
    prog, step = _Progress(), 0
    ckpt_path = out / "checkpoint.pt"
    if has_ckpt:
        held = {}

        def read():                                     # rank 0 reads and verifies; the others get the metadata
            held["ck"] = load_checkpoint(ckpt_path, map_location="cpu")
            meta = {k: held["ck"][k] for k in ("step", "best_acc", "evals_since_best", "history", "status")}
            return {**meta, "message": held["ck"].get("message")}

        meta = _on_rank0(read, rank)
        _load_state(model, opt, held.pop("ck", None), rank, cfg.decay_dynamics)
        step = int(meta["step"])
        prog = _Progress(float(meta["best_acc"]), int(meta["evals_since_best"]), list(meta["history"]))
        if meta.get("status") in ("target reached", "no improvement", "done", "time limit", "diverged"):
            return _result(out, cfg, model, prog, step, meta["status"], info, rank, message=meta["message"])
    if rank == 0:
        _write_metrics(out, prog.history)

    def checkpoint(status: str) -> None:
        msd, osd = _gather_state(model, opt)
        if rank == 0:
            save_checkpoint(ckpt_path, {"model": msd, "optimizer": osd, "step": step, "best_acc": prog.best_acc,
                                        "evals_since_best": prog.evals_since_best, "history": prog.history,
                                        "status": status, "config": asdict(cfg), "message": diverged})

    bar = _progress_bar(cfg.steps, step, progress and rank == 0)
    status, diverged = "done", None
    t0 = time.perf_counter()
    if stop_after is not None and step >= stop_after and step < cfg.steps:
        status = "stopped"                              # as train(): already there, no step in this call
    while status == "done" and step < cfg.steps:
        rec = train_step(fwd, model, opt, task, cfg, dcfg, step, rank, world, device)
        step += 1
        diverged = nonfinite_message(rec["loss"], rec["grad_norm"], step)    # equal on every rank
        if diverged is not None:                        # as train(): log the step, stop, keep the last weights
            status = "diverged"
            prog.history.append(rec)
            if rank == 0:
                _append_metrics(out, rec)
            break
        bar.set_postfix(loss=f"{rec['loss']:.4f}", acc=f"{rec['acc']:.3f}")
        bar.update(1)
        status = _evaluate_when_due(
            rec, step, cfg, prog, bar,
            lambda: evaluate_distributed(model, task, cfg, device, rank, world, fsdp=dcfg.fsdp), status)
        if max_seconds is not None and status == "done":
            late = torch.tensor([float(time.perf_counter() - t0 > max_seconds)], device=device)
            dist.broadcast(late, src=0)                         # rank 0's clock decides for every rank
            if float(late) > 0:
                status = _stop_for_time(
                    rec, prog, lambda: evaluate_distributed(model, task, cfg, device, rank, world, fsdp=dcfg.fsdp))
        if rank == 0:
            _append_metrics(out, rec)
        if status != "done":
            break
        if "eval_acc" in rec or (stop_after is not None and step >= stop_after):
            checkpoint("running")
        if stop_after is not None and step >= stop_after and step < cfg.steps:
            status = "stopped"
            break
    bar.close()
    checkpoint(status if status != "stopped" else "running")
    res = _result(out, cfg, model, prog, step, status, info, rank, message=diverged)
    res["train_seconds_this_run"] = time.perf_counter() - t0
    return res


def _result(out, cfg, model, prog, step, status, info, rank, message=None) -> dict:
    if rank == 0:
        res = _finish(out, cfg, model, prog, step, status, message=message)
        res["distributed"] = info
        if status != "stopped":
            atomic_write_bytes(out / "result.json", json.dumps(res, indent=1, sort_keys=True).encode())
    return _broadcast(res if rank == 0 else None, rank)


def run_cli(args, cfg: TrainConfig, out: str) -> int:
    """``bayesfilt train ... --distributed [--fsdp] [--grad-accum N]``: train and print rank 0's result.

    Args:
        args: the parsed ``train`` flags (distributed, fsdp, grad_accum, resume, force, no_progress,
            max_seconds, cache_dir).
        cfg: the :class:`~bayesfilt.nn.train.TrainConfig` built from them.
        out: the output folder.

    Returns:
        exit code 0.

    Example:
        >>> from types import SimpleNamespace
        >>> args = SimpleNamespace(distributed=False, fsdp=True, grad_accum=1)
        >>> run_cli(args, None, "runs/x")  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        bayesfilt.errors.BayesfiltValueError: --distributed ...
    """
    if not args.distributed:
        raise value_error("--distributed", "is not set but --fsdp or --grad-accum is",
                          "add --distributed (and launch with torchrun --nproc-per-node N -m bayesfilt train ...)")
    from .text import cli_task

    dcfg = DistributedConfig(fsdp=args.fsdp, grad_accum=args.grad_accum)
    res = train_distributed(cfg, out, dcfg, resume=args.resume, force=args.force, progress=not args.no_progress,
                            max_seconds=args.max_seconds, task=lambda: cli_task(cfg, args.cache_dir))
    if os.environ.get("RANK", "0") == "0":
        print(json.dumps({k: v for k, v in res.items() if k != "config"}, sort_keys=True))
    raise_if_diverged(res)
    return 0
