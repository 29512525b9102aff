//! The tokenizers (WordPiece; byte-level BPE when flag bit 3 is set, SentencePiece Unigram when
//! the length nibble is 15) on arbitrary bytes
//! (lossily made UTF-8, as the C API rejects invalid UTF-8 before tokenizing), single texts and
//! pairs, every limit and truncation policy.
#![no_main]

use libfuzzer_sys::fuzz_target;
use q8bert::tokenizer::{Encoding, Truncation};
use q8bert_fuzz::{bpe_text_model, text_model, unigram_text_model, Input};

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    let flags = inp.u8();
    let unigram = flags >> 4 == 15;
    let model = if unigram { unigram_text_model() } else if flags & 8 != 0 { bpe_text_model() } else { text_model() };
    let max_len = match flags >> 4 {
        0 => usize::MAX,
        15 if flags & 8 != 0 => usize::MAX,
        n => n as usize * 3 - 2,
    };
    let split = inp.u16() as usize;
    let rest = inp.rest();
    let (a, b) = rest.split_at(split.min(rest.len()));
    let (a, b) = (String::from_utf8_lossy(a), String::from_utf8_lossy(b));
    let truncation = if flags & 1 != 0 { Truncation::LongestFirst } else { Truncation::Error };
    let text_b = (flags & 2 != 0).then_some(&*b);
    let mut enc = Encoding::default();
    if model.encode_into(&a, text_b, max_len, truncation, &mut enc).is_ok() {
        assert!(enc.ids.len() <= max_len && enc.ids.len() == enc.type_ids.len());
        let vocab = model.config().vocab_size as i32;
        assert!(enc.ids.iter().all(|&i| (0..vocab).contains(&i)));
        if flags & 8 != 0 || unigram {
            assert!(enc.type_ids.iter().all(|&t| t == 0), "byte-level BPE and Unigram give one token type");
        }
    }
    let mut ids = Vec::new();
    model.tokenizer().tokenize_ids(&a, &mut ids);
    if flags & 4 != 0 && !a.is_empty() {
        let texts = [&*a];
        let pair = text_b.map(|b| [b]);
        let mut out = vec![0.0f32; model.text_output_len(1)];
        let _ = model.run_text(&texts, pair.as_ref().map(|p| &p[..]), &mut out);
    }
});
