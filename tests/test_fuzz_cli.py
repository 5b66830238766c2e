"""Fuzz the command line in-process (``bayesfilt.cli.main(argv)``) with generated files and flags.

Every run ends with exit code 0 and a well-formed output, or exit code 2 and a one-line
message on stderr; never a traceback, never another exception, and an existing output is never
overwritten without ``--force``. Generated inputs: CSV files with missing/renamed columns,
empty cells, NaN/inf/huge numbers, unparsable times, decreasing times (per id), ragged rows,
binary garbage; missing files and folders given as files; bad values for every flag of
``track``, ``train``, ``check`` and ``demo``.
"""

import contextlib
import csv
import io
import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bayesfilt.cli import main
from fuzz_helpers import FUZZ, Tally

_ids = itertools.count()


def run_cli(argv):
    """(exit code, stdout, stderr) of main(argv); argparse's SystemExit counts as its code."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as exc:           # argparse: usage error, exit status 2
            rc = exc.code
    return rc, out.getvalue(), err.getvalue()


def assert_clean(rc, err, argv):
    assert rc in (0, 2), f"{argv}: exit code {rc!r}; stderr: {err[-500:]}"
    assert "Traceback" not in err, f"{argv}: traceback on stderr:\n{err}"
    if rc == 2:
        assert "error" in err.lower() and err.strip(), f"{argv}: exit 2 without a message"
    return "error" if rc == 2 else "result"


CELLS = ["0", "1.5", "-3", "", "nan", "NaN", "inf", "-inf", "1e308", "-1e308", "1e-320", "abc", "2020-06-30T00:00:05",
         "2020-06-30 00:00:07", "null", " 7 ", "1,5", "0x10"]
HEADERS = [["time", "x", "y"], ["t", "east", "north"], ["timestamp", "lon", "lat"], ["time", "x"], ["id", "time", "x", "y"],
           ["Time", "X", "Y"], ["time", "a", "b"], [], ["time", "x", "y", "extra"], ["mmsi", "BaseDateTime", "LON", "LAT"]]


@st.composite
def csv_case(draw):
    header = draw(st.sampled_from(HEADERS))
    n_rows = draw(st.integers(0, 6))
    style = draw(st.sampled_from(["numbers", "numbers", "cells", "ragged", "binary", "sorted_ids", "bad_order"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    rows = []
    for i in range(n_rows):
        row = []
        for h in header:
            hl = h.lower()
            if style == "cells":
                row.append(draw(st.sampled_from(CELLS)))
            elif hl in ("id", "mmsi"):
                row.append(str(i % 2))
            elif hl in ("time", "t", "timestamp", "basedatetime"):
                row.append(str(float(i if style != "bad_order" else (n_rows - i))))
            elif hl in ("lon",):
                row.append(f"{-74.0 + 0.001 * i:.6f}")
            elif hl in ("lat",):
                row.append(f"{40.6 + 0.001 * i:.6f}")
            else:
                row.append(f"{rng.standard_normal() * 10:.3f}")
        if style == "ragged" and i == n_rows - 1:
            row = row[:-1]
        rows.append(row)
    flags = draw(st.lists(st.sampled_from([
        ["--model", "ca"], ["--model", "local-level"], ["--smooth"], ["--q", "0.1"], ["--r", "2"], ["--q", "-1"],
        ["--r", "0"], ["--q", "nan"], ["--r", "inf"], ["--q", "1e308"], ["--time-col", "zz"], ["--x-col", "x"],
        ["--id-col", "nope"], ["--lon-col", "x"], ["--model", "bogus"], ["--q", "abc"]]), max_size=2))
    return header, rows, style, [f for pair in flags for f in pair]


def test_track_on_generated_files(tmp_path, record_property):
    tally = Tally()

    @FUZZ
    @given(csv_case())
    def run(case):
        header, rows, style, flags = case
        k = next(_ids)
        src, out = tmp_path / f"in{k}.csv", tmp_path / f"out{k}.csv"
        if style == "binary":
            src.write_bytes(bytes(np.random.default_rng(k).integers(0, 256, 64, dtype=np.uint8)))
        else:
            with open(src, "w", newline="") as f:
                w = csv.writer(f)
                if header:
                    w.writerow(header)
                w.writerows(rows)
        argv = ["track", str(src), "--no-plot", "--quiet", "--out", str(out), *flags]
        rc, _, err = run_cli(argv)
        outcome = assert_clean(rc, err, argv)
        if rc == 0:
            with open(out, newline="") as f:
                got = list(csv.DictReader(f))
            assert len(got) == len(rows), f"{argv}: {len(got)} output rows for {len(rows)} input rows"
            for r in got:
                for col in r:
                    if col in ("x", "y", "x_std", "y_std", "east_m", "north_m", "east_std_m", "north_std_m"):
                        assert np.isfinite(float(r[col])), f"{argv}: non-finite {col} in the output"
            # never overwritten without --force
            before = out.read_bytes()
            rc2, _, err2 = run_cli(argv)
            assert rc2 == 2 and "--force" in err2 and out.read_bytes() == before
            tally.add(outcome)
        else:
            assert not out.exists() or out.stat().st_size > 0
            tally.add(outcome)

    run()
    tally.report(record_property)


BAD_PATHS = ["missing.csv", "a_folder", "a_folder/", "", "in/../missing.csv"]


@pytest.mark.parametrize("target", BAD_PATHS)
def test_track_bad_input_paths(tmp_path, monkeypatch, target):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_folder").mkdir()
    rc, _, err = run_cli(["track", target, "--no-plot", "--out", "o.csv"])
    assert rc == 2 and "Traceback" not in err and "Fix:" in err
    assert not (tmp_path / "o.csv").exists()


def test_track_refuses_to_overwrite_and_checks_plot_first(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.csv").write_text("time,x,y\n0,0,0\n1,1,1\n2,2,1\n")
    for existing in ("o.csv", "p.png"):
        (tmp_path / existing).write_text("keep me")
    cases = [["--out", "o.csv", "--no-plot"], ["--out", "new.csv", "--plot", "p.png"],
             ["--out", "new2.csv", "--plot", "x.notaformat"], ["--out", ".", "--no-plot", "--force"]]
    for flags in cases:
        rc, _, err = run_cli(["track", "in.csv", "--quiet", *flags])
        assert rc == 2 and "Traceback" not in err and "Fix:" in err, (flags, err)
    assert (tmp_path / "o.csv").read_text() == "keep me" and (tmp_path / "p.png").read_text() == "keep me"
    assert not (tmp_path / "new.csv").exists() and not (tmp_path / "new2.csv").exists()
    rc, _, _ = run_cli(["track", "in.csv", "--quiet", "--out", "o.csv", "--no-plot", "--force"])
    assert rc == 0 and (tmp_path / "o.csv").read_text().startswith("id,time")


TRAIN_FLAGS = {
    "--steps": ["0", "-1", "x", "1.5"], "--batch-size": ["0", "-4"], "--lr": ["0", "-1", "nan", "inf", "abc"],
    "--d-model": ["0", "-8"], "--d-state": ["0"], "--layers": ["0"], "--length": ["0", "-3"], "--seed": ["-1", "x"],
    "--mixer": ["bogus"], "--dtype": ["float16"], "--device": ["bogus", "cuda:99"], "--backend": ["bogus"],
    "--target-acc": ["2", "-1"], "--weight-decay": ["-1"], "--grad-clip": ["0", "inf"], "--eval-every": ["0"],
    "--posterior-samples": ["-1"], "--expand": ["0"], "--heads": ["0"],
}


def test_train_bad_flags(tmp_path, record_property):
    """Each generated bad flag stops the run before training with exit 2 and a message."""
    tally = Tally()
    tiny = ["--length", "4", "--n-train", "8", "--n-test", "4", "--d-model", "8", "--d-state", "2", "--batch-size", "4",
            "--steps", "1", "--device", "cpu", "--no-progress"]

    @FUZZ
    @given(st.sampled_from(sorted(TRAIN_FLAGS)), st.data(), st.sampled_from(["a5", "s5", "selective_copy", "bogus"]))
    def run(flag, data, task):
        value = data.draw(st.sampled_from(TRAIN_FLAGS[flag]))
        out = tmp_path / f"run{next(_ids)}"
        argv = ["train", task, *tiny, "--out", str(out), flag, value]
        rc, _, err = run_cli(argv)
        assert rc == 2, f"{argv}: exit {rc}; {err[-300:]}"
        tally.add(assert_clean(rc, err, argv))
        assert not (out / "checkpoint.pt").exists()

    run()
    tally.report(record_property, need_both=False)


def test_train_output_rules(tmp_path, monkeypatch):
    """An existing run is never overwritten without --force; a file as --out is refused; --resume continues."""
    monkeypatch.chdir(tmp_path)
    base = ["train", "a5", "--length", "4", "--n-train", "8", "--n-test", "4", "--d-model", "8", "--d-state", "2",
            "--batch-size", "4", "--eval-every", "1", "--device", "cpu", "--no-progress"]
    tiny = base + ["--steps", "2"]
    assert run_cli(tiny + ["--out", "r"])[0] == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir()}
    rc, _, err = run_cli(tiny + ["--out", "r"])
    assert rc == 2 and "--force" in err and "Traceback" not in err
    assert {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir()} == before
    (tmp_path / "afile").write_text("x")
    rc, _, err = run_cli(tiny + ["--out", "afile"])
    assert rc == 2 and "Fix:" in err and (tmp_path / "afile").read_text() == "x"
    rc, _, err = run_cli(base + ["--steps", "3", "--out", "r", "--resume"])
    assert rc == 2 and "settings differ" in err                       # a resume with other settings is refused
    assert run_cli(tiny + ["--out", "r", "--force"])[0] == 0


@pytest.mark.parametrize("argv", [["check", "--T", "0"], ["check", "--T", "-5", "--no-kla"], ["check", "--T", "x"],
                                  ["check", "--seed", "x"], ["check", "--seed", "-1", "--no-kla"], ["demo", "--seed", "x"],
                                  ["bogus"], ["track", "--bogus"],
                                  ["train"], ["train", "a5", "--steps"], ["--version-typo"],
                                  ["generate", "no_such_run"], ["generate", "/"], ["generate", "x", "--tokens", "x"],
                                  ["generate", "x", "--temperature", "hot"], ["generate"]])
def test_other_subcommands_bad_argv(argv):
    rc, out, err = run_cli(argv)
    assert rc == 2 and "Traceback" not in err and err.strip(), (argv, rc, err)


def test_demo_never_overwrites(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "track.png").write_text("keep me")
    (tmp_path / "afile").write_text("x")
    for argv in (["demo", "--out", "plots"], ["demo", "--out", "afile"]):
        rc, _, err = run_cli(argv)
        assert rc == 2 and "Fix:" in err and "Traceback" not in err
    assert (tmp_path / "plots" / "track.png").read_text() == "keep me"
