//! Throughput (MB/s of input text) over the SST-2 train+dev sentences: WordPiece (BERT-uncased
//! vocab), byte-level BPE (tests/data/bpe/tokenizer.json, RoBERTa's pipeline) and SentencePiece
//! Unigram (tests/data/unigram/tokenizer.json, XLM-R's pipeline).
//! Compare with scripts/bench_hf_tokenizer.py on the same text.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use q8bert::tokenizer::{encode_merges, encode_scores, encode_vocab, Charsmap, Encoding, Merges, Tokenizer, TokenizerKind, TokenizerSettings, Truncation, Unigram};
use std::path::Path;

const GLUE: &str = "/work/shared/data/glue/SST-2";

fn sentences() -> Option<Vec<String>> {
    let mut out = Vec::new();
    for split in ["train.tsv", "dev.tsv"] {
        let text = std::fs::read_to_string(Path::new(GLUE).join(split)).ok()?;
        for line in text.lines().skip(1) {
            if let Some((sentence, _label)) = line.rsplit_once('\t') {
                out.push(sentence.to_string());
            }
        }
    }
    Some(out)
}

fn bench(c: &mut Criterion) {
    let Some(sents) = sentences() else {
        eprintln!("SST-2 not found under {GLUE}; skipping tokenizer benchmark");
        return;
    };
    let vocab_txt =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/vocab.txt"))
            .expect("tests/data/vocab.txt");
    let tokens: Vec<&str> = vocab_txt.lines().collect();
    let enc = encode_vocab(&tokens).unwrap();
    let bytes: usize = sents.iter().map(|s| s.len()).sum();
    eprintln!(
        "SST-2 train+dev: {} sentences, {} bytes",
        sents.len(),
        bytes
    );

    let mut g = c.benchmark_group("sst2");
    g.throughput(Throughput::BytesDecimal(bytes as u64));
    g.sample_size(20);
    for (name, lower) in [("encode_uncased", true), ("encode_cased", false)] {
        let mut s = TokenizerSettings::uncased();
        s.do_lower_case = lower;
        s.strip_accents = lower;
        let tok = Tokenizer::new(enc.vocab().unwrap(), s).unwrap();
        let mut out = Encoding::default();
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut n = 0usize;
                for s in &sents {
                    tok.encode_into(s, None, 512, Truncation::LongestFirst, &mut out)
                        .unwrap();
                    n += out.ids.len();
                }
                n
            })
        });
    }
    // Byte-level BPE (RoBERTa): vocabulary and merges of tests/data/bpe/tokenizer.json.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/bpe/tokenizer.json")).unwrap()).unwrap();
    let map = json["model"]["vocab"].as_object().unwrap();
    let mut bpe_vocab = vec![String::new(); map.len()];
    for (t, id) in map {
        bpe_vocab[id.as_u64().unwrap() as usize] = t.clone();
    }
    let merges: Vec<(String, String)> = json["model"]["merges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m[0].as_str().unwrap().to_string(), m[1].as_str().unwrap().to_string()))
        .collect();
    let bpe_enc = encode_vocab(&bpe_vocab).unwrap();
    let rows = encode_merges(&bpe_enc.vocab().unwrap(), &merges).unwrap();
    let id = |t: &str| bpe_vocab.iter().position(|v| v == t).unwrap() as u32;
    let mut s = TokenizerSettings::uncased();
    (s.unk_id, s.cls_id, s.sep_id, s.pad_id) = (id("<unk>"), id("<s>"), id("</s>"), id("<pad>"));
    s.kind = TokenizerKind::ByteLevelBpe { add_prefix_space: false };
    let tok = Tokenizer::with_merges(bpe_enc.vocab().unwrap(), Merges::from_table(&rows, bpe_vocab.len()).unwrap(), s).unwrap();
    let mut out = Encoding::default();
    g.bench_function("encode_byte_level_bpe", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for s in &sents {
                tok.encode_into(s, None, 512, Truncation::LongestFirst, &mut out).unwrap();
                n += out.ids.len();
            }
            n
        })
    });
    // SentencePiece Unigram (XLM-R): pieces, scores and charsmap of tests/data/unigram/tokenizer.json.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/unigram/tokenizer.json")).unwrap()).unwrap();
    let pieces: Vec<String> = json["model"]["vocab"].as_array().unwrap().iter().map(|p| p[0].as_str().unwrap().to_string()).collect();
    let scores: Vec<f64> = json["model"]["vocab"].as_array().unwrap().iter().map(|p| p[1].as_f64().unwrap()).collect();
    use base64::Engine;
    let charsmap = base64::engine::general_purpose::STANDARD.decode(json["normalizer"]["normalizers"][0]["precompiled_charsmap"].as_str().unwrap()).unwrap();
    let uni_enc = encode_vocab(&pieces).unwrap();
    let table = encode_scores(&scores);
    let unigram = Unigram::new(pieces.len(), &table, Some(Charsmap::from_bytes(&charsmap).unwrap()), true).unwrap();
    let id = |t: &str| pieces.iter().position(|v| v == t).unwrap() as u32;
    let mut s = TokenizerSettings::uncased();
    (s.unk_id, s.cls_id, s.sep_id, s.pad_id) = (id("<unk>"), id("<s>"), id("</s>"), id("<pad>"));
    s.kind = TokenizerKind::Unigram;
    let tok = Tokenizer::with_unigram(uni_enc.vocab().unwrap(), unigram, s).unwrap();
    g.bench_function("encode_unigram", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for s in &sents {
                tok.encode_into(s, None, 512, Truncation::LongestFirst, &mut out).unwrap();
                n += out.ids.len();
            }
            n
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
