//! Writes the binding conformance suite: two small models over the real BERT vocabulary (a
//! classifier with the paper's static scheme and an embedder with the per-token scheme, format
//! 1.3), a prompted embedder (1.5), a byte-level BPE cross-encoder (RoBERTa-style, 1.8), a
//! corrupt copy, and the outputs the Rust API gives for a fixed list of texts, as exact
//! f32 bit patterns (hex u32).
//!
//!   cargo run --release --example make_conformance_model -- OUTDIR
//!
//! OUTDIR/expected.json is the suite; OUTDIR/expected.tsv holds the same facts one per line for
//! languages without a JSON parser in their standard library (C++, Java).

#[path = "../tests/common/mod.rs"]
mod common;

use std::fmt::Write as _;
use std::path::PathBuf;

use common::FpModel;
use q8bert::builder::{Head, Pooling};
use q8bert::ffi::{Q8BERT_ACTIVATIONS_MIXED, Q8BERT_ACTIVATIONS_PER_ROW, Q8BERT_ACTIVATIONS_STATIC};
use q8bert::{Model, Options, Prompt};
use serde_json::json;

/// Plain, accented, CJK, emoji, empty, punctuation-heavy and upper-case inputs.
const TEXTS: &[&str] = &[
    "a gripping, funny film.",
    "Dull.",
    "Naïve café owners 東京 🎉",
    "",
    "the plot is dull and the acting is even worse",
    "ONE of the BEST films of the year!!!",
];

/// (query, passage) pairs for the byte-level BPE cross-encoder: contractions, accents, CJK,
/// emoji, a `<mask>` after spaces, an empty passage.
const BPE_PAIRS: &[(&str, &str)] = &[
    ("what's a good film?", "It's one of the best films of the year."),
    ("café", "Naïve café owners 東京 🎉"),
    ("  spaces  and\u{3000}ideographic", "a <mask> token"),
    ("empty passage", ""),
];

/// Pairs for the XLM-R-style cross-encoder: several scripts, text the charsmap rewrites
/// (fullwidth, a ligature, a combining accent), and an empty passage.
const UNIGRAM_PAIRS: &[(&str, &str)] = &[
    ("Wo ist der Bahnhof?", "Der Bahnhof ist in der Stadtmitte."),
    ("ｆｕｌｌ ｗｉｄｔｈ ﬁle", "Cafe\u{301} 東京 — привет мир 🎉"),
    ("  spaces  and\u{3000}ideographic", "a <mask> token"),
    ("empty passage", ""),
];

fn hex(v: &[f32]) -> Vec<String> {
    v.iter().map(|x| format!("{:08x}", x.to_bits())).collect()
}

/// `q8bert_info.activations` of a model, as the C API reports it: each binding reads the field
/// from its own copy of the struct and must find this value.
fn activations(model: &Model) -> u32 {
    match (model.layout().per_row_linears(), model.layout().linears().count()) {
        (0, _) => Q8BERT_ACTIVATIONS_STATIC,
        (p, all) if p == all => Q8BERT_ACTIVATIONS_PER_ROW,
        _ => Q8BERT_ACTIVATIONS_MIXED,
    }
}

fn main() {
    let out: PathBuf = std::env::args().nth(1).expect("usage: make_conformance_model OUTDIR").into();
    std::fs::create_dir_all(&out).unwrap();
    let labels = vec!["negative".to_string(), "positive".to_string()];

    let cls_path = out.join("classify.q8b");
    let cls_bytes = FpModel::with_real_vocab(Head::Classification { labels: labels.clone() }, 11).bytes();
    std::fs::write(&cls_path, &cls_bytes).unwrap();
    let emb_path = out.join("embed.q8b");
    FpModel::with_real_vocab(Head::Embedding { pooling: Pooling::Mean, normalize: true }, 12)
        .with_per_row_inputs()
        .with_per_row_embeddings()
        .builder()
        .write(&emb_path)
        .unwrap();
    // sentence-transformers prompts: a default prompt, and pooling that leaves the prompt out.
    let prompt_path = out.join("prompt.q8b");
    let prompts = [("query", "query: "), ("passage", "passage: ")];
    let mut pb = FpModel::with_real_vocab(Head::Embedding { pooling: Pooling::Mean, normalize: true }, 13).with_per_row_inputs().builder();
    pb.prompts(prompts.iter().map(|(n, t)| (n.to_string(), t.to_string())).collect(), Some("query")).unwrap();
    pb.include_prompt(false);
    pb.write(&prompt_path).unwrap();
    // A RoBERTa-style cross-encoder: byte-level BPE (format 1.8), text pairs, one score.
    let bpe_path = out.join("bpe.q8b");
    FpModel::with_bpe_vocab(Head::Regression, 14).with_per_row_inputs().builder().write(&bpe_path).unwrap();
    // An XLM-R-style cross-encoder: SentencePiece Unigram with its charsmap (format 1.9).
    let unigram_path = out.join("unigram.q8b");
    let unigram_json = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/unigram/tokenizer.json")).unwrap();
    FpModel::with_unigram_tokenizer_json(&unigram_json, Head::Regression, 15).with_per_row_inputs().builder().write(&unigram_path).unwrap();
    // A flipped byte in the magic: every binding must surface the library's status and message.
    let mut corrupt = cls_bytes.clone();
    corrupt[0] ^= 0xff;
    let corrupt_path = out.join("corrupt.q8b");
    std::fs::write(&corrupt_path, &corrupt).unwrap();

    let opts = Options::default();
    let cls = Model::open(&cls_path, &opts).unwrap();
    let emb = Model::open(&emb_path, &opts).unwrap();
    let (cls_activations, emb_activations) = (activations(&cls), activations(&emb));
    assert_eq!((cls_activations, emb_activations), (Q8BERT_ACTIVATIONS_STATIC, Q8BERT_ACTIVATIONS_PER_ROW));
    let pm = Model::open(&prompt_path, &opts).unwrap();
    let prompted = |p: Prompt| -> Vec<Vec<String>> {
        TEXTS
            .iter()
            .map(|t| {
                let mut o = vec![0.0; pm.text_output_len(1)];
                pm.run_text_prompt(p, &[t], None, &mut o).unwrap();
                hex(&o)
            })
            .collect()
    };
    let mut tokens = Vec::new();
    let mut classify = Vec::new();
    let mut embed = Vec::new();
    for t in TEXTS {
        assert!(!t.contains(['\t', '\n']), "expected.tsv cannot hold tabs or newlines");
        tokens.push(cls.encode(t, None).unwrap().ids);
        let mut o = vec![0.0; cls.text_output_len(1)];
        cls.run_text(&[t], None, &mut o).unwrap();
        classify.push(o);
        let mut e = vec![0.0; emb.text_output_len(1)];
        emb.run_text(&[t], None, &mut e).unwrap();
        embed.push(e);
    }
    // Token ids in, with padding: the second row is masked at its last position.
    let (batch, seq_len) = (2usize, 4usize);
    let run_ids = [101, 7592, 2088, 102, 101, 7592, 102, 0];
    let run_mask = [1, 1, 1, 1, 1, 1, 1, 0];
    let mut run_out = vec![0.0; cls.output_len(batch, seq_len)];
    cls.run(&run_ids, None, Some(&run_mask), batch, seq_len, &mut run_out).unwrap();
    let err = Model::open(&corrupt_path, &opts).err().expect("the corrupt file must be rejected");
    let bpe = Model::open(&bpe_path, &opts).unwrap();
    let mut bpe_tokens = Vec::new();
    let mut bpe_scores = Vec::new();
    for (a, b) in BPE_PAIRS {
        bpe_tokens.push(bpe.encode(a, Some(b)).unwrap().ids);
        let mut o = vec![0.0; bpe.text_output_len(1)];
        bpe.run_text(&[a], Some(&[b]), &mut o).unwrap();
        bpe_scores.push(o[0]);
    }
    let unigram = Model::open(&unigram_path, &opts).unwrap();
    let mut unigram_tokens = Vec::new();
    let mut unigram_scores = Vec::new();
    for (a, b) in UNIGRAM_PAIRS {
        unigram_tokens.push(unigram.encode(a, Some(b)).unwrap().ids);
        let mut o = vec![0.0; unigram.text_output_len(1)];
        unigram.run_text(&[a], Some(&[b]), &mut o).unwrap();
        unigram_scores.push(o[0]);
    }

    let doc = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "classify_model": "classify.q8b",
        "embed_model": "embed.q8b",
        "corrupt_model": "corrupt.q8b",
        "labels": labels,
        "hidden_size": emb.config().hidden_size,
        "activations": { "classify": cls_activations, "embed": emb_activations },
        "texts": TEXTS,
        "tokens": tokens,
        "classify": classify.iter().map(|v| hex(v)).collect::<Vec<_>>(),
        "embed": embed.iter().map(|v| hex(v)).collect::<Vec<_>>(),
        "run": { "ids": run_ids, "mask": run_mask, "batch": batch, "seq_len": seq_len, "output": hex(&run_out) },
        "corrupt": { "status": err.status as u32, "message": err.message },
        "bpe_model": "bpe.q8b",
        "bpe_pairs": BPE_PAIRS,
        "bpe_tokens": bpe_tokens,
        "bpe_scores": hex(&bpe_scores),
        "unigram_model": "unigram.q8b",
        "unigram_pairs": UNIGRAM_PAIRS,
        "unigram_tokens": unigram_tokens,
        "unigram_scores": hex(&unigram_scores),
        "prompt_model": "prompt.q8b",
        "prompts": prompts.iter().map(|(n, t)| (n.to_string(), json!(t))).collect::<serde_json::Map<_, _>>(),
        "default_prompt_name": "query",
        "prompted": {
            "default": prompted(Prompt::Default),
            "passage": prompted(Prompt::Name("passage")),
            "none": prompted(Prompt::None),
        },
    });
    std::fs::write(out.join("expected.json"), serde_json::to_string_pretty(&doc).unwrap() + "\n").unwrap();

    let mut tsv = String::new();
    let join = |v: &[String]| v.join(" ");
    let ints = |v: &[i32]| v.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(" ");
    writeln!(tsv, "version\t{}", env!("CARGO_PKG_VERSION")).unwrap();
    writeln!(tsv, "labels\t{}", labels.join("\t")).unwrap();
    writeln!(tsv, "activations\t{cls_activations} {emb_activations}").unwrap();
    for (i, t) in TEXTS.iter().enumerate() {
        writeln!(tsv, "text\t{i}\t{t}").unwrap();
        writeln!(tsv, "tokens\t{i}\t{}", ints(&tokens[i])).unwrap();
        writeln!(tsv, "classify\t{i}\t{}", join(&hex(&classify[i]))).unwrap();
        writeln!(tsv, "embed\t{i}\t{}", join(&hex(&embed[i]))).unwrap();
    }
    writeln!(tsv, "run_shape\t{batch} {seq_len}").unwrap();
    writeln!(tsv, "run_ids\t{}", ints(&run_ids)).unwrap();
    writeln!(tsv, "run_mask\t{}", ints(&run_mask)).unwrap();
    writeln!(tsv, "run_output\t{}", join(&hex(&run_out))).unwrap();
    writeln!(tsv, "prompt_model\tprompt.q8b").unwrap();
    writeln!(tsv, "default_prompt_name\tquery").unwrap();
    for (n, t) in prompts {
        writeln!(tsv, "prompt\t{n}\t{t}").unwrap();
    }
    for (kind, p) in [("default", Prompt::Default), ("passage", Prompt::Name("passage")), ("none", Prompt::None)] {
        for (i, h) in prompted(p).iter().enumerate() {
            writeln!(tsv, "prompted\t{kind}\t{i}\t{}", join(h)).unwrap();
        }
    }
    writeln!(tsv, "bpe_model\tbpe.q8b").unwrap();
    for (i, (a, b)) in BPE_PAIRS.iter().enumerate() {
        writeln!(tsv, "bpe_pair\t{i}\t{a}\t{b}").unwrap();
        writeln!(tsv, "bpe_tokens\t{i}\t{}", ints(&bpe_tokens[i])).unwrap();
        writeln!(tsv, "bpe_score\t{i}\t{}", hex(&bpe_scores[i..i + 1])[0]).unwrap();
    }
    writeln!(tsv, "unigram_model\tunigram.q8b").unwrap();
    for (i, (a, b)) in UNIGRAM_PAIRS.iter().enumerate() {
        writeln!(tsv, "unigram_pair\t{i}\t{a}\t{b}").unwrap();
        writeln!(tsv, "unigram_tokens\t{i}\t{}", ints(&unigram_tokens[i])).unwrap();
        writeln!(tsv, "unigram_score\t{i}\t{}", hex(&unigram_scores[i..i + 1])[0]).unwrap();
    }
    writeln!(tsv, "corrupt_status\t{}", err.status as u32).unwrap();
    writeln!(tsv, "corrupt_message\t{}", err.message.replace(['\t', '\n'], " ")).unwrap();
    std::fs::write(out.join("expected.tsv"), tsv).unwrap();
    println!("conformance suite written to {}", out.display());
}
