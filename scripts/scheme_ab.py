#!/usr/bin/env python3
"""Alternating A/B latency of two quantization schemes (or any two `bench_e2e` flag sets) in
one run, so that a noisy shared machine drifts equally on both sides.

    python3 scripts/scheme_ab.py [--rounds 6] [--points "bert-base 1 128 1,minilm 1 128 1"]
        [--a-args ""] [--b-args "--per-token"]

Defaults compare the paper's scheme (per-tensor weights, static input scales) with the per-token
scheme (per-channel weights, per-row input scales; `trainer quantize`'s default). Each round
runs A then B (the order flips every round) for --min-time-ms each; prints per point the median
of the per-round B/A ratios and the medians of each side. Take the machine for the whole run:
`flock /tmp/q8bert-cpu.lock python3 scripts/scheme_ab.py`, with nothing else running.
"""
import argparse
import json
import os
import shlex
import statistics
import subprocess

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

ap = argparse.ArgumentParser()
ap.add_argument("--rounds", type=int, default=6)
ap.add_argument("--points", default="bert-base 1 128 1,minilm 1 128 1")
ap.add_argument("--a-args", default="")
ap.add_argument("--b-args", default="--per-token")
ap.add_argument("--min-time-ms", default="2000")
a = ap.parse_args()

subprocess.check_call(["cargo", "build", "--release", "--quiet", "--example", "bench_e2e"], cwd=ROOT)
exe = os.path.join(ROOT, "target", "release", "examples", "bench_e2e")


def run(point, extra):
    shape, batch, seq, threads = point.split()
    out = subprocess.run([exe, "--shape", shape, "--batch", batch, "--seq", seq, "--threads", threads,
                          "--min-time-ms", a.min_time_ms, *shlex.split(extra)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


print(f"A = [{a.a_args or 'default'}], B = [{a.b_args}], {a.rounds} alternating rounds per point")
print("| point | kernel | A median ms | B median ms | B/A (median of per-round ratios) | per-round B/A |")
print("|---|---|---|---|---|---|")
for point in a.points.split(","):
    point = point.strip()
    run(point, a.a_args), run(point, a.b_args)  # build the cached models, warm the page cache
    ta, tb, ratios = [], [], []
    kernel = ""
    for r in range(a.rounds):
        order = [("a", a.a_args), ("b", a.b_args)]
        if r % 2:
            order.reverse()
        got = {}
        for side, extra in order:
            j = run(point, extra)
            got[side] = j["median_ms"]
            kernel = j["kernel"]
        ta.append(got["a"])
        tb.append(got["b"])
        ratios.append(got["b"] / got["a"])
    print(f"| {point} | {kernel} | {statistics.median(ta):.2f} | {statistics.median(tb):.2f} | "
          f"**{statistics.median(ratios):.3f}** | {' '.join(f'{x:.3f}' for x in ratios)} |", flush=True)
