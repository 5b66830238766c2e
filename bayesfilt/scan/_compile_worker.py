"""Compile one Triton kernel variant into Triton's on-disk cache, in a process of its own.

Run as ``python -m bayesfilt.scan._compile_worker`` with one JSON object on stdin::

    {"module": "bayesfilt.scan.triton_filter", "name": "_sweep",
     "target": ["cuda", 90, 32], "specialization": "<Triton's serialised specialisation>"}

``specialization`` is the string a Triton JIT compile hook receives (``compile["specialization_data"]``,
the format of ``JITFunction.preload``); it is turned back into the signature, constexprs, attributes
and options that the JIT would compile with, so that the kernel lands in the cache under the key the
parent process looks up (:func:`bayesfilt.scan._triton.compile_in_processes`). No GPU, no torch: the
target is given. Exit status 0 and ``COMPILED`` on stdout on success.
"""

from __future__ import annotations

import importlib
import json
import sys


def _tuples(x):
    """JSON lists back to the tuples Triton wrote (recursively; kernel signatures hold no lists)."""
    return tuple(_tuples(v) for v in x) if isinstance(x, list) else x


def compile_request(request: dict):
    """Compile the variant ``request`` describes (see the module docstring); returns Triton's compiled kernel."""
    import triton
    import triton.language as tl
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, make_backend

    fn = getattr(importlib.import_module(request["module"]), request["name"])
    spec = json.loads(request["specialization"])
    constexprs = {tuple(k): (tl.dtype(v) if tl.dtype.is_dtype(v) else
                             tl.constexpr(v["constexpr"]) if isinstance(v, dict) and "constexpr" in v else v)
                  for k, v in zip(spec["constant_keys"], spec["constant_vals"])}
    attrs = dict(zip(map(tuple, spec["attrs_keys"]), spec["attrs_vals"]))
    signature = {k: _tuples(v) for k, v in spec["signature"].items()}
    target = GPUTarget(*request["target"])
    options = make_backend(target).parse_options({k: _tuples(v) for k, v in spec["options"].items()})
    return triton.compile(ASTSource(fn, signature, constexprs, attrs), target=target, options=options.__dict__)


def main() -> int:
    compile_request(json.loads(sys.stdin.read()))
    print("COMPILED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
