"""Public entry points of the parallel-in-time filters: ``parallel_filter``, ``parallel_smoother``.

They validate their inputs, pick the backend from where the data lives (and, on CUDA, from
whether y needs a gradient, which the Triton kernels do not give), run the scan of
the chosen form and return the same result types as the sequential references
(:func:`bayesfilt.kalman_filter`, :func:`bayesfilt.information_filter`,
:func:`bayesfilt.rts_smoother`). Mathematics: docs/math/parallel_scan.md.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from . import _ops as ops
from ..errors import type_error, value_error
from ..model import LinearGaussianSSM
from ..results import FilterResult, SmootherResult
from ..validation import as_int, check_bool, check_observations

FORMS = ("covariance", "information", "sqrt")
BACKENDS = ("auto", "numpy", "torch", "triton")
SCHEDULE_CHOICES = ("auto", "sequential", "tree", "chunked")
METHODS = ("auto", "elements", "riccati")
# method="auto" on the Triton backend takes the shared-gain kernels (scan/triton_riccati.py) from this many
# series on. They do the covariance work once instead of once per series but add launches and a serial
# covariance stage: on the H200 at T = 1024 the element kernel was faster up to 256 series (1.02 against
# 1.36 ms) and the shared gains at 1024 (1.30 against 2.21 ms; benchmarks/results/parallel_gpu_c3c76d1.json,
# riccati_crossover); 512 is between the two measured points, measured at T = 1024 only.
RICCATI_MIN_SERIES = 512


def triton_available(device=None) -> bool:
    """Whether the Triton kernel can run: triton importable and a CUDA device (or TRITON_INTERPRET=1)."""
    from ._triton import interpreting
    try:
        import torch
        import triton  # noqa: F401
    except Exception:
        return False
    if interpreting():
        return True
    return bool(torch.cuda.is_available()) and (device is None or getattr(device, "type", "cuda") == "cuda")


def _grad_enabled() -> bool:
    import torch
    return torch.is_grad_enabled()


def _check_choice(arg, value, choices):
    if value not in choices:
        raise value_error(arg, f"is {value!r}", f"use one of {choices}")


def _prepare(model, y, form, backend, schedule, method, validate, lazy=False):
    """Validate and bring y to its backend; returns (model, y_time_first, backend, schedule, method)
    (y stays batch-first, (..., T, m), with ``lazy`` on the Triton backend).

    ``lazy`` (parallel_filter on the Triton backend): no device sync here. y is not scanned for
    infinities, and ``method="auto"`` takes the shared-gain kernels for large batches without first
    scanning y for NaN; the caller reads the kernels' non-finite flag and, only when it is set, checks
    y and falls back (:func:`_triton_filter_checked`)."""
    if not isinstance(model, LinearGaussianSSM):
        raise type_error("model", f"is a {type(model).__name__}", "pass a bayesfilt.LinearGaussianSSM")
    _check_choice("form", form, FORMS)
    _check_choice("backend", backend, BACKENDS)
    _check_choice("schedule", schedule, SCHEDULE_CHOICES)
    _check_choice("method", method, METHODS)
    validate = check_bool(validate, "validate")
    if model.has_diffuse:
        raise value_error("model", "declares diffuse states, which the parallel filters do not support",
                          "use bayesfilt.kalman_filter or information_filter, or give the states a proper prior")
    on_torch = ops.is_torch(y)
    auto_backend = backend == "auto"
    wants_grad = on_torch and y.requires_grad and _grad_enabled()
    if backend == "auto":
        if not on_torch:
            backend = "numpy"
        elif y.is_cuda and form == "covariance" and model.n <= 8 and triton_available(y.device) and not wants_grad:
            backend = "triton"
        else:
            backend = "torch"
    if backend == "numpy":
        if on_torch:
            raise type_error("y", "is a torch tensor but backend='numpy'",
                             "pass y.cpu().numpy(), or use backend='auto' / 'torch'")
        from ..filters.common import prepare
        model, y, T, batch = prepare(model, y, validate=validate)
    else:
        import torch
        if not on_torch:
            from ..filters.common import prepare
            model, y_np, T, batch = prepare(model, y, validate=validate)
            y = torch.as_tensor(y_np)
        else:
            y, T, batch = check_observations(y, model.m, model.batch_shape, allow_torch=True,
                                             check_inf=not (lazy and backend == "triton"))
            if validate or model.num_timesteps is not None:
                model.validate(num_timesteps=T)
        if backend == "triton":
            if wants_grad:
                raise value_error("backend", "is 'triton' but y requires a gradient (the Triton kernels have none)",
                                  "use backend='torch' (or 'auto', which picks it when y requires a gradient)")
            if form != "covariance":
                raise value_error("backend", f"is 'triton' with form={form!r}",
                                  "use form='covariance' (the Triton kernel is covariance form) or backend='torch'")
            if model.n > 8:
                raise value_error("backend", f"is 'triton' but the state size n={model.n} exceeds 8",
                                  "use backend='torch' for larger states")
            if not auto_backend and not triton_available(y.device):                 # auto: checked above
                raise value_error("backend", "is 'triton' but triton or a CUDA device is unavailable",
                                  "install triton and pass CUDA tensors (or set TRITON_INTERPRET=1), or use backend='torch'")
            from .triton_filter import fits_int32
            series = math.prod(batch)
            if not fits_int32(model.n, model.m, series, T):
                if not auto_backend:
                    raise value_error("y", f"has {series} series x {T} steps, beyond the Triton kernels' 32-bit "
                                      f"offsets (n={model.n}, m={model.m})",
                                      "split the batch into smaller calls, or use backend='torch'")
                backend = "torch"                                # auto: the torch scan has no such limit
                if lazy:                                         # the infinity scan skipped above
                    check_observations(y, model.m, model.batch_shape, allow_torch=True)
    if form == "information":
        _check_information(model)
    if form == "sqrt" and wants_grad and schedule != "sequential":
        raise value_error("form", "is 'sqrt' but y requires a gradient: the square-root scan's QR steps have "
                          "no usable gradient through the tree and chunked schedules (NaN at rank-deficient "
                          "blocks)", "use schedule='sequential' with form='sqrt', or form='covariance'")
    if schedule == "auto":
        # NumPy: the chunked scan has the fewest Python-level steps for long series; when the batch alone
        # gives more parallelism than time (B >= T), the left fold does half the work of any parallel schedule.
        size = math.prod(batch)
        if backend == "numpy":
            schedule = "sequential" if size >= y.shape[-2] else "chunked"
        else:
            schedule = "tree"
    if method == "riccati" and (backend not in ("numpy", "triton") or form != "covariance"):
        raise value_error("method", f"is 'riccati' with backend={backend!r}, form={form!r}",
                          "use method='riccati' only with form='covariance' and backend='numpy' or 'triton'")
    if method == "riccati" and backend == "triton" and math.prod(batch) == 0:
        method = "elements"                                      # no series: nothing to share (same empty result)
    if tuple(y.shape[:-2]) != batch:                             # parameters batched where y is not: broadcast y
        y = ops.broadcast_to(y, batch + tuple(y.shape[-2:]))
    # the scans run time-first; the lazy Triton path keeps y batch-first (the kernels' layout)
    yt = y if lazy and backend == "triton" else ops.moveaxis(y, -2, 0)
    if method == "auto":
        method = "elements"
        if form == "covariance" and model.batch_shape == ():
            if backend == "numpy" and not np.isnan(y).any():
                method = "riccati"
            elif (backend == "triton" and math.prod(batch) >= RICCATI_MIN_SERIES
                  and (lazy or not bool(ops.isnan(y).any()))):   # lazy: NaN found after the kernels
                method = "riccati"
    elif method == "riccati":
        if model.batch_shape != () or bool(ops.isnan(y).any()):
            raise value_error("method", "is 'riccati' but y has missing values or the parameters have batch axes",
                              "use method='elements' (or 'auto'), which handles both")
    return model, yt, backend, schedule, method


def _check_information(model):
    for name in ("Q", "P0"):
        arr = getattr(model, name)
        if name in model.time_varying:
            arr = arr[..., 1:, :, :]                   # entry 0 of a time-varying Q is unused (model.py)
            if arr.shape[-3] == 0:
                continue
        w = np.linalg.eigvalsh(arr)
        if (w <= arr.shape[-1] * np.finfo(np.float64).eps * np.abs(w).max(-1, keepdims=True)).any():
            raise value_error("model", f"has a singular {name}, which the information-form scan elements cannot hold "
                              "(they carry its inverse)", "use form='covariance' for singular "
                              + ("Q" if name == "Q" else "P0"))


def _check_finite_out(out: dict, name: str) -> dict:
    """Raise instead of returning non-finite moments or log-likelihoods (values left the dtype's range).

    Triton results carry the kernels' flag ``nonfinite`` (which also covers an overflowing
    log-likelihood sum): one read of it (one device sync) replaces the scan of the outputs, which
    runs only when it is set (to name the field)."""
    flag = out.pop("nonfinite", None)
    if flag is not None and not bool(flag.item()):
        return out
    fields = [f for f in ("means", "covs", "loglik_terms", "loglik") if out.get(f) is not None]
    if fields and ops.is_torch(out[fields[0]]):
        import torch
        if bool(torch.stack([out[f].isfinite().all() for f in fields]).all()):   # one device sync
            return out
    for field in fields:
        x = out[field]
        ok = bool(x.isfinite().all()) if ops.is_torch(x) else bool(np.isfinite(x).all())
        if not ok:
            raise value_error("model", f"{name} produced a non-finite {field} (the values left the {x.dtype} range)",
                              "rescale the data and covariances (e.g. change units) or use float64")
    return out


def _public(x, core):
    return ops.moveaxis(x, 0, x.ndim - core - 1)


def _result(out) -> FilterResult:
    kw = dict(means=_public(out["means"], 1), covs=_public(out["covs"], 2),
              predicted_means=_public(out["predicted_means"], 1), predicted_covs=_public(out["predicted_covs"], 2),
              loglik=out["loglik"], loglik_terms=_public(out["loglik_terms"], 0))
    if "info_vectors" in out:
        kw["info_vectors"] = _public(out["info_vectors"], 1)
        kw["precisions"] = _public(out["precisions"], 2)
    return FilterResult(**kw)


def _guard_linalg(fn, *args):
    """Run a scan; a factorisation that fails on the way (lost definiteness) becomes a named error."""
    try:
        return fn(*args)
    except (np.linalg.LinAlgError, RuntimeError) as exc:
        if not type(exc).__name__.endswith("LinAlgError"):
            raise
        raise value_error("model", f"the scan lost positive definiteness on the way ({exc}); the problem is too "
                          "ill-conditioned for this form (e.g. very long missing runs in the information form)",
                          "use form='covariance' (or the sequential bayesfilt.kalman_filter), or rescale the model") from None


_MOMENTS = (("means", 1), ("covs", 2), ("predicted_means", 1), ("predicted_covs", 2))


def _check_verify(verify):
    """``verify`` as None, True or False."""
    if verify is None or isinstance(verify, (bool, np.bool_)):
        return None if verify is None else bool(verify)
    raise type_error("verify", f"is {verify!r}", "pass None (the default: check the NumPy and torch element "
                     "scans), True or False")


def _checks(verify, backend, method) -> bool:
    """Whether the step check runs: ``verify`` True, or None (the default) on the NumPy and torch
    element scans (not ``method="riccati"``, not the Triton kernels)."""
    return verify if verify is not None else (backend != "triton" and method != "riccati")


def _time_first(x, core):
    return ops.moveaxis(x, x.ndim - core - 1, 0)


def _verify(model, yt, out, form, backend, name):
    """The step check (bayesfilt.scan.stepcheck) of time-first results ``out``; raises on a failing step."""
    from .stepcheck import check_steps
    check_steps(model, yt, out, form, backend, name)


def _chunk_size(chunk_size, schedule):
    """``chunk_size`` as a positive int, or None; only with ``schedule="chunked"`` (the others,
    "auto" among them when it resolves to the tree or the fold, would ignore it)."""
    if chunk_size is None:
        return None
    chunk_size = as_int(chunk_size, "chunk_size", low=1)
    if schedule != "chunked":
        raise value_error("chunk_size", f"is {chunk_size} but schedule={schedule!r} (chunk_size sets the "
                          "chunks of schedule='chunked')", "pass schedule='chunked', or leave chunk_size None")
    return chunk_size


def _run_filter(model, yt, form, backend, schedule, method, chunk_size):
    return _guard_linalg(_run_filter_unguarded, model, yt, form, backend, schedule, method, chunk_size)


def _run_filter_unguarded(model, yt, form, backend, schedule, method, chunk_size):
    if backend == "triton":
        if method == "riccati":
            from .triton_riccati import triton_riccati
            return triton_riccati(model, ops.moveaxis(yt, 0, yt.ndim - 2), time_first=True)
        from .triton_filter import triton_filter_time_first
        return triton_filter_time_first(model, yt)
    if method == "riccati":
        from .covariance import riccati_filter
        return riccati_filter(model, yt, schedule=schedule, chunk_size=chunk_size)
    if form == "covariance":
        from .covariance import scan_filter
        return scan_filter(model, yt, schedule, chunk_size)
    if form == "sqrt":
        from .sqrt import scan_sqrt_filter
        return scan_sqrt_filter(model, yt, schedule, chunk_size)
    from .information import scan_info_filter
    return scan_info_filter(model, yt, schedule, chunk_size)


def parallel_filter(model: LinearGaussianSSM, y, *, form: str = "covariance", backend: str = "auto",
                    schedule: str = "auto", chunk_size: int | None = None, method: str = "auto",
                    validate: bool = True, verify: bool | None = None) -> FilterResult:
    """Kalman filter computed by an associative scan over time (parallel in time).

    Same model, inputs and outputs as :func:`bayesfilt.kalman_filter` (covariance form) or
    :func:`bayesfilt.information_filter` (information form): observations ``y`` of shape
    (..., T, m) with NaN for missing components, leading batch axes, time-varying parameters
    and offsets b, d. Elements and combine: Särkkä & García-Fernández (2021), with the
    log-likelihood carried through the scan (docs/math/parallel_scan.md).

    Args:
        model: the state-space model (no diffuse states; information form: Q and P0 positive definite).
        y: observations (..., T, m): a NumPy array or a torch tensor (CPU or CUDA).
        form: ``"covariance"`` (Särkkä elements), ``"information"`` (canonical potentials) or
            ``"sqrt"`` (the same elements with their covariances carried as Cholesky factors and
            combined by QR steps, Yaghoobi et al. 2022: accurate where the covariance elements are
            not, e.g. nearly redundant, very precisely measured states; about 2.2x the covariance
            elements' time on NumPy; NumPy and torch, no gradient through its tree and chunked
            schedules; it loses about 30 eps |m| in the small components of states far from the
            origin, so center such data first; docs/parallel.md "The square-root form").
        backend: ``"auto"`` (decided by where ``y`` lives: NumPy -> ``"numpy"``; torch ->
            ``"torch"``, or ``"triton"`` for CUDA tensors when the kernel covers the model:
            covariance form and n <= 8, and y needs no gradient: the Triton kernels have none, so
            ``"triton"`` refuses a y that requires one), ``"numpy"``, ``"torch"`` or ``"triton"``.
        schedule: ``"sequential"`` (the reference fold), ``"tree"``, ``"chunked"`` or ``"auto"``
            (torch: tree; NumPy: chunked, or the fold when the batch has at least T series, since
            it then does half the work). Ignored by the Triton kernel (always chunked).
        chunk_size: chunk length of ``schedule="chunked"`` (default sqrt(T); a positive int; refused
            with the other schedules; the Triton kernels choose their own).
        method: ``"elements"`` (scan of full filter elements), ``"riccati"`` (covariance form, no
            missing data, unbatched parameters: covariances and gains shared by all series, computed
            once, means by an affine recursion; NumPy: the Riccati recursion stopped at its fixed
            point and an affine scan; Triton: the element kernel on one series for the covariances,
            then chunked kernels for the means of all series, carried in float64, with ``covs`` and
            ``predicted_covs`` returned as ``expand``-ed views of the shared (T, n, n) tensors) or
            ``"auto"`` (riccati when it applies: on NumPy for any batch; on Triton for batches of at
            least RICCATI_MIN_SERIES = 512 series with unbatched parameters, without scanning y for
            NaN first: if the kernels flag a non-finite value and y has NaN, the call reruns with
            the element kernels, so large batches with missing data do best with
            ``method="elements"``; else elements).
        validate: check the model's definiteness first.
        verify: the step check (:mod:`bayesfilt.scan.stepcheck`, docs/parallel.md "The step check"):
            every returned filtered mean and covariance is compared with one Kalman update of the
            returned prediction, and a step that differs by more than the promised tolerance (plus
            the update's own rounding) raises instead of returning an inaccurate result (e.g.
            nearly redundant, very precisely measured states in the covariance form; long runs of
            missing observations in the information form). ``None`` (default): the element scans
            of the NumPy and torch backends; not ``method="riccati"`` (its covariances come from
            the sequential recursion itself and its means from an affine scan without solves) and
            not Triton (its kernels held on the cases that fail the others, and the check would
            add several launches to a ~1-ms call); ``True``: every backend and method;
            ``False``: never. It costs about one more parallel map over all steps (+23-29% of the
            element scans' time at T = 20000, n = 4: benchmarks/step_check_cases.py); with
            ``method="riccati"`` and ``verify=True`` the shared covariances are checked once and
            the means per series (2000 series x 500 steps, n = 4, NumPy: 1.16 s and 488 MB peak
            where the unchecked call took 0.37 s and 204 MB: benchmarks/step_check_riccati.py).

    Returns:
        A :class:`~bayesfilt.FilterResult` (arrays of y's backend; time axis before the core axes).
        On the Triton backend the call synchronises the device once, after the kernels, to read
        their non-finite flag (and once more before, when uploading the parameters from pageable
        host memory waits for the work already queued).

    Example:
        >>> import numpy as np, bayesfilt
        >>> model = bayesfilt.models.constant_velocity(q=0.1, r=1.0)
        >>> x, y = model.simulate(50, seed=0)
        >>> par = bayesfilt.parallel_filter(model, y, schedule="tree")
        >>> seq = bayesfilt.kalman_filter(model, y)
        >>> bool(np.allclose(par.means, seq.means) and np.isclose(par.loglik, seq.loglik))
        True
    """
    explicit = method
    chunk_size = _chunk_size(chunk_size, schedule)
    verify = _check_verify(verify)
    model, yt, backend, schedule, method = _prepare(model, y, form, backend, schedule, method, validate, lazy=True)
    if backend == "triton":
        res = _triton_filter_checked(model, yt, method, explicit)               # yt: batch-first here
        if _checks(verify, backend, method):
            _verify(model, ops.moveaxis(yt, -2, 0), {k: _time_first(getattr(res, k), c) for k, c in _MOMENTS},
                    form, backend, "parallel_filter")
        return res
    out = _check_finite_out(_run_filter(model, yt, form, backend, schedule, method, chunk_size), "parallel_filter")
    if _checks(verify, backend, method):
        _verify(model, yt, out, form, backend, "parallel_filter")
    return _result(out)


def _triton_filter_checked(model, y, method, requested) -> FilterResult:
    """The Triton kernels on batch-first y (*B, T, m), with the checks _prepare(lazy=True) left out.

    Fast path: the kernels, then one read of their non-finite flag. Only when it is set: y is scanned
    for infinities (a named error), a shared-gain run that ``method="auto"`` chose is redone with the
    element kernels if y has missing values (NaN), and otherwise the output field is named.
    """
    if method == "riccati":         # shared covariances and gains (expand-ed views over the batch)
        from .triton_riccati import triton_riccati
        out = _guard_linalg(functools.partial(triton_riccati, offer_stage=True), model, y)
    else:                           # batch-first kernels: no round trip through the time-first layout
        from .triton_filter import triton_filter
        out = _guard_linalg(triton_filter, model, y)
    flag = out.pop("nonfinite")
    if not bool(flag.item()):       # one device sync
        if method == "riccati":     # covariances and gains kept for the next call with this model and T
            from .triton_riccati import keep_shared_stage
            keep_shared_stage(model, out)
        return FilterResult(**out)
    out.pop("shared_stage", None)   # not kept from a call whose flag is set
    check_observations(y, model.m, model.batch_shape, allow_torch=True)     # raises on an infinite y
    if method == "riccati" and requested == "auto" and bool(ops.isnan(y).any()):
        return _triton_filter_checked(model, y, "elements", "elements")     # missing data: element kernels
    scan = dict(out)
    if method == "riccati":         # check the shared (T, n, n) covariances once, not their expand
        from .triton_riccati import shared_covariances
        scan.update(shared_covariances(out))
    _check_finite_out(scan, "parallel_filter")                               # raises, naming the field
    return FilterResult(**out)


def parallel_smoother(model: LinearGaussianSSM, y, *, form: str = "covariance", backend: str = "auto",
                      schedule: str = "auto", chunk_size: int | None = None, method: str = "auto",
                      validate: bool = True, verify: bool | None = None) -> SmootherResult:
    """Fixed-interval smoother computed by associative scans (a forward filter scan, a backward scan).

    Covariance form: Särkkä & García-Fernández (2021) RTS elements, the parallel form of
    :func:`bayesfilt.rts_smoother`. Information form: a two-filter smoother whose backward
    information comes from the reverse scan of the filter's canonical elements.

    Args:
        model, y, form, backend, schedule, chunk_size, method, validate: as :func:`parallel_filter`
            (the backward pass of the ``"triton"`` backend runs on torch).
        verify: the step check, as :func:`parallel_filter`, of the filter and then of the
            smoother: every returned smoothed step against one RTS step from the returned step
            after it (:func:`bayesfilt.scan.stepcheck.check_smoother_steps`).

    Returns:
        A :class:`~bayesfilt.SmootherResult`: means (..., T, n), covs (..., T, n, n),
        cross_covs (..., T-1, n, n), gains (..., T-1, n, n) and the filter's loglik.

    Example:
        >>> import numpy as np, bayesfilt
        >>> model = bayesfilt.models.constant_velocity(q=0.1, r=1.0)
        >>> x, y = model.simulate(50, seed=0)
        >>> par = bayesfilt.parallel_smoother(model, y)
        >>> seq = bayesfilt.rts_smoother(model, bayesfilt.kalman_filter(model, y))
        >>> bool(np.allclose(par.means, seq.means))
        True
    """
    chunk_size = _chunk_size(chunk_size, schedule)
    verify = _check_verify(verify)
    model, yt, backend, schedule, method = _prepare(model, y, form, backend, schedule, method, validate)
    filt = _check_finite_out(_run_filter(model, yt, form, backend, schedule, method, chunk_size), "parallel_smoother")
    check = _checks(verify, backend, method)
    if check:
        _verify(model, yt, filt, form, backend, "parallel_smoother")
    if form in ("covariance", "sqrt"):                       # sqrt: RTS elements from its filtered moments
        from .smoother import scan_rts
        means, covs = filt["means"], filt["covs"]
        out = _guard_linalg(scan_rts, model, yt, ops.contiguous(means), ops.contiguous(covs), schedule, chunk_size)
    else:
        from .information import scan_two_filter
        out = _guard_linalg(scan_two_filter, model, yt, filt, schedule, chunk_size)
    _check_finite_out(out, "parallel_smoother")
    if check:
        from .stepcheck import check_smoother_steps
        check_smoother_steps(filt, out, form, "numpy" if backend == "numpy" else "torch", "parallel_smoother")
    return SmootherResult(means=_public(out["means"], 1), covs=_public(out["covs"], 2),
                          cross_covs=_public(out["cross_covs"], 2), gains=_public(out["gains"], 2),
                          loglik=filt["loglik"])
