"""benchmarks/kla_weak_prior.py: a smoke run writes its JSON, and its numbers are errors of the backends (a torch
backend whose y is off by 1% shows up as such). Each run is a fresh Python (``run_interpreted``): the script sets
TRITON_INTERPRET without CUDA, which must not reach this process."""

import json
from pathlib import Path

import pytest

from conftest import run_interpreted

pytest.importorskip("torch")
pytest.importorskip("triton")
BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "kla_weak_prior.py"

RUN = """
import json, sys
from conftest import load_script
bench = load_script({path!r}, "kla_weak_prior_bench")
{patch}
assert bench.main(["--quick", "--out", {out!r}]) == 0
"""

OFF_BY_ONE_PERCENT = """
real = bench.kla_scan
def off(*args, backend, **kw):
    y, y_var, st = real(*args, backend=backend, **kw)
    return (y * 1.01, y_var, st) if backend == "torch" else (y, y_var, st)
bench.kla_scan = off
"""


def _quick(tmp_path, patch: str = "") -> list:
    out = tmp_path / "wp.json"
    run_interpreted(RUN.format(path=str(BENCH), out=str(out), patch=patch))
    return json.loads(out.read_text())["rows"]


def test_quick_run_writes_every_row(tmp_path):
    rows = _quick(tmp_path)
    assert [(r["lam0"], r["L"], r["p_bar"]) for r in rows] == [(1e-8, 1, 0.0), (1e-8, 1, 0.01), (1.0, 1, 0.0),
                                                               (1.0, 1, 0.01)]
    names = {"v", "lambda_v", "k", "q", "a_bar", "p_bar", "lam0", "eta0"}
    for r in rows:
        assert set(r["torch_grads"]) == set(r["triton_moment_grads"]) == set(r["triton_information_grads"]) == names
        assert r["torch_y"] < 1e-5 and max(r["torch_grads"].values()) < 1e-4     # the torch backend holds at both
        if r["lam0"] == 1.0:
            assert r["triton_y"] < 1e-5


def test_a_wrong_backend_shows_in_the_numbers(tmp_path):
    assert all(abs(r["torch_y"] - 0.01) < 1e-4 for r in _quick(tmp_path, OFF_BY_ONE_PERCENT))
