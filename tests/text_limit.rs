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
    let truncating = Options { truncation: Truncation::LongestFirst, ..Options::default() };
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
fn without_truncation_the_error_names_the_limit() {
    let b = bytes(Some(8));
    let a = Aligned::new(&b);
    let m = Model::from_bytes(a.bytes(), &Options::default()).unwrap();
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
