#!/usr/bin/env python3
"""Generate src/tokenizer/tables.rs.

The reference (Hugging Face `tokenizers`) mixes several Unicode versions:
`unicode_categories` (old tables) for control/punctuation/Mn, an old
`unicode-normalization-alignments` for NFD, and the std library of whatever
rustc built the wheel for lowercase and whitespace. Rebuilding that mix from
UCD files would be guesswork, so every property is measured on the installed
`tokenizers` wheel itself, one code point at a time, and checked again at the
end against the full normalizer. Python's unicodedata only supplies candidate
canonical combining classes, each confirmed by a reordering probe.

Usage: pip install tokenizers && python3 scripts/gen_unicode_tables.py
"""
import os
import sys
import unicodedata

import tokenizers
from tokenizers import normalizers, pre_tokenizers

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "tokenizer", "tables.rs")

REMOVED, WS, PUNCT, MN = 1, 2, 4, 8
HANGUL_S, HANGUL_N = 0xAC00, 11172


def code_points():
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        yield cp


def bert(clean=False, chinese=False, strip=False, lower=False):
    return normalizers.BertNormalizer(
        clean_text=clean, handle_chinese_chars=chinese, strip_accents=strip, lowercase=lower
    ).normalize_str


def hangul_nfd(cp):
    s = cp - HANGUL_S
    l, v, t = 0x1100 + s // 588, 0x1161 + (s % 588) // 28, 0x11A7 + s % 28
    return chr(l) + chr(v) + (chr(t) if t != 0x11A7 else "")


def main():
    clean = bert(clean=True)
    strip = bert(strip=True)
    lower = bert(lower=True)
    nfd = normalizers.NFD().normalize_str
    pretok = pre_tokenizers.BertPreTokenizer().pre_tokenize_str

    cls = {}
    decomp = {}
    lower_map = {}
    ccc = {}
    for cp in code_points():
        c = chr(cp)
        bits = 0
        r = clean(c)
        if r == "":
            bits |= REMOVED
        elif r != c and r != " ":
            sys.exit(f"clean_text changed U+{cp:04X} unexpectedly: {r!r}")
        words = [w for w, _ in pretok("a" + c + "b")]
        if words == ["a", "b"]:
            bits |= WS
        elif words == ["a", c, "b"]:
            bits |= PUNCT
        elif words != ["a" + c + "b"]:
            sys.exit(f"pre-tokenizer split U+{cp:04X} unexpectedly: {words!r}")
        if not (bits & REMOVED) and (r == " ") != bool(bits & WS):
            sys.exit(f"clean_text whitespace disagrees with pre-tokenizer at U+{cp:04X}")
        d = nfd(c)
        if d != c:
            if HANGUL_S <= cp < HANGUL_S + HANGUL_N:
                if d != hangul_nfd(cp):
                    sys.exit(f"Hangul U+{cp:04X} not algorithmic")
            else:
                decomp[cp] = d
        elif strip(c) == "":
            bits |= MN
        lo = lower(c)
        if lo != c:
            lower_map[cp] = lo
        if bits:
            cls[cp] = bits
        k = unicodedata.combining(c)
        if k and d == c:
            # Confirm the class is known to the reference's (older) NFD.
            if k < 230:
                moved = nfd("a\u0301" + c) == "a" + c + "\u0301"
            else:
                moved = nfd("a" + c + "\u0334") == "a\u0334" + c
            if moved:
                ccc[cp] = k

    # Whole-pipeline self check on every code point, both settings.
    def model(c, lowercase, strip_accents):
        out = []
        cp = ord(c)
        b = cls.get(cp, 0)
        if b & REMOVED:
            return ""
        seq = [" "] if b & WS else [c]
        if is_chinese(cp):
            seq = [" ", c, " "]
        res = []
        for x in seq:
            if strip_accents:
                xs = decomp.get(ord(x)) or (hangul_nfd(ord(x)) if HANGUL_S <= ord(x) < HANGUL_S + HANGUL_N else x)
                xs = [y for y in xs if not (cls.get(ord(y), 0) & MN)]
            else:
                xs = [x]
            for y in xs:
                res.append(lower_map.get(ord(y), y) if lowercase else y)
        return "".join(res)

    full_uncased = bert(True, True, True, True)
    full_cased = bert(True, True, False, False)
    for cp in code_points():
        c = chr(cp)
        if model(c, True, True) != full_uncased(c) or model(c, False, False) != full_cased(c):
            sys.exit(f"table model disagrees with reference at U+{cp:04X}")
    write(cls, decomp, lower_map, ccc)


def is_chinese(cp):
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B920 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def runs(values):
    """(start, value) for each change of value over the whole code space."""
    out = []
    prev = None
    for cp in range(0x110000):
        v = values.get(cp, 0)
        if v != prev:
            out.append((cp, v))
            prev = v
    return out


def lower_runs(lower_map):
    single = {cp: ord(s) - cp for cp, s in lower_map.items() if len(s) == 1}
    multi = {cp: s for cp, s in lower_map.items() if len(s) != 1}
    out = []
    cps = sorted(single)
    i = 0
    while i < len(cps):
        start = cps[i]
        delta = single[start]
        # Try stride 1, then stride 2 (upper/lower pairs alternate).
        best = (1, 1)
        for stride in (1, 2):
            n = 1
            while True:
                nxt = start + n * stride
                if single.get(nxt) != delta or nxt in multi:
                    break
                if stride == 2 and (nxt - 1) in single:
                    break
                n += 1
            if n > best[1]:
                best = (stride, n)
        stride, n = best
        out.append((start, n, stride, delta))
        covered = {start + k * stride for k in range(n)}
        while i < len(cps) and cps[i] in covered:
            i += 1
    # Verify that the runs reproduce the map exactly.
    check = {}
    for start, n, stride, delta in out:
        for k in range(n):
            check[start + k * stride] = delta
    assert check == single, "lower runs do not reproduce the map"
    return out, multi


def rchar(cp):
    return "'\\u{%X}'" % cp


def write(cls, decomp, lower_map, ccc):
    class_runs = runs(cls)
    ccc_runs = runs(ccc)
    lruns, lmulti = lower_runs(lower_map)
    keys = sorted(decomp)
    pool = []
    offs = [0]
    for k in keys:
        pool.extend(ord(ch) for ch in decomp[k])
        offs.append(len(pool))
    assert len(pool) < 65536
    ascii_cls = [cls.get(cp, 0) for cp in range(128)]

    L = []
    w = L.append
    w("// Generated by scripts/gen_unicode_tables.py from tokenizers %s; do not edit." % tokenizers.__version__)
    w("// Properties were measured on that build, so they follow its Unicode versions.")
    w("")
    w("pub const REMOVED: u8 = %d; // dropped by clean_text (control/format/private use, NUL, U+FFFD)" % REMOVED)
    w("pub const WS: u8 = %d; // whitespace: becomes ' ' in clean_text, splits words" % WS)
    w("pub const PUNCT: u8 = %d; // isolated by the pre-tokenizer" % PUNCT)
    w("pub const MN: u8 = %d; // nonspacing mark: dropped by strip_accents after NFD" % MN)
    w("")
    w("pub static ASCII_CLASS: [u8; 128] = [")
    for i in range(0, 128, 16):
        w("    " + " ".join("%d," % v for v in ascii_cls[i:i + 16]))
    w("];")
    w("")
    w("/// `start << 8 | class bits`; a run lasts until the next start.")
    w("pub static CLASS_RUNS: [u32; %d] = [" % len(class_runs))
    emit_u32(w, [(s << 8) | v for s, v in class_runs])
    w("];")
    w("")
    w("/// `start << 8 | canonical combining class`; a run lasts until the next start.")
    w("pub static CCC_RUNS: [u32; %d] = [" % len(ccc_runs))
    emit_u32(w, [(s << 8) | v for s, v in ccc_runs])
    w("];")
    w("")
    w("/// Code points with a full canonical decomposition (Hangul is algorithmic).")
    w("pub static DECOMP_KEYS: [u32; %d] = [" % len(keys))
    emit_u32(w, keys)
    w("];")
    w("/// DECOMP_CHARS[DECOMP_OFFS[i]..DECOMP_OFFS[i + 1]] is the decomposition of DECOMP_KEYS[i].")
    w("pub static DECOMP_OFFS: [u16; %d] = [" % len(offs))
    emit_u32(w, offs)
    w("];")
    w("pub static DECOMP_CHARS: [char; %d] = [" % len(pool))
    for i in range(0, len(pool), 8):
        w("    " + " ".join(rchar(v) + "," for v in pool[i:i + 8]))
    w("];")
    w("")
    w("/// Single-char lowercase runs: (start, count, stride 1 or 2, delta); the chars")
    w("/// start + k * stride for k < count map to themselves plus delta.")
    w("pub static LOWER_RUNS: [(u32, u16, u8, i32); %d] = [" % len(lruns))
    for s, n, st, d in lruns:
        w("    (0x%X, %d, %d, %d)," % (s, n, st, d))
    w("];")
    w("/// Lowercase mappings longer than one char.")
    w("pub static LOWER_MULTI: [(char, &[char]); %d] = [" % len(lmulti))
    for cp in sorted(lmulti):
        w("    (%s, &[%s])," % (rchar(cp), ", ".join(rchar(ord(x)) for x in lmulti[cp])))
    w("];")
    with open(OUT, "w", encoding="utf-8") as f:
        f.write("\n".join(L) + "\n")
    print(f"wrote {OUT}: {len(class_runs)} class runs, {len(ccc_runs)} ccc runs, "
          f"{len(keys)} decompositions ({len(pool)} chars), {len(lruns)} lower runs, {len(lmulti)} multi")


def emit_u32(w, vals):
    for i in range(0, len(vals), 8):
        w("    " + " ".join("0x%X," % v for v in vals[i:i + 8]))


if __name__ == "__main__":
    main()
