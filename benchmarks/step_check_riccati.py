"""Time and peak memory of ``parallel_filter(method="riccati")`` with and without ``verify=True``
(NumPy; 2000 constant-velocity series x 500 steps, n = 4), each in a fresh process (peak RSS).
Writes benchmarks/results/step_check_riccati.json.

    python benchmarks/step_check_riccati.py
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

from _common import git_state

CHILD = r"""
import resource, sys, time, numpy as np, bayesfilt
verify = sys.argv[1] == "1"
model = bayesfilt.models.constant_velocity(q=0.1, r=1.0, dim=2)
y = np.random.default_rng(0).standard_normal((2000, 500, 2)).cumsum(1)
bayesfilt.parallel_filter(model, y[:2], method="riccati", verify=verify)          # imports, first call
t0 = time.perf_counter()
bayesfilt.parallel_filter(model, y, method="riccati", verify=verify)
print(time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def main() -> None:
    res = {}
    for verify in ("0", "1"):
        out = subprocess.run([sys.executable, "-c", CHILD, verify], capture_output=True, text=True, check=True)
        seconds, mb = map(float, out.stdout.split())
        res[f"verify={verify == '1'}"] = {"seconds": seconds, "peak_rss_mb": mb}
        print(f"verify={verify == '1'}: {seconds:.2f} s, peak RSS {mb:.0f} MB", flush=True)
    commit, dirty = git_state()
    path = Path(__file__).resolve().parent / "results" / "step_check_riccati.json"
    path.write_text(json.dumps({"benchmark": "step_check_riccati", "commit": commit, "dirty": dirty,
                                "machine": platform.node(), "python": platform.python_version(),
                                "shape": "2000 series x 500 steps, n = 4, m = 2", **res}, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
