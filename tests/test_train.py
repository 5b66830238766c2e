"""Training loop and CLI: exact resume, no silent overwrite, safe checkpoints, early stopping."""

import dataclasses
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from bayesfilt.cli import main  # noqa: E402
from bayesfilt.errors import BayesfiltError  # noqa: E402
from bayesfilt.nn.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from bayesfilt.nn.train import TrainConfig, batch_indices, train  # noqa: E402

TINY = dict(task="a5", length=4, n_train=96, n_test=32, d_model=16, d_state=4, batch_size=16, warmup=2,
            eval_every=3, lr=3e-3)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _metrics(path):
    return [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("extra", [{}, {"posterior_samples": 2}])
def test_resumed_run_equals_uninterrupted_run_bit_for_bit(tmp_path, extra):
    cfg = TrainConfig(steps=8, **TINY, **extra)
    full = train(cfg, tmp_path / "full", progress=False)
    part = train(cfg, tmp_path / "resumed", progress=False, stop_after=5)
    assert part["status"] == "stopped" and part["step"] == 5
    assert not (tmp_path / "resumed" / "result.json").exists()
    done = train(cfg, tmp_path / "resumed", progress=False, resume=True)
    assert done["step"] == full["step"] == 8
    a = load_checkpoint(tmp_path / "full" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    assert _metrics(tmp_path / "full") == _metrics(tmp_path / "resumed")
    assert done["best_eval_acc"] == full["best_eval_acc"]


@pytest.mark.parametrize("interrupt_at", [1, 2])
def test_interrupt_during_an_evaluation_resumes_exactly(tmp_path, monkeypatch, interrupt_at):
    """Ctrl-C while evaluation number ``interrupt_at`` runs (after that step's update): no checkpoint
    may record the updated weights without the step's record and evaluation; the resumed run's
    metrics, evaluations and weights equal an uninterrupted run's."""
    import bayesfilt.nn.train as T
    cfg = TrainConfig(steps=9, **TINY)
    full = train(cfg, tmp_path / "full", progress=False)
    real, calls = T.evaluate, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == interrupt_at:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(T, "evaluate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "resumed", progress=False)
    ck = tmp_path / "resumed" / "checkpoint.pt"
    assert (load_checkpoint(ck)["step"] == 3) if interrupt_at == 2 else not ck.exists()   # the last whole evaluation
    monkeypatch.setattr(T, "evaluate", real)
    done = train(cfg, tmp_path / "resumed", progress=False, resume=True)
    assert done["step"] == full["step"] == 9
    assert _metrics(tmp_path / "full") == _metrics(tmp_path / "resumed")
    a, b = load_checkpoint(tmp_path / "full" / "checkpoint.pt"), load_checkpoint(ck)
    assert all(torch.equal(t, b["model"][n]) for n, t in a["model"].items())


def test_never_overwrites_without_force(tmp_path):
    cfg = TrainConfig(steps=2, **TINY)
    train(cfg, tmp_path, progress=False)
    before = (tmp_path / "metrics.jsonl").read_bytes()
    with pytest.raises(BayesfiltError, match="--force"):
        train(cfg, tmp_path, progress=False)
    assert (tmp_path / "metrics.jsonl").read_bytes() == before
    with pytest.raises(BayesfiltError, match="settings differ"):
        train(TrainConfig(steps=3, **TINY), tmp_path, progress=False, resume=True)
    res = train(TrainConfig(steps=3, **TINY), tmp_path, progress=False, force=True)
    assert res["step"] == 3 and len(_metrics(tmp_path)) == 3


def test_checkpoint_tampered_or_truncated_is_a_clear_error(tmp_path):
    path = tmp_path / "ck.pt"
    save_checkpoint(path, {"w": torch.arange(5.0), "step": 7, "history": [{"a": 1.0}]})
    loaded = load_checkpoint(path)
    assert loaded["step"] == 7 and torch.equal(loaded["w"], torch.arange(5.0))
    raw = path.read_bytes()
    path.write_bytes(raw[:-10])
    with pytest.raises(BayesfiltError, match="corrupted"):
        load_checkpoint(path)
    flipped = bytearray(raw)
    flipped[-20] ^= 0xFF
    path.write_bytes(bytes(flipped))
    with pytest.raises(BayesfiltError, match="corrupted"):
        load_checkpoint(path)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(BayesfiltError, match="not a bayesfilt checkpoint"):
        load_checkpoint(path)
    with pytest.raises(BayesfiltError, match="no file"):
        load_checkpoint(tmp_path / "missing.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.pt"]          # no temp files left behind


def test_early_stopping(tmp_path):
    res = train(TrainConfig(steps=30, target_acc=0.001, **TINY), tmp_path / "a", progress=False)
    assert res["status"] == "target reached" and res["step"] == 3
    res = train(TrainConfig(steps=30, patience=1, **{**TINY, "lr": 1e-9}), tmp_path / "b", progress=False)
    assert res["status"] == "no improvement" and res["step"] < 30


def test_learns_a_trivial_task(tmp_path):
    """A5 at length 1: the label is the input token itself; a tiny model must learn it."""
    cfg = TrainConfig(steps=60, **{**TINY, "length": 1, "n_train": 512, "batch_size": 64, "lr": 1e-2, "eval_every": 20})
    res = train(cfg, tmp_path, progress=False)
    assert res["best_eval_acc"] > 0.5


def test_compression_readout_trains(tmp_path):
    cfg = TrainConfig(task="compression", n_train=32, n_test=8, d_model=16, d_state=4, steps=2, batch_size=8,
                      eval_every=2, warmup=1)
    res = train(cfg, tmp_path, progress=False)
    assert res["parameters"] > 0 and 0 <= res["best_eval_acc"] <= 1


def test_batches_cover_each_epoch_once():
    n, bs = 10, 4
    idx = [i for step in range(5) for i in batch_indices(0, step, bs, n)]
    assert sorted(idx[:10]) == list(range(10)) and sorted(idx[10:20]) == list(range(10))


def test_batches_are_the_epoch_permutations():
    """Each step's indices are positions of the per-epoch permutations seeded (seed, 7, epoch), drawn here
    independently, also for a batch that straddles an epoch boundary and for seeds and sizes interleaved (the
    permutations are remembered between calls: a stale one would show); the remembered arrays are read-only."""
    from bayesfilt.nn.train import _epoch_permutation
    for seed, n, bs in ((0, 10, 4), (3, 7, 5), (0, 10, 4), (1, 10, 4), (0, 11, 4)):
        stream = np.concatenate([np.random.default_rng([seed, 7, e]).permutation(n) for e in range(4)])
        got = np.concatenate([batch_indices(seed, step, bs, n) for step in range(5)])
        np.testing.assert_array_equal(got, stream[:5 * bs])
    with pytest.raises(ValueError):
        _epoch_permutation(0, 0, 10)[0] = 1


def test_class_accuracy_by_hand():
    """Accuracy averaged over classes (MAD's metric) against counts done by hand: unlabelled positions are left
    out, a class only ever predicted wrongly counts as 0, a class never labelled nor predicted is left out."""
    from bayesfilt.nn.train import _class_counts, class_accuracy
    y = torch.tensor([[0, 0, 2, -100], [2, 2, -100, 1]])
    pred = torch.tensor([[0, 3, 2, 1], [2, 0, 1, 3]])
    logits = torch.nn.functional.one_hot(pred, 5).float()
    counts = _class_counts(logits, y)
    # labelled (label, prediction): (0,0) (0,3) (2,2) (2,2) (2,0) (1,3)
    assert counts.tolist() == [[1, 0, 2, 0, 0], [1, 0, 0, 2, 0], [1, 1, 1, 0, 0]]
    # classes 0..3 used: 0 -> 1/2, 1 -> 0/1, 2 -> 2/3, 3 -> 0 (never labelled, predicted twice); 4 unused
    assert class_accuracy(counts) == pytest.approx((0.5 + 0.0 + 2 / 3 + 0.0) / 4)
    assert class_accuracy(torch.zeros(3, 5, dtype=torch.int64)) == 0.0
    for bad in (counts.float(), counts[:2], counts[0], -counts, counts.tolist()):
        with pytest.raises(BayesfiltError, match="counts"):
            class_accuracy(bad)


def _mad_batch_accuracy_numpy(pred, y, n_classes, rows):
    """MAD's reported accuracy restated with NumPy: per batch of ``rows`` rows, the mean over the classes with any
    tp, fp or fn of tp / (tp + fn) (0 when never labelled), then the mean over batches weighted by their rows."""
    total = 0.0
    for k in range(0, len(y), rows):
        p, t = pred[k:k + rows], y[k:k + rows]
        keep = t != -100
        p, t = p[keep], t[keep]
        scores = []
        for c in range(n_classes):
            tp, fp, fn = np.sum((p == c) & (t == c)), np.sum((p == c) & (t != c)), np.sum((p != c) & (t == c))
            if tp + fp + fn:
                scores.append(tp / (tp + fn) if tp + fn else 0.0)
        total += len(y[k:k + rows]) * (np.mean(scores) if scores else 0.0)
    return total / len(y)


def test_batch_class_accuracy_by_hand_and_in_evaluate():
    """MAD's reported accuracy (class-averaged per test batch of 128 rows, then averaged over batches): by hand on
    two batches, and through ``evaluate`` against a NumPy restatement when the evaluation's own batches (100 rows)
    do not line up with MAD's (128) and the last batch is short."""
    from bayesfilt.nn.tasks import mad_task
    from bayesfilt.nn.train import (MAD_TEST_BATCH, TaskModel, _add_block_counts, batch_class_accuracy,
                                    batch_stray_classes, evaluate)
    y = torch.tensor([[0, 0], [1, -100], [1, 1]])
    logits = torch.nn.functional.one_hot(torch.tensor([[0, 1], [1, 0], [0, 1]]), 3).float()
    blocks = torch.zeros(2, 3, 3, dtype=torch.int64)
    _add_block_counts(blocks, logits[1:], y[1:], row0=1, rows=2)     # rows 1, 2 of the split: row 1 in batch 0
    _add_block_counts(blocks, logits[:1], y[:1], row0=0, rows=2)
    # batch 0 (rows 0, 1): labels 0, 0, 1 predicted 0, 1, 1 -> class 0: 1/2, class 1: 1/1 -> 0.75
    # batch 1 (row 2): labels 1, 1 predicted 0, 1 -> class 0: 0 (only predicted), class 1: 1/2 -> 0.25
    assert batch_class_accuracy(blocks, n_rows=3, rows=2) == pytest.approx((2 * 0.75 + 1 * 0.25) / 3)
    # predicted but never labelled: none in batch 0 (classes 0, 1 both labelled), class 0 in batch 1
    assert batch_stray_classes(blocks, n_rows=3, rows=2) == pytest.approx((2 * 0 + 1 * 1) / 3)
    with pytest.raises(BayesfiltError, match=r"^blocks:"):
        batch_stray_classes(blocks[:1], n_rows=3, rows=2)
    with pytest.raises(BayesfiltError, match="blocks"):
        batch_class_accuracy(blocks[:1], n_rows=3, rows=2)
    for bad, n_rows, rows, name in ((blocks, 3, 0, "rows"), (blocks, -1, 2, "n_rows"), (blocks, 3.0, 2, "n_rows"),
                                    (blocks.float(), 3, 2, "blocks"), (blocks[:, :2], 3, 2, "blocks")):
        with pytest.raises(BayesfiltError, match=rf"^{name}:"):          # named, not a ZeroDivisionError
            batch_class_accuracy(bad, n_rows=n_rows, rows=rows)
    task = mad_task("fuzzy_recall", n_train=8, n_test=300, length=24, seed=1)
    cfg = TrainConfig(task="fuzzy_recall", length=24, d_model=16, d_state=4, mixer="attention")
    torch.manual_seed(0)
    model = TaskModel(cfg, task)
    got = evaluate(model, task, cfg, torch.device("cpu"), batch_size=100)
    with torch.no_grad():
        model.eval()
        pred = model.loss_and_logits(torch.from_numpy(task.test.inputs), torch.from_numpy(task.test.targets))[1]
    want = _mad_batch_accuracy_numpy(pred.argmax(-1).numpy(), task.test.targets, task.n_classes, MAD_TEST_BATCH)
    assert got["eval_mad_acc"] == pytest.approx(want, abs=1e-12)
    assert got["eval_mad_acc"] != pytest.approx(got["eval_class_acc"], abs=1e-6)      # not the pooled metric
    pred_np, y_np = pred.argmax(-1).numpy(), task.test.targets
    stray = [(len(range(k, min(k + MAD_TEST_BATCH, len(y_np)))),
              len(set(pred_np[k:k + MAD_TEST_BATCH][y_np[k:k + MAD_TEST_BATCH] != -100].tolist())
                  - set(y_np[k:k + MAD_TEST_BATCH][y_np[k:k + MAD_TEST_BATCH] != -100].tolist())))
             for k in range(0, len(y_np), MAD_TEST_BATCH)]        # predicted at labelled positions, never labels
    assert got["eval_mad_stray"] == pytest.approx(sum(w * c for w, c in stray) / len(y_np), abs=1e-12)
    assert got["eval_mad_stray"] > 0                                      # an untrained model strays: the test can fail


def test_class_accuracies_match_torchmetrics():
    """The two class-averaged accuracies against torchmetrics' MulticlassAccuracy itself (the metric of MAD's
    reference code, built as mad-lab builds it: num_classes, ignore_index -100, default macro average): pooled over
    all rows (class_accuracy) and per batch of rows averaged by rows as Lightning averages a per-batch value
    (batch_class_accuracy), on random predictions where some classes are only ever predicted, some never occur
    and whole rows are unlabelled."""
    import torchmetrics as tm                         # a test extra (pyproject's [test]): installed by `make test`
    from bayesfilt.nn.train import (_add_block_counts, _add_block_nll, _class_counts, batch_class_accuracy,
                                    batch_perplexity, class_accuracy)
    rng = np.random.default_rng(3)
    for n, L, C, rows in ((37, 9, 6, 8), (300, 5, 16, 128), (5, 3, 4, 2)):
        y = rng.integers(0, C - 2, size=(n, L))                   # the last two classes are never labels
        y[rng.random((n, L)) < 0.3] = -100
        y[0] = -100                                               # a row without labels
        logits = torch.from_numpy(rng.normal(size=(n, L, C)))
        y_t = torch.from_numpy(y)
        ref = tm.classification.MulticlassAccuracy(num_classes=C, ignore_index=-100)
        want_pooled = float(ref(logits.argmax(-1).reshape(-1), y_t.reshape(-1)))
        assert class_accuracy(_class_counts(logits, y_t)) == pytest.approx(want_pooled, abs=1e-6)
        per_batch = [(min(rows, n - k), float(ref(logits[k:k + rows].argmax(-1).reshape(-1),
                                                     y_t[k:k + rows].reshape(-1)))) for k in range(0, n, rows)]
        want_batched = sum(w * a for w, a in per_batch) / n
        blocks = torch.zeros(-(-n // rows), 3, C, dtype=torch.int64)
        _add_block_counts(blocks, logits, y_t, 0, rows)
        assert batch_class_accuracy(blocks, n, rows) == pytest.approx(want_batched, abs=1e-6)
        ppl = tm.text.Perplexity(ignore_index=-100)                # mad-lab's 'ppl', per batch, averaged by rows
        want_ppl = sum(min(rows, n - k) * float(ppl(logits[k:k + rows].float(), y_t[k:k + rows]))
                       for k in range(0, n, rows)) / n
        nll = torch.zeros(-(-n // rows), 2, dtype=torch.float64)
        for start in range(0, n, 7):                               # evaluation batches of 7 rows
            _add_block_nll(nll, logits[start:start + 7], y_t[start:start + 7], start, rows)
        assert batch_perplexity(nll, n, rows) == pytest.approx(want_ppl, rel=1e-5)


def test_config_validation():
    for bad in ({"task": "x"}, {"mixer": "rnn"}, {"steps": 0}, {"lr": -1.0}, {"dtype": "fp8"},
                {"target_acc": 2.0}, {"posterior_samples": 2, "mixer": "attention"}, {"n_train": 0},
                {"a_init": "ones"}, {"conv_kernel": 0}, {"conv_kernel": 2.0}, {"lr": True}, {"grad_clip": True},
                {"device": "bogus"}, {"device": 0}, {"task": "compression", "posterior_samples": 2},
                {"task": "in_context_recall", "bos": True}, {"bos": 1}):
        with pytest.raises(BayesfiltError):
            TrainConfig(**bad)
    assert TrainConfig(mixer="hybrid", layers=2, posterior_samples=2).posterior_samples == 2   # its last block is KLA


def test_train_limits_and_device_are_checked(tmp_path):
    """stop_after (an int >= 0), max_seconds (>= 0) and a CUDA device without CUDA raise named errors
    before anything is written."""
    cfg = TrainConfig(steps=2, **TINY)
    for kw, name in (({"stop_after": -3}, "stop_after"), ({"stop_after": 1.5}, "stop_after"),
                     ({"max_seconds": -1}, "max_seconds"), ({"max_seconds": "x"}, "max_seconds")):
        with pytest.raises(BayesfiltError, match=name):
            train(cfg, tmp_path / "a", progress=False, **kw)
    if not torch.cuda.is_available():
        with pytest.raises(BayesfiltError, match="CUDA"):
            train(dataclasses.replace(cfg, device="cuda"), tmp_path / "a", progress=False)
    assert not (tmp_path / "a").exists()


def test_saved_files_follow_the_umask_and_unreadable_payloads_are_refused(tmp_path):
    """atomic_write_bytes leaves the umask's permissions (not mkstemp's 0600); save_checkpoint refuses
    at save time what the safe loader would refuse (e.g. a NumPy scalar), naming where it is."""
    import os

    import numpy as np

    from bayesfilt.nn.checkpoint import atomic_write_bytes
    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "f.json", b"{}")
    finally:
        os.umask(old)
    assert (tmp_path / "f.json").stat().st_mode & 0o777 == 0o644
    with pytest.raises(BayesfiltError, match=r"payload\['h'\]\[0\]\['acc'\].*float64"):
        save_checkpoint(tmp_path / "ck.pt", {"h": [{"acc": np.float64(0.5)}]})
    assert not (tmp_path / "ck.pt").exists()


def test_a_init_reaches_the_layer(tmp_path, capsys):
    """TrainConfig.a_init (and the CLI's --a-init) sets KLA's decay-rate initialisation: "constant"
    starts every lane at a = 1 (the authors' released code), "s4d-real" at a_s = s + 1."""
    import torch
    from bayesfilt.nn import KLALayer
    for name, want in (("constant", torch.ones(3, 4)), ("s4d-real", torch.arange(1.0, 5.0).expand(3, 4))):
        kcfg = TrainConfig(d_model=8, d_state=4, a_init=name).kla_config()
        a = torch.exp(KLALayer(8, kcfg).log_a.detach())[:3]      # a > 0 per (channel, state)
        assert kcfg.a_init == name and torch.allclose(a, want), (name, a)
    out = tmp_path / "run"
    assert main(["train", "a5", "--d-model", "8", "--d-state", "4", "--length", "3", "--n-train", "16",
                 "--n-test", "8", "--steps", "1", "--eval-every", "1", "--warmup", "0", "--batch-size", "4",
                 "--device", "cpu", "--a-init", "constant", "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    assert json.loads((out / "config.json").read_text())["a_init"] == "constant"


def test_conv_kernel_reaches_the_layer_and_old_runs_resume(tmp_path, capsys):
    """TrainConfig.conv_kernel (CLI --conv-kernel) sets KLA's convolution width; a run saved before the
    field existed (no conv_kernel in its config.json) resumes with the default, 4."""
    from bayesfilt.nn import KLALayer
    for k in (1, 4, 7):
        layer = KLALayer(8, TrainConfig(d_model=8, d_state=4, conv_kernel=k).kla_config())
        assert tuple(layer.conv_weight.shape) == (16, k)
    args = ["train", "a5", "--d-model", "8", "--d-state", "4", "--length", "3", "--n-train", "16", "--n-test", "8",
            "--eval-every", "1", "--warmup", "0", "--batch-size", "4", "--device", "cpu", "--no-progress"]
    one, old = tmp_path / "k1", tmp_path / "old"
    assert main([*args, "--steps", "1", "--conv-kernel", "1", "--out", str(one)]) == 0
    assert json.loads((one / "config.json").read_text())["conv_kernel"] == 1
    assert main([*args, "--steps", "1", "--out", str(old)]) == 0
    saved = json.loads((old / "config.json").read_text())
    del saved["conv_kernel"]
    (old / "config.json").write_text(json.dumps(saved))
    assert main([*args, "--steps", "2", "--out", str(old), "--resume"]) == 2     # steps differ: refused
    assert "steps" in capsys.readouterr().err
    assert main([*args, "--steps", "1", "--conv-kernel", "2", "--out", str(old), "--resume"]) == 2
    assert "conv_kernel" in capsys.readouterr().err
    assert main([*args, "--steps", "1", "--out", str(old), "--resume"]) == 0


def test_dt_per_state_reaches_the_layer(tmp_path):
    """TrainConfig.dt_per_state (CLI --dt-per-state) gives every KLA lane its own step Δ."""
    from bayesfilt.nn import KLALayer
    assert tuple(KLALayer(8, TrainConfig(d_model=8, d_state=4, dt_per_state=True).kla_config()).log_dt.shape) == (16, 4)
    with pytest.raises(BayesfiltError, match="dt_per_state"):
        TrainConfig(dt_per_state=1)
    args = ["train", "a5", "--d-model", "8", "--d-state", "4", "--length", "3", "--n-train", "16", "--n-test", "8",
            "--eval-every", "1", "--warmup", "0", "--batch-size", "4", "--device", "cpu", "--no-progress", "--steps", "1"]
    assert main([*args, "--dt-per-state", "--out", str(tmp_path / "r")]) == 0
    assert json.loads((tmp_path / "r" / "config.json").read_text())["dt_per_state"] is True


def test_weight_decay_of_the_kla_dynamics():
    """AdamW decays matrices other than embeddings and never KLA's step Δ (``log_dt``, also when it is a
    matrix with ``dt_per_state``: decay would pull every Δ towards 1); ``log_a`` and ``p_raw`` only with
    ``decay_dynamics`` (default True, the earlier behaviour). The distributed optimiser's groups agree."""
    from bayesfilt.nn.train import _param_names, make_optimizer
    from bayesfilt.nn.tasks import make_task
    from bayesfilt.nn.train import TaskModel
    task = make_task("a5", seed=0, length=3, n_train=16, n_test=8)
    for per_state in (False, True):
        for dyn in (True, False):
            cfg = TrainConfig(d_model=8, d_state=4, length=3, n_train=16, n_test=8, dt_per_state=per_state,
                              decay_dynamics=dyn)
            model = TaskModel(cfg, task)
            decay, no_decay = _param_names(model, dyn)
            assert not any(n.endswith("log_dt") for n in decay) and any(n.endswith("log_dt") for n in no_decay)
            for suffix in ("log_a", "p_raw"):
                assert any(n.endswith(suffix) for n in (decay if dyn else no_decay))
                assert not any(n.endswith(suffix) for n in (no_decay if dyn else decay))
            assert any(n.endswith("in_proj.weight") for n in decay) and not any("embed" in n for n in decay)
            assert sum(p.numel() for p in make_optimizer(model, cfg).param_groups[0]["params"]) == \
                sum(dict(model.named_parameters())[n].numel() for n in decay)
    with pytest.raises(BayesfiltError, match="decay_dynamics"):
        TrainConfig(decay_dynamics="no")


def test_p_init_reaches_the_layer(tmp_path):
    """TrainConfig.p_init (CLI --p-init) starts every KLA lane at that process noise; negative refused."""
    import torch.nn.functional as F
    from bayesfilt.nn import KLALayer
    layer = KLALayer(8, TrainConfig(d_model=8, d_state=4, p_init=0.7).kla_config())
    assert torch.allclose(F.softplus(layer.p_raw), torch.full_like(layer.p_raw, 0.7))
    for bad in (-0.1, float("nan"), "0.7"):
        with pytest.raises(BayesfiltError, match="p_init"):
            TrainConfig(p_init=bad)
    args = ["train", "a5", "--d-model", "8", "--d-state", "4", "--length", "3", "--n-train", "16", "--n-test", "8",
            "--eval-every", "1", "--warmup", "0", "--batch-size", "4", "--device", "cpu", "--no-progress", "--steps", "1"]
    assert main([*args, "--p-init", "0.5", "--no-decay-dynamics", "--out", str(tmp_path / "r")]) == 0
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert saved["p_init"] == 0.5 and saved["decay_dynamics"] is False


def test_p_init_rule_and_lambda_v_init_reach_the_layer(tmp_path):
    """CLI --p-init-rule / --lambda-v-init -> TrainConfig -> KLAConfig -> the layer's start; bad values refused."""
    cfg = TrainConfig(d_model=8, d_state=4, p_init_rule="3a-dt", lambda_v_init=4.0)
    kc = cfg.kla_config()
    assert (kc.p_init_rule, kc.lambda_v_init) == ("3a-dt", 4.0)
    assert (TrainConfig().kla_config().p_init_rule, TrainConfig().kla_config().lambda_v_init) == ("constant", None)
    for name, bad in (("p_init_rule", "3adt"), ("lambda_v_init", 0.0), ("lambda_v_init", "4"),
                      ("lambda_v_init", float("inf"))):
        with pytest.raises(BayesfiltError, match=name):
            TrainConfig(**{name: bad})
    args = ["train", "a5", "--d-model", "8", "--d-state", "4", "--length", "3", "--n-train", "16", "--n-test", "8",
            "--eval-every", "1", "--warmup", "0", "--batch-size", "4", "--device", "cpu", "--no-progress", "--steps", "1"]
    assert main([*args, "--p-init-rule", "3a-dt", "--lambda-v-init", "4", "--out", str(tmp_path / "r")]) == 0
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert saved["p_init_rule"] == "3a-dt" and saved["lambda_v_init"] == 4.0


def test_cli_train_and_resume(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "a5", "--mixer", "attention", "--layers", "1", "--d-model", "16", "--seed", "1",
            "--length", "3", "--n-train", "64", "--n-test", "16", "--steps", "4", "--eval-every", "2",
            "--warmup", "1", "--batch-size", "8", "--heads", "2", "--device", "cpu", "--out", str(out),
            "--no-progress"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["status"] == "done" and result["step"] == 4
    assert len(_metrics(out)) == 4 and "eval_acc" in _metrics(out)[1]
    assert main(args) == 2                                  # refuses to overwrite
    assert "--force" in capsys.readouterr().err
    assert main(args + ["--resume"]) == 0                   # a finished run resumes to its result
    assert main(args + ["--force"]) == 0


def test_accuracy_counts_last_labelled_position():
    from bayesfilt.nn.train import _accuracy
    y = torch.tensor([[1, 2, -100], [3, -100, -100]])
    logits = torch.nn.functional.one_hot(torch.tensor([[1, 0, 0], [3, 0, 0]]), 5).float()
    assert _accuracy(logits, y) == (2, 3, 1, 2, 1)          # row 0's last label (2) wrong, row 1's (3) right


@pytest.mark.parametrize("task", ["a5", "s5", "in_context_recall", "fuzzy_recall", "noisy_recall", "selective_copy",
                                  "compression", "memorization"])
def test_every_task_trains_a_step(tmp_path, task):
    length = {"selective_copy": 33, "fuzzy_recall": 13}.get(task, 8)
    cfg = TrainConfig(task=task, length=length, n_train=8, n_test=4, d_model=8, d_state=2, batch_size=4, steps=1,
                      eval_every=1, warmup=1)
    res = train(cfg, tmp_path, progress=False)
    assert res["step"] == 1 and 0 <= res["best_eval_acc"] <= 1


def _nan_from_step(monkeypatch, bad_step):
    """Make training step ``bad_step`` (1-based) produce a NaN loss (and so NaN gradients)."""
    from bayesfilt.nn.train import TaskModel
    orig, calls = TaskModel.loss_and_logits, []

    def patched(self, x, y, *a, **k):
        loss, logits = orig(self, x, y, *a, **k)
        if self.training:
            calls.append(1)
            if len(calls) >= bad_step:
                loss = loss * float("nan")
        return loss, logits
    monkeypatch.setattr(TaskModel, "loss_and_logits", patched)


def test_nonfinite_loss_stops_with_status_diverged(tmp_path, monkeypatch):
    _nan_from_step(monkeypatch, 2)
    out = tmp_path / "run"
    res = train(TrainConfig(steps=6, **TINY), out, progress=False)
    assert res["status"] == "diverged" and res["step"] == 2

    def strict(name):                                   # JSON has no NaN: every line must parse strictly
        raise ValueError(f"non-JSON constant {name}")
    lines = [json.loads(line, parse_constant=strict) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["loss"] is None                    # the diverged step's NaN loss, written as null
    assert "step 2" in res["message"]
    assert [r["step"] for r in _metrics(out)] == [1, 2]
    ck = load_checkpoint(out / "checkpoint.pt")
    assert all(torch.isfinite(v).all() for v in ck["model"].values())    # the NaN update was not applied
    assert json.loads((out / "result.json").read_text())["status"] == "diverged"


def test_cli_exits_2_on_nonfinite_loss(tmp_path, monkeypatch, capsys):
    _nan_from_step(monkeypatch, 1)
    args = ["train", "a5", "--d-model", "16", "--d-state", "4", "--length", "3", "--n-train", "32", "--n-test",
            "8", "--steps", "3", "--batch-size", "8", "--warmup", "1", "--device", "cpu", "--out",
            str(tmp_path / "run"), "--no-progress"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "diverged at step 1" in err


def test_distributed_loop_also_stops_on_nonfinite_loss(tmp_path, monkeypatch):
    """The same check in nn.distributed's loop (a world of one process, as torchrun-less calls run)."""
    from bayesfilt.nn.distributed import DistributedConfig, train_distributed
    _nan_from_step(monkeypatch, 2)
    res = train_distributed(TrainConfig(steps=6, **{**TINY, "device": "cpu"}), tmp_path / "d",
                            DistributedConfig(), progress=False)
    # (wrap_model may probe the model once in training mode, so the NaN step is 1 or 2)
    assert res["status"] == "diverged" and res["step"] in (1, 2) and f"step {res['step']}" in res["message"]
    ck = load_checkpoint(tmp_path / "d" / "checkpoint.pt")
    assert all(torch.isfinite(v).all() for v in ck["model"].values())


def test_backend_is_validated_and_a_failed_build_leaves_no_run(tmp_path):
    """An unknown backend is refused by TrainConfig; settings that fail when the task is built
    (an odd recall length) leave no config.json behind, so the corrected run can use the folder."""
    with pytest.raises(BayesfiltError, match="backend"):
        TrainConfig(backend="bogus", **TINY)
    out = tmp_path / "run"
    bad = dataclasses.replace(TrainConfig(steps=2, **TINY), task="in_context_recall", length=7)
    with pytest.raises(BayesfiltError):
        train(bad, out, progress=False)
    assert not (out / "config.json").exists()
    ok = dataclasses.replace(bad, length=8)
    assert train(ok, out, progress=False)["step"] == 2


def test_stop_after_at_or_below_the_current_step_takes_no_step(tmp_path):
    """stop_after counts steps in total: a call that is already there trains nothing (it took one)."""
    out = tmp_path / "run"
    assert train(TrainConfig(steps=6, **TINY), out, progress=False, stop_after=0)["step"] == 0
    assert train(TrainConfig(steps=6, **TINY), out, progress=False, resume=True, stop_after=3)["step"] == 3
    assert train(TrainConfig(steps=6, **TINY), out, progress=False, resume=True, stop_after=3)["step"] == 3
    assert train(TrainConfig(steps=6, **TINY), out, progress=False, resume=True)["step"] == 6


def test_bos_on_a_task_without_words_is_refused_by_name(tmp_path, capsys):
    """--bos on a task other than the word problems: the CLI's error names the flag and says to drop it;
    make_any_task refuses bos for the character LM by name, before building anything."""
    from bayesfilt.nn.text import make_any_task
    assert main(["train", "selective_copy", "--bos", "--steps", "1", "--device", "cpu",
                 "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--bos:" in err and "drop --bos" in err and "selective_copy" in err
    assert not (tmp_path / "run").exists()
    with pytest.raises(BayesfiltError, match=r"^bos:.*'lm'"):
        make_any_task("lm", bos=True)


def _choices(parser, dest: str) -> tuple:
    """The ``choices`` of the option stored in ``dest``, looked up in ``parser`` (and its subparsers)."""
    import argparse
    for action in parser._actions:
        if action.dest == dest:
            return tuple(action.choices)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found = _choices(sub, dest)
                if found:
                    return found
    return ()


def test_cli_and_benchmark_init_choices_are_the_configs():
    """The torch-free parsers (``bayesfilt train``, benchmarks/_common.py) spell the init choices out; they must be
    KLAConfig's own (a config value the CLI cannot pass, or a CLI value the config refuses, fails here)."""
    import argparse
    from pathlib import Path

    from conftest import load_script

    from bayesfilt.cli import build_parser
    from bayesfilt.nn.config import A_INITS, P_INIT_RULES
    parser = build_parser()
    assert set(_choices(parser, "a_init")) == set(A_INITS)
    assert set(_choices(parser, "p_init_rule")) == set(P_INIT_RULES)
    common = load_script(Path(__file__).resolve().parents[1] / "benchmarks" / "_common.py", "bench_common_choices")
    ap = argparse.ArgumentParser()
    common.add_kla_init_args(ap)
    assert set(_choices(ap, "p_init_rule")) == set(P_INIT_RULES)


def test_train_config_checks_the_kla_fields_as_kla_config_does():
    """A KLA field that KLAConfig refuses is refused when the TrainConfig is made, not later when the model is
    built: lambda_v_init at or above 1 / precision_floor (1e4), an unknown a_init or p_init_rule."""
    for name, bad in (("lambda_v_init", 1e9), ("a_init", "s4d"), ("p_init_rule", "3adt")):
        with pytest.raises(BayesfiltError, match=name):
            TrainConfig(**{name: bad})
