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
