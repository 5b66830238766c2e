"""Tracking recipes for irregularly sampled 2-D positions (used by ``bayesfilt track`` and the demo).

Each object's positions y_t (metres, or any unit) at times τ_t (seconds) are filtered
with a model from :mod:`bayesfilt.models` built on that object's own time steps:

- ``"cv"``: constant velocity, white-noise acceleration of spectral density q;
- ``"ca"``: constant acceleration, white-noise jerk of spectral density q;
- ``"local-level"``: random walk (Brownian motion, variance q per second).

Observation noise R = r I. The prior of the first state is centred on the first
observed position (zero velocity/acceleration) with standard deviations of
``PRIOR_POSITION_SD`` in position, ``PRIOR_VELOCITY_SD`` per second in velocity and
``PRIOR_ACCEL_SD`` in acceleration (in the data's units), wide enough to be
uninformative for vessels and vehicles. Speed and course come from the velocity
estimate, with standard deviations by the delta method. Tutorial: docs/tutorials/ais.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import value_error
from .validation import as_float_array, check_psd, check_symmetric
from .filters import kalman_filter, rts_smoother
from .model import LinearGaussianSSM
from .models import constant_acceleration_irregular, constant_velocity_irregular, random_walk, time_steps

MODELS = ("cv", "ca", "local-level")
PRIOR_POSITION_SD = 100.0
PRIOR_VELOCITY_SD = 10.0
PRIOR_ACCEL_SD = 1.0


def _check_kind(kind):
    if kind not in MODELS:
        raise value_error("kind", f"is {kind!r}", f"use one of {MODELS}")


def _first_position(positions):
    ok = np.flatnonzero(~np.isnan(positions).any(-1))
    if ok.size == 0:
        raise value_error("positions", "has no complete (x, y) observation", "give at least one observed position")
    return positions[ok[0]]


def tracking_model(kind: str, times, positions, q: float, r: float) -> LinearGaussianSSM:
    """The model ``kind`` on the time grid ``times``, with a prior at the first observed position.

    Args:
        kind: ``"cv"``, ``"ca"`` or ``"local-level"``.
        times: (T,) non-decreasing times (seconds).
        positions: (T, 2) (NaN = missing).
        q: process-noise level (spectral density; see the module docstring).
        r: observation variance.

    Returns:
        A :class:`~bayesfilt.LinearGaussianSSM` with time-varying F and Q.

    Example:
        >>> import numpy as np
        >>> m = tracking_model("cv", [0.0, 60.0], np.array([[0.0, 0.0], [60.0, 0.0]]), 1e-3, 9.0)
        >>> m.n, m.F.shape
        (4, (2, 4, 4))
    """
    _check_kind(kind)
    positions = as_float_array(positions, "positions").astype(float)
    if positions.ndim != 2 or positions.shape[1] != 2:
        raise value_error("positions", f"has shape {positions.shape}", "pass (T, 2) east/north positions")
    p0 = _first_position(positions)
    if kind == "cv":
        m0 = np.r_[p0, 0.0, 0.0]
        P0 = np.diag([PRIOR_POSITION_SD**2] * 2 + [PRIOR_VELOCITY_SD**2] * 2)
        return constant_velocity_irregular(times, q, r, m0=m0, P0=P0)
    if kind == "ca":
        m0 = np.r_[p0, 0.0, 0.0, 0.0, 0.0]
        P0 = np.diag([PRIOR_POSITION_SD**2] * 2 + [PRIOR_VELOCITY_SD**2] * 2 + [PRIOR_ACCEL_SD**2] * 2)
        return constant_acceleration_irregular(times, q, r, m0=m0, P0=P0)
    return random_walk(q, r, times=times, dim=2, m0=p0, P0=PRIOR_POSITION_SD**2 * np.eye(2), diffuse=False)


def initial_noise_guess(kind: str, series) -> tuple[float, float]:
    """Rough (q, r) from the data's step sizes, a starting point for :func:`fit_noise`.

    r = (1/100) median |Δy|² (observation error a tenth of a typical step); q such that
    one typical step's process noise is comparable to a typical step: median |Δy|² / Δt³
    for ``"cv"`` (velocity changes), / Δt⁵ for ``"ca"``, / Δt for ``"local-level"``,
    each times 1/100.

    Args:
        kind: model name.
        series: list of ``(times, positions)`` pairs.

    Returns:
        ``(q, r)``, both > 0.

    Example:
        >>> import numpy as np
        >>> t = np.arange(5.0); y = np.c_[t, 0 * t]
        >>> initial_noise_guess("cv", [(t, y)])
        (0.01, 0.01)
    """
    _check_kind(kind)
    d2, dts = [], []
    for times, pos in series:
        pos = as_float_array(pos, "positions").astype(float)
        dt = time_steps(times)[1:]
        if pos.ndim != 2 or pos.shape[-1] != 2 or pos.shape[0] != dt.size + 1:
            raise value_error("positions", f"has shape {pos.shape} for {dt.size + 1} times",
                              "pass positions of shape (T, 2), one row per time")
        step = np.sum(np.diff(pos, axis=0) ** 2, -1)
        ok = np.isfinite(step) & (dt > 0)
        d2.append(step[ok])
        dts.append(dt[ok])
    d2 = np.concatenate(d2) if d2 else np.array([])
    dts = np.concatenate(dts) if dts else np.array([])
    s2 = float(np.median(d2)) if d2.size and np.median(d2) > 0 else 1.0
    dt = np.float64(np.median(dts)) if dts.size else np.float64(1.0)
    power = {"cv": 3, "ca": 5, "local-level": 1}[kind]
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        q = s2 / dt**power / 100.0                                  # float64: no OverflowError for huge steps
    if not (np.isfinite(q) and np.isfinite(s2)):
        raise value_error("times", f"have a median step {float(dt):.3g} that gives no finite noise guess",
                          "rescale the times or positions (change units), or pass q and r explicitly")
    return float(q), s2 / 100.0


def fit_noise(kind: str, series, q0: float | None = None, r0: float | None = None):
    """Maximum-likelihood (q, r) shared by several tracks (:func:`bayesfilt.learn.fit_mle`, log scale).

    Args:
        kind: model name.
        series: list of ``(times, positions)`` pairs (one per object).
        q0, r0: starting values; default :func:`initial_noise_guess`.

    Returns:
        The :class:`~bayesfilt.learn.MLEResult` (``theta = [q, r]``).

    Example:
        >>> from bayesfilt.data import load_ais            # doctest: +SKIP
        >>> res = fit_noise("cv", [(v.times, v.positions) for v in load_ais()])  # doctest: +SKIP
    """
    from .learn import fit_mle
    _check_kind(kind)
    series = [(np.asarray(t, float), np.asarray(p, float)) for t, p in series]
    gq, gr = initial_noise_guess(kind, series)
    q0 = gq if q0 is None else q0
    r0 = gr if r0 is None else r0
    return fit_mle(lambda th: [tracking_model(kind, t, p, th[0], th[1]) for t, p in series],
                   [p for _, p in series], [q0, r0], transforms="log")


@dataclass(frozen=True)
class TrackEstimate:
    """Filtered or smoothed estimates of one track.

    Attributes:
        times: (T,) times.
        means: (T, n) state estimates.
        covs: (T, n, n) their covariances.
        position: (T, 2) position estimates.
        position_std: (T, 2) their standard deviations.
        velocity: (T, 2) per second, or None for the local-level model.
        speed, speed_std: (T,) speed |v| and its standard deviation, or None.
        course, course_std: (T,) degrees clockwise from north in [0, 360) and its
            standard deviation, or None.
        loglik: the filter's log-likelihood.
        smoothed: whether these are smoothed estimates.

    Example:
        >>> t = np.array([0.0, 1.0]); y = np.array([[0.0, 0.0], [1.0, 0.0]])
        >>> track("local-level", t, y, 1.0, 1.0).velocity is None
        True
    """

    times: np.ndarray
    means: np.ndarray
    covs: np.ndarray
    position: np.ndarray
    position_std: np.ndarray
    velocity: np.ndarray | None
    speed: np.ndarray | None
    speed_std: np.ndarray | None
    course: np.ndarray | None
    course_std: np.ndarray | None
    loglik: float
    smoothed: bool


def speed_course(velocity, velocity_cov):
    """Speed |v|, course atan2(v_e, v_n) and their delta-method standard deviations.

    Args:
        velocity: (..., 2) east/north velocity.
        velocity_cov: (..., 2, 2) its covariance.

    Returns:
        ``(speed, speed_std, course_deg, course_std_deg)``; course clockwise from north in [0, 360).
        At zero speed the course and both delta-method standard deviations are undefined: the
        standard deviations are NaN there.

    Example:
        >>> import numpy as np
        >>> s, ss, c, cs = speed_course(np.array([3.0, 4.0]), np.eye(2))
        >>> float(s), float(ss), round(float(c), 2)
        (5.0, 1.0, 36.87)
    """
    v = as_float_array(velocity, "velocity")
    P = as_float_array(velocity_cov, "velocity_cov")
    if v.ndim < 1 or v.shape[-1] != 2 or P.shape[-2:] != (2, 2) or P.ndim != v.ndim + 1:
        raise value_error("velocity_cov", f"has shape {P.shape} with velocity {v.shape}",
                          "pass velocity of shape (..., 2) and velocity_cov of shape (..., 2, 2)")
    if not (np.isfinite(v).all() and np.isfinite(P).all()):
        raise value_error("velocity_cov", "or velocity holds NaN/inf", "pass finite velocities and covariances")
    check_symmetric(P, "velocity_cov")
    check_psd(P, "velocity_cov", strict=False)
    speed = np.hypot(v[..., 0], v[..., 1])                                    # s = |v|
    safe = np.where(speed > 0, speed, np.nan)
    gs = v / safe[..., None]                                                  # ∂s/∂v = v / s
    gc = np.stack([v[..., 1], -v[..., 0]], -1) / safe[..., None] ** 2         # ∂atan2(ve, vn)/∂v = (vn, -ve) / s²
    speed_std = np.sqrt(np.einsum("...i,...ij,...j->...", gs, P, gs))
    course = np.degrees(np.arctan2(v[..., 0], v[..., 1])) % 360.0
    course_std = np.degrees(np.sqrt(np.einsum("...i,...ij,...j->...", gc, P, gc)))
    return speed, speed_std, course, course_std


def track(kind: str, times, positions, q: float, r: float, *, smooth: bool = True) -> TrackEstimate:
    """Filter (and by default smooth) one object's positions with the model ``kind``.

    Args:
        kind: ``"cv"``, ``"ca"`` or ``"local-level"``.
        times: (T,) non-decreasing seconds.
        positions: (T, 2) with NaN for missing values.
        q, r: noise levels.
        smooth: return RTS-smoothed estimates (else filtered ones).

    Returns:
        A :class:`TrackEstimate`.

    Example:
        >>> import numpy as np
        >>> t = np.array([0.0, 60.0, 130.0]); y = np.c_[3.0 * t, 0 * t]
        >>> est = track("cv", t, y, 1e-4, 1.0)
        >>> round(float(est.speed[-1]), 1)
        3.0
    """
    _check_kind(kind)
    times = as_float_array(times, "times").astype(float)
    positions = as_float_array(positions, "positions").astype(float)
    model = tracking_model(kind, times, positions, q, r)
    filt = kalman_filter(model, positions)
    res = rts_smoother(model, filt) if smooth else filt
    means, covs = res.means, res.covs
    pos = means[:, :2]
    pos_std = np.sqrt(np.stack([covs[:, 0, 0], covs[:, 1, 1]], -1))
    vel = sp = sps = crs = crss = None
    if kind in ("cv", "ca"):
        vel = means[:, 2:4]
        sp, sps, crs, crss = speed_course(vel, covs[:, 2:4, 2:4])
    return TrackEstimate(times=times, means=means, covs=covs, position=pos, position_std=pos_std, velocity=vel,
                         speed=sp, speed_std=sps, course=crs, course_std=crss, loglik=float(filt.loglik),
                         smoothed=smooth)



@dataclass(frozen=True)
class SpeedCheck:
    """Estimated speed/course against a reported one (e.g. AIS SOG/COG), per track and overall.

    Attributes:
        names: track labels.
        n_reports: reports per track.
        speed_rms: RMS of (estimated - reported) speed per track [knots].
        course_rms: RMS course difference per track [degrees], where reported speed > ``min_speed``.
        prediction_rms: RMS one-step-ahead position prediction error per track (filter
            innovations, from the third report on) [m].
        residual_rms: RMS of observation - estimate per track [m].
        speed_rms_all, course_rms_all, prediction_rms_all: over all reports.
        speed_z_rms: RMS of (estimated - reported) / estimated standard deviation.
        estimates: the :class:`TrackEstimate` of each track.

    Example:
        >>> from bayesfilt.data import load_ais
        >>> chk = speed_check(load_ais()[:1], "cv", 1.4e-3, 8.8)
        >>> chk.names, chk.n_reports
        (('SHANTI',), (40,))
    """

    names: tuple
    n_reports: tuple
    speed_rms: tuple
    course_rms: tuple
    prediction_rms: tuple
    residual_rms: tuple
    speed_rms_all: float
    course_rms_all: float
    prediction_rms_all: float
    speed_z_rms: float
    estimates: tuple


def _vessel_list(vessels):
    """The vessels as a non-empty list of objects with times and positions (e.g. load_ais())."""
    if vessels is None or isinstance(vessels, (str, bytes)) or not hasattr(vessels, "__iter__"):
        raise value_error("vessels", f"is {type(vessels).__name__}", "pass a list of tracks, e.g. bayesfilt.data.load_ais()")
    vessels = list(vessels)
    if not vessels or not all(hasattr(v, "times") and hasattr(v, "positions") for v in vessels):
        raise value_error("vessels", f"holds {len(vessels)} item(s), not all tracks with times and positions",
                          "pass a non-empty list of tracks, e.g. bayesfilt.data.load_ais()")
    return vessels


def speed_check(vessels, kind: str, q: float, r: float, *, smooth: bool = True, min_speed: float = 2.0,
                skip: int = 0) -> SpeedCheck:
    """Compare the speed and course estimated from positions alone with the reported SOG/COG.

    Args:
        vessels: :class:`bayesfilt.data.VesselTrack` objects (positions in metres, times in s).
        kind: ``"cv"`` or ``"ca"``.
        q, r: noise levels.
        smooth: use smoothed (default) or filtered estimates.
        min_speed: course is compared only where the reported speed exceeds this [knots].
        skip: leave out the first ``skip`` reports of each track from the speed/course
            figures (e.g. 2 for filtered estimates, whose velocity needs two positions).
            One-step predictions are always scored from the third report on.

    Returns:
        A :class:`SpeedCheck`.

    Example:
        >>> from bayesfilt.data import load_ais             # doctest: +SKIP
        >>> speed_check(load_ais(), "cv", 1.4e-3, 8.8).speed_rms_all   # doctest: +SKIP
    """
    from .data import KNOT
    if kind not in ("cv", "ca"):
        raise value_error("kind", f"is {kind!r}", "use 'cv' or 'ca' (models with a velocity)")
    vessels = _vessel_list(vessels)
    names, ns, srms, crms, prms, rrms, ests = [], [], [], [], [], [], []
    all_s, all_c, all_p, all_z = [], [], [], []
    for v in vessels:
        est = track(kind, v.times, v.positions, q, r, smooth=smooth)
        model = tracking_model(kind, v.times, v.positions, q, r)
        filt = kalman_filter(model, v.positions)
        pred = filt.predicted_means[2:, :2] - v.positions[2:]                   # one-step-ahead position error
        keep = np.arange(len(v)) >= skip
        ds = (est.speed / KNOT - v.sog)[keep]
        ok = (v.sog > min_speed) & np.isfinite(v.cog) & keep
        dc = ((est.course - v.cog + 180.0) % 360.0 - 180.0)[ok]                 # wrapped course difference
        names.append(v.name or str(v.mmsi))
        ns.append(len(v))
        srms.append(float(np.sqrt(np.mean(ds**2))))
        crms.append(float(np.sqrt(np.mean(dc**2))) if dc.size else float("nan"))
        prms.append(float(np.sqrt(np.mean(np.sum(pred**2, -1)))))
        rrms.append(float(np.sqrt(np.mean(np.sum((v.positions - est.position) ** 2, -1)))))
        ests.append(est)
        all_s.append(ds)
        all_c.append(dc)
        all_p.append(np.sum(pred**2, -1))
        all_z.append(ds / (est.speed_std / KNOT)[keep])
    cat = np.concatenate
    return SpeedCheck(names=tuple(names), n_reports=tuple(ns), speed_rms=tuple(srms), course_rms=tuple(crms),
                      prediction_rms=tuple(prms), residual_rms=tuple(rrms),
                      speed_rms_all=float(np.sqrt(np.mean(cat(all_s) ** 2))),
                      course_rms_all=float(np.sqrt(np.mean(cat(all_c) ** 2))),
                      prediction_rms_all=float(np.sqrt(np.mean(cat(all_p)))),
                      speed_z_rms=float(np.sqrt(np.mean(cat(all_z) ** 2))), estimates=tuple(ests))



@dataclass(frozen=True)
class HoldoutCheck:
    """Position error at withheld reports (see :func:`holdout_check`).

    Attributes:
        rms: RMS distance between the smoothed position at the withheld reports and the
            reported positions [m].
        coverage: fraction of withheld reports inside the 95 % ellipse of the smoothed
            position plus the observation noise.
        count: number of withheld reports.
        errors: (count,) distances [m].

    Example:
        >>> HoldoutCheck(rms=1.0, coverage=1.0, count=1, errors=np.ones(1)).count
        1
    """

    rms: float
    coverage: float
    count: int
    errors: np.ndarray


def holdout_check(vessels, kind: str, q: float, r: float, every: int = 4, offset: int = 3) -> HoldoutCheck:
    """Withhold every ``every``-th report (from ``offset``), smooth the rest, score the withheld ones.

    The smoothed position x̂_t, covariance P_t at a withheld report is compared with the
    report y_t: error |y_t - x̂_t|, and y_t - x̂_t ~ N(0, P_t + r I) for a calibrated model,
    so (y_t - x̂_t)^T (P_t + r I)^{-1} (y_t - x̂_t) <= χ²_0.95(2) in 95 % of cases.

    Args:
        vessels: tracks with ``times`` and ``positions``.
        kind: model name.
        q, r: noise levels.
        every, offset: which reports to withhold (indices offset, offset + every, ...).

    Returns:
        A :class:`HoldoutCheck`.

    Example:
        >>> from bayesfilt.data import load_ais                      # doctest: +SKIP
        >>> holdout_check(load_ais(), "cv", 1.4e-3, 8.8).rms          # doctest: +SKIP
    """
    from scipy.stats import chi2
    vessels = _vessel_list(vessels)
    if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 2:
        raise value_error("every", f"is {every!r}", "withhold every k-th report with an integer k >= 2")
    if isinstance(offset, bool) or not isinstance(offset, (int, np.integer)) or offset < 0:
        raise value_error("offset", f"is {offset!r}", "pass a non-negative integer index")
    errs, inside = [], []
    for v in vessels:
        y = np.array(v.positions, float)
        idx = np.arange(offset, len(y), every)
        y_cv = y.copy()
        y_cv[idx] = np.nan                                                   # withheld reports
        est = track(kind, v.times, y_cv, q, r, smooth=True)
        e = y[idx] - est.position[idx]
        S = est.covs[idx, :2, :2] + r * np.eye(2)                            # Cov[y_t - x̂_t] = P_t + R
        d2 = np.einsum("ti,ti->t", e, np.linalg.solve(S, e[..., None])[..., 0])
        errs.append(np.hypot(e[:, 0], e[:, 1]))
        inside.append(d2 <= chi2.ppf(0.95, 2))
    errs = np.concatenate(errs)
    inside = np.concatenate(inside)
    if errs.size == 0:
        raise value_error("offset", f"is {offset}, past every track's last report (longest: "
                          f"{max(len(v.positions) for v in vessels)})", "pass an offset inside the tracks")
    return HoldoutCheck(rms=float(np.sqrt(np.mean(errs**2))), coverage=float(inside.mean()), count=int(errs.size),
                        errors=errs)


__all__ = ["HoldoutCheck", "MODELS", "SpeedCheck", "TrackEstimate", "fit_noise", "initial_noise_guess", "speed_check", "speed_course", "track",
           "tracking_model", "holdout_check"]
