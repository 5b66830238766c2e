"""Summarise Nsight Compute's per-instruction warp-stall samples of one kernel launch.

Input: the CSV of ``ncu -i REPORT --page source --csv --print-source sass`` (the ``rows`` and ``pf11``
stages of ``benchmarks/gpu_run.sh`` write them, one per profiled kernel, into ``ncu_NAME.tgz``).
Output (JSON): the share of the samples per stall reason, per opcode of the waiting instruction, and
the instructions with the most ``long_scoreboard`` samples (waits on a variable-latency result: a
global load, or a store still reading a register the instruction overwrites), each with the load or
store it waits on and how many instructions earlier that was issued: a linear look back through the
listing that follows each register the instruction reads (read after write) or writes (write after
write, write after read) to its latest earlier writer or reader, dropping registers that another
instruction wrote in between; a producer in an earlier loop iteration (above the loop's start in the
listing) is not found.

    python benchmarks/ncu_stalls.py --out benchmarks/results/kla_ncu_stalls.json \\
        fwd=/tmp/ncu11/src_fwd.csv:11fb0b0:'{}' bwd=/tmp/ncu11/src_bwd.csv:11fb0b0:'{}'

Each argument is NAME=CSV:COMMIT:TUNE (TUNE: the kernels' private launch knobs as JSON). Where a file
``details_X.txt`` (``ncu -i REPORT --page details``) lies beside ``src_X.csv``, its scheduler and
occupancy figures are added.
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import os
import re


def _regs(text: str) -> list[str]:
    return re.findall(r"\bR(\d+)\b", text)


def _operands(src: str) -> tuple[str, list[str], list[str]]:
    """(opcode, registers written, registers read) of one SASS line (vector loads write 2 or 4)."""
    text = re.sub(r"^@!?U?P\w+\s+", "", src.strip())
    op, _, rest = text.partition(" ")
    parts = [p.strip() for p in rest.split(",")] if rest else []
    if op.startswith(("STG", "STS", "STL", "BRA", "EXIT", "BAR", "ISETP", "FSETP", "CCTL")):
        return op, [], [r for p in parts for r in _regs(p)]
    dst = _regs(parts[0]) if parts else []
    width = 4 if ".128" in op else 2 if (".64" in op or op.startswith("CS2R")) else 1
    if dst and width > 1:
        dst = [str(int(dst[0]) + i) for i in range(width)]
    return op, dst, [r for p in parts[1:] for r in _regs(p)]


def _int(text: str) -> int:
    return int(text.replace(",", "") or 0)


def _waits_on(src: list[str], i: int) -> dict | None:
    """The variable-latency instruction that instruction i waits on, found by looking back."""
    _, dst, read = _operands(src[i])
    raw, war = set(read) | set(dst), set(dst)           # its inputs (and outputs: write after write)
    for j in range(i - 1, max(-1, i - 4000), -1):
        op2, dst2, read2 = _operands(src[j])
        if op2.startswith(("LDG", "LDS", "LDL")) and raw & set(dst2):
            return {"producer": src[j].strip(), "instructions_earlier": i - j}
        if op2.startswith(("STG", "STL", "STS")) and war & set(read2):
            return {"producer": "register still read by " + src[j].strip(), "instructions_earlier": i - j}
        raw -= set(dst2)                                # written in between by a fixed-latency instruction
        war -= set(dst2)
        if not raw and not war:
            return None
    return None


def summarise(path: str, top: int = 8) -> dict:
    rows = list(csv.reader(open(path)))
    h = next(i for i, r in enumerate(rows) if "Source" in r and "Address" in r)
    hdr = rows[h]
    ix = {name: i for i, name in enumerate(hdr)}
    data = [r for r in rows[h + 1:] if len(r) >= len(hdr)]
    reasons = [h for h in hdr if h.startswith("stall_") and "Not Issued" not in h]
    src = [r[ix["Source"]] for r in data]
    samples = [_int(r[ix["Warp Stall Sampling (All Samples)"]]) for r in data]
    per_reason = collections.Counter()
    per_op = collections.Counter()
    for r, s, n in zip(data, src, samples):
        for name in reasons:
            per_reason[name[6:]] += _int(r[ix[name]])
        per_op[_operands(s)[0].split(".")[0]] += n
    total = sum(per_reason.values())
    long_sb = [_int(r[ix["stall_long_sb"]]) for r in data]
    out = [{"index": i, "instruction": src[i].strip(), "long_sb_share": long_sb[i] / total,
            **(_waits_on(src, i) or {})}
           for i in sorted(range(len(data)), key=lambda j: -long_sb[j])[:top]]
    return {"samples": total,
            "by_reason": {k: v / total for k, v in per_reason.most_common() if v},
            "by_waiting_opcode": {k: v / total for k, v in per_op.most_common(10)},
            "top_long_scoreboard": out}


#: figures taken from the details page, when it is there
DETAILS = ("Duration", "Registers Per Thread", "Achieved Occupancy", "Achieved Active Warps Per SM",
           "Active Warps Per Scheduler", "Eligible Warps Per Scheduler", "Issued Warp Per Scheduler",
           "No Eligible", "Warp Cycles Per Issued Instruction")


def details(path: str) -> dict:
    """{name: (value, unit)} of the DETAILS lines of an ``ncu --page details`` text (first occurrence)."""
    out = {}
    try:
        lines = open(path).read().splitlines()
    except OSError:
        return out
    for line in lines:
        for name in DETAILS:
            m = re.match(rf"\s+{re.escape(name)}\s+(\S*)\s+([\d.,]+)\s*$", line)
            if m and name not in out:
                out[name] = {"value": float(m.group(2).replace(",", "")), "unit": m.group(1)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("items", nargs="+", help="NAME=CSV:COMMIT:TUNE")
    ap.add_argument("--out", required=True)
    ap.add_argument("--note", default="")
    args = ap.parse_args()
    res = {"benchmark": "ncu_warp_stall_samples", "note": args.note, "profiles": {}}
    for item in args.items:
        name, _, rest = item.partition("=")
        parts = rest.split(":", 2)
        if not name or len(parts) != 3 or not os.path.isfile(parts[0]):
            ap.error(f"{item!r}: give NAME=CSV:COMMIT:TUNE with CSV an existing file (ncu --page source --csv)")
        path, commit, tune = parts
        try:
            json.loads(tune or "{}")
        except json.JSONDecodeError as exc:
            ap.error(f"{item!r}: TUNE is not JSON ({exc})")
        res["profiles"][name] = {"commit": commit, "tune": json.loads(tune or "{}"), **summarise(path)}
        det = details(path.replace("src_", "details_").replace(".csv", ".txt"))
        if det:
            res["profiles"][name]["details"] = det
        p = res["profiles"][name]
        print(f"{name:8s} {commit} {tune:60s} " + ", ".join(f"{k} {v:.1%}" for k, v in list(p["by_reason"].items())[:4]))
    with open(args.out, "w") as fh:
        json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()
