"""The accuracy each backend promises, stored once: read by tests, the CLI and the docs.

``TOLERANCES[(component, backend, dtype)]`` is the promised bound; ``metric`` says how the
error is measured against the float64 sequential reference:

- ``"max_abs"``: max |fast - ref| over means, covariances (and the log-likelihood);
- ``"max_rel"``: max |fast - ref| / max(|ref|, 1);
- ``"rel_rms"``: ||fast - ref||_2 / ||ref||_2 for each output and each gradient.
- ``"scale_rel"``: max |fast - ref| / max |ref| for each output array (means, covariances,
  log-likelihood): float32 filters of long drifting series (positions ~1e7) cannot hold a
  per-entry relative bound on small components, whatever the algorithm (docs/parallel.md).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tolerance:
    """A promised accuracy: ``bound`` under ``metric`` (see the module docstring).

    Attributes:
        bound: the largest error the backend promises.
        metric: how the error is measured ("max_abs", "max_rel", "scale_rel", "rel_rms").
        note: what the promise covers.

    Example:
        >>> Tolerance(1e-9, "max_rel").bound
        1e-09
    """

    bound: float
    metric: str
    note: str = ""


#: (component, backend, dtype) -> Tolerance. Components: "filter", "smoother", "kla_scan".
TOLERANCES: dict[tuple[str, str, str], Tolerance] = {
    ("filter", "sequential-covariance", "float64"): Tolerance(0.0, "max_abs", "the reference itself"),
    # Parallel-in-time filters and smoothers (bayesfilt.parallel_filter / parallel_smoother): means,
    # covariances (filter: also predicted moments, per-step and total log-likelihood) against the float64
    # sequential reference (kalman_filter / information_filter / rts_smoother) on the same inputs.
    ("filter", "numpy", "float64"): Tolerance(1e-9, "max_rel", "any schedule; method elements or riccati"),
    ("filter", "torch", "float64"): Tolerance(1e-9, "max_rel", "any schedule, CPU or CUDA"),
    ("filter", "torch", "float32"): Tolerance(1e-3, "scale_rel", "covariance form; log-likelihood as sum of terms"),
    ("filter", "triton", "float64"): Tolerance(1e-9, "max_rel", "chunked kernel (n <= 8)"),
    ("filter", "triton", "float32"): Tolerance(1e-3, "scale_rel", "chunked kernel (n <= 8)"),
    ("filter-information", "numpy", "float64"): Tolerance(1e-9, "max_rel", "canonical elements; needs Q, P0 > 0; "
                                                      "well-conditioned problems only (the step check raises otherwise)"),
    ("filter-information", "torch", "float64"): Tolerance(1e-9, "max_rel", "canonical elements; needs Q, P0 > 0; "
                                                      "well-conditioned problems only (the step check raises otherwise)"),
    ("filter-sqrt", "numpy", "float64"): Tolerance(1e-9, "max_rel", "square-root elements (QR combine), any schedule; "
                                               "also on ill-conditioned models where the covariance elements fail; "
                                               "states far from the origin lose ~30 eps |m| (center them); covariance "
                                               "cross terms next to huge variances only to ~eps sqrt(P_ii P_jj)"),
    ("filter-sqrt", "torch", "float64"): Tolerance(1e-9, "max_rel", "square-root elements, any schedule, CPU or CUDA"),
    ("smoother", "numpy", "float64"): Tolerance(1e-9, "max_rel", "RTS elements, any schedule"),
    ("smoother", "torch", "float64"): Tolerance(1e-9, "max_rel", "RTS elements, any schedule"),
    ("smoother-information", "numpy", "float64"): Tolerance(1e-9, "max_rel", "two-filter, reverse scan; "
                                                        "well-conditioned problems only"),
    # KLA diagonal scan (bayesfilt.nn.functional.kla_scan): outputs y, y_var, final state and every
    # gradient, against the float64 sequential reference fed the same (rounded) inputs.
    ("kla_scan", "numpy-reference", "float64"): Tolerance(0.0, "rel_rms", "bayesfilt.filters.diagonal: the specification"),
    ("kla_scan", "numpy-scan", "float64"): Tolerance(1e-10, "rel_rms", "bayesfilt.scan.diagonal on NumPy, any schedule"),
    ("kla_scan", "reference", "float64"): Tolerance(1e-12, "rel_rms", "torch sequential loop, autograd gradients"),
    ("kla_scan", "reference", "float32"): Tolerance(1e-4, "rel_rms", "torch sequential loop in float32"),
    ("kla_scan", "torch", "float64"): Tolerance(1e-10, "rel_rms", "parallel Möbius/affine scans, adjoint backward"),
    ("kla_scan", "torch", "float32"): Tolerance(1e-4, "rel_rms", "parallel Möbius/affine scans, adjoint backward"),
    ("kla_scan", "torch", "bfloat16"): Tolerance(1e-2, "rel_rms", "bf16 in/out, float32 state; error is bf16 rounding of y and gradients"),
    ("kla_scan", "reference", "bfloat16"): Tolerance(1e-2, "rel_rms", "bf16 in/out, float32 state"),
    ("kla_scan", "triton", "float32"): Tolerance(1e-4, "rel_rms", "fused Triton kernels (bayesfilt.nn.kernels), exact adjoint"),
    ("kla_scan", "triton", "bfloat16"): Tolerance(1e-2, "rel_rms", "bf16 inputs, float32 state; kernel outputs float32, gradients bf16"),
}


def tolerance(component: str, backend: str, dtype: str) -> Tolerance:
    """The promised tolerance for a component/backend/dtype.

    Args:
        component: "filter", "smoother", "kla_scan", ...
        backend: "numpy", "torch", "triton", ...
        dtype: "float64", "float32" or "bfloat16".

    Returns:
        The :class:`Tolerance`; raises KeyError if none is promised.

    Example:
        >>> tolerance("filter", "numpy", "float64").metric
        'max_rel'
    """
    return TOLERANCES[(component, backend, dtype)]
