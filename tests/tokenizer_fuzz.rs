//! Randomized robustness checks: no panics, ids in range, well-formed type ids,
//! lengths within max_len, and truncation/TooLong agreeing with the untruncated count.

use q8bert::tokenizer::{
    encode_vocab, EncodedVocab, Encoding, TokenizeError, Tokenizer, TokenizerSettings, Truncation,
};

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn vocab() -> EncodedVocab {
    let txt = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/vocab.txt"))
        .unwrap();
    let tokens: Vec<&str> = txt.lines().collect();
    encode_vocab(&tokens).unwrap()
}

fn settings_variants() -> Vec<TokenizerSettings> {
    let base = TokenizerSettings::uncased();
    let mut cased = base.clone();
    cased.do_lower_case = false;
    cased.strip_accents = false;
    let mut odd = base.clone();
    odd.strip_accents = false;
    odd.tokenize_chinese_chars = false;
    odd.max_input_chars_per_word = 5;
    let mut wide = cased.clone();
    wide.strip_accents = true;
    wide.max_input_chars_per_word = 1000; // words can outgrow the stack buffer
    vec![base, cased, odd, wide]
}

fn random_char(rng: &mut XorShift) -> char {
    let cp = match rng.below(12) {
        0..=3 => 0x20 + rng.below(0x5F) as u32,
        4 => rng.below(0x20) as u32,
        5 => 0x80 + rng.below(0x200) as u32,
        6 => 0x300 + rng.below(0x70) as u32,
        7 => 0x4E00 + rng.below(0x5200) as u32,
        8 => 0xAC00 + rng.below(11172) as u32,
        9 => 0x1F300 + rng.below(0x800) as u32,
        10 => 0x2000 + rng.below(0x70) as u32,
        _ => rng.below(0x110000) as u32,
    };
    char::from_u32(cp).unwrap_or('\u{FFFD}')
}

fn random_text(rng: &mut XorShift, max_chars: u64) -> String {
    let n = rng.below(max_chars + 1);
    let mut s = String::new();
    for _ in 0..n {
        match rng.below(40) {
            0 => s.push_str(
                ["[MASK]", "[SEP]", "[CLS]", "[UNK]", "[PAD]", "[MAS", "##"][rng.below(7) as usize],
            ),
            1 => {
                // A long run of one char: long words, long mark sequences.
                let c = random_char(rng);
                for _ in 0..rng.below(300) {
                    s.push(c);
                }
            }
            _ => s.push(random_char(rng)),
        }
    }
    s
}

fn check_case(
    tok: &Tokenizer,
    v: usize,
    a: &str,
    b: Option<&str>,
    max_len: usize,
    scratch: &mut Vec<i32>,
) {
    let n_special = if b.is_some() { 3 } else { 2 };
    tok.tokenize_ids(a, scratch);
    let la = scratch.len();
    assert!(scratch.iter().all(|&id| id >= 0 && (id as usize) < v));
    let a_ids = scratch.clone();
    let lb = b.map_or(0, |b| {
        tok.tokenize_ids(b, scratch);
        scratch.len()
    });
    let needed = la + lb + n_special;

    let mut out = Encoding::default();
    let r = tok.encode_into(a, b, max_len, Truncation::Error, &mut out);
    if max_len < n_special {
        assert_eq!(r, Err(TokenizeError::MaxLenTooSmall));
        assert_eq!(
            tok.encode(a, b, max_len, Truncation::LongestFirst).err(),
            Some(TokenizeError::MaxLenTooSmall)
        );
        return;
    }
    if needed > max_len {
        assert_eq!(
            r,
            Err(TokenizeError::TooLong {
                needed,
                max: max_len
            })
        );
    } else {
        r.unwrap();
        assert_eq!(out.ids.len(), needed);
        assert_eq!(out.num_truncated, 0);
    }

    let e = tok.encode(a, b, max_len, Truncation::LongestFirst).unwrap();
    assert!(e.ids.len() <= max_len);
    assert_eq!(e.ids.len(), e.type_ids.len());
    assert_eq!(e.ids.len() + e.num_truncated, needed);
    assert!(e.ids.iter().all(|&id| id >= 0 && (id as usize) < v));
    assert!(e.type_ids.iter().all(|&t| t == 0 || t == 1));
    let cls = tok.settings().cls_id as i32;
    let sep = tok.settings().sep_id as i32;
    assert_eq!(e.ids[0], cls);
    assert_eq!(*e.ids.last().unwrap(), sep);
    // Kept tokens are prefixes of each segment, type ids switch once.
    let first_len = e.type_ids.iter().take_while(|&&t| t == 0).count();
    assert!(e.type_ids[first_len..].iter().all(|&t| t == 1));
    assert_eq!(e.ids[first_len - 1], sep);
    let na = first_len - 2;
    assert_eq!(&e.ids[1..1 + na], &a_ids[..na]);
    if b.is_some() {
        let nb = e.ids.len() - first_len - 1;
        assert_eq!(&e.ids[first_len..first_len + nb], &scratch[..nb]);
    } else {
        assert_eq!(first_len, e.ids.len());
    }
}

fn run(seed: u64, cases: usize, max_chars: u64) {
    let enc = vocab();
    let v = enc.vocab().unwrap().len();
    let toks: Vec<Tokenizer> = settings_variants()
        .into_iter()
        .map(|s| Tokenizer::new(enc.vocab().unwrap(), s).unwrap())
        .collect();
    let mut rng = XorShift(seed);
    let mut scratch = Vec::new();
    for _ in 0..cases {
        let tok = &toks[rng.below(toks.len() as u64) as usize];
        let a = random_text(&mut rng, max_chars);
        let b = if rng.below(2) == 0 {
            Some(random_text(&mut rng, max_chars))
        } else {
            None
        };
        let max_len = match rng.below(4) {
            0 => rng.below(6) as usize,
            1 => rng.below(64) as usize,
            2 => 512,
            _ => usize::MAX,
        };
        check_case(tok, v, &a, b.as_deref(), max_len, &mut scratch);
    }
}

#[test]
fn fuzz_random_scalars_short() {
    run(0x1234_5678_9abc_def1, 20_000, 24);
}

#[test]
fn fuzz_random_scalars_long() {
    run(0x0bad_5eed_dead_beef, 400, 3000);
}

#[test]
fn fuzz_random_bytes() {
    let enc = vocab();
    let v = enc.vocab().unwrap().len();
    let toks: Vec<Tokenizer> = settings_variants()
        .into_iter()
        .map(|s| Tokenizer::new(enc.vocab().unwrap(), s).unwrap())
        .collect();
    let mut rng = XorShift(0xfeed_face_cafe_f00d);
    let mut scratch = Vec::new();
    let mut invalid = 0;
    for i in 0..20_000 {
        let n = rng.below(if i % 100 == 0 { 5000 } else { 64 }) as usize;
        let bytes: Vec<u8> = (0..n)
            .map(|_| {
                if rng.below(3) == 0 {
                    rng.next() as u8
                } else {
                    0x20 + rng.below(0x5f) as u8
                }
            })
            .collect();
        // The API takes &str: invalid UTF-8 is rejected before it, lossy text goes in.
        if std::str::from_utf8(&bytes).is_err() {
            invalid += 1;
        }
        let text = String::from_utf8_lossy(&bytes);
        let tok = &toks[i % toks.len()];
        let max_len = if i % 2 == 0 {
            usize::MAX
        } else {
            2 + rng.below(40) as usize
        };
        check_case(tok, v, &text, None, max_len, &mut scratch);
    }
    assert!(invalid > 1000);
}
