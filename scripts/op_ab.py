#!/usr/bin/env python3
"""Per-op A/B of two `bench_e2e` builds (or one build with and without a flag), alternating runs
so that a noisy machine drifts equally on both sides. Needs builds with `--features op-timing`.

    python3 scripts/op_ab.py ROUNDS "SHAPE BATCH SEQ THREADS" BIN_A BIN_B [--b-args=--int8-attention]

Prints the mean ms per op of each side and B/A; docs/PERFORMANCE.md tables come from it.
"""
import argparse, collections, re, shlex, subprocess

ap = argparse.ArgumentParser()
ap.add_argument("rounds", type=int)
ap.add_argument("point", help='"shape batch seq threads", e.g. "minilm 1 128 1"')
ap.add_argument("bin_a")
ap.add_argument("bin_b")
ap.add_argument("--a-args", default="")
ap.add_argument("--b-args", default="")
ap.add_argument("--min-time-ms", default="2500")
a = ap.parse_args()
shape, batch, seq, threads = a.point.split()
sides = [(a.bin_a, shlex.split(a.a_args)), (a.bin_b, shlex.split(a.b_args))]
acc = [collections.defaultdict(list), collections.defaultdict(list)]
for _ in range(a.rounds):
    for i, (exe, extra) in enumerate(sides):
        p = subprocess.run([exe, "--shape", shape, "--batch", batch, "--seq", seq, "--threads", threads,
                            "--min-time-ms", a.min_time_ms, "--profile-ops", *extra],
                           capture_output=True, text=True, check=True)
        for line in (p.stdout + p.stderr).splitlines():
            m = re.match(r"\s+(.+?)\s+([0-9.]+) ms/run", line)
            if m:
                acc[i][m.group(1)].append(float(m.group(2)))
            m = re.search(r'"median_ms": ([0-9.]+)', line)
            if m:
                acc[i]["(median wall)"].append(float(m.group(1)))
mean = lambda v: sum(v) / len(v)  # noqa: E731
print(f"{a.point}: A = {a.bin_a} {a.a_args} | B = {a.bin_b} {a.b_args}")
for op in acc[0]:
    va, vb = mean(acc[0][op]), mean(acc[1][op])
    print(f"  {op:<26} {va:9.2f} {vb:9.2f}   {vb / va if va else float('nan'):.2f}x")
ta, tb = (sum(mean(v) for k, v in s.items() if k != "(median wall)") for s in acc)
print(f"  {'all ops':<26} {ta:9.2f} {tb:9.2f}   {tb / ta:.2f}x")
