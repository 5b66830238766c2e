"""Shipped data: contents against their sources, the lon/lat conversion against an
independent great-circle distance, and the AIS result (speed and course from positions
alone vs the vessels' own reported SOG/COG)."""

import csv
from importlib import resources

import numpy as np
import pytest
import statsmodels.api as sm

from bayesfilt import BayesfiltValueError
from bayesfilt.data import (KNOT, data_path, east_north_to_lonlat, fix_cog, load_ais, load_nile,
                            lonlat_to_east_north)
from bayesfilt.tracking import fit_noise, holdout_check, speed_check

#: Bounds set from the measurement (docs/tutorials/ais.md) with margin: measured on the
#: shipped 317 reports with the MLE constant-velocity model: speed RMS 0.194 kn, course
#: RMS 2.84 deg, hold-out position RMS 13.4 m with 91 % inside the 95 % ellipses.
SPEED_RMS_BOUND_KNOTS = 0.30
COURSE_RMS_BOUND_DEG = 4.5


def test_package_data_found():
    files = {p.name for p in resources.files("bayesfilt.data").iterdir()}
    assert {"ais_nyharbor.csv", "nile.csv", "README.md"} <= files
    with pytest.raises(BayesfiltValueError):
        data_path("missing.csv")


def test_nile_equals_statsmodels_copy():
    years, flow = load_nile()
    ref = sm.datasets.nile.load_pandas().data
    np.testing.assert_array_equal(years, ref["year"].to_numpy().astype(int))
    np.testing.assert_array_equal(flow, ref["volume"].to_numpy())
    assert years[0] == 1871 and years[-1] == 1970 and len(flow) == 100


def test_ais_extract_contents():
    tracks = load_ais()
    assert len(tracks) == 7 and sum(len(t) for t in tracks) == 317
    assert [t.mmsi for t in tracks] == sorted(t.mmsi for t in tracks)
    for t in tracks:
        assert np.all(np.diff(t.times) > 0)                      # irregular, strictly increasing here
        assert np.diff(t.times).min() >= 60 and np.diff(t.times).max() <= 160
        assert np.isfinite(t.positions).all() and t.positions.shape == (len(t), 2)
        assert t.sog.min() >= 2.0                                # the selection rule
        assert np.all((t.cog >= 0) & (t.cog < 360))


def test_fixed_cog_agrees_with_heading():
    """The COG fix is checked against an independent column: the vessels' gyro heading."""
    with open(data_path("ais_nyharbor.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    cog = fix_cog([float(r["COG"]) for r in rows])
    hdg = np.array([float(r["Heading"]) for r in rows])
    ok = hdg < 360                                                # 511 = heading not available
    assert ok.sum() > 100
    diff = np.abs((cog[ok] - hdg[ok] + 180) % 360 - 180)
    assert np.median(diff) < 10
    raw_neg = np.array([float(r["COG"]) for r in rows])[ok] < 0
    assert raw_neg.any() and np.median(diff[raw_neg]) < 10     # the wrapped values agree too


def haversine(lon1, lat1, lon2, lat2, R=6371008.8):
    p1, p2 = np.radians(lat1), np.radians(lat2)
    a = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(np.radians(lon2 - lon1) / 2) ** 2
    return 2 * R * np.arcsin(np.sqrt(a))


def test_local_metres_against_great_circle():
    rng = np.random.default_rng(0)
    lon = -74.0 + rng.uniform(-0.2, 0.2, 50)
    lat = 40.65 + rng.uniform(-0.15, 0.15, 50)
    e, n = lonlat_to_east_north(lon, lat, -74.0, 40.65)
    d_ours = np.hypot(e[1:] - e[:-1], n[1:] - n[:-1])
    d_ref = haversine(lon[:-1], lat[:-1], lon[1:], lat[1:])
    np.testing.assert_allclose(d_ours, d_ref, rtol=6e-3)        # sphere vs ellipsoid + frame distortion
    lon2, lat2 = east_north_to_lonlat(e, n, -74.0, 40.65)
    np.testing.assert_allclose(lon2, lon, atol=1e-12)
    np.testing.assert_allclose(lat2, lat, atol=1e-12)


@pytest.fixture(scope="module")
def ais_fit():
    tracks = load_ais()
    return tracks, fit_noise("cv", [(t.times, t.positions) for t in tracks])


def test_ais_speed_and_course_from_positions_match_reports(ais_fit):
    tracks, fit = ais_fit
    q, r = fit.theta
    assert fit.success and np.all(np.isfinite(fit.stderr))
    assert 1e-4 < q < 1e-2 and 1.0 < r < 50.0                   # m²/s³ and m² (GPS-level position noise)
    chk = speed_check(tracks, "cv", q, r, smooth=True)
    # independent recomputation of the headline figure from the estimates
    ds = np.concatenate([e.speed / KNOT - t.sog for e, t in zip(chk.estimates, tracks)])
    assert np.sqrt(np.mean(ds**2)) == pytest.approx(chk.speed_rms_all, rel=1e-12)
    assert chk.speed_rms_all < SPEED_RMS_BOUND_KNOTS
    assert chk.course_rms_all < COURSE_RMS_BOUND_DEG
    # the smoother beats the filter (which only sees the past)
    filt = speed_check(tracks, "cv", q, r, smooth=False, skip=2)
    assert filt.speed_rms_all > chk.speed_rms_all


def test_ais_holdout_positions(ais_fit):
    tracks, fit = ais_fit
    h = holdout_check(tracks, "cv", *fit.theta)
    assert h.count == 78
    assert h.rms < 20.0                                          # metres, measured 13.4
    assert 0.85 <= h.coverage <= 1.0                              # 95 % ellipses hold ~95 %
