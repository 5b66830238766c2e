"""Input handling shared by the sequential filters: one place that validates ``y``."""

from __future__ import annotations

import numpy as np

from ..errors import type_error, value_error
from ..model import LinearGaussianSSM
from ..validation import as_float_array


def prepare(model: LinearGaussianSSM, y, *, validate: bool = True):
    """Validate ``model`` and ``y`` and bring them to one floating dtype.

    Returns:
        ``(model, y, T, batch_shape)`` with ``y`` of shape (*batch_shape, T, m).
    """
    if not isinstance(model, LinearGaussianSSM):
        raise type_error("model", f"is a {type(model).__name__}", "pass a bayesfilt.LinearGaussianSSM")
    y = as_float_array(y, "y")
    if y.ndim < 2:
        raise value_error("y", f"has shape {y.shape}", f"pass observations of shape (..., T, m) with m={model.m}"
                          " (use y[:, None] for a scalar series)")
    if y.shape[-1] != model.m:
        raise value_error("y", f"has {y.shape[-1]} components per step (shape {y.shape})",
                          f"pass shape (..., T, {model.m}) to match H's {model.m} rows")
    T = y.shape[-2]
    if T == 0:
        raise value_error("y", "has zero time steps", "pass at least one time step")
    if np.isinf(y).any():
        idx = tuple(int(i) for i in np.argwhere(np.isinf(y))[0])
        raise value_error("y", f"holds an infinite value at index {idx}", "use NaN to mark a missing observation")
    if validate:
        model.validate(num_timesteps=T)
    elif model.num_timesteps is not None and model.num_timesteps != T:
        model.validate(num_timesteps=T)
    dtype = np.result_type(model.dtype, y.dtype)
    if dtype != model.dtype:
        model = model.astype(dtype)
    y = y.astype(dtype, copy=False)
    try:
        batch = np.broadcast_shapes(y.shape[:-2], model.batch_shape)
    except ValueError:
        raise value_error("y", f"has batch shape {y.shape[:-2]}, which does not broadcast with the model's "
                          f"{model.batch_shape}", "give y and the parameters broadcastable leading axes") from None
    return model, y, T, batch
