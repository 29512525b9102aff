#!/usr/bin/env python3
"""Build the byte-level BPE parity data in tests/data/bpe/ with Hugging Face `tokenizers`.

No PyPI package we found ships RoBERTa's own vocab.json/merges.txt, so this trains a
small byte-level BPE (4,000 tokens) with RoBERTa's exact pipeline: ByteLevel
pre-tokenizer (add_prefix_space=false), BPE without unk, RobertaProcessing, the
special tokens <s> <pad> </s> <unk> and <mask> (lstrip, as roberta-base). The training
text is GLUE's train sentences plus a multilingual sample, so the merges are real
English subwords.

Writes tokenizer.json, vocab.json + merges.txt (the other layout the trainer reads) and
vectors.jsonl: one case a line (text_a, text_b or null, max_len or null, ids,
num_truncated, and for texts without special tokens the pre-tokenized pieces).

Usage: pip install tokenizers && python3 scripts/make_bpe_vectors.py
"""
import json
import os
import random

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
OUT = os.path.join(ROOT, "tests", "data", "bpe")
GLUE = os.path.join(ROOT, "..", "shared", "data", "glue")
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]

MULTILINGUAL = [
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "Größere Straßen führen zur Universität in München.",
    "Le café de la gare est fermé à cause de la grève.",
    "¿Dónde está la biblioteca? ¡Está allí, señor!",
    "Быстрая коричневая лиса перепрыгивает через ленивую собаку.",
    "Η γρήγορη καφέ αλεπού πηδά πάνω από τον τεμπέλη σκύλο.",
    "敏捷的棕色狐狸跳过了懒狗。我们明天去北京。",
    "日本語のテキストも正しく分割されるべきです。東京は大きい。",
    "빠른 갈색 여우가 게으른 개를 뛰어넘습니다.",
    "الثعلب البني السريع يقفز فوق الكلب الكسول.",
    "तेज़ भूरी लोमड़ी आलसी कुत्ते के ऊपर कूदती है।",
    "Hızlı kahverengi tilki tembel köpeğin üzerinden atlar.",
    "Szybki brązowy lis przeskakuje nad leniwym psem.",
    "Nhanh chóng con cáo nâu nhảy qua con chó lười.",
    "สุนัขจิ้งจอกสีน้ำตาลกระโดดข้ามสุนัขขี้เกียจ",
    "השועל החום המהיר קופץ מעל הכלב העצלן.",
    "Emoji: 😀👍🏽 👨‍👩‍👧‍👦 🇩🇪 and ✨sparkles✨!",
    "Math: ∑ x² ≤ ∞, π ≈ 3.14159, ½ + ¼ = ¾, ①②③, Ⅻ.",
    "Digits: ١٢٣ ४५६ ７８９ 𝟘𝟙𝟚 and 10,000.50 USD.",
    "Café vs cafe\u0301 vs CAFÉ; naïve coöperation; Å Ω ﬁ ﬀ.",
]


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


def cola(split):
    return [s for (s,) in glue_sentences("CoLA", ["sentence"], split=split)]


def train():
    corpus = [s for (s,) in glue_sentences("SST-2", ["sentence"], limit=30000)]
    corpus += [a + " " + b for a, b in glue_sentences("MRPC", ["sentence1", "sentence2"])]
    corpus += cola("train")
    corpus += MULTILINGUAL * 20
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = SPECIALS[:4] + [AddedToken("<mask>", lstrip=True)]
    trainer = trainers.BpeTrainer(vocab_size=4000, min_frequency=2, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    return tok


def adversarial(rng, n):
    pool = (list("abcXYZ019'_-.,!?<>/\\\"()[]{}@#$%^&*+=~`|;:") +
            ["'s", "'S", "'t", "'re", "'ve", "'m", "'ll", "'d", "'LL", "''"] +
            [" ", " ", "  ", "\t", "\n", "\r\n", "\x0b", "\x0c", "\u00a0", "\u2000", "\u3000", "\u0085", "\u2028", "\u200b", "\ufeff"] +
            ["é", "e\u0301", "ß", "ﬁ", "İ", "ǅ", "Σ", "ж", "ع", "ह", "ि", "中", "日本", "한", "ไ", "\u0301", "\u0300"] +
            ["٣", "४", "７", "𝟘", "Ⅻ", "½", "²", "①"] +
            ["😀", "👍🏽", "👨‍👩‍👧", "🇩🇪", "\U0001F9D1\u200D\U0001F4BB", "\U00010400", "\U000E0041", "\x00", "\x07", "\x7f", "\ue000", "\ufffd"] +
            ["<s>", "</s>", "<pad>", "<unk>", "<mask>", " <mask>", "  <mask> ", "<mask><mask>", "<s", "mask>", "< s>"])
    for _ in range(n):
        k = rng.randint(0, 24)
        yield "".join(rng.choice(pool) for _ in range(k))


def cases(rng):
    sts = glue_sentences("STS-B", ["sentence1", "sentence2"], split="dev")
    for a, b in sts:
        yield a, None, None
        yield b, None, None
    for (s,) in glue_sentences("SST-2", ["sentence"], split="dev"):
        yield s, None, None
    for a, b in glue_sentences("MRPC", ["sentence1", "sentence2"], split="dev"):
        yield a, b, None
    for s in cola("dev"):
        yield s, None, None
    for s in MULTILINGUAL:
        yield s, None, None
        yield s.lower(), None, None
        yield s.upper(), None, None
    for s in adversarial(rng, 2500):
        yield s, None, None
    for a, b in zip(adversarial(rng, 300), adversarial(rng, 300)):
        yield a, b, None
    # Truncation, single and pair (longest_first), including the odd-token split.
    long_texts = [a for a, _ in sts[:400]]
    for i in range(300):
        a = rng.choice(long_texts) + " " + rng.choice(long_texts)
        b = rng.choice(long_texts)
        yield a, None, rng.choice([3, 4, 8, 17, 32])
        yield a, b, rng.choice([5, 6, 9, 16, 33, 64])
    # Long words: BPE on a few thousand bytes without a split.
    yield "x" * 3000, None, None
    yield "ab" * 1500 + " " + "é" * 700, None, None
    yield " " * 500 + "end", None, None


def main():
    rng = random.Random(20261205)
    os.makedirs(OUT, exist_ok=True)
    tok = train()
    tok.save(os.path.join(OUT, "tokenizer.json"))
    tok.model.save(OUT)  # vocab.json + merges.txt
    pieces_of = pre_tokenizers.Split(
        __import__("tokenizers").Regex(r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"),
        behavior="isolated").pre_tokenize_str
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
                rec["pieces"] = [w for w, _ in pieces_of(a)]
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
    print(f"{n} cases -> {OUT}/vectors.jsonl")


if __name__ == "__main__":
    main()
