"""Batch scoring on Apache Spark: add an embedding or a prediction column to a DataFrame.

    from q8bert.spark import with_embeddings, with_predictions
    spark.sparkContext.addFile("minilm.q8b")                # or a path every executor can read
    df = with_embeddings(df, "minilm.q8b", input_col="text", output_col="embedding")

pyspark (>= 3.4, with its "sql" extra: pyarrow, pandas) is an optional dependency of q8bert
(``pip install q8bert[spark]``), imported only here. The work runs in ``DataFrame.mapInArrow``: each Arrow record batch of
a partition goes to ``Model.encode`` / ``Model.predict`` as one list of strings, and the result
column comes back as Arrow arrays, with no pandas conversion on either side.

- **One model per Python worker process**: opened on the first batch that needs it, cached for
  every later batch and task that this (reused) worker runs, freed when the worker exits.
- **Where the model comes from**: ``model_path`` is looked up on the executor as given (a shared
  path: NFS, a local copy on every node); if that file does not exist there, as the file of the
  same name shipped with the job (``SparkContext.addFile(path)`` or ``spark-submit --files``,
  found through ``SparkFiles.get``). If neither exists the library's own "cannot open" error fails
  the task, like a corrupt file does (``Q8bertError`` with status and message in the task error).
- **Threads**: ``num_threads`` per task; default: the task's CPUs (``spark.task.cpus``, 1 unless
  set), so ``local[N]`` / N executor cores run N single-threaded models side by side.
- **Nulls and empty strings**: a null text gives a null output (embedding / label / logits) and
  is not sent to the model; an empty string is a real input (the model sees ``[CLS] [SEP]``) and
  gets a real output. For pairs, a row with either text null gives null.
- Results are bitwise the same as ``Model.encode`` / ``Model.predict`` in one process: a text's
  output does not depend on which other texts share its batch (tests/test_spark.py checks this on
  20,000 SST-2 sentences).
"""

from __future__ import annotations

import atexit
import os
import threading
from typing import Dict, List, Optional, Tuple

import numpy as np

from . import HEAD_CLASSIFICATION, HEAD_EMBEDDING, HEAD_REGRESSION, Model, Q8bertError, Status

__all__ = ["with_embeddings", "with_predictions", "resolve_model_path", "get_model", "opened_models"]

_models: Dict[Tuple, Model] = {}
_models_lock = threading.Lock()
_open_log: List[Tuple[str, int]] = []  # every open in this process: (path, threads)


def _close_all() -> None:
    with _models_lock:
        for m in _models.values():
            m.close()
        _models.clear()


atexit.register(_close_all)


def resolve_model_path(model_path: str) -> str:
    """On an executor: ``model_path`` if that file exists, else the shipped file of that name
    (``SparkFiles.get``), else ``model_path`` unchanged (opening it then fails with the
    library's message)."""
    if os.path.exists(model_path):
        return model_path
    try:
        from pyspark import SparkFiles
        shipped = SparkFiles.get(os.path.basename(model_path))
        if os.path.exists(shipped):
            return shipped
    except Exception:  # no SparkFiles root (not in a Spark worker): fall through
        pass
    return model_path


def _task_cpus() -> int:
    try:
        from pyspark import TaskContext
        tc = TaskContext.get()
        if tc is not None:
            return max(1, int(tc.cpus()))
    except Exception:
        pass
    return 1


def get_model(model_path: str, num_threads: Optional[int] = None, truncate: bool = True,
              max_seq_len: int = 0) -> Model:
    """This process's model for these settings: opened once, then reused (closed at exit)."""
    path = resolve_model_path(model_path)
    threads = _task_cpus() if num_threads is None else num_threads
    key = (os.path.realpath(path) if os.path.exists(path) else path, threads, truncate, max_seq_len)
    with _models_lock:
        m = _models.get(key)
        if m is None:
            m = Model(path, num_threads=threads, truncate=truncate, max_seq_len=max_seq_len)
            _models[key] = m
            _open_log.append((path, threads))
        return m


def opened_models() -> List[Tuple[str, int]]:
    """Every model this process opened through :func:`get_model`, as (path, threads): one entry
    per open, so a model reused across batches and tasks appears once."""
    with _models_lock:
        return list(_open_log)


def _pa():
    import pyarrow as pa
    return pa


def _texts(batch, col: str):
    """(the non-null texts, their row positions or None when there are no nulls)."""
    arr = batch.column(batch.schema.get_field_index(col))
    values = arr.to_pylist()
    if arr.null_count == 0:
        return values, None
    keep = [i for i, v in enumerate(values) if v is not None]
    return [values[i] for i in keep], keep


def _float_lists(rows: np.ndarray, n: int, keep, dim: int):
    """float32 [k, dim] -> Arrow list<float> of n rows (null where a row was not computed)."""
    pa = _pa()
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    values = pa.array(rows.reshape(-1), type=pa.float32())
    if keep is None:
        offsets = pa.array(np.arange(0, (n + 1) * dim, dim, dtype=np.int32))
        return pa.ListArray.from_arrays(offsets, values)
    valid = np.zeros(n, dtype=bool)
    valid[keep] = True
    lens = np.where(valid, dim, 0).astype(np.int32)
    offs = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(lens, out=offs[1:])
    return pa.ListArray.from_arrays(pa.array(offs), values, mask=pa.array(~valid))


def _scatter_strings(values, n: int, keep):
    pa = _pa()
    if keep is None:
        return pa.array(values, type=pa.string())
    full = [None] * n
    for i, v in zip(keep, values):
        full[i] = v
    return pa.array(full, type=pa.string())


def _scatter_floats(values: np.ndarray, n: int, keep):
    pa = _pa()
    if keep is None:
        return pa.array(values, type=pa.float32())
    full = np.zeros(n, dtype=np.float32)
    valid = np.zeros(n, dtype=bool)
    full[keep] = values
    valid[keep] = True
    return pa.array(full, type=pa.float32(), mask=~valid)


def _append(batch, names, arrays):
    pa = _pa()
    cols = list(batch.columns) + list(arrays)
    return pa.RecordBatch.from_arrays(cols, names=list(batch.schema.names) + list(names))


def with_embeddings(df, model_path: str, input_col: str = "text", output_col: str = "embedding", *,
                    batch_size: int = 32, normalize_embeddings: bool = False, num_threads: Optional[int] = None,
                    truncate: bool = True, max_seq_len: int = 0):
    """``df`` with ``output_col`` (array<float>) added: ``Model.encode`` of ``input_col``.

    Args:
        df: a DataFrame with a string column ``input_col``.
        model_path: an embedding ``.q8b``: a path every executor can read, or the name of a
            file shipped with ``addFile`` / ``--files`` (see the module docs).
        batch_size, normalize_embeddings: as ``Model.encode``.
        num_threads: library threads per task; None = the task's CPUs (``spark.task.cpus``).
        truncate: cut over-long texts (default True: one long review should not fail a job).
        max_seq_len: token limit; 0 = the model's.
    """
    from pyspark.sql.types import ArrayType, FloatType, StructField, StructType

    schema = StructType(list(df.schema.fields) + [StructField(output_col, ArrayType(FloatType(), False), True)])

    def run(batches):
        model = None
        for batch in batches:
            if model is None:
                model = get_model(model_path, num_threads, truncate, max_seq_len)
                if model.info.head_kind != HEAD_EMBEDDING:
                    raise Q8bertError(Status.UNSUPPORTED_OPERATION,
                                      f"{model_path} is a {model.info.head} model; with_embeddings needs an embedding model")
            texts, keep = _texts(batch, input_col)
            emb = model.encode(texts, batch_size=batch_size, normalize_embeddings=normalize_embeddings)
            col = _float_lists(emb, batch.num_rows, keep, model.info.output_dim)
            yield _append(batch, [output_col], [col])

    return df.mapInArrow(run, schema)


def with_predictions(df, model_path: str, input_col: str = "text", output_col: str = "prediction", *,
                     pair_col: Optional[str] = None, logits_col: Optional[str] = "logits", batch_size: int = 32,
                     num_threads: Optional[int] = None, truncate: bool = True, max_seq_len: int = 0,
                     head: Optional[str] = None):
    """``df`` with a prediction column added (``Model.predict`` of ``input_col``, with
    ``pair_col`` as the second texts if given).

    For a classification model ``output_col`` is the label name (string) and ``logits_col``
    (unless None) the logits (array<float>); for a regression model ``output_col`` is the score
    (float) and ``logits_col`` is not added. Other arguments as :func:`with_embeddings`.

    The column types depend on the model's head, which is read from the file on the driver when
    the driver can see it (``model_path`` itself or the ``addFile`` copy); otherwise ``head``
    ("classification" or "regression") says it, default classification. A task whose model
    turns out to have another head fails with a clear error.
    """
    from pyspark.sql.types import ArrayType, FloatType, StringType, StructField, StructType

    heads = {"classification": HEAD_CLASSIFICATION, "regression": HEAD_REGRESSION}
    if head is not None and head not in heads:
        raise ValueError(f"head must be 'classification' or 'regression', not {head!r}")
    head = heads[head or "classification"]
    local = resolve_model_path(model_path)
    if os.path.exists(local):
        with Model(local, num_threads=1) as probe:
            head = probe.info.head_kind
    if head not in (HEAD_CLASSIFICATION, HEAD_REGRESSION):
        raise Q8bertError(Status.UNSUPPORTED_OPERATION,
                          f"{model_path} is not a classification or regression model; use with_embeddings")
    fields = list(df.schema.fields)
    if head == HEAD_CLASSIFICATION:
        fields.append(StructField(output_col, StringType(), True))
        if logits_col:
            fields.append(StructField(logits_col, ArrayType(FloatType(), False), True))
    else:
        fields.append(StructField(output_col, FloatType(), True))
    schema = StructType(fields)

    def run(batches):
        model = None
        for batch in batches:
            if model is None:
                model = get_model(model_path, num_threads, truncate, max_seq_len)
                if model.info.head_kind != head:
                    raise Q8bertError(Status.UNSUPPORTED_OPERATION,
                                      f"{model_path} on this executor is a {model.info.head} model, the DataFrame's "
                                      f"schema was declared for {'classification' if head == HEAD_CLASSIFICATION else 'regression'}")
            texts, keep = _texts(batch, input_col)
            pairs = None
            if pair_col is not None:
                pair_values = batch.column(batch.schema.get_field_index(pair_col)).to_pylist()
                rows = range(batch.num_rows) if keep is None else keep
                both = [i for i in rows if pair_values[i] is not None]
                if len(both) != len(rows):
                    keep = both
                    all_texts = batch.column(batch.schema.get_field_index(input_col)).to_pylist()
                    texts = [all_texts[i] for i in keep]
                pairs = [pair_values[i] for i in (range(batch.num_rows) if keep is None else keep)]
            logits = model.predict(texts, pairs, batch_size=batch_size)
            n = batch.num_rows
            if head == HEAD_CLASSIFICATION:
                labels = model.labels
                names = [labels[i] for i in logits.argmax(axis=1).tolist()] if len(logits) else []
                cols, out_names = [_scatter_strings(names, n, keep)], [output_col]
                if logits_col:
                    cols.append(_float_lists(logits, n, keep, logits.shape[1]))
                    out_names.append(logits_col)
            else:
                cols, out_names = [_scatter_floats(logits[:, 0], n, keep)], [output_col]
            yield _append(batch, out_names, cols)

    return df.mapInArrow(run, schema)
