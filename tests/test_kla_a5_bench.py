"""benchmarks/kla_a5.py: run specs, the score (sequence accuracy >= 0.9), the summary, and a resumable tiny sweep."""

import json
from pathlib import Path

import pytest
from conftest import load_script

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def a5():
    return load_script(BENCH / "kla_a5.py", "kla_a5_bench")


def test_parse_runs(a5):
    assert a5.parse_runs(["kla:2:8-20/4"]) == [("kla", 2, L) for L in (8, 12, 16, 20)]
    assert a5.parse_runs(["kla:1:3", "kla:1:3-4", "attention:4:8,12"]) == [
        ("attention", 4, 8), ("attention", 4, 12), ("kla", 1, 3), ("kla", 1, 4)]
    for bad in ("kla:1", "kla:x:3", "kla:1:5-3", "kla:0:3", "kla:1:3/0"):
        with pytest.raises(SystemExit, match="--runs"):
            a5.parse_runs([bad])


def test_score_is_sequence_accuracy(a5):
    job = dict(mixer="kla", layers=1, length=4, seed=0, rc=0)
    hist = [{"step": 50, "loss": 1.0}, {"step": 100, "eval_acc": 0.95, "eval_last_acc": 0.92, "eval_seq_acc": 0.85}]
    row = a5.run_row(job, {"result": None, "history": hist})
    assert not row["solved_90"] and row["solved_90_last_position"]      # last position 0.92 is not enough
    assert row["best_seq_acc"] == 0.85 and row["steps"] == 100
    assert a5.run_row(job, {"result": None, "history": hist[:1], "log_tail": "x"})["solved_90"] is False
    rows = [dict(mixer="kla", layers=2, length=8, solved_90=True), dict(mixer="kla", layers=1, length=8, solved_90=True),
            dict(mixer="attention", layers=1, length=8, solved_90=False)]
    assert a5.min_blocks(rows) == {"attention": {8: None}, "kla": {8: 1}}


def test_tiny_sweep_then_resume(a5, tmp_path):
    """Two tiny CPU runs; one is cut back to a step-2 checkpoint and --resume continues only that one."""
    from bayesfilt.nn.train import TrainConfig, train
    out, work = tmp_path / "a5.json", tmp_path / "work"
    args = ["--quick", "--runs", "kla:1:3", "--seeds", "0,1", "--workdir", str(work), "--out", str(out), "--steps", "4",
            "--prefix-scores"]
    assert a5.main(args) == 0
    rec = json.loads(out.read_text())
    for r in rec["runs"]:                                      # prefix scores of the final checkpoint (step 4)
        pre = r["prefix_seq_acc"]
        assert len(pre) == 3 and all(a >= b for a, b in zip(pre, pre[1:]))
        assert pre[-1] == pytest.approx(r["curve"][-1][3], abs=1e-4)   # = the trainer's own sequence accuracy
    assert [(r["mixer"], r["layers"], r["length"], r["seed"]) for r in rec["runs"]] == [("kla", 1, 3, 0), ("kla", 1, 3, 1)]
    assert all(r["status"] == "done" and r["steps"] == 4 and 0 <= r["best_seq_acc"] <= 1 for r in rec["runs"])
    assert list(rec["min_blocks_solved"]["kla"]) == ["3"]
    cut = work / "kla-1-3-s1"                                  # as if killed after its step-2 checkpoint
    cfg = TrainConfig(**json.loads((cut / "config.json").read_text()))
    train(cfg, cut, force=True, progress=False, stop_after=2)
    (cut / "result.json").unlink(missing_ok=True)
    before = (work / "kla-1-3-s0" / "result.json").read_bytes()
    assert a5.main(args + ["--resume"]) == 0
    again = json.loads(out.read_text())
    assert [r["steps"] for r in again["runs"]] == [4, 4] and again["resumed"] is True
    assert [r["status"] for r in again["runs"]] == ["done", "done"]
    assert (work / "kla-1-3-s0" / "result.json").read_bytes() == before        # the finished run was not rerun
    assert len(list(work.glob("kla-1-3-s1.resume*.log"))) == 1 and not list(work.glob("kla-1-3-s0.resume*.log"))


def test_bos_runs_score_the_word_positions(a5, tmp_path):
    """With --bos the children train on words with a BOS token first; the prefix scores cover the word's L
    positions (the BOS position is unlabelled) and the last equals the trainer's own sequence accuracy."""
    out = tmp_path / "a5.json"
    assert a5.main(["--quick", "--runs", "attention:1:3", "--seeds", "0", "--workdir", str(tmp_path / "w"),
                    "--out", str(out), "--steps", "4", "--bos", "--prefix-scores"]) == 0
    rec = json.loads(out.read_text())
    (r,) = rec["runs"]
    assert rec["bos"] is True and json.loads((tmp_path / "w" / "attention-1-3-s0" / "config.json").read_text())["bos"]
    assert len(r["prefix_seq_acc"]) == 3
    assert r["prefix_seq_acc"][-1] == pytest.approx(r["curve"][-1][3], abs=1e-4)
