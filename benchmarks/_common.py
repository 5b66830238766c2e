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
