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


def cdiv(a: int, b: int) -> int:
    """ceil(a / b) for ints a >= 0, b >= 1: ``triton.cdiv``'s value, for launch grids and tile counts on the
    host, where ``triton.cdiv`` (a ``ConstexprFunction`` in Triton 3.6 and 3.9) cost 2.7-4.6 us per call on
    the dev machine (``triton.next_power_of_2`` likewise)."""
    return -(-a // b)


def next_pow2(n: int) -> int:
    """The smallest power of two >= n for ints n >= 1 (``triton.next_power_of_2``'s value, without its
    host cost: see :func:`cdiv`)."""
    return 1 << (n - 1).bit_length()


def _compiled_here(kernel, device) -> bool:
    """Whether ``kernel`` (a triton.jit function) has compiled any variant in this process for ``device``
    (Triton's per-device cache of compiled kernels; a version without it counts as compiled)."""
    try:
        caches = kernel.device_caches      # a defaultdict whose new entry starts Triton's driver: not made here
        return device in caches and bool(caches[device][0])
    except Exception:                     # another Triton layout: fall back to compiling one at a time
        return True


def launch_all(launches, warm_also=()) -> None:
    """Launch Triton kernels in order: ``launches`` is a list of ``(kernel, grid, args, kwargs)``;
    ``warm_also``: launches of the same form that are compiled with them on a first call but not
    launched here (a kernel the caller launches later, after work of its own).

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
    index = _launch_device(launches)
    if index != torch.cuda.current_device():            # Triton launches on the current device
        with torch.cuda.device(index):
            return launch_all(launches, warm_also)
    together = list(launches) + list(warm_also)
    if not all(_compiled_here(k, index) for k, _g, _a, _kw in together):
        _warm_concurrently(together, index)
    direct = _direct_launch_supported() and not _hooks_set()
    state = (index,) + _knob_state() if direct else None
    stream = _current_stream(index) if direct else None
    for k, grid, args, kw in launches:
        if not (direct and _launch_direct(k, grid, args, kw, state, stream)):
            k[grid](*args, **kw)


def launch_now(plan: list, kernels) -> bool:
    """Launch the entries of ``plan`` (``launch_all``'s form) now and empty it, when each of
    ``kernels`` (the triton.jit functions of the whole call) has compiled in this process: the GPU
    starts on them while the host allocates the outputs and prepares the later launches, which takes
    that host work off the critical path of a call whose host time exceeds its kernels' early part.
    On a first call (some kernel not compiled) nothing happens, so that ``launch_all`` still compiles
    all variants of the call together. Returns whether it launched (under the interpreter: always)."""
    if not plan:
        return False
    if not interpreting():
        index = _launch_device(plan)
        if not all(_compiled_here(k, index) for k in kernels):
            return False
    launch_all(plan)
    plan.clear()
    return True


def device_index(device) -> int:
    """The CUDA device index of ``device`` (a torch.device; without an index, or None: the current device)."""
    import torch
    return device.index if device is not None and device.index is not None else torch.cuda.current_device()


def _launch_device(launches) -> int:
    """The device index of the first tensor argument among ``launches`` (the current device if none)."""
    return device_index(next((a.device for _k, _g, args, _kw in launches for a in args if hasattr(a, "device")),
                             None))


def _current_stream(index: int) -> int:
    """The raw CUDA stream Triton's own launch would use on device ``index`` (its driver's
    ``get_current_stream``: torch's current stream, without building a ``torch.cuda.Stream``)."""
    from triton.runtime import driver
    return driver.active.get_current_stream(index)


def _knob_state() -> tuple:
    """The Triton runtime knobs that ``JITFunction.run`` folds into its compile key (debug mode and
    instrumentation), so that a kernel remembered under one setting is not reused under another."""
    from triton import knobs
    return (bool(knobs.runtime.debug), str(knobs.compilation.instrumentation_mode))


#: Triton versions whose compiled-kernel launcher convention ``_launch_direct`` was checked against
#: (``CompiledKernel.run(gx, gy, gz, stream, function, packed_metadata, launch_metadata, enter_hook,
#: exit_hook, *args)``, all parameters constexprs included): other versions take ``kernel[grid]``.
DIRECT_LAUNCH_VERSIONS = ("3.6.",)


def _direct_launch_supported() -> bool:
    import triton
    return triton.__version__.startswith(DIRECT_LAUNCH_VERSIONS)


_UNKEYED = object()


def _arg_key(a):
    """One argument's part of :func:`_launch_key` (``_UNKEYED``: not classified)."""
    t = type(a)
    if t is int or a is None:
        return a                                                 # ints by value: finer than Triton's classes
    if t is float or t is bool:
        return t, a                                              # by value too (a float given for a constexpr)
    if hasattr(a, "data_ptr") and hasattr(a, "dtype"):
        return a.dtype, a.data_ptr() & 15 == 0                   # dtype and 16-byte alignment
    return _UNKEYED


def _tensor_type():
    import torch
    return torch.Tensor


def _launch_key(args, kw, device):
    """A key at least as fine as Triton's own specialisation of a launch, or None for an argument it
    does not classify: every tensor's dtype, 16-byte alignment and device index (-1 in host memory), every
    int, float, bool and None by value (Triton specialises ints on their width, the value 1 and
    divisibility by 16: the value itself is finer), the keyword arguments (constexprs, num_warps, ...) in
    the order given, and ``device`` (the device index and the compile-affecting runtime knobs:
    :func:`_knob_state`). Two launches with equal keys run the same compiled kernel."""
    return _key_and_addresses(args, kw, device)[0]


def _key_and_addresses(args, kw, device):
    """(:func:`_launch_key`, the arguments with every torch.Tensor replaced by its device address): the
    compiled launcher takes an int pointer as it is, where for a tensor it calls ``data_ptr()`` and asks
    the driver whether the address is a device's (``cuPointerGetAttribute``) per pointer on every launch.
    That check is kept in the key instead: each tensor's device index is part of it, and
    :func:`_launch_direct` never remembers a launch with a tensor in host memory or on another device than
    the launch's, so each such launch takes Triton's path (which raises for pageable host memory and for
    another device's memory that this one cannot reach)."""
    tensor = _tensor_type()
    parts, addresses = [], []
    for a in args:
        if type(a) is tensor:                                    # the common cases without a call
            p = a.data_ptr()
            parts.append((a.dtype, p & 15 == 0, a.get_device()))
            addresses.append(p)
        else:
            parts.append(a if type(a) is int else _arg_key(a))
            addresses.append(a)
    if _UNKEYED in parts:
        return None, None                                        # e.g. a NumPy scalar: Triton's path
    key = (device, tuple(parts), tuple(kw.items()))
    try:
        hash(key)
    except TypeError:                                            # an unhashable keyword value
        return None, None
    return key, addresses


#: Compiled launchers remembered per kernel before the memo is cleared (one entry per distinct key;
#: ints are keyed by value, so a loop over many sizes would otherwise grow it without bound).
MEMO_SIZE = 512


def _hooked(hook) -> bool:
    """Whether a Triton launch hook is set: a non-empty ``HookChain`` (Triton 3.6 keeps an empty chain
    when none is) or any other non-None callable."""
    return hook is not None and (bool(hook.calls) if hasattr(hook, "calls") else True)


def _hooks_set() -> bool:
    from triton import knobs
    return _hooked(knobs.runtime.launch_enter_hook) or _hooked(knobs.runtime.launch_exit_hook)


def _launch_direct(kernel, grid, args, kw, device, stream) -> bool:
    """Launch through the compiled kernel's own launcher, skipping ``JITFunction.run``'s argument
    binding, specialisation and cache lookup (about 10-40 us of host time per launch on the H200's
    host: ``benchmarks/results/host_profile_4367276.json``). The compiled kernel is remembered on the
    kernel object, under :func:`_launch_key`, after Triton's own launch of the first call with that key
    (which also compiles it); unclassified arguments take Triton's path (and so does every launch
    while a launch hook, e.g. a profiler's, is set: ``launch_all``).
    Returns whether it launched (False: the caller launches with ``kernel[grid]``)."""
    if getattr(kernel, "pre_run_hooks", None):                  # hooks JITFunction.run would call
        return False
    key, addresses = _key_and_addresses(args, kw, device)
    if key is None:
        return False
    memo = kernel.__dict__.setdefault("_bayesfilt_launchers", {})
    entry = memo.get(key)
    if entry is None:
        if len(memo) >= MEMO_SIZE:
            memo.clear()
        compiled = kernel[grid](*args, **kw)                     # Triton's path: compiles if needed
        sig = kernel.signature
        bound = sig.bind(*args, **{n: v for n, v in kw.items() if n in sig.parameters})
        bound.apply_defaults()
        # never a launch with a tensor off the launch's device (device[0]): pinned host memory or a peer's
        # passes Triton's check, and a later tensor with the same key that would fail it (pageable memory,
        # an unreachable device) would then reach the kernel as a raw address
        tensor = _tensor_type()
        foreign = any(type(a) is tensor and a.get_device() != device[0] for a in args)
        if compiled is not None and not foreign and len(bound.arguments) == len(sig.parameters):
            tail = tuple(bound.arguments.values())[len(args):]  # constexprs etc. after the positional ones
            memo[key] = (compiled, tail)
        return True
    compiled, tail = entry
    g = tuple(grid) + (1,) * (3 - len(grid))
    compiled.run(g[0], g[1], g[2], stream, compiled.function, compiled.packed_metadata, None, None, None,
                 *addresses, *tail)
    return True


def _triton_key() -> None:
    """Triton's cache-key hash of its own installation (a SHA-256 of its 416 MB library in 3.6: 0.4 s, then
    remembered for the process); nothing on a Triton without it."""
    try:
        from triton.runtime.cache import triton_key
    except ImportError:
        return
    triton_key()


def _start_driver() -> None:
    """Start Triton's driver on this thread (on a cold cache it builds a C helper first: 0.4 s)."""
    from triton.runtime import driver
    driver.active


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
            # Triton's key hash once, beside the driver's start on this thread (each ~0.4 s with a cold
            # cache), instead of in every compile thread at once (session 17's timeline of a first call)
            hashed = pool.submit(_triton_key)
            _start_driver()
            for k, _g, _a, _kw in launches:     # every kernel's cache made here: two threads making one
                k.device_caches[device]         # (variants of a kernel) would lose one's compiled kernel
            hashed.result()
            list(pool.map(warm, variants.values()))
    except Exception as exc:              # e.g. a Triton without warmup: the launches compile instead
        warnings.warn(f"bayesfilt: concurrent Triton compilation failed ({exc!r}); compiling at launch",
                      RuntimeWarning, stacklevel=3)
        return 0
    return len(variants)
