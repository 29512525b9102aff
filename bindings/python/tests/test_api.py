"""The Python API on top of the C calls: encode/predict/classify (batched, length-sorted, input
order restored), pairs, tokenize, info, context manager, errors. Uses the conformance suite's
models; the SST-2 checks need ../shared (see conftest)."""

import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import q8bert

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def emb(suite):
    with q8bert.Model(suite["dir"] / suite["embed_model"], truncate=True) as m:
        yield m


@pytest.fixture(scope="module")
def cls(suite):
    with q8bert.Model(suite["dir"] / suite["classify_model"], truncate=True) as m:
        yield m


FAST = (q8bert._c_run, q8bert._c_run_into)  # the C hot path (q8bert/_calls.c); None when not built


@pytest.fixture(autouse=True, params=["c", "ctypes"])
def call_path(request, monkeypatch):
    """Every test runs on both ways into the library: the C hot path and plain ctypes."""
    if request.param == "c" and FAST[0] is None:
        # scripts/test_python_package.sh sets this: the wheel it built must carry the C path.
        assert not os.environ.get("Q8BERT_EXPECT_FAST_PATH"), "q8bert._calls was not built into this package"
        pytest.skip("q8bert._calls not built (no C compiler or Python headers at install time)")
    for name, fn in zip(("_c_run", "_c_run_into"), FAST):
        monkeypatch.setattr(q8bert, name, fn if request.param == "c" else None)
    return request.param


def test_call_paths_give_the_same_bits(cls, emb, sst2):
    if FAST[0] is None:
        pytest.skip("q8bert._calls not built")
    texts = sst2[:150] + ["", "naïve café ☃ — ünïcödé", "x " * 40]  # > 64 texts: the heap arrays
    pairs = sst2[150:303]

    def use(fast):
        q8bert._c_run, q8bert._c_run_into = FAST if fast else (None, None)

    def both(fn):
        use(True)
        c = fn()
        use(False)
        return c, fn()

    for c, py in (both(lambda: emb.run_text(texts)), both(lambda: emb.run_text(tuple(texts[:5]))),
                  both(lambda: cls.run_text(texts, pairs)), both(lambda: cls.predict(list(zip(texts, pairs)), batch_size=8))):
        assert c.dtype == np.float32 and c.shape == py.shape
        np.testing.assert_array_equal(c.view(np.uint32), py.view(np.uint32))
    # The C path hands anything unusual to ctypes, so the errors are the same ones.
    for bad in (["ok", "a\0b"], ["ok", 3], ["ok", "\udc80"], ("ok", b"bytes\xff")):
        errors = []
        for fast in (True, False):
            use(fast)
            with pytest.raises((q8bert.Q8bertError, TypeError)) as e:
                emb.run_text(bad)
            errors.append((type(e.value), str(e.value)))
        assert errors[0] == errors[1], bad


def test_versions_match_the_crate():
    cargo = (REPO / "Cargo.toml").read_text()
    crate = re.search(r'^\[package\][^\[]*?^version\s*=\s*"([^"]+)"', cargo, re.M | re.S).group(1)
    assert q8bert.version() == crate
    assert q8bert.__version__ == crate
    # scripts/test_python_package.sh runs this against the wheel and says where the library must be.
    expect = os.environ.get("Q8BERT_EXPECT_LIBRARY_SOURCE")
    assert q8bert.library_source == expect if expect else q8bert.library_source in ("Q8BERT_LIBRARY", "bundled", "pkg-config", "loader path")


def test_encode_matches_one_text_per_call_in_input_order(emb, sst2):
    texts = sst2[:300] + ["", "a", "x " * 40]
    one_by_one = np.stack([emb.run_text([t])[0] for t in texts])
    for bs in (1, 7, 32, 1000):
        got = emb.encode(texts, batch_size=bs)
        assert got.dtype == np.float32 and got.shape == (len(texts), emb.info.output_dim)
        np.testing.assert_array_equal(got.view(np.uint32), one_by_one.view(np.uint32), err_msg=f"batch_size={bs}")


def test_encode_shapes_and_normalize(emb, suite):
    dim = emb.get_sentence_embedding_dimension()
    assert dim == suite["hidden_size"] == emb.info.output_dim
    v = emb.encode("a gripping, funny film.")
    assert v.shape == (dim,)
    np.testing.assert_array_equal(v, emb.encode(["a gripping, funny film."])[0])
    assert emb.encode([]).shape == (0, dim)
    gen = emb.encode(t for t in suite["texts"])  # any iterable
    np.testing.assert_array_equal(gen, emb.encode(suite["texts"]))
    raw = emb.encode(suite["texts"])
    unit = emb.encode(suite["texts"], normalize_embeddings=True)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(unit, raw / np.linalg.norm(raw, axis=1, keepdims=True), rtol=1e-6, atol=1e-7)


def test_progress_bar_goes_to_stderr(emb, capsys, suite):
    emb.encode(suite["texts"] * 10, batch_size=8, show_progress_bar=True)
    err = capsys.readouterr().err
    assert str(len(suite["texts"]) * 10) in err
    emb.encode(suite["texts"], batch_size=8)
    assert capsys.readouterr().err == ""


def test_predict_classify_and_pairs(cls, suite):
    texts = suite["texts"]
    logits = cls.predict(texts, batch_size=2)
    np.testing.assert_array_equal(logits, cls.run_text(texts))
    assert cls.classify(texts) == [cls.labels[i] for i in logits.argmax(axis=1)]
    probs = cls.predict(texts, apply_softmax=True)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    assert (probs.argmax(axis=1) == logits.argmax(axis=1)).all()
    a, b = ["the movie", "a plot", "nothing"], ["was fun", "too thin", ""]
    by_kw = cls.predict(a, b)
    np.testing.assert_array_equal(by_kw, cls.predict(list(zip(a, b)), batch_size=1))
    np.testing.assert_array_equal(by_kw, cls.run_text(a, b))
    assert not np.array_equal(by_kw, cls.predict(a)), "the second texts changed nothing"
    assert cls.classify(list(zip(a, b))) == [cls.labels[i] for i in by_kw.argmax(axis=1)]


def test_tokenize(cls, suite):
    for text, tokens in zip(suite["texts"], suite["tokens"]):
        assert cls.tokenize(text).tolist() == tokens
    many = cls.tokenize(suite["texts"])
    assert [t.tolist() for t in many] == suite["tokens"]
    pair = cls.tokenize("the movie", "was fun")
    assert pair.dtype == np.int32 and len(pair) > len(cls.tokenize("the movie"))
    assert [t.tolist() for t in cls.tokenize(["the movie"], ["was fun"])] == [pair.tolist()]


def test_info(cls, emb, suite):
    i = cls.info
    assert i.head == "classification" and i.head_kind == q8bert.HEAD_CLASSIFICATION
    assert list(i.labels) == cls.labels == suite["labels"] and i.num_labels == len(suite["labels"])
    assert i.output_dim == len(suite["labels"]) and i["output_dim"] == i.output_dim
    assert i.hidden_size == suite["hidden_size"] and i.num_layers >= 1 and i.vocab_size > 1000
    assert i.kernel not in ("", "unknown")
    # The suite's classifier uses the paper's static scheme, its embedder the per-token one.
    names = {0: "static", 1: "per_row"}  # Q8BERT_ACTIVATIONS_STATIC, _PER_ROW
    assert (i.activations, emb.info.activations) == tuple(names[suite["activations"][k]] for k in ("classify", "embed"))
    assert i.file_size == os.path.getsize(suite["dir"] / suite["classify_model"])
    assert emb.info.head == "embedding" and emb.info.labels == () and cls.get_sentence_embedding_dimension() is None
    with q8bert.Model(suite["dir"] / suite["classify_model"], num_threads=1, max_seq_len=16) as m:
        assert m.info.num_threads == 1 and m.info.max_text_tokens == 16


def test_guard_counts_calls_in_flight():
    """close() frees the model only when no call is in flight, and no call starts once closing:
    the Python guard and the C one (q8bert._calls.Guard) keep the same protocol."""
    for guard_type in {q8bert._Guard, q8bert._NewGuard}:
        g = guard_type(0x1234)
        assert g.enter() == 0x1234 and g.enter() == 0x1234, guard_type
        assert g.detach() is None, guard_type  # two calls in flight: not yet (and closing now)
        assert g.enter() is None, guard_type  # no new call once closing
        g.leave()
        assert g.detach() is None, guard_type
        g.leave()
        assert g.detach() == 0x1234, guard_type  # the address to free, once
        assert g.detach() == 0, guard_type


def test_huge_pages_copy_gives_the_same_bits(emb, suite):
    texts = ["a gripping, funny film.", "", "naïve café ☃", "x " * 40]
    with q8bert.Model(suite["dir"] / suite["embed_model"], truncate=True, huge_pages=True) as m:
        got = m.encode(texts)
    np.testing.assert_array_equal(got.view(np.uint32), emb.encode(texts).view(np.uint32))


def test_context_manager_and_close(suite):
    with q8bert.Model(suite["dir"] / suite["embed_model"]) as m:
        assert not m.closed and "embedding" in repr(m)
    assert m.closed and "closed" in repr(m)
    with pytest.raises(q8bert.Q8bertError, match="model is closed"):
        m.encode(["x"])
    with pytest.raises(q8bert.Q8bertError, match="model is closed"):
        m.run_text(["x", "y"])


def test_input_errors(cls, emb):
    with pytest.raises(q8bert.Q8bertError) as e:
        cls.encode(["x"])
    assert e.value.status == q8bert.Status.UNSUPPORTED_OPERATION and "classification" in e.value.message
    with pytest.raises(q8bert.Q8bertError) as e:
        emb.predict(["x"])
    assert e.value.status == q8bert.Status.UNSUPPORTED_OPERATION
    with pytest.raises(TypeError, match=r"texts\[1\] is NoneType"):
        emb.encode(["ok", None, "ok"])
    with pytest.raises(TypeError, match=r"texts\[0\] is int"):
        emb.run_text([3])
    with pytest.raises(q8bert.Q8bertError, match=r"texts\[1\] contains a NUL") as e:
        emb.encode(["ok", "bad\0text"])
    assert e.value.status == q8bert.Status.INVALID_ARGUMENT
    with pytest.raises(TypeError, match="not a single str"):
        cls.predict("a str, not a list")
    with pytest.raises(q8bert.Q8bertError, match="2 texts but 1 pair texts"):
        cls.predict(["a", "b"], ["c"])
    # In length-sorted batches, errors still name the caller's index.
    texts = ["short"] * 40
    texts[33] = "a much longer text " + "word " * 200
    with pytest.raises(q8bert.Q8bertError, match=r"\btexts\[33\]: the text needs") as e:
        q8bert.Model(cls.path).predict(texts, batch_size=4)
    assert e.value.status == q8bert.Status.SEQUENCE_TOO_LONG
    texts[33], texts[21] = "ok", "nul\0"
    with pytest.raises(q8bert.Q8bertError, match=r"texts\[21\] contains a NUL"):
        emb.encode(texts, batch_size=4)
    texts[21] = None
    with pytest.raises(TypeError, match=r"texts\[21\] is NoneType"):
        emb.encode(texts, batch_size=4)
    with pytest.raises(ValueError, match="batch_size"):
        emb.encode(["x"], batch_size=0)


def test_error_carries_status_and_message_and_pickles(suite):
    with pytest.raises(q8bert.Q8bertError) as e:
        q8bert.Model(suite["dir"] / suite["corrupt_model"])
    err = e.value
    assert err.status == q8bert.Status.BAD_MAGIC and suite["corrupt"]["message"] in err.message
    assert err.status_name and err.status_name != "unknown status"
    back = pickle.loads(pickle.dumps(err))
    assert (type(back), back.status, back.message, str(back)) == (type(err), err.status, err.message, str(err))


def test_a_directory_says_to_convert_it(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(q8bert.Q8bertError) as e:
        q8bert.Model(tmp_path)
    assert e.value.status == q8bert.Status.IO
    assert f"{tmp_path} is a directory" in e.value.message
    assert f"trainer quantize --model {tmp_path} --output model.q8b" in e.value.message


def test_unloadable_override_fails_the_import_clearly(tmp_path):
    env = dict(os.environ, Q8BERT_LIBRARY=str(tmp_path / "nope.so"))
    pkg_parent = str(Path(q8bert.__file__).resolve().parents[1])
    r = subprocess.run([sys.executable, "-c", "import q8bert"], env=dict(env, PYTHONPATH=pkg_parent),
                       capture_output=True, text=True)
    assert r.returncode != 0
    assert "ImportError" in r.stderr and "nope.so" in r.stderr and "Q8BERT_LIBRARY" in r.stderr


@pytest.fixture(scope="module")
def prompted(suite):
    with q8bert.Model(suite["dir"] / suite["prompt_model"]) as m:
        yield m


def hex_rows(out):
    return [[format(v, "08x") for v in row.view(np.uint32).tolist()] for row in np.atleast_2d(out)]


def test_prompts_as_sentence_transformers(prompted, suite):
    """config_sentence_transformers.json prompts: the default applies, prompt_name picks one,
    prompt="" turns it off, a prompt text is the same as its name; bits as the Rust API."""
    texts = suite["texts"]
    assert prompted.prompts == suite["prompts"]
    assert prompted.default_prompt_name == suite["default_prompt_name"]
    want = suite["prompted"]
    assert hex_rows(prompted.encode(texts)) == want["default"]
    assert hex_rows(prompted.encode(texts, prompt_name="passage")) == want["passage"]
    assert hex_rows(prompted.encode(texts, prompt="passage: ")) == want["passage"]
    assert hex_rows(prompted.encode(texts, prompt="")) == want["none"]
    assert hex_rows(prompted.encode(texts, prompt_name="query", batch_size=2)) == want["default"]
    assert want["default"] != want["none"]
    with pytest.raises(q8bert.Q8bertError) as e:
        prompted.encode(texts, prompt_name="document")
    assert e.value.status == q8bert.Status.INVALID_ARGUMENT and "query, passage" in e.value.message
    with pytest.warns(UserWarning):
        assert hex_rows(prompted.encode(texts, prompt_name="query", prompt="passage: ")) == want["passage"]


def test_models_without_prompts_say_so(emb):
    assert emb.prompts == {} and emb.default_prompt_name is None
    with pytest.raises(q8bert.Q8bertError) as e:
        emb.encode(["a"], prompt_name="query")
    assert "no named prompts" in e.value.message


@pytest.fixture(scope="module")
def cross(suite):
    with q8bert.Model(suite["dir"] / suite["bpe_model"]) as m:
        yield m


def test_unigram_cross_encoder(suite):
    """An XLM-R-style cross-encoder (SentencePiece Unigram with its charsmap, format 1.9): the
    tokens of each pair and its score, bit for bit as the Rust API."""
    pairs = suite["unigram_pairs"]
    with q8bert.Model(suite["dir"] / suite["unigram_model"]) as m:
        for (a, b), want in zip(pairs, suite["unigram_tokens"]):
            assert m.tokenize(a, b).tolist() == want
        scores = m.predict(pairs, batch_size=2)
    assert len(pairs) == 4
    assert [format(v, "08x") for v in scores[:, 0].view(np.uint32).tolist()] == suite["unigram_scores"]


def test_byte_level_bpe_cross_encoder(cross, suite):
    """A RoBERTa-style cross-encoder (byte-level BPE, format 1.8): the tokens of each pair and
    its score, bit for bit as the Rust API; rank orders the documents by that score."""
    pairs = suite["bpe_pairs"]
    for (a, b), want in zip(pairs, suite["bpe_tokens"]):
        assert cross.tokenize(a, b).tolist() == want
    scores = cross.predict([a for a, _ in pairs], [b for _, b in pairs])
    assert [format(v, "08x") for v in scores[:, 0].view(np.uint32).tolist()] == suite["bpe_scores"]
    assert [format(v, "08x") for v in cross.predict(pairs, batch_size=1)[:, 0].view(np.uint32).tolist()] == suite["bpe_scores"]
    query = "what's a good film?"
    docs = ["It's one of the best films of the year.", "a <mask> token", "", "café 東京"]
    want = cross.predict([query] * len(docs), docs)[:, 0]
    ranked = cross.rank(query, docs, return_documents=True)
    assert [r["corpus_id"] for r in ranked] == sorted(range(4), key=lambda i: -want[i])
    assert all(r["text"] == docs[r["corpus_id"]] and r["score"] == float(want[r["corpus_id"]]) for r in ranked)
    assert cross.rerank(query, docs, top_k=2) == [{"corpus_id": r["corpus_id"], "score": r["score"]} for r in ranked[:2]]
    assert cross.rank(query, []) == []


def test_rank_needs_one_score_per_pair(cls):
    with pytest.raises(q8bert.Q8bertError) as e:
        cls.rank("q", ["a", "b"])
    assert e.value.status == q8bert.Status.UNSUPPORTED_OPERATION
