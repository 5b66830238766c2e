"""The public call's wall median before and after creating capture_filter graphs, a 256-MB buffer and
event records, in one process (session 10). python benchmarks/parallel_order_probe.py -> $OUT/order_probe.json"""
import json, os, sys, time

import numpy as np
import torch

import bayesfilt

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from parallel_gpu_profile import workloads
model = bayesfilt.models.constant_velocity(q=0.05, r=4.0)
def med_wall(fn, n=60):
    for _ in range(3): fn()
    w = []
    for _ in range(n):
        torch.cuda.synchronize(); t0 = time.perf_counter(); fn(); torch.cuda.synchronize(); w.append(1e3*(time.perf_counter()-t0))
    return float(np.median(w))
out = {}
for shape, y in workloads().items():
    k = "x".join(map(str, shape)); r = out[k] = {}
    pub = lambda: bayesfilt.parallel_filter(model, y, validate=False)
    r["public, before any graph"] = med_wall(pub)
    g1 = bayesfilt.capture_filter(model, y, copy=False); g2 = bayesfilt.capture_filter(model, y)
    r["public, two graphs alive"] = med_wall(pub)
    flush = torch.empty(256 * 2**20, dtype=torch.uint8, device="cuda")
    r["public, graphs + 256 MB buffer"] = med_wall(pub)
    ev0, ev1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    def with_events():
        ev0.record(); pub(); ev1.record()
    r["public, with event records"] = med_wall(with_events)
    del g1, g2, flush
    r["public, after deleting them"] = med_wall(pub)
    print(k, json.dumps({a: round(b, 3) for a, b in r.items()}), flush=True)
import triton
from _common import git_state
meta = {"benchmark": "parallel_order_probe", "commit": git_state()[0], "device": torch.cuda.get_device_name(),
        "torch": torch.__version__, "triton": triton.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "note": "median wall ms of 60 public calls (validate=False) per phase, one process"}
json.dump({"meta": meta, **out}, open(os.environ.get("OUT", "/tmp") + "/order_probe.json", "w"), indent=1)
