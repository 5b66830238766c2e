"""The AIS part of the demo: real vessel tracks from New York Harbor (shipped data).

Fits the constant-velocity model's noise levels (q, r) by maximum likelihood over all
vessels, filters and smooths each vessel, prints position and speed/course error
figures against the vessels' own reported speed and course over ground, and writes
plots. Tutorial: docs/tutorials/ais.md.
"""

from __future__ import annotations

import os

import numpy as np


def run_ais_demo(out_dir: str = "bayesfilt-demo", verbose: bool = True) -> dict:
    """Run the AIS demo; returns the printed figures and the paths written.

    Args:
        out_dir: folder for the plots (created if needed).
        verbose: print the figures.

    Returns:
        A dict with ``q``, ``r`` (fitted), ``speed_rms_knots``, ``course_rms_deg``,
        ``prediction_rms_m``, ``holdout_rms_m``, ``holdout_coverage``, ``nis_average`` and its
        bounds, and ``plots``.

    Example:
        >>> out = run_ais_demo("/tmp/demo", verbose=False)       # doctest: +SKIP
    """
    from .consistency import check_average, nis
    from .data import KNOT, load_ais
    from .filters import kalman_filter
    from .plot import nis_plot, series_1d, track_2d, tracks_overview
    from .tracking import fit_noise, holdout_check, speed_check, track, tracking_model

    vessels = load_ais()
    fit = fit_noise("cv", [(v.times, v.positions) for v in vessels])
    q, r = (float(x) for x in fit.theta)
    smoothed = speed_check(vessels, "cv", q, r, smooth=True)
    filtered = speed_check(vessels, "cv", q, r, smooth=False, skip=2)
    nis_vals, dofs = [], []
    for v in vessels:
        model = tracking_model("cv", v.times, v.positions, q, r)
        val, k = nis(model, v.positions, kalman_filter(model, v.positions))
        nis_vals.append(val[1:])                                   # step 1 is dominated by the wide prior
        dofs.append(k[1:])
    nis_check = check_average(np.concatenate(nis_vals), np.concatenate(dofs))
    hold = holdout_check(vessels, "cv", q, r)

    os.makedirs(out_dir, exist_ok=True)
    paths = []
    fig = tracks_overview([{"observations": v.positions, "estimates": e.position, "label": v.name or str(v.mmsi)}
                           for v, e in zip(vessels, smoothed.estimates)],
                          title="AIS, New York Harbor 2020-06-30 00:00-01:00 UTC: smoothed tracks")
    paths.append(os.path.join(out_dir, "ais_tracks.png"))
    fig.savefig(paths[-1], dpi=110)
    i = int(np.argmax([len(v) for v in vessels]))
    v, es, ef = vessels[i], smoothed.estimates[i], filtered.estimates[i]
    gap = slice(12, 18)                                              # six reports withheld
    y_gap = v.positions.copy()
    y_gap[gap] = np.nan
    eg_f = track("cv", v.times, y_gap, q, r, smooth=False)
    eg_s = track("cv", v.times, y_gap, q, r, smooth=True)
    seg = slice(8, 22)
    fig = track_2d(observations=y_gap[seg], truth=v.positions[seg], estimates=eg_f.position[seg],
                   covs=eg_f.covs[seg, :2, :2], smoothed=eg_s.position[seg], smoothed_covs=eg_s.covs[seg, :2, :2],
                   title=f"{v.name}: reports 13-18 withheld (black: all reports), 95% ellipses")
    ax = fig.axes[0]
    ax.lines[0].set_label("all reports")
    ax.legend(loc="best", fontsize=8)
    paths.append(os.path.join(out_dir, "ais_vessel_gap.png"))
    fig.savefig(paths[-1], dpi=110)
    fig = series_1d(v.times / 60, v.sog, ef.speed / KNOT, (ef.speed_std / KNOT) ** 2, smoothed=es.speed / KNOT,
                    smoothed_variances=(es.speed_std / KNOT) ** 2, xlabel="minutes after 00:00 UTC",
                    ylabel="speed [knots]",
                    title=f"{v.name}: speed from positions alone (±2σ) vs reported SOG (dots)")
    paths.append(os.path.join(out_dir, "ais_speed.png"))
    fig.savefig(paths[-1], dpi=110)
    fig = nis_plot(nis_vals[i], dofs[i], times=v.times[1:] / 60, xlabel="minutes after 00:00 UTC")
    paths.append(os.path.join(out_dir, "ais_nis.png"))
    fig.savefig(paths[-1], dpi=110)

    out = {"q": q, "r": r, "q_stderr": float(fit.stderr[0]), "r_stderr": float(fit.stderr[1]),
           "loglik": float(fit.loglik), "speed_rms_knots": smoothed.speed_rms_all,
           "speed_rms_knots_filtered": filtered.speed_rms_all, "course_rms_deg": smoothed.course_rms_all,
           "prediction_rms_m": smoothed.prediction_rms_all, "nis_average": nis_check.average,
           "nis_bounds": (nis_check.lower, nis_check.upper), "holdout_rms_m": hold.rms,
           "holdout_coverage": hold.coverage, "plots": paths}
    if verbose:
        n = sum(len(v) for v in vessels)
        print(f"AIS vessel reports, New York Harbor, 2020-06-30 00:00-01:00 UTC: {len(vessels)} vessels, {n} reports")
        print("  constant-velocity model, maximum-likelihood noise levels over all vessels:")
        print(f"    q = {q:.3g} m²/s³ (s.e. {fit.stderr[0]:.2g}), r = {r:.3g} m² (s.e. {fit.stderr[1]:.2g}; "
              f"position noise σ = {np.sqrt(r):.2f} m), log-likelihood {fit.loglik:.2f}")
        print(f"  {'vessel':<16}{'reports':>8}{'1-step pred':>13}{'residual':>10}{'speed vs SOG':>14}"
              f"{'course vs COG':>15}")
        print(f"  {'(smoothed)':<16}{'':>8}{'RMS [m]':>13}{'RMS [m]':>10}{'RMS [kn]':>14}{'RMS [deg]':>15}")
        for j in range(len(vessels)):
            print(f"  {smoothed.names[j]:<16}{smoothed.n_reports[j]:>8}{smoothed.prediction_rms[j]:>13.1f}"
                  f"{smoothed.residual_rms[j]:>10.2f}{smoothed.speed_rms[j]:>14.3f}{smoothed.course_rms[j]:>15.2f}")
        print(f"  {'all':<16}{n:>8}{smoothed.prediction_rms_all:>13.1f}{'':>10}{smoothed.speed_rms_all:>14.3f}"
              f"{smoothed.course_rms_all:>15.2f}")
        print(f"  filter alone (no smoothing, from each vessel's third report on): speed RMS "
              f"{filtered.speed_rms_all:.3f} kn, course RMS {filtered.course_rms_all:.2f} deg")
        print(f"  position error at {hold.count} withheld reports (every 4th; smoothed from the others): "
              f"RMS {hold.rms:.1f} m, {hold.coverage * 100:.0f}% inside the 95% ellipses")
        print(f"  NIS average {nis_check.average:.3f} (95% χ² bounds {nis_check.lower:.3f}-{nis_check.upper:.3f},"
              f" {'inside' if nis_check.inside else 'outside'})")
        for p in paths:
            print(f"  wrote {p}")
    return out
