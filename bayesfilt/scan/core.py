"""Generic associative scan with interchangeable schedules (NumPy and torch).

An *element* is a pytree (tuple, list, dict or namedtuple, nested) of arrays that all
share a leading time axis of length T; ``combine(earlier, later)`` composes two
elements (broadcasting over any leading axes) and must be associative. Every schedule
returns the same inclusive prefixes

    out[t] = e_0 ⊗ e_1 ⊗ ... ⊗ e_t           (reverse=False)
    out[t] = e_t ⊗ e_{t+1} ⊗ ... ⊗ e_{T-1}   (reverse=True)

with ``a ⊗ b = combine(a, b)``, up to rounding (docs/math/parallel_scan.md):

- ``"sequential"``: the left fold, T - 1 combines of one element each (the reference);
- ``"tree"``: the work-efficient odd/even tree scan (Blelloch-style up-sweep and
  down-sweep, as in Särkkä & García-Fernández 2021), 2 log2 T vectorised levels,
  about 2T combined elements in all;
- ``"chunked"``: time split into chunks of ``chunk_size``; a sequential fold inside
  the chunks (vectorised across chunks), a scan of the chunk totals (``inner``
  schedule), and one vectorised fix-up combine. 2 sqrt(T) Python-level steps by default.

Backends are those of the arrays: NumPy or torch (CPU or CUDA, differentiable with
autograd since only out-of-place operations are used).
"""

from __future__ import annotations

import math
from typing import Any, Callable

from . import _ops as ops
from ..errors import type_error, value_error
from ..validation import as_int

SCHEDULES = ("sequential", "tree", "chunked")


# ------------------------------------------------------------------ pytrees
def tree_flatten(tree) -> tuple[list, Any]:
    """Leaves (arrays) of a pytree and a spec to rebuild it."""
    if isinstance(tree, dict):
        keys = sorted(tree)
        leaves, specs = [], []
        for k in keys:
            lv, sp = tree_flatten(tree[k])
            leaves += lv
            specs.append((len(lv), sp))
        return leaves, ("dict", keys, specs)
    if isinstance(tree, (tuple, list)):
        leaves, specs = [], []
        for item in tree:
            lv, sp = tree_flatten(item)
            leaves += lv
            specs.append((len(lv), sp))
        return leaves, ("seq", type(tree), specs)
    return [tree], None


def tree_unflatten(spec, leaves: list):
    """Inverse of :func:`tree_flatten`."""
    if spec is None:
        return leaves[0]
    kind, meta, specs = spec
    items, i = [], 0
    for count, sp in specs:
        items.append(tree_unflatten(sp, leaves[i:i + count]))
        i += count
    if kind == "dict":
        return dict(zip(meta, items))
    if meta in (tuple, list):
        return meta(items)
    return meta(*items)  # namedtuple


def tree_map(fn: Callable, *trees):
    """Apply ``fn`` leafwise over pytrees of the same structure."""
    flat = [tree_flatten(t) for t in trees]
    spec = flat[0][1]
    return tree_unflatten(spec, [fn(*leaves) for leaves in zip(*(f[0] for f in flat))])


def _length(tree) -> int:
    leaves = tree_flatten(tree)[0]
    return int(leaves[0].shape[0])


def _take(tree, sl):
    return tree_map(lambda x: x[sl], tree)


def _cat(trees):
    return tree_map(lambda *xs: ops.concat(xs, 0), *trees)


def _interleave(even, odd):
    """out[0::2] = even, out[1::2] = odd (len(even) = len(odd) or len(odd) + 1)."""
    ne, no = _length(even), _length(odd)

    def leaf(e, o):
        body = ops.stack([e[:no], o], 1)
        body = body.reshape((2 * no,) + tuple(body.shape[2:]))
        return ops.concat([body, e[no:]], 0) if ne > no else body
    return tree_map(leaf, even, odd)


# ------------------------------------------------------------------ schedules
def _sequential(elems, combine):
    T = _length(elems)
    acc = _take(elems, slice(0, 1))
    out = [acc]
    for t in range(1, T):
        acc = combine(acc, _take(elems, slice(t, t + 1)))      # prefix_t = prefix_{t-1} ⊗ e_t
        out.append(acc)
    return _cat(out) if T > 1 else acc


def _tree(elems, combine):
    T = _length(elems)
    if T < 2:
        return elems
    pairs = combine(_take(elems, slice(0, T - 1, 2)), _take(elems, slice(1, None, 2)))  # e_{2k} ⊗ e_{2k+1}
    odd = _tree(pairs, combine)                                 # prefixes ending at 1, 3, 5, ...
    if T > 2:
        rest = _take(elems, slice(2, None, 2))                  # e_2, e_4, ...
        prev = odd if T % 2 == 1 else _take(odd, slice(0, _length(odd) - 1))
        even = _cat([_take(elems, slice(0, 1)), combine(prev, rest)])  # prefix_{2k} = prefix_{2k-1} ⊗ e_{2k}
    else:
        even = _take(elems, slice(0, 1))
    return _interleave(even, odd)


def _chunked(elems, combine, chunk_size, inner):
    T = _length(elems)
    c = chunk_size or max(1, math.isqrt(T))
    K, r = divmod(T, c)
    if K <= 1:
        return _sequential(elems, combine) if inner == "sequential" else _tree(elems, combine)
    body = _take(elems, slice(0, K * c))
    # (K*c, ...) -> (K, c, ...): chunk k holds e_{kc}, ..., e_{kc+c-1}
    body = tree_map(lambda x: x.reshape((K, c) + tuple(x.shape[1:])), body)
    acc = tree_map(lambda x: x[:, 0], body)
    local = [acc]
    for j in range(1, c):                                      # fold inside every chunk at once
        acc = combine(acc, tree_map(lambda x: x[:, j], body))  # local_{k,j} = local_{k,j-1} ⊗ e_{kc+j}
        local.append(acc)
    local = tree_map(lambda *xs: ops.stack(xs, 1), *local)     # (K, c, ...)
    totals = tree_map(lambda x: x[:, c - 1], local)            # chunk totals (K, ...)
    carry = scan(totals, combine, schedule=inner)             # prefix over chunks 0..k
    head = tree_map(lambda x: x[0], local)                    # chunk 0 needs no fix-up
    fixed = combine(tree_map(lambda x: x[:-1, None], carry),  # carry_{k-1} ⊗ local_{k,j}
                    tree_map(lambda x: x[1:], local))
    fixed = tree_map(lambda x: x.reshape(((K - 1) * c,) + tuple(x.shape[2:])), fixed)
    parts = [head, fixed]
    if r:
        tail = _sequential(_take(elems, slice(K * c, T)), combine)
        parts.append(combine(tree_map(lambda x: x[-1:], carry), tail))
    return _cat(parts)


def scan(elements, combine: Callable, schedule: str = "tree", *, reverse: bool = False,
         chunk_size: int | None = None, inner: str = "tree"):
    """Inclusive associative scan of ``elements`` along their leading (time) axis.

    Args:
        elements: pytree of arrays (NumPy or torch), each of shape (T, ...); leaves may
            differ in their trailing shapes but share T.
        combine: ``combine(earlier, later)`` -> element; associative, broadcasting over
            leading axes (it receives elements with one or two leading axes).
        schedule: ``"sequential"`` | ``"tree"`` | ``"chunked"`` (module docstring).
        reverse: scan from the end: out[t] = e_t ⊗ ... ⊗ e_{T-1}.
        chunk_size: chunk length for ``"chunked"`` (default: floor(sqrt(T))).
        inner: schedule of the scan over chunk totals (``"tree"`` or ``"sequential"``).

    Returns:
        A pytree like ``elements`` holding the T inclusive prefixes (suffixes if ``reverse``).

    Example:
        >>> import numpy as np
        >>> from bayesfilt.scan import scan
        >>> scan(np.arange(1.0, 6.0), lambda a, b: a + b, schedule="tree")
        array([ 1.,  3.,  6., 10., 15.])
    """
    if not callable(combine):
        raise type_error("combine", f"is a {type(combine).__name__}", "pass a function combine(earlier, later)")
    if schedule not in SCHEDULES:
        raise value_error("schedule", f"is {schedule!r}", f"use one of {SCHEDULES}")
    if inner not in ("sequential", "tree"):
        raise value_error("inner", f"is {inner!r}", "use 'tree' or 'sequential'")
    if chunk_size is not None:
        chunk_size = as_int(chunk_size, "chunk_size", low=1, fix="pass a positive integer or None")
    leaves = tree_flatten(elements)[0]
    if not leaves or any(not hasattr(x, "ndim") or x.ndim < 1 for x in leaves):
        raise value_error("elements", "has a leaf without a leading time axis", "give every leaf shape (T, ...)")
    T = int(leaves[0].shape[0])
    if T < 1 or any(int(x.shape[0]) != T for x in leaves):
        raise value_error("elements", f"has leaves with leading lengths {[int(x.shape[0]) for x in leaves]}",
                          "give every leaf the same positive time length T")
    if reverse:
        flipped = tree_map(ops.flip0, elements)
        out = scan(flipped, lambda a, b: combine(b, a), schedule, chunk_size=chunk_size, inner=inner)
        return tree_map(ops.flip0, out)
    if schedule == "sequential":
        return _sequential(elements, combine)
    if schedule == "tree":
        return _tree(elements, combine)
    return _chunked(elements, combine, chunk_size, inner)
