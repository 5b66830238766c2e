"""Float32 precision of the time-chunked Triton KLA forward at ā = 1, p̄ = 0 (precision grows
without bound), run under the Triton interpreter on the CPU (IEEE divisions, no GPU needed).

The case is the GPU test ``test_gpu_long_sequence_65536[None-kw1]`` (its inputs, seed 7): B=1,
L=65536, M=8, S=16, the 256-chunk plan the H200 chooses. The reference is the float64 torch
parallel scan. About 15 minutes on one CPU core.

Usage::

    python benchmarks/kla_chunk_precision.py --out benchmarks/results/kla_chunk_precision_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ["TRITON_INTERPRET"] = "1"                    # before triton is imported
ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]

import torch  # noqa: E402

from _common import git_state  # noqa: E402
from bayesfilt.nn.functional import kla_scan  # noqa: E402
from bayesfilt.nn.kernels import kla as K  # noqa: E402
from test_kla_triton import _inputs, _rel  # noqa: E402  (the GPU test's inputs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--L", type=int, default=65536)
    ap.add_argument("--chunks", type=int, default=256)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    xs = _inputs(1, args.L, 8, 16, seed=7, a_range=(1.0, 1.0), p_range=(0.0, 0.0), device="cpu")
    xr = [x.double() for x in xs]
    y, yv, st = kla_scan(*xr[:6], initial_state=(xr[6], xr[7]), backend="torch")
    t0 = time.time()
    with torch.no_grad():
        out = K.kla_scan_triton(*[x.float() for x in xs[:6]], initial_state=(xs[6].float(), xs[7].float()),
                                _num_chunks=args.chunks)
    errs = {n: _rel(a, b) for n, a, b in zip(("y", "y_var", "lam_L", "eta_L"), out, (y, yv, st.lam, st.eta))}
    rec = {"benchmark": "kla_chunk_precision", "L": args.L, "chunks": args.chunks, "M": 8, "S": 16,
           "a_bar": 1.0, "p_bar": 0.0, "rel_rms_vs_float64": errs, "interpreter_s": time.time() - t0,
           "git_commit": git_state()[0], "device": "cpu (TRITON_INTERPRET=1)"}
    print(json.dumps(rec))
    if args.out:
        Path(args.out).write_text(json.dumps(rec, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
