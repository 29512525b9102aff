"""Spark local[N] rows/s next to one process on the same machine (issue 15 target: Spark's time
at most 25% over the single-process time at 2 cores).

    python3 bench/bench_spark.py --model minilm.q8b --sst2 train.tsv [--n 20000] [--cores 2]

- single process: `Model(num_threads=CORES).encode(texts)` (model already open);
- Spark: `local[CORES]`, the texts cached in a DataFrame of `--partitions` partitions, then
  `with_embeddings(df, model).write.format("noop")` (computes every row, collects nothing), one
  thread per task (the default: spark.task.cpus = 1), so CORES tasks run side by side. Each
  timed Spark job includes its tasks' scheduling, Arrow transfer to and from the Python workers
  and the model lookups; the workers are started (and have opened the model) by a warm-up job,
  as they are in any job that scores more than one batch.
The two alternate, `--runs` times each; medians are reported. Run under the machine's CPU lock.
"""

import argparse
import csv
import os
import statistics
import sys
import time
from pathlib import Path

import q8bert


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--sst2", required=True)
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    with open(a.sst2, newline="", encoding="utf-8") as f:
        texts = [r[0] for r in list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:a.n + 1]]
    assert len(texts) == a.n

    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(Path(q8bert.__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")) if p)
    from pyspark.sql import SparkSession

    from q8bert.spark import with_embeddings

    spark = (SparkSession.builder.master(f"local[{a.cores}]").appName("q8bert-bench")
             .config("spark.ui.enabled", "false").config("spark.driver.memory", "2g").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    df = spark.createDataFrame(list(enumerate(texts)), "id long, text string").repartition(a.partitions).cache()
    assert df.count() == a.n
    model_path = os.path.abspath(a.model)
    # Warm-up: starts the Python workers and opens the model in each.
    with_embeddings(df.limit(4 * a.cores), model_path, batch_size=a.batch).write.format("noop").mode("overwrite").save()

    spark_t, single_t = [], []
    with q8bert.Model(model_path, num_threads=a.cores, truncate=True) as m:
        m.encode(texts[:256], batch_size=a.batch)
        for _ in range(a.runs):
            t0 = time.perf_counter()
            with_embeddings(df, model_path, batch_size=a.batch).write.format("noop").mode("overwrite").save()
            spark_t.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            m.encode(texts, batch_size=a.batch)
            single_t.append(time.perf_counter() - t0)
    spark.stop()
    s, p = statistics.median(spark_t), statistics.median(single_t)
    print(f"## {a.n} SST-2 sentences, {os.path.basename(a.model)}, batch {a.batch}, {a.cores} cores, "
          f"median of {a.runs} alternating runs")
    print("| | s | rows/s | time vs single process |")
    print("|---|---:|---:|---:|")
    print(f"| one process, `encode`, {a.cores} threads | {p:.2f} | {a.n / p:.0f} | 1.00x |")
    print(f"| Spark local[{a.cores}], {a.partitions} partitions, 1 thread per task | {s:.2f} | {a.n / s:.0f} | "
          f"{s / p:.2f}x ({100 * (s - p) / p:+.0f}%) |")
    print(f"(all runs: Spark {', '.join(f'{t:.2f}' for t in spark_t)}; single {', '.join(f'{t:.2f}' for t in single_t)})")


if __name__ == "__main__":
    sys.exit(main())
