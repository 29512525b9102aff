//! `trainer fidelity` on tiny random BERTs written in the Hugging Face layout (no external
//! files): the numbers it reports equal a direct computation from the runtime's outputs and the
//! fp32 forward, for an embedding model and a classifier, and the worst rows come first.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use trainer::bert::{Bert, BertConfig};
use trainer::data::{Example, TextTokenizer};
use trainer::fidelity::{compare, fp32_outputs, load_fp32, read_texts, truncation, Output, Pooling};
use trainer::quant::Scheme;
use trainer::train::{calibrate, Dataset};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("trainer-fidelity-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn vocab() -> Vec<String> {
    let mut v: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"].iter().map(|s| s.to_string()).collect();
    for w in ["the", "a", "film", "good", "bad", "was", "very", "not", "cat", "dog", "sat", "on", "mat", "and", "it", "is", "##s", "##ing", ",", "."] {
        v.push(w.to_string());
    }
    v
}

/// Writes `model` as a Hugging Face directory (config.json, model.safetensors, vocab.txt).
fn save_hf(model: &Bert, dir: &Path, labels: Option<usize>) {
    let t: HashMap<String, candle_core::Tensor> = model.named_params().into_iter().map(|(n, v)| (n, v.as_tensor().clone())).collect();
    candle_core::safetensors::save(&t, dir.join("model.safetensors")).unwrap();
    let mut cfg = serde_json::to_value(&model.cfg).unwrap();
    if let Some(n) = labels {
        cfg["id2label"] = (0..n).map(|i| (i.to_string(), serde_json::Value::from(format!("L{i}")))).collect::<serde_json::Map<String, serde_json::Value>>().into();
    }
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    std::fs::write(dir.join("vocab.txt"), vocab().join("\n") + "\n").unwrap();
}

const TEXTS: &str = "the film was very good .\nthe cat sat on the mat\nit is not bad , and it is good\ndog\nthe dog sat\ta cat is sitting\na film\tthe films\n\nthe the the the the the the the the the the the\n";

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let d: f64 = a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum();
    let n = |v: &[f32]| v.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
    d / (n(a) * n(b))
}

#[test]
fn fidelity_report_matches_a_direct_computation() {
    let dir = tmp("embed");
    let texts_path = dir.join("texts.txt");
    std::fs::write(&texts_path, TEXTS).unwrap();
    let file = read_texts(&texts_path).unwrap();
    let texts = &file.rows;
    assert_eq!(texts.len(), 7, "empty lines skipped");
    assert_eq!(file.lines, [1, 2, 3, 4, 5, 6, 8], "rows keep their file line numbers");
    assert_eq!(file.blank_lines, [7]);
    assert_eq!(texts[4].text_b.as_deref(), Some("a cat is sitting"), "a tab makes a pair");

    let mut cfg = BertConfig::tiny(vocab().len());
    cfg.hidden_size = 32;
    cfg.intermediate_size = 64;
    let tok = TextTokenizer::new(vocab(), serde_json::from_str("{\"do_lower_case\": true}").unwrap()).unwrap();
    for (labels, scheme) in [(None, Scheme::PER_TOKEN), (None, Scheme::Q8BERT), (Some(3), Scheme::PER_TOKEN), (Some(1), Scheme::PER_TOKEN)] {
        let model = Bert::random(cfg.clone(), labels, 7).unwrap();
        let hf = tmp(&format!("hf-{labels:?}-{}", scheme.name()));
        save_hf(&model, &hf, labels);
        // Calibrated ranges (used by the static scheme), then packed.
        let calib: Vec<Example> = texts.iter().map(|e| Example { text_b: None, ..e.clone() }).collect();
        calibrate(&model, &Dataset { rows: tok.encode_all(&calib, 32).unwrap() }, tok.pad_id(), 4, 4).unwrap();
        let q8b = hf.join("model.q8b");
        let meta = Default::default();
        let output = match labels {
            None => {
                trainer::export::export_embedding(&model, &tok, &q8b, Pooling::Mean.into(), true, scheme, &meta).unwrap();
                Output::Embedding { pooling: Pooling::Mean.into(), normalize: true }
            }
            Some(1) => {
                trainer::export::export_classifier(&model, &tok, trainer::data::Task::Regression, &q8b, scheme, &meta, None).unwrap();
                Output::Regression
            }
            Some(n) => {
                trainer::export::export_classifier(&model, &tok, trainer::data::Task::Classification, &q8b, scheme, &meta, None).unwrap();
                Output::Classification { labels: n }
            }
        };
        // What `trainer fidelity` does.
        let (got_output, int8) = trainer::export::run_texts(&q8b, texts, 32, 3, 1).unwrap();
        assert_eq!(got_output, output);
        let fp32_model = load_fp32(&hf, output).unwrap();
        let fp32 = fp32_outputs(&fp32_model, &tok, texts, output, 32, 3).unwrap();
        let report = compare(output, &fp32, &int8, 3).unwrap();

        // The same numbers computed directly, from independent runs: the runtime one text at a
        // time, the fp32 model on the whole list.
        let rt = q8bert::Model::open(&q8b, &q8bert::Options::default()).unwrap();
        let direct_int8: Vec<Vec<f32>> = texts
            .iter()
            .map(|e| {
                let mut out = vec![0f32; rt.text_output_len(1)];
                let b = e.text_b.as_deref().map(|b| vec![b]);
                rt.run_text(&[e.text_a.as_str()], b.as_deref(), &mut out).unwrap();
                out
            })
            .collect();
        assert_eq!(direct_int8, int8, "batched runtime outputs equal one-by-one outputs");
        let cos: Vec<f64> = fp32.iter().zip(&direct_int8).map(|(a, b)| cosine(a, b)).collect();
        let mean = cos.iter().sum::<f64>() / cos.len() as f64;
        let min = cos.iter().copied().fold(f64::INFINITY, f64::min);
        assert!((report.cosine_mean - mean).abs() < 1e-12 && (report.cosine_min - min).abs() < 1e-12, "{report:?} vs mean {mean} min {min}");
        assert_eq!(report.cosine_p1, min, "with 7 rows the 1st percentile is the minimum");
        let max_diff = fp32.iter().flatten().zip(direct_int8.iter().flatten()).map(|(a, b)| (*a as f64 - *b as f64).abs()).fold(0.0, f64::max);
        assert_eq!(report.max_abs_diff, max_diff);
        assert!(max_diff > 0.0, "int8 differs from fp32 somewhere");
        assert_eq!(report.rows, 7);
        assert_eq!(report.worst.len(), 3);
        match output {
            Output::Embedding { .. } => {
                assert_eq!(report.worst[0].cosine, min, "worst row first");
                assert!(report.worst.windows(2).all(|w| w[0].cosine <= w[1].cosine));
                // A real embedding model stays close; a random tiny one just has to be similar.
                assert!(min > 0.8, "{} cosine {min}", scheme.name());
            }
            Output::Classification { .. } => {
                let argmax = |v: &[f32]| v.iter().enumerate().fold((0, f32::MIN), |b, (i, &x)| if x > b.1 { (i, x) } else { b }).0;
                let agree = fp32.iter().zip(&direct_int8).filter(|(a, b)| argmax(a) == argmax(b)).count() as f64 / 7.0;
                assert_eq!(report.label_agreement, agree);
            }
            Output::Regression => assert!(report.score_pearson.unwrap() > 0.9, "{:?}", report.score_pearson),
        }
        let text = report.to_text(output, &file, &truncation(&tok, texts, 32).unwrap());
        assert!(text.contains("rows: 7") && text.contains("worst rows:"), "{text}");
        assert!(text.contains("blank lines skipped: 1 (line 7)") && text.contains("truncated: none (limit 32 tokens)"), "{text}");
        let worst_line = file.lines[report.worst[0].index];
        assert!(text.contains(&format!("line {worst_line:>6}:")), "worst row reported by its file line {worst_line}: {text}");
        eprintln!("{:?} {}:\n{text}", output, scheme.name());
    }
}

/// A classifier file needs a checkpoint with a trained classifier of the same shape: comparing
/// against a freshly initialised head would report noise as infidelity.
#[test]
fn fidelity_refuses_a_checkpoint_without_the_classifier() {
    let cfg = BertConfig::tiny(vocab().len());
    let model = Bert::random(cfg, None, 3).unwrap();
    let hf = tmp("no-head");
    save_hf(&model, &hf, None);
    let e = load_fp32(&hf, Output::Classification { labels: 2 }).err().expect("must refuse");
    assert!(format!("{e}").contains("no classifier"), "{e}");
    assert!(load_fp32(&hf, Output::Embedding { pooling: Pooling::Mean.into(), normalize: false }).is_ok());
}

/// Truncation is counted against the untruncated length, for single texts and pairs.
#[test]
fn truncated_rows_are_the_ones_longer_than_the_limit() {
    let tok = TextTokenizer::new(vocab(), serde_json::from_str("{\"do_lower_case\": true}").unwrap()).unwrap();
    let dir = tmp("truncation");
    std::fs::write(dir.join("texts.txt"), TEXTS).unwrap();
    let texts = read_texts(&dir.join("texts.txt")).unwrap().rows;
    let full: Vec<usize> = tok.encode_all(&texts, 1000).unwrap().iter().map(|e| e.ids.len()).collect();
    for limit in [3, 8, 10, 14, 32] {
        let want: Vec<usize> = (0..texts.len()).filter(|&i| full[i] > limit).collect();
        assert_eq!(truncation(&tok, &texts, limit).unwrap().rows, want, "limit {limit}, lengths {full:?}");
    }
    assert!(truncation(&tok, &texts, 8).unwrap().rows.len() >= 2, "the test texts exercise truncation at 8: {full:?}");
}

/// The command line on a model with fewer positions (32) than the old fixed limit (128): it
/// adapts, reports rows by file line, lists blank lines and says how many rows were cut.
#[test]
fn fidelity_command_adapts_to_the_model_and_reports_file_lines() {
    let mut cfg = BertConfig::tiny(vocab().len());
    cfg.hidden_size = 32;
    cfg.intermediate_size = 64;
    let model = Bert::random(cfg, None, 11).unwrap();
    let hf = tmp("cli");
    save_hf(&model, &hf, None);
    let q8b = hf.join("model.q8b");
    let bin = env!("CARGO_BIN_EXE_trainer");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin).args(args).output().unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
        assert!(out.status.success(), "{args:?}: {stderr}");
        (stdout, stderr)
    };
    run(&["quantize", "--model", hf.to_str().unwrap(), "--output", q8b.to_str().unwrap(), "--threads", "1"]);
    let long = vec!["the cat sat on the mat"; 8].join(" , ");
    let texts = hf.join("texts.txt");
    std::fs::write(&texts, format!("the film was very good .\n\n{long}\n  \nit is not bad\n")).unwrap();
    let json = hf.join("fidelity.json");
    let (stdout, _) = run(&["fidelity", "--model", hf.to_str().unwrap(), "--q8b", q8b.to_str().unwrap(), "--texts", texts.to_str().unwrap(), "--threads", "1", "--output", json.to_str().unwrap()]);
    assert!(stdout.contains("rows: 3"), "{stdout}");
    assert!(stdout.contains("blank lines skipped: 2 (lines 2, 4)"), "{stdout}");
    assert!(stdout.contains("truncated: 1 of 3 rows are longer than 32 tokens") && stdout.contains("(line 3)"), "{stdout}");
    for line in [1, 3, 5] {
        assert!(stdout.contains(&format!("line {line:>6}:")), "line {line}: {stdout}");
    }
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["blank_lines_skipped"], serde_json::json!([2, 4]));
    assert_eq!(v["truncated_lines"], serde_json::json!([3]));
    assert_eq!(v["max_seq_len"], 32);

    // Asking for more than the model has is lowered with a note, not an error.
    let (_, stderr) = run(&["fidelity", "--model", hf.to_str().unwrap(), "--q8b", q8b.to_str().unwrap(), "--texts", texts.to_str().unwrap(), "--threads", "1", "--max-seq-len", "128"]);
    assert!(stderr.contains("--max-seq-len 128 is more than the model's 32 positions; using 32"), "{stderr}");
}
