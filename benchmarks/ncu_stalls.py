"""Summarise Nsight Compute's per-instruction warp-stall samples of one kernel launch.

Input: the CSV of ``ncu -i REPORT --page source --csv --print-source sass`` (the ``rows`` and ``pf11``
stages of ``benchmarks/gpu_run.sh`` write them, one per profiled kernel, into ``ncu_NAME.tgz``).
Output (JSON): the share of the samples per stall reason, per opcode of the waiting instruction, and
the instructions with the most ``long_scoreboard`` samples (waits on a variable-latency result: a
global load, or a store still reading a register the instruction overwrites), each with the nearest
earlier load or store that its registers depend on and how many instructions earlier it was issued
(a linear look back through the listing, so a producer in an earlier loop iteration is not found).

    python benchmarks/ncu_stalls.py --out benchmarks/results/kla_ncu_stalls.json \\
        fwd=/tmp/ncu11/src_fwd.csv:11fb0b0:'{}' bwd=/tmp/ncu11/src_bwd.csv:11fb0b0:'{}'

Each argument is NAME=CSV:COMMIT:TUNE (TUNE: the kernels' private launch knobs as JSON).
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
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


def summarise(path: str, top: int = 8) -> dict:
    rows = list(csv.reader(open(path)))
    hdr = rows[1]
    ix = {h: i for i, h in enumerate(hdr)}
    data = [r for r in rows[2:] if len(r) >= len(hdr)]
    reasons = [h for h in hdr if h.startswith("stall_") and "Not Issued" not in h]
    src = [r[ix["Source"]] for r in data]
    samples = [int(r[ix["Warp Stall Sampling (All Samples)"]] or 0) for r in data]
    per_reason = collections.Counter()
    per_op = collections.Counter()
    for r, s, n in zip(data, src, samples):
        for h in reasons:
            per_reason[h[6:]] += int(r[ix[h]] or 0)
        per_op[_operands(s)[0].split(".")[0]] += n
    total = sum(per_reason.values())
    long_sb = [int(r[ix["stall_long_sb"]] or 0) for r in data]
    out = []
    for i in sorted(range(len(data)), key=lambda j: -long_sb[j])[:top]:
        op, dst, read = _operands(src[i])
        need, found = set(dst) | set(read), None
        for j in range(i - 1, max(-1, i - 4000), -1):
            op2, dst2, read2 = _operands(src[j])
            if op2.startswith(("LDG", "LDS", "LDL")) and need & set(dst2):
                found = {"producer": src[j].strip(), "instructions_earlier": i - j}
                break
            if op2.startswith(("STG", "STL", "STS")) and set(dst) & set(read2):
                found = {"producer": "register still read by " + src[j].strip(), "instructions_earlier": i - j}
                break
        out.append({"index": i, "instruction": src[i].strip(), "long_sb_share": long_sb[i] / total, **(found or {})})
    return {"samples": total,
            "by_reason": {k: v / total for k, v in per_reason.most_common() if v},
            "by_waiting_opcode": {k: v / total for k, v in per_op.most_common(10)},
            "top_long_scoreboard": out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("items", nargs="+", help="NAME=CSV:COMMIT:TUNE")
    ap.add_argument("--out", required=True)
    ap.add_argument("--note", default="")
    args = ap.parse_args()
    res = {"benchmark": "ncu_warp_stall_samples", "note": args.note, "profiles": {}}
    for item in args.items:
        name, _, rest = item.partition("=")
        path, commit, tune = rest.split(":", 2)
        res["profiles"][name] = {"commit": commit, "tune": json.loads(tune or "{}"), **summarise(path)}
        p = res["profiles"][name]
        print(f"{name:8s} {commit} {tune:60s} " + ", ".join(f"{k} {v:.1%}" for k, v in list(p["by_reason"].items())[:4]))
    with open(args.out, "w") as fh:
        json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()
