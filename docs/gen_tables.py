"""Pages generated from the package's own data, so that they cannot go stale.

Used two ways:

- as an MkDocs hook (``hooks:`` in mkdocs.yml): at every build it adds the pages
  ``backends.md`` (from ``bayesfilt/tolerances.py``'s ``TOLERANCES``) and ``benchmarks.md``
  (from the committed ``benchmarks/results/*.json``) to the site; neither is a file in
  the repository;
- as a script, to look at the generated Markdown: ``python docs/gen_tables.py backends``
  or ``python docs/gen_tables.py benchmarks``.

Unreadable benchmark JSON is logged as a warning, which fails ``mkdocs build --strict``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
log = logging.getLogger("mkdocs.hooks.gen_tables")

# keys that describe where and how a benchmark ran (shown above its tables, in this order)
META_KEYS = ("benchmark", "name", "description", "date", "date_utc", "timestamp", "commit",
             "git_commit", "git", "git_dirty", "machine", "device", "gpu", "cpu", "platform", "python",
             "versions", "dtype", "shapes", "shape", "config")


# --------------------------------------------------------------------------- helpers
def _cell(value) -> str:
    """One table cell: numbers to 4 significant digits, containers as compact JSON."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != value:
            return "NaN"
        return f"{value:.4g}"
    if isinstance(value, (dict, list, tuple)):
        text = json.dumps(value, separators=(", ", ": "), default=str)
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |",
             "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _flatten(d: dict, prefix: str = "") -> dict:
    """Nested dicts to dotted keys; lists are kept as values."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v and len(_flatten(v)) <= 12:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _is_records(v) -> bool:
    return isinstance(v, list) and len(v) > 0 and all(isinstance(r, dict) for r in v)


def _is_keyed_records(v) -> bool:
    return isinstance(v, dict) and len(v) > 0 and all(isinstance(r, dict) for r in v.values())


def _records_table(records: list[dict], key_name: str | None = None, keys: list | None = None) -> str:
    flat = [_flatten(r) for r in records]
    header: list[str] = []
    for r in flat:
        header += [k for k in r if k not in header]
    rows = [[r.get(h) for h in header] for r in flat]
    if keys is not None:
        header = [key_name or "name"] + header
        rows = [[k] + row for k, row in zip(keys, rows)]
    return _table(header, rows)


# --------------------------------------------------------------------------- backends.md
def render_backends() -> str:
    """The tolerance table (``bayesfilt.tolerances.TOLERANCES``) as Markdown."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from bayesfilt import tolerances as tol_mod

    doc = tol_mod.__doc__ or ""
    doc = re.sub(r"``([^`]+)``", r"`\1`", doc)                    # reST literals -> Markdown
    by_component: dict[str, list] = {}
    for (component, backend, dtype), tol in tol_mod.TOLERANCES.items():
        by_component.setdefault(component, []).append((backend, dtype, tol))
    extra = []
    for rows in by_component.values():
        for _, _, tol in rows:
            for f in dataclasses.fields(tol):
                if f.name not in ("bound", "metric", "note") and f.name not in extra:
                    extra.append(f.name)

    parts = [
        "# Backends, dtypes and promised tolerances\n",
        "!!! info \"Generated page\"\n"
        "    This page is rendered at every docs build from `bayesfilt/tolerances.py` "
        "(`TOLERANCES`), the one place the promises are stored; the tests and "
        "`bayesfilt check` read the same table. Edit the table there, not here.\n",
        "## How errors are measured\n",
        doc.strip() + "\n",
        "Every promise is checked against the float64 sequential reference "
        "([covariance form](math/covariance_filter.md)) on the model convention of the "
        "[notation page](math/notation.md).\n",
    ]
    header = ["backend", "dtype"] + extra + ["bound", "metric", "note"]
    for component in sorted(by_component):
        parts.append(f"## `{component}`\n")
        rows = [[f"`{backend}`", dtype] + [getattr(tol, e, None) for e in extra]
                + [tol.bound, f"`{tol.metric}`", tol.note]
                for backend, dtype, tol in sorted(by_component[component], key=lambda r: (r[0], r[1]))]
        parts.append(_table(header, rows))
    if not by_component:
        parts.append("No tolerances are declared yet.\n")
    return "\n".join(parts)


# --------------------------------------------------------------------------- benchmarks.md
def _homogeneous(d: dict) -> bool:
    """A dict of dicts whose members share (most of) their keys: one table, a row each."""
    if not _is_keyed_records(d):
        return False
    keysets = [set(_flatten(v)) for v in d.values()]
    union = set().union(*keysets)
    return all(len(k) >= 0.75 * len(union) for k in keysets)


TIME_KEY = re.compile(r"(^|_)(times?|seconds|ms|us|us_per_step|ms_per_step)($|_)|_s$|_ms$")


def _bar_chart(title: str, values: dict, unit: str) -> bytes:
    """A horizontal bar chart (log scale) of name -> time; bayesfilt's bars highlighted."""
    import io

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(values)
    from matplotlib.ticker import NullFormatter

    fig, ax = plt.subplots(figsize=(9, 0.35 * len(names) + 1.2))
    colors = ["tab:blue" if n.lower().startswith("bayesfilt") else "tab:gray" for n in names]
    ax.barh(range(len(names)), [values[n] for n in names], color=colors)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())
    for i, n in enumerate(names):
        ax.text(values[n], i, f" {values[n]:.3g}", va="center", fontsize=7)
    ax.set_xlabel(unit)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _render_section(data: dict, level: int, meta_first: bool = False, figures: dict | None = None,
                    name: str = "") -> list[str]:
    """Scalars of ``data`` as a field/value table, then one sub-section per nested part.

    With ``figures`` (a dict), a section of two or more timings (a key like ``times_s``)
    also gets a bar chart: its PNG bytes are stored in ``figures`` under its file name.
    """
    rows, sections = [], []
    numeric = [v for v in data.values() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    leaf = name.rsplit("/", 1)[-1]
    if (figures is not None and TIME_KEY.search(leaf) and len(numeric) >= 2
            and len(numeric) == len(data) and all(v > 0 for v in numeric)):
        file = "benchmarks_img/" + re.sub(r"[^A-Za-z0-9_.-]+", "_", name) + ".png"
        unit = ("seconds" if leaf.endswith("_s") or "second" in leaf else
                "µs per step" if leaf == "us_per_step" else leaf.replace("_", " "))
        figures[file] = _bar_chart(name.replace("/", " / "), data, unit)
        rows_note = [f"![{name}]({file})\n"]
    else:
        rows_note = []
    items = list(data.items())
    if meta_first:
        items.sort(key=lambda kv: META_KEYS.index(kv[0]) if kv[0] in META_KEYS else len(META_KEYS))
    heading = "#" * min(level, 6)
    for key, value in items:
        if _is_records(value):
            sections += [f"{heading} {key}\n", _records_table(value)]
        elif _homogeneous(value) and not (meta_first and key in META_KEYS):
            sections += [f"{heading} {key}\n", _records_table(list(value.values()), "name", list(value))]
        elif isinstance(value, dict) and value and key in META_KEYS:
            rows += [[f"{key}.{k}", v] for k, v in _flatten(value).items()]
        elif isinstance(value, dict) and value:
            sections += [f"{heading} {key}\n"] + _render_section(value, level + 1, figures=figures,
                                                                  name=f"{name}/{key}")
        else:
            rows.append([key, value])
    out = [_table(["field", "value"], rows)] if rows else []
    return out + rows_note + sections


def _render_result(path: Path, figures: dict | None = None) -> str:
    data = json.loads(path.read_text())
    try:
        rel = path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        rel = str(path)
    parts = [f"## {path.stem}\n", f"Source: `{rel}`\n"]
    if _is_records(data):
        parts.append(_records_table(data))
    elif isinstance(data, dict):
        parts += _render_section(data, 3, meta_first=True, figures=figures, name=path.stem)
    else:
        parts.append(f"`{_cell(data)}`\n")
    return "\n".join(parts)


def render_benchmarks(results_dir: Path = RESULTS_DIR, figures: dict | None = None) -> str:
    """Every committed ``benchmarks/results/*.json`` as Markdown tables (and, given a
    ``figures`` dict to fill with PNG bytes, bar charts of the timings)."""
    parts = [
        "# Benchmarks\n",
        "!!! info \"Generated page\"\n"
        "    Rendered at every docs build from the JSON files committed under "
        "`benchmarks/results/`. Each benchmark script in `benchmarks/` runs bayesfilt and "
        "its peers in the same process, only after a parity check against the reference, "
        "and records the machine, the library versions and the git commit it ran on; "
        "re-run a script to refresh its file. Numbers are shown to 4 significant digits.\n",
        "The targets these numbers are measured against are listed in the project's "
        "`TARGETS` notes; the tolerances each backend promises are on the "
        "[backends page](backends.md).\n",
    ]
    files = sorted(results_dir.glob("*.json")) if results_dir.is_dir() else []
    if not files:
        parts.append("No benchmark results are committed yet.\n")
    for path in files:
        try:
            parts.append(_render_result(path, figures))
        except (ValueError, OSError) as exc:                       # JSONDecodeError is a ValueError
            log.warning("gen_tables: cannot render %s: %s", path, exc)
            parts.append(f"## {path.stem}\n\nThis file could not be read: `{_cell(str(exc))}`\n")
    return "\n".join(parts)


GENERATED = {"backends.md": render_backends, "benchmarks.md": render_benchmarks}


# --------------------------------------------------------------------------- api.md summary
def _first_line(obj) -> str:
    doc = (getattr(obj, "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else ""


def render_summary(package: str = "bayesfilt") -> str:
    """A table of ``package.__all__``: each name cross-referenced to its documentation.

    The links are mkdocstrings cross-references (``[name][identifier]``) to the object's
    defining module path; if no ``:::`` block documents it, autorefs warns and the strict
    build fails, so a new public name cannot be left out of the API reference. Constants
    are listed without a link.
    """
    import importlib
    import inspect
    import types

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    try:
        module = importlib.import_module(package)
    except ImportError as exc:                                       # e.g. torch not installed
        log.info("gen_tables: cannot import %s (%s); no summary table", package, exc)
        return f"*(`{package}` could not be imported when these pages were built: {exc})*\n"

    rows = []
    for name in module.__all__:
        obj = getattr(module, name)
        if isinstance(obj, types.ModuleType):
            rows.append([f"[`{name}`][{obj.__name__}]", "module", _first_line(obj)])
        elif inspect.isclass(obj) or inspect.isfunction(obj) or inspect.isbuiltin(obj):
            kind = "class" if inspect.isclass(obj) else "function"
            rows.append([f"[`{name}`][{obj.__module__}.{obj.__qualname__}]", kind, _first_line(obj)])
        else:
            text = repr(obj)
            rows.append([f"`{name}`", "constant", f"`{text[:60]}{'...' if len(text) > 60 else ''}`"])
    lines = ["| name | kind | summary |", "|---|---|---|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


SUMMARY_MARKER = re.compile(r"<!-- gen:summary ([\w.]+) -->")


def on_page_markdown(markdown, page, config, files):
    """MkDocs hook: replace each ``<!-- gen:summary PACKAGE -->`` by PACKAGE's summary table."""
    return SUMMARY_MARKER.sub(lambda m: render_summary(m.group(1)), markdown)


# --------------------------------------------------------------------------- mkdocs hook
def on_files(files, config):
    """MkDocs hook: add the generated pages to the site (they are not in docs/)."""
    from mkdocs.structure.files import File

    figures: dict[str, bytes] = {}
    pages = {"backends.md": render_backends(), "benchmarks.md": render_benchmarks(figures=figures)}
    for name, content in list(pages.items()) + list(figures.items()):
        if files.get_file_from_path(name) is not None:
            log.warning("gen_tables: docs/%s exists but is generated; delete the file", name)
            continue
        files.append(File.generated(config, name, content=content))
    return files


def on_config(config):
    """MkDocs hook: rebuild when the data behind the generated pages changes (``mkdocs serve``)."""
    watch = config.setdefault("watch", [])
    for p in (ROOT / "bayesfilt" / "tolerances.py", RESULTS_DIR):
        if p.exists() and str(p) not in watch:
            watch.append(str(p))
    return config


if __name__ == "__main__":
    which = sys.argv[1] if len(sys.argv) > 1 else "backends"
    if which not in ("backends", "benchmarks"):
        sys.exit("usage: python docs/gen_tables.py backends|benchmarks")
    print(GENERATED[which + ".md"]())
