"""Real data shipped with bayesfilt (small CSVs; sources and licences in ``README.md`` here).

- :func:`load_ais`: AIS reports of 7 vessels moving in New York Harbor, 2020-06-30 00:00-01:00
  UTC (317 reports; extract of tracktable-data, BSD-2-Clause), converted to local
  east/north metres with irregular time steps; the vessels' own speed over ground (SOG)
  and course over ground (COG) are kept as an independent check.
- :func:`load_nile`: annual flow of the Nile at Aswan, 1871-1970 (100 values).

Nothing here downloads; the files are package data found through ``importlib.resources``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from importlib import resources

import numpy as np

from ..errors import value_error
from ..validation import as_float_array, as_real_scalar

#: WGS84 semi-major axis [m] and first eccentricity squared.
WGS84_A = 6378137.0
WGS84_E2 = 6.69437999014e-3
#: Metres per second in one knot (exact: 1852 m per hour).
KNOT = 1852.0 / 3600.0

AIS_FILE = "ais_nyharbor.csv"
NILE_FILE = "nile.csv"


def data_path(name: str) -> str:
    """Filesystem path of a shipped data file (``"ais_nyharbor.csv"`` or ``"nile.csv"``).

    Args:
        name: the file name.

    Returns:
        The path as a string (found through ``importlib.resources``).

    Example:
        >>> from bayesfilt.data import data_path
        >>> data_path("nile.csv").endswith("nile.csv")
        True
    """
    if name not in (AIS_FILE, NILE_FILE):
        raise value_error("name", f"is {name!r}", f"pass one of {(AIS_FILE, NILE_FILE)}")
    return str(resources.files(__name__).joinpath(name))


def lonlat_to_east_north(lon, lat, ref_lon: float, ref_lat: float) -> tuple[np.ndarray, np.ndarray]:
    """Local east/north metres about a reference point (equirectangular, WGS84 radii).

    east = N(φ0) cos φ0 (λ - λ0), north = M(φ0) (φ - φ0), with the prime-vertical and
    meridional radii of curvature N, M of the WGS84 ellipsoid at the reference latitude
    φ0. Over the ~30 km of New York Harbor the scale error is below 0.3 % (the change of
    cos φ across the area), i.e. below 0.03 knots at 10 knots.

    Args:
        lon, lat: degrees, arrays of the same shape.
        ref_lon, ref_lat: the reference point in degrees.

    Returns:
        ``(east, north)`` in metres. Longitude differences are taken the short way round
        (179.9 and -179.9 are 0.2 degrees apart).

    Example:
        >>> e, n = lonlat_to_east_north([-74.0], [40.001], -74.0, 40.0)
        >>> round(float(n[0]), 1)
        111.0
    """
    lon = as_float_array(lon, "lon").astype(float)
    lat = as_float_array(lat, "lat").astype(float)
    ref_lon = as_real_scalar(ref_lon, "ref_lon", low=-360.0, high=360.0, fix="pass a longitude in degrees")
    ref_lat = as_real_scalar(ref_lat, "ref_lat", low=-90.0, high=90.0, high_open=True,
                             fix="pass a latitude in degrees in [-90, 90)")
    phi0 = np.radians(ref_lat)
    s2 = np.sin(phi0) ** 2
    N = WGS84_A / np.sqrt(1 - WGS84_E2 * s2)                          # prime-vertical radius
    M = WGS84_A * (1 - WGS84_E2) / (1 - WGS84_E2 * s2) ** 1.5         # meridional radius
    dlon = (lon - ref_lon + 180.0) % 360.0 - 180.0                    # Δλ in [-180, 180): across the antimeridian too
    east = N * np.cos(phi0) * np.radians(dlon)                        # x = N cos φ0 Δλ
    north = M * np.radians(lat - ref_lat)                             # y = M Δφ
    return east, north


def east_north_to_lonlat(east, north, ref_lon: float, ref_lat: float) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`lonlat_to_east_north` (same reference point and radii).

    Args:
        east, north: metres about the reference point.
        ref_lon, ref_lat: the reference point in degrees.

    Returns:
        ``(lon, lat)`` in degrees, longitudes in [-180, 180).

    Example:
        >>> lon, lat = east_north_to_lonlat(*lonlat_to_east_north([-74.01], [40.7], -74.0, 40.6), -74.0, 40.6)
        >>> round(float(lon[0]), 6), round(float(lat[0]), 6)
        (-74.01, 40.7)
    """
    phi0 = np.radians(ref_lat)
    s2 = np.sin(phi0) ** 2
    N = WGS84_A / np.sqrt(1 - WGS84_E2 * s2)
    M = WGS84_A * (1 - WGS84_E2) / (1 - WGS84_E2 * s2) ** 1.5
    lon = ref_lon + np.degrees(as_float_array(east, "east").astype(float) / (N * np.cos(phi0)))     # Δλ = x / (N cos φ0)
    lon = (lon + 180.0) % 360.0 - 180.0                                                              # into [-180, 180)
    lat = ref_lat + np.degrees(as_float_array(north, "north").astype(float) / M)                     # Δφ = y / M
    return lon, lat


@dataclass(frozen=True)
class VesselTrack:
    """One vessel's AIS reports.

    Attributes:
        mmsi: the vessel's MMSI number.
        name: vessel name (may be empty).
        timestamps: (T,) ``datetime64[s]`` report times (UTC).
        times: (T,) seconds since 2020-06-30T00:00:00 UTC (irregular steps).
        lon, lat: (T,) degrees.
        east, north: (T,) metres about ``ref_lon``/``ref_lat``.
        sog: (T,) reported speed over ground [knots].
        cog: (T,) reported course over ground [degrees clockwise from north, 0-360),
            NaN where not available.
        ref_lon, ref_lat: reference point of the east/north frame (degrees).

    Example:
        >>> v = load_ais()[0]
        >>> v.positions.shape == (len(v), 2), v.name
        (True, 'SHANTI')
    """

    mmsi: int
    name: str
    timestamps: np.ndarray
    times: np.ndarray
    lon: np.ndarray
    lat: np.ndarray
    east: np.ndarray
    north: np.ndarray
    sog: np.ndarray
    cog: np.ndarray
    ref_lon: float
    ref_lat: float

    @property
    def positions(self) -> np.ndarray:
        """(T, 2) east/north positions in metres."""
        return np.stack([self.east, self.north], axis=-1)

    def __len__(self) -> int:
        return len(self.times)


def fix_cog(cog) -> np.ndarray:
    """Undo the signed 12-bit wrap of course over ground in the MarineCadastre files.

    AIS sends COG in 0.1° steps as 12 bits (0-4095, 3600 = not available). The source
    file stores some values as signed 12-bit integers (-204.8 .. 204.7); adding 409.6 to
    the negative ones restores 0-409.5, which agrees with the vessels' headings. Values
    of 360 and above are "not available" and become NaN.

    Args:
        cog: raw course-over-ground values [degrees].

    Returns:
        Course over ground in [0, 360) degrees, NaN where not available.

    Example:
        >>> fix_cog([-160.7, 164.2, 360.0]).round(1).tolist()
        [248.9, 164.2, nan]
    """
    c = as_float_array(cog, "cog").astype(float)
    c = np.round(np.where(c < 0, c + 409.6, c), 1)                    # signed 12-bit -> unsigned, 0.1° steps
    return np.where(c >= 360.0, np.nan, c)


def load_ais(ref_lon: float | None = None, ref_lat: float | None = None) -> tuple[VesselTrack, ...]:
    """The shipped AIS extract: 7 vessels, New York Harbor, 2020-06-30 00:00-01:00 UTC.

    Args:
        ref_lon, ref_lat: reference point of the east/north frame; default the mean
            longitude/latitude of all shipped reports (one frame for every vessel).

    Returns:
        A tuple of :class:`VesselTrack`, one per vessel, sorted by MMSI, each sorted by time.

    Example:
        >>> from bayesfilt.data import load_ais
        >>> tracks = load_ais()
        >>> len(tracks), sum(len(t) for t in tracks)
        (7, 317)
    """
    with open(data_path(AIS_FILE), newline="") as f:
        rows = list(csv.DictReader(f))
    lon = np.array([float(r["LON"]) for r in rows])
    lat = np.array([float(r["LAT"]) for r in rows])
    if ref_lon is None:
        ref_lon = float(lon.mean())
    if ref_lat is None:
        ref_lat = float(lat.mean())
    east, north = lonlat_to_east_north(lon, lat, ref_lon, ref_lat)
    stamps = np.array([r["BaseDateTime"] for r in rows], dtype="datetime64[s]")
    secs = (stamps - np.datetime64("2020-06-30T00:00:00", "s")).astype(float)
    mmsi = np.array([int(r["MMSI"]) for r in rows])
    sog = np.array([float(r["SOG"]) for r in rows])
    cog = fix_cog([float(r["COG"]) for r in rows])
    tracks = []
    for m in np.unique(mmsi):
        idx = np.flatnonzero(mmsi == m)
        idx = idx[np.argsort(secs[idx], kind="stable")]
        tracks.append(VesselTrack(mmsi=int(m), name=rows[idx[0]]["VesselName"], timestamps=stamps[idx],
                                  times=secs[idx], lon=lon[idx], lat=lat[idx], east=east[idx], north=north[idx],
                                  sog=sog[idx], cog=cog[idx], ref_lon=ref_lon, ref_lat=ref_lat))
    return tuple(tracks)


def load_nile() -> tuple[np.ndarray, np.ndarray]:
    """Annual flow of the Nile at Aswan, 1871-1970 (10^8 m^3), 100 values.

    Returns:
        ``(years, flow)``: int array (100,) and float array (100,).

    Example:
        >>> from bayesfilt.data import load_nile
        >>> years, flow = load_nile()
        >>> int(years[0]), float(flow[0]), len(flow)
        (1871, 1120.0, 100)
    """
    with open(data_path(NILE_FILE), newline="") as f:
        rows = list(csv.DictReader(f))
    return np.array([int(r["year"]) for r in rows]), np.array([float(r["flow"]) for r in rows])


__all__ = ["KNOT", "VesselTrack", "data_path", "east_north_to_lonlat", "fix_cog", "load_ais", "load_nile", "lonlat_to_east_north"]
