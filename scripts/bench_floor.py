#!/usr/bin/env python3
"""End-to-end latency as a fraction of the machine's int8 floor: the time the int8 GEMM work of
one forward pass would take at the `vpdpbusd` (or `sdot`/`smmla`) peak measured in the same run,
and at the AMX `tdpbssd` peak where the CPU has tiles (one table per probe).

    python3 scripts/bench_floor.py [--points bert-base:8x128:1,bert-base:1x128:1] [--rounds 3]

Per round and point it runs the peak probe of `cargo bench --bench gemm` (register-only
dot-product chains, one thread) and then `bench_e2e` (default per-token pack), back to back
under /tmp/q8bert-build.lock. fraction = int8 ops / (peak x threads x median time); 1.0 would
be every core issuing dot products every cycle with nothing else to do. Prints a markdown table
(medians over rounds). Builds both binaries first (release, under the lock).
"""
import argparse
import fcntl
import glob
import json
import os
import re
import statistics
import subprocess

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
LOCK = "/tmp/q8bert-build.lock"
SHAPES = {"bert-base": (12, 768, 3072), "minilm": (6, 384, 1536)}


def int8_ops(shape, batch, seq):
    layers, h, inter = SHAPES[shape]
    return 2 * batch * seq * layers * (4 * h * h + 2 * h * inter)


def locked(cmd, **kw):
    with open(LOCK, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", default="bert-base:1x128:1,bert-base:8x128:1,bert-base:8x128:2,minilm:8x128:1")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--extra", default="--per-token", help="bench_e2e arguments (default: the per-token pack)")
    a = ap.parse_args()
    locked(["cargo", "build", "--release", "--quiet", "--example", "bench_e2e"], cwd=ROOT)
    out = locked(["cargo", "bench", "--bench", "gemm", "--no-run", "--message-format=json"], cwd=ROOT).stdout
    gemm = [json.loads(l)["executable"] for l in out.splitlines()
            if '"executable":"' in l and json.loads(l).get("target", {}).get("name") == "gemm"][-1]
    e2e = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "examples", "bench_e2e")
    rows = {}
    for _ in range(a.rounds):
        for p in a.points.split(","):
            shape, bs, threads = p.split(":")
            batch, seq = map(int, bs.split("x"))
            env = dict(os.environ, GEMM_SHAPES="16,64,16", GEMM_KERNELS="scalar")
            probe = locked([gemm, "--summary-only"], env=env).stdout
            peaks = {k: float(g) for k, g in re.findall(r"peak probe (\S+)\s.*?([0-9.]+) GOPS", probe)}
            if not peaks:
                raise SystemExit("no int8 peak probe on this CPU:\n" + probe)
            r = locked([e2e, "--shape", shape, "--batch", str(batch), "--seq", str(seq), "--threads", threads,
                        "--min-time-ms", "2000", *a.extra.split()])
            ms = json.loads(r.stdout.strip().splitlines()[-1])["median_ms"]
            for kind, peak in peaks.items():
                frac = int8_ops(shape, batch, seq) / (peak * 1e9 * int(threads) * ms * 1e-3)
                rows.setdefault((kind, p), []).append((peak, ms, frac, kind))
    # One table per probe: the vpdpbusd floor (the measure) and, where the CPU has
    # tiles, the AMX tdpbssd floor (what the AMX kernel could reach).
    for probe_kind in dict.fromkeys(k for k, _ in rows):
        print(f"\n| point | peak probe ({probe_kind}, GOPS per core) | q8bert ms | int8 GEMM ops | fraction of the floor |")
        print("|---|---:|---:|---:|---:|")
        for (kind, p), v in rows.items():
            if kind != probe_kind:
                continue
            shape, bs, threads = p.split(":")
            batch, seq = map(int, bs.split("x"))
            med = lambda i: statistics.median(x[i] for x in v)
            print(f"| {shape} {bs}, {threads}T | {med(0):.0f} | {med(1):.1f} | {int8_ops(shape, batch, seq) / 1e9:.1f} G | "
                  f"{med(2):.2f} ({', '.join(f'{x[2]:.2f}' for x in v)}) |")


if __name__ == "__main__":
    main()
