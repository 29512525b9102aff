//! `trainer quantize` on the checkpoint layouts people bring, each a tiny random BERT written
//! here in that Hugging Face layout: sentence-transformers with CLS pooling and no Normalize
//! (bge/e5 style), BertForSequenceClassification with id2label, problem_type regression, a
//! cross-encoder (a pair in, one score out), and clear refusals of what is not supported.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use trainer::bert::{Bert, BertConfig};
use trainer::data::{Example, TextTokenizer};
use trainer::fidelity::{compare, fp32_outputs, load_fp32, Output, Pooling};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("trainer-layouts-{name}-{}", std::process::id()));
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

fn config() -> BertConfig {
    let mut cfg = BertConfig::tiny(vocab().len());
    cfg.hidden_size = 32;
    cfg.intermediate_size = 64;
    cfg
}

/// A Hugging Face directory for `model`, with `extra` merged into config.json.
fn save_hf(model: &Bert, dir: &Path, extra: serde_json::Value) {
    let t: HashMap<String, candle_core::Tensor> = model.named_params().into_iter().map(|(n, v)| (n, v.as_tensor().clone())).collect();
    candle_core::safetensors::save(&t, dir.join("model.safetensors")).unwrap();
    let mut cfg = serde_json::to_value(&model.cfg).unwrap();
    for (k, v) in extra.as_object().unwrap() {
        cfg[k] = v.clone();
    }
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    std::fs::write(dir.join("vocab.txt"), vocab().join("\n") + "\n").unwrap();
}

/// Runs `trainer quantize --model dir --output dir/model.q8b ARGS`; (success, stderr).
fn quantize(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(["quantize", "--model", dir.to_str().unwrap(), "--output", dir.join("model.q8b").to_str().unwrap(), "--threads", "1"])
        .args(args)
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn texts(pairs: bool) -> Vec<Example> {
    let a = ["the film was very good .", "the cat sat on the mat", "it is not bad", "query ?", "a dog"];
    let b = ["answer .", "the dog sat", "it is good", "the answer is a film", "a cat"];
    a.iter().zip(b).map(|(a, b)| Example { text_a: a.to_string(), text_b: pairs.then(|| b.to_string()), label: 0.0 }).collect()
}

/// The packed model's outputs against the fp32 checkpoint's, through the fidelity tool.
fn check_fidelity(dir: &Path, pairs: bool, want: Output) -> f64 {
    let rows = texts(pairs);
    let (output, int8) = trainer::export::run_texts(&dir.join("model.q8b"), &rows, 32, 8, 1).unwrap();
    assert_eq!(output, want);
    let tok = TextTokenizer::from_dir(dir).unwrap();
    let fp32 = fp32_outputs(&load_fp32(dir, output).unwrap(), &tok, &rows, output, 32, 8).unwrap();
    let report = compare(output, &fp32, &int8, 1).unwrap();
    eprintln!("{}: {output:?}: cosine min {:.4}, max |diff| {:.3e}", dir.display(), report.cosine_min, report.max_abs_diff);
    report.cosine_min
}

#[test]
fn sentence_transformers_cls_pooling_without_normalize() {
    let dir = tmp("st-cls");
    save_hf(&Bert::random(config(), None, 1).unwrap(), &dir, serde_json::json!({"architectures": ["BertModel"]}));
    std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
    std::fs::write(dir.join("1_Pooling/config.json"), r#"{"word_embedding_dimension": 32, "pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false}"#).unwrap();
    std::fs::write(
        dir.join("modules.json"),
        r#"[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}, {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]"#,
    )
    .unwrap();
    let (ok, err) = quantize(&dir, &[]);
    assert!(ok, "{err}");
    let m = q8bert::Model::open(dir.join("model.q8b"), &q8bert::Options::default()).unwrap();
    assert_eq!(m.head().kind, q8bert::HeadKind::Embedding);
    assert_eq!(m.head().pooling, [q8bert::model::Pooling::Cls]);
    assert!(!m.head().normalize, "no Normalize module: raw CLS vector");
    assert_eq!(m.layout().per_row_linears(), m.layout().linears().count(), "the default scheme is per-token");
    assert!(check_fidelity(&dir, false, Output::Embedding { pooling: Pooling::Cls.into(), normalize: false }) > 0.95);
}

/// sentence-transformers' other pooling modes convert to the runtime's, and the packed model's
/// output follows the trainer's fp32 pooling of the same checkpoint. Several modes at once are
/// concatenated as sentence-transformers does: the legacy flags in its fixed order, the
/// `pooling_mode` list (sentence-transformers 6) in the list's order; an unknown mode is
/// refused by name.
#[test]
fn sentence_transformers_pooling_modes() {
    let modes = [
        ("pooling_mode_max_tokens", q8bert::model::Pooling::Max, Pooling::Max),
        ("pooling_mode_mean_sqrt_len_tokens", q8bert::model::Pooling::MeanSqrtLen, Pooling::MeanSqrtLen),
        ("pooling_mode_weightedmean_tokens", q8bert::model::Pooling::WeightedMean, Pooling::WeightedMean),
        ("pooling_mode_lasttoken", q8bert::model::Pooling::LastToken, Pooling::LastToken),
    ];
    let modules = r#"[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}, {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}, {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]"#;
    for (i, (key, runtime_mode, trainer_mode)) in modes.into_iter().enumerate() {
        let dir = tmp(&format!("st-pool-{i}"));
        save_hf(&Bert::random(config(), None, 10 + i as u64).unwrap(), &dir, serde_json::json!({"architectures": ["BertModel"]}));
        std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
        std::fs::write(dir.join("1_Pooling/config.json"), format!(r#"{{"word_embedding_dimension": 32, "pooling_mode_mean_tokens": false, "{key}": true}}"#)).unwrap();
        std::fs::write(dir.join("modules.json"), modules).unwrap();
        let (ok, err) = quantize(&dir, &[]);
        assert!(ok, "{key}: {err}");
        let m = q8bert::Model::open(dir.join("model.q8b"), &q8bert::Options::default()).unwrap();
        assert_eq!(m.head().pooling, [runtime_mode], "{key}");
        assert!(m.head().normalize);
        let cosine = check_fidelity(&dir, false, Output::Embedding { pooling: trainer_mode.into(), normalize: true });
        assert!(cosine > 0.95, "{key}: cosine min {cosine}");
    }
    use q8bert::model::Pooling as R;
    let several: [(&str, &[R], &[Pooling]); 3] = [
        (r#""pooling_mode_max_tokens": true, "pooling_mode_cls_token": true"#, &[R::Cls, R::Max], &[Pooling::Cls, Pooling::Max]),
        (r#""pooling_mode": ["mean", "cls", "lasttoken"]"#, &[R::Mean, R::Cls, R::LastToken], &[Pooling::Mean, Pooling::Cls, Pooling::LastToken]),
        (r#""pooling_mode": "weightedmean""#, &[R::WeightedMean], &[Pooling::WeightedMean]),
    ];
    for (i, (keys, runtime_modes, trainer_modes)) in several.into_iter().enumerate() {
        let dir = tmp(&format!("st-pool-several-{i}"));
        save_hf(&Bert::random(config(), None, 20 + i as u64).unwrap(), &dir, serde_json::json!({"architectures": ["BertModel"]}));
        std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
        std::fs::write(dir.join("1_Pooling/config.json"), format!(r#"{{"embedding_dimension": 32, {keys}}}"#)).unwrap();
        std::fs::write(dir.join("modules.json"), modules).unwrap();
        let (ok, err) = quantize(&dir, &[]);
        assert!(ok, "{keys}: {err}");
        let m = q8bert::Model::open(dir.join("model.q8b"), &q8bert::Options::default()).unwrap();
        assert_eq!(m.head().pooling, runtime_modes, "{keys}");
        assert_eq!(m.text_output_len(1), 32 * runtime_modes.len());
        let pooling = trainer::fidelity::Poolings::new(trainer_modes).unwrap();
        let cosine = check_fidelity(&dir, false, Output::Embedding { pooling, normalize: true });
        assert!(cosine > 0.95, "{keys}: cosine min {cosine}");
    }
    let dir = tmp("st-pool-unknown");
    save_hf(&Bert::random(config(), None, 25).unwrap(), &dir, serde_json::json!({"architectures": ["BertModel"]}));
    std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
    std::fs::write(dir.join("1_Pooling/config.json"), r#"{"embedding_dimension": 32, "pooling_mode": ["mean", "median"]}"#).unwrap();
    std::fs::write(dir.join("modules.json"), modules).unwrap();
    let (ok, err) = quantize(&dir, &[]);
    assert!(!ok);
    assert!(err.contains(r#"pooling_mode "median" is not one of cls, max, mean"#), "{err}");
}

/// config_sentence_transformers.json prompts (e5/bge style) and the Pooling module's
/// `include_prompt` travel into the packed file: the runtime then offers the prompts by name,
/// applies the default one, and with include_prompt false pools without the prompt's tokens. An
/// empty prompt is no prompt; a default that names none is refused.
#[test]
fn sentence_transformers_prompts() {
    let modules = r#"[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}, {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]"#;
    for include_prompt in [true, false] {
        let dir = tmp(&format!("st-prompts-{include_prompt}"));
        save_hf(&Bert::random(config(), None, 30).unwrap(), &dir, serde_json::json!({"architectures": ["BertModel"]}));
        std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
        let pool = format!(r#"{{"word_embedding_dimension": 32, "pooling_mode_mean_tokens": true, "include_prompt": {include_prompt}}}"#);
        std::fs::write(dir.join("1_Pooling/config.json"), pool).unwrap();
        std::fs::write(dir.join("modules.json"), modules).unwrap();
        std::fs::write(
            dir.join("config_sentence_transformers.json"),
            r#"{"prompts": {"query": "query ? ", "answer": "answer . ", "none": ""}, "default_prompt_name": "query", "similarity_fn_name": "cosine"}"#,
        )
        .unwrap();
        let (ok, err) = quantize(&dir, &[]);
        assert!(ok, "{err}");
        let m = q8bert::Model::open(dir.join("model.q8b"), &q8bert::Options::default()).unwrap();
        let mut prompts = m.prompts().to_vec();
        prompts.sort();
        assert_eq!(prompts, [("answer".to_string(), "answer . ".to_string()), ("query".to_string(), "query ? ".to_string())], "the empty prompt is none");
        assert_eq!(m.default_prompt_name(), Some("query"));
        assert_eq!(m.head().include_prompt, include_prompt);
        let run = |p: q8bert::Prompt, t: &str| {
            let mut o = vec![0.0; m.text_output_len(1)];
            m.run_text_prompt(p, &[t], None, &mut o).unwrap();
            o
        };
        let mut default = vec![0.0; m.text_output_len(1)];
        m.run_text(&["the cat sat"], None, &mut default).unwrap();
        assert_eq!(default, run(q8bert::Prompt::Name("query"), "the cat sat"));
        assert_ne!(default, run(q8bert::Prompt::None, "the cat sat"));
        if include_prompt {
            assert_eq!(default, run(q8bert::Prompt::None, "query ? the cat sat"));
        } else {
            assert_ne!(default, run(q8bert::Prompt::None, "query ? the cat sat"), "the prompt's tokens are not pooled");
        }
    }
    let dir = tmp("st-prompts-bad-default");
    save_hf(&Bert::random(config(), None, 31).unwrap(), &dir, serde_json::json!({"architectures": ["BertModel"]}));
    std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
    std::fs::write(dir.join("1_Pooling/config.json"), r#"{"word_embedding_dimension": 32, "pooling_mode_mean_tokens": true}"#).unwrap();
    std::fs::write(dir.join("modules.json"), modules).unwrap();
    std::fs::write(dir.join("config_sentence_transformers.json"), r#"{"prompts": {"query": "query ? "}, "default_prompt_name": "passage"}"#).unwrap();
    let (ok, err) = quantize(&dir, &[]);
    assert!(!ok);
    assert!(err.contains("default_prompt_name \"passage\" is not one of the prompts"), "{err}");
}

/// Pooling -> Dense -> Normalize (LaBSE's layout): the Dense module's weights (safetensors, as
/// sentence-transformers saves them) become the runtime head's Dense layer, narrower (tanh) or
/// wider (identity) than H, in both schemes, and the packed output follows the trainer's fp32
/// Pooling -> Dense -> Normalize of the same directory.
#[test]
fn sentence_transformers_dense_module() {
    for (i, (out, activation, scheme)) in [(16usize, "torch.nn.modules.activation.Tanh", "per-token"), (48, "torch.nn.modules.linear.Identity", "q8bert")].into_iter().enumerate() {
        let dir = tmp(&format!("st-dense-{i}"));
        save_hf(&Bert::random(config(), None, 30 + i as u64).unwrap(), &dir, serde_json::json!({"architectures": ["BertModel"]}));
        std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
        std::fs::write(dir.join("1_Pooling/config.json"), r#"{"word_embedding_dimension": 32, "pooling_mode_mean_tokens": true}"#).unwrap();
        std::fs::create_dir_all(dir.join("2_Dense")).unwrap();
        std::fs::write(dir.join("2_Dense/config.json"), format!(r#"{{"in_features": 32, "out_features": {out}, "bias": true, "activation_function": "{activation}"}}"#)).unwrap();
        let dev = candle_core::Device::Cpu;
        let weight = candle_core::Tensor::randn(0f32, 0.3, (out, 32), &dev).unwrap();
        let bias = candle_core::Tensor::randn(0f32, 0.1, out, &dev).unwrap();
        let tensors: HashMap<String, candle_core::Tensor> = [("linear.weight".to_string(), weight), ("linear.bias".to_string(), bias)].into_iter().collect();
        candle_core::safetensors::save(&tensors, dir.join("2_Dense/model.safetensors")).unwrap();
        std::fs::write(
            dir.join("modules.json"),
            r#"[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}, {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}, {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}, {"idx": 3, "name": "3", "path": "3_Normalize", "type": "sentence_transformers.models.Normalize"}]"#,
        )
        .unwrap();
        let (ok, err) = quantize(&dir, &["--scheme", scheme]);
        assert!(ok, "{err}");
        let m = q8bert::Model::open(dir.join("model.q8b"), &q8bert::Options::default()).unwrap();
        let want = if activation.ends_with("Tanh") { q8bert::model::DenseActivation::Tanh } else { q8bert::model::DenseActivation::Identity };
        assert_eq!(m.head().dense, [want]);
        assert_eq!(m.text_output_len(1), out);
        let cosine = check_fidelity(&dir, false, Output::Embedding { pooling: Pooling::Mean.into(), normalize: true });
        assert!(cosine > 0.99, "{scheme}: cosine min {cosine}");
    }
}

/// Writes a sentence-transformers Dense module (random weights) into `dir/folder`.
fn write_dense(dir: &Path, folder: &str, in_features: usize, out: usize, activation: &str, extra: &str) {
    std::fs::create_dir_all(dir.join(folder)).unwrap();
    std::fs::write(
        dir.join(folder).join("config.json"),
        format!(r#"{{"in_features": {in_features}, "out_features": {out}, "bias": true, "activation_function": "{activation}"{extra}}}"#),
    )
    .unwrap();
    let dev = candle_core::Device::Cpu;
    let weight = candle_core::Tensor::randn(0f32, 0.3, (out, in_features), &dev).unwrap();
    let bias = candle_core::Tensor::randn(0f32, 0.1, out, &dev).unwrap();
    let tensors: HashMap<String, candle_core::Tensor> = [("linear.weight".to_string(), weight), ("linear.bias".to_string(), bias)].into_iter().collect();
    candle_core::safetensors::save(&tensors, dir.join(folder).join("model.safetensors")).unwrap();
}

/// Two pooling modes into two chained Dense modules (sentence-transformers 6's module path and
/// `pooling_mode` list): the runtime head chains both layers, each with its own calibrated
/// input range, and follows the trainer's fp32 modules. A Dense module with a residual
/// connection, or Dense modules split by another module, are refused by name.
#[test]
fn sentence_transformers_dense_chain() {
    let st6 = |kind: &str| format!("sentence_transformers.base.modules.{}.{kind}", kind.to_lowercase());
    let modules = |names: &[(&str, &str)]| {
        let list: Vec<serde_json::Value> =
            names.iter().enumerate().map(|(i, (path, ty))| serde_json::json!({"idx": i, "name": i.to_string(), "path": path, "type": ty})).collect();
        serde_json::to_string(&list).unwrap()
    };
    let transformer = ("", "sentence_transformers.sentence_transformer.modules.transformer.Transformer".to_string());
    let pooling = ("1_Pooling", "sentence_transformers.sentence_transformer.modules.pooling.Pooling".to_string());
    let (dense_a, dense_b, normalize) = (("2_Dense", st6("Dense")), ("3_Dense", st6("Dense")), ("4_Normalize", st6("Normalize")));
    let layout = |mods: &[&(&str, String)]| modules(&mods.iter().map(|(p, t)| (*p, t.as_str())).collect::<Vec<_>>());
    for (i, scheme) in ["per-token", "q8bert"].into_iter().enumerate() {
        let dir = tmp(&format!("st-dense-chain-{i}"));
        save_hf(&Bert::random(config(), None, 40 + i as u64).unwrap(), &dir, serde_json::json!({"architectures": ["BertModel"]}));
        std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
        std::fs::write(dir.join("1_Pooling/config.json"), r#"{"embedding_dimension": 32, "pooling_mode": ["cls", "mean"]}"#).unwrap();
        write_dense(&dir, "2_Dense", 64, 24, "torch.nn.modules.activation.Tanh", "");
        write_dense(&dir, "3_Dense", 24, 40, "torch.nn.modules.linear.Identity", r#", "use_residual": false"#);
        std::fs::write(dir.join("modules.json"), layout(&[&transformer, &pooling, &dense_a, &dense_b, &normalize])).unwrap();
        let (ok, err) = quantize(&dir, &["--scheme", scheme]);
        assert!(ok, "{err}");
        let m = q8bert::Model::open(dir.join("model.q8b"), &q8bert::Options::default()).unwrap();
        use q8bert::model::DenseActivation as A;
        assert_eq!(m.head().dense, [A::Tanh, A::Identity]);
        assert_eq!(m.head().pooling, [q8bert::model::Pooling::Cls, q8bert::model::Pooling::Mean]);
        assert_eq!(m.text_output_len(1), 40);
        let pooling = trainer::fidelity::Poolings::new(&[Pooling::Cls, Pooling::Mean]).unwrap();
        let cosine = check_fidelity(&dir, false, Output::Embedding { pooling, normalize: true });
        // The paper's static ranges carry [CLS] of a random tiny model less well (0.985 here;
        // the cls-only test above allows 0.95); a wrong layer order or range gives far less.
        let floor = if scheme == "q8bert" { 0.98 } else { 0.995 };
        assert!(cosine > floor, "{scheme}: cosine min {cosine}");
    }
    let refused = [
        ("residual", r#", "use_residual": true"#, vec![&transformer, &pooling, &dense_a, &dense_b, &normalize], "use_residual is true"),
        ("split", "", vec![&transformer, &pooling, &dense_a, &normalize, &dense_b], "must come one after another right after the Pooling module"),
    ];
    for (name, extra, mods, message) in refused {
        let dir = tmp(&format!("st-dense-chain-{name}"));
        save_hf(&Bert::random(config(), None, 45).unwrap(), &dir, serde_json::json!({"architectures": ["BertModel"]}));
        std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
        std::fs::write(dir.join("1_Pooling/config.json"), r#"{"embedding_dimension": 32, "pooling_mode": "mean"}"#).unwrap();
        write_dense(&dir, "2_Dense", 32, 24, "torch.nn.modules.activation.Tanh", "");
        write_dense(&dir, "3_Dense", 24, 40, "torch.nn.modules.linear.Identity", extra);
        std::fs::write(dir.join("modules.json"), layout(&mods)).unwrap();
        let (ok, err) = quantize(&dir, &[]);
        assert!(!ok, "{name}");
        assert!(err.contains(message), "{name}: {err}");
    }
}

#[test]
fn sequence_classifier_keeps_its_id2label_names() {
    let dir = tmp("cls");
    let labels = serde_json::json!({"0": "negative", "1": "neutral", "2": "positive"});
    save_hf(&Bert::random(config(), Some(3), 2).unwrap(), &dir, serde_json::json!({"architectures": ["BertForSequenceClassification"], "id2label": labels}));
    let (ok, err) = quantize(&dir, &[]);
    assert!(ok, "{err}");
    let m = q8bert::Model::open(dir.join("model.q8b"), &q8bert::Options::default()).unwrap();
    assert_eq!(m.head().kind, q8bert::HeadKind::Classification);
    assert_eq!(m.head().labels, ["negative", "neutral", "positive"]);
    // The names reach the C API.
    let path = std::ffi::CString::new(dir.join("model.q8b").to_str().unwrap()).unwrap();
    let mut c = std::ptr::null_mut();
    // SAFETY: valid NUL-terminated path, NULL options, a writable out pointer; freed below.
    unsafe {
        assert_eq!(q8bert::ffi::q8bert_create(path.as_ptr(), std::ptr::null(), &mut c), q8bert::Status::Ok);
        let name = std::ffi::CStr::from_ptr(q8bert::ffi::q8bert_label_name(c, 1));
        assert_eq!(name.to_str().unwrap(), "neutral");
        q8bert::ffi::q8bert_free(c);
    }
    check_fidelity(&dir, false, Output::Classification { labels: 3 });
}

#[test]
fn regression_and_cross_encoder_give_one_score() {
    // problem_type regression.
    let dir = tmp("regression");
    save_hf(&Bert::random(config(), Some(1), 3).unwrap(), &dir, serde_json::json!({"architectures": ["BertForSequenceClassification"], "problem_type": "regression", "id2label": {"0": "LABEL_0"}}));
    let (ok, err) = quantize(&dir, &[]);
    assert!(ok, "{err}");
    let m = q8bert::Model::open(dir.join("model.q8b"), &q8bert::Options::default()).unwrap();
    assert_eq!(m.head().kind, q8bert::HeadKind::Regression);
    check_fidelity(&dir, true, Output::Regression);
    // A cross-encoder (ms-marco style): one logit, no problem_type, fed (query, passage) pairs.
    let dir = tmp("cross-encoder");
    save_hf(&Bert::random(config(), Some(1), 4).unwrap(), &dir, serde_json::json!({"architectures": ["BertForSequenceClassification"], "id2label": {"0": "LABEL_0"}}));
    let (ok, err) = quantize(&dir, &[]);
    assert!(ok, "{err}");
    let m = q8bert::Model::open(dir.join("model.q8b"), &q8bert::Options::default()).unwrap();
    assert_eq!(m.head().kind, q8bert::HeadKind::Regression);
    // The pair is one input (token types 0 then 1): scores differ when the second text does.
    let score = |a: &str, b: &str| {
        let mut out = [0f32; 1];
        m.run_text(&[a], Some(&[b]), &mut out).unwrap();
        out[0]
    };
    assert_ne!(score("query ?", "the answer is a film"), score("query ?", "a cat sat on the mat"));
    check_fidelity(&dir, true, Output::Regression);
}

#[test]
fn unsupported_checkpoints_get_a_clear_error() {
    let model = Bert::random(config(), None, 5).unwrap();
    for (name, extra, want) in [
        ("electra", serde_json::json!({"model_type": "electra"}), "model_type \"electra\" is not supported"),
        ("xlm-roberta-token-classifier", serde_json::json!({"model_type": "xlm-roberta", "architectures": ["XLMRobertaForTokenClassification"]}), "architecture \"XLMRobertaForTokenClassification\" is not supported"),
        ("gpt2", serde_json::json!({"model_type": "gpt2", "architectures": ["GPT2Model"]}), "model_type \"gpt2\" is not supported"),
        ("roberta-token-classifier", serde_json::json!({"model_type": "roberta", "architectures": ["RobertaForTokenClassification"]}), "architecture \"RobertaForTokenClassification\" is not supported"),
        ("token-classifier", serde_json::json!({"architectures": ["BertForTokenClassification"]}), "architecture \"BertForTokenClassification\" is not supported"),
    ] {
        let dir = tmp(name);
        save_hf(&model, &dir, extra);
        let (ok, err) = quantize(&dir, &[]);
        assert!(!ok, "{name} was accepted");
        assert!(err.contains(want), "{name}: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
    }
    // Asking for a classifier from an encoder-only checkpoint: no head to quantize.
    let dir = tmp("no-head");
    save_hf(&model, &dir, serde_json::json!({"architectures": ["BertModel"]}));
    let (ok, err) = quantize(&dir, &["--head", "classification"]);
    assert!(!ok);
    assert!(err.contains("needs the checkpoint's pooler and a classifier"), "{err}");
}
