"""Sequential reference filters (NumPy): the specification every fast path reproduces."""

from .covariance import kalman_filter, predict, update, update_with_loglik
from .diagonal import DiagonalFilterResult, diagonal_information_filter
from .information import information_filter
from .smoother import rts_smoother
from .sqrt import sqrt_filter

__all__ = ["DiagonalFilterResult", "diagonal_information_filter", "information_filter", "kalman_filter", "sqrt_filter", "predict", "rts_smoother", "update", "update_with_loglik"]
