"""benchmarks/parallel_host_profile.py runs end to end on the CPU (--cpu-smoke: the interpreter, tiny
shapes): it patches bayesfilt internals (launch_all), so a change there must not break it silently
(session 10: launch_all gained an argument and the script failed on the device)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("triton")

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="the CPU smoke run; the GPU runs the real one")
def test_host_profile_cpu_smoke(tmp_path):
    env = dict(os.environ, OUT=str(tmp_path))
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "parallel_host_profile.py"), "--cpu-smoke"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    res = json.loads((tmp_path / "host_profile.json").read_text())
    assert res["meta"]["commit"] and any(k != "meta" for k in res)
