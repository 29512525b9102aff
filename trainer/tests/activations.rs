//! `hidden_act` gelu, gelu_new, gelu_pytorch_tanh and relu, end to end: a tiny random BERT with
//! each, written as a Hugging Face directory, converted by `trainer quantize`, run by the runtime
//! and compared with the trainer's fp32 forward of the same checkpoint (int8 noise only). The
//! packed file records the activation, and the runtime output follows it: a relu model's output
//! is far closer to the relu fp32 forward than to the same weights run with GELU.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use trainer::bert::{Bert, BertConfig};
use trainer::data::{Example, TextTokenizer};
use trainer::fidelity::{compare, fp32_outputs, load_fp32, Output, Pooling};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("trainer-activations-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn vocab() -> Vec<String> {
    let mut v: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"].iter().map(|s| s.to_string()).collect();
    for w in ["the", "a", "film", "good", "bad", "was", "very", "not", "cat", "dog", "sat", "on", "mat", "and", "it", "is", "query", "answer", "?", "."] {
        v.push(w.to_string());
    }
    v
}

fn config(act: &str) -> BertConfig {
    let mut cfg = BertConfig::tiny(vocab().len());
    cfg.hidden_size = 32;
    cfg.intermediate_size = 64;
    cfg.hidden_act = act.into();
    cfg
}

fn save_hf(model: &Bert, dir: &Path) {
    let t: HashMap<String, candle_core::Tensor> = model.named_params().into_iter().map(|(n, v)| (n, v.as_tensor().clone())).collect();
    candle_core::safetensors::save(&t, dir.join("model.safetensors")).unwrap();
    std::fs::write(dir.join("config.json"), serde_json::to_string(&model.cfg).unwrap()).unwrap();
    std::fs::write(dir.join("vocab.txt"), vocab().join("\n") + "\n").unwrap();
}

fn texts() -> Vec<Example> {
    ["the film was very good .", "the cat sat on the mat", "it is not bad", "query ?", "a dog and a cat sat on the mat and it was good"]
        .iter()
        .map(|a| Example { text_a: a.to_string(), text_b: None, label: 0.0 })
        .collect()
}

/// Converts `dir` with `trainer quantize` (default per-token scheme, or `args`).
fn quantize(dir: &Path, args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(["quantize", "--model", dir.to_str().unwrap(), "--output", dir.join("model.q8b").to_str().unwrap(), "--threads", "1"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[test]
fn each_activation_converts_and_matches_the_fp32_forward() {
    let output = Output::Embedding { pooling: Pooling::Mean.into(), normalize: true };
    let rows = texts();
    for (act, scheme) in [("gelu", "per-token"), ("gelu_new", "per-token"), ("gelu_pytorch_tanh", "q8bert"), ("relu", "per-token"), ("relu", "q8bert")] {
        let dir = tmp(&format!("{act}-{scheme}"));
        // The same weights for every activation.
        save_hf(&Bert::random(config(act), None, 11).unwrap(), &dir);
        quantize(&dir, &["--scheme", scheme]);
        let m = q8bert::Model::open(dir.join("model.q8b"), &q8bert::Options::default()).unwrap();
        let want = q8bert::model::Activation::from_name(act).unwrap();
        assert_eq!(m.config().hidden_act, want, "{act}");
            let meta = m.metadata().get("bert.hidden_act").map(|v| v.to_string());
        assert_eq!(meta, Some(format!("{act:?}")), "the file keeps the checkpoint's name");

        let (out, int8) = trainer::export::run_texts(&dir.join("model.q8b"), &rows, 32, 8, 1).unwrap();
        assert_eq!(out, output);
        let tok = TextTokenizer::from_dir(&dir).unwrap();
        let fp32 = fp32_outputs(&load_fp32(&dir, output).unwrap(), &tok, &rows, output, 32, 8).unwrap();
        let report = compare(output, &fp32, &int8, 1).unwrap();
        eprintln!("{act} {scheme}: cosine min {:.5} mean {:.5}", report.cosine_min, report.cosine_mean);
        assert!(report.cosine_min > 0.99, "{act} {scheme}: int8 vs fp32 cosine {}", report.cosine_min);

        // The same weights run in fp32 with another activation: the int8 output must be closer to
        // its own activation's forward.
        if act == "relu" {
            let mut other = load_fp32(&dir, output).unwrap();
            other.cfg.hidden_act = "gelu".into();
            let gelu_fp32 = fp32_outputs(&other, &tok, &rows, output, 32, 8).unwrap();
            for (i, ((q, f), g)) in int8.iter().zip(&fp32).zip(&gelu_fp32).enumerate() {
                let (own, wrong) = (1.0 - cosine(q, f), 1.0 - cosine(q, g));
                assert!(own * 5.0 < wrong, "row {i}: 1-cos to relu fp32 {own:.2e}, to gelu fp32 {wrong:.2e}");
            }
        }
    }
}

/// The trainer's fp32 forward computes each activation as Hugging Face defines it: the FFN of a
/// one-layer model whose intermediate output is known exactly.
#[test]
fn trainer_activations_match_their_definitions() {
    let erf_gelu = |x: f64| 0.5 * x * (1.0 + libm_erf(x / std::f64::consts::SQRT_2));
    let tanh_gelu = |x: f64| 0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh());
    let relu = |x: f64| x.max(0.0);
    let xs: Vec<f64> = (-60..=60).map(|i| i as f64 * 0.1).collect();
    for (act, f) in [("gelu", &erf_gelu as &dyn Fn(f64) -> f64), ("gelu_new", &tanh_gelu), ("gelu_pytorch_tanh", &tanh_gelu), ("relu", &relu)] {
        let got = trainer::bert::activation_values(act, &xs.iter().map(|&x| x as f32).collect::<Vec<_>>()).unwrap();
        for (&x, &y) in xs.iter().zip(&got) {
            assert!((y as f64 - f(x)).abs() < 2e-6, "{act}({x}) = {y}, want {}", f(x));
        }
    }
    // The tanh form is not the erf form: the two differ by 1.5e-4 at x = 1.
    let g = trainer::bert::activation_values("gelu", &[1.0]).unwrap()[0];
    let t = trainer::bert::activation_values("gelu_new", &[1.0]).unwrap()[0];
    assert!((g - t).abs() > 1e-4, "{g} vs {t}");
    assert!(trainer::bert::activation_values("swish", &[1.0]).is_err());
}

/// QAT trains through the activation: candle's gradient of each one against a central
/// finite difference of the same forward.
#[test]
fn activations_have_gradients() {
    let xs: Vec<f32> = (-30..=30).map(|i| i as f32 * 0.2 + 0.05).collect();
    for act in ["gelu", "gelu_new", "gelu_pytorch_tanh", "relu"] {
        let x = candle_core::Var::from_slice(&xs, xs.len(), &candle_core::Device::Cpu).unwrap();
        let y = trainer::bert::apply_activation(act, x.as_tensor()).unwrap().sum_all().unwrap();
        let grads = y.backward().unwrap();
        let g: Vec<f32> = grads.get(x.as_tensor()).expect("no gradient").to_vec1().unwrap();
        let h = 1e-2f32;
        let plus = trainer::bert::activation_values(act, &xs.iter().map(|v| v + h).collect::<Vec<_>>()).unwrap();
        let minus = trainer::bert::activation_values(act, &xs.iter().map(|v| v - h).collect::<Vec<_>>()).unwrap();
        for i in 0..xs.len() {
            let fd = (plus[i] - minus[i]) / (2.0 * h);
            assert!((g[i] - fd).abs() < 2e-3, "{act}'({}) = {}, finite difference {fd}", xs[i], g[i]);
        }
    }
}

// erf in f64 (Abramowitz-Stegun 7.1.26 is too coarse here): series below 3, continued fraction above.
fn libm_erf(x: f64) -> f64 {
    let ax = x.abs();
    let r = if ax < 3.0 {
        let (mut term, mut s, mut n) = (ax, ax, 0.0f64);
        loop {
            n += 1.0;
            term *= -ax * ax / n;
            let add = term / (2.0 * n + 1.0);
            s += add;
            if add.abs() < 1e-17 {
                break;
            }
        }
        s * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        let mut f = 0.0f64;
        for k in (1..60).rev() {
            f = (k as f64 / 2.0) / (ax + f);
        }
        1.0 - (-ax * ax).exp() / (std::f64::consts::PI.sqrt() * (ax + f))
    };
    if x < 0.0 {
        -r
    } else {
        r
    }
}
