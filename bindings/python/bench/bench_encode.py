"""Python vs the C library on the same texts, batches and threads (issue 15 targets).

    python3 bench/bench_encode.py --c-bench BIN --embed MODEL.q8b --tiny TINY.q8b --sst2 train.tsv

1. per-call overhead, batch of 32 SST-2 sentences, 1 thread, on TINY (a small model, so the call
   path shows): median µs of `c_batches ... calls` (the C call, buffers reused) next to
   `Model.run_text(texts)` and `Model.encode(texts)` / `Model.predict(texts)` (one batch), all
   in this run;
2. throughput: `Model.encode` of N SST-2 sentences (batch 32, THREADS threads) on MODEL against
   `c_batches ... pass` over the very same batches (the texts written in the order encode sorts
   them), alternating C and Python passes so that machine noise hits both; medians reported.
Run it under the machine's CPU lock, nothing else heavy at the same time.
"""

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import q8bert


def sst2(path, n):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    texts = [r[0] for r in rows[1:n + 1]]
    assert len(texts) == n and all("\n" not in t for t in texts)
    return texts


def median_us(fn, calls):
    for _ in range(max(1, calls // 10)):
        fn()
    t = []
    for _ in range(calls):
        t0 = time.perf_counter_ns()
        fn()
        t.append((time.perf_counter_ns() - t0) / 1e3)
    return statistics.median(t)


def per_call(a, first, what, tmp):
    """Per-call overhead, one batch `first`, 1 thread (table 1)."""
    one = os.path.join(tmp, "batch.txt")
    with open(one, "w", encoding="utf-8") as f:
        f.write("\n".join(first) + "\n")
    c_out = subprocess.run([a.c_bench, a.tiny, one, str(a.batch), "1", "calls", str(a.calls)],
                           check=True, capture_output=True, text=True).stdout.split()
    with q8bert.Model(a.tiny, num_threads=1, truncate=True) as m:
        # In-process peers, every argument prepared once: the C call as the C hot path makes it
        # (q8bert._calls.run_into into a preallocated array: one Python-to-C call), and the bare
        # ctypes call. Each way runs blocks of consecutive calls, the blocks rotating over
        # ROUNDS rounds so that machine noise hits all of them; reported: the median over all
        # of a way's calls, and the median of its block medians minus the C call's in the same
        # round (the overhead).
        lib, h = q8bert._lib, m._handle
        packed = q8bert._Packed(first)
        out = np.empty((len(first), m.info.output_dim), dtype=np.float32)
        oa, osz = out.ctypes.data, out.size
        batched_name = "encode" if m.info.head == "embedding" else "predict"
        batched_fn = m.encode if batched_name == "encode" else m.predict
        fns = {"ctypes": lambda: lib.q8bert_run_text(h, packed.addr, None, len(first), oa, osz),
               "run_text": lambda: m.run_text(first),
               batched_name: lambda: batched_fn(first, batch_size=a.batch)}
        if q8bert._c_run_into is not None:
            guard, run_into = m._guard, q8bert._c_run_into
            fns = {"c_call": lambda: run_into(guard, first, None, out), **fns}
        base = "c_call" if "c_call" in fns else "ctypes"
        rounds, block = 10, max(1, a.calls // 10)
        # The calling thread's CPU time (the library runs on it with 1 thread): time the thread
        # was descheduled on this shared machine is not counted; cache effects are.
        clock = time.thread_time_ns if a.clock == "thread" else time.perf_counter_ns
        times = {k: [] for k in fns}
        block_medians = {k: [] for k in fns}
        for f in fns.values():
            for _ in range(block // 2):
                f()
        for r in range(rounds):
            order = list(fns.items())
            order = order[r % len(order):] + order[:r % len(order)]
            for k, f in order:
                t = []
                for _ in range(block):
                    t0 = clock()
                    f()
                    t.append((clock() - t0) / 1e3)
                times[k] += t
                block_medians[k].append(statistics.median(t))
    med = {k: statistics.median(v) for k, v in times.items()}
    over = {k: statistics.median([x - y for x, y in zip(block_medians[k], block_medians[base])]) for k in fns}
    c_call = float(c_out[2 if a.clock == "thread" else 1])
    label = {"c_call": "Python, the C call (`q8bert._calls.run_into`, output preallocated)",
             "ctypes": "Python, bare ctypes call, arguments prepared once",
             "run_text": "Python `run_text(texts)`",
             batched_name: f"Python `{batched_name}(texts, batch_size={a.batch})`"}
    print(f"## per-call, {a.batch} {what} per call, 1 thread, {os.path.basename(a.tiny)}, "
          f"{rounds} rounds x {block} calls per way, {a.clock} time")
    print(f"| call | median µs | over the C program (separate process) | over the in-process C call ({base}) |")
    print("|---|---:|---:|---:|")
    print(f"| C program, `q8bert_run_text` | {c_call:.2f} | | |")
    for k in fns:
        print(f"| {label[k]} | {med[k]:.2f} | {med[k] - c_call:+.2f} µs | {'' if k == base else f'{over[k]:+.2f} µs'} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--c-bench", required=True)
    ap.add_argument("--embed", required=True, help="embedding model for the throughput pass (MiniLM)")
    ap.add_argument("--tiny", required=True, help="small model for the per-call overhead")
    ap.add_argument("--sst2", required=True)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--passes", type=int, default=5)
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--clock", choices=["thread", "wall"], default="thread",
                    help="per-call timing: the thread's CPU time (default) or wall time")
    a = ap.parse_args()
    texts = sst2(a.sst2, a.n)
    tmp = tempfile.mkdtemp()

    # 1. per-call overhead, 32 texts, 1 thread: real sentences (~1 ms calls), and short texts
    # (8 tokens each: the call path is a larger share of the time)
    per_call(a, texts[:a.batch], "SST-2 sentences", tmp)
    per_call(a, ["a gripping, funny film."] * a.batch, "short texts (8 tokens)", tmp)

    # 2. throughput on the same batches
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    order = np.argsort(-lengths, kind="stable")  # exactly Model.encode's order
    ordered = os.path.join(tmp, "ordered.txt")
    with open(ordered, "w", encoding="utf-8") as f:
        f.write("\n".join(texts[i] for i in order) + "\n")
    c_times, py_times, raw_times = [], [], []
    with q8bert.Model(a.embed, num_threads=a.threads, truncate=True) as m:
        m.encode(texts[:256], batch_size=a.batch)  # warm-up
        # In-process peer: the same batches through bare ctypes calls, all arguments prepared.
        lib, h = q8bert._lib, m._handle
        sorted_texts = [texts[i] for i in order]
        batches = [q8bert._Packed(sorted_texts[i:i + a.batch]) for i in range(0, a.n, a.batch)]
        sizes = [len(sorted_texts[i:i + a.batch]) for i in range(0, a.n, a.batch)]
        out = np.empty((a.batch, m.info.output_dim), dtype=np.float32)
        oa, osz = out.ctypes.data, out.size
        for _ in range(a.passes):
            t0 = time.perf_counter()
            bad = 0
            for p, k in zip(batches, sizes):
                bad |= lib.q8bert_run_text(h, p.addr, None, k, oa, osz)
            raw_times.append(time.perf_counter() - t0)
            assert bad == 0, q8bert._lib.q8bert_last_error()
            res = subprocess.run([a.c_bench, a.embed, ordered, str(a.batch), str(a.threads), "pass", "1"],
                                 check=True, capture_output=True, text=True).stdout.split()
            c_times.append(float(res[1]))
            t0 = time.perf_counter()
            m.encode(texts, batch_size=a.batch)
            py_times.append(time.perf_counter() - t0)
    c, py, raw = statistics.median(c_times), statistics.median(py_times), statistics.median(raw_times)
    print(f"\n## encode throughput, {a.n} SST-2 sentences, batch {a.batch}, {a.threads} threads, "
          f"{os.path.basename(a.embed)}, median of {a.passes} alternating passes")
    print("| | s per pass | sentences/s | vs C |")
    print("|---|---:|---:|---:|")
    print(f"| C `q8bert_run_text` over the sorted batches | {c:.3f} | {a.n / c:.0f} | 100% |")
    print(f"| Python, bare ctypes calls over the same batches (in-process peer) | {raw:.3f} | {a.n / raw:.0f} | {100 * c / raw:.1f}% |")
    print(f"| Python `Model.encode` | {py:.3f} | {a.n / py:.0f} | {100 * c / py:.1f}% ({100 * raw / py:.1f}% of the in-process peer) |")
    print(f"(all passes: C {', '.join(f'{t:.3f}' for t in c_times)}; bare ctypes {', '.join(f'{t:.3f}' for t in raw_times)}; "
          f"Python {', '.join(f'{t:.3f}' for t in py_times)})")


if __name__ == "__main__":
    sys.exit(main())
