//! A model's own text limit (`tokenizer.max_seq_len`, sentence-transformers' `max_seq_length`):
//! the runtime's default token limit for text input. With truncation a longer text gives exactly
//! the output of the text cut at the limit, as sentence-transformers cuts it; without, the error
//! names the limit; an explicit `max_seq_len` overrides it; files without the key keep the
//! position table as their limit.

mod common;

use common::{Aligned, FpModel};
use q8bert::builder::{Head, Pooling};
use q8bert::tokenizer::Truncation;
use q8bert::{Model, Options, Status};

fn bytes(limit: Option<u32>) -> Vec<u8> {
    let fp = FpModel::with_real_vocab(Head::Embedding { pooling: Pooling::Mean, normalize: true }, 9);
    let mut b = fp.builder();
    if let Some(n) = limit {
        b.text_limit(n).unwrap();
    }
    b.to_bytes().unwrap()
}

const LONG: &str = "the cat sat on the mat and the dog ran away from the house";
/// LONG's first 6 word pieces: with [CLS] and [SEP], 8 tokens.
const CUT: &str = "the cat sat on the mat";

fn embed(m: &Model, text: &str) -> Vec<f32> {
    let mut out = vec![0.0; m.text_output_len(1)];
    m.run_text(&[text], None, &mut out).unwrap();
    out
}

#[test]
fn the_recorded_limit_is_the_default_and_truncation_cuts_there() {
    let b = bytes(Some(8));
    let a = Aligned::new(&b);
    let truncating = Options { truncation: Some(Truncation::LongestFirst), ..Options::default() };
    let m = Model::from_bytes(a.bytes(), &truncating).unwrap();
    assert_eq!(m.layout().text_limit, Some(8));
    assert_eq!(m.config().max_position_embeddings, 64);
    assert_eq!(m.max_seq_len(), 8);
    assert_eq!(m.encode(CUT, None).unwrap().ids.len(), 8, "CUT is exactly the limit");
    assert!(m.encode(LONG, None).unwrap().ids.len() == 8);
    let (long, cut) = (embed(&m, LONG), embed(&m, CUT));
    assert_eq!(long, cut, "a text past the limit gives the output of the text cut at the limit");

    // Without the limit (the same weights, no key) the long text is read whole: another output.
    let b0 = bytes(None);
    let a0 = Aligned::new(&b0);
    let whole = Model::from_bytes(a0.bytes(), &truncating).unwrap();
    assert_eq!(whole.layout().text_limit, None);
    assert_eq!(whole.max_seq_len(), 64);
    assert_eq!(embed(&whole, CUT), cut, "the key changes nothing but the limit");
    assert_ne!(embed(&whole, LONG), long);

    // An explicit max_seq_len overrides the recorded limit (up to the position table).
    let wider = Model::from_bytes(a.bytes(), &Options { max_seq_len: 64, ..truncating.clone() }).unwrap();
    assert_eq!(wider.max_seq_len(), 64);
    assert_eq!(embed(&wider, LONG), embed(&whole, LONG));
}

#[test]
fn by_default_a_model_with_a_limit_truncates_and_one_without_fails() {
    // As sentence-transformers: a recorded limit cuts the text there unless the caller asks
    // for an error (Truncation::Error, Q8BERT_FLAG_NO_TRUNCATE).
    let b = bytes(Some(8));
    let a = Aligned::new(&b);
    let m = Model::from_bytes(a.bytes(), &Options::default()).unwrap();
    assert_eq!(m.truncation(), Truncation::LongestFirst);
    assert_eq!(embed(&m, LONG), embed(&m, CUT));
    let b0 = bytes(None);
    let a0 = Aligned::new(&b0);
    let m0 = Model::from_bytes(a0.bytes(), &Options { max_seq_len: 8, ..Options::default() }).unwrap();
    assert_eq!(m0.truncation(), Truncation::Error);
    let mut out = vec![0.0; m0.text_output_len(1)];
    assert_eq!(m0.run_text(&[LONG], None, &mut out).unwrap_err().status, Status::SequenceTooLong);

    // The same through the C API's flags: none, TRUNCATE, NO_TRUNCATE, both (refused).
    use q8bert::ffi::*;
    for (flags, want) in [
        (0, Some(Status::Ok)),
        (Q8BERT_FLAG_TRUNCATE, Some(Status::Ok)),
        (Q8BERT_FLAG_NO_TRUNCATE, Some(Status::SequenceTooLong)),
        (Q8BERT_FLAG_TRUNCATE | Q8BERT_FLAG_NO_TRUNCATE, None),
    ] {
        let mut opts = std::mem::MaybeUninit::<q8bert_options>::zeroed();
        // SAFETY: writable storage for the options; q8bert_options_init fills every field.
        let mut opts = unsafe {
            q8bert_options_init(opts.as_mut_ptr());
            opts.assume_init()
        };
        opts.flags = flags;
        let mut model = std::ptr::null_mut();
        // SAFETY: valid buffer, options and out-pointer.
        let st = unsafe { q8bert_create_from_memory(a.bytes().as_ptr(), a.bytes().len(), &opts, &mut model) };
        let Some(want) = want else {
            assert_eq!(st, Status::UnsupportedOptions, "flags {flags:#x}");
            assert!(model.is_null());
            continue;
        };
        assert_eq!(st, Status::Ok, "flags {flags:#x}");
        let text = std::ffi::CString::new(LONG).unwrap();
        let texts = [text.as_ptr()];
        let mut out = vec![0f32; 64];
        // SAFETY: one valid C string; `out` has room for one embedding (hidden size < 64).
        let st = unsafe { q8bert_run_text(model, texts.as_ptr(), std::ptr::null(), 1, out.as_mut_ptr(), out.len()) };
        assert_eq!(st, want, "flags {flags:#x}");
        // SAFETY: created above.
        unsafe { q8bert_free(model) };
    }
}

#[test]
fn without_truncation_the_error_names_the_limit() {
    let b = bytes(Some(8));
    let a = Aligned::new(&b);
    let m = Model::from_bytes(a.bytes(), &Options { truncation: Some(Truncation::Error), ..Options::default() }).unwrap();
    let mut out = vec![0.0; m.text_output_len(1)];
    let err = m.run_text(&[LONG], None, &mut out).unwrap_err();
    assert_eq!(err.status, Status::SequenceTooLong);
    assert!(err.message.contains("the limit is 8"), "{}", err.message);
    m.run_text(&[CUT], None, &mut out).unwrap();
}

#[test]
fn the_builder_refuses_a_limit_outside_the_position_table() {
    let fp = FpModel::with_real_vocab(Head::Embedding { pooling: Pooling::Mean, normalize: true }, 9);
    for bad in [0, 1, 65] {
        let err = fp.builder().text_limit(bad).err().unwrap_or_else(|| panic!("{bad} accepted"));
        assert_eq!(err.status, Status::InvalidArgument);
        assert!(err.message.contains("2..=64"), "{}", err.message);
    }
}
