"""The accuracy each backend promises, stored once: read by tests, the CLI and the docs.

``TOLERANCES[(component, backend, dtype)]`` is the promised bound; ``metric`` says how the
error is measured against the float64 sequential reference:

- ``"max_abs"``: max |fast - ref| over means, covariances (and the log-likelihood);
- ``"max_rel"``: max |fast - ref| / max(|ref|, 1);
- ``"rel_rms"``: ||fast - ref||_2 / ||ref||_2 for each output and each gradient.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tolerance:
    """A promised accuracy: ``bound`` under ``metric`` (see the module docstring)."""

    bound: float
    metric: str
    note: str = ""


#: (component, backend, dtype) -> Tolerance. Components: "filter", "smoother", "kla_scan".
TOLERANCES: dict[tuple[str, str, str], Tolerance] = {
    ("filter", "sequential-covariance", "float64"): Tolerance(0.0, "max_abs", "the reference itself"),
}


def tolerance(component: str, backend: str, dtype: str) -> Tolerance:
    """The promised tolerance for a component/backend/dtype; raises KeyError if none is promised."""
    return TOLERANCES[(component, backend, dtype)]
