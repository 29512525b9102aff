//! Exact parity with Hugging Face `tokenizers` on tests/data/tokenizer_vectors.jsonl
//! (made by scripts/make_tokenizer_vectors.py). Set Q8BERT_EXTRA_TOKENIZER_VECTORS to a
//! colon-separated list of more files in the same format (e.g. the exhaustive one).

use q8bert::tokenizer::{encode_vocab, Encoding, Tokenizer, TokenizerSettings, Truncation, Vocab};
use serde_json::Value;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");

fn settings(v: &Value) -> TokenizerSettings {
    let mut s = TokenizerSettings::uncased();
    s.do_lower_case = v["do_lower_case"].as_bool().unwrap();
    s.strip_accents = v["strip_accents"].as_bool().unwrap();
    s.tokenize_chinese_chars = v["tokenize_chinese_chars"].as_bool().unwrap();
    s
}

fn ints(v: &Value) -> Vec<i32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap() as i32)
        .collect()
}

/// Returns (cases, cases with truncation, mismatches).
fn check_file(vocab: Vocab<'_>, path: &str) -> (usize, usize, usize) {
    let lines = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut out = Encoding::default();
    let (mut total, mut failed, mut truncated_cases, mut word_checks) =
        (0usize, 0usize, 0usize, 0usize);
    let mut tokenizers: Vec<(String, Tokenizer)> = Vec::new();
    for line in lines.lines() {
        let rec: Value = serde_json::from_str(line).unwrap();
        let key = rec["settings"].to_string();
        let idx = match tokenizers.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                tokenizers.push((
                    key,
                    Tokenizer::new(vocab, settings(&rec["settings"])).unwrap(),
                ));
                tokenizers.len() - 1
            }
        };
        let tok = &tokenizers[idx].1;
        let a = rec["text_a"].as_str().unwrap();
        let b = rec["text_b"].as_str();
        let (max_len, trunc) = match rec["max_len"].as_u64() {
            Some(m) => (m as usize, Truncation::LongestFirst),
            None => (usize::MAX, Truncation::Error),
        };
        let want_ids = ints(&rec["ids"]);
        let want_types = ints(&rec["type_ids"]);
        let want_dropped = rec["num_truncated"].as_u64().unwrap() as usize;
        total += 1;
        if want_dropped > 0 {
            truncated_cases += 1;
        }
        if let Some(words) = rec.get("words").and_then(|w| w.as_array()) {
            let want: Vec<&str> = words.iter().map(|w| w.as_str().unwrap()).collect();
            let mut got: Vec<String> = Vec::new();
            tok.words(a, |w| got.push(w.to_string()));
            word_checks += 1;
            if got != want {
                failed += 1;
                eprintln!(
                    "WORDS MISMATCH a={:?} settings={}\n  want {:?}\n  got  {:?}",
                    a, rec["settings"], want, got
                );
                continue;
            }
        }
        match tok.encode_into(a, b, max_len, trunc, &mut out) {
            Ok(())
                if out.ids == want_ids
                    && out.type_ids == want_types
                    && out.num_truncated == want_dropped => {}
            r => {
                failed += 1;
                if failed <= 20 {
                    eprintln!(
                        "MISMATCH a={:?} b={:?} settings={} max_len={:?}\n  want {:?} {:?} dropped {}\n  got  {:?} {:?} {:?} dropped {}",
                        a, b, rec["settings"], rec["max_len"], want_ids, want_types, want_dropped,
                        r, out.ids, out.type_ids, out.num_truncated
                    );
                }
            }
        }
    }
    if word_checks > 0 {
        println!("  ({word_checks} cases also compared normalized words)");
    }
    (total, truncated_cases, failed)
}

#[test]
fn parity_with_hf_tokenizers() {
    let vocab_txt = std::fs::read_to_string(format!("{DATA}/vocab.txt")).unwrap();
    let tokens: Vec<&str> = vocab_txt.lines().collect();
    let enc = encode_vocab(&tokens).unwrap();
    let vocab = enc.vocab().unwrap();
    assert_eq!(vocab.len(), 30522);
    assert_eq!(vocab.lookup("[UNK]"), Some(100));
    assert_eq!(vocab.lookup("[CLS]"), Some(101));
    assert_eq!(vocab.lookup("[SEP]"), Some(102));

    let mut paths = vec![format!("{DATA}/tokenizer_vectors.jsonl")];
    if let Ok(extra) = std::env::var("Q8BERT_EXTRA_TOKENIZER_VECTORS") {
        paths.extend(extra.split(':').filter(|p| !p.is_empty()).map(String::from));
    }
    let mut bad = 0;
    for (i, path) in paths.iter().enumerate() {
        let (total, truncated, failed) = check_file(vocab, path);
        println!(
            "tokenizer parity: {path}: {total} cases ({truncated} truncated), {failed} mismatches"
        );
        if i == 0 {
            assert!(total >= 2000);
        }
        bad += failed;
    }
    assert_eq!(bad, 0, "cases differ from HF tokenizers");
}
