//! SentencePiece Unigram (XLM-RoBERTa's tokenizer) against Hugging Face `tokenizers` on
//! tests/data/unigram/vectors.jsonl (made by scripts/make_unigram_vectors.py from the
//! tokenizer.json beside it, a Unigram trained with `sentencepiece`'s nmt_nfkc charsmap):
//! grapheme clusters, the normalized text, the Metaspace pieces, ids and truncation.

use base64::Engine;
use q8bert::tokenizer::unigram::grapheme_end;
use q8bert::tokenizer::{encode_scores, encode_vocab, Charsmap, Encoding, Tokenizer, TokenizerKind, TokenizerSettings, Truncation, Unigram};
use serde_json::Value;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/unigram");

/// Pieces, scores and the charsmap bytes of the tokenizer.json.
fn read_tokenizer_json() -> (Vec<String>, Vec<f64>, Vec<u8>) {
    let text = std::fs::read_to_string(format!("{DATA}/tokenizer.json")).unwrap();
    let json: Value = serde_json::from_str(&text).unwrap();
    let (mut pieces, mut scores) = (Vec::new(), Vec::new());
    for p in json["model"]["vocab"].as_array().unwrap() {
        pieces.push(p[0].as_str().unwrap().to_string());
        scores.push(p[1].as_f64().unwrap());
    }
    let b64 = json["normalizer"]["normalizers"][0]["precompiled_charsmap"].as_str().unwrap();
    let charsmap = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
    (pieces, scores, charsmap)
}

fn settings(vocab: &[String]) -> TokenizerSettings {
    let id = |t: &str| vocab.iter().position(|v| v == t).unwrap() as u32;
    let mut s = TokenizerSettings::uncased();
    s.do_lower_case = false;
    s.strip_accents = false;
    s.unk_id = id("<unk>");
    s.cls_id = id("<s>");
    s.sep_id = id("</s>");
    s.pad_id = id("<pad>");
    s.kind = TokenizerKind::Unigram;
    s
}

fn ints(v: &Value) -> Vec<i32> {
    v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap() as i32).collect()
}

#[test]
fn unigram_matches_hugging_face() {
    let (pieces, scores, charsmap) = read_tokenizer_json();
    let encoded = encode_vocab(&pieces).unwrap();
    let vocab = encoded.vocab().unwrap();
    let table = encode_scores(&scores);
    let map = Charsmap::from_bytes(&charsmap).unwrap();
    let unigram = Unigram::new(vocab.len(), &table, Some(map), true).unwrap();
    let tok = Tokenizer::with_unigram(vocab, unigram, settings(&pieces)).unwrap();

    let lines = std::fs::read_to_string(format!("{DATA}/vectors.jsonl")).unwrap();
    let mut out = Encoding::default();
    let (mut total, mut failed, mut truncated, mut pairs, mut piece_checks, mut unk) = (0, 0, 0, 0, 0, 0);
    let (mut non_ascii, mut changed) = (0, 0);
    for line in lines.lines() {
        let rec: Value = serde_json::from_str(line).unwrap();
        let a = rec["text_a"].as_str().unwrap();
        let b = rec["text_b"].as_str();
        let (max_len, trunc) = match rec["max_len"].as_u64() {
            Some(m) => (m as usize, Truncation::LongestFirst),
            None => (usize::MAX, Truncation::Error),
        };
        let want = ints(&rec["ids"]);
        let dropped = rec["num_truncated"].as_u64().unwrap() as usize;
        total += 1;
        truncated += (dropped > 0) as usize;
        pairs += b.is_some() as usize;
        unk += want.contains(&3) as usize;
        non_ascii += !a.is_ascii() as usize;
        if let Some(norm) = rec.get("normalized").and_then(Value::as_str) {
            let mut got = String::new();
            unigram.normalize(a, &mut got);
            changed += (norm != a) as usize;
            if got != norm {
                failed += 1;
                eprintln!("NORMALIZED {a:?}\n  want {norm:?}\n  got  {got:?}");
                continue;
            }
            let want: Vec<&str> = rec["graphemes"].as_array().unwrap().iter().map(|w| w.as_str().unwrap()).collect();
            let mut got = Vec::new();
            let mut i = 0;
            while i < a.len() {
                let e = grapheme_end(a, i);
                got.push(&a[i..e]);
                i = e;
            }
            if got != want {
                failed += 1;
                eprintln!("GRAPHEMES {a:?}\n  want {want:?}\n  got  {got:?}");
                continue;
            }
            let want: Vec<&str> = rec["pieces"].as_array().unwrap().iter().map(|w| w.as_str().unwrap()).collect();
            let mut got: Vec<String> = Vec::new();
            tok.words(a, |w| got.push(w.to_string()));
            piece_checks += 1;
            if got != want {
                failed += 1;
                eprintln!("PIECES {a:?}\n  want {want:?}\n  got  {got:?}");
                continue;
            }
        }
        match tok.encode_into(a, b, max_len, trunc, &mut out) {
            Ok(()) if out.ids == want && out.num_truncated == dropped && out.type_ids.iter().all(|&t| t == 0) => {}
            r => {
                failed += 1;
                if failed <= 20 {
                    eprintln!("IDS {a:?} / {b:?} max_len {max_len}: {r:?}\n  want {want:?} (-{dropped})\n  got  {:?} (-{})", out.ids, out.num_truncated);
                }
            }
        }
    }
    eprintln!("{total} cases ({pairs} pairs, {truncated} truncated, {piece_checks} grapheme+normalizer+piece checks, {changed} changed by the normalizer, {non_ascii} non-ASCII, {unk} with <unk>), {failed} mismatches");
    assert!(total >= 3000 && truncated >= 300 && pairs >= 500 && changed >= 500 && non_ascii >= 2000 && unk >= 100, "too few cases");
    assert_eq!(failed, 0);
}
