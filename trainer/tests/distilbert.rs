//! DistilBERT (`model_type: distilbert`): a tiny random checkpoint written here in DistilBERT's
//! own layout (its config keys and tensor names; `distilbert.` prefix, `pre_classifier` and
//! `classifier` for DistilBertForSequenceClassification), read by the trainer into its BERT
//! structures (no token types, ReLU after the pre-classifier), checked against an independent
//! numpy forward that reads the checkpoint by DistilBERT's names
//! (`tests/data/distilbert_reference.py`), then converted with `trainer quantize` and run by the
//! runtime. Needs python3 with numpy (scripts/install_test_deps.sh).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use trainer::bert::{Bert, BertConfig};
use trainer::data::{Example, TextTokenizer};
use trainer::fidelity::{compare, fp32_outputs, load_fp32, Output, Pooling};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("trainer-distilbert-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn vocab() -> Vec<String> {
    let mut v: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"].iter().map(|s| s.to_string()).collect();
    for w in ["the", "a", "film", "good", "bad", "was", "very", "not", "cat", "dog", "sat", "on", "mat", "and", "it", "is", "?", "."] {
        v.push(w.to_string());
    }
    v
}

fn config() -> BertConfig {
    let mut cfg = BertConfig::tiny(vocab().len());
    (cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads) = (32, 64, 4);
    cfg
}

/// BERT's tensor name -> DistilBERT's (None: DistilBERT has no such tensor).
fn distilbert_name(bert_name: &str, classifier: bool) -> Option<String> {
    let name = bert_name.strip_prefix("bert.").unwrap_or(bert_name);
    let pre = if classifier { "distilbert." } else { "" };
    if name.starts_with("embeddings.token_type_embeddings") {
        return None;
    }
    if let Some(rest) = name.strip_prefix("encoder.layer.") {
        let (i, tail) = rest.split_once('.').unwrap();
        let parts = [
            ("attention.self.query.", "attention.q_lin."),
            ("attention.self.key.", "attention.k_lin."),
            ("attention.self.value.", "attention.v_lin."),
            ("attention.output.dense.", "attention.out_lin."),
            ("attention.output.LayerNorm.", "sa_layer_norm."),
            ("intermediate.dense.", "ffn.lin1."),
            ("output.dense.", "ffn.lin2."),
            ("output.LayerNorm.", "output_layer_norm."),
        ];
        let tail = parts.iter().find_map(|(from, to)| tail.strip_prefix(from).map(|t| format!("{to}{t}"))).unwrap();
        return Some(format!("{pre}transformer.layer.{i}.{tail}"));
    }
    if let Some(rest) = name.strip_prefix("pooler.dense.") {
        return Some(format!("pre_classifier.{rest}"));
    }
    if name.starts_with("classifier.") {
        return Some(name.to_string());
    }
    Some(format!("{pre}{name}"))
}

/// `model` (random, with a head of `labels` if given) saved as a DistilBERT directory.
fn save_distilbert(model: &Bert, dir: &Path, labels: Option<usize>) {
    let t: HashMap<String, candle_core::Tensor> =
        model.named_params().into_iter().filter_map(|(n, v)| distilbert_name(&n, labels.is_some()).map(|d| (d, v.as_tensor().clone()))).collect();
    candle_core::safetensors::save(&t, dir.join("model.safetensors")).unwrap();
    let c = &model.cfg;
    let mut cfg = serde_json::json!({
        "model_type": "distilbert",
        "architectures": [if labels.is_some() { "DistilBertForSequenceClassification" } else { "DistilBertModel" }],
        "dim": c.hidden_size, "n_layers": c.num_hidden_layers, "n_heads": c.num_attention_heads, "hidden_dim": c.intermediate_size,
        "activation": "gelu", "max_position_embeddings": c.max_position_embeddings, "vocab_size": c.vocab_size,
        "dropout": 0.1, "attention_dropout": 0.1, "sinusoidal_pos_embds": false, "pad_token_id": 0,
    });
    if let Some(n) = labels {
        cfg["id2label"] = (0..n).map(|i| (i.to_string(), serde_json::json!(format!("LABEL_{i}")))).collect::<serde_json::Map<_, _>>().into();
    }
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    std::fs::write(dir.join("vocab.txt"), vocab().join("\n") + "\n").unwrap();
}

fn texts() -> Vec<Example> {
    ["the film was very good .", "the cat sat on the mat", "it is not bad", "a dog ?", "good"]
        .iter()
        .map(|t| Example { text_a: t.to_string(), text_b: None, label: 0.0 })
        .collect()
}

/// The numpy reference's outputs for the directory's tokenization of `texts()`.
fn reference(dir: &Path) -> Vec<Vec<f64>> {
    let tok = TextTokenizer::from_dir(dir).unwrap();
    let ids: Vec<Vec<u32>> = tok.encode_all(&texts(), 32).unwrap().into_iter().map(|e| e.ids).collect();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/distilbert_reference.py");
    let mut child = Command::new("python3").arg(script).arg(dir).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("python3 (with numpy) is needed");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(serde_json::to_string(&ids).unwrap().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "reference failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn distilbert_fp32_forward_matches_an_independent_reference() {
    for (name, labels) in [("base", None), ("classifier", Some(3))] {
        let dir = tmp(&format!("ref-{name}"));
        save_distilbert(&Bert::random(config(), labels, 3).unwrap(), &dir, labels);
        let output = match labels {
            Some(n) => Output::Classification { labels: n },
            None => Output::Embedding { pooling: Pooling::Mean.into(), normalize: false },
        };
        let model = load_fp32(&dir, output).unwrap();
        assert!(model.cfg.is_distilbert());
        let tok = TextTokenizer::from_dir(&dir).unwrap();
        let got = fp32_outputs(&model, &tok, &texts(), output, 32, 2).unwrap();
        let want = reference(&dir);
        let mut worst = 0.0f64;
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.len(), w.len());
            for (&g, &w) in g.iter().zip(w) {
                worst = worst.max((g as f64 - w).abs() / (1.0 + w.abs()));
            }
        }
        eprintln!("{name}: trainer fp32 vs numpy DistilBERT: max relative difference {worst:.2e}");
        assert!(worst < 1e-4, "{name}: {worst}");
    }
}

/// Renamed or mis-wired weights would break this: the reference reads DistilBERT's names, so a
/// checkpoint whose q_lin and k_lin are swapped gives other outputs there than in the trainer
/// unless the trainer reads them by name too.
#[test]
fn the_reference_tells_a_wrong_mapping_apart() {
    let dir = tmp("swapped");
    save_distilbert(&Bert::random(config(), None, 4).unwrap(), &dir, None);
    let good = reference(&dir);
    let mut t = candle_core::safetensors::load(dir.join("model.safetensors"), &candle_core::Device::Cpu).unwrap();
    let (q, k) = (t.remove("transformer.layer.0.attention.q_lin.weight").unwrap(), t.remove("transformer.layer.0.attention.k_lin.weight").unwrap());
    t.insert("transformer.layer.0.attention.q_lin.weight".into(), k);
    t.insert("transformer.layer.0.attention.k_lin.weight".into(), q);
    candle_core::safetensors::save(&t, dir.join("model.safetensors")).unwrap();
    let swapped = reference(&dir);
    let diff = good.iter().flatten().zip(swapped.iter().flatten()).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(diff > 1e-3, "swapping Q and K moved the reference by only {diff}");
}

/// `trainer quantize` of both layouts: the file has no token types to speak of, the classifier's
/// pooler is ReLU (format 1.7), labels come from id2label, and the runtime's int8 outputs follow
/// the fp32 DistilBERT.
#[test]
fn distilbert_converts_and_runs_in_int8() {
    for (name, labels) in [("base", None), ("classifier", Some(2))] {
        let dir = tmp(&format!("q-{name}"));
        save_distilbert(&Bert::random(config(), labels, 5).unwrap(), &dir, labels);
        let out = Command::new(env!("CARGO_BIN_EXE_trainer"))
            .args(["quantize", "--model", dir.to_str().unwrap(), "--output", dir.join("model.q8b").to_str().unwrap(), "--threads", "1"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let m = q8bert::Model::open(dir.join("model.q8b"), &q8bert::Options::default()).unwrap();
        let output = match labels {
            Some(n) => {
                assert_eq!(m.head().kind, q8bert::HeadKind::Classification);
                assert_eq!(m.head().labels, ["LABEL_0", "LABEL_1"]);
                assert_eq!(m.head().pooler_activation, q8bert::model::PoolerActivation::Relu);
                Output::Classification { labels: n }
            }
            None => {
                assert_eq!(m.head().kind, q8bert::HeadKind::Embedding);
                Output::Embedding { pooling: Pooling::Mean.into(), normalize: true }
            }
        };
        let rows = texts();
        let (got, int8) = trainer::export::run_texts(&dir.join("model.q8b"), &rows, 32, 8, 1).unwrap();
        assert_eq!(got, output);
        let tok = TextTokenizer::from_dir(&dir).unwrap();
        let fp32 = fp32_outputs(&load_fp32(&dir, output).unwrap(), &tok, &rows, output, 32, 8).unwrap();
        let report = compare(output, &fp32, &int8, 1).unwrap();
        eprintln!("{name}: int8 vs fp32: cosine min {:.5}, max |diff| {:.3e}, label agreement {}", report.cosine_min, report.max_abs_diff, report.label_agreement);
        assert!(report.cosine_min > 0.99, "{name}: {}", report.cosine_min);
        assert_eq!(report.label_agreement, 1.0);
    }
}

/// Other architectures are still refused first, by model_type, with the supported list.
#[test]
fn other_model_types_are_refused_with_the_list() {
    let dir = tmp("deberta");
    std::fs::write(dir.join("config.json"), r#"{"model_type": "deberta-v2", "hidden_size": 32}"#).unwrap();
    let e = trainer::model_dir::check(&dir).unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("\"deberta-v2\" is not supported") && msg.contains("distilbert, roberta, xlm-roberta"), "{msg}");
}
