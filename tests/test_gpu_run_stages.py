"""benchmarks/gpu_run.sh: every stage its usage lines name has exactly one case label (bash takes the first
matching label, so a duplicate is dead code, and a stage without one falls through to "unknown stage")."""
import collections
import re
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_run.sh"


def test_every_usage_stage_has_one_case_label():
    text = SCRIPT.read_text()
    usage = re.findall(r"^#\s+bash benchmarks/gpu_run\.sh COMMIT (\S+)", text, re.M)
    labels = [name for group in re.findall(r"^([A-Za-z0-9_|-]+)\)", text, re.M) for name in group.split("|")]
    counts = collections.Counter(labels)
    assert usage and [s for s in usage if counts[s] != 1] == []
    assert [s for s, n in counts.items() if n > 1] == []
