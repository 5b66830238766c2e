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


def launch_all(launches, warm_also=(), workers: bool = False) -> None:
    """Launch Triton kernels in order: ``launches`` is a list of ``(kernel, grid, args, kwargs)``;
    ``warm_also``: launches of the same form that are compiled with them on a first call but not
    launched here (a kernel the caller launches later, after work of its own).

    On the first call in a process (some kernel not compiled yet) the distinct variants are compiled
    concurrently first, in threads: ``warmup`` (compile, no launch; Triton's compiler passes and ptxas
    run outside the GIL) and the loading of each binary with its launcher (a C stub that Triton
    builds with the system compiler). That shortens the time to a first result; later calls only launch.
    ``workers``: the kernels' modules import without torch, so that the variants Triton's on-disk
    cache lacks may be compiled in worker processes first, all at once (:func:`compile_in_processes`;
    the threads then load them from the cache).
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
            return launch_all(launches, warm_also)
    together = list(launches) + list(warm_also)
    if not all([_compiled_here(k, index) for k, _g, _a, _kw in together]):   # a list: every kernel's
        _warm_concurrently(together, index, workers)                            # cache made here
    direct = _direct_launch_supported() and not _hooks_set()
    state = (index,) + _knob_state() if direct else None
    stream = torch.cuda.current_stream().cuda_stream if direct else None
    for k, grid, args, kw in launches:
        if not (direct and _launch_direct(k, grid, args, kw, state, stream)):
            k[grid](*args, **kw)


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
    does not classify: every tensor's dtype and 16-byte alignment, every int, float, bool and None by
    value (Triton specialises ints on their width, the value 1 and divisibility by 16: the value itself
    is finer), the keyword arguments (constexprs, num_warps, ...) in the order given, and ``device``
    (the device index and the compile-affecting runtime knobs: :func:`_knob_state`). Two launches with
    equal keys run the same compiled kernel."""
    tensor = _tensor_type()
    parts = tuple([a if type(a) is int else (a.dtype, a.data_ptr() & 15 == 0) if type(a) is tensor  # inline:
                   else _arg_key(a) for a in args])                # the common cases without a call
    if _UNKEYED in parts:
        return None                                              # e.g. a NumPy scalar: Triton's path
    key = (device, parts, tuple(kw.items()))
    try:
        hash(key)
    except TypeError:                                            # an unhashable keyword value
        return None
    return key


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
    key = _launch_key(args, kw, device)
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
        if compiled is not None and len(bound.arguments) == len(sig.parameters):
            tail = tuple(bound.arguments.values())[len(args):]  # constexprs etc. after the positional ones
            memo[key] = (compiled, tail)
        return True
    compiled, tail = entry
    g = tuple(grid) + (1,) * (3 - len(grid))
    compiled.run(g[0], g[1], g[2], stream, compiled.function, compiled.packed_metadata, None, None, None,
                 *args, *tail)
    return True


def _warm_concurrently(launches, device, workers: bool = False) -> int:
    """Compile the distinct variants of ``launches`` in threads (after worker processes, where
    ``workers`` and :func:`use_workers` allow); returns how many (0 after a failure, with a warning:
    the launches then compile one at a time)."""
    import warnings
    from concurrent.futures import ThreadPoolExecutor

    import torch
    variants = {}
    for k, grid, args, kw in launches:
        key = (id(k), tuple(sorted(kw.items())), tuple(str(getattr(a, "dtype", type(a).__name__)) for a in args))
        variants.setdefault(key, (k, grid, args, kw))
    if workers and use_workers(len(variants)):
        from triton.runtime import driver
        with torch.cuda.device(device):
            compile_in_processes(variants.values(), driver.active.get_current_target())

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


#: Triton versions whose JIT compile hook (``knobs.runtime.jit_cache_hook``, called with a
#: ``specialization_data`` string before a compile) and cache keys :func:`compile_in_processes` was
#: checked against (tests/test_compile_workers.py).
WORKER_VERSIONS = ("3.6.", "3.9.")

#: ``BAYESFILT_COMPILE_WORKERS``: "0" compiles in threads only, "1" uses worker processes whenever
#: supported; unset, they are used when at least this many CPUs are usable (on one, the workers only
#: add their start-up, about a second each, to the same compile work).
WORKER_MIN_CPUS = 2


def use_workers(variants: int) -> bool:
    """Whether a first call compiling ``variants`` kernel variants compiles them in worker processes."""
    import sys
    import triton
    setting = os.environ.get("BAYESFILT_COMPILE_WORKERS", "")
    if setting == "0" or variants < 2 or not sys.executable or not triton.__version__.startswith(WORKER_VERSIONS):
        return False
    return setting == "1" or len(os.sched_getaffinity(0)) >= WORKER_MIN_CPUS


def compile_in_processes(launches, target) -> int:
    """Compile the kernel variants of ``launches`` (``(kernel, grid, args, kwargs)``) that Triton's
    on-disk cache lacks, each in a worker process of its own (``python -m bayesfilt.scan._compile_worker``),
    all at once; a later ``warmup`` or launch in this process then loads them from the cache.

    Triton compiles in threads only partly in parallel (its Python front end and some passes hold the
    GIL). Here the requests are collected with ``warmup`` under a JIT cache hook that records the
    serialised specialisation and skips the compile (only for these kernels, only on this thread;
    none is installed when another hook is set), and each worker turns that back into the same
    compile, so the cache keys agree. ``target``: Triton's ``GPUTarget`` of the current device.
    Returns how many variants the workers compiled (a worker's failure is reported as a warning;
    the variant is then compiled in this process).
    """
    import json
    import subprocess
    import sys
    import tempfile
    import threading
    import warnings

    from triton import knobs
    if knobs.runtime.jit_cache_hook is not None:
        return 0
    launches = list(launches)
    kernels = {id(k) for k, _g, _a, _kw in launches}
    me = threading.get_ident()
    requests = []

    def record(*, fn, compile, **_):
        if threading.get_ident() != me or id(fn.jit_function) not in kernels:
            return None                                          # another thread's or kernel's compile
        spec = compile["specialization_data"]
        if any(r["specialization"] == spec for r in requests):
            return True                                          # a repeated variant: once is enough
        requests.append({"module": fn.jit_function.fn.__module__, "name": fn.jit_function.fn.__qualname__,
                         "target": [target.backend, target.arch, target.warp_size],
                         "specialization": spec})
        return True                                              # recorded: skip this compile

    knobs.runtime.jit_cache_hook = record
    try:
        for k, grid, args, kw in launches:
            k.warmup(*args, grid=grid, **kw)                     # variants in the cache load, no hook call
    finally:
        knobs.runtime.jit_cache_hook = None
    if not requests:
        return 0
    env = dict(os.environ, TRITON_CACHE_DIR=knobs.cache.dir)
    roots = {os.path.dirname(os.path.dirname(os.path.abspath(sys.modules[r["module"].split(".")[0]].__file__)))
             for r in requests}
    env["PYTHONPATH"] = os.pathsep.join(sorted(roots) + [p for p in [env.get("PYTHONPATH")] if p])
    env.pop("TRITON_INTERPRET", None)
    procs = []
    try:
        for r in requests:
            err = tempfile.TemporaryFile()
            p = subprocess.Popen([sys.executable, "-m", "bayesfilt.scan._compile_worker"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=err, env=env)
            procs.append((r, p, err))
            p.stdin.write(json.dumps(r).encode())
            p.stdin.close()
        threading.Thread(target=_triton_key, daemon=True).start()  # this process's key hash meanwhile
        done = 0
        for r, p, err in procs:
            out = p.stdout.read()
            if p.wait() == 0 and b"COMPILED" in out:
                done += 1
            else:
                err.seek(0)
                warnings.warn(f"bayesfilt: a Triton compile worker failed for {r['module']}.{r['name']} "
                              f"(exit {p.returncode}): {err.read().decode(errors='replace')[-1500:]}; "
                              "compiling it in this process", RuntimeWarning, stacklevel=4)
        return done
    finally:
        for _r, p, err in procs:
            if p.poll() is None:
                p.kill()
            err.close()


def _triton_key() -> None:
    """Hash Triton's own files for its cache key (``triton_key``, remembered per process; about
    0.2-0.5 s), so that it overlaps the workers; any failure is left to the later compile."""
    try:
        from triton.runtime.cache import triton_key
        triton_key()
    except Exception:
        pass
