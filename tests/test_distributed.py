"""Distributed training (issue 9) on the CPU with the gloo backend and 2 processes.

The references are independent of bayesfilt.nn.distributed: the single-process training loop
(bayesfilt.nn.train.train, through ``python -m bayesfilt train``) and batch_indices.

1. ``torchrun --nproc-per-node 2 -m bayesfilt train in_context_recall ... --distributed`` with DDP (and gradient
   accumulation 2) and with FSDP2 (``--fsdp``): the loss curve, gradient norms, evaluations and
   final weights and AdamW moments equal the single-process run with the same global batch to
   float32 summation-order tolerance (the observed maxima are printed and recorded).
2. One rank of an FSDP2 run is SIGKILLed mid-run; torchrun's group fails; relaunched with
   ``--resume`` the run ends bit-identical to the uninterrupted FSDP2 run.
3. In one process: the sampler slices the single-process batch; the optimiser state key maps
   round-trip; the multicast variables are set by setdefault; bad flags exit 2; a world of one
   with gradient accumulation stopped and resumed equals the uninterrupted run bit for bit.
4. With 2 CUDA GPUs (the device tool's nvidia-h200-x2; skipped elsewhere): 1 and 2 again with the
   NCCL backend and the GPU kernels, against a single-process run on one GPU.
"""

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from bayesfilt.cli import main  # noqa: E402
from bayesfilt.errors import BayesfiltError  # noqa: E402
from bayesfilt.nn.checkpoint import load_checkpoint  # noqa: E402
from bayesfilt.nn.distributed import (DistributedConfig, optimizer_state_by_index,  # noqa: E402
                                      optimizer_state_by_name, rank_batches, set_multicast_env,
                                      train_distributed)
from bayesfilt.nn.train import TrainConfig, batch_indices, train  # noqa: E402
from bayesfilt.nn.tasks import Split, make_task  # noqa: E402

# 20 steps (a checkpoint every 2) of a tiny model: long enough to kill a rank mid-run.
# in_context_recall at length 16 (rows of 15 positions, as MAD) labels every training position but
# scores 1-7 positions of a test row, so the ranks' evaluation batches hold different numbers of
# labelled tokens and the evaluation's weighting matters. (Training rows are all labelled alike now,
# so these runs no longer test the training loss's weighting across ranks; the in-process
# tests below do, on thinned labels.) n_test 513: split over 2 ranks as 257 + 256 rows, i.e. 2 and 1
# evaluation batches of 256, so the FSDP2 rank with fewer rows must run a dummy forward to keep the
# all-gathers in step.
TINY = ["train", "in_context_recall", "--length", "16", "--n-train", "64", "--n-test", "513", "--d-model", "8",
        "--d-state", "2", "--batch-size", "8", "--steps", "20", "--eval-every", "2", "--warmup", "5", "--seed", "3",
        "--device", "cpu", "--no-progress"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
# float32 training, 20 AdamW steps: the runs differ only by the order of gradient sums (observed ~1e-7)
WEIGHT_TOL = 1e-5
LOSS_TOL = 1e-5


# The same run on GPUs (NCCL, the Triton KLA kernels). Per-rank micro-batches change the order of
# the batch sums inside cuBLAS and the kernels as on the CPU; the bound is 10x the CPU one.
TINY_GPU = [("cuda" if a == "cpu" else a) for a in TINY]
GPU_TOL = 1e-4
N_GPUS = torch.cuda.device_count() if torch.cuda.is_available() else 0
needs_2_gpus = pytest.mark.skipif(N_GPUS < 2, reason="needs 2 CUDA GPUs (NCCL); run on the device tool's "
                                  "nvidia-h200-x2 by benchmarks/gpu_run.sh COMMIT dist")


def _torchrun(out, *extra, resume=False, args=TINY):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "bayesfilt", *args, "--out", str(out), "--distributed", *extra]
    return subprocess.Popen(cmd + (["--resume"] if resume else []), env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait(proc, timeout=120):
    out, err = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        lines = [ln for ln in err.splitlines() if ln.startswith("[rank") or "Error" in ln or "error" in ln]
        raise AssertionError("torchrun failed:\n" + "\n".join(lines[-60:]) + "\n" + err[-1500:])
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The single-process reference and the uninterrupted DDP (grad-accum 2) and FSDP2 runs."""
    root = tmp_path_factory.mktemp("dist")
    ddp = _torchrun(root / "ddp", "--grad-accum", "2")
    fsdp = _torchrun(root / "fsdp", "--fsdp")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main([*TINY, "--out", str(root / "single")]) == 0
    finally:
        torch.set_num_threads(n)
    _wait(ddp)
    _wait(fsdp)
    return root


def _metrics(path):
    return [json.loads(line) for line in (Path(path) / "metrics.jsonl").read_text().splitlines()]


def _max_diff(a, b):
    if isinstance(a, torch.Tensor):
        assert a.shape == b.shape and a.dtype == b.dtype
        return float((a.double() - b.double()).abs().max()) if a.numel() else 0.0
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        return max((_max_diff(a[k], b[k]) for k in a), default=0.0)
    if isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        return max((_max_diff(x, y) for x, y in zip(a, b)), default=0.0)
    if isinstance(a, float):
        return abs(a - b)
    assert a == b
    return 0.0


def _compare_to_single(root, name, record_property, backend="gloo", tol=WEIGHT_TOL):
    ref, got = load_checkpoint(root / "single" / "checkpoint.pt"), load_checkpoint(root / name / "checkpoint.pt")
    assert got["step"] == ref["step"] == 20 and got["status"] == "done"
    w = _max_diff(ref["model"], got["model"])
    assert got["optimizer"]["param_groups"] == ref["optimizer"]["param_groups"]
    m = _max_diff(ref["optimizer"]["state"], got["optimizer"]["state"])
    mr, mg = _metrics(root / "single"), _metrics(root / name)
    assert [sorted(r) for r in mr] == [sorted(r) for r in mg]
    loss = max(abs(a["loss"] - b["loss"]) for a, b in zip(mr, mg))
    gn = max(abs(a["grad_norm"] - b["grad_norm"]) / a["grad_norm"] for a, b in zip(mr, mg))
    ev = max(abs(a["eval_loss"] - b["eval_loss"]) for a, b in zip(mr, mg) if "eval_loss" in a)
    assert [a["acc"] for a in mr] == pytest.approx([b["acc"] for b in mg], abs=1e-12)
    for key in ("eval_acc", "eval_class_acc", "eval_mad_acc", "eval_mad_stray"):   # the same predictions, all ranks
        assert [a.get(key) for a in mr] == pytest.approx([b.get(key) for b in mg], abs=1e-12)
    ppl = [(a["eval_mad_ppl"], b["eval_mad_ppl"]) for a, b in zip(mr, mg) if "eval_mad_ppl" in a]
    assert ppl and all(x == pytest.approx(y, rel=1e-6) for x, y in ppl)          # NLL summed across ranks
    print(f"{name}: max |dw| {w:.3g}, max |d AdamW moment| {m:.3g}, max |d loss| {loss:.3g}, "
          f"max rel d grad_norm {gn:.3g}, max |d eval_loss| {ev:.3g}")
    for k, v in (("weights", w), ("adam", m), ("loss", loss), ("grad_norm_rel", gn), ("eval_loss", ev)):
        record_property(f"{name}_max_diff_{k}", v)
    assert w < tol and m < tol and loss < tol and gn < tol and ev < tol
    info = json.loads((root / name / "result.json").read_text())["distributed"]
    assert info["world_size"] == 2 and info["backend"] == backend
    assert info["env"] == {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
                           "NVSHMEM_DISABLE_NVLS": "1"}
    return info


def test_ddp_with_grad_accum_equals_single_process(runs, record_property):
    info = _compare_to_single(runs, "ddp", record_property)
    assert not info["fsdp"] and info["grad_accum"] == 2 and info["micro_batch"] == 2


def test_fsdp2_equals_single_process(runs, record_property):
    info = _compare_to_single(runs, "fsdp", record_property)
    assert info["fsdp"] and info["grad_accum"] == 1 and info["micro_batch"] == 4


def _children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


def _rank_pid(launcher, rank):
    for pid in _children(launcher):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in env:
            return pid
    return None


def _step(path):
    try:
        return int(load_checkpoint(path)["step"])
    except (BayesfiltError, KeyError):
        return -1


def _kill_rank_1_then_resume(out, args=TINY):
    """Start an FSDP2 run, SIGKILL rank 1 after the step-4 checkpoint, resume; the step it died at."""
    proc = _torchrun(out, "--fsdp", args=args)
    deadline = time.time() + 120
    victim = None
    while time.time() < deadline and proc.poll() is None:
        victim = victim or _rank_pid(proc.pid, 1)
        if victim and _step(out / "checkpoint.pt") >= 4:
            break
        time.sleep(0.01)
    assert proc.poll() is None and victim, "the run ended before a rank could be killed"
    os.kill(victim, signal.SIGKILL)                          # one rank dies; torchrun ends the group
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0, "torchrun should fail when a rank is killed"
    killed_at = _step(out / "checkpoint.pt")
    assert 4 <= killed_at < 20, killed_at
    assert not (out / "result.json").exists()
    _wait(_torchrun(out, "--fsdp", resume=True, args=args), timeout=300)
    return killed_at


def test_killed_rank_then_resume_reproduces_uninterrupted_run(runs, tmp_path):
    out = tmp_path / "killed"
    killed_at = _kill_rank_1_then_resume(out)
    a, b = load_checkpoint(runs / "fsdp" / "checkpoint.pt"), load_checkpoint(out / "checkpoint.pt")
    assert _max_diff(a, b) == 0.0                             # model, AdamW state, history: bit for bit
    assert (runs / "fsdp" / "metrics.jsonl").read_bytes() == (out / "metrics.jsonl").read_bytes()
    ra, rb = (json.loads((d / "result.json").read_text()) for d in (runs / "fsdp", out))
    ra.pop("train_seconds_this_run", None)
    rb.pop("train_seconds_this_run", None)
    assert ra == rb
    print(f"rank 1 killed after the step-{killed_at} checkpoint; resumed run bit-identical")


@pytest.mark.parametrize("world,accum", [(1, 1), (2, 1), (2, 2), (4, 2), (8, 1)])
def test_rank_batches_partition_the_single_process_batch(world, accum):
    for step in (0, 5, 13):                                  # 13 * 16 > 100: crosses an epoch boundary
        parts = [b for r in range(world) for b in rank_batches(4, step, 16, 100, r, world, accum)]
        assert all(len(p) == 16 // (world * accum) for p in parts)
        np.testing.assert_array_equal(np.concatenate(parts), batch_indices(4, step, 16, 100))


def test_rank_batches_rejects_an_indivisible_batch():
    with pytest.raises(BayesfiltError, match="divisible"):
        rank_batches(0, 0, 10, 100, 0, 4)
    with pytest.raises(BayesfiltError, match="rank"):
        rank_batches(0, 0, 8, 100, 2, 2)


def test_optimizer_state_maps_round_trip():
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1))
    names = [n for n, _ in model.named_parameters()]
    opt = torch.optim.AdamW([{"params": [model[0].weight, model[1].weight]},
                             {"params": [model[0].bias, model[1].bias], "weight_decay": 0.0}])
    model(torch.ones(4, 2)).sum().backward()
    opt.step()
    sd = opt.state_dict()
    order = ["0.weight", "1.weight", "0.bias", "1.bias"]
    by_name = optimizer_state_by_name(sd, order)
    assert set(by_name["state"]) == set(names)
    torch.testing.assert_close(by_name["state"]["1.bias"]["exp_avg"], sd["state"][3]["exp_avg"], rtol=0, atol=0)
    assert _max_diff(optimizer_state_by_index(by_name), sd) == 0.0
    with pytest.raises(BayesfiltError, match="parameters"):
        optimizer_state_by_name(sd, order[:3])


def test_multicast_variables_are_set_by_default_only():
    env = {}
    assert set_multicast_env(env) == {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
                                      "NVSHMEM_DISABLE_NVLS": "1"}
    env = {"NCCL_NVLS_ENABLE": "1"}
    assert set_multicast_env(env)["NCCL_NVLS_ENABLE"] == "1"


def test_bad_flags_exit_2(tmp_path, capsys):
    assert main([*TINY, "--out", str(tmp_path / "a"), "--fsdp"]) == 2
    assert "--distributed" in capsys.readouterr().err
    assert main([*TINY, "--out", str(tmp_path / "b"), "--distributed", "--grad-accum", "3"]) == 2
    assert "divisible" in capsys.readouterr().err
    assert main([*TINY, "--out", str(tmp_path / "c"), "--distributed", "--grad-accum", "0"]) == 2
    with pytest.raises(BayesfiltError, match="DistributedConfig"):
        train_distributed(TrainConfig(task="a5"), tmp_path / "d", {"fsdp": True})


def test_world_of_one_with_accumulation_resumes_bit_for_bit(tmp_path, one_torch_thread):
    cfg = TrainConfig(task="a5", length=4, n_train=48, n_test=16, d_model=8, d_state=2, steps=6, batch_size=8,
                      eval_every=2, warmup=2, posterior_samples=1)
    d = DistributedConfig(grad_accum=2)
    full = train_distributed(cfg, tmp_path / "full", d, progress=False)
    part = train_distributed(cfg, tmp_path / "part", d, progress=False, stop_after=3)
    assert part["status"] == "stopped" and not (tmp_path / "part" / "result.json").exists()
    shutil.copytree(tmp_path / "part", tmp_path / "single")
    done = train_distributed(cfg, tmp_path / "part", d, progress=False, resume=True)
    assert full["step"] == done["step"] == 6
    a, b = (load_checkpoint(tmp_path / x / "checkpoint.pt") for x in ("full", "part"))
    assert _max_diff(a, b) == 0.0
    # the distributed checkpoint is a single-process checkpoint: train() continues it
    assert train(cfg, tmp_path / "single", progress=False, resume=True)["step"] == 6


def test_world_of_one_builds_the_word_problem_with_bos(tmp_path, one_torch_thread):
    """train_distributed builds the task from the config as train() does, BOS token included: the input
    vocabulary is the group's 60 elements plus the BOS token, and train() continues the checkpoint."""
    cfg = TrainConfig(task="a5", length=4, n_train=32, n_test=8, d_model=8, d_state=2, steps=2, batch_size=4,
                      eval_every=2, warmup=1, bos=True)
    train_distributed(cfg, tmp_path / "d", progress=False, stop_after=1)
    assert load_checkpoint(tmp_path / "d" / "checkpoint.pt")["model"]["lm.embed.weight"].shape[0] == 61
    assert train(cfg, tmp_path / "d", progress=False, resume=True)["step"] == 2


def test_failed_build_leaves_no_run_and_stop_after_zero_takes_no_step(tmp_path, one_torch_thread):
    """As train(): a setting that fails when the task is built (an odd recall length) leaves no
    config.json in the folder, and stop_after at the current step takes no step (it took one)."""
    bad = TrainConfig(task="in_context_recall", length=7, n_train=16, n_test=8, d_model=8, d_state=2, steps=2,
                      batch_size=4, eval_every=2, warmup=1)
    with pytest.raises(BayesfiltError):
        train_distributed(bad, tmp_path / "d", progress=False)
    assert not (tmp_path / "d" / "config.json").exists()
    cfg = TrainConfig(task="a5", length=4, n_train=32, n_test=8, d_model=8, d_state=2, steps=4, batch_size=4,
                      eval_every=2, warmup=1)
    res = train_distributed(cfg, tmp_path / "d", progress=False, stop_after=0)
    assert res["status"] == "stopped" and res["step"] == 0


def _thinned(task, keep, seed):
    """``task`` with each training row's labels kept with probability ``keep`` (the others unlabelled). MAD's
    recall tasks label every training position; thinned, some batches and micro-batches hold no label."""
    rows = np.random.default_rng(seed).random(len(task.train)) < keep
    return dataclasses.replace(task, train=Split(task.train.inputs, np.where(rows[:, None], task.train.targets, -100)))


def test_a_batch_without_labels_is_a_zero_step_in_both_loops(tmp_path, one_torch_thread):
    """in_context_recall at L = 4 with 1 training row in 8 labelled: some whole 4-row batches hold no label.
    Both loops take such a step with loss 0 and zero gradients (AdamW still decays the weights); train() used
    to call it a divergence (the mean over no labels is NaN)."""
    cfg = TrainConfig(task="in_context_recall", length=4, n_train=64, n_test=16, d_model=8, d_state=2, steps=8,
                      batch_size=4, eval_every=4, warmup=2, seed=5)
    task = _thinned(make_task("in_context_recall", length=4, n_train=64, n_test=16, seed=5), 1 / 8, seed=0)
    empty = [s for s in range(cfg.steps)
             if not (task.train.targets[batch_indices(cfg.seed, s, cfg.batch_size, 64)] != -100).any()]
    assert empty                                            # the case under test occurs
    single = train(cfg, tmp_path / "single", progress=False, task=task)
    assert single["status"] == "done" and single["step"] == cfg.steps
    res = train_distributed(cfg, tmp_path / "dist", DistributedConfig(grad_accum=2), progress=False, task=task)
    a, b = (load_checkpoint(tmp_path / x / "checkpoint.pt") for x in ("single", "dist"))
    losses = {h["step"]: h["loss"] for h in a["history"] if "loss" in h}
    assert [losses[s + 1] for s in empty] == [0.0] * len(empty)
    assert res["status"] == "done" and _max_diff(a["model"], b["model"]) < WEIGHT_TOL
    from bayesfilt.nn.train import TaskModel, evaluate      # evaluation batches without labels add nothing
    scores = evaluate(TaskModel(cfg, task), task, cfg, torch.device("cpu"), batch_size=2)
    assert np.isfinite(scores["eval_loss"]) and scores["eval_loss"] > 0


def test_micro_batches_without_labels_add_nothing(tmp_path, one_torch_thread):
    """in_context_recall at L = 6 with 1 training row in 3 labelled: many 2-row micro-batches hold no label
    (loss NaN on its own), while each 16-row batch holds some."""
    cfg = TrainConfig(task="in_context_recall", length=6, n_train=64, n_test=16, d_model=8, d_state=2, steps=6,
                      batch_size=16, eval_every=3, warmup=2, seed=5)
    task = _thinned(make_task("in_context_recall", length=6, n_train=64, n_test=16, seed=5), 1 / 3, seed=0)
    micro = [batch_indices(cfg.seed, s, cfg.batch_size, 64).reshape(8, 2) for s in range(cfg.steps)]
    labelled = np.array([[(task.train.targets[m] != -100).any() for m in b] for b in micro])    # [steps, 8]
    assert not labelled.all() and labelled.any(axis=1).all()        # the case under test occurs
    train(cfg, tmp_path / "single", progress=False, task=task)
    res = train_distributed(cfg, tmp_path / "accum", DistributedConfig(grad_accum=8), progress=False, task=task)
    assert res["status"] == "done"
    a, b = (load_checkpoint(tmp_path / x / "checkpoint.pt") for x in ("single", "accum"))
    w = _max_diff(a["model"], b["model"])
    loss = max(abs(x["loss"] - y["loss"]) for x, y in zip(a["history"], b["history"]))
    print(f"grad-accum 8 with empty micro-batches: max |dw| {w:.3g}, max |d loss| {loss:.3g}")
    assert w < WEIGHT_TOL and loss < LOSS_TOL


def test_time_limit_stops_every_rank_with_an_evaluation(tmp_path, one_torch_thread):
    cfg = TrainConfig(task="a5", length=4, n_train=32, n_test=8, d_model=8, d_state=2, steps=50, batch_size=4,
                      eval_every=10, warmup=2)
    res = train_distributed(cfg, tmp_path / "t", progress=False, max_seconds=0.0)
    assert res["status"] == "time limit" and res["step"] == 1 and "eval_acc" in res["last_eval"]
    assert json.loads((tmp_path / "t" / "result.json").read_text())["status"] == "time limit"


@pytest.fixture(scope="module")
def gpu_runs(tmp_path_factory):
    """As ``runs`` on 2 GPUs: DDP (grad-accum 2) and FSDP2 under NCCL, the reference on one GPU."""
    root = tmp_path_factory.mktemp("dist_gpu")
    single = subprocess.Popen([sys.executable, "-m", "bayesfilt", *TINY_GPU, "--out", str(root / "single")],
                              env={**ENV, "CUDA_VISIBLE_DEVICES": "0"}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    _wait(single, timeout=600)                              # compiles the Triton kernels for the others
    ddp = _torchrun(root / "ddp", "--grad-accum", "2", args=TINY_GPU)
    fsdp = _torchrun(root / "fsdp", "--fsdp", args=TINY_GPU)
    _wait(ddp, timeout=300)
    _wait(fsdp, timeout=300)
    return root


@needs_2_gpus
def test_nccl_ddp_with_grad_accum_equals_single_gpu(gpu_runs, record_property):
    info = _compare_to_single(gpu_runs, "ddp", record_property, backend="nccl", tol=GPU_TOL)
    assert not info["fsdp"] and info["grad_accum"] == 2


@needs_2_gpus
def test_nccl_fsdp2_equals_single_gpu(gpu_runs, record_property):
    info = _compare_to_single(gpu_runs, "fsdp", record_property, backend="nccl", tol=GPU_TOL)
    assert info["fsdp"]


@needs_2_gpus
def test_nccl_killed_rank_then_resume_matches_uninterrupted_run(gpu_runs, tmp_path, record_property):
    out = tmp_path / "killed"
    killed_at = _kill_rank_1_then_resume(out, args=TINY_GPU)
    a, b = load_checkpoint(gpu_runs / "fsdp" / "checkpoint.pt"), load_checkpoint(out / "checkpoint.pt")
    w = _max_diff(a["model"], b["model"])
    whole = _max_diff(a, b)                                  # model, AdamW state, history
    ma, mb = _metrics(gpu_runs / "fsdp"), _metrics(out)
    assert [sorted(r) for r in ma] == [sorted(r) for r in mb]
    loss = max(abs(x["loss"] - y["loss"]) for x, y in zip(ma, mb))
    for k, v in (("killed_at", killed_at), ("weights", w), ("checkpoint", whole), ("loss", loss)):
        record_property(f"gpu_resume_{k}", v)
    print(f"GPU: rank 1 killed after the step-{killed_at} checkpoint; resumed run max |dw| {w:.3g}, whole "
          f"checkpoint {whole:.3g}, loss {loss:.3g} ({'bit-identical' if whole == 0 else 'not bit-identical'})")
    assert a["step"] == b["step"] == 20 and whole < GPU_TOL and loss < GPU_TOL
