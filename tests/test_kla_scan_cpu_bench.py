"""benchmarks/kla_scan_cpu.py: a smoke run writes its JSON, with the two forms in agreement."""

import json
from pathlib import Path

from conftest import load_script

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def test_quick_run_writes_both_forms(tmp_path):
    bench = load_script(BENCH / "kla_scan_cpu.py", "kla_scan_cpu_bench")
    out = tmp_path / "cpu.json"
    assert bench.main(["--quick", "--out", str(out)]) == 0
    rec = json.loads(out.read_text())
    assert [r["shape"] for r in rec["rows"]] == [list(s) for s in bench.QUICK]
    for r in rec["rows"]:
        assert all(r[k] > 0 for k in ("tree_forward_s", "loop_forward_s", "tree_backward_s", "loop_backward_s"))
        assert max(r["parity_rel_rms_loop_vs_tree"].values()) < 1e-4
        assert r["kla_scan_form"] == ("loop" if r["lanes"] >= rec["loop_min_lanes"] else "tree")
    assert {r["kla_scan_form"] for r in rec["rows"]} == {"loop", "tree"}      # the quick shapes cover both
    for r in rec["rows"]:                                 # p = 0 (moment form: adjoint and vjp) where the loop runs
        assert ("p0_loop_vjp_s" in r) == ("p0_loop_adjoint_s" in r) == (r["kla_scan_form"] == "loop")
        if "p0_tree_vjp_s" in r:
            assert set(r["p0_parity_rel_rms_vs_loop_vjp"]) == {"adjoint_loop", "vjp_tree", "adjoint_tree"}
            assert max(r["p0_parity_rel_rms_vs_loop_vjp"].values()) < 1e-4


def _perturbed_run(tmp_path, monkeypatch, name: str, field: str) -> list:
    """The quick benchmark's rows with ``name``'s output ``field`` off by 1%; the run must fail (exit 1)."""
    bench = load_script(BENCH / "kla_scan_cpu.py", f"kla_scan_cpu_bench_{name}")
    real = getattr(bench, name)

    def off_by_a_bit(*args, **kw):
        out = real(*args, **kw)
        return out._replace(**{field: getattr(out, field) * 1.01})

    monkeypatch.setattr(bench, name, off_by_a_bit)
    out = tmp_path / "bad.json"
    assert bench.main(["--quick", "--out", str(out)]) == 1
    return json.loads(out.read_text())["rows"]


def test_forms_that_disagree_are_not_timed(tmp_path, monkeypatch):
    """Parity first: a loop form whose output differs from the tree's is reported, not timed, and the run fails."""
    rows = _perturbed_run(tmp_path, monkeypatch, "diagonal_filter_loop", "y")
    assert all(r["status"] == "parity failed" and "tree_forward_s" not in r for r in rows)


def test_p0_forms_that_disagree_are_not_timed(tmp_path, monkeypatch):
    """Parity first at p = 0 too: a moment-form loop whose output differs from the tree's is not timed."""
    rows = _perturbed_run(tmp_path, monkeypatch, "diagonal_filter_loop_moments", "etas")
    loop_rows = [r for r in rows if r["kla_scan_form"] == "loop"]
    assert loop_rows and all(r["p0_status"] == "parity failed" and "p0_loop_vjp_s" not in r for r in loop_rows)


def test_p0_adjoint_that_disagrees_is_not_timed(tmp_path, monkeypatch):
    """Parity first for the moment-form adjoint: a loop adjoint whose lambda_v gradient is off by 1% against the
    vjp of the forward is not timed, and the run fails."""
    rows = _perturbed_run(tmp_path, monkeypatch, "diagonal_filter_adjoint_moments_loop", "lambda_v")
    loop_rows = [r for r in rows if r["kla_scan_form"] == "loop"]
    assert loop_rows and all(r["p0_status"] == "parity failed" and "p0_loop_adjoint_s" not in r for r in loop_rows)
