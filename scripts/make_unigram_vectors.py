#!/usr/bin/env python3
"""Build the SentencePiece Unigram (XLM-RoBERTa) parity data in tests/data/unigram/.

No PyPI package we found ships XLM-R's own tokenizer, so this trains a small Unigram
model (4,000 pieces) with the `sentencepiece` package and its default `nmt_nfkc`
normalization (the rule set XLM-R's precompiled charsmap comes from), then builds the
Hugging Face tokenizer exactly as `transformers` converts XLM-R: Precompiled normalizer +
Replace(" {2,}" -> " "), Metaspace("▁", prepend_scheme="always"), Unigram with unk_id 3,
ids <s>=0 <pad>=1 </s>=2 <unk>=3 and <mask> last (lstrip), and the template
`<s> A </s> </s> B </s>`. Training text: GLUE sentences plus Faker sentences in 12 locales.

Writes tokenizer.json and vectors.jsonl (text_a, text_b or null, max_len or null, ids,
num_truncated, and for texts without special tokens the normalized string, the
pre-tokenized pieces and the grapheme clusters). Usage:
  pip install tokenizers sentencepiece protobuf faker && python3 scripts/make_unigram_vectors.py
"""
import json
import os
import random
import tempfile

import regex
import sentencepiece as spm
from faker import Faker
from sentencepiece import sentencepiece_model_pb2 as model_pb2
from tokenizers import AddedToken, Regex, Tokenizer, models, normalizers, pre_tokenizers, processors

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
OUT = os.path.join(ROOT, "tests", "data", "unigram")
GLUE = os.path.join(ROOT, "..", "shared", "data", "glue")
LOCALES = ["de_DE", "fr_FR", "es_ES", "ru_RU", "el_GR", "zh_CN", "ja_JP", "ko_KR",
           "ar_AA", "hi_IN", "th_TH", "he_IL"]


def glue_sentences(task, cols, split="train", limit=None):
    path = os.path.join(GLUE, task, f"{split}.tsv")
    out = []
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        idx = [header.index(c) for c in cols]
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) == len(header):
                out.append(tuple(parts[i] for i in idx))
            if limit and len(out) >= limit:
                break
    return out


def faker_text(seed, per_locale):
    out = []
    for i, loc in enumerate(LOCALES):
        fake = Faker(loc)
        fake.seed_instance(seed + i)
        for _ in range(per_locale):
            out.append(fake.sentence(nb_words=10))
            out.append(fake.address().replace("\n", " "))
    return out


def train(workdir):
    corpus = [s for (s,) in glue_sentences("SST-2", ["sentence"], limit=20000)]
    corpus += [a + " " + b for a, b in glue_sentences("MRPC", ["sentence1", "sentence2"])]
    corpus += faker_text(1, 400)
    path = os.path.join(workdir, "corpus.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(corpus))
    prefix = os.path.join(workdir, "spm")
    spm.SentencePieceTrainer.train(
        input=path, model_prefix=prefix, model_type="unigram", vocab_size=3999,
        character_coverage=0.9995, bos_id=0, pad_id=1, eos_id=2, unk_id=3,
        normalization_rule_name="nmt_nfkc", minloglevel=2)
    proto = model_pb2.ModelProto()
    with open(prefix + ".model", "rb") as f:
        proto.ParseFromString(f.read())
    vocab = [(p.piece, 0.0 if p.type != 1 else p.score) for p in proto.pieces]
    assert [v[0] for v in vocab[:4]] == ["<s>", "<pad>", "</s>", "<unk>"], vocab[:4]
    vocab.append(("<mask>", 0.0))
    tok = Tokenizer(models.Unigram(vocab, unk_id=3, byte_fallback=False))
    tok.normalizer = normalizers.Sequence([
        normalizers.Precompiled(proto.normalizer_spec.precompiled_charsmap),
        normalizers.Replace(Regex(" {2,}"), " "),
    ])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.add_special_tokens(["<s>", "<pad>", "</s>", "<unk>", AddedToken("<mask>", lstrip=True, special=True)])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)])
    return tok, corpus


def adversarial(rng, n):
    pool = (list("abcXYZ019'_-.,!?<>/\\\"()[]{}@#$%^&*+=~`|;:") +
            [" ", " ", "  ", "   ", "\t", "\n", "\r\n", "\x0b", "\x0c", "\u00a0", "\u2000", "\u3000", "\u0085",
             "\u2028", "\u200b", "\u200d", "\ufeff", "\u00ad", "▁", "▁▁", " ▁"] +
            ["é", "e\u0301", "E\u0301\u0327", "ß", "ﬁ", "İ", "ǅ", "Σ", "ж", "ع", "ﻼ", "ह", "ि", "क्ष", "क्\u200dष",
             "中", "日本", "한", "\u1100\u1161\u11a8", "\u1100\u1161", "ไ", "\u0301", "\u0300", "\u0308\u0301",
             "Ａ\u0301", "ｶﾞ", "ｶ\u3099", "㍿", "℡", "Å", "Ω", "ﾟ", "\u0e33"] +
            ["٣", "४", "７", "𝟘", "Ⅻ", "½", "²", "①", "⑴", "㊤", "ℌ", "ℵ"] +
            ["😀", "👍🏽", "👨‍👩‍👧", "🇩🇪", "🇩🇪🇫", "\U0001F9D1\u200D\U0001F4BB", "\U00010400", "\U000E0041", "\x00",
             "\x07", "\x7f", "\ue000", "\ufffd", "\U0002A6D6", "\U0001F3F4\U000E0067\U000E0062\U000E007F"] +
            ["<s>", "</s>", "<pad>", "<unk>", "<mask>", " <mask>", "  <mask> ", "<mask><mask>", "<s", "mask>", "< s>"])
    for _ in range(n):
        k = rng.randint(0, 24)
        yield "".join(rng.choice(pool) for _ in range(k))


def cases(rng):
    sts = glue_sentences("STS-B", ["sentence1", "sentence2"], split="dev")
    for a, b in sts[:600]:
        yield a, None, None
    for a, b in glue_sentences("MRPC", ["sentence1", "sentence2"], split="dev")[:300]:
        yield a, b, None
    for s in faker_text(99, 60):
        yield s, None, None
        yield s.upper(), None, None
    for s in adversarial(rng, 2500):
        yield s, None, None
    for a, b in zip(adversarial(rng, 300), adversarial(rng, 300)):
        yield a, b, None
    long_texts = [a for a, _ in sts[:400]] + faker_text(7, 10)
    for i in range(300):
        a = rng.choice(long_texts) + " " + rng.choice(long_texts)
        b = rng.choice(long_texts)
        yield a, None, rng.choice([3, 4, 8, 17, 32])
        yield a, b, rng.choice([5, 6, 9, 16, 33, 64])
    yield "x" * 3000, None, None
    yield "ab" * 1500 + " " + "é" * 700, None, None
    yield " " * 500 + "end", None, None
    yield "\U0002A6D6" * 300, None, None


def main():
    rng = random.Random(20261205)
    os.makedirs(OUT, exist_ok=True)
    with tempfile.TemporaryDirectory() as d:
        tok, _ = train(d)
    tok.save(os.path.join(OUT, "tokenizer.json"))
    n = 0
    with open(os.path.join(OUT, "vectors.jsonl"), "w", encoding="utf-8") as f:
        for a, b, max_len in cases(rng):
            tok.no_truncation()
            full = tok.encode(a, b) if b is not None else tok.encode(a)
            if max_len is not None:
                tok.enable_truncation(max_len, strategy="longest_first")
            enc = tok.encode(a, b) if b is not None else tok.encode(a)
            rec = {"text_a": a, "text_b": b, "max_len": max_len, "ids": enc.ids,
                   "num_truncated": len(full.ids) - len(enc.ids)}
            if b is None and "<" not in a:
                norm = tok.normalizer.normalize_str(a)
                rec["normalized"] = norm
                rec["pieces"] = [w for w, _ in tok.pre_tokenizer.pre_tokenize_str(norm)] if norm else []
                # Extended grapheme clusters (UAX #29) as the regex module splits them.
                rec["graphemes"] = regex.findall(r"\X", a)
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
    print(f"{n} cases -> {OUT}/vectors.jsonl")


if __name__ == "__main__":
    main()
