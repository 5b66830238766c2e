"""Character-level LM data: shipped corpus, fixed disjoint split, tokenizer, memory-mapped windows,
the "lm" task in the training loop (train, resume) and the hybrid mixer."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from bayesfilt.cli import main  # noqa: E402
from bayesfilt.errors import BayesfiltError  # noqa: E402
from bayesfilt.nn import KLAConfig, KLALanguageModel, KLALayer  # noqa: E402
from bayesfilt.nn.lm import CausalSelfAttention  # noqa: E402
from bayesfilt.nn.text import (CharTokenizer, TokenWindows, bits_per_char, build_token_cache, lm_task,  # noqa: E402
                               load_corpus, load_lm_data, split_text, windows_split)
from bayesfilt.nn.train import TrainConfig, batch_indices, train  # noqa: E402


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("tokcache")


@pytest.fixture(scope="module")
def corpus():
    return load_corpus()


def test_shipped_corpus_is_large_plain_english(corpus):
    assert len(corpus) >= 4_000_000 and corpus.isascii()
    assert corpus.startswith("Genesis\n\n1:1 In the beginning God created the heaven and the earth.\n")
    assert corpus.count("\n1:1 ") == 66                                 # every book starts at chapter 1, verse 1
    assert corpus.rstrip().endswith("The grace of our Lord Jesus Christ be with you all. Amen.")


def test_damaged_or_foreign_corpus_files_are_named_errors(tmp_path):
    bad = tmp_path / "x.txt.xz"
    bad.write_bytes(b"not xz at all")
    with pytest.raises(BayesfiltError, match="xz"):
        load_corpus(bad)
    with pytest.raises(BayesfiltError, match="no file"):
        load_corpus(tmp_path / "missing.txt")
    plain = tmp_path / "p.txt"
    plain.write_text("hello\nworld\n")
    assert load_corpus(plain) == "hello\nworld\n"


def test_split_is_fixed_disjoint_and_covers_every_line():
    lines = [f"line {i:05d}\n" for i in range(3000)]                   # every line unique
    text = "".join(lines)
    a, b = split_text(text, block_chars=500), split_text(text, block_chars=500)
    assert a == b
    where = {}
    for name, part in a.items():
        for ln in part.splitlines(keepends=True):
            assert ln not in where, f"{ln!r} is in {where.get(ln)} and {name}"
            where[ln] = name
    assert set(where) == set(lines)
    # block j (500 chars, extended to a line end: 45 lines of 11 chars + 1 line) -> val iff j % 20 == 18
    per_block = math.ceil(500 / 11)
    for i, ln in enumerate(lines):
        j = i // per_block
        assert where[ln] == ("val" if j % 20 == 18 else "test" if j % 20 == 19 else "train")


def test_shipped_split_proportions(corpus):
    s = split_text(corpus)
    n = {k: len(v) for k, v in s.items()}
    assert sum(n.values()) == len(corpus)
    assert 0.04 < n["val"] / len(corpus) < 0.06 and 0.04 < n["test"] / len(corpus) < 0.06
    for part in s.values():                                             # blocks end at line ends
        assert part.endswith("\n")


def test_tokenizer_round_trips_and_rejects_unknown_characters(corpus):
    tok = CharTokenizer.from_text(corpus)
    assert tok.alphabet == "".join(sorted(set(corpus))) and tok.dtype == np.uint8
    piece = corpus[123_456:133_456]
    ids = tok.encode(piece)
    assert ids.dtype == np.uint8 and ids.max() < tok.vocab_size
    assert tok.decode(ids) == piece
    assert [tok.alphabet[i] for i in ids[:50]] == list(piece[:50])
    with pytest.raises(BayesfiltError, match="'€'"):
        tok.encode("price: 5€")
    with pytest.raises(BayesfiltError, match="ids"):
        tok.decode([tok.vocab_size])
    with pytest.raises(BayesfiltError, match="repeats"):
        CharTokenizer("aa")


def test_token_cache_is_memory_mapped_equals_the_split_and_is_reused(cache, corpus):
    data = load_lm_data(cache)
    tok = CharTokenizer.from_text(corpus)
    assert data.tokenizer == tok
    parts = split_text(corpus)
    for name in ("train", "val", "test"):
        arr = data.split(name)
        assert isinstance(arr, np.memmap) and arr.dtype == np.uint8 and arr.size == len(parts[name])
    np.testing.assert_array_equal(data.val, tok.encode(parts["val"]))
    np.testing.assert_array_equal(data.test[:50_000], tok.encode(parts["test"][:50_000]))
    np.testing.assert_array_equal(data.train[-50_000:], tok.encode(parts["train"][-50_000:]))
    mtime = os.path.getmtime(data.path / "train.bin")
    assert build_token_cache(cache) == data.path and os.path.getmtime(data.path / "train.bin") == mtime
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no temporary folder left behind


def test_damaged_token_cache_is_a_named_error(tmp_path):
    path = build_token_cache(tmp_path)
    with open(path / "val.bin", "r+b") as f:
        f.truncate(100)
    with pytest.raises(BayesfiltError, match="wrong size"):
        load_lm_data(tmp_path)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(BayesfiltError, match="is a file"):
        build_token_cache(tmp_path / "afile")


def test_windows_slice_the_ids_and_targets_are_shifted():
    ids = (np.arange(1000) % 251).astype(np.uint8)
    s = windows_split(ids, 16, offset=5, count=20)
    assert s.inputs.shape == (20, 16) and len(s) == 20
    for i in (0, 7, 19):
        np.testing.assert_array_equal(s.inputs[i], ids[5 + 16 * i: 5 + 16 * (i + 1)])
        np.testing.assert_array_equal(s.targets[i], ids[6 + 16 * i: 6 + 16 * (i + 1)])
    got = s.inputs[np.array([3, 1])]
    assert got.dtype == np.int64 and got.shape == (2, 16)
    np.testing.assert_array_equal(got[1], s.inputs[1])
    np.testing.assert_array_equal(np.asarray(s.inputs)[2:5], s.inputs[2:5])
    with pytest.raises(IndexError):
        s.inputs[[20]]
    with pytest.raises(BayesfiltError, match="count"):
        TokenWindows(ids, 16, count=1000)
    assert TokenWindows(ids, 10).shape == (99, 10)                     # keeps one token for the last target


def test_lm_task_is_seeded_and_batches_are_deterministic(cache):
    a, b, c = (lm_task(seed=s, length=32, n_train=500, n_test=10, cache_dir=cache) for s in (3, 3, 4))
    assert a.vocab_size == a.n_classes == 75 and a.name == "lm"
    assert a.train.inputs.shape == (500, 32) and a.test.inputs.shape == (10, 32)
    np.testing.assert_array_equal(a.test.inputs[:], c.test.inputs[:])  # validation windows do not move
    data = load_lm_data(cache)
    np.testing.assert_array_equal(a.test.inputs[0], data.val[:32])
    off = a.settings["offset"]
    np.testing.assert_array_equal(a.train.inputs[1], data.train[off + 32: off + 64])
    for step in (0, 1, 40):
        ia, ib = batch_indices(3, step, 8, len(a.train)), batch_indices(3, step, 8, len(b.train))
        np.testing.assert_array_equal(a.train.inputs[ia], b.train.inputs[ib])
        np.testing.assert_array_equal(a.train.targets[ia], b.train.targets[ib])
    diff = [not np.array_equal(batch_indices(3, s, 8, 500), batch_indices(4, s, 8, 500)) for s in range(5)]
    assert any(diff)
    with pytest.raises(BayesfiltError, match="length"):
        lm_task(length=10 ** 6, cache_dir=cache)


def _tiny_cfg(**kw):
    base = dict(task="lm", length=24, n_train=64, n_test=4, mixer="kla", layers=1, d_model=16, d_state=2,
                n_heads=2, steps=6, batch_size=4, eval_every=3, warmup=2, lr=3e-3)
    base.update(kw)
    return TrainConfig(**base)


def test_train_lm_runs_and_resumes_exactly(cache, tmp_path):
    cfg = _tiny_cfg()
    task = lm_task(seed=cfg.seed, length=cfg.length, n_train=cfg.n_train, n_test=cfg.n_test, cache_dir=cache)
    full = train(cfg, tmp_path / "full", progress=False, task=task)
    part = train(cfg, tmp_path / "part", progress=False, task=task, stop_after=4)
    assert part["status"] == "stopped" and part["step"] == 4
    resumed = train(cfg, tmp_path / "part", progress=False, task=task, resume=True)
    assert full["step"] == resumed["step"] == 6
    m_full = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    m_res = [json.loads(x) for x in (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in m_full] == [r["loss"] for r in m_res]
    assert math.isfinite(full["last_eval"]["eval_loss"])


def test_train_lm_cli_with_hybrid_mixer(cache, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "lm", "--mixer", "hybrid", "--layers", "2", "--d-model", "16", "--d-state", "2",
               "--heads", "2", "--length", "24", "--n-train", "32", "--n-test", "4", "--steps", "3",
               "--batch-size", "2", "--eval-every", "3", "--warmup", "1", "--device", "cpu", "--no-progress",
               "--out", str(out), "--cache-dir", str(cache)])
    assert rc == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["step"] == 3 and (out / "checkpoint.pt").is_file()
    assert json.loads((out / "config.json").read_text())["mixer"] == "hybrid"


def test_hybrid_is_attention_with_kla_in_the_last_block():
    lm = KLALanguageModel(7, 16, 3, mixer="hybrid", n_heads=2, kla_config=KLAConfig(d_state=2))
    kinds = [type(b.mixer) for b in lm.blocks]
    assert kinds == [CausalSelfAttention, CausalSelfAttention, KLALayer]
    one = KLALanguageModel(7, 16, 1, mixer="hybrid", kla_config=KLAConfig(d_state=2))
    assert isinstance(one.blocks[0].mixer, KLALayer)


def test_bits_per_char_of_a_uniform_model_is_log2_v():
    class Uniform(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x):
            return torch.zeros(*x.shape, 75) + 0 * self.w

    ids = np.random.default_rng(0).integers(0, 75, 1000)
    assert bits_per_char(Uniform(), ids, length=50, batch_size=7) == pytest.approx(math.log2(75), rel=1e-6)
    torch.manual_seed(0)
    lm = KLALanguageModel(75, 16, 1, kla_config=KLAConfig(d_state=2))
    x = torch.from_numpy(ids[:60].astype(np.int64))
    with torch.no_grad():
        logp = torch.log_softmax(lm(x[None, :50]).double(), -1)[0]
    manual = -float(logp[torch.arange(50), x[1:51]].mean()) / math.log(2)
    assert bits_per_char(lm, ids[:60], length=50) == pytest.approx(manual, rel=1e-5)


def test_benchmark_matches_parameter_counts_within_5_percent():
    """benchmarks/lm_text.py's widths: counted on the meta device, equal to a real model's count, within ±5%."""
    import argparse
    from conftest import load_script
    from pathlib import Path

    from bayesfilt.nn.lm import count_parameters
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "lm_text.py"
    bench = load_script(path, "lm_text_bench")
    for layers, d, heads, S in ((6, 256, 8, 16), (2, 32, 2, 8), (4, 128, 4, 16)):
        args = argparse.Namespace(layers=layers, heads=heads, d_state=S, expand=2, d_model=d)
        budget = bench.n_params(75, d, args, "kla")
        real = KLALanguageModel(75, d, layers, mixer="kla", n_heads=heads, kla_config=KLAConfig(d_state=S))
        assert budget == count_parameters(real)
        for mixer in ("attention", "hybrid"):
            width, n = bench.match_width(75, budget, args, mixer)
            assert width % heads == 0 and abs(n / budget - 1) <= 0.05, (mixer, width, n, budget)
            for other in (width - heads, width + heads):               # no other width is closer
                assert abs(bench.n_params(75, other, args, mixer) - budget) >= abs(n - budget)
