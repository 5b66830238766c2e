"""Track real vessels from AIS reports: speed and course from positions alone.

The shipped extract holds 317 AIS reports of 7 vessels moving in New York Harbor on
2020-06-30 between 00:00 and 01:00 UTC, one every 61-152 s (irregular). This script

1. converts lon/lat to local east/north metres (``bayesfilt.data.load_ais``);
2. builds, per vessel, a constant-velocity model on that vessel's own time steps
   (F_t and Q_t from each Δt: continuous white-noise acceleration, exact discretisation);
3. fits the two noise levels shared by all vessels -- acceleration spectral density q and
   position noise variance r -- by maximum likelihood (``bayesfilt.learn.fit_mle``);
4. smooths every vessel and compares the speed and course estimated from positions alone
   with the speed and course over ground the vessels report themselves (an independent
   sensor), and the position at withheld reports with the reports;
5. writes figures to the folder given as the first argument (default ./example-output/).

Run:  python examples/ais_tracking.py [OUT_DIR]        (about 10 s on a laptop CPU)
Tutorial: docs/tutorials/ais.md.
"""

import os
import sys

import numpy as np

from bayesfilt.data import KNOT, load_ais
from bayesfilt.plot import series_1d, track_2d, tracks_overview
from bayesfilt.tracking import fit_noise, holdout_check, speed_check, track


def main(out_dir: str = "example-output") -> dict:
    os.makedirs(out_dir, exist_ok=True)
    vessels = load_ais()
    print(f"{len(vessels)} vessels, {sum(len(v) for v in vessels)} reports; "
          f"steps {min(np.diff(v.times).min() for v in vessels):.0f}-"
          f"{max(np.diff(v.times).max() for v in vessels):.0f} s")

    # 3. maximum-likelihood noise levels, shared by all vessels
    fit = fit_noise("cv", [(v.times, v.positions) for v in vessels])
    q, r = fit.theta
    print(f"MLE: q = {q:.3g} ± {fit.stderr[0]:.2g} m²/s³, r = {r:.3g} ± {fit.stderr[1]:.2g} m² "
          f"(position noise {np.sqrt(r):.1f} m); log-likelihood {fit.loglik:.2f}")

    # 4. speed/course from positions alone vs the reported SOG/COG
    chk = speed_check(vessels, "cv", q, r, smooth=True)
    for name, n, s, c in zip(chk.names, chk.n_reports, chk.speed_rms, chk.course_rms):
        print(f"  {name:<15} {n:3d} reports   speed RMS {s:5.3f} kn   course RMS {c:5.2f} deg")
    print(f"all: speed RMS {chk.speed_rms_all:.3f} kn, course RMS {chk.course_rms_all:.2f} deg "
          f"(reported speed > 2 kn), (estimate - SOG)/σ RMS {chk.speed_z_rms:.2f}")
    hold = holdout_check(vessels, "cv", q, r)
    print(f"withheld every 4th report ({hold.count}): position RMS {hold.rms:.1f} m, "
          f"{100 * hold.coverage:.0f}% inside the 95% ellipses")

    # 5. figures
    fig = tracks_overview([{"observations": v.positions, "estimates": e.position, "label": v.name}
                           for v, e in zip(vessels, chk.estimates)], title="AIS tracks, smoothed")
    fig.savefig(os.path.join(out_dir, "ais_tracks.png"), dpi=100)
    v, est = vessels[2], chk.estimates[2]
    fig = series_1d(v.times / 60, v.sog, smoothed=est.speed / KNOT, smoothed_variances=(est.speed_std / KNOT) ** 2,
                    xlabel="minutes after 00:00 UTC", ylabel="speed [knots]",
                    title=f"{v.name}: smoothed speed (±2σ) from positions vs reported SOG (dots)")
    fig.savefig(os.path.join(out_dir, "ais_speed.png"), dpi=100)
    fig = series_1d(v.times / 60, v.cog, smoothed=est.course, smoothed_variances=est.course_std**2,
                    xlabel="minutes after 00:00 UTC", ylabel="course [deg]",
                    title=f"{v.name}: smoothed course (±2σ) vs reported COG (dots)")
    fig.savefig(os.path.join(out_dir, "ais_course.png"), dpi=100)
    y = v.positions.copy()
    y[12:18] = np.nan                                           # withhold six reports
    f, s = track("cv", v.times, y, q, r, smooth=False), track("cv", v.times, y, q, r, smooth=True)
    seg = slice(8, 22)
    fig = track_2d(observations=y[seg], truth=v.positions[seg], estimates=f.position[seg], covs=f.covs[seg, :2, :2],
                   smoothed=s.position[seg], smoothed_covs=s.covs[seg, :2, :2],
                   title=f"{v.name}: reports 13-18 withheld (black: all reports), 95% ellipses")
    fig.savefig(os.path.join(out_dir, "ais_gap.png"), dpi=100)
    print(f"figures in {out_dir}/")
    return {"q": q, "r": r, "speed_rms": chk.speed_rms_all, "course_rms": chk.course_rms_all}


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "example-output")
