"""Input handling shared by the sequential filters: one place that validates ``y``."""

from __future__ import annotations

import numpy as np

from ..errors import type_error
from ..model import LinearGaussianSSM
from ..validation import check_bool, check_observations


def prepare(model: LinearGaussianSSM, y, *, validate: bool = True):
    """Validate ``model`` and ``y`` and bring them to one floating dtype.

    Returns:
        ``(model, y, T, batch_shape)`` with ``y`` of shape (*batch_shape, T, m).
    """
    if not isinstance(model, LinearGaussianSSM):
        raise type_error("model", f"is a {type(model).__name__}", "pass a bayesfilt.LinearGaussianSSM")
    validate = check_bool(validate, "validate")
    y, T, batch = check_observations(y, model.m, model.batch_shape)
    if validate:
        model.validate(num_timesteps=T)
    elif model.num_timesteps is not None and model.num_timesteps != T:
        model.validate(num_timesteps=T)
    dtype = np.result_type(model.dtype, y.dtype)
    if dtype != model.dtype:
        model = model.astype(dtype)
    y = y.astype(dtype, copy=False)
    return model, y, T, batch
