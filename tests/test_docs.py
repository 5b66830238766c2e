"""The documentation cannot go stale: docstring gate, API coverage, runnable examples.

- Every public name (listed in ``__all__`` of a public module, or defined there without a
  leading underscore when it has no ``__all__``) has a Google-style docstring: a summary,
  ``Args:`` naming every parameter (``Attributes:`` for dataclass fields), ``Returns:`` /
  ``Yields:`` for functions that return something, and an ``Example:``. Public methods of
  public classes need the same (the example is optional for methods).
- Every ``Example:`` of those docstrings runs as a doctest and prints what it shows.
- Every public module appears in docs/api.md (``::: module`` block).
- Every script in examples/ runs (CPU, output in a temporary folder).
- The Python blocks of docs/index.md run.

The site itself is built by ``make docs`` (``mkdocs build --strict``), which ``make test`` runs.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import load_script

ROOT = Path(__file__).resolve().parent.parent

#: Modules whose public names form the API (documented in docs/api.md). A module that does
#: not exist yet is left out; one that needs torch is included when torch is importable.
PUBLIC_MODULES = (
    "bayesfilt", "bayesfilt.model", "bayesfilt.models", "bayesfilt.gaussian", "bayesfilt.results",
    "bayesfilt.errors", "bayesfilt.tolerances", "bayesfilt.filters", "bayesfilt.scan",
    "bayesfilt.nn", "bayesfilt.nn.functional", "bayesfilt.learn", "bayesfilt.plot",
    "bayesfilt.nn.config", "bayesfilt.nn.layer", "bayesfilt.nn.lm", "bayesfilt.nn.tasks", "bayesfilt.nn.train",
    "bayesfilt.nn.checkpoint", "bayesfilt.nn.decode", "bayesfilt.nn.text", "bayesfilt.nn.distributed",
    "bayesfilt.filters.diagonal",
    "bayesfilt.scan.diagonal", "bayesfilt.data", "bayesfilt.consistency", "bayesfilt.tracking",
)
#: Top-level modules that are implementation details (not in the API reference).
INTERNAL_MODULES = ("bayesfilt.linalg", "bayesfilt.validation", "bayesfilt.demo", "bayesfilt.demo_ais", "bayesfilt.cli",
                    "bayesfilt.__main__")
SECTIONS = ("Args", "Arguments", "Attributes", "Returns", "Yields", "Raises", "Example", "Examples",
            "Note", "Notes", "Warns", "References", "See Also", "Todo", "Warning")
HEADER = re.compile(r"^(\s*)(" + "|".join(SECTIONS) + r"):\s*$")


def _exists(name: str) -> bool:
    try:
        spec = importlib.util.find_spec(name)
    except ModuleNotFoundError:
        return False
    return spec is not None and spec.origin not in (None, "namespace")   # a folder without __init__.py is not a module yet


def _importable(name: str) -> bool:
    if not _exists(name):
        return False
    try:
        importlib.import_module(name)
    except ImportError as exc:                      # an optional extra (torch) is missing
        if "torch" in str(exc) and importlib.util.find_spec("torch") is None:
            return False
        raise
    return True


MODULES = [m for m in PUBLIC_MODULES if _exists(m)]


def _sections(doc: str) -> dict[str, str]:
    """Google-style sections of a docstring: name -> body text."""
    out: dict[str, list[str]] = {}
    current = None
    for line in inspect.cleandoc(doc).splitlines():
        m = HEADER.match(line)
        if m and m.group(1) == "":
            current = m.group(2)
            out.setdefault(current, [])
        elif current is not None:
            if line and not line[0].isspace():      # dedented text ends the section
                current = None
            else:
                out[current].append(line)
    return {k: "\n".join(v) for k, v in out.items()}


def _documented_names(body: str) -> set[str]:
    """Entry names of an Args/Attributes section.

    An entry is ``name: text``, ``name (type): text`` or, for closely related arguments,
    ``a, b: text``; continuation lines are indented deeper than the entries.
    """
    names = set()
    indent = None
    entry = re.compile(r"\s*((?:\*{0,2}[A-Za-z_][A-Za-z0-9_]*\s*,\s*)*\*{0,2}[A-Za-z_][A-Za-z0-9_]*)"
                       r"\s*(\([^)]*\))?\s*:")
    for line in body.splitlines():
        if not line.strip():
            continue
        width = len(line) - len(line.lstrip())
        if indent is None:
            indent = width
        if width == indent:
            m = entry.match(line)
            if m:
                names |= {n.strip().lstrip("*") for n in m.group(1).split(",")}
    return names


def _params(obj) -> list[str]:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return []
    return [p.name for p in sig.parameters.values()
            if p.name not in ("self", "cls") and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _returns_something(func) -> bool:
    try:
        ann = inspect.signature(func).return_annotation
    except (TypeError, ValueError):
        return True
    return ann not in (None, "None", type(None))


def _problems(obj, *, is_method: bool = False) -> list[str]:
    """What is missing from obj's docstring (empty list: nothing)."""
    doc = inspect.getdoc(obj) if not is_method else (obj.__doc__ or "")
    if not doc or not doc.strip():
        return ["no docstring"]
    secs = _sections(doc)
    problems = []
    if inspect.isclass(obj):
        fields = [f.name for f in dataclasses.fields(obj)] if dataclasses.is_dataclass(obj) else []
        init_doc = obj.__init__.__doc__ if "__init__" in vars(obj) else None
        params = _params(obj)
        init_secs = _sections(init_doc) if init_doc else {}
        documented = set()
        for s in (secs, init_secs):
            for key in ("Args", "Arguments", "Attributes"):
                documented |= _documented_names(s.get(key, ""))
        missing = [p for p in dict.fromkeys(params + fields) if p not in documented]
        if missing:
            problems.append(f"Args/Attributes lack {missing}")
    else:
        params = _params(obj)
        if params:
            documented = _documented_names(secs.get("Args", "") or secs.get("Arguments", ""))
            missing = [p for p in params if p not in documented]
            if "Args" not in secs and "Arguments" not in secs:
                problems.append("no Args section")
            elif missing:
                problems.append(f"Args lack {missing}")
            unknown = sorted(documented - set(_params_all(obj)))
            if unknown:
                problems.append(f"Args document {unknown}, which the signature lacks")
        if _returns_something(obj) and not ({"Returns", "Yields"} & secs.keys()):
            problems.append("no Returns section")
    exception = inspect.isclass(obj) and issubclass(obj, BaseException)
    if not is_method and not exception and not ({"Example", "Examples"} & secs.keys()):
        problems.append("no Example section")
    return problems


def _params_all(obj) -> list[str]:
    try:
        return [p.name for p in inspect.signature(obj).parameters.values()]
    except (TypeError, ValueError):
        return []


def _public_names(module) -> list[str]:
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n, v in vars(module).items() if not n.startswith("_")
                 and (inspect.isfunction(v) or inspect.isclass(v))
                 and getattr(v, "__module__", None) == module.__name__]
    return [n for n in names if not n.startswith("_")]


def _fixed_signature_methods(cls) -> set[str]:
    """Methods whose signature a framework fixes (documented on the class instead)."""
    for base in cls.__mro__[1:]:
        if f"{base.__module__}.{base.__qualname__}" == "torch.autograd.function.Function":
            return {"forward", "backward", "setup_context", "jvp", "vmap"}
    return set()


def _public_objects():
    """(qualified name, object, is_method) for every public function, class and method."""
    seen = set()
    for mod_name in MODULES:
        if not _importable(mod_name):
            continue
        module = importlib.import_module(mod_name)
        for name in _public_names(module):
            obj = getattr(module, name)
            if not (inspect.isfunction(obj) or inspect.isclass(obj)) or id(obj) in seen:
                continue                               # constants, submodules, re-exports seen before
            seen.add(id(obj))
            yield f"{mod_name}.{name}", obj, False
            if inspect.isclass(obj) and not issubclass(obj, BaseException):
                fixed = _fixed_signature_methods(obj)
                for attr, member in vars(obj).items():
                    if attr.startswith("_") or attr in fixed:
                        continue
                    if isinstance(member, (staticmethod, classmethod)):
                        member = member.__func__
                    if inspect.isfunction(member):
                        yield f"{mod_name}.{name}.{attr}", member, True
                    elif isinstance(member, property) and not (member.__doc__ or "").strip():
                        yield f"{mod_name}.{name}.{attr}", member, True


def test_every_public_name_has_a_complete_docstring():
    failures = []
    count = 0
    for qualname, obj, is_method in _public_objects():
        count += 1
        if isinstance(obj, property):
            failures.append(f"{qualname}: no docstring")
            continue
        problems = _problems(obj, is_method=is_method)
        if problems:
            where = inspect.getsourcefile(inspect.unwrap(obj))
            rel = os.path.relpath(where, ROOT) if where else "?"
            failures.append(f"{qualname} ({rel}): " + "; ".join(problems))
    print(f"docstring gate: {count} public names checked in {len(MODULES)} modules, "
          f"{len(failures)} incomplete")
    assert not failures, "incomplete docstrings:\n  " + "\n  ".join(failures)


def test_every_docstring_example_runs(tmp_path, monkeypatch):
    """The ``Example:`` sections are doctests: they must run and print what they show."""
    import doctest

    import matplotlib
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    finder = doctest.DocTestFinder(recurse=False)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    failures, count = [], 0
    for qualname, obj, _ in _public_objects():
        if isinstance(obj, property):
            continue
        module = importlib.import_module(obj.__module__)
        for test in finder.find(obj, qualname, module=module, globs=dict(vars(module))):
            if not test.examples:
                continue
            count += 1
            report: list[str] = []
            result = runner.run(test, out=report.append)
            if result.failed:
                failures.append(f"{qualname}:\n" + "".join(report)[-1500:])
    print(f"{count} docstring examples run, {len(failures)} failed")
    assert not failures, "\n".join(failures)


def test_the_gate_can_fail():
    def bad(x, y):
        """Summary only."""
        return x

    def good(x, y=1) -> int:
        """Summary.

        Args:
            x: first.
            y (int): second.

        Returns:
            x.

        Example:
            >>> good(1)
            1
        """
        return x

    assert set(_problems(bad)) == {"no Args section", "no Returns section", "no Example section"}
    assert _problems(good) == []

    def pair(a, b, c) -> None:
        """Summary.

        Args:
            a, b: two related arguments. c: not an entry (it must start its own line).

        Example:
            >>> pair(1, 2, 3)
        """

    assert _problems(pair) == ["Args lack ['c']"]


def test_every_public_module_is_in_the_api_reference():
    api = (ROOT / "docs" / "api.md").read_text()
    blocks = re.findall(r"^::: ([\w.]+)", api, flags=re.M)
    missing = [m for m in MODULES if not any(b == m or b.startswith(m + ".") for b in blocks)]
    assert not missing, f"add a '::: MODULE' block to docs/api.md for {missing}"


def test_every_top_level_module_is_public_or_internal():
    """A new module of bayesfilt must be listed in PUBLIC_MODULES (and so documented) or INTERNAL_MODULES."""
    import pkgutil

    import bayesfilt

    found = {f"bayesfilt.{m.name}" for m in pkgutil.iter_modules(bayesfilt.__path__) if not m.name.startswith("_")}
    unclassified = sorted(found - set(PUBLIC_MODULES) - set(INTERNAL_MODULES))
    assert not unclassified, (f"classify {unclassified} in tests/test_docs.py: PUBLIC_MODULES (then add a "
                              "'::: module' block to docs/api.md) or INTERNAL_MODULES")


EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(script, tmp_path):
    """Each example runs on the CPU, writing only into a temporary working directory.

    The budget is one minute on the CPU; the timeout here is generous (the CI machine is
    shared) and only stops a script that hangs.
    """
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=str(ROOT), CUDA_VISIBLE_DEVICES="")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    took = time.perf_counter() - start
    assert proc.returncode == 0, f"{script.name} failed after {took:.1f} s:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    print(f"{script.name}: {took:.1f} s")


def _gen_tables():
    return load_script(ROOT / "docs" / "gen_tables.py", "gen_tables")


def test_backends_page_lists_every_tolerance():
    from bayesfilt.tolerances import TOLERANCES

    page = _gen_tables().render_backends()
    for (component, backend, dtype), tol in TOLERANCES.items():
        assert f"## `{component}`" in page
        assert any(f"`{backend}`" in line and dtype in line and f"`{tol.metric}`" in line
                   for line in page.splitlines()), (component, backend, dtype)


def test_benchmarks_page_renders_results_and_flags_bad_json(tmp_path, caplog):
    import json
    import logging

    (tmp_path / "cpu.json").write_text(json.dumps({
        "commit": "0123abc", "machine": {"cpu": "test cpu"},
        "results": [{"library": "bayesfilt", "seconds": 0.25}, {"library": "peer", "seconds": 2.5}]}))
    (tmp_path / "broken.json").write_text("{not json")
    with caplog.at_level(logging.WARNING):
        page = _gen_tables().render_benchmarks(tmp_path)
    assert "| commit | 0123abc |" in page and "| machine.cpu | test cpu |" in page
    assert "| bayesfilt | 0.25 |" in page and "| peer | 2.5 |" in page
    assert any("broken.json" in r.getMessage() for r in caplog.records)

    (tmp_path / "timed.json").write_text(json.dumps({"times_s": {"bayesfilt": 0.1, "peer": 1.0}}))
    figures: dict = {}
    page = _gen_tables().render_benchmarks(tmp_path, figures=figures)
    assert len(figures) == 1
    (name, png), = figures.items()
    assert png[:4] == b"\x89PNG" and f"]({name})" in page


def test_index_page_code_runs(tmp_path, monkeypatch):
    import matplotlib
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    text = (ROOT / "docs" / "index.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```", text, flags=re.M | re.S)
    assert blocks, "docs/index.md has no python example"
    namespace: dict = {}
    for code in blocks:
        exec(compile(code, "docs/index.md", "exec"), namespace)
