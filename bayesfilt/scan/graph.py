"""A parallel filter captured once as a CUDA graph and replayed per call (Triton backend).

:func:`bayesfilt.parallel_filter` on CUDA tensors spends most of a call on the host for small and
medium problems: validation, parameter packing and upload, buffer allocation and 5–9 Triton
launches (on the H200 the call took 0.74–1.37 ms against 0.27–0.49 ms of GPU work for the
benchmark shapes; docs/parallel.md, "Where the time goes"). When the same model filters many arrays of one shape,
:func:`capture_filter` does that work once: it uploads the parameters, compiles and runs the
kernels, and records their launches in a ``torch.cuda.CUDAGraph``. The returned function copies
new observations into the graph's input buffer, replays the graph and reads the kernels'
non-finite flag (one device sync), so a call costs a copy, a replay and the copies of the outputs
(``copy=False`` skips those). Measured on the H200 at f356c56 (wall clock, medians;
docs/parallel.md): 0.58 ms at T = 262144 and 0.39 ms at 1024 x 1024 without the copies, 0.64 and
0.52 ms with them.

Same kernels, same results as ``parallel_filter(model, y, backend="triton")``: the element
kernels (bayesfilt/scan/triton_filter.py) or, for a large batch without missing data, the
shared-gain kernels (bayesfilt/scan/triton_riccati.py). A call whose flag is set (NaN or infinity in
y, or a value that left the dtype's range) is redone by ``parallel_filter``, which names the
problem or handles the missing data.
"""

from __future__ import annotations

from ..errors import type_error, value_error
from ..results import FilterResult


def capture_filter(model, like, *, method: str = "auto", copy: bool = True, validate: bool = True):
    """Capture the Triton parallel filter of ``model`` for observations shaped like ``like``.

    Args:
        model: a :class:`~bayesfilt.LinearGaussianSSM` with n <= 8 (covariance form).
        like: a CUDA tensor (..., T, m), float32 or float64: the shape, dtype and device of every
            later call's observations (its values are only used to compile and capture).
        method: ``"auto"``, ``"elements"`` or ``"riccati"``, as in :func:`bayesfilt.parallel_filter`;
            ``"auto"`` decides here, from ``like``'s shape (y is not scanned for NaN: a call with NaN
            under the shared-gain kernels sets their flag and is redone by ``parallel_filter``).
        copy: return copies of the outputs (default). ``False`` returns the graph's own output
            buffers, which the next call overwrites (one device copy per output less).
        validate: check the model's definiteness once, here.

    Returns:
        ``run(y) -> FilterResult``: filters a CUDA tensor of ``like``'s shape, dtype and device.

    Raises:
        BayesfiltTypeError / BayesfiltValueError: ``like`` is not a CUDA tensor, the Triton backend
            does not cover the model, or (from ``run``) y differs from ``like`` in shape, dtype or device.

    Example:
        >>> import torch, bayesfilt
        >>> model = bayesfilt.models.constant_velocity(q=0.05, r=4.0)
        >>> y = torch.randn(262144, 2, device="cuda")            # doctest: +SKIP
        >>> run = bayesfilt.capture_filter(model, y)              # doctest: +SKIP
        >>> res = run(y)                                          # doctest: +SKIP
        >>> float(res.loglik)                                     # doctest: +SKIP
    """
    import torch

    from .api import _prepare, parallel_filter
    from .triton_filter import triton_filter, triton_params
    from .triton_riccati import shared_covariances, triton_riccati
    from ._triton import interpreting
    if not (hasattr(like, "is_cuda") and like.is_cuda) or interpreting():
        raise type_error("like", "is not a CUDA tensor" if not interpreting() else "is used under TRITON_INTERPRET=1",
                         "pass observations on a CUDA device (CUDA graphs need one); use parallel_filter otherwise")
    requested = method
    shape, dtype, device = tuple(like.shape), like.dtype, like.device          # what every call must match
    model, y, _backend, _schedule, method = _prepare(model, like, "covariance", "triton", "auto", method,
                                                     validate, lazy=True)
    static_y = torch.empty(tuple(y.shape), dtype=y.dtype, device=device)      # y broadcast to the parameters'
    static_y.copy_(y)                                                         # batch, half precision widened
    if method == "riccati":
        params = triton_params(model, (1,), static_y.dtype, device)

        def body():
            return triton_riccati(model, static_y, params=params)
    else:
        params = triton_params(model, tuple(static_y.shape[:-2]), static_y.dtype, device)

        def body():
            return triton_filter(model, static_y, params=params)

    graph, out = warm_and_capture(body, device)
    flag = out.pop("nonfinite")
    # The graph reads its inputs by address, so run() must hold every tensor it reads for as long as the
    # graph lives. params used to be held by body() alone and was freed when capture_filter returned:
    # any allocation between replays (the default's output clones) could then overwrite the model's
    # parameters, and every second default call was redone by parallel_filter (found at eac0a90).
    inputs = (static_y, params)
    shared = shared_covariances(out) if method == "riccati" else {}

    def take(name):
        x = out[name]
        if not copy:
            return x
        if name in shared:                             # an expand of the shared (T, n, n) tensor
            return shared[name].clone().expand(x.shape)
        return x.clone()

    def run(y):
        """Filter ``y`` (a CUDA tensor shaped like the captured one) by replaying the captured kernels."""
        if not (hasattr(y, "shape") and hasattr(y, "is_cuda")):
            raise type_error("y", f"is a {type(y).__name__}", "pass a CUDA tensor shaped like the captured one")
        if tuple(y.shape) != shape or y.dtype != dtype or y.device != device:
            raise value_error("y", f"has shape {tuple(y.shape)}, dtype {y.dtype}, device {y.device}",
                              f"pass shape {shape}, dtype {dtype}, device {device} (the captured ones), "
                              "or capture again")
        static, _params = inputs                       # (held here: see above)
        static.copy_(y)                                # broadcasts and converts like the capture did
        graph.replay()
        if bool(flag.item()):                          # one device sync; then the uncaptured call names
            return parallel_filter(model, y, backend="triton", method=requested, validate=False)  # or handles it
        # copies after the sync: queued before it they measured slower on the H200 (1.48 against
        # 1.05 ms median at T = 262144, 1.24 against 0.82 ms at 1024 x 1024, one process, at 19e24c8,
        # before the fix of f356c56 above, which changed both; not re-timed)
        return FilterResult(**{k: take(k) for k in out})

    return run


def warm_and_capture(body, device, warmup: int = 1):
    """``(graph, out)``: ``body()`` run ``warmup`` times on a side stream of CUDA ``device`` (kernels
    compiled and loaded, the caching allocator settled, outside the capture), then captured once in a
    ``torch.cuda.CUDAGraph``; ``out`` is what the captured call returned: buffers that every
    ``graph.replay()`` rewrites. The capture of :func:`capture_filter` and of
    :func:`bayesfilt.nn.decode.capture_decode_step`."""
    import torch
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(warmup):
            body()
    torch.cuda.current_stream(device).wait_stream(side)
    torch.cuda.synchronize(device)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = body()
    return graph, out
