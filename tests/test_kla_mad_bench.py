"""benchmarks/kla_mad.py: the lr x weight-decay grid (best run per seed, as MAD's protocol) and a tiny CPU run."""

import json
from pathlib import Path

import pytest
from conftest import load_script

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def mad():
    return load_script(BENCH / "kla_mad.py", "kla_mad_bench")


def _row(seed, lr, wd, acc, mixer="kla", final=None):
    return dict(task="selective_copy", mixer=mixer, seed=seed, lr=lr, weight_decay=wd, accuracy=acc,
                final_accuracy=acc if final is None else final)


def test_summary_takes_each_seeds_best_grid_point(mad):
    rows = [_row(0, 1e-3, 0.0, 0.60), _row(0, 5e-4, 0.1, 0.80), _row(0, 5e-4, 0.0, None),
            _row(1, 1e-3, 0.0, 0.70), _row(1, 5e-4, 0.1, 0.50)]
    best = mad.best_of_grid(rows)
    assert sorted((r["seed"], r["lr"], r["weight_decay"]) for r in best) == [(0, 5e-4, 0.1), (1, 1e-3, 0.0)]
    cell = mad.summarize(rows, ["selective_copy"], ["kla"])["table"]["selective_copy"]["kla"]
    assert cell["ours_pct"] == 75.0 and cell["per_seed_pct"] == [80.0, 70.0]      # mean of the per-seed bests
    assert cell["diff_pts"] == round(75.0 - mad.PAPER_KLA["selective_copy"], 2)
    assert {(g["seed"], g["lr"]) for g in cell["grid_point"]} == {(0, 5e-4), (1, 1e-3)}


def test_summary_also_scores_as_mad_final_evaluations(mad):
    """MAD scores a run by its final model: the grid point is chosen on the final evaluations too."""
    rows = [_row(0, 1e-3, 0.0, 0.90, final=0.60), _row(0, 5e-4, 0.0, 0.80, final=0.79),
            _row(1, 1e-3, 0.0, 0.70, final=0.70)]
    cell = mad.summarize(rows, ["selective_copy"], ["kla"])["table"]["selective_copy"]["kla"]
    assert cell["ours_pct"] == 80.0                          # best evaluations: 90 (seed 0), 70 (seed 1)
    assert cell["final_pct"] == 74.5                         # final ones, seed 0's best final at lr 5e-4: 79
    assert cell["final_class_pct"] is None                   # rows from before session 19 carry no class accuracy
    rows = [dict(r, final_class_accuracy=c) for r, c in zip(rows, (0.5, 0.7, 0.6))]
    cell = mad.summarize(rows, ["selective_copy"], ["kla"])["table"]["selective_copy"]["kla"]
    assert cell["final_class_pct"] == 65.0                   # the class accuracies of those same final rows: 70, 60


def test_mad_score_at_the_lowest_test_loss(mad):
    """mad-lab scores the checkpoint of least test perplexity as it logs it: eval_mad_acc at the evaluation with the
    lowest eval_mad_ppl (not the last, not the best accuracy, not the lowest eval_loss; a null perplexity is
    skipped); the summary takes each seed's best over the grid."""
    evals = [{"step": 1, "eval_acc": 0.5, "eval_loss": 2.0, "eval_mad_ppl": 7.0, "eval_mad_acc": 0.30},
             {"step": 2, "eval_acc": 0.7, "eval_loss": 1.1, "eval_mad_ppl": 3.0, "eval_mad_acc": 0.40},
             {"step": 3, "eval_acc": 0.9, "eval_loss": 1.0, "eval_mad_ppl": 3.5, "eval_mad_acc": 0.60},
             {"step": 4, "eval_acc": 0.8, "eval_loss": 0.9, "eval_mad_ppl": None, "eval_mad_acc": 0.70}]
    assert mad._mad_accuracy(evals) == 0.40
    assert mad._mad_accuracy([{k: v for k, v in e.items() if k != "eval_mad_acc"} for e in evals]) is None
    rows = [dict(_row(0, 1e-3, 0.0, 0.90), mad_accuracy=0.40), dict(_row(0, 5e-4, 0.0, 0.80), mad_accuracy=0.50),
            dict(_row(1, 1e-3, 0.0, 0.70), mad_accuracy=0.20)]
    cell = mad.summarize(rows, ["selective_copy"], ["kla"])["table"]["selective_copy"]["kla"]
    assert cell["mad_pct"] == 35.0                           # seed 0: 50 (lr 5e-4), seed 1: 20
    rows[2]["mad_accuracy"] = None                           # a seed without the score: no cell value
    assert mad.summarize(rows, ["selective_copy"], ["kla"])["table"]["selective_copy"]["kla"]["mad_pct"] is None


def test_quick_run_with_a_grid(mad, tmp_path):
    out = tmp_path / "mad.json"
    rc = mad.main(["--quick", "--tasks", "in_context_recall", "--mixers", "kla", "--lr", "1e-3", "2e-3",
                   "--weight-decay", "0", "0.1", "--workdir", str(tmp_path / "w"), "--out", str(out), "--no-warm"])
    assert rc == 0
    rec = json.loads(out.read_text())
    runs = [r for r in rec["runs"] if r.get("status") != "skipped"]
    assert sorted((r["lr"], r["weight_decay"]) for r in runs) == [(1e-3, 0.0), (1e-3, 0.1), (2e-3, 0.0), (2e-3, 0.1)]
    assert all(r["accuracy"] is not None for r in runs)
    assert all(0.0 <= r["final_class_accuracy"] <= 1.0 for r in runs)           # class-averaged, recorded per run
    assert all(0.0 <= r["mad_accuracy"] <= 1.0 for r in runs)                   # mad-lab's score, per run
    assert {r["command"].split("--weight-decay ")[1].split()[0] for r in runs} == {"0.0", "0.1"}   # passed on
    assert rec["summary"]["table"]["in_context_recall"]["kla"]["seeds"] == 1     # one seed, its better run
    assert rec["settings"]["grid"] is not None and (tmp_path / "w" / "in_context_recall-kla-0-lr0.001-wd0.1").is_dir()


@pytest.mark.parametrize("flags", [["--lr", "0"], ["--lr", "1e-3", "0"], ["--weight-decay", "-0.1"]])
def test_grid_refuses_bad_values(mad, flags, tmp_path, capsys):
    with pytest.raises(SystemExit):
        mad.main(["--quick", "--workdir", str(tmp_path), *flags])
    assert "--lr must be > 0 and --weight-decay >= 0" in capsys.readouterr().err


def test_attention_state_counts_the_rows_positions(mad, tmp_path):
    """Recall rows hold L - 1 positions (MAD's layout): attention's KV cache is 2 x (L - 1) x d_model."""
    out = tmp_path / "mad.json"
    assert mad.main(["--quick", "--tasks", "in_context_recall", "--mixers", "attention", "--workdir",
                     str(tmp_path / "w"), "--out", str(out), "--no-warm"]) == 0
    rec = json.loads(out.read_text())
    (run,) = [r for r in rec["runs"] if r.get("status") != "skipped"]
    d_model = int(run["command"].split("--d-model ")[1].split()[0])
    assert run["state_size"] == 2 * (mad.QUICK_LENGTH["in_context_recall"] - 1) * d_model


def test_mad_checkpoint_step_peak_and_curve(mad):
    """A run records the step of mad-lab's checkpoint (lowest eval_mad_ppl) and its stray-class count, the highest
    eval_mad_acc of any evaluation, and (step, eval_mad_acc, eval_mad_ppl, eval_mad_stray) per evaluation that
    recorded the first two (the perplexity finite)."""
    hist = [{"step": 100, "eval_acc": 0.5, "eval_mad_ppl": 7.0, "eval_mad_acc": 0.30},
            {"step": 200, "eval_acc": 0.7, "eval_mad_ppl": 3.0, "eval_mad_acc": 0.40},
            {"step": 300, "eval_acc": 0.9, "eval_mad_ppl": float("nan"), "eval_mad_acc": 0.65},
            {"step": 400, "eval_acc": 0.8, "eval_mad_ppl": 3.5, "eval_mad_acc": 0.60}]
    hist[1]["eval_mad_stray"] = 2.5                          # recorded since session 21
    row = mad._score({"result": None, "history": hist, "stdout": None})
    assert (row["mad_accuracy"], row["mad_step"], row["best_mad_accuracy"]) == (0.40, 200, 0.65)
    assert row["mad_stray"] == 2.5
    assert row["mad_curve"] == [(100, 0.3, 7.0, None), (200, 0.4, 3.0, 2.5), (400, 0.6, 3.5, None)]
    old = mad._score({"result": None, "history": [{"step": 1, "eval_acc": 0.5}], "stdout": None})
    assert (old["mad_accuracy"], old["mad_step"], old["best_mad_accuracy"], old["mad_curve"]) == (None, None, None, [])
    assert old["mad_stray"] is None


def test_average_differs_from_the_paper_over_all_six_tasks_only(mad):
    """The paper's KLA average is over six tasks: a run of fewer tasks shows no difference to it."""
    rows = [_row(0, 1e-3, 0.0, 0.75)]
    summary = mad.summarize(rows, ["selective_copy"], ["kla"])
    assert summary["averages"]["kla"]["all_six_tasks"] is False and "diff_pts" not in summary["averages"]["kla"]
    assert "(86.69)" not in mad.format_table(summary, ["selective_copy"], ["kla"]).splitlines()[2]
    rows = [dict(_row(0, 1e-3, 0.0, 0.75), task=t) for t in mad.TASKS]
    summary = mad.summarize(rows, list(mad.TASKS), ["kla"])
    assert summary["averages"]["kla"]["diff_pts"] == round(75.0 - mad.PAPER_AVERAGE["kla"], 2)
