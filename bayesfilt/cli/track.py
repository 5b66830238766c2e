"""``bayesfilt track``: filter or smooth 2-D tracks from a CSV file (see :mod:`bayesfilt.tracking`).

Reads a CSV with a time column, x/y (or lon/lat) columns and an optional id column (one
track per id); handles missing values (empty or NaN positions) and irregular times;
optionally fits the noise levels (q, r) by maximum likelihood; writes estimates with
standard deviations and draws a plot. Without FILE it runs on the shipped AIS data.
Never overwrites an existing output without ``--force``. Tutorial: docs/tutorials/ais.md.
"""

from __future__ import annotations

import csv
import os
import sys

import numpy as np

from ..errors import value_error

TIME_NAMES = ("time", "t", "timestamp", "datetime", "basedatetime", "date_time", "seconds")
X_NAMES = ("x", "east", "easting")
Y_NAMES = ("y", "north", "northing")
LON_NAMES = ("lon", "longitude", "lng", "long")
LAT_NAMES = ("lat", "latitude")
ID_NAMES = ("id", "mmsi", "track_id", "object_id", "vessel", "track")


def register(sub) -> None:
    """Add the ``track`` subcommand."""
    p = sub.add_parser("track", help="filter/smooth 2-D tracks from a CSV (default: the shipped AIS data)",
                       description="Filter or smooth 2-D tracks from a CSV file with irregular times. "
                                   "Without FILE, runs on the shipped AIS vessel reports (New York Harbor).")
    p.add_argument("file", nargs="?", default=None, metavar="FILE.csv", help="input CSV (default: shipped AIS data)")
    p.add_argument("--model", choices=("cv", "ca", "local-level"), default="cv",
                   help="constant velocity, constant acceleration or local level (default: %(default)s)")
    p.add_argument("--fit", action="store_true", help="fit the noise levels q and r by maximum likelihood")
    p.add_argument("--smooth", action="store_true", help="write RTS-smoothed estimates (default: filtered)")
    p.add_argument("--q", type=float, default=None, help="process-noise level (default: fitted or a guess from the data)")
    p.add_argument("--r", type=float, default=None, help="observation-noise variance (default: fitted or guessed)")
    p.add_argument("--out", default="track_estimates.csv", help="estimates CSV to write (default: %(default)s)")
    p.add_argument("--plot", default="track.png", help="figure to write (default: %(default)s)")
    p.add_argument("--no-plot", action="store_true", help="do not draw the figure")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    p.add_argument("--time-col", help="name of the time column (detected by default)")
    p.add_argument("--x-col", help="x / east column"); p.add_argument("--y-col", help="y / north column")
    p.add_argument("--lon-col", help="longitude column"); p.add_argument("--lat-col", help="latitude column")
    p.add_argument("--id-col", help="id column (one track per id; optional)")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(func=run)


# ----------------------------------------------------------------------------- reading
def _pick(header, given, names, what, required, flag):
    lower = {h.strip().lower(): h for h in header}
    if given is not None:
        if given in header:
            return given
        if given.lower() in lower:
            return lower[given.lower()]
        raise value_error(flag, f"names column {given!r}, which is not in the file (columns: {list(header)})",
                          f"pass one of the file's columns to {flag}")
    for nm in names:
        if nm in lower:
            return lower[nm]
    if required:
        raise value_error("FILE", f"has no {what} column (columns: {list(header)}; looked for {list(names)})",
                          f"name the column with {flag}")
    return None


def _parse_times(raw, path):
    """Numbers as given, or ISO date-times as seconds since the earliest one."""
    for i, s in enumerate(raw):
        if s.strip() == "" or s.strip().lower() in ("nan", "na", "null", "none", "nat"):
            raise value_error("FILE", f"{path}: time is missing in data row {i + 1}", "give every row a time")
    try:
        vals = np.array([float(s) for s in raw])
    except ValueError:
        vals = None
    if vals is not None:
        if not np.isfinite(vals).all():
            i = int(np.flatnonzero(~np.isfinite(vals))[0])
            raise value_error("FILE", f"{path}: time {raw[i]!r} in data row {i + 1} is not finite",
                              "give every row a finite time")
        return vals, False
    for i, s in enumerate(raw):
        if not _is_time(s):
            raise value_error("FILE", f"{path}: cannot read the time {s!r} in data row {i + 1}",
                              "use numbers (seconds) or ISO 8601 date-times such as 2020-06-30T00:00:05")
    stamps = np.array([s.strip().replace(" ", "T") for s in raw], dtype="datetime64[ms]")
    return (stamps - stamps.min()).astype("timedelta64[ms]").astype(float) / 1000.0, True


def _is_time(s):
    try:
        return not np.isnat(np.datetime64(s.strip().replace(" ", "T")))
    except ValueError:
        return False


def _num(s):
    s = s.strip()
    if s == "" or s.lower() in ("nan", "na", "null", "none"):
        return np.nan
    return float(s)


def read_tracks(path, *, time_col=None, x_col=None, y_col=None, lon_col=None, lat_col=None, id_col=None):
    """Read a CSV into tracks: a dict with ``ids``, per-id ``times``/``positions``/``rows`` and metadata.

    Raises:
        BayesfiltValueError: unreadable file, missing columns, bad numbers, times that
            decrease within a track.
    """
    try:
        with open(path, newline="", encoding="utf-8") as f:
            sample = f.read(65536)
            f.seek(0)
            if "\x00" in sample:
                raise value_error("FILE", f"{path} is not a text CSV file", "pass a comma-separated text file")
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise value_error("FILE", f"cannot read {path!r} ({exc.__class__.__name__}: {exc})",
                          "pass a readable CSV file with a header row") from None
    rows = [r for r in rows if any(c.strip() for c in r)]
    if len(rows) < 2:
        raise value_error("FILE", f"{path} has no data rows", "pass a CSV with a header row and at least one data row")
    header = [h.strip() for h in rows[0]]
    data = rows[1:]
    for i, r in enumerate(data):
        if len(r) != len(header):
            raise value_error("FILE", f"{path}: data row {i + 1} has {len(r)} fields, the header {len(header)}",
                              "give every row the same columns as the header")
    tcol = _pick(header, time_col, TIME_NAMES, "time", True, "--time-col")
    use_lonlat = lon_col is not None or lat_col is not None
    if not use_lonlat and x_col is None and y_col is None:
        has_xy = _pick(header, None, X_NAMES, "x", False, "--x-col") and _pick(header, None, Y_NAMES, "y", False, "--y-col")
        use_lonlat = not has_xy and _pick(header, None, LON_NAMES, "lon", False, "--lon-col") is not None
    if use_lonlat:
        c1 = _pick(header, lon_col, LON_NAMES, "longitude", True, "--lon-col")
        c2 = _pick(header, lat_col, LAT_NAMES, "latitude", True, "--lat-col")
    else:
        c1 = _pick(header, x_col, X_NAMES, "x", True, "--x-col")
        c2 = _pick(header, y_col, Y_NAMES, "y", True, "--y-col")
    icol = _pick(header, id_col, ID_NAMES, "id", False, "--id-col")
    idx = {h: i for i, h in enumerate(header)}
    raw_t = [r[idx[tcol]] for r in data]
    times, is_datetime = _parse_times(raw_t, path)
    a = np.empty(len(data))
    b = np.empty(len(data))
    for i, r in enumerate(data):
        try:
            a[i], b[i] = _num(r[idx[c1]]), _num(r[idx[c2]])
        except ValueError:
            raise value_error("FILE", f"{path}: data row {i + 1} has a non-numeric position "
                              f"({c1}={r[idx[c1]]!r}, {c2}={r[idx[c2]]!r})",
                              "use numbers, or leave the cell empty for a missing value") from None
    ids = [r[idx[icol]].strip() for r in data] if icol else ["all"] * len(data)
    ref = None
    if use_lonlat:
        from ..data import lonlat_to_east_north
        ok = np.isfinite(a) & np.isfinite(b)
        if not ok.any():
            raise value_error("FILE", f"{path} has no complete longitude/latitude pair", "give at least one position")
        lon_r = np.radians(a[ok])                  # circular mean of the longitudes (a track across ±180 too)
        ref = (float(np.degrees(np.arctan2(np.sin(lon_r).mean(), np.cos(lon_r).mean()))), float(np.mean(b[ok])))
        a, b = lonlat_to_east_north(a, b, *ref)
    order = list(dict.fromkeys(ids))
    tracks = {}
    for key in order:
        rws = np.array([i for i, k in enumerate(ids) if k == key])
        t = times[rws]
        dec = np.flatnonzero(np.diff(t) < 0)
        if dec.size:
            j = int(dec[0])
            who = f" for id {key!r}" if icol else ""
            raise value_error("FILE", f"{path}: times decrease{who} at data row {rws[j + 1] + 1} "
                              f"({raw_t[rws[j]]!r} -> {raw_t[rws[j + 1]]!r})",
                              "sort the rows by time (within each id)")
        tracks[key] = {"times": t, "positions": np.stack([a[rws], b[rws]], -1), "rows": rws}
    return {"ids": order, "tracks": tracks, "raw_times": raw_t, "ref": ref, "lonlat": use_lonlat,
            "columns": (tcol, c1, c2, icol), "datetime": is_datetime}


# ----------------------------------------------------------------------------- running
def _check_outputs(paths, force):
    for p in paths:
        if p and os.path.isdir(p):
            raise value_error("--out/--plot", f"{p} is a folder", "pass a file path")
        if p and os.path.exists(p) and not force:
            raise value_error("--out/--plot", f"{p} exists", "pass --force to overwrite it, or choose another path")


def _check_plot_format(plot):
    from matplotlib.backend_bases import FigureCanvasBase
    ext = os.path.splitext(plot)[1][1:].lower()
    known = FigureCanvasBase.get_supported_filetypes()
    if ext not in known:
        raise value_error("--plot", f"{plot!r} has the extension {ext!r}, which matplotlib cannot write",
                          f"use one of {sorted(known)} (e.g. track.png), or --no-plot")


def run(args) -> int:
    """Run ``bayesfilt track`` with the parsed arguments."""
    from ..tracking import initial_noise_guess, track
    from ..learn import _Progress

    path = args.file
    if path is None:
        from ..data import AIS_FILE, data_path
        path = data_path(AIS_FILE)
    plot = None if args.no_plot or not args.plot else args.plot
    _check_outputs([args.out, plot], args.force)
    if plot:
        _check_plot_format(plot)
    data = read_tracks(path, time_col=args.time_col, x_col=args.x_col, y_col=args.y_col, lon_col=args.lon_col,
                       lat_col=args.lat_col, id_col=args.id_col)
    ids = data["ids"]
    series = [(data["tracks"][k]["times"], data["tracks"][k]["positions"]) for k in ids]
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a))
    say(f"read {sum(len(t) for t, _ in series)} rows, {len(ids)} track(s) from {path}")
    q0, r0 = initial_noise_guess(args.model, series)
    q = args.q if args.q is not None else q0
    r = args.r if args.r is not None else r0
    if args.fit:
        res = _fit(args.model, series, q, r, progress=not args.quiet)
        q, r = (float(v) for v in res.theta)
        se = res.stderr
        say(f"maximum-likelihood noise levels ({args.model}): q = {q:.6g} (s.e. {se[0]:.3g}), "
            f"r = {r:.6g} (s.e. {se[1]:.3g}); log-likelihood {res.loglik:.3f}")
    else:
        say(f"noise levels ({args.model}): q = {q:.6g}, r = {r:.6g}"
            + ("" if args.q is not None and args.r is not None else " (guessed from the data; --fit to estimate)"))
    bar = _Progress(len(ids), "tracks", not args.quiet and len(ids) > 20)
    ests = {}
    for k, (t, y) in zip(ids, series):
        ests[k] = track(args.model, t, y, q, r, smooth=args.smooth)
        bar.update()
    bar.close()
    _write(args.out, data, ests, args.model)
    say(f"wrote {args.out} ({'smoothed' if args.smooth else 'filtered'} estimates with standard deviations)")
    if plot:
        fig = _figure(data, ests, args.model)
        if os.path.dirname(plot):
            os.makedirs(os.path.dirname(plot), exist_ok=True)
        fig.savefig(plot, dpi=120)
        say(f"wrote {plot}")
    return 0


def _fit(kind, series, q, r, progress):
    from ..tracking import tracking_model
    from ..learn import fit_mle
    return fit_mle(lambda th: [tracking_model(kind, t, p, th[0], th[1]) for t, p in series],
                   [p for _, p in series], [q, r], transforms="log", progress=progress)


def _write(out, data, ests, kind):
    from ..data import east_north_to_lonlat
    unit = "m" if data["lonlat"] else ""
    cols = ["id", "time", "t_seconds" if data["datetime"] else "t", "x_obs", "y_obs", "x", "y", "x_std", "y_std"]
    if data["lonlat"]:
        cols = ["id", "time", "t_seconds", "east_obs_m", "north_obs_m", "east_m", "north_m", "east_std_m",
                "north_std_m", "lon", "lat"]
    if kind != "local-level":
        cols += [f"vx{'_' + unit + '_per_s' if unit else ''}", f"vy{'_' + unit + '_per_s' if unit else ''}",
                 "speed", "speed_std", "course_deg", "course_std_deg"]
    d = os.path.dirname(out)
    if d:
        os.makedirs(d, exist_ok=True)
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for k in data["ids"]:
            tr, est = data["tracks"][k], ests[k]
            if data["lonlat"]:
                lon, lat = east_north_to_lonlat(est.position[:, 0], est.position[:, 1], *data["ref"])
            for j, row in enumerate(tr["rows"]):
                vals = [k, data["raw_times"][row], f"{tr['times'][j]:.3f}",
                        *(f"{v:.3f}" for v in tr["positions"][j]), *(f"{v:.3f}" for v in est.position[j]),
                        *(f"{v:.3f}" for v in est.position_std[j])]
                if data["lonlat"]:
                    vals += [f"{lon[j]:.6f}", f"{lat[j]:.6f}"]
                if kind != "local-level":
                    vals += [f"{est.velocity[j, 0]:.4f}", f"{est.velocity[j, 1]:.4f}", f"{est.speed[j]:.4f}",
                             f"{est.speed_std[j]:.4f}", f"{est.course[j]:.2f}", f"{est.course_std[j]:.2f}"]
                w.writerow(vals)


def _figure(data, ests, kind):
    from ..plot import track_2d, tracks_overview
    units = "m" if data["lonlat"] else ""
    name = "smoothed" if next(iter(ests.values())).smoothed else "filtered"
    if len(data["ids"]) == 1:
        k = data["ids"][0]
        est = ests[k]
        T = len(est.times)
        kw = {"smoothed" if est.smoothed else "estimates": est.position,
              ("smoothed_covs" if est.smoothed else "covs"): est.covs[:, :2, :2]}
        return track_2d(observations=data["tracks"][k]["positions"], every=max(1, T // 40), units=units,
                        title=f"{kind}: {name} track with 95% ellipses", **kw)
    return tracks_overview([{"observations": data["tracks"][k]["positions"], "estimates": ests[k].position,
                             "label": str(k)} for k in data["ids"]], units=units,
                           title=f"{kind}: {name} tracks of {len(data['ids'])} objects")


if __name__ == "__main__":  # pragma: no cover
    from . import main
    sys.exit(main(["track", *sys.argv[1:]]))
