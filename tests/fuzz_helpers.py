"""Shared pieces of the fuzz suite (tests/test_fuzz*.py): budget, the two-outcome contract, counting.

The contract of every public function: it returns a correct, finite result, or it raises a
:class:`bayesfilt.BayesfiltError` whose message names the problem and the fix ("Fix:").
Never another exception; never a silent NaN/inf in a result computed from finite inputs
(the documented exceptions, e.g. the NaN means of an exact-diffuse period, are passed in
``allow_nan``).
"""

from __future__ import annotations

import dataclasses
import os
import traceback

import numpy as np
from hypothesis import HealthCheck, settings

import bayesfilt

#: Generated cases per fuzz test (raise with BAYESFILT_FUZZ_EXAMPLES=1000 for a long run).
EXAMPLES = int(os.environ.get("BAYESFILT_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


def numeric_leaves(obj, name="result"):
    """Yield (path, ndarray) for every numeric array/tensor/number inside ``obj``."""
    if obj is None or isinstance(obj, (str, bytes, bool)):
        return
    if hasattr(obj, "detach") and hasattr(obj, "cpu"):                      # torch tensor
        t = obj.detach().cpu()
        if t.is_floating_point():
            yield name, t.float().numpy() if t.dtype.itemsize < 4 else t.numpy()
        return
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in "fc":
            yield name, obj
        return
    if isinstance(obj, (float, np.floating)):
        yield name, np.asarray(obj)
        return
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            yield from numeric_leaves(getattr(obj, f.name), f"{name}.{f.name}")
        return
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):                   # NamedTuple
        for k in obj._fields:
            yield from numeric_leaves(getattr(obj, k), f"{name}.{k}")
        return
    if isinstance(obj, (tuple, list)):
        for i, x in enumerate(obj):
            yield from numeric_leaves(x, f"{name}[{i}]")
        return
    if isinstance(obj, dict):
        for k, x in obj.items():
            yield from numeric_leaves(x, f"{name}[{k!r}]")


def assert_finite_result(result, *, allow_nan=(), where=""):
    """Every numeric leaf finite, except leaves whose path contains one of ``allow_nan``."""
    for path, arr in numeric_leaves(result):
        if any(a in path for a in allow_nan):
            assert not np.isinf(arr).any(), f"{where}: infinite {path}"
            continue
        assert np.isfinite(arr).all(), f"{where}: silent non-finite {path} from finite inputs"


def contract(call, *, finite_inputs: bool, allow_nan=(), check=None, where=""):
    """Run ``call()``; return "error" for a BayesfiltError with a message, else "result".

    Fails the test for any other exception, for an error without "Fix:", and (when the
    inputs were finite) for a non-finite result. ``check(result)`` adds correctness checks.
    """
    try:
        result = call()
    except bayesfilt.BayesfiltError as exc:
        msg = str(exc)
        assert msg and "Fix:" in msg, f"{where}: error without a fix: {msg!r}"
        return "error"
    except Exception as exc:  # noqa: BLE001 - the point of the test
        raise AssertionError(f"{where}: {type(exc).__name__} escaped the boundary: {exc}\n"
                             + "".join(traceback.format_exc(limit=-4))) from None
    if finite_inputs:
        assert_finite_result(result, allow_nan=allow_nan, where=where)
    if check is not None:
        check(result)
    return "result"


class Tally:
    """Counts outcomes per test; ``report`` records the case count for the summary line."""

    def __init__(self):
        self.counts = {"error": 0, "result": 0}

    def add(self, outcome):
        self.counts[outcome] += 1

    @property
    def total(self):
        return sum(self.counts.values())

    def report(self, record_property, *, need_both=True):
        record_property("fuzz_cases", self.total)
        if need_both:
            assert self.counts["result"] > 0 and self.counts["error"] > 0, self.counts
