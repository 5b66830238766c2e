"""The main demo (`make demo`): runs, writes its plots, and its estimates beat the raw observations."""

import os

from bayesfilt.cli import main as cli_main
from bayesfilt.demo import run_demo


def test_demo_simulated_part(tmp_path):
    out = run_demo(str(tmp_path), verbose=False, ais=False)
    for path in out["plots"]:
        assert os.path.getsize(path) > 10_000                       # a real PNG, not an empty file
    # on observed steps the smoother beats the raw sensor, and the filter does too
    assert out["rmse_smoothed"] < out["rmse_filtered"] < out["rmse_observations"]
    # through the gaps the smoother (which sees both sides) beats the filter (which only predicts)
    assert out["rmse_smoothed_gaps"] < out["rmse_filtered_gaps"]
    assert out["parallel"]["max_diff_filter"] < 1e-9 and out["parallel"]["max_diff_smoother"] < 1e-9


def test_cli_demo_refuses_bad_out(tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("not a folder")
    assert cli_main(["demo", "--out", str(target)]) == 2
