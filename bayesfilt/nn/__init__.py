"""Kalman Linear Attention (KLA) for PyTorch: the diagonal information-form filter as a sequence mixer.

Importing this package needs torch. ``bayesfilt.nn.functional`` holds the public scan
(:func:`kla_scan`, :func:`kla_step`, :class:`KLAState`); the maths is in docs/math/kla.md.
"""

from .functional import KLAScanFunction, KLAState, check_backends, kla_scan, kla_step
from .config import KLAConfig
from .layer import KLALayer, KLALayerState
from .lm import KLALanguageModel

__all__ = ["KLAScanFunction", "KLAState", "check_backends", "kla_scan", "kla_step",
           "KLAConfig", "KLALayer", "KLALayerState", "KLALanguageModel"]
