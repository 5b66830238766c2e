"""Training loop for KLA and baseline language models on the synthetic tasks.

One entry point, :func:`train`: AdamW with linear warm-up and cosine decay, gradient clipping,
periodic evaluation, early stopping (target accuracy reached, or no improvement for
``patience`` evaluations), a progress bar with live loss and accuracy, metrics as JSON lines,
atomic checkpoints (:mod:`bayesfilt.nn.checkpoint`) and exact resumption.

Reproducibility: every random choice is a function of (seed, step): model initialisation uses
``seed``; the batch at step t comes from a per-epoch permutation seeded with (seed, epoch); the
KLA+ posterior samples of step t use a generator seeded with (seed, t). A run resumed from a
checkpoint therefore repeats the uninterrupted run bit for bit on the CPU.

Output folder: ``config.json``, ``metrics.jsonl``, ``checkpoint.pt`` and ``result.json``. An
existing run is never overwritten unless ``force=True`` (or continued with ``resume=True``).
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import type_error, value_error
from ..validation import as_int, as_real_scalar
from .checkpoint import atomic_write_bytes, load_checkpoint, save_checkpoint
from .config import BACKENDS, KLAConfig
from .lm import MIXERS, CompressionDecoder, KLALanguageModel, count_parameters, labelled_cross_entropy
from .tasks import GROUPS, Task
from .text import ALL_TASKS as TASKS, make_any_task as make_task   # the synthetic tasks and "lm"

OUTPUT_FILES = ("config.json", "metrics.jsonl", "checkpoint.pt", "result.json")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (validated; saved as ``config.json``).

    Attributes:
        task: a name in :data:`bayesfilt.nn.text.ALL_TASKS` (the synthetic tasks of
            :data:`bayesfilt.nn.tasks.TASKS`, or ``"lm"`` for character-level text).
        length: sequence length L (None: the task's default).
        n_train, n_test: numbers of sequences (None: the task's defaults).
        mixer: a name in :data:`bayesfilt.nn.lm.MIXERS` ("kla", "attention", "gla", "gla_recurrent", "gdn",
            "hybrid").
        layers, d_model: depth (number of blocks) and width.
        d_state: KLA's S (paper: 16).
        expand: KLA's d_inner / d_model (paper: 2).
        n_heads: heads of the attention / GLA / GDN baselines.
        process_noise: KLA learns p (True) or fixes p = 0 (the ablation).
        p_init: KLA's initial process-noise intensity p >= 0 (:class:`KLAConfig`'s ``p_init``, the
            paper's 0.01).
        p_init_rule: KLA's rule for the initial p (:class:`KLAConfig`'s ``p_init_rule``: "constant", p =
            ``p_init``, or "3a-dt", p = 3·a·Δ per lane as in the authors' newer code).
        lambda_v_init: KLA's initial value precision Λv, the same for every token (:class:`KLAConfig`'s
            ``lambda_v_init``; None, the default: input-dependent from the start).
        a_init: KLA's initialisation of the decay rates a (:class:`KLAConfig`'s ``a_init``:
            "s4d-real", a_s = s + 1, or "constant", a = 1 in every lane as in the authors' code).
        conv_kernel: width of KLA's causal depthwise convolution (paper: 4; 1 leaves the scan as the
            only path between positions, the A5 ablation of docs/notes_a5.md section 5.6).
        dt_per_state: KLA learns one step Δ per lane (m, s) instead of one per channel
            (:class:`KLAConfig`'s ``dt_per_state``; default False); other mixers ignore it, as they
            ignore ``conv_kernel``.
        decay_dynamics: weight-decay KLA's ``log_a`` and ``p_raw`` with the matrices (default True,
            the trainer's behaviour since its start; it pulls a towards 1 and p towards 0.69 whatever
            their start). False leaves them undecayed, as Mamba does with its A_log; with
            ``a_init="constant"`` that learned A5 fastest on a CPU probe (docs/notes_a5.md 5.7).
        bos: word problems only: a beginning-of-sequence token before every word (default False;
            :func:`~bayesfilt.nn.tasks.word_problem_task`), as Merrill et al.'s code feeds its models. Attention
            needs it to tell apart the positions of a constant prefix.
        posterior_samples: K > 0 trains "KLA+" (loss averaged over K posterior samples; needs a KLA
            last block, mixer "kla" or "hybrid", and a sequence readout: not the compression task).
        steps: maximum optimiser steps.
        batch_size: training sequences per step.
        lr, weight_decay, warmup, grad_clip: AdamW peak learning rate, weight decay (matrices
            other than embeddings and KLA's Δ: :func:`decayed`), linear warm-up steps and gradient-norm clip (see :func:`lr_at`).
        eval_every: steps between evaluations (and checkpoints).
        eval_size: test sequences used per evaluation (None: all); the first ``eval_size`` of
            the test split, so every evaluation scores the same sequences.
        target_acc: stop once the test token accuracy reaches this, in (0, 1] (None: never).
        patience: stop after this many evaluations without improvement (0: never).
        seed: the one seed of the run (model initialisation, batch order, KLA+ samples).
        device: torch device string, e.g. "cpu", "cuda" or "cuda:1".
        dtype: "float32" or "bfloat16" (bfloat16 autocast around the forward pass).
        backend: the ``kla_scan`` backend of KLA mixers (:class:`KLAConfig`'s ``backend``:
            "auto", "reference", "torch" or "triton").

    Example:
        >>> cfg = TrainConfig(task="a5", length=4, d_model=16, d_state=4, steps=10)
        >>> cfg.kla_config().d_state, cfg.mixer
        (4, 'kla')
        >>> TrainConfig(steps=0)
        Traceback (most recent call last):
            ...
        bayesfilt.errors.BayesfiltValueError: ...steps...
    """

    task: str = "a5"
    length: int | None = None
    n_train: int | None = None
    n_test: int | None = None
    mixer: str = "kla"
    layers: int = 1
    d_model: int = 128
    d_state: int = 16
    expand: int = 2
    n_heads: int = 4
    process_noise: bool = True
    a_init: str = "s4d-real"
    p_init: float = 0.01
    p_init_rule: str = "constant"
    lambda_v_init: float | None = None
    conv_kernel: int = 4
    dt_per_state: bool = False
    decay_dynamics: bool = True
    bos: bool = False
    posterior_samples: int = 0
    steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup: int = 100
    grad_clip: float = 1.0
    eval_every: int = 100
    eval_size: int | None = None
    target_acc: float | None = None
    patience: int = 0
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    backend: str = "auto"

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise value_error("task", f"unknown task {self.task!r}", f"pass one of {TASKS}")
        if self.mixer not in MIXERS:
            raise value_error("mixer", f"unknown mixer {self.mixer!r}", f"pass one of {sorted(MIXERS)}")
        for name in ("layers", "d_model", "d_state", "expand", "n_heads", "conv_kernel", "steps", "batch_size",
                     "eval_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise value_error(name, f"must be a positive int, got {v!r}", f"pass --{name.replace('_', '-')} >= 1")
        for name in ("posterior_samples", "warmup", "patience", "seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise value_error(name, f"must be a non-negative int, got {v!r}", f"pass {name} >= 0")
        for name in ("length", "n_train", "n_test", "eval_size"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise value_error(name, f"must be a positive int or None, got {v!r}", f"pass {name} >= 1")
        for name in ("lr", "grad_clip"):
            as_real_scalar(getattr(self, name), name, low=0.0, low_open=True, fix=f"pass {name} > 0")
        as_real_scalar(self.weight_decay, "weight_decay", low=0.0, fix="pass weight_decay >= 0")
        if self.target_acc is not None:
            as_real_scalar(self.target_acc, "target_acc", low=0.0, low_open=True, high=1.0, fix="pass e.g. 0.9")
        if self.dtype not in ("float32", "bfloat16"):
            raise value_error("dtype", f"unknown dtype {self.dtype!r}", "pass 'float32' or 'bfloat16'")
        if self.backend not in BACKENDS:
            raise value_error("backend", f"unknown backend {self.backend!r}", f"pass one of {BACKENDS}")
        if self.posterior_samples and self.mixer not in ("kla", "hybrid"):
            raise value_error("posterior_samples", f"KLA+ needs a KLA last block (mixer 'kla' or 'hybrid'), "
                              f"got {self.mixer!r}", "pass posterior_samples=0 or mixer='kla'")
        if self.posterior_samples and self.task == "compression":
            raise value_error("posterior_samples", "KLA+ samples the sequence readout; the compression task reads "
                              "out through its MLP decoder, which would ignore it", "pass posterior_samples=0")
        if not isinstance(self.device, str):
            raise type_error("device", f"must be a str, got {type(self.device).__name__}",
                             "pass 'cpu', 'cuda' or 'cuda:N'")
        try:
            torch.device(self.device)
        except (RuntimeError, ValueError):
            raise value_error("device", f"is {self.device!r}", "pass 'cpu', 'cuda' or 'cuda:N'") from None
        for name in ("process_noise", "dt_per_state", "decay_dynamics", "bos"):
            if not isinstance(getattr(self, name), bool):
                raise type_error(name, f"must be a bool, got {getattr(self, name)!r}", "pass True or False")
        if self.bos and self.task not in GROUPS:
            raise value_error("bos", f"is for the word problems {GROUPS}, not task {self.task!r}", "pass bos=False")
        as_real_scalar(self.p_init, "p_init", low=0.0, fix="pass p_init >= 0 (the paper's 0.01)")
        if self.lambda_v_init is not None:
            as_real_scalar(self.lambda_v_init, "lambda_v_init", low=0.0, low_open=True,
                           fix="pass None or a precision > 0 (e.g. d_state)")
        self.kla_config()                   # the KLA fields as KLAConfig checks them (a_init, p_init_rule, ranges)

    def kla_config(self) -> KLAConfig:
        """The :class:`KLAConfig` this run uses (paper defaults except the fields set here).

        Returns:
            ``KLAConfig(d_state, expand, conv_kernel, dt_per_state, process_noise, a_init, p_init, p_init_rule,
            lambda_v_init, backend)``
            from this config's fields.
        """
        return KLAConfig(d_state=self.d_state, expand=self.expand, conv_kernel=self.conv_kernel,
                         dt_per_state=self.dt_per_state, process_noise=self.process_noise, a_init=self.a_init,
                         p_init=float(self.p_init), p_init_rule=self.p_init_rule,
                         lambda_v_init=None if self.lambda_v_init is None else float(self.lambda_v_init),
                         backend=self.backend)


def decayed(name: str, param: torch.Tensor, decay_dynamics: bool = True) -> bool:
    """Whether AdamW's weight decay applies to a parameter: matrices other than embeddings; KLA's step
    Δ (``log_dt``, a matrix with ``dt_per_state``) never (decay would pull every Δ towards 1); KLA's
    ``log_a`` and ``p_raw`` ([M, S]) only with ``decay_dynamics`` (:class:`TrainConfig`'s field,
    default True: decay then pulls a towards 1 and p towards softplus(0) = 0.69; docs/notes_a5.md 5.7).
    Embeddings are recognised by name ("embed"): the compression task's position table
    ``decoder.pos`` is an embedding that is decayed (every compression result so far was trained so).

    Args:
        name: the parameter's name in ``model.named_parameters()``.
        param: the parameter.
        decay_dynamics: whether KLA's ``log_a`` and ``p_raw`` are decayed.

    Returns:
        True when the parameter goes into the weight-decay group.

    Example:
        >>> decayed("blocks.0.mixer.log_a", torch.zeros(4, 2)), decayed("blocks.0.mixer.log_a", torch.zeros(4, 2), False)
        (True, False)
        >>> decayed("blocks.0.mixer.log_dt", torch.zeros(4, 2)), decayed("head.weight", torch.zeros(4, 2))
        (False, True)
    """
    skip = ("log_dt",) if decay_dynamics else ("log_dt", "log_a", "p_raw")
    return param.ndim >= 2 and "embed" not in name and not name.endswith(skip)


class TaskModel(nn.Module):
    """A :class:`KLALanguageModel` plus the task's readout (LM head, or the compression decoder).

    The language model has ``cfg.layers`` blocks of ``cfg.mixer`` at width ``cfg.d_model``, the
    task's input vocabulary and ``task.n_classes`` outputs. For ``task.readout == "sequence"``
    its LM head gives one label per position; for ``"compression"`` a
    :class:`CompressionDecoder` decodes every earlier token from the hidden state at the last
    position (``decoder`` is None otherwise).

    Args:
        cfg: the run's :class:`TrainConfig` (mixer, sizes, KLA settings).
        task: the :class:`~bayesfilt.nn.tasks.Task` (vocabulary, classes, readout).

    Example:
        >>> import torch
        >>> from bayesfilt.nn.tasks import make_task
        >>> task = make_task("a5", length=4, n_train=8, n_test=4)
        >>> model = TaskModel(TrainConfig(task="a5", length=4, d_model=16, d_state=4), task)
        >>> loss, logits = model.loss_and_logits(torch.from_numpy(task.train.inputs),
        ...                                      torch.from_numpy(task.train.targets))
        >>> loss.shape, logits.shape                      # [B, L, n_classes]
        (torch.Size([]), torch.Size([8, 4, 60]))
    """

    def __init__(self, cfg: TrainConfig, task: Task) -> None:
        super().__init__()
        self.readout = task.readout
        self.lm = KLALanguageModel(task.vocab_size, cfg.d_model, cfg.layers, mixer=cfg.mixer,
                                   kla_config=cfg.kla_config(), n_heads=cfg.n_heads, n_classes=task.n_classes)
        self.decoder = (CompressionDecoder(cfg.d_model, task.train.targets.shape[1], task.n_classes)
                        if task.readout == "compression" else None)

    def loss_and_logits(self, x, y, posterior_samples: int = 0, generator=None):
        """Mean cross-entropy over labelled positions (0 when none is) and the logits aligned with ``y``.

        Args:
            x: [B, L] input token ids.
            y: labels, [B, L] for the sequence readout or [B, n_positions] for the compression
                readout; -100 marks an unlabelled position.
            posterior_samples: K > 0 averages the loss over K posterior samples ("KLA+",
                :meth:`KLALanguageModel.loss`; sequence readout only, ignored by the compression readout).
            generator: torch generator for those samples.

        Returns:
            ``(loss, logits)``: the scalar loss and logits of shape ``y.shape + (n_classes,)``.
        """
        if self.decoder is None:
            return self.lm.loss(x, y, posterior_samples=posterior_samples, generator=generator)
        logits = self.decoder(self.lm.hidden(x)[:, -1])                # read out at the compression token
        return labelled_cross_entropy(logits, y), logits


@dataclass
class _Progress:
    best_acc: float = -1.0
    evals_since_best: int = 0
    history: list = field(default_factory=list)


def _param_names(model: TaskModel, decay_dynamics: bool = True) -> tuple[list[str], list[str]]:
    """(decayed, not decayed) parameter names, in the order :func:`make_optimizer` builds AdamW."""
    named = list(model.named_parameters())
    decay = [n for n, p in named if decayed(n, p, decay_dynamics)]
    no_decay = [n for n, p in named if not decayed(n, p, decay_dynamics)]
    return decay, no_decay


def make_optimizer(model: TaskModel, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW exactly as :func:`train` builds it (same groups, same parameter order).

    Args:
        model: the (sharded or not) :class:`TaskModel`.
        cfg: the run's config (lr, weight_decay).

    Returns:
        the optimiser (decayed matrices first, then the rest).

    Example:
        >>> from bayesfilt.nn.tasks import make_task
        >>> cfg = TrainConfig(task="a5", length=4, n_train=16, n_test=8, d_model=8, d_state=2)
        >>> opt = make_optimizer(TaskModel(cfg, make_task("a5", length=4, n_train=16, n_test=8)), cfg)
        >>> [g["weight_decay"] for g in opt.param_groups]
        [0.1, 0.0]
    """
    params = dict(model.named_parameters())
    decay, no_decay = _param_names(model, cfg.decay_dynamics)
    return torch.optim.AdamW([{"params": [params[n] for n in decay], "weight_decay": cfg.weight_decay},
                              {"params": [params[n] for n in no_decay], "weight_decay": 0.0}],
                             lr=cfg.lr, betas=(0.9, 0.95))


def batch_indices(seed: int, step: int, batch_size: int, n: int) -> np.ndarray:
    """The training-sequence indices of ``step``: consecutive slices of per-epoch permutations.

    Positions step * batch_size .. (step + 1) * batch_size - 1 of the endless stream
    "permutation of epoch 0, permutation of epoch 1, ..." (each seeded with (seed, epoch)); a
    batch that straddles an epoch boundary takes the end of one and the start of the next. A
    pure function of its arguments, which makes resumed runs exact.

    Args:
        seed: the run's seed.
        step: the optimiser step (0-based).
        batch_size: sequences per step.
        n: number of training sequences.

    Returns:
        int64 array of shape (batch_size,) with indices in [0, n).

    Example:
        >>> first_epoch = np.concatenate([batch_indices(0, s, 5, 10) for s in (0, 1)])
        >>> sorted(first_epoch.tolist())                   # two steps of 5 cover all 10 once
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
        >>> bool((batch_indices(0, 3, 5, 10) == batch_indices(0, 3, 5, 10)).all())
        True
    """
    pos = np.arange(step * batch_size, (step + 1) * batch_size)
    epochs, offsets = pos // n, pos % n
    out = np.empty(batch_size, dtype=np.int64)
    for e in np.unique(epochs):
        sel = epochs == e
        out[sel] = _epoch_permutation(int(seed), int(e), int(n))[offsets[sel]]
    return out


@functools.lru_cache(maxsize=2)
def _epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order of the ``n`` training sequences in ``epoch`` (read-only), remembered for the steps of that epoch:
    drawn anew for every step it took 56 ms at n = 2,000,000 (the A5 runs' training set) on the dev machine,
    where an A5 step on the H200 took about 70 ms in all (14 steps/s, stage s19a); 0.5 ms per step remembered.
    A memo of a pure function (module-level, like ``lru_cache`` elsewhere here): two runs interleaved in one process,
    or a batch spanning three epochs, evict each other's orders (still correct, then drawn again)."""
    perm = np.random.default_rng([seed, 7, epoch]).permutation(n)
    perm.flags.writeable = False
    return perm


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up for ``warmup`` steps, then cosine decay to 10% at ``steps``.

    lr(t) = lr (t + 1) / warmup for t < warmup; after it
    lr(t) = lr (0.1 + 0.45 (1 + cos(pi min(1, (t - warmup) / (steps - warmup))))),
    constant at 10% of ``cfg.lr`` from ``steps`` on.

    Args:
        cfg: the run's :class:`TrainConfig` (``lr``, ``warmup``, ``steps``).
        step: the optimiser step t (0-based).

    Returns:
        The learning rate of that step.

    Example:
        >>> cfg = TrainConfig(lr=1e-3, warmup=10, steps=110)
        >>> [round(lr_at(cfg, t), 6) for t in (0, 9, 60, 110)]
        [0.0001, 0.001, 0.00055, 0.0001]
    """
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    frac = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))


def _accuracy(logits, y) -> tuple[int, int, int, int, int]:
    """(correct labelled tokens, labelled tokens, fully correct sequences, sequences, correct last labels)."""
    pred = logits.argmax(-1)
    mask = y != -100
    correct = (pred == y) & mask
    seq_ok = (correct | ~mask).all(dim=-1)
    last = mask.shape[-1] - 1 - torch.flip(mask, dims=[-1]).int().argmax(-1)    # last labelled position per row
    last_ok = correct.gather(-1, last[:, None]).squeeze(-1) & mask.any(-1)
    return int(correct.sum()), int(mask.sum()), int(seq_ok.sum()), int(y.shape[0]), int(last_ok.sum())


def _class_counts(logits, y) -> torch.Tensor:
    """[3, C] int64 counts over the labelled positions: true positives, false positives and false negatives of each
    class c (tp: predicted c where the label is c; fp: predicted c where the label is another class; fn: label c,
    predicted another class)."""
    C = logits.shape[-1]
    mask = y != -100
    label, pred = y[mask], logits.argmax(-1)[mask]
    hit = pred == label
    return torch.stack([torch.bincount(label[hit], minlength=C), torch.bincount(pred[~hit], minlength=C),
                        torch.bincount(label[~hit], minlength=C)])


def class_accuracy(counts: torch.Tensor) -> float:
    """Accuracy averaged over classes ("macro", as torchmetrics' ``MulticlassAccuracy`` computes it by default,
    the metric of MAD's reference code): the mean over classes of tp / (tp + fn), 0 for a class never labelled,
    over the classes with any tp, fp or fn (a class only ever predicted wrongly counts as 0).

    Args:
        counts: [3, C] tp, fp, fn per class (``_class_counts``, summed over batches).

    Returns:
        the class-averaged accuracy in [0, 1] (0.0 when no position is labelled).

    Raises:
        BayesfiltValueError: ``counts`` is not an integer tensor of shape [3, C] with non-negative entries.

    Example:
        >>> # 3 of 4 right over 3 classes: per class 0.5, 1 and 1
        >>> y, pred = torch.tensor([[2, 1, 0, 0]]), torch.tensor([[2, 1, 0, 1]])
        >>> round(class_accuracy(_class_counts(torch.nn.functional.one_hot(pred, 3).float(), y)), 4)
        0.8333
    """
    if (not isinstance(counts, torch.Tensor) or counts.ndim != 2 or counts.shape[0] != 3
            or counts.is_floating_point() or bool((counts < 0).any())):
        raise value_error("counts", f"must be an integer tensor [3, C] of counts >= 0 (tp, fp, fn per class), got "
                          f"{type(counts).__name__} {tuple(getattr(counts, 'shape', ()))}",
                          "pass _class_counts(logits, y) summed over batches")
    tp, fp, fn = counts.double()
    used = (tp + fp + fn) > 0                                   # classes that occur in the labels or the predictions
    per_class = tp / (tp + fn).clamp(min=1)                      # tp / (tp + fn); 0 for a class never labelled
    return float(per_class[used].mean()) if bool(used.any()) else 0.0


#: Test rows per batch in MAD's reference code (its test loader's batch size), over which it averages per class.
MAD_TEST_BATCH = 128


def _block_slices(n: int, row0: int, rows: int = MAD_TEST_BATCH):
    """(k, r, e) for the rows r..e-1 of n rows that start at row ``row0`` of the test split and fall in its
    ``rows``-row batch k: row ``row0 + r`` belongs to batch ``(row0 + r) // rows``, however the evaluation itself
    is batched or split over ranks."""
    r = 0
    while r < n:
        k = (row0 + r) // rows
        e = min(n, (k + 1) * rows - row0)                       # the end of batch k within these rows
        yield k, r, e
        r = e


def _add_block_counts(blocks: torch.Tensor, logits, y, row0: int, rows: int = MAD_TEST_BATCH) -> None:
    """Add the class counts (:func:`_class_counts`) of test rows ``row0 ..`` (logits [N, L, C], y [N, L]) to
    ``blocks`` [n_blocks, 3, C]: the counts of each ``rows``-row test batch (:func:`_block_slices`)."""
    for k, r, e in _block_slices(y.shape[0], row0, rows):
        blocks[k] += _class_counts(logits[r:e], y[r:e]).to(blocks.device)


def _add_block_nll(nll: torch.Tensor, logits, y, row0: int, rows: int = MAD_TEST_BATCH) -> None:
    """Add the summed negative log-likelihood of the labelled tokens and their count, of test rows ``row0 ..``
    (logits [N, L, C], y [N, L]), to ``nll`` [n_blocks, 2] (float64) per ``rows``-row test batch."""
    tok = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1),
                                            ignore_index=-100, reduction="none").view(y.shape)   # -log p(y_t)
    for k, r, e in _block_slices(y.shape[0], row0, rows):
        nll[k, 0] += tok[r:e].sum().double().to(nll.device)
        nll[k, 1] += (y[r:e] != -100).sum().to(nll.device)


def batch_perplexity(nll: torch.Tensor, n_rows: int, rows: int = MAD_TEST_BATCH) -> float:
    """The test perplexity as MAD's reference code logs it (the value its checkpoint choice minimises):
    exp(mean negative log-likelihood of the labelled tokens) of each test batch of ``rows`` rows (torchmetrics'
    ``Perplexity``), averaged over the batches weighted by their rows.

    Args:
        nll: [ceil(n_rows / rows), 2] summed negative log-likelihood and labelled-token count of each batch.
        n_rows: test rows scored (>= 1).
        rows: rows per batch (MAD: 128).

    Returns:
        the batch-averaged perplexity (NaN when a batch holds no labelled token, as torchmetrics gives).

    Raises:
        BayesfiltValueError: ``nll`` is not a [n_batches, 2] tensor for ``n_rows`` rows; ``n_rows`` < 1 or
            ``rows`` < 1 (BayesfiltTypeError: not an int).

    Example:
        >>> import math
        >>> nll = torch.tensor([[2.0, 2.0], [0.0, 1.0]], dtype=torch.float64)   # batch 1: mean 1; batch 2: 0
        >>> round(batch_perplexity(nll, n_rows=3, rows=2), 6) == round((2 * math.e + 1 * 1.0) / 3, 6)
        True
    """
    n_rows = as_int(n_rows, "n_rows", low=1, fix="pass the number of test rows scored (>= 1)")
    rows = as_int(rows, "rows", low=1, fix=f"pass the rows per test batch (MAD: {MAD_TEST_BATCH})")
    n_blocks = -(-n_rows // rows)
    if not isinstance(nll, torch.Tensor) or tuple(nll.shape) != (n_blocks, 2):
        raise value_error("nll", f"must be a [{n_blocks}, 2] tensor (summed NLL, labelled tokens per batch of {rows} "
                          f"of {n_rows} rows), got {type(nll).__name__} {tuple(getattr(nll, 'shape', ()))}",
                          "accumulate it with _add_block_nll over the scored rows")
    weights = torch.tensor([min(rows, n_rows - k * rows) for k in range(n_blocks)], dtype=torch.float64)
    per_batch = torch.exp(nll[:, 0].double().cpu() / nll[:, 1].double().cpu())       # 0 / 0 -> NaN
    return float((weights * per_batch).sum() / n_rows)


def batch_class_accuracy(blocks: torch.Tensor, n_rows: int, rows: int = MAD_TEST_BATCH) -> float:
    """The test accuracy as MAD's reference code reports it: :func:`class_accuracy` of each test batch of
    ``rows`` rows, averaged over the batches weighted by their rows (the epoch mean that PyTorch Lightning
    takes of a value logged per batch; the last batch may be shorter).

    Args:
        blocks: [ceil(n_rows / rows), 3, C] tp, fp, fn per class of each batch.
        n_rows: test rows scored.
        rows: rows per batch (MAD: 128).

    Returns:
        the batch-averaged class accuracy in [0, 1] (0.0 when ``n_rows`` is 0).

    Raises:
        BayesfiltValueError: ``blocks`` does not hold one integer [3, C] count table per batch of ``n_rows``;
            ``n_rows`` < 0 or ``rows`` < 1 (BayesfiltTypeError: not an int).

    Example:
        >>> # batch 1: labels 0, 0 predicted 0, 1 -> classes 0 (1/2) and 1 (0) -> 0.25; batch 2: all right -> 1
        >>> blocks = torch.tensor([[[1, 0], [0, 1], [1, 0]], [[2, 0], [0, 0], [0, 0]]])
        >>> batch_class_accuracy(blocks, n_rows=3, rows=2)      # (2 * 0.25 + 1 * 1.0) / 3
        0.5
    """
    n_rows, weights = _check_blocks(blocks, n_rows, rows)
    return sum(w * class_accuracy(b) for w, b in zip(weights, blocks)) / n_rows if n_rows else 0.0


def batch_stray_classes(blocks: torch.Tensor, n_rows: int, rows: int = MAD_TEST_BATCH) -> float:
    """How many classes each test batch of ``rows`` rows predicts at its labelled positions without ever having
    them as a label there, averaged over the batches weighted by their rows: the classes that enter
    :func:`batch_class_accuracy`'s mean with a score of 0 however the labelled classes are predicted.

    Args:
        blocks: [ceil(n_rows / rows), 3, C] tp, fp, fn per class of each batch.
        n_rows: test rows scored.
        rows: rows per batch (MAD: 128).

    Returns:
        the batch-averaged count of predicted-only classes (0.0 when ``n_rows`` is 0).

    Raises:
        BayesfiltValueError: as :func:`batch_class_accuracy`.

    Example:
        >>> # batch 1: labels 0, 0 predicted 0, 1 -> class 1 only predicted; batch 2: all right -> none
        >>> blocks = torch.tensor([[[1, 0], [0, 1], [1, 0]], [[2, 0], [0, 0], [0, 0]]])
        >>> round(batch_stray_classes(blocks, n_rows=3, rows=2), 4)      # (2 * 1 + 1 * 0) / 3
        0.6667
    """
    n_rows, weights = _check_blocks(blocks, n_rows, rows)
    stray = ((blocks[:, 1] > 0) & (blocks[:, 0] + blocks[:, 2] == 0)).sum(-1)      # fp > 0, never labelled
    return sum(w * int(k) for w, k in zip(weights, stray)) / n_rows if n_rows else 0.0


def _check_blocks(blocks, n_rows, rows) -> tuple:
    """Validate per-batch count tables for ``n_rows`` rows in batches of ``rows``; (n_rows, rows per batch)."""
    n_rows = as_int(n_rows, "n_rows", low=0, fix="pass the number of test rows scored (>= 0)")
    rows = as_int(rows, "rows", low=1, fix=f"pass the rows per test batch (MAD: {MAD_TEST_BATCH})")
    n_blocks = -(-n_rows // rows)
    if (not isinstance(blocks, torch.Tensor) or blocks.ndim != 3 or blocks.shape[0] != n_blocks
            or blocks.shape[1] != 3 or blocks.is_floating_point()):
        raise value_error("blocks", f"must be an integer [{n_blocks}, 3, C] tensor of counts (one per batch of {rows} "
                          f"of {n_rows} rows), got {type(blocks).__name__} {tuple(getattr(blocks, 'shape', ()))} "
                          f"{getattr(blocks, 'dtype', '')}",
                          "accumulate them with _add_block_counts over the scored rows")
    return n_rows, [min(rows, n_rows - k * rows) for k in range(n_blocks)]


def _autocast(cfg: TrainConfig, device: torch.device):
    if cfg.dtype == "bfloat16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return torch.autocast(device_type=device.type, enabled=False)


@torch.no_grad()
def evaluate(model: TaskModel, task: Task, cfg: TrainConfig, device: torch.device, batch_size: int = 256) -> dict:
    """Test loss, token accuracy (labelled positions), whole-sequence accuracy and last-label accuracy.

    For the word problems the last label is the product of the whole word (the state-tracking score).
    Scores the first ``cfg.eval_size`` test sequences (all when None) in ``cfg.dtype``, without
    gradients; the model is put in eval mode and back in train mode afterwards.

    Args:
        model: the :class:`TaskModel` to score.
        task: its task (the test split is used).
        cfg: the run's :class:`TrainConfig` (``eval_size``, ``dtype``).
        device: where the model lives.
        batch_size: test sequences per forward pass.

    Returns:
        dict with ``eval_loss`` (mean cross-entropy per labelled token, nats), ``eval_acc``
        (fraction of labelled tokens predicted right), ``eval_class_acc`` (that accuracy per class, averaged
        over classes: :func:`class_accuracy`), ``eval_mad_acc`` (the class-averaged accuracy of each test batch of
        128 rows, averaged over the batches: :func:`batch_class_accuracy`, the accuracy MAD's reference code
        reports), ``eval_mad_ppl`` (the perplexity of each such batch, averaged likewise: :func:`batch_perplexity`,
        which MAD's checkpoint choice minimises), ``eval_mad_stray`` (classes predicted but never a label, per such
        batch, averaged likewise: :func:`batch_stray_classes`), ``eval_seq_acc`` (fraction of sequences
        with every label right) and ``eval_last_acc`` (fraction whose last label is right).

    Example:
        >>> import torch
        >>> from bayesfilt.nn.tasks import make_task
        >>> task = make_task("a5", length=4, n_train=8, n_test=4)
        >>> cfg = TrainConfig(task="a5", length=4, d_model=16, d_state=4)
        >>> scores = evaluate(TaskModel(cfg, task), task, cfg, torch.device("cpu"))
        >>> print(*sorted(scores))
        eval_acc eval_class_acc eval_last_acc eval_loss eval_mad_acc eval_mad_ppl eval_mad_stray eval_seq_acc
        >>> 0.0 <= scores["eval_acc"] <= 1.0
        True
    """
    model.eval()
    n = len(task.test) if cfg.eval_size is None else min(cfg.eval_size, len(task.test))
    tot_loss, tot_tok, c_tok, c_seq, c_last = 0.0, 0, 0, 0, 0
    blocks = torch.zeros(-(-n // MAD_TEST_BATCH), 3, task.n_classes, dtype=torch.int64, device=device)  # per MAD batch
    nll = torch.zeros(blocks.shape[0], 2, dtype=torch.float64, device=device)       # NLL sum, tokens per MAD batch
    for i in range(0, n, batch_size):
        x = torch.from_numpy(task.test.inputs[i:min(n, i + batch_size)]).to(device)
        y = torch.from_numpy(task.test.targets[i:min(n, i + batch_size)]).to(device)
        with _autocast(cfg, device):
            loss, logits = model.loss_and_logits(x, y)
        c, t, s, _, last = _accuracy(logits, y)
        _add_block_counts(blocks, logits, y, i)                 # the class counts of each MAD test batch
        _add_block_nll(nll, logits, y, i)
        tot_loss += float(loss) * t
        tot_tok += t
        c_tok += c
        c_seq += s
        c_last += last
    model.train()
    return {"eval_loss": tot_loss / max(tot_tok, 1), "eval_acc": c_tok / max(tot_tok, 1),
            "eval_class_acc": class_accuracy(blocks.sum(0)) if n else 0.0,
            "eval_mad_acc": batch_class_accuracy(blocks, n), "eval_mad_ppl": batch_perplexity(nll, n) if n else 0.0,
            "eval_mad_stray": batch_stray_classes(blocks, n),
            "eval_seq_acc": c_seq / n, "eval_last_acc": c_last / n}


def _json_line(rec: dict) -> str:
    """One record as strict JSON: a non-finite number (a diverged step's NaN loss) is written as
    null, since JSON has no NaN (``json.dumps`` would write ``NaN``, which strict parsers refuse)."""
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in rec.items()}
    return json.dumps(clean, sort_keys=True, allow_nan=False)


def _append_metrics(out: Path, rec: dict) -> None:
    """Append one step's record to ``out/metrics.jsonl`` (one JSON object a line; non-finite
    numbers as null)."""
    with open(out / "metrics.jsonl", "a") as f:
        f.write(_json_line(rec) + "\n")


def _stop_for_time(rec: dict, prog, run_eval) -> str:
    """End a run at its time limit: evaluate the last step if it was not, and say so."""
    if "eval_acc" not in rec:
        ev = run_eval()
        rec.update(ev)
        prog.best_acc = max(prog.best_acc, ev["eval_acc"])
    return "time limit"


def _evaluate_when_due(rec: dict, step: int, cfg: TrainConfig, prog, bar, run_eval, status: str) -> str:
    """Evaluate at the scheduled steps, record the result and apply early stopping.

    Shared by the single-process and the distributed training loops.

    Args:
        rec: this step's metrics record (updated in place with the evaluation).
        step: the 1-based optimiser step just taken.
        cfg: the training configuration (eval_every, steps, target_acc, patience).
        prog: the run's progress record (best accuracy, evaluations since the best, history).
        bar: the progress bar (its postfix shows the latest figures).
        run_eval: a function of no arguments returning the evaluation dict (with "eval_acc").
        status: the run's status so far.

    Returns:
        The new status: unchanged, "target reached" or "no improvement".
    """
    if step % cfg.eval_every == 0 or step == cfg.steps:
        ev = run_eval()
        rec.update(ev)
        if ev["eval_acc"] > prog.best_acc:
            prog.best_acc, prog.evals_since_best = ev["eval_acc"], 0
        else:
            prog.evals_since_best += 1
        bar.set_postfix(loss=f"{rec['loss']:.4f}", acc=f"{rec['acc']:.3f}", eval=f"{ev['eval_acc']:.3f}")
    prog.history.append(rec)
    if "eval_acc" in rec:
        if cfg.target_acc is not None and rec["eval_acc"] >= cfg.target_acc:
            status = "target reached"
        elif cfg.patience and prog.evals_since_best >= cfg.patience:
            status = "no improvement"
    return status


def _prepare_out(out: Path, cfg: TrainConfig, *, resume: bool, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise value_error("out", f"{str(out)!r} is a file, not a folder", "pass a folder for the run's outputs")
    existing = [f for f in OUTPUT_FILES if (out / f).exists()]
    if existing and not (resume or force):
        raise value_error("out", f"{str(out)!r} already holds a run ({', '.join(existing)})",
                          "pass --resume to continue it, --force to overwrite it, or another --out")
    if force and not resume:
        for f in existing:
            (out / f).unlink()
    out.mkdir(parents=True, exist_ok=True)
    if resume and (out / "config.json").exists():
        saved = json.loads((out / "config.json").read_text())
        # a field added after the run was saved (a_init, p_init, conv_kernel, ...) had its default then
        saved = {**{f.name: f.default for f in fields(TrainConfig) if f.name not in saved}, **saved}
        if saved != asdict(cfg):
            diff = sorted(k for k in set(saved) | set(asdict(cfg)) if saved.get(k) != asdict(cfg).get(k))
            raise value_error("resume", f"the settings differ from the saved run's in {diff}",
                              "resume with the same settings, or start anew with --force")
    atomic_write_bytes(out / "config.json", json.dumps(asdict(cfg), indent=1, sort_keys=True).encode())


def _write_metrics(out: Path, records: list) -> None:
    atomic_write_bytes(out / "metrics.jsonl", "".join(_json_line(r) + "\n" for r in records).encode())


def _check_limits(stop_after, max_seconds) -> tuple:
    """``train``'s and ``train_distributed``'s ``stop_after`` (an int >= 0) and ``max_seconds`` (>= 0; 0
    stops after the first step), or None."""
    if stop_after is not None:
        stop_after = as_int(stop_after, "stop_after", low=0, fix="pass a number of steps >= 0, or None")
    if max_seconds is not None:
        max_seconds = as_real_scalar(max_seconds, "max_seconds", low=0.0, fix="pass a number of seconds >= 0, or None")
    return stop_after, max_seconds


def train(cfg: TrainConfig, out: str | os.PathLike, *, resume: bool = False, force: bool = False,
          progress: bool = True, stop_after: int | None = None, max_seconds: float | None = None,
          task: Task | None = None) -> dict:
    """Train ``cfg`` and write its outputs into folder ``out``; returns the result record.

    Args:
        cfg: the run's :class:`TrainConfig`.
        out: output folder (config.json, metrics.jsonl, checkpoint.pt, result.json).
        resume: continue from ``out/checkpoint.pt`` (the settings must match).
        force: overwrite an existing run in ``out``.
        progress: show a progress bar (tqdm) with live loss and accuracy.
        stop_after: stop (as an interruption would) after this many steps in total, with a
            checkpoint written; a later ``resume=True`` call continues exactly.
        max_seconds: wall-clock budget of this call in seconds (None: none). Checked after each
            step: once exceeded, the run evaluates (if that step did not), checkpoints and ends
            with status "time limit", which is final (a later ``resume=True`` returns the result
            without training on).
        task: a prebuilt task (default: ``make_task`` from the config).

    Returns:
        dict with ``status`` ("done", "target reached", "no improvement", "time limit", "stopped",
        "diverged"), ``step``, ``best_eval_acc``, the last evaluation and the parameter count. "diverged":
        the loss or gradient norm of a step was not finite (NaN/inf); the run stops at that step
        without applying its update, and ``message`` names the step (:func:`nonfinite_message`).

    Example:
        >>> import tempfile
        >>> cfg = TrainConfig(task="a5", length=4, n_train=64, n_test=32, d_model=16, d_state=4,
        ...                   steps=2, batch_size=8, eval_every=2, warmup=1)
        >>> train(cfg, tempfile.mkdtemp(), progress=False, force=True)["step"]
        2
    """
    if not isinstance(cfg, TrainConfig):
        raise type_error("cfg", f"must be a TrainConfig, got {type(cfg).__name__}", "pass TrainConfig(...)")
    out = Path(out)
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():        # (a saved config may name another machine's GPU)
        raise value_error("cfg.device", f"is {cfg.device!r} but no CUDA device is available", "pass device='cpu'")
    stop_after, max_seconds = _check_limits(stop_after, max_seconds)
    # the task and the model first: settings that fail there (e.g. an odd recall length) must not
    # leave a config.json behind that blocks the corrected run's folder
    task = make_task(cfg.task, seed=cfg.seed, length=cfg.length, n_train=cfg.n_train, n_test=cfg.n_test,
                     bos=cfg.bos) if task is None else task
    torch.manual_seed(cfg.seed)
    model = TaskModel(cfg, task).to(device)
    _prepare_out(out, cfg, resume=resume, force=force)
    opt = make_optimizer(model, cfg)
    prog = _Progress()
    step = 0
    ckpt_path = out / "checkpoint.pt"
    if resume and ckpt_path.exists():
        ck = load_checkpoint(ckpt_path, map_location=device)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        step = int(ck["step"])
        prog = _Progress(float(ck["best_acc"]), int(ck["evals_since_best"]), list(ck["history"]))
        if ck.get("status") in ("target reached", "no improvement", "done", "time limit", "diverged"):
            return _finish(out, cfg, model, prog, step, ck["status"], message=ck.get("message"))
    _write_metrics(out, prog.history)

    def checkpoint(status: str) -> None:
        save_checkpoint(ckpt_path, {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                                    "best_acc": prog.best_acc, "evals_since_best": prog.evals_since_best,
                                    "history": prog.history, "status": status, "config": asdict(cfg),
                                    "message": diverged})

    bar = _progress_bar(cfg.steps, step, progress)
    status = "done"
    diverged = None
    t0 = time.perf_counter()
    n = len(task.train)
    if stop_after is not None and step >= stop_after and step < cfg.steps:
        status = "stopped"                                  # already there: no step in this call
    mid_step = False
    try:
        while status == "done" and step < cfg.steps:
            idx = batch_indices(cfg.seed, step, cfg.batch_size, n)
            x = torch.from_numpy(task.train.inputs[idx]).to(device)
            y = torch.from_numpy(task.train.targets[idx]).to(device)
            for g in opt.param_groups:
                g["lr"] = lr_at(cfg, step)
            gen = None
            if cfg.posterior_samples:
                gen = torch.Generator(device=device).manual_seed(cfg.seed * 1_000_003 + step)
            with _autocast(cfg, device):
                loss, logits = model.loss_and_logits(x, y, cfg.posterior_samples, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            diverged = nonfinite_message(float(loss.detach()), float(gnorm), step + 1)
            # from the update until the step's record (and evaluation) is in the history, an
            # interruption must not checkpoint: the weights would be one step ahead of the record
            mid_step = True
            if diverged is None:                            # never step on NaN/inf: the checkpoint keeps finite weights
                opt.step()
            step += 1
            c, t, _, _, _ = _accuracy(logits.detach(), y)
            rec = {"step": step, "loss": float(loss.detach()), "acc": c / max(t, 1), "lr": lr_at(cfg, step - 1),
                   "grad_norm": float(gnorm)}
            if diverged is not None:
                status = "diverged"
                prog.history.append(rec)
                _append_metrics(out, rec)
                break
            bar.set_postfix(loss=f"{rec['loss']:.4f}", acc=f"{rec['acc']:.3f}")
            bar.update(1)
            status = _evaluate_when_due(rec, step, cfg, prog, bar, lambda: evaluate(model, task, cfg, device),
                                       status)
            if max_seconds is not None and status == "done" and time.perf_counter() - t0 > max_seconds:
                status = _stop_for_time(rec, prog, lambda: evaluate(model, task, cfg, device))
            _append_metrics(out, rec)                                # appended live; rewritten atomically on resume
            mid_step = False
            if status != "done":
                break
            if "eval_acc" in rec or (stop_after is not None and step >= stop_after):
                checkpoint("running")
            if stop_after is not None and step >= stop_after and step < cfg.steps:
                status = "stopped"
                break
    except KeyboardInterrupt:
        if not mid_step:                # else the last checkpoint stands; a resume redoes the steps after it exactly
            checkpoint("running")
        bar.close()
        raise
    bar.close()
    checkpoint(status if status != "stopped" else "running")
    res = _finish(out, cfg, model, prog, step, status, message=diverged)
    res["train_seconds_this_run"] = time.perf_counter() - t0
    return res


def nonfinite_message(loss: float, grad_norm: float, step: int) -> str | None:
    """The reason to stop training when step ``step`` produced a non-finite loss or gradient norm.

    Both training loops (:func:`train` and :func:`bayesfilt.nn.distributed.train_distributed`)
    call this after clipping and end the run with status "diverged" and this message
    (``bayesfilt train`` then exits with code 2).

    Args:
        loss: the step's training loss.
        grad_norm: the step's total gradient norm (before clipping).
        step: the 1-based step number (named in the message).

    Returns:
        None when both are finite, else a message naming the step and the values.

    Example:
        >>> nonfinite_message(2.3, 0.5, 7) is None
        True
        >>> nonfinite_message(float("nan"), float("nan"), 1)
        'training diverged at step 1: loss nan, gradient norm nan'
    """
    if math.isfinite(loss) and math.isfinite(grad_norm):
        return None
    return f"training diverged at step {step}: loss {loss}, gradient norm {grad_norm}"


def raise_if_diverged(res: dict) -> None:
    """Raise a :class:`~bayesfilt.errors.BayesfiltValueError` when a training result has status "diverged".

    Args:
        res: the record returned by :func:`train` (or ``train_distributed``).

    Raises:
        BayesfiltValueError: naming the step where the loss or gradient norm stopped being finite.

    Example:
        >>> raise_if_diverged({"status": "done"})
        >>> raise_if_diverged({"status": "diverged", "message": "training diverged at step 1: loss nan, gradient norm nan"})
        Traceback (most recent call last):
            ...
        bayesfilt.errors.BayesfiltValueError: training: training diverged at step 1...
    """
    if res.get("status") == "diverged":
        raise value_error("training", res.get("message", "diverged (non-finite loss or gradient norm)"),
                          "lower --lr or --grad-clip, or check the model (e.g. KLA without process noise "
                          "overflows on long sequences); the weights before that step are in checkpoint.pt")


def _finish(out: Path, cfg: TrainConfig, model: nn.Module, prog: _Progress, step: int, status: str,
            message: str | None = None) -> dict:
    last_eval = next((r for r in reversed(prog.history) if "eval_acc" in r), {})
    res = {"status": status, "step": step, "best_eval_acc": prog.best_acc,
           "best_eval_last_acc": max((r.get("eval_last_acc", -1.0) for r in prog.history), default=-1.0),
           "last_eval": {k: v for k, v in last_eval.items() if k.startswith("eval")},
           "parameters": count_parameters(model), "config": asdict(cfg)}
    if message is not None:
        res["message"] = message
    if status != "stopped":
        atomic_write_bytes(out / "result.json", json.dumps(res, indent=1, sort_keys=True).encode())
    return res


class _NoBar:
    def set_postfix(self, **_):
        pass

    def update(self, _):
        pass

    def close(self):
        pass


def _progress_bar(total: int, initial: int, enabled: bool):
    if not enabled:
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, initial=initial, desc="train", dynamic_ncols=True)


def config_fields() -> tuple[str, ...]:
    """The names of :class:`TrainConfig`'s fields (the CLI maps its flags onto them).

    Returns:
        The field names, in declaration order.

    Example:
        >>> config_fields()[:4]
        ('task', 'length', 'n_train', 'n_test')
    """
    return tuple(f.name for f in fields(TrainConfig))
