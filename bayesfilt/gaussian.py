"""Small frozen containers for Gaussian beliefs, and conversions between their forms.

``Gaussian`` holds moments (mean, covariance); ``InfoGaussian`` holds the information
form (information vector eta = P^{-1} mean, precision Lambda = P^{-1}). Leading axes
are batch axes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Gaussian:
    """A Gaussian belief in moment form.

    Attributes:
        mean: shape (..., n).
        cov: shape (..., n, n), symmetric positive semi-definite.
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
    """

    eta: np.ndarray
    prec: np.ndarray


def to_information(g: Gaussian) -> InfoGaussian:
    """Moment form -> information form (needs a non-singular covariance)."""
    prec = np.linalg.inv(g.cov)                                  # Lambda = P^{-1}
    prec = 0.5 * (prec + np.swapaxes(prec, -1, -2))
    eta = np.einsum("...ij,...j->...i", prec, g.mean)             # eta = Lambda m
    return InfoGaussian(eta=eta, prec=prec)


def to_moment(g: InfoGaussian) -> Gaussian:
    """Information form -> moment form (needs a non-singular precision)."""
    cov = np.linalg.inv(g.prec)                                  # P = Lambda^{-1}
    cov = 0.5 * (cov + np.swapaxes(cov, -1, -2))
    mean = np.einsum("...ij,...j->...i", cov, g.eta)              # m = P eta
    return Gaussian(mean=mean, cov=cov)
