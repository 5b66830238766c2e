"""What every benchmark records about the code it ran: the git commit, and whether it was modified.

Used by the scripts in benchmarks/ (each writes it under its own, unchanged JSON keys).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def git_state(paths=("bayesfilt",)) -> tuple[str, bool | None]:
    """``(commit, dirty)``: the HEAD commit ("unknown" without git) and whether ``paths`` (relative to the
    repository root) hold uncommitted changes (None when git cannot tell). ``$GIT_COMMIT``, when set,
    is taken as the commit (dirty None).

    Example:
        >>> sha, dirty = git_state()                              # doctest: +SKIP
    """
    import os
    if os.environ.get("GIT_COMMIT"):                    # set by benchmarks/gpu_run.sh: the device copy's .git
        return os.environ["GIT_COMMIT"], None           # may be stale, its working tree is the commit named
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown", None
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--", *paths], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return sha, None
    return sha, bool(out.strip())


def cv_model_filterpy_prior():
    """The CPU benchmarks' constant-velocity model (dt = 1, q = 1, r = 1) and filterpy's prior.

    Returns:
        ``(model, P0_fp)``: our model, whose prior is that of x_1 = F x_0 + w, and filterpy's
        prior covariance of x_0 (100 I, before its first predict), so both filters agree.
    """
    import numpy as np

    import bayesfilt
    base = bayesfilt.models.constant_velocity(dt=1.0, q=1.0, r=1.0)
    P0_fp = 100.0 * np.eye(4)                                  # filterpy's prior of x_0 (before its first predict)
    P0 = base.F @ P0_fp @ base.F.T + base.Q                    # ours: prior of x_1 = F x_0 + w
    return base.replace(P0=P0), P0_fp


def check(name: str, a, b, tol: float) -> float:
    """Max relative error of ``a`` against ``b`` (relative to max(1, |b|)); stops the benchmark above ``tol``."""
    import numpy as np
    a, b = np.asarray(a, float), np.asarray(b, float)
    err = float(np.max(np.abs(a - b) / np.maximum(1.0, np.abs(b))))
    if not err <= tol:
        raise SystemExit(f"parity failed for {name}: max relative error {err:.3g} > {tol}")
    return err


def filterpy_filter(model, P0_fp, y):
    """filterpy's ``KalmanFilter.batch_filter`` on the 4-state model; returns ``(kf, means, covs)``."""
    import numpy as np
    from filterpy.kalman import KalmanFilter
    kf = KalmanFilter(dim_x=4, dim_z=2)
    kf.x, kf.P = np.zeros(4), P0_fp.copy()
    kf.F, kf.Q, kf.H, kf.R = model.F, model.Q, model.H, model.R
    means, covs, _, _ = kf.batch_filter(y)
    return kf, means, covs


# --------------------------------------------------------------------------- `bayesfilt train` runs
def add_kla_init_args(ap, scope: str = "") -> None:
    """Add ``--p-init-rule`` and ``--lambda-v-init`` (KLA's initialisations, passed on to ``bayesfilt train``)."""
    ap.add_argument("--p-init-rule", default=None, choices=("constant", "3a-dt"),
                    help=f"KLA's initial p{scope} (default: the CLI's, constant; 3a-dt: p = 3·a·Δ per lane, the "
                         "authors' newer code; docs/notes_a5.md 5.12)")
    ap.add_argument("--lambda-v-init", type=float, default=None,
                    help=f"KLA's initial value precision, the same for every token{scope} (default: input-dependent; "
                         "the authors' newer code: d_state)")


def train_command(task: str, out, **flags) -> list:
    """The command line of one ``bayesfilt train TASK`` child (this interpreter, ``--force --no-progress``).

    Each keyword becomes a flag: ``d_model=128`` -> ``--d-model 128``; True -> the bare flag
    (``no_process_noise=True``); None or False -> left out.

    Example:
        >>> train_command("a5", "/tmp/r", mixer="kla", d_model=16, no_process_noise=True)[3:]
        ['train', 'a5', '--out', '/tmp/r', '--force', '--no-progress', '--mixer', 'kla', '--d-model', '16', '--no-process-noise']
    """
    import sys
    cmd = [sys.executable, "-m", "bayesfilt", "train", task, "--out", str(out), "--force", "--no-progress"]
    for key, value in flags.items():
        if value is None or value is False:
            continue
        cmd.append("--" + key.replace("_", "-"))
        if value is not True:
            cmd.append(str(value))
    return cmd


def read_run(out, log=None) -> dict:
    """What a finished (or killed) ``bayesfilt train`` run left in ``out``.

    Returns:
        dict with ``result`` (result.json, or None when the run wrote none), ``history`` (the
        metrics.jsonl records, [] when absent), ``stdout`` (the last JSON line of ``log``,
        which the CLI prints with ``train_seconds_this_run``; None when absent) and, when there
        is no result, ``log_tail`` (the last 1,500 characters of ``log``).
    """
    import json
    out = Path(out)
    rec = {"result": None, "history": [], "stdout": None}
    if (out / "result.json").exists():
        rec["result"] = json.loads((out / "result.json").read_text())
    if (out / "metrics.jsonl").exists():
        for line in (out / "metrics.jsonl").read_text().splitlines():
            try:
                rec["history"].append(json.loads(line))
            except ValueError:                                  # a line cut off by a kill
                pass
    text = Path(log).read_text(errors="replace") if log is not None and Path(log).exists() else ""
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            try:
                rec["stdout"] = json.loads(line)
            except ValueError:
                pass
            break
    if rec["result"] is None:
        rec["log_tail"] = text[-1500:]
    return rec


def run_processes(jobs, *, concurrency=None, kill_after=None, on_done=None, poll_s: float = 0.5) -> list:
    """Run child processes, at most ``concurrency`` at once, each with OMP_NUM_THREADS=1.

    Args:
        jobs: dicts with ``cmd`` (argv list), ``log`` (path of its stdout + stderr) and any
            other keys (passed through); started in order.
        concurrency: maximum number running at once (None: all at once).
        kill_after: wall-clock seconds after which a child (and its process group) is killed
            (None: never); its row then says ``killed: True``.
        on_done: called with each finished row, in the order they finish (e.g. to print it).
        poll_s: seconds between checks.

    Returns:
        one row per job, in the order of ``jobs``: the job's keys plus ``rc``, ``wall_s`` and ``killed``.
    """
    import os
    import signal
    import subprocess
    import time
    env = dict(os.environ, OMP_NUM_THREADS="1")
    limit = len(jobs) if not concurrency else max(1, int(concurrency))
    rows = [dict(job) for job in jobs]
    pending = list(range(len(jobs)))
    running = {}                                                # index -> (Popen, start time, log file)
    while pending or running:
        while pending and len(running) < limit:
            i = pending.pop(0)
            Path(rows[i]["log"]).parent.mkdir(parents=True, exist_ok=True)
            log = open(rows[i]["log"], "w")
            proc = subprocess.Popen(rows[i]["cmd"], stdout=log, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)     # own process group: a kill takes its children
            running[i] = (proc, time.time(), log)
        time.sleep(poll_s)
        for i, (proc, t0, log) in list(running.items()):
            killed = False
            if proc.poll() is None:
                if kill_after is None or time.time() - t0 < kill_after:
                    continue
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                killed = True
            rc = proc.wait()
            log.close()
            rows[i].update(rc=rc, wall_s=round(time.time() - t0, 1), killed=killed)
            del running[i]
            if on_done is not None:
                on_done(rows[i])
    return rows


def torch_record() -> dict:
    """``device`` (the CUDA device's name, or "cpu"), ``machine`` and ``torch`` (version) of this process."""
    import platform

    import torch
    return {"device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
            "machine": platform.node(), "torch": torch.__version__}


def best_of(fn, repeats: int, budget_s: float = 30.0) -> float:
    """Best wall time of ``fn()`` over up to ``repeats`` runs, the first included (fewer runs when one
    run is slow: at most about ``budget_s`` seconds in all)."""
    import time
    t0 = time.perf_counter()
    fn()
    best = time.perf_counter() - t0
    k = int(min(repeats - 1, max(0, budget_s // max(best, 1e-9) - 1)))
    for _ in range(k):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def cuda_graph(fn, warmup: int = 3):
    """``(graph, out)``: ``fn()`` run ``warmup`` times on a side stream of the current device, then captured
    once in a ``torch.cuda.CUDAGraph`` (``bayesfilt.scan.graph.warm_and_capture``); ``out`` is what the captured
    call returned (buffers that every ``graph.replay()`` rewrites)."""
    import torch

    from bayesfilt.scan.graph import warm_and_capture
    return warm_and_capture(fn, torch.cuda.current_device(), warmup)
