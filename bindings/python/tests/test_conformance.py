"""The binding conformance suite ($Q8BERT_CONFORMANCE_DIR, from `cargo run --example
make_conformance_model -- DIR`): outputs bit-equal to the Rust API's, the library's errors as
Q8bertError, and no leak over repeated open/close."""

import gc
import os
import threading
from pathlib import Path

import numpy as np
import pytest

import q8bert


def bits(hexes):
    return np.array([int(h, 16) for h in hexes], dtype=np.uint32)


def test_version(suite):
    assert q8bert.version() == suite["version"]


def test_outputs_bit_exact(suite):
    with q8bert.Model(suite["dir"] / suite["classify_model"]) as cls, \
            q8bert.Model(suite["dir"] / suite["embed_model"]) as emb:
        assert cls.labels == suite["labels"]
        for text, tokens in zip(suite["texts"], suite["tokens"]):
            assert cls.tokenize(text).tolist() == tokens
        logits = cls.predict(suite["texts"])
        vecs = emb.embed(suite["texts"])
        # The batched, length-sorted paths give the same bits as one call per suite.
        np.testing.assert_array_equal(cls.predict(suite["texts"], batch_size=2), logits)
        np.testing.assert_array_equal(emb.encode(suite["texts"], batch_size=4), vecs)
        assert cls.classify(suite["texts"]) == [suite["labels"][int(r.argmax())] for r in logits]
        assert logits.dtype == np.float32 and logits.shape == (len(suite["texts"]), len(suite["labels"]))
        assert vecs.shape[1] == suite["hidden_size"]
        for i in range(len(suite["texts"])):
            np.testing.assert_array_equal(logits[i].view(np.uint32), bits(suite["classify"][i]))
            np.testing.assert_array_equal(vecs[i].view(np.uint32), bits(suite["embed"][i]))
        r = suite["run"]
        ids = np.array(r["ids"]).reshape(r["batch"], r["seq_len"])
        out = cls.run(ids, attention_mask=np.array(r["mask"]).reshape(ids.shape))
        np.testing.assert_array_equal(out.view(np.uint32), bits(r["output"]))


def test_corrupt_file_raises_library_error(suite):
    with pytest.raises(q8bert.Q8bertError) as e:
        q8bert.Model(suite["dir"] / suite["corrupt_model"])
    assert e.value.status == suite["corrupt"]["status"] == q8bert.Status.BAD_MAGIC
    assert suite["corrupt"]["message"] in e.value.message


def test_other_errors(suite):
    with pytest.raises(q8bert.Q8bertError) as e:
        q8bert.Model(suite["dir"] / "missing.q8b")
    assert e.value.status == q8bert.Status.IO and "missing.q8b" in e.value.message
    with pytest.raises(q8bert.Q8bertError) as e:
        q8bert.Model(suite["dir"] / suite["classify_model"], kernel=77)
    assert e.value.status == q8bert.Status.UNSUPPORTED_OPTIONS
    with q8bert.Model(suite["dir"] / suite["classify_model"]) as m:
        with pytest.raises(q8bert.Q8bertError) as e:
            m.embed(["x"])
        assert e.value.status == q8bert.Status.UNSUPPORTED_OPERATION
        with pytest.raises(q8bert.Q8bertError) as e:
            m.predict(["word " * 100])
        assert e.value.status == q8bert.Status.SEQUENCE_TOO_LONG
        with pytest.raises(q8bert.Q8bertError) as e:
            m.run([[101, 1 << 30, 102]])
        assert e.value.status == q8bert.Status.TOKEN_OUT_OF_RANGE
    with q8bert.Model(suite["dir"] / suite["classify_model"], truncate=True) as m:
        assert m.predict(["word " * 100]).shape == (1, 2)


def test_close_twice_and_use_after_close(suite):
    m = q8bert.Model(suite["dir"] / suite["classify_model"])
    m.close()
    m.close()
    with pytest.raises(q8bert.Q8bertError, match="closed"):
        m.predict(["x"])


def test_threads_share_one_model(suite):
    with q8bert.Model(suite["dir"] / suite["classify_model"]) as m:
        failures = []

        def work(g):
            for r in range(20):
                i = (g + r) % len(suite["texts"])
                got = m.predict([suite["texts"][i]])[0].view(np.uint32)
                if not np.array_equal(got, bits(suite["classify"][i])):
                    failures.append((g, i))

        threads = [threading.Thread(target=work, args=(g,)) for g in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert failures == []


def test_close_while_another_thread_is_calling(suite):
    """close() waits for the call in flight; the other thread then finishes or is told the model
    is closed (never a crash on freed memory)."""
    m = q8bert.Model(suite["dir"] / suite["classify_model"], truncate=True)
    texts = suite["texts"] * 400
    outcome = []
    started = threading.Event()

    def work():
        started.set()
        try:
            outcome.append(m.predict(texts, batch_size=4).shape)
        except q8bert.Q8bertError as e:
            outcome.append(e.message)

    t = threading.Thread(target=work)
    t.start()
    started.wait()
    m.close()
    t.join()
    assert m.closed
    assert outcome in ([(len(texts), len(suite["labels"]))], ["model is closed"]), outcome


def _rss_kib():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])


def test_open_close_does_not_leak(suite):
    path = str(suite["dir"] / suite["classify_model"])

    def cycle():
        m = q8bert.Model(path, num_threads=1)
        m.predict(suite["texts"][:1])
        m.close()

    for _ in range(20):
        cycle()
    gc.collect()
    before = _rss_kib()
    for _ in range(300):
        cycle()
    gc.collect()
    after = _rss_kib()
    assert Path("/proc/self/maps").read_text().count(path) == 0, "a mapping of the model survived close()"
    assert after - before < 16 * 1024, f"RSS grew {after - before} KiB over 300 open/close cycles"
