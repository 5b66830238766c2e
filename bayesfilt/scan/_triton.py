"""Helpers shared by the Triton kernels (``bayesfilt.scan.triton_filter``, ``bayesfilt.nn.kernels``)."""

from __future__ import annotations

import os


def interpreting() -> bool:
    """Whether Triton runs kernels in its interpreter (``TRITON_INTERPRET=1``): nothing is compiled
    and inline PTX is unavailable."""
    return os.environ.get("TRITON_INTERPRET", "0") in ("1", "true", "True")


def jit_unspecialized(names):
    """``triton.jit`` that does not specialise on the integer arguments ``names`` (on the value 1 and
    on divisibility by 16), so one compiled kernel serves every size; plain ``triton.jit`` under the
    interpreter, which compiles nothing (and whose triton 3.6 version mis-handles unspecialised
    integers in ``range``)."""
    import triton
    if interpreting():
        return triton.jit
    return triton.jit(do_not_specialize=list(names))
