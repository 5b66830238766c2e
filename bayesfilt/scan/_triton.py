"""Helpers shared by the Triton kernels (``bayesfilt.scan.triton_filter``, ``bayesfilt.nn.kernels``)."""

from __future__ import annotations

import os


def interpreting() -> bool:
    """Whether Triton runs kernels in its interpreter (``TRITON_INTERPRET=1``): nothing is compiled
    and inline PTX is unavailable."""
    return os.environ.get("TRITON_INTERPRET", "0") in ("1", "true", "True")


def jit_unspecialized(names):
    """``triton.jit`` that does not specialise on the integer arguments ``names`` (on the value 1 and
    on divisibility by 16), so one compiled kernel serves every size; plain ``triton.jit`` under the
    interpreter, which compiles nothing (and whose triton 3.6 version mis-handles unspecialised
    integers in ``range``)."""
    import triton
    if interpreting():
        return triton.jit
    return triton.jit(do_not_specialize=list(names))


def _compiled_here(kernel, device) -> bool:
    """Whether ``kernel`` (a triton.jit function) has compiled any variant in this process for ``device``
    (Triton's per-device cache of compiled kernels; a version without it counts as compiled)."""
    try:
        return bool(kernel.device_caches[device][0])
    except Exception:                     # another Triton layout: fall back to compiling one at a time
        return True


def launch_all(launches) -> None:
    """Launch Triton kernels in order: ``launches`` is a list of ``(kernel, grid, args, kwargs)``.

    On the first call in a process (some kernel not compiled yet) the distinct variants are compiled
    concurrently first, in threads: ``warmup`` (compile, no launch; Triton's compiler passes and ptxas
    run outside the GIL) and the loading of each binary with its launcher (a C stub that Triton
    builds with the system compiler). That shortens the time to a first result; later calls only launch.
    """
    if interpreting():
        for k, grid, args, kw in launches:
            k[grid](*args, **kw)
        return
    import torch
    device = next((a.device for _k, _g, args, _kw in launches for a in args if hasattr(a, "device")), None)
    index = device.index if device is not None and device.index is not None else torch.cuda.current_device()
    if index != torch.cuda.current_device():            # Triton launches on the current device
        with torch.cuda.device(index):
            return launch_all(launches)
    if not all([_compiled_here(k, index) for k, _g, _a, _kw in launches]):   # a list: every kernel's
        _warm_concurrently(launches, index)                                    # cache made here
    for k, grid, args, kw in launches:
        k[grid](*args, **kw)


def _warm_concurrently(launches, device) -> int:
    """Compile the distinct variants of ``launches`` in threads; returns how many (0 after a failure,
    with a warning: the launches then compile one at a time)."""
    import warnings
    from concurrent.futures import ThreadPoolExecutor

    import torch
    variants = {}
    for k, grid, args, kw in launches:
        key = (id(k), tuple(sorted(kw.items())), tuple(str(getattr(a, "dtype", type(a).__name__)) for a in args))
        variants.setdefault(key, (k, grid, args, kw))

    def warm(item):
        k, grid, args, kw = item
        with torch.cuda.device(device):
            compiled = k.warmup(*args, grid=grid, **kw)
            getattr(compiled, "run", None)        # loads the binary and builds its launcher (Triton 3.x)

    try:
        with ThreadPoolExecutor(max_workers=len(variants)) as pool:
            list(pool.map(warm, variants.values()))
    except Exception as exc:              # e.g. a Triton without warmup: the launches compile instead
        warnings.warn(f"bayesfilt: concurrent Triton compilation failed ({exc!r}); compiling at launch",
                      RuntimeWarning, stacklevel=3)
        return 0
    return len(variants)
