"""benchmarks/kla_scan_ab.py (a GPU benchmark): its argument checks and the kernel-module swap of ``--baseline``,
which run without a GPU."""

import types
from pathlib import Path

import pytest
from conftest import load_script

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def ab():
    return load_script(BENCH / "kla_scan_ab.py", "kla_scan_ab_args")


def test_bad_arguments_are_refused_before_anything_runs(ab, tmp_path, capsys):
    out = str(tmp_path / "r.json")
    with pytest.raises(SystemExit):                     # baseline tunes without baseline kernels
        ab.main(["--tunes", "[{}]", "--baseline-tunes", '[{"bwd_mom": 1}]', "--out", out])
    assert "--baseline-tunes needs --baseline" in capsys.readouterr().err
    with pytest.raises(SystemExit):                     # a baseline file that is not there
        ab.main(["--tunes", "[{}]", "--baseline", str(tmp_path / "missing.py"), "--out", out])
    assert "is not a file" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown key"):  # a misspelt tune key
        ab.main(["--tunes", '[{"bwd_mum": 1}]', "--out", out])


def test_baseline_kernels_are_swapped_in_for_their_calls_only(ab):
    """Each wrapped call sees the baseline module as the launch code's kernel module; before, after and after an
    exception the working tree's is back."""
    own, base = ab.kla.K, types.SimpleNamespace(name="baseline")
    seen = []

    def fwd():
        seen.append(ab.kla.K)

    def bwd():
        seen.append(ab.kla.K)
        raise RuntimeError("launch failed")

    timers = ab._with_kernels(base, {"fwd": fwd, "bwd": bwd})
    timers["fwd"]()
    assert ab.kla.K is own
    with pytest.raises(RuntimeError):
        timers["bwd"]()
    assert seen == [base, base] and ab.kla.K is own


def test_baseline_file_loads_as_its_own_module(ab, tmp_path):
    f = tmp_path / "base.py"
    f.write_text("MARK = 7\n")
    mod = ab._load_kernels(str(f))
    assert mod.MARK == 7 and mod is not ab.kla.K
