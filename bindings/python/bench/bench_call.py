"""python3 bench/bench_call.py MODEL.q8b [CALLS]: median µs of one short-text classification per call."""
import statistics
import sys
import time

import q8bert

calls = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
with q8bert.Model(sys.argv[1], num_threads=1) as m:
    texts = ["a gripping, funny film."]
    for _ in range(calls // 10):
        m.run_text(texts)
    times = []
    for _ in range(calls):
        t0 = time.perf_counter_ns()
        m.run_text(texts)
        times.append((time.perf_counter_ns() - t0) / 1e3)
    print(f"python {statistics.median(times):.2f}")
