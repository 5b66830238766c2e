"""Layering (DESIGN.md): imports flow model -> filters -> scan -> nn -> CLI/plots, and the consumer-level
``bayesfilt check`` says what it skipped instead of dropping rows."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "bayesfilt"


def _imports(path: Path) -> list[tuple[int, str]]:
    """(relative level, module) of every import statement in ``path`` (top level and inside functions)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            out.append((node.level, node.module or ""))
        elif isinstance(node, ast.Import):
            out += [(0, a.name) for a in node.names]
    return out


@pytest.mark.parametrize("layer", ["filters", "scan"])
def test_lower_layers_import_neither_nn_nor_the_package(layer):
    """filters/ and scan/ never import nn/, the CLI, plots or the top-level package (``from .. import``)."""
    bad = []
    for path in sorted((PKG / layer).glob("*.py")):
        for level, mod in _imports(path):
            top = mod.split(".")[0]
            absolute = level == 0 and (mod == "bayesfilt" or mod.startswith("bayesfilt."))
            up = level == 2 and top in ("", "nn", "cli", "plot", "demo", "demo_ais")
            if absolute or up or (level == 0 and top == "torch" and layer == "filters"):
                bad.append(f"{path.name}: {'.' * level}{mod}")
    assert not bad, bad


def _run_without_torch(code: str) -> subprocess.CompletedProcess:
    prog = "import sys; sys.modules['torch'] = None\n" + code
    return subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, timeout=300)


def test_check_without_torch_says_what_it_skipped():
    """Without torch, `bayesfilt check` still checks the NumPy backends and prints explicit skip lines."""
    p = _run_without_torch("from bayesfilt.cli import main\nsys.exit(main(['check', '--T', '6']))")
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    assert "KLA backends skipped: torch not installed" in p.stdout
    assert "torch parallel-filter backends skipped: torch not installed" in p.stdout
    assert "numpy" in p.stdout and " NO" not in p.stdout


@pytest.mark.parametrize("argv", [["train", "a5", "--steps", "1"], ["generate", "run_dir", "--prompt", "In the"]])
def test_torch_subcommands_without_torch_name_the_extra(argv):
    """`bayesfilt train` / `generate` without torch: a named error with the install command, no traceback."""
    p = _run_without_torch(f"from bayesfilt.cli import main\nsys.exit(main({argv!r}))")
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert "Traceback" not in p.stderr
    assert "torch: is not installed. Fix: pip install 'bayesfilt[torch]'" in p.stderr
