"""Parallel-in-time (associative scan) forms of the filters, and the generic scan.

- :func:`scan` (core.py): associative scan with schedules ``sequential`` | ``tree`` | ``chunked``
  over pytrees of NumPy arrays or torch tensors;
- covariance.py, information.py, smoother.py: scan elements and combines mirroring filters/;
- :func:`parallel_filter`, :func:`parallel_smoother` (api.py): the public entry points;
- triton_filter.py: the Triton kernels for small state sizes on the GPU;
- triton_riccati.py: the Triton shared-gain path for many series (covariances once);
- :func:`capture_filter` (graph.py): the Triton filter captured as a CUDA graph, replayed per call.

Mathematics: docs/math/parallel_scan.md.
"""

from .api import parallel_filter, parallel_smoother
from .core import SCHEDULES, scan
from .graph import capture_filter

__all__ = ["SCHEDULES", "capture_filter", "parallel_filter", "parallel_smoother", "scan"]
