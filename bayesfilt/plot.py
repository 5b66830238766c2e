"""Uncertainty you can see: matplotlib figures of tracks, ellipses and bands.

Every function returns a ``matplotlib.figure.Figure`` built without pyplot's global
state, so no display is ever needed.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse
from scipy.stats import chi2


def covariance_ellipse(mean, cov, prob: float = 0.95, **kwargs) -> Ellipse:
    """A matplotlib ``Ellipse`` holding probability ``prob`` of N(mean, cov) (2-D)."""
    w, V = np.linalg.eigh(np.asarray(cov, float))
    scale = np.sqrt(chi2.ppf(prob, df=2))                       # Mahalanobis radius of the prob contour
    width, height = 2 * scale * np.sqrt(np.clip(w[::-1], 0, None))
    angle = np.degrees(np.arctan2(V[1, -1], V[0, -1]))
    return Ellipse(xy=mean, width=width, height=height, angle=angle, **kwargs)


def track_2d(observations=None, truth=None, estimates=None, covs=None, *, smoothed=None, smoothed_covs=None,
             prob: float = 0.95, every: int = 1, title: str | None = None, units: str = "m") -> Figure:
    """Plot a 2-D track: truth, observations, estimates with ``prob`` covariance ellipses.

    Args:
        observations: (T, 2) observed positions (NaN rows skipped).
        truth: (T, 2) true positions, optional.
        estimates, covs: filtered positions (T, 2) and their covariances (T, 2, 2).
        smoothed, smoothed_covs: smoothed positions and covariances, optional.
        prob: probability mass inside each ellipse. every: draw every k-th ellipse.
    """
    fig = Figure(figsize=(7, 6))
    ax = fig.add_subplot()
    if truth is not None:
        ax.plot(*np.asarray(truth).T, "k-", lw=1, label="truth")
    if observations is not None:
        ax.plot(*np.asarray(observations).T, ".", color="0.5", ms=3, label="observations")
    for est, cv, color, name in ((estimates, covs, "C0", "filtered"), (smoothed, smoothed_covs, "C1", "smoothed")):
        if est is None:
            continue
        est = np.asarray(est)
        ax.plot(*est.T, "-", color=color, lw=1.2, label=name)
        if cv is not None:
            for t in range(0, len(est), every):
                ax.add_patch(covariance_ellipse(est[t], np.asarray(cv)[t], prob, fill=False, color=color,
                                                lw=0.6, alpha=0.7))
    ax.set_xlabel(f"east [{units}]")
    ax.set_ylabel(f"north [{units}]")
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(loc="best", fontsize=8)
    ax.set_title(title or f"track with {int(prob * 100)}% covariance ellipses")
    return fig
