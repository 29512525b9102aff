//! Text in, answers out: the runtime's tokenizer wired to the forward pass, in Rust and through
//! the C ABI (classify example), with truncation and invalid-input handling.

mod common;

use common::{Aligned, FpModel};
use q8bert::builder::{Head, Pooling};
use q8bert::tokenizer::Truncation;
use q8bert::{Model, Options, Status};

fn labels() -> Head {
    Head::Classification { labels: vec!["negative".into(), "positive".into()] }
}

#[test]
fn run_text_equals_encode_then_run() {
    let bytes = FpModel::with_real_vocab(labels(), 1).bytes();
    let buf = Aligned::new(&bytes);
    let model = Model::from_bytes(buf.bytes(), &Options::default()).unwrap();
    let texts = ["a gripping, funny film.", "Dull.", "Naïve café owners 東京 🎉"];
    let mut batched = vec![0.0; model.text_output_len(3)];
    model.run_text(&texts, None, &mut batched).unwrap();
    for (i, t) in texts.iter().enumerate() {
        let enc = model.encode(t, None).unwrap();
        assert_eq!(enc.ids[0], 101, "starts with [CLS]");
        assert_eq!(*enc.ids.last().unwrap(), 102, "ends with [SEP]");
        let mut alone = vec![0.0; 2];
        model.run(&enc.ids, Some(&enc.type_ids), None, 1, enc.ids.len(), &mut alone).unwrap();
        assert_eq!(&batched[i * 2..i * 2 + 2], &alone[..], "text {i}");
    }
}

#[test]
fn sentence_pairs_get_token_types() {
    let bytes = FpModel::with_real_vocab(Head::Regression, 2).bytes();
    let buf = Aligned::new(&bytes);
    let model = Model::from_bytes(buf.bytes(), &Options::default()).unwrap();
    let enc = model.encode("the cat sat", Some("a cat was sitting")).unwrap();
    let sep = enc.ids.iter().position(|&i| i == 102).unwrap();
    assert!(enc.type_ids[..=sep].iter().all(|&t| t == 0));
    assert!(enc.type_ids[sep + 1..].iter().all(|&t| t == 1));
    let mut out = [0.0f32; 1];
    model.run_text(&["the cat sat"], Some(&["a cat was sitting"]), &mut out).unwrap();
    let mut direct = [0.0f32; 1];
    model.run(&enc.ids, Some(&enc.type_ids), None, 1, enc.ids.len(), &mut direct).unwrap();
    assert_eq!(out, direct);
}

#[test]
fn long_text_errors_or_truncates_as_configured() {
    let bytes = FpModel::with_real_vocab(labels(), 3).bytes();
    let buf = Aligned::new(&bytes);
    let long = "word ".repeat(100);
    let strict = Model::from_bytes(buf.bytes(), &Options::default()).unwrap();
    let err = strict.run_text(&[&long], None, &mut [0.0; 2]).unwrap_err();
    assert_eq!(err.status, Status::SequenceTooLong);
    assert!(err.message.contains("102"), "says how many tokens are needed: {}", err.message);

    let opts = Options { truncation: Some(Truncation::LongestFirst), max_seq_len: 16, ..Default::default() };
    let lenient = Model::from_bytes(buf.bytes(), &opts).unwrap();
    let enc = lenient.encode(&long, None).unwrap();
    assert_eq!(enc.ids.len(), 16);
    assert_eq!(enc.num_truncated, 86);
    lenient.run_text(&[&long], None, &mut [0.0; 2]).unwrap();
    assert_eq!(Model::from_bytes(buf.bytes(), &Options { max_seq_len: 65, ..Default::default() }).err().unwrap().status, Status::InvalidArgument);
}

#[test]
fn embedding_model_returns_unit_vectors() {
    let bytes = FpModel::with_real_vocab(Head::Embedding { pooling: Pooling::Mean, normalize: true }, 4).bytes();
    let buf = Aligned::new(&bytes);
    let model = Model::from_bytes(buf.bytes(), &Options::default()).unwrap();
    let mut out = vec![0.0; model.text_output_len(2)];
    model.run_text(&["semantic search", "vector databases"], None, &mut out).unwrap();
    for e in out.chunks(32) {
        let norm: f32 = e.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    }
}

#[cfg(unix)]
mod c_abi {
    use super::*;
    use q8bert::ffi::*;
    use std::ffi::{c_char, CStr, CString};

    fn create(bytes: &[u8]) -> *mut q8bert_model {
        let mut m = std::ptr::null_mut();
        let st = unsafe { q8bert_create_from_memory(bytes.as_ptr(), bytes.len(), std::ptr::null(), &mut m) };
        assert_eq!(st, Status::Ok);
        m
    }

    #[test]
    fn tokenize_reports_needed_size_and_rejects_bad_utf8() {
        let bytes = FpModel::with_real_vocab(labels(), 5).bytes();
        let buf = Aligned::new(&bytes);
        let m = create(buf.bytes());
        let text = CString::new("hello world").unwrap();
        let (mut ids, mut types, mut len) = ([0i32; 8], [0i32; 8], 0usize);
        let st = unsafe { q8bert_tokenize(m, text.as_ptr(), std::ptr::null(), ids.as_mut_ptr(), types.as_mut_ptr(), 2, &mut len) };
        assert_eq!(st, Status::BufferTooSmall);
        assert_eq!(len, 4, "[CLS] hello world [SEP]");
        let st = unsafe { q8bert_tokenize(m, text.as_ptr(), std::ptr::null(), ids.as_mut_ptr(), types.as_mut_ptr(), 8, &mut len) };
        assert_eq!(st, Status::Ok);
        assert_eq!(&ids[..4], &[101, 7592, 2088, 102]);

        let bad = [b'o', b'k', 0xff, 0xfe, 0];
        let st = unsafe { q8bert_tokenize(m, bad.as_ptr() as *const c_char, std::ptr::null(), ids.as_mut_ptr(), std::ptr::null_mut(), 8, &mut len) };
        assert_eq!(st, Status::InvalidUtf8);
        let msg = unsafe { CStr::from_ptr(q8bert_last_error()) }.to_string_lossy().into_owned();
        assert!(msg.contains("offset 2"), "{msg}");

        let texts = [text.as_ptr(), bad.as_ptr() as *const c_char];
        let mut out = [0.0f32; 4];
        let st = unsafe { q8bert_run_text(m, texts.as_ptr(), std::ptr::null(), 2, out.as_mut_ptr(), 4) };
        assert_eq!(st, Status::InvalidUtf8);
        let null_texts = [text.as_ptr(), std::ptr::null()];
        let st = unsafe { q8bert_run_text(m, null_texts.as_ptr(), std::ptr::null(), 2, out.as_mut_ptr(), 4) };
        assert_eq!(st, Status::NullArgument);

        let long = CString::new("word ".repeat(100)).unwrap();
        let (mut big, mut dropped) = ([0i32; 64], 0usize);
        let st = unsafe {
            q8bert_tokenize_ex(m, long.as_ptr(), std::ptr::null(), 10, Q8BERT_TRUNCATION_LONGEST_FIRST, big.as_mut_ptr(), std::ptr::null_mut(), 64, &mut len, &mut dropped)
        };
        assert_eq!((st, len, dropped), (Status::Ok, 10, 92));
        unsafe { q8bert_free(m) };
    }
}
