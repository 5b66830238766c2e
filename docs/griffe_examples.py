"""A Griffe extension for the API reference: read ``Example:`` as the Examples section.

bayesfilt's docstrings use Google style with a singular ``Example:`` header. Griffe's Google
parser knows only ``Examples:`` as a section and would render ``Example:`` as a plain
admonition, so the ``>>>`` lines would not become code. This extension renames the header
before the docstring is parsed. Used by mkdocs.yml (mkdocstrings ``extensions``).
"""

from __future__ import annotations

import re

import griffe

_HEADER = re.compile(r"^(\s*)Example:[ \t]*$", flags=re.M)


class ExampleSection(griffe.Extension):
    """Rewrite a docstring's ``Example:`` header to ``Examples:``."""

    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        """Called for every object Griffe loads.

        Args:
            obj: the loaded object (module, class, function, attribute).
            **kwargs: the other event arguments, unused.
        """
        if obj.docstring is not None and "Example:" in obj.docstring.value:
            obj.docstring.value = _HEADER.sub(r"\1Examples:", obj.docstring.value)
