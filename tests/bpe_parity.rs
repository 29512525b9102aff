//! Byte-level BPE (RoBERTa's tokenizer) against Hugging Face `tokenizers` on
//! tests/data/bpe/vectors.jsonl (made by scripts/make_bpe_vectors.py from the
//! tokenizer.json beside it): ids, truncation and GPT-2's pre-tokenizer pieces.

use q8bert::tokenizer::{encode_merges, encode_vocab, Encoding, Merges, Tokenizer, TokenizerKind, TokenizerSettings, Truncation};
use serde_json::Value;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/bpe");

/// Vocabulary by id and merges (as `["a", "b"]` or `"a b"`) of a tokenizer.json.
fn read_tokenizer_json() -> (Vec<String>, Vec<(String, String)>) {
    let text = std::fs::read_to_string(format!("{DATA}/tokenizer.json")).unwrap();
    let json: Value = serde_json::from_str(&text).unwrap();
    let map = json["model"]["vocab"].as_object().unwrap();
    let mut vocab = vec![String::new(); map.len()];
    for (tok, id) in map {
        vocab[id.as_u64().unwrap() as usize] = tok.clone();
    }
    let merges = json["model"]["merges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| match m {
            Value::String(s) => {
                let (a, b) = s.split_once(' ').unwrap();
                (a.to_string(), b.to_string())
            }
            Value::Array(p) => (p[0].as_str().unwrap().to_string(), p[1].as_str().unwrap().to_string()),
            other => panic!("merge {other}"),
        })
        .collect();
    (vocab, merges)
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
    s.kind = TokenizerKind::ByteLevelBpe { add_prefix_space: false };
    s
}

fn ints(v: &Value) -> Vec<i32> {
    v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap() as i32).collect()
}

#[test]
fn byte_level_bpe_matches_hugging_face() {
    let (vocab_strings, merge_pairs) = read_tokenizer_json();
    let encoded = encode_vocab(&vocab_strings).unwrap();
    let vocab = encoded.vocab().unwrap();
    let rows = encode_merges(&vocab, &merge_pairs).unwrap();
    let merges = Merges::from_table(&rows, vocab.len()).unwrap();
    assert_eq!(merges.len(), merge_pairs.len());
    let tok = Tokenizer::with_merges(vocab, merges, settings(&vocab_strings)).unwrap();

    let lines = std::fs::read_to_string(format!("{DATA}/vectors.jsonl")).unwrap();
    let mut out = Encoding::default();
    let (mut total, mut failed, mut truncated, mut pairs, mut piece_checks) = (0, 0, 0, 0, 0);
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
        if let Some(p) = rec.get("pieces").and_then(Value::as_array) {
            let want: Vec<&str> = p.iter().map(|w| w.as_str().unwrap()).collect();
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
    eprintln!("{total} cases ({pairs} pairs, {truncated} truncated, {piece_checks} piece checks), {failed} mismatches");
    assert!(total >= 3000 && truncated >= 300 && pairs >= 500, "too few cases: {total}");
    assert_eq!(failed, 0);
}

#[test]
fn merge_table_rejects_bad_rows() {
    let (vocab_strings, merge_pairs) = read_tokenizer_json();
    let encoded = encode_vocab(&vocab_strings).unwrap();
    let vocab = encoded.vocab().unwrap();
    let rows = encode_merges(&vocab, &merge_pairs).unwrap();
    // Unsorted, out-of-range id, out-of-range rank, ragged.
    let mut swapped = rows.clone();
    swapped.swap(0, 4);
    swapped.swap(1, 5);
    swapped.swap(2, 6);
    swapped.swap(3, 7);
    assert!(Merges::from_table(&swapped, vocab.len()).is_err());
    let mut bad_id = rows.clone();
    bad_id[2] = vocab.len() as u32;
    assert!(Merges::from_table(&bad_id, vocab.len()).is_err());
    let mut bad_rank = rows.clone();
    bad_rank[3] = (rows.len() / 4) as u32;
    assert!(Merges::from_table(&bad_rank, vocab.len()).is_err());
    assert!(Merges::from_table(&rows[..rows.len() - 1], vocab.len()).is_err());
    // A merge whose result is not in the vocabulary.
    assert!(encode_merges(&vocab, &[("Ġ".to_string(), "zzzq".to_string())]).is_err());
}
