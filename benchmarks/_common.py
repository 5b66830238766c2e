"""What every benchmark records about the code it ran: the git commit, and whether it was modified.

Used by the scripts in benchmarks/ (each writes it under its own, unchanged JSON keys).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def git_state(paths=("bayesfilt",)) -> tuple[str, bool | None]:
    """``(commit, dirty)``: the HEAD commit ("unknown" without git) and whether ``paths`` (relative to the
    repository root) hold uncommitted changes (None when git cannot tell). ``$GIT_COMMIT``, when set,
    is taken as the commit (dirty None).

    Example:
        >>> sha, dirty = git_state()                              # doctest: +SKIP
    """
    import os
    if os.environ.get("GIT_COMMIT"):                    # set by benchmarks/gpu_run.sh: the device copy's .git
        return os.environ["GIT_COMMIT"], None           # may be stale, its working tree is the commit named
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown", None
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--", *paths], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return sha, None
    return sha, bool(out.strip())


def cv_model_filterpy_prior():
    """The CPU benchmarks' constant-velocity model (dt = 1, q = 1, r = 1) and filterpy's prior.

    Returns:
        ``(model, P0_fp)``: our model, whose prior is that of x_1 = F x_0 + w, and filterpy's
        prior covariance of x_0 (100 I, before its first predict), so both filters agree.
    """
    import numpy as np

    import bayesfilt
    base = bayesfilt.models.constant_velocity(dt=1.0, q=1.0, r=1.0)
    P0_fp = 100.0 * np.eye(4)                                  # filterpy's prior of x_0 (before its first predict)
    P0 = base.F @ P0_fp @ base.F.T + base.Q                    # ours: prior of x_1 = F x_0 + w
    return base.replace(P0=P0), P0_fp


def check(name: str, a, b, tol: float) -> float:
    """Max relative error of ``a`` against ``b`` (relative to max(1, |b|)); stops the benchmark above ``tol``."""
    import numpy as np
    a, b = np.asarray(a, float), np.asarray(b, float)
    err = float(np.max(np.abs(a - b) / np.maximum(1.0, np.abs(b))))
    if not err <= tol:
        raise SystemExit(f"parity failed for {name}: max relative error {err:.3g} > {tol}")
    return err


def filterpy_filter(model, P0_fp, y):
    """filterpy's ``KalmanFilter.batch_filter`` on the 4-state model; returns ``(kf, means, covs)``."""
    import numpy as np
    from filterpy.kalman import KalmanFilter
    kf = KalmanFilter(dim_x=4, dim_z=2)
    kf.x, kf.P = np.zeros(4), P0_fp.copy()
    kf.F, kf.Q, kf.H, kf.R = model.F, model.Q, model.H, model.R
    means, covs, _, _ = kf.batch_filter(y)
    return kf, means, covs
