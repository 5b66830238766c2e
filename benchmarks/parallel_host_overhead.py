"""Host-side cost of the public ``parallel_filter`` call on the Triton path, without a GPU.

The Triton kernels are replaced by no-ops (the first one still zeroes the call's non-finite flag)
and the interpreter flag lets the Triton path run on CPU tensors, so what remains is the Python
wrapper: validation, parameter packing, buffer allocation, layout moves, the flag read and the
result. Counts the top-level torch operations and kernel launches of one call (each costs a few
µs on a GPU's host) and times the wrapper. On the H200 the public call is host-bound
(docs/parallel.md, "Where the time goes"); this shows what the host does.

Shapes: one series (element kernels) and a batch of 16 with ``method="elements"`` and
``method="auto"`` (16 series are below RICCATI_MIN_SERIES, so auto also takes the element kernels
here; the shared-gain path starts at 512 series).

Usage::

    python benchmarks/parallel_host_overhead.py
"""

from __future__ import annotations

import os
import time
from collections import Counter

os.environ["TRITON_INTERPRET"] = "1"                    # before triton is imported

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

import bayesfilt  # noqa: E402
import bayesfilt.scan.api as api  # noqa: E402
import bayesfilt.scan.triton_filter as tf  # noqa: E402
import bayesfilt.scan.triton_riccati as tr  # noqa: E402


def main() -> int:
    launches = []

    class NoKernel:
        def __init__(self, name):
            self.name = name

        def __getitem__(self, grid):
            def launch(*args, **kwargs):
                launches.append(self.name)
                if self.name == "_fold_steps":         # the first kernel zeroes the call's non-finite flag
                    for a in args:
                        if isinstance(a, torch.Tensor) and a.dtype == torch.int32:
                            a.zero_()
            return launch

    for name in ("_fold_steps", "_fold_elements", "_absorb", "_sweep"):
        setattr(tf, name, NoKernel(name))
    for name in ("_gains", "_fold_means", "_carry_means", "_sweep_means"):
        setattr(tr, name, NoKernel(name))
    model = bayesfilt.models.constant_velocity(q=0.05, r=4.0)
    # small y: on CPU tensors the data-sized operations (input checks, the NaN test) run on the host, while on
    # a GPU they are asynchronous kernels; the small shapes keep them out of the wrapper's time
    for shape, method in (((4096, 2), "auto"), ((16, 256, 2), "elements"), ((16, 256, 2), "auto")):
        y = torch.zeros(shape, dtype=torch.float32)

        def call():
            return bayesfilt.parallel_filter(model, y, backend="triton", method=method, validate=False)

        call()
        launches.clear()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            call()
        ops = [e.name for e in prof.events() if e.name.startswith("aten::") and e.cpu_parent is None]
        one_call = list(launches)
        t0 = time.perf_counter()
        for _ in range(50):
            call()
        ms = (time.perf_counter() - t0) / 50 * 1e3
        print(f"y {shape}, method={method!r}: {len(ops)} top-level torch ops, {len(one_call)} kernel launches "
              f"{one_call}, wrapper {ms:.2f} ms per call (no kernels)")
        print("   most frequent:", Counter(ops).most_common(6))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
