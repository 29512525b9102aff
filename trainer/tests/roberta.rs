//! RoBERTa and XLM-RoBERTa (`model_type: roberta`, `xlm-roberta`): tiny random checkpoints
//! written here in their own layout (`roberta.` prefix, a position table whose first
//! `pad_token_id + 1` rows are never used, one token type, RobertaClassificationHead's
//! `classifier.dense` / `classifier.out_proj`) with the byte-level BPE tokenizer of tests/data/bpe
//! (scripts/make_bpe_vectors.py, RoBERTa's pipeline) or the SentencePiece Unigram tokenizer of
//! tests/data/unigram (scripts/make_unigram_vectors.py, XLM-R's pipeline). The trainer's fp32 forward is checked against an independent numpy
//! RoBERTa (`tests/data/roberta_reference.py`), then `trainer quantize` and the runtime: its own
//! tokenization, int8 outputs, text pairs and the cross-encoder layout. Needs python3 with numpy.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use trainer::bert::{Bert, BertConfig};
use trainer::data::{Example, TextTokenizer};
use trainer::fidelity::{compare, fp32_outputs, load_fp32, Output, Pooling};

const BPE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/bpe");
const UNIGRAM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/unigram");

/// Which family and tokenizer files a test directory gets.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Flavor {
    /// RoBERTa with tokenizer.json.
    BpeJson,
    /// RoBERTa with vocab.json + merges.txt.
    BpeFiles,
    /// XLM-RoBERTa with its Unigram tokenizer.json.
    XlmR,
}
const POSITIONS: usize = 32;
const OFFSET: usize = 2; // pad_token_id 1, plus one

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("trainer-roberta-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn config() -> BertConfig {
    let mut cfg = BertConfig::tiny(4000);
    (cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads) = (32, 64, 4);
    cfg.max_position_embeddings = POSITIONS;
    cfg.type_vocab_size = 1;
    cfg.layer_norm_eps = 1e-5;
    cfg
}

/// BERT's tensor name -> RoBERTa's.
fn roberta_name(bert_name: &str, classifier: bool) -> String {
    let name = bert_name.strip_prefix("bert.").unwrap_or(bert_name);
    if classifier {
        if let Some(rest) = name.strip_prefix("pooler.dense.") {
            return format!("classifier.dense.{rest}");
        }
        if let Some(rest) = name.strip_prefix("classifier.") {
            return format!("classifier.out_proj.{rest}");
        }
        return format!("roberta.{name}");
    }
    name.to_string()
}

/// `model` (random, with a head of `labels` if given) saved as a RoBERTa or XLM-R directory.
fn save_roberta(model: &Bert, dir: &Path, labels: Option<usize>, flavor: Flavor) {
    let classifier = labels.is_some();
    let mut t: HashMap<String, candle_core::Tensor> =
        model.named_params().into_iter().map(|(n, v)| (roberta_name(&n, classifier), v.as_tensor().clone())).collect();
    // RoBERTa's table has OFFSET leading rows that real positions never use: make them large so
    // that reading them would show.
    let pos_name = if classifier { "roberta.embeddings.position_embeddings.weight" } else { "embeddings.position_embeddings.weight" };
    let pos = t.remove(pos_name).unwrap();
    let lead = (pos.narrow(0, 0, OFFSET).unwrap() * -3.0).unwrap();
    t.insert(pos_name.into(), candle_core::Tensor::cat(&[&lead, &pos], 0).unwrap());
    candle_core::safetensors::save(&t, dir.join("model.safetensors")).unwrap();
    let c = &model.cfg;
    let (model_type, prefix) = if flavor == Flavor::XlmR { ("xlm-roberta", "XLMRoberta") } else { ("roberta", "Roberta") };
    let mut cfg = serde_json::json!({
        "model_type": model_type,
        "architectures": [format!("{prefix}{}", if classifier { "ForSequenceClassification" } else { "Model" })],
        "hidden_size": c.hidden_size, "num_hidden_layers": c.num_hidden_layers, "num_attention_heads": c.num_attention_heads,
        "intermediate_size": c.intermediate_size, "hidden_act": "gelu", "max_position_embeddings": POSITIONS + OFFSET,
        "vocab_size": c.vocab_size, "type_vocab_size": 1, "layer_norm_eps": 1e-5, "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2,
    });
    if let Some(n) = labels {
        cfg["id2label"] = (0..n).map(|i| (i.to_string(), serde_json::json!(format!("LABEL_{i}")))).collect::<serde_json::Map<_, _>>().into();
    }
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    let (from, files): (&str, &[&str]) = match flavor {
        Flavor::BpeJson => (BPE, &["tokenizer.json"]),
        Flavor::BpeFiles => (BPE, &["vocab.json", "merges.txt"]),
        Flavor::XlmR => (UNIGRAM, &["tokenizer.json"]),
    };
    for f in files {
        std::fs::copy(format!("{from}/{f}"), dir.join(f)).unwrap();
    }
}

fn texts(pairs: bool) -> Vec<Example> {
    let a = ["The film was very good.", "the cat sat on the mat", "It's not bad, is it?", "Größere Straßen führen zur Universität.", "a dog <mask> here"];
    let b = ["An answer.", "The dog sat.", "It is good", "Der schnelle Fuchs", "no"];
    a.iter().zip(b).map(|(a, b)| Example { text_a: a.to_string(), text_b: pairs.then(|| b.to_string()), label: 0.0 }).collect()
}

/// The numpy reference's outputs for the directory's tokenization of `rows`.
fn reference(dir: &Path, rows: &[Example]) -> Vec<Vec<f64>> {
    let tok = TextTokenizer::from_dir(dir).unwrap();
    let ids: Vec<Vec<u32>> = tok.encode_all(rows, POSITIONS).unwrap().into_iter().map(|e| e.ids).collect();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/roberta_reference.py");
    let mut child = Command::new("python3").arg(script).arg(dir).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("python3 (with numpy) is needed");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(serde_json::to_string(&ids).unwrap().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "reference failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn output_of(labels: Option<usize>) -> Output {
    match labels {
        Some(n) => Output::Classification { labels: n },
        None => Output::Embedding { pooling: Pooling::Mean.into(), normalize: false },
    }
}

#[test]
fn roberta_fp32_forward_matches_an_independent_reference() {
    for (name, labels, pairs, flavor) in [
        ("base", None, false, Flavor::BpeJson),
        ("classifier", Some(3), false, Flavor::BpeJson),
        ("pairs", Some(2), true, Flavor::BpeJson),
        ("xlmr-base", None, false, Flavor::XlmR),
        ("xlmr-pairs", Some(2), true, Flavor::XlmR),
    ] {
        let dir = tmp(&format!("ref-{name}"));
        save_roberta(&Bert::random(config(), labels, 3).unwrap(), &dir, labels, flavor);
        let model = load_fp32(&dir, output_of(labels)).unwrap();
        assert!(model.cfg.is_roberta());
        assert_eq!(model.cfg.max_position_embeddings, POSITIONS);
        let tok = TextTokenizer::from_dir(&dir).unwrap();
        let rows = texts(pairs);
        let got = fp32_outputs(&model, &tok, &rows, output_of(labels), POSITIONS, 2).unwrap();
        let want = reference(&dir, &rows);
        let mut worst = 0.0f64;
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.len(), w.len());
            for (&g, &w) in g.iter().zip(w) {
                worst = worst.max((g as f64 - w).abs() / (1.0 + w.abs()));
            }
        }
        eprintln!("{name}: trainer fp32 vs numpy RoBERTa: max relative difference {worst:.2e}");
        assert!(worst < 1e-4, "{name}: {worst}");
    }
}

/// The position offset is read from pad_token_id: with 0 instead of 1 the trainer reads other
/// rows and its output moves (so the match above is not an accident of the offset).
#[test]
fn the_position_offset_follows_pad_token_id() {
    let dir = tmp("offset");
    save_roberta(&Bert::random(config(), None, 4).unwrap(), &dir, None, Flavor::BpeJson);
    let out = |dir: &Path| {
        let model = load_fp32(dir, output_of(None)).unwrap();
        fp32_outputs(&model, &TextTokenizer::from_dir(dir).unwrap(), &texts(false), output_of(None), 16, 2).unwrap()
    };
    let good = out(&dir);
    assert!(good.iter().flatten().all(|x| x.is_finite()));
    let path = dir.join("config.json");
    let mut cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    cfg["pad_token_id"] = 0.into();
    cfg["max_position_embeddings"] = (POSITIONS + 1).into();
    std::fs::write(&path, cfg.to_string()).unwrap();
    let Err(e) = load_fp32(&dir, output_of(None)) else { panic!("a 34-row table with offset 1 loaded") };
    assert!(format!("{e:#}").contains("position table has 34 rows"), "{e:#}");
}

/// Both tokenizer layouts give the same tokens, and the runtime's byte-level BPE (from the .q8b)
/// gives the trainer's: single texts and pairs (`<s> a </s></s> b </s>`, token types 0).
#[test]
fn tokenizer_layouts_and_the_runtime_agree() {
    let (a, b) = (tmp("tok-json"), tmp("tok-files"));
    let model = Bert::random(config(), None, 5).unwrap();
    save_roberta(&model, &a, None, Flavor::BpeJson);
    save_roberta(&model, &b, None, Flavor::BpeFiles);
    let (ta, tb) = (TextTokenizer::from_dir(&a).unwrap(), TextTokenizer::from_dir(&b).unwrap());
    assert!(ta.bpe.is_some() && tb.bpe.is_some());
    let out = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(["quantize", "--model", a.to_str().unwrap(), "--output", a.join("model.q8b").to_str().unwrap(), "--threads", "1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let m = q8bert::Model::open(a.join("model.q8b"), &q8bert::Options::default()).unwrap();
    assert!(matches!(m.tokenizer().settings().kind, q8bert::tokenizer::TokenizerKind::ByteLevelBpe { add_prefix_space: false }));
    for pairs in [false, true] {
        let rows = texts(pairs);
        let ea = ta.encode_all(&rows, POSITIONS).unwrap();
        let eb = tb.encode_all(&rows, POSITIONS).unwrap();
        for ((x, y), row) in ea.iter().zip(&eb).zip(&rows) {
            assert_eq!(x.ids, y.ids);
            let rt = m.tokenizer().encode(&row.text_a, row.text_b.as_deref(), POSITIONS, q8bert::tokenizer::Truncation::LongestFirst).unwrap();
            assert_eq!(rt.ids, x.ids.iter().map(|&i| i as i32).collect::<Vec<_>>());
            assert!(rt.type_ids.iter().all(|&t| t == 0));
            assert_eq!(x.ids[0], 0, "<s> first");
            if pairs {
                assert_eq!(x.ids.iter().filter(|&&i| i == 2).count(), 3, "</s></s> between, </s> last: {:?}", x.ids);
            }
        }
    }
}

/// An XLM-R directory converts with its whole Unigram tokenizer: the runtime opening the packed
/// file tokenizes every case of tests/data/unigram/vectors.jsonl as Hugging Face `tokenizers` did
/// (charsmap, scores, specials and the pair layout all travel in the file).
#[test]
fn xlm_roberta_file_carries_the_unigram_tokenizer() {
    let dir = tmp("xlmr-tok");
    save_roberta(&Bert::random(config(), None, 9).unwrap(), &dir, None, Flavor::XlmR);
    let tok = TextTokenizer::from_dir(&dir).unwrap();
    assert!(tok.unigram.is_some() && tok.bpe.is_none());
    let out = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(["quantize", "--model", dir.to_str().unwrap(), "--output", dir.join("model.q8b").to_str().unwrap(), "--threads", "1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let m = q8bert::Model::open(dir.join("model.q8b"), &q8bert::Options::default()).unwrap();
    assert_eq!(m.tokenizer().settings().kind, q8bert::tokenizer::TokenizerKind::Unigram);
    let lines = std::fs::read_to_string(format!("{UNIGRAM}/vectors.jsonl")).unwrap();
    let (mut n, mut bad) = (0, 0);
    for line in lines.lines() {
        let rec: serde_json::Value = serde_json::from_str(line).unwrap();
        let (a, b) = (rec["text_a"].as_str().unwrap(), rec["text_b"].as_str());
        let max_len = rec["max_len"].as_u64().map_or(usize::MAX, |m| m as usize);
        let want: Vec<i32> = rec["ids"].as_array().unwrap().iter().map(|x| x.as_i64().unwrap() as i32).collect();
        let got = m.tokenizer().encode(a, b, max_len, q8bert::tokenizer::Truncation::LongestFirst).map(|e| e.ids);
        n += 1;
        if got.as_ref() != Ok(&want) {
            bad += 1;
            eprintln!("{a:?} / {b:?}: want {want:?}, got {got:?}");
        }
    }
    assert!(n > 3000);
    assert_eq!(bad, 0, "{bad} of {n} cases differ");
    // The trainer's own tokenization (used for training and fidelity) is the same code.
    let rows = texts(true);
    for (e, row) in tok.encode_all(&rows, POSITIONS).unwrap().iter().zip(&rows) {
        let rt = m.tokenizer().encode(&row.text_a, row.text_b.as_deref(), POSITIONS, q8bert::tokenizer::Truncation::LongestFirst).unwrap();
        assert_eq!(rt.ids, e.ids.iter().map(|&i| i as i32).collect::<Vec<_>>());
    }
}

/// `trainer quantize` of the embedding, classifier and cross-encoder layouts: the runtime's int8
/// outputs follow the fp32 RoBERTa, labels come from id2label, and the classification head is
/// the tanh pooler on `<s>`.
#[test]
fn roberta_converts_and_runs_in_int8() {
    for (name, labels, pairs, flavor) in [
        ("base", None, false, Flavor::BpeJson),
        ("classifier", Some(2), false, Flavor::BpeJson),
        ("cross-encoder", Some(1), true, Flavor::BpeJson),
        ("xlmr-base", None, false, Flavor::XlmR),
        ("xlmr-classifier", Some(2), false, Flavor::XlmR),
        ("xlmr-cross-encoder", Some(1), true, Flavor::XlmR),
    ] {
        let dir = tmp(&format!("q-{name}"));
        save_roberta(&Bert::random(config(), labels, 6).unwrap(), &dir, labels, flavor);
        let out = Command::new(env!("CARGO_BIN_EXE_trainer"))
            .args(["quantize", "--model", dir.to_str().unwrap(), "--output", dir.join("model.q8b").to_str().unwrap(), "--threads", "1"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let m = q8bert::Model::open(dir.join("model.q8b"), &q8bert::Options::default()).unwrap();
        assert_eq!(m.config().max_position_embeddings, POSITIONS);
        let output = match labels {
            Some(1) => {
                assert_eq!(m.head().kind, q8bert::HeadKind::Regression);
                Output::Regression
            }
            Some(n) => {
                assert_eq!(m.head().kind, q8bert::HeadKind::Classification);
                assert_eq!(m.head().pooler_activation, q8bert::model::PoolerActivation::Tanh);
                Output::Classification { labels: n }
            }
            None => {
                assert_eq!(m.head().kind, q8bert::HeadKind::Embedding);
                Output::Embedding { pooling: Pooling::Mean.into(), normalize: true }
            }
        };
        let rows = texts(pairs);
        let (got, int8) = trainer::export::run_texts(&dir.join("model.q8b"), &rows, POSITIONS, 8, 1).unwrap();
        assert_eq!(got, output);
        let tok = TextTokenizer::from_dir(&dir).unwrap();
        let fp32 = fp32_outputs(&load_fp32(&dir, output).unwrap(), &tok, &rows, output, POSITIONS, 8).unwrap();
        let report = compare(output, &fp32, &int8, 1).unwrap();
        eprintln!("{name}: int8 vs fp32: cosine min {:.5}, max |diff| {:.3e}", report.cosine_min, report.max_abs_diff);
        match output {
            Output::Regression => assert!(report.max_abs_diff < 0.05, "{name}: {}", report.max_abs_diff),
            _ => assert!(report.cosine_min > 0.99, "{name}: {}", report.cosine_min),
        }
        if pairs {
            // The second text matters: the pair is one input.
            let (_, swapped) = trainer::export::run_texts(&dir.join("model.q8b"), &[Example { text_b: Some("something else entirely".into()), ..rows[0].clone() }], POSITIONS, 8, 1).unwrap();
            assert_ne!(swapped[0], int8[0]);
        }
    }
}

/// QAT fine-tuning runs on RoBERTa as on BERT: the packed model agrees with the fp32 one, and
/// the saved Hugging Face directory (BERT names, shifted positions, the BPE files) loads back to
/// the same function.
#[test]
fn roberta_fine_tunes_with_qat() {
    let root = tmp("qat");
    let model_dir = root.join("model");
    std::fs::create_dir_all(&model_dir).unwrap();
    save_roberta(&Bert::random(config(), None, 8).unwrap(), &model_dir, None, Flavor::BpeJson);
    let tsv = |path: &Path, n: usize, seed: u64| {
        let mut rng = trainer::rng::Rng::new(seed);
        let (pos, neg, filler) = (["good", "great", "fun"], ["bad", "awful", "dull"], ["the", "movie", "was", "a", "plot"]);
        let mut s = String::from("sentence\tlabel\n");
        for i in 0..n {
            let mut words: Vec<&str> = (0..3 + rng.below(5)).map(|_| filler[rng.below(filler.len())]).collect();
            let at = rng.below(words.len() + 1);
            words.insert(at, if i % 2 == 1 { pos[rng.below(3)] } else { neg[rng.below(3)] });
            s += &format!("{}\t{}\n", words.join(" "), i % 2);
        }
        std::fs::write(path, s).unwrap();
    };
    tsv(&root.join("train.tsv"), 96, 1);
    tsv(&root.join("dev.tsv"), 40, 2);
    let o = trainer::train::FineTuneOptions {
        model: model_dir.clone(),
        task: trainer::data::Task::Sst2,
        train_file: root.join("train.tsv"),
        eval_file: root.join("dev.tsv"),
        output_dir: root.join("out"),
        epochs: 3.0,
        lr: 1e-3,
        warmup_ratio: 0.1,
        weight_decay: 0.01,
        batch_size: 8,
        eval_batch_size: 16,
        max_seq_len: 16,
        seed: 7,
        eval_steps: 12,
        logging_steps: 6,
        max_train_examples: None,
        max_eval_examples: None,
        ema_decay: 0.99,
        qat_start_step: 2,
        calibrate_batches: 0,
        eval_at_start: false,
        teacher: None,
        distill_alpha: 0.0,
        act_range: trainer::train::ActRange::Ema,
        fp32: false,
        scheme: trainer::quant::Scheme::Q8BERT,
        int8_attention: false,
        max_grad_norm: 1.0,
        dropout: None,
        threads: 2,
        export: true,
        check_rows: None,
    };
    trainer::train::fine_tune(&o).unwrap();
    let out = root.join("out");
    let results: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("all_results.json")).unwrap()).unwrap();
    eprintln!("roberta QAT: eval_accuracy {}, runtime_agreement {}", results["eval_accuracy"], results["runtime_agreement"]);
    assert!(results["runtime_agreement"].as_f64().unwrap() >= 0.95);
    let m = q8bert::Model::open(out.join("model.q8b"), &q8bert::Options::default()).unwrap();
    assert!(matches!(m.tokenizer().settings().kind, q8bert::tokenizer::TokenizerKind::ByteLevelBpe { .. }));
    // The saved directory loads back as the same classifier.
    let saved = load_fp32(&out, Output::Classification { labels: 2 }).unwrap();
    assert_eq!(saved.cfg.max_position_embeddings, POSITIONS);
    let rows = texts(false);
    let tok = TextTokenizer::from_dir(&out).unwrap();
    assert!(tok.bpe.is_some());
    let a = fp32_outputs(&saved, &tok, &rows, Output::Classification { labels: 2 }, POSITIONS, 8).unwrap();
    let (_, int8) = trainer::export::run_texts(&out.join("model.q8b"), &rows, POSITIONS, 8, 1).unwrap();
    let agree = a.iter().zip(&int8).filter(|(f, q)| (f[1] > f[0]) == (q[1] > q[0])).count();
    assert!(agree >= 4, "saved fp32 and packed int8 agree on {agree}/5 labels");
}
