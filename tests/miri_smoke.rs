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
