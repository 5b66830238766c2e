"""Sequential reference filters (NumPy): the specification every fast path reproduces."""

from .covariance import kalman_filter, predict, update, update_with_loglik
from .smoother import rts_smoother

__all__ = ["kalman_filter", "predict", "rts_smoother", "update", "update_with_loglik"]
