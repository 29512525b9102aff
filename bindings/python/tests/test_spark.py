"""q8bert.spark on a real local[2] Spark (pyspark from PyPI, Java 17): 20,000 SST-2 sentences
(needs ../shared, see conftest) embedded and classified through Spark are bitwise the single-process
results; uneven and empty partitions; nulls and empty strings; a bad path or a corrupt model fails
with the library's message; the model file shipped with addFile; one model per worker process.

pyspark, pyarrow and Java are required: .ci/run installs them, and a missing one is an error here,
not a skip. Run with `-m spark` / `-m "not spark"` to select."""

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import q8bert

pytestmark = pytest.mark.spark

N_SST2 = 20_000


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession  # an ImportError fails the tests: pyspark is required

    assert shutil.which("java") or os.environ.get("JAVA_HOME"), "Spark needs Java (17): none on PATH or JAVA_HOME"
    # The Python workers run this interpreter and import this very copy of q8bert.
    os.environ["PYSPARK_PYTHON"] = sys.executable
    pkg_parent = str(Path(q8bert.__file__).resolve().parents[1])
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_parent, os.environ.get("PYTHONPATH")) if p)
    s = (SparkSession.builder.master("local[2]").appName("q8bert-tests")
         .config("spark.ui.enabled", "false")
         .config("spark.sql.shuffle.partitions", "4")
         .config("spark.sql.execution.arrow.maxRecordsPerBatch", "2000")
         .config("spark.driver.memory", "1g")
         .getOrCreate())
    s.sparkContext.setLogLevel("ERROR")
    yield s
    s.stop()


def texts_df(spark, rows, partitions):
    return spark.createDataFrame(rows, "id long, text string").repartition(partitions, "id")


def collect_sorted(df, cols):
    """The columns as Python lists (None for null), rows ordered by id; through Arrow, no pandas."""
    t = df.toArrow()
    t = t.take(np.argsort(np.asarray(t.column("id").to_pylist()), kind="stable"))
    return [t.column(c).to_pylist() for c in cols], t.column("id").to_pylist()


def as_matrix(lists):
    return np.array([np.asarray(v, dtype=np.float32) for v in lists], dtype=np.float32)


def test_sst2_through_spark_is_bitwise_the_single_process_run(spark, sst2, suite):
    from q8bert.spark import with_embeddings, with_predictions

    texts = sst2[:N_SST2]
    assert len(texts) == N_SST2
    embed_path = str(suite["dir"] / suite["embed_model"])
    cls_path = str(suite["dir"] / suite["classify_model"])
    with q8bert.Model(embed_path, truncate=True) as m:
        want_emb = m.encode(texts)
    with q8bert.Model(cls_path, truncate=True) as m:
        want_logits = m.predict(texts)
        want_labels = m.classify(texts)

    df = texts_df(spark, list(enumerate(texts)), 5)
    out = with_predictions(with_embeddings(df, embed_path), cls_path)
    (emb, labels, logits, text_back), ids = collect_sorted(out, ["embedding", "prediction", "logits", "text"])
    assert ids == list(range(N_SST2)) and text_back == texts
    np.testing.assert_array_equal(as_matrix(emb).view(np.uint32), want_emb.view(np.uint32))
    np.testing.assert_array_equal(as_matrix(logits).view(np.uint32), want_logits.view(np.uint32))
    assert labels == want_labels
    assert len(set(labels)) == 2, "a real classifier on real sentences gives both labels"


def test_uneven_and_empty_partitions(spark, sst2, suite):
    from q8bert.spark import with_embeddings

    sizes = [1, 0, 3000, 0, 17, 999, 0]
    rows, i = [], 0
    for p, size in enumerate(sizes):
        for _ in range(size):
            rows.append((p, (i, sst2[i])))
            i += 1
    rdd = spark.sparkContext.parallelize(rows, 3).partitionBy(len(sizes), lambda k: k).map(lambda kv: kv[1])
    df = spark.createDataFrame(rdd, "id long, text string")
    assert df.rdd.glom().map(len).collect() == sizes
    embed_path = str(suite["dir"] / suite["embed_model"])
    out = with_embeddings(df, embed_path, batch_size=16)
    assert out.rdd.glom().map(len).collect() == sizes, "rows moved between partitions"
    (emb,), ids = collect_sorted(out, ["embedding"])
    assert ids == list(range(sum(sizes)))
    with q8bert.Model(embed_path, truncate=True) as m:
        want = m.encode(sst2[:sum(sizes)])
    np.testing.assert_array_equal(as_matrix(emb).view(np.uint32), want.view(np.uint32))
    # A DataFrame with no rows at all.
    assert with_embeddings(df.limit(0), embed_path).count() == 0


def test_nulls_give_null_and_empty_strings_are_real_inputs(spark, suite):
    from q8bert.spark import with_embeddings, with_predictions

    rows = [(0, "good fun"), (1, None), (2, ""), (3, "dull"), (4, None), (5, "   ")]
    df = texts_df(spark, rows, 2)
    embed_path = str(suite["dir"] / suite["embed_model"])
    cls_path = str(suite["dir"] / suite["classify_model"])
    (emb, labels, logits), ids = collect_sorted(with_predictions(with_embeddings(df, embed_path), cls_path),
                                                ["embedding", "prediction", "logits"])
    assert ids == [0, 1, 2, 3, 4, 5]
    present = [0, 2, 3, 5]
    for i in (1, 4):
        assert emb[i] is None and labels[i] is None and logits[i] is None
    with q8bert.Model(embed_path, truncate=True) as m:
        want = m.encode([rows[i][1] for i in present])
    with q8bert.Model(cls_path, truncate=True) as m:
        want_logits = m.predict([rows[i][1] for i in present])
        want_labels = m.classify([rows[i][1] for i in present])
    np.testing.assert_array_equal(as_matrix([emb[i] for i in present]), want)
    np.testing.assert_array_equal(as_matrix([logits[i] for i in present]), want_logits)
    assert [labels[i] for i in present] == want_labels

    # Pairs: a row with either text null gives null.
    pdf = spark.createDataFrame([(0, "the movie", "was fun"), (1, "the plot", None), (2, None, "x"), (3, "", "")],
                                "id long, text string, text_b string")
    (labels, logits), ids = collect_sorted(with_predictions(pdf, cls_path, pair_col="text_b"), ["prediction", "logits"])
    assert labels[1] is None and labels[2] is None and logits[1] is None and logits[2] is None
    with q8bert.Model(cls_path, truncate=True) as m:
        want = m.predict(["the movie", ""], ["was fun", ""])
    np.testing.assert_array_equal(as_matrix([logits[0], logits[3]]), want)


def test_bad_path_and_corrupt_file_fail_with_the_library_message(spark, suite, tmp_path):
    from q8bert.spark import with_embeddings, with_predictions

    df = texts_df(spark, [(0, "a"), (1, "b")], 2)
    missing = str(tmp_path / "no-such-model.q8b")
    with pytest.raises(Exception) as e:
        with_embeddings(df, missing).collect()
    msg = str(e.value)
    assert "Q8bertError" in msg and "no-such-model.q8b" in msg and f"(status {q8bert.Status.IO})" in msg, msg[-2000:]

    corrupt = str(suite["dir"] / suite["corrupt_model"])
    with pytest.raises(Exception) as e:
        with_embeddings(df, corrupt).collect()
    msg = str(e.value)
    assert suite["corrupt"]["message"] in msg and f"(status {q8bert.Status.BAD_MAGIC})" in msg, msg[-2000:]
    # with_predictions reads the head on the driver when it can, so there it fails before any task.
    with pytest.raises(q8bert.Q8bertError) as e:
        with_predictions(df, corrupt)
    assert e.value.status == q8bert.Status.BAD_MAGIC
    # The wrong kind of model is a clear error too.
    with pytest.raises(Exception, match="needs an embedding model"):
        with_embeddings(df, str(suite["dir"] / suite["classify_model"])).collect()


def test_model_shipped_with_addfile_and_one_model_per_worker(spark, suite, sst2, tmp_path):
    from q8bert.spark import with_embeddings

    # A copy under a name that exists nowhere but in the job's files.
    shipped = tmp_path / "shipped-embed.q8b"
    shutil.copy(suite["dir"] / suite["embed_model"], shipped)
    spark.sparkContext.addFile(str(shipped))
    texts = sst2[:6000]
    df = texts_df(spark, list(enumerate(texts)), 4)
    out = with_embeddings(df, "shipped-embed.q8b", batch_size=64)
    (emb,), ids = collect_sorted(out, ["embedding"])
    with q8bert.Model(shipped, truncate=True) as m:
        want = m.encode(texts)
    np.testing.assert_array_equal(as_matrix(emb), want)

    # Each worker process opened the shipped model once for all its batches and tasks
    # (4 partitions x 2000-row Arrow batches on 2 workers); its thread count is the task's CPUs (1).
    # Asked from a mapInArrow job too, so that Spark hands it the same (reused) Python workers.
    def report(batches):
        import os as _os
        import json as _json
        import pyarrow as _pa
        from q8bert import spark as qs
        for _ in batches:
            pass
        yield _pa.RecordBatch.from_pydict({"pid": [_os.getpid()], "opened": [_json.dumps(qs.opened_models())]})

    import json
    got = spark.range(0, 8, 1, 8).mapInArrow(report, "pid long, opened string").collect()
    reports = {r.pid: json.loads(r.opened) for r in got}
    shipped_opens = [[o for o in opened if o[0].endswith("shipped-embed.q8b")] for opened in reports.values()]
    assert any(shipped_opens), f"no worker reports the shipped model: {reports}"
    for opens in shipped_opens:
        assert len(opens) <= 1, f"a worker opened the model more than once: {opens}"
        for _, threads in opens:
            assert threads == 1
