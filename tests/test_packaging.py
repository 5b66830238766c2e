"""pyproject.toml: a plain `pip install .[test]` gets every package the test suite imports optionally.

A test guarded by ``pytest.importorskip`` of a package silently skips when it is missing, so the package
must come with the ``test`` extra; otherwise a user without the Makefile skips those tests unknowingly.
torch is the one exception: the Makefile pins its CPU build (torch==2.13.0) before installing the extras.
"""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INSTALLED_APART = {"torch"}                        # pinned by the Makefile (TORCH_PIN), see its comment


def _names(reqs):
    return {re.match(r"[A-Za-z0-9_.\-]+", r.strip()).group(0).lower().replace("_", "-") for r in reqs}


def _test_extra():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return _names(project["optional-dependencies"]["test"]) | _names(project["dependencies"])


def test_importorskip_packages_are_in_the_test_extra():
    skipped = set()
    for path in (ROOT / "tests").glob("*.py"):
        skipped |= {m.split(".")[0].lower() for m in re.findall(r"importorskip\(\s*[\"']([\w.]+)", path.read_text())}
    missing = sorted(skipped - _test_extra() - INSTALLED_APART)
    assert not missing, f"add {missing} to [project.optional-dependencies] test in pyproject.toml"


def test_tqdm_and_triton_in_the_test_extra():
    """The Makefile's `make test` installs triton and tqdm; `pip install .[test]` must get them too."""
    assert {"tqdm", "triton"} <= _test_extra()


def test_benchmarks_record_the_commit_through_one_helper():
    """benchmarks/_common.git_state is the one place that asks git for the commit; it equals `git rev-parse
    HEAD` and says whether bayesfilt/ is modified. The scripts use it instead of their own copies
    (distributed_lm.py excepted: another engineer's file at the time of writing)."""
    from conftest import load_script
    import subprocess

    common = load_script(ROOT / "benchmarks" / "_common.py", "bench_common")
    sha, dirty = common.git_state()
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    if head.returncode == 0:
        assert sha == head.stdout.strip() and isinstance(dirty, bool)
    copies = [p.name for p in (ROOT / "benchmarks").glob("*.py")
              if p.name != "_common.py" and "rev-parse" in p.read_text()]
    assert not copies, f"{copies} ask git themselves; use benchmarks/_common.git_state"
