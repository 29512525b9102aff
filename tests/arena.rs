//! The caller's arena (`q8bert::arena`): models opened and run with every byte from one buffer,
//! as a firmware without a heap does. This test binary's global allocator sends the allocations
//! of a thread that enters an arena section to a real `Arena` over a static buffer, and every
//! other allocation (the test harness) to the system allocator.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Mutex;

use common::{tiny_config, Aligned, FpModel, Rng};
use q8bert::arena::{open_bound, Arena, ArenaError, RESERVE};
use q8bert::builder::{DenseActivation, Head, Pooling};
use q8bert::{Input, Model, Options};

const ARENA_BYTES: usize = 8 << 20;
#[repr(C, align(64))]
struct Memory([u8; ARENA_BYTES]);
static mut MEMORY: Memory = Memory([0; ARENA_BYTES]);
static ARENA: Arena = Arena::new();
/// One arena section at a time (the arena is single-threaded).
static SECTION: Mutex<()> = Mutex::new(());

thread_local! {
    static IN_ARENA: Cell<bool> = const { Cell::new(false) };
}

fn in_arena(p: *mut u8) -> bool {
    let base = std::ptr::addr_of!(MEMORY) as usize;
    (base..base + ARENA_BYTES).contains(&(p as usize))
}

struct Router;
// SAFETY: arena blocks are allocated only by the thread inside a section (holding SECTION),
// and freed only there (the test drops everything it made before leaving); anything else goes
// to the system allocator, told apart by address.
unsafe impl GlobalAlloc for Router {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // A failing test's panic message and backtrace go to the system allocator.
        if IN_ARENA.with(Cell::get) && !std::thread::panicking() {
            unsafe { ARENA.alloc(l) }
        } else {
            unsafe { System.alloc(l) }
        }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        if in_arena(p) {
            unsafe { ARENA.dealloc(p, l) }
        } else {
            unsafe { System.dealloc(p, l) }
        }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        if in_arena(p) {
            unsafe { ARENA.realloc(p, l, n) }
        } else {
            unsafe { System.realloc(p, l, n) }
        }
    }
}

#[global_allocator]
static ROUTER: Router = Router;

/// Runs `f` with this thread's allocations in the arena, which gets `capacity` bytes; checks
/// that everything allocated was given back.
fn with_arena<R>(capacity: usize, f: impl FnOnce(&Arena) -> R) -> R {
    let _guard = SECTION.lock().unwrap_or_else(|p| p.into_inner());
    // SAFETY: the memory is used only by ARENA, inside sections, one at a time.
    assert!(unsafe { ARENA.provide_raw(std::ptr::addr_of_mut!(MEMORY) as *mut u8, capacity.min(ARENA_BYTES)) });
    struct Leave;
    impl Drop for Leave {
        fn drop(&mut self) {
            IN_ARENA.with(|c| c.set(false));
        }
    }
    IN_ARENA.with(|c| c.set(true));
    let leave = Leave;
    let r = f(&ARENA);
    drop(leave);
    assert_eq!(ARENA.used(), 0, "blocks left in the arena");
    r
}

fn models() -> Vec<(&'static str, Vec<u8>)> {
    let mut config = tiny_config();
    config.max_position_embeddings = 64;
    let classifier = Head::Classification { labels: vec!["a".into(), "b".into(), "c".into()] };
    let mut out = vec![
        ("classifier", FpModel::random(config, classifier.clone(), 1).bytes()),
        ("classifier int8 attention", FpModel::random(config, classifier.clone(), 2).with_int8_attention(2.0, 2.0).with_int8_values(2.0).bytes()),
        ("embedder per-row", FpModel::random(config, Head::Embedding { pooling: Pooling::Mean, normalize: true }, 3).with_per_row_inputs().with_per_row_embeddings().with_per_row_zero_points().bytes()),
        ("token states dynamic", FpModel::random(config, Head::TokenStates, 4).with_per_row_inputs().with_dynamic_attention().bytes()),
        (
            "embedder dense chain",
            FpModel::random(config, Head::Embedding { pooling: Pooling::Cls, normalize: false }, 5)
                .with_pooling_modes(&[Pooling::Cls, Pooling::Mean, Pooling::Max])
                .with_dense(40, DenseActivation::Tanh, 6)
                .with_dense(24, DenseActivation::Identity, 7)
                .bytes(),
        ),
        ("wordpiece vocab (30522)", FpModel::with_real_vocab(classifier.clone(), 8).bytes()),
        ("byte-level BPE", FpModel::with_bpe_vocab(Head::TokenStates, 9).bytes()),
        ("unigram", FpModel::with_unigram_tokenizer_json(include_str!("data/unigram/tokenizer.json"), Head::Regression, 10).bytes()),
    ];
    let mut wide = tiny_config();
    (wide.hidden_size, wide.num_layers, wide.num_heads, wide.intermediate_size) = (128, 4, 4, 512);
    out.push(("hidden 128, 4 layers", FpModel::random(wide, Head::TokenStates, 11).bytes()));
    out
}

/// With `std` the GEMM keeps a thread-local scratch buffer: a run on the heap sizes it first,
/// so that it is not allocated inside (and left in) an arena section.
fn warm_gemm_scratch(model: &Model, batch: usize, seq_len: usize) {
    let mut out = vec![0f32; model.output_len(batch, seq_len)];
    model.run(&vec![1; batch * seq_len], None, None, batch, seq_len, &mut out).unwrap();
}

fn one() -> Options {
    Options { num_threads: 1, ..Default::default() }
}

#[test]
fn open_bound_covers_what_opening_allocates() {
    let mut loosest: f64 = 0.0;
    for (name, bytes) in models() {
        let buf = Aligned::new(&bytes);
        let bound = open_bound(buf.bytes());
        let used = with_arena(ARENA_BYTES, |arena| {
            let model = Model::from_bytes(buf.bytes(), &one()).unwrap();
            let used = arena.used();
            drop(model);
            used
        });
        eprintln!("{name:>28}: open uses {used:>8} bytes of the arena, bound {bound:>8} ({:.2}x)", bound as f64 / used as f64);
        assert!(used <= bound, "{name}: opening used {used} bytes, open_bound says {bound}");
        loosest = loosest.max(bound as f64 / used as f64);
    }
    eprintln!("loosest bound / use: {loosest:.2}");
}

#[test]
fn runs_in_the_arena_give_the_heap_runs_bits_and_reuse_their_memory() {
    let mut rng = Rng::new(3);
    for (name, bytes) in models() {
        let buf = Aligned::new(&bytes);
        let heap_model = Model::from_bytes(buf.bytes(), &one()).unwrap();
        for (batch, seq_len) in [(1, 8), (3, 17), (2, 24)] {
            let vocab = heap_model.config().vocab_size;
            let ids: Vec<i32> = (0..batch * seq_len).map(|_| rng.below(vocab) as i32).collect();
            let mask: Vec<i32> = (0..batch * seq_len).map(|i| i32::from(i % seq_len < seq_len - i / seq_len)).collect();
            let mut expected = vec![0f32; heap_model.output_len(batch, seq_len)];
            heap_model.run(&ids, None, Some(&mask), batch, seq_len, &mut expected).unwrap();
            warm_gemm_scratch(&heap_model, batch, seq_len);

            let bound = open_bound(buf.bytes()) + heap_model.working_memory(batch, seq_len).unwrap() + 32 * 128 + RESERVE;
            // Filled inside the section; allocated outside it, as everything that outlives it.
            let mut got = vec![0f32; expected.len()];
            let peak = with_arena(bound, |arena| {
                let (model, mut ws) = arena.open(buf.bytes(), &one(), batch, seq_len).unwrap();
                let input = Input { input_ids: &ids, token_type_ids: None, attention_mask: Some(&mask), batch, seq_len, pooling_skip: 0 };
                let mut out = vec![0f32; model.output_len(batch, seq_len)];
                let mut again = vec![0f32; out.len()];
                model.run_with(&mut ws, &input, &mut out).unwrap();
                let after_first = arena.used();
                for _ in 0..3 {
                    model.run_with(&mut ws, &input, &mut out).unwrap();
                    assert_eq!(arena.used(), after_first, "{name}: a run with a grown workspace allocates nothing that stays");
                }
                // `run` takes a workspace from the model's pool (std) and puts it back: the
                // second call allocates nothing that stays.
                drop(ws);
                model.run(&ids, None, Some(&mask), batch, seq_len, &mut again).unwrap();
                let pooled = arena.used();
                model.run(&ids, None, Some(&mask), batch, seq_len, &mut again).unwrap();
                assert_eq!(arena.used(), pooled, "{name}: Model::run reused its workspace");
                assert_eq!(again, out);
                got.copy_from_slice(&out);
                arena.peak()
            });
            assert!(got.iter().zip(&expected).all(|(a, b)| a.to_bits() == b.to_bits()), "{name} {batch}x{seq_len}: arena run differs from the heap run");
            assert!(peak <= bound, "{name}: peak {peak} over the bound {bound}");
        }
    }
}

#[test]
fn too_small_an_arena_is_a_clear_error_that_allocates_nothing() {
    let mut config = tiny_config();
    config.max_position_embeddings = 64;
    let bytes = FpModel::random(config, Head::TokenStates, 12).bytes();
    let buf = Aligned::new(&bytes);
    // Working memory (hundreds of KB) far above the model's structures.
    let (batch, seq_len) = (8, 64);
    let bound = open_bound(buf.bytes());
    // Too small for the model itself: refused before anything is allocated.
    with_arena(bound / 2, |arena| {
        let err = arena.open(buf.bytes(), &one(), batch, seq_len).err().expect("refused");
        assert_eq!(arena.peak(), 0, "nothing allocated");
        match err {
            ArenaError::TooSmall { needed, available } => {
                assert_eq!(available, bound / 2 - RESERVE);
                assert_eq!(needed, bound);
            }
            other => panic!("{other}"),
        }
    });
    // Room for the model, not for the working memory of the run shape: the model is closed
    // again and the error gives the total.
    let heap_model = Model::from_bytes(buf.bytes(), &one()).unwrap();
    let working = heap_model.working_memory(batch, seq_len).unwrap();
    warm_gemm_scratch(&heap_model, batch, seq_len);
    let (needed, capacity) = with_arena(bound + RESERVE + working / 2, |arena| {
        let err = arena.open(buf.bytes(), &one(), batch, seq_len).err().expect("refused");
        assert_eq!(arena.used(), 0);
        let message = err.to_string();
        assert!(message.contains("give it at least"), "{message}");
        match err {
            ArenaError::TooSmall { needed, .. } => (needed, arena.capacity()),
            other => panic!("{other}"),
        }
    });
    assert!(needed > capacity - RESERVE && needed >= working, "needed {needed}, capacity {capacity}, working memory {working}");
    // That many bytes are enough.
    with_arena(needed + RESERVE, |arena| {
        let (model, mut ws) = arena.open(buf.bytes(), &one(), batch, seq_len).unwrap();
        let ids = vec![5; batch * seq_len];
        assert!(open_bound(buf.bytes()) < working);
        let mut out = vec![0f32; model.output_len(batch, seq_len)];
        let input = Input { input_ids: &ids, token_type_ids: None, attention_mask: None, batch, seq_len, pooling_skip: 0 };
        model.run_with(&mut ws, &input, &mut out).unwrap();
    });
    // A bad run shape and a corrupt file are the model's errors.
    with_arena(ARENA_BYTES, |arena| {
        assert!(matches!(arena.open(buf.bytes(), &one(), 2, 1000), Err(ArenaError::Model(e)) if e.status == q8bert::Status::SequenceTooLong));
        let mut corrupt = bytes.clone();
        corrupt[200] ^= 0x55;
        let corrupt = Aligned::new(&corrupt);
        assert!(matches!(arena.open(corrupt.bytes(), &one(), 1, 8), Err(ArenaError::Model(_))));
    });
    // No memory at all.
    assert!(matches!(Arena::new().open(buf.bytes(), &one(), 1, 8), Err(ArenaError::NoMemory)));
}

#[test]
fn open_bound_of_a_corrupt_file_is_a_number() {
    // Every header count, section size and tensor size at its largest, and a truncated file:
    // the walk stops, the bound saturates, nothing panics (debug builds check overflow).
    let bytes = FpModel::with_real_vocab(Head::TokenStates, 13).bytes();
    let mut huge = bytes.clone();
    for b in &mut huge[24..80] {
        *b = 0xff;
    }
    let _ = open_bound(&huge);
    // The vocabulary bytes' size field (rank 1: after the name come dtype, rank, one dim,
    // offset) at u64::MAX: the tokenizer's term saturates instead of overflowing.
    let mut sizes = bytes.clone();
    let name = b"tokenizer.vocab.bytes";
    let at = sizes.windows(name.len()).position(|w| w == name).unwrap() + name.len() + 4 + 4 + 8 + 8;
    sizes[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    let bound = open_bound(&sizes);
    assert!(bound >= open_bound(&bytes), "{bound}");
    for len in [0, 10, 128, 200, bytes.len() / 2] {
        let _ = open_bound(&bytes[..len]);
    }
}
