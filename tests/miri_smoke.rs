//! A small end-to-end pass through the code with `unsafe` in it (model storage lifetime, the
//! thread pool and its task slots, the C ABI), sized to run under Miri:
//! `cargo +nightly miri test --test miri_smoke` (scripts/sanitize.sh miri). Also a normal test.

mod common;

use std::ptr::{null, null_mut};

use common::{tiny_vocab, Aligned, FpModel};
use q8bert::builder::{BertConfig, Head};
use q8bert::{KernelKind, Model, Options, Status};

fn micro() -> Vec<u8> {
    let config = BertConfig {
        vocab_size: 12,
        hidden_size: 8,
        num_layers: 1,
        num_heads: 2,
        intermediate_size: 12,
        max_position_embeddings: 8,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
    };
    let mut m = FpModel::random(config, Head::Classification { labels: vec!["a".into(), "b".into()] }, 2);
    m.vocab = tiny_vocab(12);
    m.bytes()
}

#[test]
fn load_run_tokenize_and_c_api() {
    let bytes = micro();
    let buf = Aligned::new(&bytes);
    // Truncated and corrupted files are rejected.
    for len in [0, 100, 128, bytes.len() / 2, bytes.len() - 1] {
        assert!(Model::from_bytes(&buf.bytes()[..len], &Options::default()).is_err());
    }
    let opts = Options { num_threads: 2, kernel: Some(KernelKind::Scalar), ..Default::default() };
    let model = Model::from_bytes(buf.bytes(), &opts).unwrap();
    let ids = [2, 7, 8, 3, 2, 9, 3, 0];
    let mask = [1, 1, 1, 1, 1, 1, 1, 0];
    let mut out = [0f32; 4];
    model.run(&ids, None, Some(&mask), 2, 4, &mut out).unwrap();
    let mut alone = [0f32; 2];
    model.run(&ids[4..7], None, None, 1, 3, &mut alone).unwrap();
    assert_eq!(out[2..].iter().map(|v| v.to_bits()).collect::<Vec<_>>(), alone.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
    let enc = model.encode("w0 w1w2 unknown", Some("w3")).unwrap();
    assert_eq!(enc.ids.first(), Some(&2));
    // Two host threads share the model (and its 2-thread pool).
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                let mut o = [0f32; 4];
                model.run(&ids, None, Some(&mask), 2, 4, &mut o).unwrap();
                assert_eq!(o.map(f32::to_bits), out.map(f32::to_bits));
            });
        }
    });
    unsafe {
        use q8bert::ffi::*;
        let mut m = null_mut();
        assert_eq!(q8bert_create_from_memory(buf.bytes().as_ptr(), buf.bytes().len(), null(), &mut m), Status::Ok);
        let mut o = [0f32; 4];
        assert_eq!(q8bert_run(m, ids.as_ptr(), null(), mask.as_ptr(), 2, 4, o.as_mut_ptr(), 4), Status::Ok);
        assert_eq!(q8bert_run(m, ids.as_ptr(), null(), null(), 2, 4, o.as_mut_ptr(), 3), Status::BufferTooSmall);
        assert!(!std::ffi::CStr::from_ptr(q8bert_last_error()).to_bytes().is_empty());
        let text = c"w0 w1";
        let (mut tids, mut n) = ([0i32; 8], 0usize);
        assert_eq!(q8bert_tokenize(m, text.as_ptr(), null(), tids.as_mut_ptr(), null_mut(), 8, &mut n), Status::Ok);
        assert_eq!(n, 4);
        q8bert_free(m);
    }
}

/// The arena allocator (`q8bert::arena`, a firmware's only allocator) under random allocations,
/// frees in any order and reallocations: blocks aligned, disjoint, their bytes kept; everything
/// given back at the end; exhaustion is a null pointer, and the last `RESERVE` bytes go to small
/// requests only.
#[test]
fn arena_allocator() {
    use q8bert::arena::{Arena, RESERVE};
    use std::alloc::{GlobalAlloc, Layout};

    let mut memory = vec![0u64; 8192];
    let arena = Arena::new();
    // SAFETY: `memory` outlives every block (all freed below) and nothing else uses it.
    assert!(unsafe { arena.provide_raw(memory.as_mut_ptr() as *mut u8, 8192 * 8) });
    let mut rng = common::Rng::new(7);
    // (pointer, layout, fill byte)
    let mut live: Vec<(*mut u8, Layout, u8)> = Vec::new();
    let check = |p: *mut u8, l: Layout, fill: u8| {
        assert_eq!(p as usize % l.align(), 0);
        // SAFETY: a live block of `l.size()` bytes.
        assert!(unsafe { std::slice::from_raw_parts(p, l.size()) }.iter().all(|&b| b == fill));
    };
    for step in 0..600 {
        let fill = step as u8;
        match rng.below(4) {
            0 | 1 => {
                let layout = Layout::from_size_align(rng.below(300), 1 << rng.below(7)).unwrap();
                // SAFETY: valid layout; the block is written only within its size.
                let p = unsafe { arena.alloc(layout) };
                if p.is_null() {
                    assert!(layout.size() + RESERVE + 64 + 16 > arena.capacity() - arena.used(), "refused with room left");
                    continue;
                }
                unsafe { p.write_bytes(fill, layout.size()) };
                live.push((p, layout, fill));
            }
            2 if !live.is_empty() => {
                let (p, l, f) = live.swap_remove(rng.below(live.len()));
                check(p, l, f);
                // SAFETY: allocated above with this layout, freed once.
                unsafe { arena.dealloc(p, l) };
            }
            _ if !live.is_empty() => {
                let i = rng.below(live.len());
                let (p, l, f) = live[i];
                check(p, l, f);
                let new_size = rng.below(400);
                // SAFETY: a live block with its layout; the result written only within new_size.
                let q = unsafe { arena.realloc(p, l, new_size) };
                if q.is_null() {
                    continue;
                }
                let nl = Layout::from_size_align(new_size, l.align()).unwrap();
                check(q, Layout::from_size_align(new_size.min(l.size()), l.align()).unwrap(), f);
                unsafe { q.write_bytes(fill, new_size) };
                live[i] = (q, nl, fill);
            }
            _ => {}
        }
        // Disjoint blocks.
        let mut spans: Vec<(usize, usize)> = live.iter().map(|(p, l, _)| (*p as usize, *p as usize + l.size())).collect();
        spans.sort();
        assert!(spans.windows(2).all(|w| w[0].1 <= w[1].0));
    }
    for (p, l, f) in live.drain(..) {
        check(p, l, f);
        unsafe { arena.dealloc(p, l) };
    }
    assert_eq!(arena.used(), 0);
    assert!(arena.peak() > 0);

    // Exhaustion and the reserve: a large request may not eat into the last RESERVE bytes,
    // a small one may.
    let big = Layout::from_size_align(arena.capacity() - RESERVE, 8).unwrap();
    assert!(unsafe { arena.alloc(big) }.is_null());
    let fits = Layout::from_size_align(arena.capacity() - RESERVE - 64, 8).unwrap();
    let p = unsafe { arena.alloc(fits) };
    assert!(!p.is_null());
    assert!(arena.available() < 64);
    let small = Layout::from_size_align(RESERVE / 2, 8).unwrap();
    let s = unsafe { arena.alloc(small) };
    assert!(!s.is_null(), "a small request gets the reserve");
    // The top block grows in place.
    assert_eq!(unsafe { arena.realloc(s, small, RESERVE / 2 + 16) }, s);
    unsafe {
        arena.dealloc(s, Layout::from_size_align(RESERVE / 2 + 16, 8).unwrap());
        arena.dealloc(p, fits);
    }
    assert_eq!(arena.used(), 0);
    // New memory only once every block is back.
    let p = unsafe { arena.alloc(small) };
    assert!(!unsafe { arena.provide_raw(memory.as_mut_ptr() as *mut u8, 64) });
    unsafe { arena.dealloc(p, small) };
    assert!(unsafe { arena.provide_raw(memory.as_mut_ptr() as *mut u8, 64) });
}
