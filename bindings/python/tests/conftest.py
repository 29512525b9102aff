"""Shared fixtures. The conformance suite is $Q8BERT_CONFORMANCE_DIR (written by `cargo run
--example make_conformance_model -- DIR`); the real sentences are GLUE SST-2 from the shared data
directory beside the checkout (`../shared/data/glue/SST-2/train.tsv`, or $Q8BERT_SST2): tests that
use `sst2` depend on `../shared` and fail (not skip) without it."""

import csv
import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def suite():
    d = os.environ.get("Q8BERT_CONFORMANCE_DIR")
    assert d, "set Q8BERT_CONFORMANCE_DIR (cargo run --example make_conformance_model -- DIR)"
    s = json.loads((Path(d) / "expected.json").read_text())
    s["dir"] = Path(d).resolve()
    return s


@pytest.fixture(scope="session")
def sst2():
    """The SST-2 training sentences (67,349), in file order. Needs ../shared (see module doc)."""
    path = Path(os.environ.get("Q8BERT_SST2") or REPO.parent / "shared/data/glue/SST-2/train.tsv")
    assert path.is_file(), f"{path} not found: these tests need the shared GLUE data beside the checkout (../shared) or $Q8BERT_SST2"
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    assert rows[0] == ["sentence", "label"]
    return [r[0] for r in rows[1:]]
