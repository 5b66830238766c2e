"""Small frozen containers for Gaussian beliefs, and conversions between their forms.

``Gaussian`` holds moments (mean, covariance); ``InfoGaussian`` holds the information
form (information vector eta = P^{-1} mean, precision Lambda = P^{-1}). Leading axes
are batch axes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import type_error, value_error
from .validation import as_float_array, check_finite


@dataclass(frozen=True)
class Gaussian:
    """A Gaussian belief in moment form.

    Attributes:
        mean: shape (..., n).
        cov: shape (..., n, n), symmetric positive semi-definite.

    Example:
        >>> import numpy as np, bayesfilt
        >>> g = bayesfilt.Gaussian(mean=np.zeros(2), cov=np.eye(2))
        >>> g.mean.shape
        (2,)
    """

    mean: np.ndarray
    cov: np.ndarray


@dataclass(frozen=True)
class InfoGaussian:
    """A Gaussian belief in information form.

    Attributes:
        eta: information vector Lambda @ mean, shape (..., n).
        prec: precision matrix Lambda = cov^{-1}, shape (..., n, n); may be singular
            (zero precision = no information, e.g. an unknown initial state).

    Example:
        >>> import numpy as np, bayesfilt
        >>> ig = bayesfilt.InfoGaussian(eta=np.zeros(2), prec=np.zeros((2, 2)))  # no information
        >>> ig.prec.sum()
        np.float64(0.0)
    """

    eta: np.ndarray
    prec: np.ndarray


def _checked(vec, mat, owner: str, vname: str, mname: str):
    """Validate a (vector, matrix) pair of a Gaussian container; returns float arrays."""
    v = as_float_array(vec, f"{owner}.{vname}")
    M = as_float_array(mat, f"{owner}.{mname}")
    if M.ndim < 2 or M.shape[-1] != M.shape[-2] or v.ndim < 1 or v.shape[-1] != M.shape[-1]:
        raise value_error(f"{owner}.{mname}", f"has shape {M.shape} with {vname} of shape {v.shape}",
                          f"pass {vname} of shape (..., n) and {mname} of shape (..., n, n)")
    try:
        np.broadcast_shapes(v.shape[:-1], M.shape[:-2])
    except ValueError:
        raise value_error(f"{owner}.{mname}", f"has batch shape {M.shape[:-2]}, {vname} {v.shape[:-1]}",
                          "give the vector and the matrix batch axes that broadcast") from None
    check_finite(v, f"{owner}.{vname}")
    check_finite(M, f"{owner}.{mname}")
    return v, M


def _inverse(M: np.ndarray, arg: str) -> np.ndarray:
    """Inverse of a batch of matrices; a singular (or numerically singular) one is a named error."""
    try:
        inv = np.linalg.inv(M)
    except np.linalg.LinAlgError:
        inv = None
    if inv is None or not np.isfinite(inv).all():
        raise value_error(arg, "is singular (or numerically singular)",
                          "pass a positive definite matrix (a zero variance or precision has no inverse)")
    return inv


def to_information(g: Gaussian) -> InfoGaussian:
    """Moment form -> information form (needs a non-singular covariance).

    Args:
        g: a :class:`Gaussian` with mean (..., n) and non-singular cov (..., n, n).

    Returns:
        The :class:`InfoGaussian` with prec = cov^{-1} and eta = prec @ mean.

    Example:
        >>> import numpy as np, bayesfilt
        >>> bayesfilt.to_information(bayesfilt.Gaussian(np.array([2.0]), np.array([[4.0]]))).eta
        array([0.5])
    """
    if not isinstance(g, Gaussian):
        raise type_error("g", f"is a {type(g).__name__}", "pass a bayesfilt.Gaussian(mean, cov)")
    g = Gaussian(*_checked(g.mean, g.cov, "g", "mean", "cov"))
    prec = _inverse(g.cov, "g.cov")                                  # Lambda = P^{-1}
    prec = 0.5 * (prec + np.swapaxes(prec, -1, -2))
    eta = np.einsum("...ij,...j->...i", prec, g.mean)             # eta = Lambda m
    return InfoGaussian(eta=eta, prec=prec)


def to_moment(g: InfoGaussian) -> Gaussian:
    """Information form -> moment form (needs a non-singular precision).

    Args:
        g: an :class:`InfoGaussian` with eta (..., n) and non-singular prec (..., n, n).

    Returns:
        The :class:`Gaussian` with cov = prec^{-1} and mean = cov @ eta.

    Example:
        >>> import numpy as np, bayesfilt
        >>> bayesfilt.to_moment(bayesfilt.InfoGaussian(np.array([0.5]), np.array([[0.25]]))).mean
        array([2.])
    """
    if not isinstance(g, InfoGaussian):
        raise type_error("g", f"is a {type(g).__name__}", "pass a bayesfilt.InfoGaussian(eta, prec)")
    g = InfoGaussian(*_checked(g.eta, g.prec, "g", "eta", "prec"))
    cov = _inverse(g.prec, "g.prec")                                  # P = Lambda^{-1}
    cov = 0.5 * (cov + np.swapaxes(cov, -1, -2))
    mean = np.einsum("...ij,...j->...i", cov, g.eta)              # m = P eta
    return Gaussian(mean=mean, cov=cov)
