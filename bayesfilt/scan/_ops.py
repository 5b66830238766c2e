"""Backend-neutral array operations for the scans: NumPy arrays and torch tensors.

Every scan element and combine in this package is written once against the functions
here, which dispatch on the array type (torch is imported only when a tensor is passed).
Kernels: no validation.
"""

from __future__ import annotations

import math

import numpy as np

LOG_2PI = math.log(2.0 * math.pi)


def is_torch(x) -> bool:
    """Whether ``x`` is a torch tensor (without importing torch)."""
    return type(x).__module__.startswith("torch")


def _torch():
    import torch
    return torch


def mT(a):
    """Transpose of the trailing two axes."""
    return a.transpose(-1, -2) if is_torch(a) else np.swapaxes(a, -1, -2)


def sym(a):
    """(A + A^T) / 2."""
    return 0.5 * (a + mT(a))


def mv(a, x):
    """Batched matrix-vector product a @ x, a (..., i, j), x (..., j)."""
    return (a @ x[..., None])[..., 0]


def dot(x, y):
    """Batched inner product over the last axis."""
    return (x * y).sum(-1)


def eye(n, like):
    """Identity (n, n) of ``like``'s dtype and device."""
    if is_torch(like):
        return _torch().eye(n, dtype=like.dtype, device=like.device)
    return np.eye(n, dtype=like.dtype)


def zeros(shape, like):
    """Zeros of ``like``'s dtype and device."""
    if is_torch(like):
        return _torch().zeros(tuple(shape), dtype=like.dtype, device=like.device)
    return np.zeros(tuple(shape), dtype=like.dtype)


def asarray(x, like):
    """``x`` (NumPy or scalar) as an array of ``like``'s backend, dtype and device."""
    if is_torch(like):
        torch = _torch()
        if is_torch(x):
            return x.to(dtype=like.dtype, device=like.device)
        return torch.as_tensor(np.asarray(x), dtype=like.dtype, device=like.device)
    return np.asarray(x, dtype=like.dtype)


def broadcast_to(a, shape):
    """Broadcast view (NumPy) / expand (torch)."""
    if is_torch(a):
        return a.expand(tuple(shape))
    return np.broadcast_to(a, tuple(shape))


def shape_of(*arrays):
    """Broadcast shape of the arrays."""
    return tuple(np.broadcast_shapes(*(tuple(a.shape) for a in arrays)))


def solve(a, b):
    """a^{-1} b for square a (..., n, n) and b (..., n, k); broadcasts."""
    if is_torch(a):
        return _torch().linalg.solve(a, b)
    shape = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    return np.linalg.solve(np.broadcast_to(a, shape + a.shape[-2:]), np.broadcast_to(b, shape + b.shape[-2:]))


def solve_psd(a, b):
    """a^{-1} b for symmetric PSD a, with the pseudo-inverse for the batch elements where a is singular.

    NumPy: :func:`bayesfilt.linalg.solve_psd`; torch: ``solve_ex`` and ``pinv`` for the failing
    elements only (one device sync).
    """
    if not is_torch(a):
        from ..linalg import solve_psd as solve_psd_np
        return solve_psd_np(a, b)
    torch = _torch()
    shape = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    a, b = a.expand(shape + a.shape[-2:]), b.expand(shape + b.shape[-2:])
    x, info = torch.linalg.solve_ex(a, b)
    bad = info != 0                                            # singular elements (exact zero pivot)
    if bool(bad.any()):
        x = x.clone()
        x[bad] = torch.linalg.pinv(a[bad], hermitian=True) @ b[bad]
    return x


def logdet_pos(a):
    """log det a for a matrix with positive determinant."""
    if is_torch(a):
        return _torch().linalg.slogdet(a)[1]
    return np.linalg.slogdet(a)[1]


def cholesky(a):
    """Lower Cholesky factor."""
    if is_torch(a):
        return _torch().linalg.cholesky(a)
    return np.linalg.cholesky(a)


def tri_solve(L, b):
    """L^{-1} b for lower-triangular L (..., n, n), b (..., n, k)."""
    if is_torch(L):
        torch = _torch()
        shape = torch.broadcast_shapes(L.shape[:-2], b.shape[:-2])
        return torch.linalg.solve_triangular(L.expand(shape + L.shape[-2:]), b.expand(shape + b.shape[-2:]),
                                             upper=False)
    shape = np.broadcast_shapes(L.shape[:-2], b.shape[:-2])
    # NumPy has no batched triangular solve; a general solve on a triangular matrix is exact enough.
    return np.linalg.solve(np.broadcast_to(L, shape + L.shape[-2:]), np.broadcast_to(b, shape + b.shape[-2:]))


def logdet_chol(L):
    """log det (L L^T) from a Cholesky factor."""
    if is_torch(L):
        return 2.0 * _torch().log(_torch().diagonal(L, dim1=-2, dim2=-1)).sum(-1)
    return 2.0 * np.log(np.diagonal(L, axis1=-2, axis2=-1)).sum(-1)


def finfo_eps(a):
    """Machine epsilon of ``a``'s floating dtype."""
    if is_torch(a):
        return _torch().finfo(a.dtype).eps
    return np.finfo(a.dtype).eps


def where(c, a, b):
    """Elementwise select."""
    if is_torch(c) or is_torch(a) or is_torch(b):
        torch = _torch()
        return torch.where(c, a, b)
    return np.where(c, a, b)


def isnan(x):
    """Elementwise NaN test."""
    return _torch().isnan(x) if is_torch(x) else np.isnan(x)


def log(x):
    """Elementwise natural log."""
    return _torch().log(x) if is_torch(x) else np.log(x)


def concat(xs, axis=0):
    """Concatenate along ``axis``."""
    if is_torch(xs[0]):
        return _torch().cat(list(xs), dim=axis)
    return np.concatenate(xs, axis=axis)


def stack(xs, axis=0):
    """Stack along a new ``axis``."""
    if is_torch(xs[0]):
        return _torch().stack(list(xs), dim=axis)
    return np.stack(xs, axis=axis)


def flip0(x):
    """Reverse the leading (time) axis."""
    if is_torch(x):
        return x.flip(0)
    return x[::-1]


def moveaxis(x, src, dst):
    """Move an axis."""
    if is_torch(x):
        return x.movedim(src, dst)
    return np.moveaxis(x, src, dst)


def contiguous(x):
    """A contiguous copy where needed."""
    if is_torch(x):
        return x.contiguous()
    return np.ascontiguousarray(x)
