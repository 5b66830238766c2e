"""Uncertainty you can see: matplotlib figures of tracks, ellipses and bands.

Every function returns a ``matplotlib.figure.Figure`` built without pyplot's global
state, so no display is ever needed.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse
from scipy.stats import chi2

from .errors import type_error, value_error
from .validation import as_float_array, as_int, as_real_scalar, check_psd, check_symmetric


def _arr(x, arg, *, core=None, length=None, min_len=0):
    """``x`` as a float array, validated at the plotting boundary: trailing ``core`` shape, leading ``length``."""
    a = as_float_array(x, arg).astype(float)
    if core is not None and (a.ndim != 1 + len(core) or a.shape[1:] != tuple(core)):
        raise value_error(arg, f"has shape {a.shape}", f"pass shape (T, {', '.join(map(str, core))})" if core
                          else "pass a 1-D array")
    if length is not None and (a.ndim < 1 or a.shape[0] != length):
        raise value_error(arg, f"has shape {a.shape}, but the other series have length {length}",
                          "pass series of the same length")
    if a.ndim >= 1 and a.shape[0] < min_len:
        raise value_error(arg, f"has shape {a.shape}", f"pass at least {min_len} value(s)")
    return a


def covariance_ellipse(mean, cov, prob: float = 0.95, **kwargs) -> Ellipse:
    """A matplotlib ``Ellipse`` holding probability ``prob`` of N(mean, cov) (2-D).

    The contour (x - mean)^T cov^{-1} (x - mean) = χ²_prob(2); its semi-axes are
    sqrt(χ²_prob(2) λ_i) along the eigenvectors of ``cov``.

    Args:
        mean: (2,) centre.
        cov: (2, 2) covariance.
        prob: probability inside the ellipse.
        **kwargs: passed to ``matplotlib.patches.Ellipse`` (colour, line width, ...).

    Returns:
        The ``Ellipse`` patch (width/height are full axis lengths, angle in degrees).

    Example:
        >>> e = covariance_ellipse([0, 0], [[4.0, 0.0], [0.0, 1.0]], prob=0.95)
        >>> round(float(e.width) / 2 / 2.0, 4)     # semi-axis / sigma = sqrt(chi2_0.95(2))
        2.4477
    """
    mean = _arr(mean, "mean", core=())
    if mean.shape != (2,):
        raise value_error("mean", f"has shape {mean.shape}", "pass a 2-D centre of shape (2,)")
    cov = as_float_array(cov, "cov").astype(float)
    if cov.shape != (2, 2):
        raise value_error("cov", f"has shape {cov.shape}", "pass a 2 x 2 covariance")
    if not (np.isfinite(mean).all() and np.isfinite(cov).all()):
        raise value_error("cov", "or mean holds NaN/inf", "pass a finite mean and covariance")
    check_symmetric(cov, "cov")                                 # eigh would read one triangle only
    check_psd(cov, "cov", strict=False)                         # and a negative eigenvalue would draw a line
    prob = as_real_scalar(prob, "prob", low=0.0, low_open=True, high=1.0, high_open=True,
                          fix="pass a probability in (0, 1)")
    w, V = np.linalg.eigh(cov)
    scale = np.sqrt(chi2.ppf(prob, df=2))                       # Mahalanobis radius of the prob contour
    width, height = 2 * scale * np.sqrt(np.clip(w[::-1], 0, None))
    angle = np.degrees(np.arctan2(V[1, -1], V[0, -1]))
    return Ellipse(xy=mean, width=width, height=height, angle=angle, **kwargs)


def track_2d(observations=None, truth=None, estimates=None, covs=None, *, smoothed=None, smoothed_covs=None,
             prob: float = 0.95, every: int = 1, title: str | None = None, units: str = "m") -> Figure:
    """Plot a 2-D track: truth, observations, estimates with ``prob`` covariance ellipses.

    Args:
        observations: (T, 2) observed positions (NaN rows skipped; so are steps whose estimate or
            covariance is not finite, e.g. an exact-diffuse period).
        truth: (T, 2) true positions, optional.
        estimates, covs: filtered positions (T, 2) and their covariances (T, 2, 2).
        smoothed, smoothed_covs: smoothed positions and covariances, optional.
        prob: probability mass inside each ellipse.
        every: draw every k-th ellipse.
        title: axes title.
        units: axis units.

    Returns:
        A ``matplotlib.figure.Figure`` (no pyplot, no display).

    Example:
        >>> import numpy as np
        >>> fig = track_2d(observations=np.zeros((3, 2)), estimates=np.zeros((3, 2)), covs=np.tile(np.eye(2), (3, 1, 1)))
        >>> len(fig.axes[0].patches)
        3
    """
    every = as_int(every, "every", low=1, fix="pass a positive step between ellipses")
    truth = None if truth is None else _arr(truth, "truth", core=(2,))
    observations = None if observations is None else _arr(observations, "observations", core=(2,))
    for e, c, en, cn in ((estimates, covs, "estimates", "covs"), (smoothed, smoothed_covs, "smoothed", "smoothed_covs")):
        if e is None and c is not None:
            raise value_error(cn, "is given without its positions", f"pass {en} too")
        if e is not None:
            n = _arr(e, en, core=(2,)).shape[0]
            if c is not None:
                _arr(c, cn, core=(2, 2), length=n)
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
            cv = np.asarray(cv, float)
            for t in range(0, len(est), every):
                if not (np.isfinite(est[t]).all() and np.isfinite(cv[t]).all()):
                    continue                                    # e.g. an exact-diffuse step (NaN by design)
                ax.add_patch(covariance_ellipse(est[t], cv[t], prob, fill=False, color=color,
                                                lw=0.6, alpha=0.7))
    unit = f" [{units}]" if units else ""
    ax.set_xlabel(f"east{unit}")
    ax.set_ylabel(f"north{unit}")
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(loc="best", fontsize=8)
    ax.set_title(title or f"track with {round(prob * 100):g}% covariance ellipses")
    return fig


def series_1d(times, observations=None, means=None, variances=None, *, smoothed=None, smoothed_variances=None,
              truth=None, k: float = 2.0, title: str | None = None, xlabel: str = "time",
              ylabel: str = "value", labels=("filtered", "smoothed")) -> Figure:
    """Plot a scalar series with estimates and ±k σ bands (k = 2: about 95 %).

    Args:
        times: (T,) x-axis values.
        observations: (T,) data (NaN skipped), optional.
        means, variances: (T,) filtered estimates and their variances, optional.
        smoothed, smoothed_variances: (T,) smoothed estimates and variances, optional.
        truth: (T,) true values, optional.
        k: band half-width in standard deviations.
        title, xlabel, ylabel: axes title and labels.
        labels: legend names of the two estimates.

    Returns:
        A ``matplotlib.figure.Figure``.

    Example:
        >>> import numpy as np
        >>> fig = series_1d(np.arange(5), np.ones(5), np.ones(5), np.ones(5))
        >>> len(fig.axes[0].collections)     # one band
        1
    """
    k = as_real_scalar(k, "k", low=0.0, low_open=True, fix="pass a positive number of standard deviations, e.g. 2")
    fig = Figure(figsize=(8, 4))
    ax = fig.add_subplot()
    t = _arr(times, "times", core=())
    T = t.shape[0]
    for nm, val in (("truth", truth), ("observations", observations), ("means", means), ("variances", variances),
                    ("smoothed", smoothed), ("smoothed_variances", smoothed_variances)):
        if val is not None:
            a = _arr(val, nm, core=(), length=T)
            if nm.endswith("variances") and (a < 0).any():
                i = int(np.argmax(a < 0))
                raise value_error(nm, f"holds a negative variance {a[i]:.6g} at index {i}", "pass variances >= 0")
    if truth is not None:
        ax.plot(t, np.asarray(truth, float), "k-", lw=1, label="truth")
    if observations is not None:
        ax.plot(t, np.asarray(observations, float), ".", color="0.4", ms=4, label="observations")
    for est, var, color, name in ((means, variances, "C0", labels[0]), (smoothed, smoothed_variances, "C1", labels[1])):
        if est is None:
            continue
        est = np.asarray(est, float)
        ax.plot(t, est, "-", color=color, lw=1.3, label=name)
        if var is not None:
            sd = np.sqrt(np.asarray(var, float))
            ax.fill_between(t, est - k * sd, est + k * sd, color=color, alpha=0.2, lw=0,
                            label=f"{name} ±{k:g}σ")                           # mean ± k σ
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(loc="best", fontsize=8)
    if title:
        ax.set_title(title)
    return fig


def _chi2_figure(values, dof, prob, times, name, dof_label, xlabel=None):
    from .consistency import chi2_bounds
    v = as_float_array(values, "values").astype(float)
    if v.ndim == 1:
        v = v[None]
    if v.ndim != 2 or v.shape[-1] < 1:
        raise value_error("values", f"has shape {v.shape}", "pass statistics of shape (T,) or (runs, T), T >= 1")
    n_runs, T = v.shape[-2], v.shape[-1]
    t = np.arange(1, T + 1) if times is None else _arr(times, "times", core=(), length=T)
    try:
        k = np.broadcast_to(as_float_array(dof, "dof").astype(float), v.shape)
    except ValueError:
        raise value_error("dof", f"does not broadcast to the values' shape {v.shape}",
                          "pass a scalar or per-value degrees of freedom") from None
    if not (k > 0).any():
        raise value_error("dof", "is not positive anywhere", "pass positive degrees of freedom")
    bad = (k > 0) & ~np.isfinite(v)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise value_error("values", f"holds {v[where]} at index {where}, where the degrees of freedom are "
                          f"{k[where]:g}", "pass finite statistics, or 0 degrees of freedom where there is none "
                          "(e.g. an exact-diffuse step)")
    avg = v.mean(0)                                                        # average over runs, per step
    kk = k.mean(0)
    fig = Figure(figsize=(8, 4))
    ax = fig.add_subplot()
    ax.plot(t, avg, ".-", color="C0", lw=0.8, ms=3, label=f"{name}, average of {n_runs} run(s)")
    lo = np.full(T, np.nan)
    hi = np.full(T, np.nan)
    for j in range(T):
        if kk[j] > 0:
            lo[j], hi[j] = chi2_bounds(kk[j], n_runs, prob)               # χ²(N k)/N interval
    ax.plot(t, lo, "k--", lw=1, label=f"{int(round(prob * 100))}% χ² bounds")
    ax.plot(t, hi, "k--", lw=1)
    ax.plot(t, kk, ":", color="0.3", lw=1, label=f"expected ({dof_label})")
    use = k > 0
    has = kk > 0                                                           # steps with bounds (a χ² to test)
    inside = np.mean((avg[has] >= lo[has]) & (avg[has] <= hi[has]))
    ax.set_title(f"{name}: overall average {v[use].mean():.3f} (expected {k[use].mean():.3g}); "
                 f"{inside * 100:.0f}% of steps inside the bounds", fontsize=9)
    ax.set_xlabel(xlabel or ("time step" if times is None else "time"))
    ax.set_ylabel(name)
    ax.legend(loc="best", fontsize=8)
    return fig


def nis_plot(nis_values, dof, *, prob: float = 0.95, times=None, xlabel: str | None = None) -> Figure:
    """NIS per step (averaged over runs) against the χ² bounds for the run average.

    Args:
        nis_values: (T,) for one run or (N, T) for N independent runs.
        dof: observed components per step (scalar, (T,) or (N, T)), e.g. from
            :func:`bayesfilt.consistency.nis`.
        prob: coverage of the bounds.
        times: optional x-axis values (T,).
        xlabel: x-axis label.

    Returns:
        A ``matplotlib.figure.Figure``.

    Example:
        >>> import numpy as np
        >>> fig = nis_plot(np.random.default_rng(0).chisquare(2, (10, 30)), 2)
        >>> fig.axes[0].get_ylabel()
        'NIS'
    """
    return _chi2_figure(nis_values, dof, prob, times, "NIS", "m", xlabel)


def nees_plot(nees_values, dof, *, prob: float = 0.95, times=None, xlabel: str | None = None) -> Figure:
    """NEES per step (averaged over runs) against the χ² bounds for the run average.

    Args:
        nees_values: (T,) or (N, T) values from :func:`bayesfilt.consistency.nees`.
        dof: the state dimension n (or per-step degrees of freedom).
        prob: coverage of the bounds.
        times: optional x-axis values (T,).
        xlabel: x-axis label.

    Returns:
        A ``matplotlib.figure.Figure``.

    Example:
        >>> import numpy as np
        >>> fig = nees_plot(np.random.default_rng(0).chisquare(4, (10, 30)), 4)
        >>> fig.axes[0].get_ylabel()
        'NEES'
    """
    return _chi2_figure(nees_values, dof, prob, times, "NEES", "n", xlabel)


def tracks_overview(tracks, *, title: str | None = None, units: str = "m") -> Figure:
    """Several 2-D tracks on one map: observations and estimated paths, one colour each.

    Args:
        tracks: iterable of dicts with keys ``"observations"`` (T, 2), optional
            ``"estimates"`` (T, 2) and optional ``"label"``.
        title: axes title.
        units: axis units.

    Returns:
        A ``matplotlib.figure.Figure``.

    Example:
        >>> import numpy as np
        >>> fig = tracks_overview([{"observations": np.zeros((2, 2)), "label": "a"}])
        >>> len(fig.axes)
        1
    """
    if isinstance(tracks, dict) or not hasattr(tracks, "__iter__"):
        raise type_error("tracks", f"is a {type(tracks).__name__}", "pass a list of dicts with an 'observations' key")
    tracks = list(tracks)
    for i, tr in enumerate(tracks):
        if not isinstance(tr, dict) or "observations" not in tr:
            raise value_error(f"tracks[{i}]", f"is {type(tr).__name__} without 'observations'",
                              "give every track a dict with 'observations' (T, 2)")
        _arr(tr["observations"], f"tracks[{i}]['observations']", core=(2,))
        if tr.get("estimates") is not None:
            _arr(tr["estimates"], f"tracks[{i}]['estimates']", core=(2,))
    fig = Figure(figsize=(8, 7))
    ax = fig.add_subplot()
    for i, tr in enumerate(tracks):
        color = f"C{i % 10}"
        obs = np.asarray(tr["observations"], float)
        ax.plot(*obs.T, ".", color=color, ms=3)
        if tr.get("estimates") is not None:
            ax.plot(*np.asarray(tr["estimates"], float).T, "-", color=color, lw=1.2, label=tr.get("label"))
        elif tr.get("label"):
            ax.plot([], [], ".", color=color, label=tr["label"])
    ax.set_xlabel(f"east [{units}]")
    ax.set_ylabel(f"north [{units}]")
    ax.set_aspect("equal", adjustable="datalim")
    if any(tr.get("label") for tr in tracks):
        ax.legend(loc="best", fontsize=8)
    ax.set_title(title or "tracks: observations (dots) and estimates (lines)")
    return fig


def posterior_variance(variance, *, marks=None, title: str | None = None, log: bool = True,
                       label: str = "mean posterior variance") -> Figure:
    """Plot a KLA model's mean posterior variance over time (e.g. the paper's selective-copy figure).

    Args:
        variance: array-like [..., L] (e.g. ``KLALanguageModel.posterior_variance(tokens)``,
            [n_layers, B, L]; a torch tensor is detached and moved to the CPU); every leading
            axis is averaged, so one curve over positions 0..L-1 is drawn, with the band between
            the 10% and 90% quantiles over the leading axes when there are several rows.
        marks: optional positions to mark with vertical lines (e.g. the tokens to copy).
        title: figure title.
        log: logarithmic y axis (when every value is positive).
        label: legend label of the curve.

    Returns:
        A matplotlib ``Figure`` (no pyplot state).

    Example:
        >>> import numpy as np
        >>> fig = posterior_variance(np.exp(-np.arange(20.0))[None], marks=[5])
    """
    if hasattr(variance, "detach"):
        variance = variance.detach().float().cpu().numpy()
    v = as_float_array(variance, "variance").astype(float)
    if v.ndim == 0 or v.size == 0:
        raise value_error("variance", f"has shape {v.shape}", "pass a non-empty array whose last axis is time")
    if not np.isfinite(v).all() or (v < 0).any():
        where = tuple(int(i) for i in np.argwhere(~(np.isfinite(v) & (v >= 0)))[0])
        raise value_error("variance", f"holds {v[where]} at index {where}", "pass finite variances >= 0")
    marks = None if marks is None else _arr(np.ravel(marks), "marks", core=())
    if marks is not None and ((marks < 0) | (marks > v.shape[-1] - 1)).any():
        raise value_error("marks", f"holds positions outside 0..{v.shape[-1] - 1}: {marks.tolist()}",
                          "pass positions of the plotted sequence")
    rows = v.reshape(-1, v.shape[-1])
    mean = rows.mean(axis=0)
    t = np.arange(v.shape[-1])
    fig = Figure(figsize=(8, 3.5))
    ax = fig.add_subplot()
    ax.plot(t, mean, "-", color="C0", lw=1.2, label=label)
    if rows.shape[0] > 1:
        lo, hi = np.quantile(rows, [0.1, 0.9], axis=0)
        ax.fill_between(t, lo, hi, color="C0", alpha=0.2, lw=0, label="10-90% over rows")
    for i, m in enumerate([] if marks is None else marks):
        ax.axvline(float(m), color="C3", lw=0.6, alpha=0.6, label="marked tokens" if i == 0 else None)
    if log and (mean > 0).all():
        ax.set_yscale("log")
    ax.set_xlabel("position")
    ax.set_ylabel("posterior variance")
    ax.legend(loc="best", fontsize=8)
    ax.set_title(title or "KLA posterior variance over time")
    return fig


def _char_label(c: str) -> str:
    return {"\n": "\\n", " ": "\u2423", "\t": "\\t"}.get(c, c)


def generation_uncertainty(text: str, entropy, variance=None, *, title: str | None = None) -> Figure:
    """Predictive entropy (and a KLA model's posterior variance) over generated characters.

    Args:
        text: the N generated characters (x-axis labels; spaces drawn as \u2423, line ends as \\n).
        entropy: [N] predictive entropy in bits per character.
        variance: [N] mean KLA posterior variance per character, or None (then one panel).
        title: figure title.

    Returns:
        A ``matplotlib.figure.Figure`` with one or two axes (no pyplot, no backend change).

    Example:
        >>> fig = generation_uncertainty("ab", [1.0, 2.0], [0.1, 0.2])
        >>> len(fig.axes)
        2
    """
    if not isinstance(text, str):
        raise type_error("text", f"is a {type(text).__name__}", "pass the generated characters as a str")
    entropy = as_float_array(entropy, "entropy").astype(float)
    if entropy.ndim != 1 or entropy.size != len(text):
        raise value_error("entropy", f"has shape {entropy.shape} for {len(text)} characters",
                          "pass one entropy value per generated character")
    if variance is not None:
        variance = as_float_array(variance, "variance").astype(float)
        if variance.shape != entropy.shape:
            raise value_error("variance", f"has shape {variance.shape}, entropy {entropy.shape}",
                              "pass one variance value per generated character")
    rows = 1 if variance is None else 2
    width = min(40.0, max(6.0, 0.14 * len(text)))
    fig = Figure(figsize=(width, 2.4 * rows + 0.6), layout="tight")
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    x = np.arange(len(text))
    axes[0].plot(x, entropy, color="C0", lw=1.2, marker=".", ms=3)
    axes[0].set_ylabel("entropy (bits)")
    axes[0].set_ylim(bottom=0)
    if variance is not None:
        axes[1].plot(x, variance, color="C3", lw=1.2, marker=".", ms=3)
        axes[1].set_ylabel("KLA posterior var.")
    step = max(1, -(-len(text) // 160))                     # at most ~160 tick labels
    axes[-1].set_xticks(x[::step])
    axes[-1].set_xticklabels([_char_label(c) for c in text[::step]], fontsize=7, family="monospace")
    axes[-1].set_xlabel("generated character")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(title or "uncertainty over the generated text")
    return fig
