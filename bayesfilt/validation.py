"""One validation layer for the public boundary.

Kernels and references assume valid inputs; public functions call these helpers
first. Each helper raises a :class:`~bayesfilt.errors.BayesfiltError` whose message
names the argument, the offending value or its location, and the fix.
"""

from __future__ import annotations

import numpy as np

from .errors import type_error, value_error

#: Relative tolerance used when checking symmetry and definiteness of covariances.
DEFAULT_RTOL = 1e-8


def as_float_array(x, arg: str, *, dtype=None) -> np.ndarray:
    """Convert ``x`` to a floating NumPy array (integers become float64).

    A NumPy masked array's masked entries become NaN (missing; ``np.asarray`` would silently
    keep the values under the mask). Raises a ``BayesfiltTypeError`` for complex, boolean,
    object or string input.
    """
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor given to a NumPy function
        raise type_error(arg, f"got a torch tensor ({getattr(x, 'dtype', '?')})",
                         "pass a NumPy array (tensor.numpy()), or use a torch backend")
    if isinstance(x, np.ma.MaskedArray) and np.ma.getmask(x) is not np.ma.nomask and x.dtype.kind in "iuf":
        x = x.astype(np.float64 if x.dtype.kind in "iu" or x.dtype.itemsize < 4 else x.dtype).filled(np.nan)
    try:
        a = np.asarray(x)
    except Exception as exc:  # ragged lists and similar
        raise type_error(arg, f"cannot be read as an array ({exc})", "pass a rectangular numeric array") from None
    if a.dtype == object or a.dtype.kind in "USVMm":
        raise type_error(arg, f"has dtype {a.dtype}", "pass a real numeric array")
    if a.dtype.kind == "c":
        raise type_error(arg, f"is complex ({a.dtype})", "pass a real array")
    if a.dtype.kind == "b":
        raise type_error(arg, "is boolean", "pass a real numeric array")
    if dtype is not None:
        return a.astype(dtype, copy=False)
    if a.dtype.kind in "iu":
        return a.astype(np.float64)
    if a.dtype == np.float16 or (a.dtype.kind == "f" and a.dtype.itemsize > 8):
        return a.astype(np.float64)
    return a


def check_observations(y, m: int, batch_shape: tuple = (), *, arg: str = "y", allow_torch: bool = False,
                       check_inf: bool = True):
    """Validate observations ``y`` (..., T, m): a NumPy array (or array-like) or a torch tensor.

    The one place that checks observations for every public filter (sequential and
    parallel): a real floating dtype (integers become float64; torch half precision
    becomes float32), at least two axes with ``m`` components last, at least one time step,
    no infinity (NaN marks a missing component) and leading axes that broadcast with the
    model's ``batch_shape``. With ``allow_torch`` a torch tensor stays a tensor (torch is
    never imported here for NumPy input); without it a tensor is a named type error.

    Args:
        y: observations (..., T, m).
        m: the observation size (rows of H).
        batch_shape: the model's parameter batch shape, to broadcast with y's leading axes.
        arg: the argument name used in error messages.
        allow_torch: accept torch tensors (the torch backends of the parallel filters).
        check_inf: scan y for infinities (a device sync for a CUDA tensor). Only callers that
            detect a non-finite result some other way and then call again with the scan may skip it.

    Returns:
        ``(y, T, batch)``: y as a floating array/tensor, the number of steps and the
        broadcast batch shape of ``y`` and the parameters.

    Example:
        >>> import numpy as np
        >>> y, T, batch = check_observations(np.zeros((5, 2), int), 2, (3,))
        >>> y.dtype, T, batch
        (dtype('float64'), 5, (3,))
    """
    if allow_torch and hasattr(y, "detach") and hasattr(y, "cpu"):   # a torch tensor: checked without leaving torch
        import torch
        if y.is_complex() or y.dtype == torch.bool:
            raise type_error(arg, f"has dtype {y.dtype}", "pass a real floating-point tensor")
        if not torch.is_floating_point(y):
            y = y.to(torch.float64)
        elif y.dtype in (torch.float16, torch.bfloat16):
            y = y.to(torch.float32)                             # half precision: filter in float32
        isinf = lambda a: torch.isinf(a).any().item() and torch.argwhere(torch.isinf(a))[0].tolist()  # noqa: E731
    else:
        y = as_float_array(y, arg)
        isinf = lambda a: np.isinf(a).any() and np.argwhere(np.isinf(a))[0].tolist()  # noqa: E731
    shape = tuple(y.shape)
    if len(shape) < 2:
        raise value_error(arg, f"has shape {shape}", f"pass observations of shape (..., T, m) with m={m}"
                          " (use y[:, None] for a scalar series)")
    if shape[-1] != m:
        raise value_error(arg, f"has {shape[-1]} components per step (shape {shape})",
                          f"pass shape (..., T, {m}) to match H's {m} rows")
    T = shape[-2]
    if T == 0:
        raise value_error(arg, "has zero time steps", "pass at least one time step")
    bad = check_inf and isinf(y)
    if bad:
        raise value_error(arg, f"holds an infinite value at index {tuple(int(i) for i in bad)}",
                          "use NaN to mark a missing observation")
    try:
        batch = tuple(np.broadcast_shapes(shape[:-2], tuple(batch_shape)))
    except ValueError:
        raise value_error(arg, f"has batch shape {shape[:-2]}, which does not broadcast with the model's "
                          f"{tuple(batch_shape)}", "give y and the parameters broadcastable leading axes") from None
    return y, T, batch


def check_finite(a: np.ndarray, arg: str) -> None:
    """Raise if ``a`` holds NaN or infinity, naming the first bad index."""
    bad = ~np.isfinite(a)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise value_error(arg, f"holds a non-finite value {a[idx]!r} at index {idx}",
                          "replace NaN/inf in model parameters (NaN is allowed only in observations y)")


def check_symmetric(a: np.ndarray, arg: str, rtol: float = DEFAULT_RTOL) -> None:
    """Raise if the trailing two axes of ``a`` are not symmetric to ``rtol`` of their scale."""
    diff = np.abs(a - np.swapaxes(a, -1, -2))
    scale = np.maximum(np.abs(a).max(axis=(-1, -2), keepdims=True), np.finfo(np.float64).tiny)
    rel = diff / scale
    bound = max(rtol, 10 * np.finfo(a.dtype).eps)
    if (rel > bound).any():
        idx = tuple(int(i) for i in np.argwhere(rel > bound)[0])       # the entry that failed (not one within rounding)
        raise value_error(arg, f"is not symmetric (relative asymmetry {rel[idx]:.3g} at index {idx})",
                          "pass a symmetric matrix, e.g. (A + A.T) / 2, or call model.symmetrized()")


def check_psd(a: np.ndarray, arg: str, *, strict: bool, rtol: float = DEFAULT_RTOL) -> None:
    """Raise if ``a`` is not positive semi-definite (``strict``: positive definite).

    A variance below ``-100 eps`` of the largest one is refused outright (a negative variance
    beyond rounding; diag(1e8, -0.5) passed when every test was relative to the largest
    eigenvalue); rounding-level negative variances count as zero. The eigenvalue test then runs
    on ``D^-1/2 a D^-1/2``, D the diagonal with entries below ``rtol`` of the largest (or, for a
    zero diagonal, of the largest entry) raised to that floor, so that variances of different
    units (1e8 and 1e-8) are each judged on their own scale: eigenvalues down to
    ``-rtol * max|eigenvalue|`` count as zero (rounding), and a well-scaled but badly graded
    matrix is not refused (diag(1, 1e-6) in float32 was refused as singular).
    """
    n = a.shape[-1]
    if n == 0 or a.size == 0:
        return
    eps = np.finfo(a.dtype).eps                               # of the input's dtype (float32 rounds 1e-7)
    a = a.astype(np.float64, copy=True)
    rel = max(rtol, 10 * eps)
    d = np.diagonal(a, axis1=-2, axis2=-1)
    dmax = np.abs(d).max(axis=-1, keepdims=True)
    neg = d < -100 * eps * dmax
    if neg.any():
        where = tuple(int(i) for i in np.argwhere(neg)[0])
        kind = "positive definite" if strict else "positive semi-definite"
        raise value_error(arg, f"is not {kind}: it has a negative variance {d[where]:.6g} at diagonal index {where}",
                          f"pass a {kind} matrix (every variance {'>' if strict else '>='} 0)")
    idx = np.arange(n)
    a[..., idx, idx] = np.maximum(d, 0.0)                     # rounding-level negatives -> 0
    amax = np.abs(a).max(axis=(-2, -1))[..., None]
    floor = np.maximum(rel * np.maximum(dmax, amax), np.finfo(np.float64).tiny)
    s = 1.0 / np.sqrt(np.maximum(np.abs(d), floor))          # D^-1/2: entries of a * s s^T are at most 1 / rel
    w = np.linalg.eigvalsh(a * s[..., :, None] * s[..., None, :])
    scale = np.maximum(np.abs(w).max(axis=-1, keepdims=True), np.finfo(np.float64).tiny)
    tol = rel * scale
    # strict: eigenvalues within rounding of zero (relative to the largest) count as singular
    bad = (w <= 10 * n * eps * scale) if strict else (w < -tol)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0][:-1])
        kind = "positive definite" if strict else "positive semi-definite"
        loc = f" at index {where}" if where else ""
        raise value_error(arg, f"is not {kind}: smallest eigenvalue {w[where].min():.6g} after scaling to unit "
                          f"variances{loc}",
                          f"pass a {kind} matrix" + ("" if not strict else
                          " (a measurement noise covariance must have every variance > 0)"))


def as_real_scalar(x, arg: str, *, low: float | None = None, low_open: bool = False,
                   high: float | None = None, high_open: bool = False, fix: str | None = None) -> float:
    """Return ``x`` as a finite Python float in the given range, or raise naming ``arg``.

    ``low``/``high`` bound the value (inclusive unless ``low_open``/``high_open``). Strings,
    booleans, arrays of more than one element and non-finite values are rejected.

    Example:
        >>> as_real_scalar(2, "q", low=0.0)
        2.0
    """
    if isinstance(x, (bool, np.bool_, str, bytes)) or x is None:
        raise type_error(arg, f"is {x!r}", fix or "pass a real number")
    try:
        a = np.asarray(x)
    except Exception:
        raise type_error(arg, f"is {x!r}", fix or "pass a real number") from None
    if a.size != 1 or a.dtype.kind not in "iuf":
        raise type_error(arg, f"is {x!r}", fix or "pass a single real number")
    v = float(a.reshape(()))
    where = ("> " if low_open else ">= ") + repr(low) if low is not None else ""
    if high is not None:
        where += (" and " if where else "") + ("< " if high_open else "<= ") + repr(high)
    bad = not np.isfinite(v)
    if low is not None:
        bad |= v <= low if low_open else v < low
    if high is not None:
        bad |= v >= high if high_open else v > high
    if bad:
        raise value_error(arg, f"is {x!r}", fix or f"pass a finite number {where}".rstrip())
    return v


def check_bool(x, arg: str) -> bool:
    """Return ``x`` as a Python bool, or raise naming ``arg`` (a string such as "no" is truthy,
    so it is refused rather than read).

    Example:
        >>> check_bool(False, "validate")
        False
    """
    if not isinstance(x, (bool, np.bool_)):
        raise type_error(arg, f"is {x!r}", "pass True or False")
    return bool(x)


def as_int(x, arg: str, *, low: int | None = None, fix: str | None = None) -> int:
    """Return ``x`` as a Python int (>= ``low``), or raise naming ``arg``; floats and bools are rejected.

    Example:
        >>> as_int(3, "dim", low=1)
        3
    """
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, np.integer)):
        raise type_error(arg, f"is {x!r}", fix or "pass an integer")
    v = int(x)
    if low is not None and v < low:
        raise value_error(arg, f"is {v}", fix or f"pass an integer >= {low}")
    return v
