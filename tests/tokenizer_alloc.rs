//! The hot path allocates nothing once `Encoding`'s buffers have grown.

use q8bert::tokenizer::{encode_vocab, Encoding, Tokenizer, TokenizerSettings, Truncation};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        System.realloc(p, l, n)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn encode_into_does_not_allocate() {
    let txt = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/vocab.txt"))
        .unwrap();
    let tokens: Vec<&str> = txt.lines().collect();
    let enc = encode_vocab(&tokens).unwrap();
    let tok = Tokenizer::new(enc.vocab().unwrap(), TokenizerSettings::uncased()).unwrap();
    let texts = [
        "The quick brown fox jumps over the lazy dog, unaffably.",
        "Crème brûlée, naïve café — 東京で [MASK] 😀 ΟΔΥΣΣΕΥΣ \u{0}\u{200b}",
        "supercalifragilisticexpialidocious-ly antidisestablishmentarianism",
    ];
    let mut out = Encoding::default();
    out.ids.reserve(4096);
    out.type_ids.reserve(4096);
    let long = texts.concat().repeat(20);
    tok.encode_into(&long, Some(&long), 4096, Truncation::LongestFirst, &mut out)
        .unwrap();
    let before = ALLOCS.load(Ordering::Relaxed);
    for _ in 0..100 {
        for a in &texts {
            for b in &texts {
                tok.encode_into(a, Some(b), 512, Truncation::LongestFirst, &mut out)
                    .unwrap();
                tok.encode_into(a, None, 16, Truncation::LongestFirst, &mut out)
                    .unwrap();
            }
        }
    }
    assert_eq!(ALLOCS.load(Ordering::Relaxed) - before, 0);
}
