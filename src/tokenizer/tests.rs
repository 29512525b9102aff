use super::*;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

fn toks() -> Vec<&'static str> {
    vec![
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "##s", "un", "##aff",
        "##able", ",", "é", "中",
    ]
}

fn small() -> EncodedVocab {
    encode_vocab(&toks()).unwrap()
}

fn settings() -> TokenizerSettings {
    TokenizerSettings {
        do_lower_case: true,
        strip_accents: true,
        tokenize_chinese_chars: true,
        unk_id: 1,
        cls_id: 2,
        sep_id: 3,
        pad_id: 0,
        max_input_chars_per_word: 100,
        kind: TokenizerKind::WordPiece,
    }
}

#[test]
fn encode_vocab_round_trip() {
    let tokens = toks();
    let e = small();
    assert!(e.hash.len().is_power_of_two() && e.hash.len() >= 2 * tokens.len());
    let v = e.vocab().unwrap();
    assert_eq!(v.len(), tokens.len());
    for (i, t) in tokens.iter().enumerate() {
        assert_eq!(v.token(i as u32), Some(*t));
        assert_eq!(v.lookup(t), Some(i as u32));
    }
    assert_eq!(v.token(tokens.len() as u32), None);
    assert_eq!(v.token(u32::MAX), None);
    assert_eq!(v.lookup("nope"), None);
    assert_eq!(v.lookup(""), None);
    // Larger list: ids survive and every lookup hits.
    let many: Vec<String> = (0..5000).map(|i| alloc::format!("t{}x", i)).collect();
    let e = encode_vocab(&many).unwrap();
    let v = e.vocab().unwrap();
    for (i, t) in many.iter().enumerate() {
        assert_eq!(v.lookup(t), Some(i as u32));
    }
}

#[test]
fn encode_vocab_rejects() {
    assert_eq!(
        encode_vocab(&["a", "b", "a"]),
        Err(VocabError::DuplicateToken)
    );
    assert_eq!(encode_vocab(&["a", ""]), Err(VocabError::EmptyToken));
    let empty: [&str; 0] = [];
    let e = encode_vocab(&empty).unwrap();
    let v = e.vocab().unwrap();
    assert_eq!(v.len(), 0);
    assert_eq!(v.lookup("a"), None);
}

fn check(offsets: &[u32], bytes: &[u8], hash: &[u32]) -> Result<(), VocabError> {
    Vocab::from_parts(offsets, bytes, hash).map(|_| ())
}

#[test]
fn from_parts_rejects_bad_offsets() {
    let e = small();
    assert_eq!(check(&[], &e.bytes, &e.hash), Err(VocabError::BadOffsets));
    let mut o = e.offsets.clone();
    o[0] = 1;
    assert_eq!(check(&o, &e.bytes, &e.hash), Err(VocabError::BadOffsets));
    let mut o = e.offsets.clone();
    *o.last_mut().unwrap() -= 1;
    assert_eq!(check(&o, &e.bytes, &e.hash), Err(VocabError::BadOffsets));
    let mut o = e.offsets.clone();
    *o.last_mut().unwrap() = u32::MAX;
    assert_eq!(check(&o, &e.bytes, &e.hash), Err(VocabError::BadOffsets));
    let mut o = e.offsets.clone();
    o[3] = o[5]; // o[3] > o[4]
    assert_eq!(check(&o, &e.bytes, &e.hash), Err(VocabError::BadOffsets));
    let mut o = e.offsets.clone();
    o[3] = o[2];
    assert_eq!(check(&o, &e.bytes, &e.hash), Err(VocabError::EmptyToken));
}

#[test]
fn from_parts_rejects_bad_utf8() {
    let e = small();
    let mut b = e.bytes.clone();
    b[0] = 0xff;
    assert_eq!(check(&e.offsets, &b, &e.hash), Err(VocabError::BadUtf8));
    // Move the boundary between "é" (2 bytes) and "中" into the middle of "é".
    let i = toks().iter().position(|t| *t == "é").unwrap();
    let mut o = e.offsets.clone();
    o[i + 1] -= 1;
    assert_eq!(check(&o, &e.bytes, &e.hash), Err(VocabError::BadUtf8));
}

#[test]
fn from_parts_rejects_bad_tables() {
    let e = small();
    let v = toks().len() as u32;
    // Not a power of two / too small.
    let mut h = e.hash.clone();
    h.push(0);
    assert_eq!(
        check(&e.offsets, &e.bytes, &h),
        Err(VocabError::BadHashTable)
    );
    assert_eq!(
        check(&e.offsets, &e.bytes, &e.hash[..16]),
        Err(VocabError::BadHashTable)
    );
    assert_eq!(
        check(&e.offsets, &e.bytes, &[]),
        Err(VocabError::BadHashTable)
    );
    // Entry out of range.
    let mut h = e.hash.clone();
    let empty = h.iter().position(|&x| x == 0).unwrap();
    h[empty] = v + 1;
    assert_eq!(
        check(&e.offsets, &e.bytes, &h),
        Err(VocabError::BadHashTable)
    );
    h[empty] = u32::MAX;
    assert_eq!(
        check(&e.offsets, &e.bytes, &h),
        Err(VocabError::BadHashTable)
    );
    // Id present twice.
    let mut h = e.hash.clone();
    let used = h.iter().position(|&x| x != 0).unwrap();
    h[empty] = h[used];
    assert_eq!(
        check(&e.offsets, &e.bytes, &h),
        Err(VocabError::BadHashTable)
    );
    // Id missing.
    let mut h = e.hash.clone();
    h[used] = 0;
    assert_eq!(
        check(&e.offsets, &e.bytes, &h),
        Err(VocabError::BadHashTable)
    );
    // Entry moved so a probe from its home hits an empty slot first.
    let mask = e.hash.len() - 1;
    let mut h = e.hash.clone();
    let home = (fnv1a64(b"hello") as usize) & mask;
    let at = h.iter().position(|&x| x == 6).unwrap();
    let mut to = (home + mask) & mask; // one before home, if free
    while h[to] != 0 {
        to = (to + mask) & mask;
    }
    h[at] = 0;
    h[to] = 6;
    assert_eq!(
        check(&e.offsets, &e.bytes, &h),
        Err(VocabError::BadHashTable)
    );
    // All slots full (impossible with T >= 2V, but must not hang): T=2, V=1 filled twice.
    assert_eq!(check(&[0, 1], b"a", &[1, 1]), Err(VocabError::BadHashTable));
}

#[test]
fn from_parts_rejects_duplicates() {
    // A table built as if duplicates were distinct tokens.
    let tokens = ["x", "y", "x"];
    let mut bytes = Vec::new();
    let mut offsets = vec![0u32];
    for t in tokens {
        bytes.extend_from_slice(t.as_bytes());
        offsets.push(bytes.len() as u32);
    }
    // Either copy may come first in the probe sequence.
    for reverse in [false, true] {
        let mut hash = vec![0u32; 8];
        let mut ids: Vec<usize> = (0..tokens.len()).collect();
        if reverse {
            ids.reverse();
        }
        for id in ids {
            let mut s = fnv1a64(tokens[id].as_bytes()) as usize & 7;
            while hash[s] != 0 {
                s = (s + 1) & 7;
            }
            hash[s] = id as u32 + 1;
        }
        assert_eq!(
            check(&offsets, &bytes, &hash),
            Err(VocabError::DuplicateToken),
            "reverse insertion: {reverse}"
        );
    }
}

#[test]
fn from_parts_never_panics_on_mutations() {
    let e = small();
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut accepted = 0;
    for _ in 0..20000 {
        let mut o = e.offsets.clone();
        let mut b = e.bytes.clone();
        let mut h = e.hash.clone();
        for _ in 0..(next() % 3 + 1) {
            match next() % 7 {
                0 if !o.is_empty() => {
                    let i = next() as usize % o.len();
                    o[i] = next() as u32 % 64;
                }
                1 if !b.is_empty() => {
                    let i = next() as usize % b.len();
                    b[i] = next() as u8;
                }
                2 if !h.is_empty() => {
                    let i = next() as usize % h.len();
                    h[i] = next() as u32 % 20;
                }
                3 if !h.is_empty() => {
                    let i = next() as usize % h.len();
                    let j = next() as usize % h.len();
                    h.swap(i, j);
                }
                4 => {
                    h.truncate(next() as usize % (h.len() + 1));
                }
                5 => {
                    o.truncate(next() as usize % (o.len() + 1));
                }
                6 => {
                    b.truncate(next() as usize % (b.len() + 1));
                }
                _ => {}
            }
        }
        if let Ok(v) = Vocab::from_parts(&o, &b, &h) {
            // Whatever was accepted must be self-consistent.
            for i in 0..v.len() as u32 {
                let t = v.token(i).unwrap();
                assert_eq!(v.lookup(t), Some(i));
            }
            accepted += 1;
        }
    }
    assert!(accepted > 0);
}

#[test]
fn special_ids_checked() {
    let e = small();
    let mut s = settings();
    s.sep_id = 99;
    assert_eq!(
        Tokenizer::new(e.vocab().unwrap(), s).err(),
        Some(VocabError::BadSpecialId)
    );
}

#[test]
fn basic_pipeline() {
    let e = small();
    let t = Tokenizer::new(e.vocab().unwrap(), settings()).unwrap();
    let mut ids = Vec::new();
    t.tokenize_ids("Hello, WORLDS unaffable HÉ中x", &mut ids);
    // hello , world ##s un ##aff ##able [UNK](hé -> he) 中 [UNK](x)
    assert_eq!(ids, vec![5, 11, 6, 7, 8, 9, 10, 1, 13, 1]);
    t.tokenize_ids("é[MASK]hello[SEP]", &mut ids);
    assert_eq!(ids, vec![1, 4, 5, 3]);
    let enc = t
        .encode("hello", Some("world"), usize::MAX, Truncation::Error)
        .unwrap();
    assert_eq!(enc.ids, vec![2, 5, 3, 6, 3]);
    assert_eq!(enc.type_ids, vec![0, 0, 0, 1, 1]);
}

#[test]
fn truncation_rules() {
    // tokenizers' own expectations for max_length 7 (no special tokens there).
    let cases = [
        (0, 0, 0, 0),
        (0, 2, 0, 2),
        (0, 4, 0, 4),
        (0, 8, 0, 7),
        (2, 0, 2, 0),
        (2, 2, 2, 2),
        (2, 4, 2, 4),
        (2, 8, 2, 5),
        (4, 0, 4, 0),
        (4, 2, 4, 2),
        (4, 4, 3, 4),
        (4, 8, 3, 4),
        (8, 0, 7, 0),
        (8, 2, 5, 2),
        (8, 4, 4, 3),
        (8, 8, 3, 4),
    ];
    for (la, lb, na, nb) in cases {
        let got = if la + lb <= 7 {
            (la, lb)
        } else {
            longest_first(la, lb, 7)
        };
        assert_eq!(got, (na, nb), "la={} lb={}", la, lb);
    }
    let e = small();
    let t = Tokenizer::new(e.vocab().unwrap(), settings()).unwrap();
    let a = "hello hello hello hello";
    let b = "world world";
    let enc = t.encode(a, Some(b), 6, Truncation::LongestFirst).unwrap();
    // budget 3: shorter (2) > half, so 1 + 2.
    assert_eq!(enc.ids, vec![2, 5, 5, 3, 6, 3]);
    assert_eq!(enc.type_ids, vec![0, 0, 0, 0, 1, 1]);
    assert_eq!(enc.ids.len(), 6);
    assert_eq!(enc.num_truncated, 3);
    assert_eq!(
        t.encode(a, Some(b), 2, Truncation::LongestFirst).err(),
        Some(TokenizeError::MaxLenTooSmall)
    );
    assert_eq!(
        t.encode(a, None, 5, Truncation::Error).err(),
        Some(TokenizeError::TooLong { needed: 6, max: 5 })
    );
    let enc = t.encode(a, None, 2, Truncation::LongestFirst).unwrap();
    assert_eq!(enc.ids, vec![2, 3]);
    assert_eq!(enc.num_truncated, 4);
}

#[test]
fn tables_consistent() {
    use super::normalize::{class_from_runs, decompose, lowercase};
    for cp in 0..128u32 {
        assert_eq!(
            super::tables::ASCII_CLASS[cp as usize],
            class_from_runs(cp),
            "U+{:04X}",
            cp
        );
    }
    let mut d = Vec::new();
    decompose('\u{1E09}', |c| d.push(c)); // c + cedilla + acute
    assert_eq!(d, vec!['c', '\u{327}', '\u{301}']);
    d.clear();
    decompose('\u{D55C}', |c| d.push(c)); // Hangul LVT
    assert_eq!(d, vec!['\u{1112}', '\u{1161}', '\u{11AB}']);
    d.clear();
    lowercase('\u{130}', |c| d.push(c));
    assert_eq!(d, vec!['i', '\u{307}']);
    d.clear();
    lowercase('\u{100}', |c| d.push(c));
    lowercase('\u{101}', |c| d.push(c));
    lowercase('\u{3A3}', |c| d.push(c));
    assert_eq!(d, vec!['\u{101}', '\u{101}', '\u{3C3}']);
}
