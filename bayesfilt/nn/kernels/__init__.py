"""Triton GPU kernels of the KLA diagonal filter (fused forward, exact backward, decode).

Import needs torch and triton; ``bayesfilt.nn.functional`` imports this lazily for
``backend="triton"``. Design and measured numbers: docs/kla_kernels.md.
"""

from bayesfilt.nn.kernels.kla import kla_scan_triton, kla_step_triton

__all__ = ["kla_scan_triton", "kla_step_triton"]
