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


def test_ellipse_refuses_what_is_not_a_covariance():
    """eigh reads one triangle and a negative eigenvalue was clipped to 0: an asymmetric or
    indefinite 'covariance' drew a circle or a line; now a named error (a singular PSD one is drawn)."""
    from bayesfilt.errors import BayesfiltValueError
    for bad in ([[1.0, 5.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, -4.0]], [[1.0, 2.0], [2.0, 1.0]], np.eye(3)):
        with pytest.raises(BayesfiltValueError, match="cov"):
            covariance_ellipse([0.0, 0.0], bad)
    e = covariance_ellipse([0.0, 0.0], [[1.0, 1.0], [1.0, 1.0]], prob=0.95)        # rank 1: a segment
    assert np.isclose(e.width, 2 * np.sqrt(chi2.ppf(0.95, 2) * 2.0)) and e.height == 0.0


def test_diffuse_results_plot_and_their_first_step_tests_nothing():
    """A filter result with an exact-diffuse first step (NaN moments by design) plots without its
    ellipse there, and nis() gives that step 0 degrees of freedom; the plot's 'inside' share counts
    only steps with bounds (it counted unobserved steps as outside: 48% for 95%). The share is
    recounted here from chi2 bounds directly."""
    import bayesfilt
    from bayesfilt.consistency import chi2_bounds, nis
    model = bayesfilt.models.random_walk(1.0, 1.0, dim=2)                          # diffuse by default
    _, y = model.simulate(30, seed=3)
    y[0] = y[1::2] = np.nan                      # steps 0 and 1 unobserved: the state is identified at step 2
    res = bayesfilt.kalman_filter(model, y)
    assert np.isnan(res.means[:2]).all() and np.isfinite(res.means[2:]).all()
    fig = track_2d(observations=y, estimates=res.means, covs=res.covs, prob=0.29)
    assert len(fig.axes[0].patches) == 28 and "29%" in fig.axes[0].get_title()       # int(0.29 * 100) was 28
    v, k = nis(model, y, res)
    assert k[2] == 0 and v[2] == 0                # observed, but predicted from an unidentified state
    assert (k[:2] == 0).all() and (k[3::2] == 0).all() and (k[4::2] == 2).all()
    lo, hi = chi2_bounds(2, 1, 0.95)
    share = np.mean((v[k > 0] >= lo) & (v[k > 0] <= hi))
    assert f"{share * 100:.0f}% of steps inside" in nis_plot(v, k).axes[0].get_title()


def test_band_and_variance_plot_arguments():
    from bayesfilt.errors import BayesfiltError
    from bayesfilt.plot import posterior_variance
    t = np.arange(5.0)
    for kw in ({"k": -2}, {"k": "2"}, {"k": float("nan")}, {"variances": -np.ones(5)}):
        with pytest.raises(BayesfiltError):
            series_1d(t, means=np.zeros(5), variances=kw.pop("variances", np.ones(5)), **kw)
    for kw in ({"variance": -np.ones((2, 5))}, {"variance": np.ones((2, 5)), "marks": "ab"},
               {"variance": np.ones((2, 5)), "marks": [100]}, {"variance": np.full((2, 5), np.nan)}):
        with pytest.raises(BayesfiltError):
            posterior_variance(**kw)
