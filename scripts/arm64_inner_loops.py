#!/usr/bin/env python3
"""The GEMM inner loops of an aarch64 libq8bert.so, counted from its disassembly (docs/ARM64.md).

    /usr/bin/cargo build --release -p q8bert-capi --target aarch64-unknown-linux-gnu   # RUSTC=/usr/bin/rustc
    python3 scripts/arm64_inner_loops.py target-aarch64/aarch64-unknown-linux-gnu/release/libq8bert.so

A loop is a backward branch and the instructions from its target to it; printed are the innermost
loops (no backward branch inside) that hold >= 16 int8 MAC instructions, with int8 MACs per
instruction against the instruction's own (sdot 16, smmla 32, smull/smlal 8 per 128-bit vector).
"""
import collections
import re
import subprocess
import sys

MACS = {"sdot": 16, "smmla": 32, "smull": 8, "smull2": 8, "smlal": 8, "smlal2": 8}
LINE = re.compile(r"^\s*([0-9a-f]+):\s+(\S+)\s*(.*)$")
BRANCH = re.compile(r"^(b|b\.\w+|cbz|cbnz|tbz|tbnz)$")


def main(path):
    dis = subprocess.run(["aarch64-linux-gnu-objdump", "-d", "--no-show-raw-insn", path],
                         check=True, capture_output=True, text=True).stdout
    ins = [(int(m[1], 16), m[2], m[3]) for m in map(LINE.match, dis.splitlines()) if m]
    at = {a: i for i, (a, _, _) in enumerate(ins)}
    seen = set()
    print("| start | instructions | MAC instructions | int8 MACs / instruction | of ideal | mix |")
    print("|---|---:|---:|---:|---:|---|")
    for i, (addr, op, args) in enumerate(ins):
        target = re.search(r"\b([0-9a-f]+) <", args)
        if not BRANCH.match(op) or not target or int(target[1], 16) >= addr or int(target[1], 16) not in at:
            continue
        body = ins[at[int(target[1], 16)]:i + 1]
        inner = all(not (BRANCH.match(o) and re.search(r"\b([0-9a-f]+) <", a) and int(re.search(r"\b([0-9a-f]+) <", a)[1], 16) < x)
                    for x, o, a in body[:-1])
        mac_ops = [o for _, o, _ in body if o in MACS]
        if not inner or len(mac_ops) < 16 or body[0][0] in seen:
            continue
        seen.add(body[0][0])
        macs = sum(MACS[o] for o in mac_ops)
        kind = collections.Counter(mac_ops).most_common(1)[0][0]
        ideal = MACS[kind] if kind not in ("smull", "smull2", "smlal", "smlal2") else 8
        mix = ", ".join(f"{n} {o}" for o, n in collections.Counter(o for _, o, _ in body).most_common())
        print(f"| {body[0][0]:#x} | {len(body)} | {len(mac_ops)} | {macs / len(body):.1f} | "
              f"{macs / len(body) / ideal:.2f} of {ideal} | {mix} |")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
