"""Figures: built without pyplot, ellipse geometry against the analytic contour."""

import io
import subprocess
import sys

import numpy as np
import pytest
from matplotlib.figure import Figure
from scipy.stats import chi2

from bayesfilt.plot import covariance_ellipse, nees_plot, nis_plot, series_1d, track_2d, tracks_overview


def rotated_cov(angle_deg, sx, sy):
    a = np.radians(angle_deg)
    V = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return V @ np.diag([sx**2, sy**2]) @ V.T


def test_ellipse_geometry_analytic():
    cov = rotated_cov(30.0, 3.0, 1.0)
    e = covariance_ellipse([1.0, -2.0], cov, prob=0.95)
    k = np.sqrt(chi2.ppf(0.95, 2))                                  # = sqrt(-2 log 0.05)
    assert k == pytest.approx(np.sqrt(-2 * np.log(0.05)))
    assert e.width == pytest.approx(2 * k * 3.0) and e.height == pytest.approx(2 * k * 1.0)
    assert (e.angle % 180) == pytest.approx(30.0)
    assert tuple(e.center) == (1.0, -2.0)


def test_ellipse_holds_its_probability():
    cov = rotated_cov(-50.0, 2.0, 0.5)
    e = covariance_ellipse([0.0, 0.0], cov, prob=0.9)
    pts = np.random.default_rng(0).multivariate_normal([0, 0], cov, size=20000)
    path = e.get_patch_transform().transform_path(e.get_path())
    frac = path.contains_points(pts).mean()
    assert frac == pytest.approx(0.9, abs=0.01)


def _png(fig):
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_figure_renders():
    T = 30
    rng = np.random.default_rng(1)
    xy = np.cumsum(rng.standard_normal((T, 2)), 0)
    covs = np.tile(np.eye(2), (T, 1, 1))
    figs = [
        track_2d(observations=xy, truth=xy, estimates=xy, covs=covs, smoothed=xy, smoothed_covs=covs, every=3),
        series_1d(np.arange(T), xy[:, 0], xy[:, 0], np.ones(T), smoothed=xy[:, 0], smoothed_variances=np.ones(T),
                  truth=xy[:, 0]),
        nis_plot(rng.chisquare(2, (5, T)), 2),
        nees_plot(rng.chisquare(4, T), 4, times=np.arange(T) * 0.5),
        tracks_overview([{"observations": xy, "estimates": xy, "label": "a"}, {"observations": xy + 5}]),
    ]
    for fig in figs:
        assert isinstance(fig, Figure) and _png(fig)
    assert len(figs[0].axes[0].patches) == 2 * 10                     # every 3rd of 30 steps, two estimates


def test_band_is_two_sigma():
    t = np.arange(4.0)
    fig = series_1d(t, means=np.zeros(4), variances=np.full(4, 9.0))
    verts = fig.axes[0].collections[0].get_paths()[0].vertices
    assert verts[:, 1].max() == pytest.approx(6.0) and verts[:, 1].min() == pytest.approx(-6.0)


def test_no_pyplot_needed():
    code = ("import sys, numpy as np, bayesfilt.plot as p; "
            "p.nis_plot(np.ones(5), 1).savefig(__import__('io').BytesIO()); "
            "assert 'matplotlib.pyplot' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_chi2_plot_draws_the_run_average_bounds():
    vals = np.random.default_rng(2).chisquare(3, (8, 20))
    fig = nees_plot(vals, 3, prob=0.9)
    ax = fig.axes[0]
    avg, lo, hi = (np.asarray(ax.lines[i].get_ydata()) for i in range(3))
    np.testing.assert_allclose(avg, vals.mean(0))
    np.testing.assert_allclose(lo, chi2.ppf(0.05, 24) / 8)
    np.testing.assert_allclose(hi, chi2.ppf(0.95, 24) / 8)
