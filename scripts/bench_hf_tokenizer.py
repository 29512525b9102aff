#!/usr/bin/env python3
"""HF tokenizers (Rust-backed) throughput on the SST-2 train+dev sentences, in MB/s
of input text, to compare with `cargo bench --bench tokenizer` (same text, same
vocab, truncation longest_first at 512, single thread).

Usage: python3 scripts/bench_hf_tokenizer.py [repeats]   (WordPiece uncased/cased, byte-level BPE)
"""
import os

# Single-threaded: must be set before tokenizers starts its thread pool.
os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import tokenizers  # noqa: E402
from tokenizers import BertWordPieceTokenizer, Tokenizer  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
VOCAB = os.path.join(ROOT, "tests", "data", "vocab.txt")
BPE = os.path.join(ROOT, "tests", "data", "bpe", "tokenizer.json")
UNIGRAM = os.path.join(ROOT, "tests", "data", "unigram", "tokenizer.json")
SST2 = "/work/shared/data/glue/SST-2"


def sentences():
    out = []
    for split in ("train.tsv", "dev.tsv"):
        with open(os.path.join(SST2, split), encoding="utf-8") as f:
            next(f)
            for line in f:
                line = line.rstrip("\n")
                if "\t" in line:
                    out.append(line.rsplit("\t", 1)[0])
    return out


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def main():
    if not os.path.isdir(SST2):
        print(f"SST-2 not found under {SST2}; skipping")
        return
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    sents = sentences()
    nbytes = sum(len(s.encode("utf-8")) for s in sents)
    print(f"tokenizers {tokenizers.__version__}; SST-2 train+dev: {len(sents)} sentences, {nbytes} bytes")
    files = {"bpe": BPE, "unigram": UNIGRAM}  # RoBERTa's and XLM-R's pipelines
    for name, lower in (("uncased", True), ("cased", False), ("bpe", None), ("unigram", None)):
        tok = Tokenizer.from_file(files[name]) if lower is None else BertWordPieceTokenizer(VOCAB, lowercase=lower, strip_accents=lower)
        tok.enable_truncation(max_length=512, strategy="longest_first")
        tok.encode_batch(sents[:1000])  # warm up
        for mode, fn in (("encode_batch", lambda: tok.encode_batch(sents)),
                         ("encode loop", lambda: [tok.encode(s) for s in sents])):
            t = timed(fn, repeats)
            print(f"HF {name:8s} {mode:13s}: median {nbytes / 1e6 / statistics.median(t):7.2f} MB/s, "
                  f"best {nbytes / 1e6 / min(t):7.2f} MB/s ({repeats} runs)")


if __name__ == "__main__":
    main()
