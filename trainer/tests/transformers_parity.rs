//! Every family against Hugging Face `transformers` itself: tests/data/transformers_reference.py
//! has transformers (4.57, Flax on jax CPU: the environment has no PyTorch) initialise tiny random
//! BERT, DistilBERT, RoBERTa and XLM-RoBERTa models, base and sequence classification, write them
//! as Hugging Face directories (PyTorch-layout model.safetensors, config.json, the family's
//! tokenizer files) and run them on texts and text pairs tokenized by Hugging Face `tokenizers`.
//! Here the trainer reads each directory: its tokenization must give the same ids, its fp32
//! forward the same outputs (1e-4 relative), and `trainer quantize` + the runtime int8 outputs as
//! close to transformers' fp32 as int8 allows.
//!
//! Needs a python with transformers<5, flax, jax and tokenizers: `Q8BERT_HF_PYTHON`, or python3
//! (scripts/install_test_deps.sh installs them).

use std::path::PathBuf;
use std::process::Command;
use trainer::data::{Example, TextTokenizer};
use trainer::fidelity::{compare, fp32_outputs, load_fp32, Output, Pooling};

const MAX_LEN: usize = 64;

#[test]
fn families_match_transformers() {
    let out = std::env::temp_dir().join(format!("trainer-transformers-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let python = std::env::var("Q8BERT_HF_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/transformers_reference.py");
    let run = Command::new(&python).arg(script).arg(&out).output().unwrap_or_else(|e| panic!("{python}: {e}"));
    assert!(
        run.status.success(),
        "{python} {script} failed (it needs transformers<5, flax, jax, tokenizers: bash scripts/install_test_deps.sh, or set Q8BERT_HF_PYTHON):\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("outputs.json")).unwrap()).unwrap();
    let strings = |k: &str| -> Vec<String> { doc[k].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect() };
    let (texts, pairs) = (strings("texts"), strings("pairs"));
    let cases = doc["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 8, "4 families x 2 heads");
    for case in cases {
        let dir = PathBuf::from(case["dir"].as_str().unwrap());
        let name = format!("{}-{}", case["family"].as_str().unwrap(), case["head"].as_str().unwrap());
        let with_pairs = case["pairs"].as_bool().unwrap();
        let rows: Vec<Example> = texts
            .iter()
            .zip(&pairs)
            .map(|(a, b)| Example { text_a: a.clone(), text_b: with_pairs.then(|| b.clone()), label: 0.0 })
            .collect();
        let output = if with_pairs { Output::Classification { labels: 3 } } else { Output::Embedding { pooling: Pooling::Mean.into(), normalize: false } };
        let want: Vec<Vec<f32>> =
            case["outputs"].as_array().unwrap().iter().map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()).collect();

        // Tokenization: the trainer's (the runtime's code) against Hugging Face's ids.
        let tok = TextTokenizer::from_dir(&dir).unwrap();
        let hf_ids: Vec<Vec<u32>> =
            case["ids"].as_array().unwrap().iter().map(|r| r.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()).collect();
        let ids: Vec<Vec<u32>> = tok.encode_all(&rows, MAX_LEN).unwrap().into_iter().map(|e| e.ids).collect();
        assert_eq!(ids, hf_ids, "{name}: token ids");

        // fp32: the trainer's forward of the same directory.
        let model = load_fp32(&dir, output).unwrap();
        let got = fp32_outputs(&model, &tok, &rows, output, MAX_LEN, 8).unwrap();
        let mut worst = 0.0f64;
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.len(), w.len(), "{name}: output width");
            for (&g, &w) in g.iter().zip(w) {
                worst = worst.max((g as f64 - w as f64).abs() / (1.0 + (w as f64).abs()));
            }
        }
        eprintln!("{name}: trainer fp32 vs transformers: max relative difference {worst:.2e}");
        assert!(worst < 1e-4, "{name}: {worst}");

        // int8: the packed model through the runtime against transformers' fp32 outputs, and
        // against the trainer's (the same numbers if nothing structural is off).
        let q8b = dir.join("model.q8b");
        let run = Command::new(env!("CARGO_BIN_EXE_trainer"))
            .args(["quantize", "--model", dir.to_str().unwrap(), "--output", q8b.to_str().unwrap(), "--threads", "1"])
            .output()
            .unwrap();
        assert!(run.status.success(), "{name}: {}", String::from_utf8_lossy(&run.stderr));
        let (kind, int8) = trainer::export::run_texts(&q8b, &rows, MAX_LEN, 8, 1).unwrap();
        let runtime_output = match output {
            Output::Embedding { pooling, .. } => Output::Embedding { pooling, normalize: true },
            o => o,
        };
        assert_eq!(kind, runtime_output, "{name}: head");
        let (vs_hf, vs_trainer) = (compare(runtime_output, &want, &int8, 1).unwrap(), compare(runtime_output, &got, &int8, 1).unwrap());
        // (max |diff| only means something for logits: the runtime's embeddings are normalized.)
        eprintln!(
            "{name}: int8 vs transformers fp32: cosine min {:.5}, logits max |diff| {:.3e}, argmax agreement {:.2} (vs the trainer's fp32: cosine min {:.5})",
            vs_hf.cosine_min, vs_hf.max_abs_diff, vs_hf.label_agreement, vs_trainer.cosine_min
        );
        assert!(vs_hf.cosine_min > 0.99, "{name}: {}", vs_hf.cosine_min);
        assert!((vs_hf.cosine_min - vs_trainer.cosine_min).abs() < 1e-3, "{name}: int8 is farther from transformers than from the trainer");
    }
}
