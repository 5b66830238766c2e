"""Time to a first result in a fresh process (issue 3: under 5 s, compilation included).

Each measurement starts a new Python process that imports numpy, torch and bayesfilt, starts CUDA,
and runs ``bayesfilt.parallel_filter`` on float32 data on the GPU; the clock runs from this script's
start of the process to the moment the process reports the first result as computed (after a
``torch.cuda.synchronize()``), read from its output as it happens (so that the process's exit is
not counted). The process also reports its own phase times (imports, CUDA start, first call).

Rounds interleave the workloads so that a slow phase of the host hits all alike: per round, for each
workload, one process with a new, empty Triton cache ("cold"), then one more with the cache it left
("warm").

``--bytecode`` adds a second variant of every process, run beside the first in each round: Python's
modules read from compiled bytecode. pip compiles bytecode when it installs a package; the lent
H200's torch was installed without it and its environment sets ``PYTHONDONTWRITEBYTECODE=1``, so
there every process compiles torch's 2,141 source files again (session 17, stage ``s17a``). The
script compiles the sources of the packages the child imports (torch, triton, numpy, bayesfilt and
their imports) into a folder of its own with ``compileall`` (timed, reported as ``bytecode_compile_s``;
an install-time cost, not a per-process one) and runs the variant with ``PYTHONPYCACHEPREFIX`` set to
it; Python reads bytecode from there even where writing is turned off. Rows carry the variant's name.

The run at 3eeff84 (``benchmarks/results/first_result_s15a_3eeff84.json``) also compared compiling
the first call's kernels in worker processes (an experiment since removed; its rows carry
``workers=1``) against the threads of ``bayesfilt.scan._triton.launch_all`` (``workers=0``).

Usage (on the GPU machine, after ``pip install --no-deps -e .``)::

    python benchmarks/first_result.py --rounds 3 --out benchmarks/results/first_result_<commit>.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import sys, time
t0 = time.perf_counter()
marks = {}
import numpy as np
marks["import_numpy"] = time.perf_counter() - t0
import torch
marks["import_torch"] = time.perf_counter() - t0
import bayesfilt
marks["import_bayesfilt"] = time.perf_counter() - t0
torch.zeros(1, device="cuda"); torch.cuda.synchronize()
marks["cuda_start"] = time.perf_counter() - t0
shape = tuple(int(s) for s in sys.argv[1].split("x"))
model = bayesfilt.models.constant_velocity(q=0.05, r=4.0)
y = torch.as_tensor(np.random.default_rng(0).standard_normal(shape + (2,)), dtype=torch.float32, device="cuda")
res = bayesfilt.parallel_filter(model, y)
ll = float(res.loglik.sum())                                     # on the host: the result is there
print("READY", flush=True)
marks["first_call"] = time.perf_counter() - t0
res = bayesfilt.parallel_filter(model, y); torch.cuda.synchronize()
marks["second_call"] = time.perf_counter() - t0
print("MARKS", " ".join(f"{k}={v:.3f}" for k, v in marks.items()), "loglik", ll, flush=True)
"""


IMPORTED = r"""
import os, sys
import numpy, torch, triton, bayesfilt, bayesfilt.scan.triton_riccati, triton.compiler
roots = set()
for name, mod in list(sys.modules.items()):
    f = getattr(mod, "__file__", None)
    if f and f.endswith(".py") and "." not in name:
        roots.add(os.path.dirname(f) if os.path.basename(f) == "__init__.py" else f)
print("\n".join(sorted(roots)))
"""


def compile_bytecode(prefix: str) -> float:
    """Compile the sources of every top-level package a child imports into ``prefix`` (as
    PYTHONPYCACHEPREFIX lays it out); returns the seconds it took."""
    t0 = time.perf_counter()
    roots = subprocess.run([sys.executable, "-c", IMPORTED], check=True, capture_output=True,
                           text=True).stdout.split()
    env = dict(os.environ, PYTHONPYCACHEPREFIX=prefix)
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", *roots], env=env, check=False,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def one(shape: str, cache: str, pycache: str | None = None) -> dict:
    env = dict(os.environ, TRITON_CACHE_DIR=cache)
    if pycache:
        env["PYTHONPYCACHEPREFIX"] = pycache
    err_file = tempfile.TemporaryFile(mode="w+")            # not a pipe: a chatty child never blocks on it
    t0 = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-c", CHILD, shape], env=env, stdout=subprocess.PIPE,
                         stderr=err_file, text=True)
    ready = None
    marks = {}
    for line in p.stdout:
        if line.startswith("READY") and ready is None:
            ready = time.perf_counter() - t0
        elif line.startswith("MARKS"):
            parts = line.split()
            marks = {k: float(v) for k, v in (x.split("=") for x in parts[1:] if "=" in x)}
            marks["loglik"] = float(parts[-1])
    rc = p.wait()
    err_file.seek(0)
    err = err_file.read()
    err_file.close()
    return {"shape": shape, "to_result_s": ready, "process_s": time.perf_counter() - t0,
            "rc": rc, "marks": marks, "stderr_tail": err[-1500:] if rc or ready is None else ""}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--shapes", default="1024,1024x1024")
    ap.add_argument("--out", default="")
    ap.add_argument("--bytecode", action="store_true",
                    help="also run every process with the imported packages' bytecode compiled (see above)")
    args = ap.parse_args()
    import torch
    import triton
    runs = []
    base = tempfile.mkdtemp(prefix="first_result_")
    variants = {"as-is": None}
    bytecode_s = None
    if args.bytecode:
        variants["bytecode"] = os.path.join(base, "pycache")
        bytecode_s = compile_bytecode(variants["bytecode"])
        print(f"bytecode compiled in {bytecode_s:.1f} s", flush=True)
    for r in range(args.rounds):
        shapes = args.shapes.split(",")
        for shape in shapes if r % 2 == 0 else shapes[::-1]:
            for variant in variants if r % 2 == 0 else list(variants)[::-1]:
                cache = os.path.join(base, f"r{r}_{shape}_{variant}")
                for state in ("cold", "warm"):
                    res = dict(one(shape, cache, variants[variant]), round=r, cache=state, variant=variant)
                    runs.append(res)
                    print(f"round {r} {shape:>9s} {variant} {state}: to result "
                          f"{res['to_result_s'] if res['to_result_s'] is None else round(res['to_result_s'], 2)} s, "
                          f"process {res['process_s']:.2f} s; {res['marks']}", flush=True)
                shutil.rmtree(cache, ignore_errors=True)
    shutil.rmtree(base, ignore_errors=True)                     # the bytecode folder and any cache left
    summary = {}
    for shape in args.shapes.split(","):
        for variant in variants:
            for state in ("cold", "warm"):
                sel = [x for x in runs if (x["shape"], x["variant"], x["cache"]) == (shape, variant, state)]
                xs = sorted(x["to_result_s"] for x in sel if x["to_result_s"] is not None)
                first = sorted(x["marks"]["first_call"] - x["marks"]["cuda_start"] for x in sel if x["marks"])
                imp = sorted(x["marks"]["import_torch"] - x["marks"]["import_numpy"] for x in sel if x["marks"])
                summary[f"{shape} {state}" + ("" if variant == "as-is" else f" {variant}")] = {
                    "to_result_s": xs, "median_s": xs[len(xs) // 2] if xs else None,
                    "first_call_s": [round(v, 3) for v in first], "import_torch_s": [round(v, 3) for v in imp]}
    for k, v in summary.items():
        print(f"{k:32s} median {v['median_s']}  all {[round(x, 2) for x in v['to_result_s']]}  "
              f"first call {v['first_call_s']}  import torch {v['import_torch_s']}")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _common import git_state                  # $GIT_COMMIT (gpu_run.sh) or git's HEAD
    commit, dirty = git_state()
    meta = {"benchmark": "first_result", "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
            "torch": torch.__version__, "triton": triton.__version__, "python": platform.python_version(),
            "usable_cpus": len(os.sched_getaffinity(0)), "commit": commit, "dirty": dirty, "rounds": args.rounds,
            "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "target_s": 5.0,
            "command": "python " + " ".join(sys.argv),
            "env": {k: os.environ.get(k) for k in ("PYTHONPYCACHEPREFIX", "PYTHONDONTWRITEBYTECODE")},
            "bytecode_compile_s": bytecode_s}
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"meta": meta, "summary": summary, "runs": runs}, f, indent=1)


if __name__ == "__main__":
    main()
