"""bayesfilt: Kalman filtering you can trust, parallel in time, and Kalman Linear Attention.

Only NumPy and SciPy are needed for the classical filters; torch and triton are
optional extras (``bayesfilt[torch]``, ``bayesfilt[triton]``).
"""

from .errors import BayesfiltError, BayesfiltTypeError, BayesfiltValueError
from .filters import kalman_filter, predict, rts_smoother, update, update_with_loglik
from .filters import information_filter, sqrt_filter
from .gaussian import Gaussian, InfoGaussian, to_information, to_moment
from . import models
from .model import LinearGaussianSSM
from .results import FilterResult, SmootherResult
from .scan import capture_filter, parallel_filter, parallel_smoother

__version__ = "0.1.0"

__all__ = [
    "BayesfiltError", "BayesfiltTypeError", "BayesfiltValueError",
    "FilterResult", "Gaussian", "InfoGaussian", "LinearGaussianSSM", "SmootherResult",
    "information_filter", "sqrt_filter",
    "capture_filter", "parallel_filter", "parallel_smoother",
    "kalman_filter", "predict", "rts_smoother", "to_information", "to_moment", "update", "update_with_loglik",
    "__version__",
]
