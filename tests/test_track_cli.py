"""``bayesfilt track``: default AIS run, CSV detection, missing values, errors, --force."""

import csv

import numpy as np
import pytest

from bayesfilt.cli import main
from bayesfilt.data import KNOT, load_ais


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return str(path)


def test_default_runs_on_shipped_ais(tmp_path, capsys):
    out, png = tmp_path / "est.csv", tmp_path / "track.png"
    assert main(["track", "--fit", "--smooth", "--out", str(out), "--plot", str(png)]) == 0
    text = capsys.readouterr().out
    assert "7 track(s)" in text and "maximum-likelihood" in text
    rows = read(out)
    assert len(rows) == 317 and png.stat().st_size > 10000
    assert {"lon", "lat", "speed", "speed_std", "course_deg", "east_std_m"} <= set(rows[0])
    # speed estimates in the file agree with the reported SOG (same bound as the AIS test)
    sog = np.concatenate([t.sog for t in load_ais()])
    speed = np.array([float(r["speed"]) for r in rows]) / KNOT
    assert np.sqrt(np.mean((speed - sog) ** 2)) < 0.30
    assert all(float(r["east_std_m"]) > 0 for r in rows)
    # never overwrite without --force
    before = out.read_bytes()
    assert main(["track", "--out", str(out), "--plot", str(png)]) == 2
    assert "exists" in capsys.readouterr().err and out.read_bytes() == before
    assert main(["track", "--out", str(out), "--no-plot", "--force", "--model", "local-level", "--quiet"]) == 0
    assert "speed" not in read(out)[0]


@pytest.mark.parametrize("model", ["cv", "ca", "local-level"])
def test_xy_csv_with_missing_values_and_irregular_times(tmp_path, model):
    rng = np.random.default_rng(0)
    t = np.cumsum(rng.uniform(0.5, 2.0, 40))
    x, y = 3.0 * t + rng.normal(0, 0.3, 40), -1.0 * t + rng.normal(0, 0.3, 40)
    rows = [[f"{a:.3f}", f"{b:.3f}", f"{c:.3f}"] for a, b, c in zip(t, x, y)]
    rows[5][1] = ""                                  # one coordinate missing
    rows[9][1] = rows[9][2] = "NaN"                  # both missing
    src = write(tmp_path / "in.csv", ["t", "X", "Y"], rows)
    out = tmp_path / "o.csv"
    assert main(["track", src, "--model", model, "--fit", "--out", str(out), "--plot", str(tmp_path / "p.png"),
                 "--quiet"]) == 0
    res = read(out)
    assert len(res) == 40 and res[9]["x_obs"] == "nan" and np.isfinite(float(res[9]["x"]))
    assert float(res[9]["x_std"]) > float(res[8]["x_std"])   # uncertainty grows without data
    if model == "cv":
        assert float(res[-1]["speed"]) == pytest.approx(np.hypot(3.0, 1.0), rel=0.1)


def test_named_columns_and_several_ids(tmp_path):
    rows = []
    for obj in ("a", "b"):
        for k in range(10):
            rows.append([obj, f"2020-01-01T00:00:{5 * k:02d}", f"{-74 + 1e-4 * k:.6f}", f"{40.5 + (obj == 'b') * 1e-3}"])
    src = write(tmp_path / "ll.csv", ["obj", "when", "longit", "latit"], rows)
    out = tmp_path / "o.csv"
    assert main(["track", src, "--id-col", "obj", "--time-col", "when", "--lon-col", "longit", "--lat-col", "latit",
                 "--q", "0.01", "--r", "4", "--smooth", "--out", str(out), "--no-plot", "--quiet"]) == 0
    res = read(out)
    assert [r["id"] for r in res] == ["a"] * 10 + ["b"] * 10
    assert float(res[9]["t_seconds"]) == 45.0
    # east speed: 1e-4 deg of longitude per 5 s at 40.5°N
    assert float(res[5]["speed"]) == pytest.approx(1e-4 * np.pi / 180 * 6378137 * np.cos(np.radians(40.5)) / 5,
                                                   rel=0.02)


def test_clear_errors(tmp_path, capsys):
    out = ["--out", str(tmp_path / "o.csv"), "--no-plot"]
    assert main(["track", str(tmp_path / "nope.csv"), *out]) == 2
    assert "cannot read" in capsys.readouterr().err
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"\x00\x01\x02\xff" * 50)
    assert main(["track", str(binary), *out]) == 2
    assert "FILE" in capsys.readouterr().err
    src = write(tmp_path / "a.csv", ["time", "foo", "bar"], [["0", "1", "2"]])
    assert main(["track", src, *out]) == 2
    err = capsys.readouterr().err
    assert "no x column" in err and "--x-col" in err
    src = write(tmp_path / "b.csv", ["time", "x", "y"], [["0", "1", "2"], ["2", "1", "2"], ["1", "1", "2"]])
    assert main(["track", src, *out]) == 2
    assert "times decrease" in capsys.readouterr().err
    src = write(tmp_path / "c.csv", ["time", "x", "y"], [["0", "1", "2"], ["", "1", "2"]])
    assert main(["track", src, *out]) == 2
    assert "time is missing" in capsys.readouterr().err
    src = write(tmp_path / "d.csv", ["time", "x", "y"], [["0", "1", "2"], ["yesterday", "1", "2"]])
    assert main(["track", src, *out]) == 2
    assert "cannot read the time" in capsys.readouterr().err
    src = write(tmp_path / "e.csv", ["time", "x", "y"], [["0", "1", "2"], ["1", "abc", "2"]])
    assert main(["track", src, *out]) == 2
    assert "non-numeric position" in capsys.readouterr().err
    src = write(tmp_path / "f.csv", ["time", "x", "y"], [["0", "1", "2"]])
    assert main(["track", src, "--x-col", "east", *out]) == 2
    assert "--x-col" in capsys.readouterr().err


def test_track_across_the_antimeridian_equals_the_same_track_elsewhere(tmp_path):
    """A vessel at 10 m/s east at 50°N, crossing ±180: speeds and east/north as for the same
    track at 10°E, longitudes written back in [-180, 180) (before, Δλ was not wrapped and the
    reference longitude was a plain mean: 16,564 m/s and lon -199.76)."""
    t = np.arange(0.0, 600.0, 60.0)
    dlon = np.degrees(10.0 * t / (6371000.0 * np.cos(np.radians(50.0))))
    outs = {}
    for name, lon0 in (("dateline", 179.97), ("elsewhere", 10.0)):
        lon = (lon0 + dlon + 180.0) % 360.0 - 180.0
        src = tmp_path / f"{name}.csv"
        src.write_text("time,lon,lat\n" + "".join(f"{a},{b:.6f},50.0\n" for a, b in zip(t, lon)))
        out = tmp_path / f"{name}_out.csv"
        assert main(["track", str(src), "--out", str(out), "--no-plot", "--q", "1e-4", "--r", "25", "--quiet"]) == 0
        outs[name] = read(out)
    a, b = outs["dateline"], outs["elsewhere"]
    for key in ("speed", "east_obs_m", "north_obs_m"):
        np.testing.assert_allclose([float(r[key]) for r in a], [float(r[key]) for r in b], atol=0.05)
    lons = np.array([float(r["lon"]) for r in a])
    assert np.all((lons >= -180) & (lons < 180)) and lons.max() > 179.9 and lons.min() < -179.9


def test_tracking_functions_name_their_arguments():
    """kind (it was called 'model' in the error), (T, 1) positions (a P0 shape error before), a
    NaN or indefinite velocity covariance (NaN standard deviations and a NumPy warning before), a
    hold-out offset past every report (NaN scores)."""
    from bayesfilt.errors import BayesfiltError
    from bayesfilt.tracking import holdout_check, speed_course, track
    t = np.arange(5.0) * 60.0
    pos = np.c_[t * 5.0, t * 0.0]
    with pytest.raises(BayesfiltError, match="kind"):
        track("foo", t, pos, 1e-3, 9.0)
    with pytest.raises(BayesfiltError, match="positions"):
        track("cv", t, pos[:, :1], 1e-3, 9.0)
    for cov in (np.full((2, 2), np.nan), np.diag([1.0, -1.0])):
        with pytest.raises(BayesfiltError, match="velocity_cov"):
            speed_course(np.array([3.0, 4.0]), cov)
    with pytest.raises(BayesfiltError, match="offset"):
        holdout_check(load_ais(), "cv", 1.4e-3, 8.8, offset=10000)
