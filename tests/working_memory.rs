//! `Model::working_memory` / `q8bert_working_memory` is an upper bound of what a run allocates:
//! a counting global allocator measures the peak of live heap bytes during real runs.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use common::{tiny_config, Aligned, FpModel, Rng};
use q8bert::builder::{Head, Pooling};
use q8bert::{Model, Options};

struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grow(n: usize) {
    let now = LIVE.fetch_add(n, Relaxed) + n;
    PEAK.fetch_max(now, Relaxed);
}

// SAFETY: forwards to the system allocator; the counters are atomics (no allocation).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        grow(l.size());
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        grow(l.size());
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        // Counted as the new block existing next to the old one, as it may during the copy.
        grow(n);
        let r = unsafe { System.realloc(p, l, n) };
        LIVE.fetch_sub(l.size(), Relaxed);
        r
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Relaxed);
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

#[test]
fn working_memory_bounds_what_a_run_allocates() {
    let mut config = tiny_config();
    config.max_position_embeddings = 64;
    let heads = [
        Head::Classification { labels: vec!["a".into(), "b".into(), "c".into()] },
        Head::Embedding { pooling: Pooling::Mean, normalize: true },
        Head::TokenStates,
    ];
    let mut rng = Rng::new(9);
    let mut worst: f64 = 0.0;
    // Each head with fp32 attention, and the classifier also with int8 attention (scores and P·V);
    // every head also with per-row input scales (format 1.2).
    let models = heads.iter().map(|h| (h.clone(), false, false)).chain([(heads[0].clone(), true, false)]).chain(heads.iter().map(|h| (h.clone(), false, true)));
    // Plus an embedding head with a Dense layer wider than H (its rows come from the pooled buffer).
    let models = models.chain([(Head::Embedding { pooling: Pooling::Max, normalize: true }, false, false)]);
    // Plus three pooling modes into a chain of three Dense layers (format 1.10): the first layer's
    // input (3 H) is wider than a token row, the second layer the widest output.
    let models = models.chain([(Head::Embedding { pooling: Pooling::Cls, normalize: false }, false, false)]);
    // Plus dynamic int8 attention (format 1.6) with per-row inputs, on a classifier and token states.
    let dynamic = [Head::Classification { labels: vec!["a".into(), "b".into()] }, Head::TokenStates];
    let models = models.map(|(h, i, p)| (h, i, p, false)).chain(dynamic.into_iter().map(|h| (h, false, true, true)));
    // And with static linear inputs: the QKV epilogue's row buffer is there only for the heads.
    let models = models.chain([(Head::TokenStates, false, false, true)]);
    for (head, int8_attention, per_row, dynamic_attention) in models {
        let fp = FpModel::random(config, head.clone(), 4);
        let fp = if matches!(head, Head::Embedding { pooling: Pooling::Max, .. }) { fp.with_dense(96, q8bert::builder::DenseActivation::Tanh, 5) } else { fp };
        let fp = if matches!(head, Head::Embedding { pooling: Pooling::Cls, .. }) {
            use q8bert::builder::DenseActivation::{Identity, Tanh};
            fp.with_pooling_modes(&[Pooling::Cls, Pooling::Mean, Pooling::Max]).with_dense(40, Tanh, 6).with_dense(600, Identity, 7).with_dense(24, Tanh, 8)
        } else {
            fp
        };
        let fp = if int8_attention { fp.with_int8_attention(2.0, 2.0).with_int8_values(2.0) } else { fp };
        let fp = if per_row { fp.with_per_row_inputs() } else { fp };
        let fp = if dynamic_attention { fp.with_dynamic_attention() } else { fp };
        let buf = Aligned::new(&fp.bytes());
        for threads in [1, 2] {
            for (batch, seq_len) in [(1, 1), (1, 64), (3, 17), (8, 64), (32, 8)] {
                // A fresh model each time: its workspace pool starts empty.
                let model = Model::from_bytes(buf.bytes(), &Options { num_threads: threads, ..Default::default() }).unwrap();
                let ids: Vec<i32> = (0..batch * seq_len).map(|_| rng.below(40) as i32).collect();
                let mut out = vec![0f32; model.output_len(batch, seq_len)];
                let bound = model.working_memory(batch, seq_len).unwrap();
                let mut c_bound = 0usize;
                let c_model = q8bert_c(&buf, threads);
                unsafe {
                    assert_eq!(q8bert::ffi::q8bert_working_memory(c_model, batch, seq_len, &mut c_bound), q8bert::Status::Ok);
                    q8bert::ffi::q8bert_free(c_model);
                }
                assert_eq!(c_bound, bound);
                let before = LIVE.load(Relaxed);
                PEAK.store(before, Relaxed);
                model.run(&ids, None, None, batch, seq_len, &mut out).unwrap();
                let used = PEAK.load(Relaxed) - before;
                assert!(used <= bound, "{head:?} (int8 attention {int8_attention}) threads {threads} batch {batch} x {seq_len}: run allocated {used} bytes, working_memory says {bound}");
                worst = worst.max(used as f64 / bound as f64);
                let kind = format!("{head:?}").split_whitespace().next().unwrap().to_string();
                let name = if int8_attention { kind + " int8-attn" } else if dynamic_attention { kind + " dynamic" } else if per_row { kind + " per-row" } else { kind };
                eprintln!("{name:>24} threads {threads} batch {batch:>2} x {seq_len:>2}: peak {used:>8} <= bound {bound:>8}");
            }
        }
    }
    eprintln!("largest peak / bound ratio: {worst:.3}");
    assert!(worst > 0.5, "the bound is tight enough to be useful");
}

fn q8bert_c(buf: &Aligned, threads: usize) -> *mut q8bert::ffi::q8bert_model {
    use q8bert::ffi::*;
    let mut o = std::mem::MaybeUninit::<q8bert_options>::uninit();
    // SAFETY: writable storage for the options, which the call initializes.
    let mut o = unsafe {
        q8bert_options_init(o.as_mut_ptr());
        o.assume_init()
    };
    o.num_threads = threads as u32;
    let mut m = std::ptr::null_mut();
    // SAFETY: the buffer outlives the model (freed in the caller before the buffer drops).
    assert_eq!(unsafe { q8bert_create_from_memory(buf.bytes().as_ptr(), buf.bytes().len(), &o, &mut m) }, q8bert::Status::Ok);
    m
}
