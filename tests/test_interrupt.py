"""Nothing is lost: real processes are SIGKILLed while they train and write checkpoints.

1. ``python -m bayesfilt train`` (a tiny A5 model on the CPU) is started as a child process and
   killed with SIGKILL at random moments, twice, each time resumed with ``--resume``;
   the final checkpoint (model and optimiser tensors), result.json and metrics.jsonl equal an
   uninterrupted run with the same seed bit for bit.
2. A forked writer saving checkpoints in a tight loop is SIGKILLed 25 times at random moments;
   every time the checkpoint on disk loads and is one complete version (never torn).
3. A truncated or tampered checkpoint makes ``--resume`` exit 2 with a clear message, and
   ``load_checkpoint`` raise a BayesfiltError.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import bayesfilt
from bayesfilt.cli import main
from bayesfilt.nn.checkpoint import load_checkpoint, save_checkpoint

TINY = ["train", "a5", "--length", "4", "--n-train", "64", "--n-test", "16", "--d-model", "8", "--d-state", "2",
        "--batch-size", "8", "--steps", "40", "--eval-every", "2", "--warmup", "5", "--seed", "3", "--device", "cpu",
        "--no-progress"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


def _train_proc(out):
    return subprocess.Popen([sys.executable, "-m", "bayesfilt", *TINY, "--out", str(out), "--resume"],
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _checkpoint_step(path):
    try:
        return int(load_checkpoint(path)["step"])
    except (bayesfilt.BayesfiltError, KeyError):
        return -1


def _state(path):
    ck = load_checkpoint(path)
    return ck["model"], ck["optimizer"]["state"], ck["step"], ck["history"]


def _assert_same_tensors(a, b, where):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), f"{where}: differs (max {float((a.double() - b.double()).abs().max()):.3g})"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_same_tensors(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_tensors(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def test_sigkill_during_training_then_resume_is_bit_identical(tmp_path, record_property):
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "killed"
    ref = subprocess.run([sys.executable, "-m", "bayesfilt", *TINY, "--out", str(ref_dir)], env=ENV,
                         capture_output=True, text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr[-2000:]
    rng = np.random.default_rng(0)
    kills, last_step = 0, -1
    while kills < 2:
        proc = _train_proc(run_dir)
        ck = run_dir / "checkpoint.pt"
        deadline = time.time() + 120
        # wait until this process has written a checkpoint beyond the last one, then kill at a random moment
        while time.time() < deadline and proc.poll() is None and _checkpoint_step(ck) <= last_step:
            time.sleep(0.02)
        if proc.poll() is not None:                         # finished before we could kill it again
            break
        time.sleep(float(rng.uniform(0.0, 0.05)))          # a random moment: steps, evaluations, writes
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        kills += 1
        step = _checkpoint_step(ck)
        assert step > last_step, "the checkpoint on disk is unreadable after SIGKILL"
        last_step = step
    assert kills >= 1, "training finished too fast to be interrupted; make TINY longer"
    final = subprocess.run([sys.executable, "-m", "bayesfilt", *TINY, "--out", str(run_dir), "--resume"], env=ENV,
                           capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr[-2000:]
    a, b = _state(ref_dir / "checkpoint.pt"), _state(run_dir / "checkpoint.pt")
    _assert_same_tensors(a, b, "checkpoint")
    assert json.loads((ref_dir / "result.json").read_text()) == json.loads((run_dir / "result.json").read_text())
    assert (ref_dir / "metrics.jsonl").read_text() == (run_dir / "metrics.jsonl").read_text()
    record_property("faults_injected", kills)


def test_sigkill_while_writing_checkpoints_never_tears(tmp_path, record_property):
    """A forked child rewrites a 2 MB checkpoint file in a loop (the atomic write of save_checkpoint:
    temp file, fsync, rename); SIGKILL at random moments, 25 times. Every time the file on disk
    loads (magic, checksum, weights_only) and is one complete version, never a torn mixture.

    The versions' bytes are made by save_checkpoint in this process; the child only runs
    atomic_write_bytes (torch is not fork-safe, the write path needs no torch)."""
    from bayesfilt.nn.checkpoint import atomic_write_bytes
    versions = []
    for v in range(4):
        save_checkpoint(tmp_path / "v.pt", {"version": v, "w": torch.full((1 << 19,), float(v))})
        versions.append((tmp_path / "v.pt").read_bytes())
    path = tmp_path / "ck.pt"
    path.write_bytes(versions[0])
    rng = np.random.default_rng(1)
    seen = set()
    for i in range(25):
        pid = os.fork()
        if pid == 0:                                        # child: write versions forever
            try:
                v = 0
                while True:
                    atomic_write_bytes(path, versions[v % len(versions)])
                    v += 1
            finally:
                os._exit(0)
        time.sleep(float(rng.uniform(0.005, 0.1)))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        ck = load_checkpoint(path)                          # never torn: loads, and is one complete version
        assert torch.equal(ck["w"], torch.full((1 << 19,), float(ck["version"]))), f"kill {i}: mixed versions"
        seen.add(ck["version"])
    leftovers = [p.name for p in tmp_path.iterdir() if p.name not in ("ck.pt", "v.pt")]
    assert all(n.startswith(".ck.pt.") and n.endswith(".tmp") for n in leftovers), leftovers   # only temp files
    record_property("faults_injected", 25)
    assert len(seen) > 1                                     # the kills landed at different moments


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "garbage"])
def test_damaged_checkpoint_resume_is_a_clear_error(tmp_path, monkeypatch, damage):
    monkeypatch.chdir(tmp_path)
    argv = TINY[:TINY.index("--steps")] + ["--steps", "3", "--eval-every", "1", "--device", "cpu", "--no-progress",
                                            "--out", "run"]
    assert main(argv) == 0
    ck = tmp_path / "run" / "checkpoint.pt"
    raw = ck.read_bytes()
    ck.write_bytes({"truncate": raw[: len(raw) // 2], "flip": raw[:-10] + bytes([raw[-10] ^ 0x40]) + raw[-9:],
                    "empty": b"", "garbage": b"not a checkpoint at all" * 10}[damage])
    with pytest.raises(bayesfilt.BayesfiltError, match="checkpoint"):
        load_checkpoint(ck)
    import contextlib
    import io
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(argv + ["--resume"])
    assert rc == 2 and "checkpoint" in err.getvalue() and "Fix:" in err.getvalue() and "Traceback" not in err.getvalue()
