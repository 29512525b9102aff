//! What a user sees when `trainer` is pointed at the wrong thing: one `error: ...` line (plus
//! any next-step command), exit code 1, no Rust debug structs and no backtrace even with
//! RUST_BACKTRACE set; every missing file named, with what to do next; an unsupported model
//! refused by its model_type before anything else is looked at.

use std::path::{Path, PathBuf};
use std::process::Command;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("trainer-cli-errors-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A valid tiny BERT config.json, with `extra` merged in.
fn write_config(dir: &Path, extra: serde_json::Value) {
    let mut cfg = serde_json::json!({
        "model_type": "bert", "vocab_size": 30, "hidden_size": 16, "num_hidden_layers": 1,
        "num_attention_heads": 2, "intermediate_size": 32, "max_position_embeddings": 64,
    });
    for (k, v) in extra.as_object().unwrap() {
        cfg[k] = v.clone();
    }
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
}

/// `trainer quantize --model dir` with RUST_BACKTRACE=1; returns stderr after checking the
/// failure is reported the way every error should be.
fn quantize_error(dir: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(["quantize", "--model", dir.to_str().unwrap(), "--output", dir.join("out.q8b").to_str().unwrap(), "--threads", "1"])
        .env("RUST_BACKTRACE", "1")
        .env_remove("RUST_LIB_BACKTRACE")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    for debug_marker in ["Error {", "Caused by", "backtrace", "Backtrace", "panicked", "No such file or directory"] {
        assert!(!stderr.contains(debug_marker), "{debug_marker:?} in {stderr}");
    }
    assert!(stderr.lines().count() <= 4, "one message (and a command to run), not a trace: {stderr}");
    stderr
}

#[test]
fn missing_directory_and_config_are_named() {
    let root = tmp("missing");
    let err = quantize_error(&root.join("nope"));
    assert!(err.contains("nope: no such directory") && err.contains("config.json, model.safetensors, vocab.txt; or pytorch_model.bin"), "{err}");

    let file = root.join("model.q8b");
    std::fs::write(&file, b"x").unwrap();
    let err = quantize_error(&file);
    assert!(err.contains("is a file; --model takes a Hugging Face BERT model directory"), "{err}");

    let empty = root.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let err = quantize_error(&empty);
    assert!(err.contains(&format!("{} not found", empty.join("config.json").display())), "{err}");
    assert!(err.contains("huggingface-cli download"), "next step: {err}");
}

#[test]
fn model_type_is_checked_before_other_files() {
    let dir = tmp("gpt2");
    std::fs::write(dir.join("config.json"), r#"{"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_embd": 768}"#).unwrap();
    let err = quantize_error(&dir);
    assert!(err.contains("model_type \"gpt2\" is not supported; supported: bert"), "{err}");
}

/// gelu, gelu_new, gelu_pytorch_tanh and relu are read (tests/activations.rs); anything else is
/// refused by its name, with the list, before the weights are looked for.
#[test]
fn unsupported_hidden_act_names_the_value_and_what_is_supported() {
    for act in ["quick_gelu", "silu", "gelu_fast"] {
        let dir = tmp(act);
        write_config(&dir, serde_json::json!({"hidden_act": act}));
        let err = quantize_error(&dir);
        assert!(err.contains(&format!("hidden_act \"{act}\" is not supported; supported: \"gelu\", \"gelu_new\", \"gelu_pytorch_tanh\", \"relu\"")), "{err}");
        assert!(err.contains("config.json"), "names the file: {err}");
    }
}

#[test]
fn missing_or_unreadable_weights_are_named() {
    // pytorch_model.bin is read (tests/checkpoint_layouts.rs); one that is not PyTorch's zip
    // format is named, with the conversion command.
    let dir = tmp("bin-only");
    write_config(&dir, serde_json::json!({}));
    std::fs::write(dir.join("pytorch_model.bin"), b"not read").unwrap();
    std::fs::write(dir.join("vocab.txt"), "[PAD]\n[UNK]\n[CLS]\n[SEP]\nthe\n").unwrap();
    let err = quantize_error(&dir);
    assert!(err.contains(&format!("{}: not a zip archive", dir.join("pytorch_model.bin").display())), "{err}");
    assert!(err.contains("save_file("), "the conversion command: {err}");

    let dir = tmp("sharded");
    write_config(&dir, serde_json::json!({}));
    std::fs::write(dir.join("model.safetensors.index.json"), r#"{"weight_map": {"embeddings.word_embeddings.weight": "model-00001-of-00002.safetensors"}}"#).unwrap();
    let err = quantize_error(&dir);
    assert!(err.contains(&format!("{} not found", dir.join("model-00001-of-00002.safetensors").display())), "{err}");
    assert!(err.contains("huggingface-cli download"), "{err}");

    let dir = tmp("no-weights");
    write_config(&dir, serde_json::json!({}));
    let err = quantize_error(&dir);
    assert!(err.contains(&format!("{} not found", dir.join("model.safetensors").display())), "{err}");
    assert!(err.contains("pytorch_model.bin"), "{err}");
}

#[test]
fn missing_vocab_is_named() {
    let dir = tmp("no-vocab");
    write_config(&dir, serde_json::json!({}));
    std::fs::write(dir.join("model.safetensors"), b"").unwrap();
    let err = quantize_error(&dir);
    assert!(err.contains(&format!("{} not found", dir.join("vocab.txt").display())), "{err}");
    std::fs::write(dir.join("tokenizer.json"), b"{}").unwrap();
    let err = quantize_error(&dir);
    assert!(err.contains("Tokenizer.from_file"), "writes vocab.txt from tokenizer.json: {err}");
    // A tokenizer model the runtime has no algorithm for is named, with what is supported.
    std::fs::write(dir.join("tokenizer.json"), br#"{"model": {"type": "WordLevel"}}"#).unwrap();
    let err = quantize_error(&dir);
    assert!(err.contains("tokenizer model WordLevel is not supported") && err.contains("byte-level BPE") && err.contains("Unigram"), "{err}");
    // A Unigram pipeline other than XLM-R's is refused by the part that differs.
    std::fs::write(dir.join("tokenizer.json"), br#"{"model": {"type": "Unigram", "vocab": [["<unk>", 0.0]], "unk_id": 0}, "pre_tokenizer": {"type": "WhitespaceSplit"}}"#).unwrap();
    let err = quantize_error(&dir);
    assert!(err.contains("pre_tokenizer") && err.contains("WhitespaceSplit") && err.contains("Metaspace"), "{err}");
    // Only the SentencePiece model file: the command that writes tokenizer.json.
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    std::fs::write(dir.join("sentencepiece.bpe.model"), b"").unwrap();
    let err = quantize_error(&dir);
    assert!(err.contains("tokenizer.json") && err.contains("save_pretrained"), "{err}");
}

/// A corrupt weights file is a candle error; with RUST_BACKTRACE=1 candle appends a backtrace
/// to its message unless the trainer turns library backtraces off.
#[test]
fn candle_errors_come_without_a_backtrace() {
    let dir = tmp("corrupt");
    write_config(&dir, serde_json::json!({}));
    std::fs::write(dir.join("model.safetensors"), b"definitely not safetensors").unwrap();
    let vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the"].join("\n");
    std::fs::write(dir.join("vocab.txt"), vocab).unwrap();
    let err = quantize_error(&dir);
    assert!(err.contains("loading") && err.contains("model.safetensors"), "{err}");
}
