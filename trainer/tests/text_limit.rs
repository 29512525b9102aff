//! A sentence-transformers directory's `max_seq_length` (sentence_bert_config.json) is recorded
//! by `trainer quantize` as the packed model's text limit, which the runtime then uses by
//! default: a text past it gives the output of the text cut there, as sentence-transformers cuts
//! it. The module's `do_lower_case` is kept. A module the runtime does not implement (LayerNorm) is
//! refused by name instead of dropped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use trainer::bert::{Bert, BertConfig};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("trainer-text-limit-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn vocab() -> Vec<String> {
    let mut v: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"].iter().map(|s| s.to_string()).collect();
    for w in ["the", "a", "cat", "dog", "sat", "on", "mat", "and", "ran", "away", "from", "house"] {
        v.push(w.to_string());
    }
    v
}

/// A sentence-transformers directory: Transformer (max_seq_length `limit`), mean Pooling,
/// Normalize, and `extra` modules after them.
fn write_st(dir: &Path, limit: Option<u64>, extra: &[serde_json::Value]) {
    let mut cfg = BertConfig::tiny(vocab().len());
    cfg.max_position_embeddings = 32;
    let model = Bert::random(cfg, None, 4).unwrap();
    let t: HashMap<String, candle_core::Tensor> = model.named_params().into_iter().map(|(n, v)| (n, v.as_tensor().clone())).collect();
    candle_core::safetensors::save(&t, dir.join("model.safetensors")).unwrap();
    let mut config = serde_json::to_value(&model.cfg).unwrap();
    config["architectures"] = serde_json::json!(["BertModel"]);
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    std::fs::write(dir.join("vocab.txt"), vocab().join("\n") + "\n").unwrap();
    if let Some(n) = limit {
        std::fs::write(dir.join("sentence_bert_config.json"), serde_json::json!({"max_seq_length": n, "do_lower_case": false}).to_string()).unwrap();
    }
    std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
    std::fs::write(dir.join("1_Pooling/config.json"), r#"{"word_embedding_dimension": 16, "pooling_mode_mean_tokens": true}"#).unwrap();
    let mut modules = vec![
        serde_json::json!({"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}),
        serde_json::json!({"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}),
    ];
    modules.extend(extra.iter().cloned());
    modules.push(serde_json::json!({"idx": modules.len(), "name": "n", "path": "n_Normalize", "type": "sentence_transformers.models.Normalize"}));
    std::fs::write(dir.join("modules.json"), serde_json::Value::Array(modules).to_string()).unwrap();
}

fn quantize(dir: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(["quantize", "--model", dir.to_str().unwrap(), "--output", dir.join("model.q8b").to_str().unwrap(), "--threads", "1"])
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

const LONG: &str = "the cat sat on the mat and the dog ran away from the house";
const CUT: &str = "the cat sat on the mat";

fn embed(m: &q8bert::Model, text: &str) -> Vec<f32> {
    let mut out = vec![0.0; m.text_output_len(1)];
    m.run_text(&[text], None, &mut out).unwrap();
    out
}

#[test]
fn max_seq_length_is_recorded_and_cuts_long_texts() {
    let dir = tmp("st");
    write_st(&dir, Some(8), &[]);
    let (ok, err) = quantize(&dir);
    assert!(ok, "{err}");
    let opts = q8bert::Options { truncation: Some(q8bert::tokenizer::Truncation::LongestFirst), ..Default::default() };
    let m = q8bert::Model::open(dir.join("model.q8b"), &opts).unwrap();
    assert_eq!(m.layout().text_limit, Some(8));
    assert_eq!(m.max_seq_len(), 8, "the runtime's default limit is the model's");
    assert_eq!(m.config().max_position_embeddings, 32);
    assert_eq!(m.encode(CUT, None).unwrap().ids.len(), 8);
    assert_eq!(embed(&m, LONG), embed(&m, CUT), "cut at max_seq_length, as sentence-transformers does");
    // The whole text differs (the limit did something).
    let whole = q8bert::Model::open(dir.join("model.q8b"), &q8bert::Options { max_seq_len: 32, ..opts }).unwrap();
    assert_ne!(embed(&whole, LONG), embed(&m, LONG));

    // A max_seq_length past the position table is lowered to it, with a note.
    let dir = tmp("st-long");
    write_st(&dir, Some(512), &[]);
    let (ok, err) = quantize(&dir);
    assert!(ok, "{err}");
    assert!(err.contains("max_seq_length 512") && err.contains("recording 32"), "{err}");
    let m = q8bert::Model::open(dir.join("model.q8b"), &q8bert::Options::default()).unwrap();
    assert_eq!(m.layout().text_limit, Some(32));

    // No sentence_bert_config.json: no recorded limit, the position table as before.
    let dir = tmp("st-none");
    write_st(&dir, None, &[]);
    let (ok, err) = quantize(&dir);
    assert!(ok, "{err}");
    let m = q8bert::Model::open(dir.join("model.q8b"), &q8bert::Options::default()).unwrap();
    assert_eq!(m.layout().text_limit, None);
    assert_eq!(m.max_seq_len(), 32);
}

/// sentence_bert_config.json `do_lower_case: true` over a cased tokenizer: sentence-transformers
/// lower-cases the text first, so the packed tokenizer lower-cases (accents stay the tokenizer's).
#[test]
fn do_lower_case_of_the_transformer_module_is_kept() {
    let mut outputs = Vec::new();
    for lower in [true, false] {
        let dir = tmp(&format!("lower-{lower}"));
        write_st(&dir, Some(8), &[]);
        std::fs::write(dir.join("tokenizer_config.json"), r#"{"do_lower_case": false}"#).unwrap();
        std::fs::write(dir.join("sentence_bert_config.json"), serde_json::json!({"max_seq_length": 8, "do_lower_case": lower}).to_string()).unwrap();
        let (ok, err) = quantize(&dir);
        assert!(ok, "{err}");
        let m = q8bert::Model::open(dir.join("model.q8b"), &q8bert::Options::default()).unwrap();
        assert_eq!(m.tokenizer_settings().do_lower_case, lower);
        assert!(!m.tokenizer_settings().strip_accents, "accent stripping stays the tokenizer's");
        let (upper, plain) = (embed(&m, "The CAT sat"), embed(&m, "the cat sat"));
        if lower {
            assert_eq!(upper, plain);
        } else {
            assert_ne!(upper, plain, "a cased tokenizer without do_lower_case reads The and CAT as [UNK]");
        }
        outputs.push(plain);
    }
    assert_eq!(outputs[0], outputs[1], "lower-case text is read the same either way");
}

/// Older sentence-transformers saves keep the Transformer module in a subfolder (modules.json
/// path "0_Transformer": config.json, weights, vocab and sentence_bert_config.json there): the
/// same model converts to the same outputs as from the flat layout.
#[test]
fn transformer_module_in_a_subfolder() {
    let flat = tmp("flat");
    write_st(&flat, Some(8), &[]);
    let nested = tmp("nested");
    write_st(&nested, Some(8), &[]);
    let sub = nested.join("0_Transformer");
    std::fs::create_dir_all(&sub).unwrap();
    for f in ["config.json", "model.safetensors", "vocab.txt", "sentence_bert_config.json"] {
        std::fs::rename(nested.join(f), sub.join(f)).unwrap();
    }
    let modules = std::fs::read_to_string(nested.join("modules.json")).unwrap().replace(r#""path":"""#, r#""path":"0_Transformer""#);
    assert!(modules.contains("0_Transformer"), "{modules}");
    std::fs::write(nested.join("modules.json"), modules).unwrap();
    for d in [&flat, &nested] {
        let (ok, err) = quantize(d);
        assert!(ok, "{}: {err}", d.display());
    }
    let open = |d: &Path| q8bert::Model::open(d.join("model.q8b"), &q8bert::Options { truncation: Some(q8bert::tokenizer::Truncation::LongestFirst), ..Default::default() }).unwrap();
    let (a, b) = (open(&flat), open(&nested));
    assert_eq!(b.layout().text_limit, Some(8), "sentence_bert_config.json read from the subfolder");
    for text in [CUT, LONG] {
        assert_eq!(embed(&a, text), embed(&b, text));
    }
}

/// `trainer fidelity` compares at the limit the runtime uses by default: the model's.
#[test]
fn fidelity_defaults_to_the_recorded_limit() {
    let dir = tmp("fidelity");
    write_st(&dir, Some(8), &[]);
    let (ok, err) = quantize(&dir);
    assert!(ok, "{err}");
    let texts = dir.join("texts.txt");
    std::fs::write(&texts, format!("{CUT}\n{LONG}\n")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(["fidelity", "--model", dir.to_str().unwrap(), "--q8b", dir.join("model.q8b").to_str().unwrap(), "--texts", texts.to_str().unwrap(), "--threads", "1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("truncated: 1 of 2 rows are longer than 8 tokens") && stdout.contains("line 2"), "{stdout}");
}

#[test]
fn an_unsupported_module_is_refused_by_name() {
    let dir = tmp("layernorm");
    let module = serde_json::json!({"idx": 2, "name": "2", "path": "2_LayerNorm", "type": "sentence_transformers.models.LayerNorm"});
    write_st(&dir, Some(8), &[module]);
    let (ok, err) = quantize(&dir);
    assert!(!ok, "a LayerNorm module must not be dropped silently");
    assert!(err.contains("modules.json") && err.contains("\"2_LayerNorm\"") && err.contains("sentence_transformers.models.LayerNorm"), "{err}");
    assert!(err.contains("Transformer, Pooling, Dense, Normalize"), "{err}");
    assert!(!dir.join("model.q8b").exists());
}

/// A directory as sentence-transformers 6 with transformers 5 saves it: no vocab.txt (the
/// WordPiece vocabulary and its BertNormalizer are in tokenizer.json) and no max_seq_length in
/// sentence_bert_config.json (the limit is the tokenizer's model_max_length). The packed model
/// tokenizes as the vocab.txt directory does and keeps that limit; a tokenizer.json with another
/// normalizer is refused by name.
#[test]
fn tokenizer_json_only_directory_keeps_vocabulary_case_and_limit() {
    let with_txt = tmp("st5");
    write_st(&with_txt, Some(8), &[]);
    let dir = tmp("st6");
    write_st(&dir, None, &[]);
    std::fs::remove_file(dir.join("vocab.txt")).unwrap();
    std::fs::write(dir.join("sentence_bert_config.json"), r#"{"transformer_task": "feature-extraction", "module_output_name": "token_embeddings"}"#).unwrap();
    std::fs::write(dir.join("tokenizer_config.json"), r#"{"model_max_length": 8, "do_lower_case": false, "unk_token": "[UNK]"}"#).unwrap();
    let ids: serde_json::Map<String, serde_json::Value> = vocab().into_iter().enumerate().map(|(i, t)| (t, serde_json::json!(i))).collect();
    let special = |id: &str, t: u64| serde_json::json!({"SpecialToken": {"id": id, "type_id": t}});
    let seq = |id: &str, t: u64| serde_json::json!({"Sequence": {"id": id, "type_id": t}});
    let bert_post = serde_json::json!({"type": "TemplateProcessing",
        "single": [special("[CLS]", 0), seq("A", 0), special("[SEP]", 0)],
        "pair": [special("[CLS]", 0), seq("A", 0), special("[SEP]", 0), seq("B", 1), special("[SEP]", 1)]});
    let tokenizer = |normalizer: serde_json::Value, post: &serde_json::Value| {
        serde_json::json!({
            "normalizer": normalizer,
            "pre_tokenizer": {"type": "BertPreTokenizer"},
            "post_processor": post,
            "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##", "max_input_chars_per_word": 100, "vocab": ids},
        })
        .to_string()
    };
    // lowercase true here (tokenizer_config.json says false): the fast tokenizer follows tokenizer.json.
    let bert_normalizer = serde_json::json!({"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true, "strip_accents": null, "lowercase": true});
    std::fs::write(dir.join("tokenizer.json"), tokenizer(bert_normalizer.clone(), &bert_post)).unwrap();
    for d in [&with_txt, &dir] {
        let (ok, err) = quantize(d);
        assert!(ok, "{}: {err}", d.display());
    }
    let opts = q8bert::Options { truncation: Some(q8bert::tokenizer::Truncation::LongestFirst), ..Default::default() };
    let (a, b) = (q8bert::Model::open(with_txt.join("model.q8b"), &opts).unwrap(), q8bert::Model::open(dir.join("model.q8b"), &opts).unwrap());
    assert_eq!(b.layout().text_limit, Some(8), "model_max_length is the limit");
    assert_eq!(embed(&a, LONG), embed(&b, LONG));
    assert_eq!(embed(&b, "THE Cat SAT"), embed(&b, "the cat sat"), "BertNormalizer lowercase");
    // Refused by name: another normalizer, a post-processor without [SEP] after the pair, none.
    let no_final_sep = serde_json::json!({"type": "TemplateProcessing",
        "single": [special("[CLS]", 0), seq("A", 0), special("[SEP]", 0)],
        "pair": [special("[CLS]", 0), seq("A", 0), special("[SEP]", 0), seq("B", 1)]});
    let refused = [
        (tokenizer(serde_json::json!({"type": "NFKC"}), &bert_post), "normalizer \"NFKC\" is not supported"),
        (tokenizer(bert_normalizer.clone(), &no_final_sep), "post_processor TemplateProcessing"),
        (tokenizer(bert_normalizer, &serde_json::Value::Null), "post_processor null is not supported"),
    ];
    for (json, message) in refused {
        std::fs::write(dir.join("tokenizer.json"), json).unwrap();
        let (ok, err) = quantize(&dir);
        assert!(!ok);
        assert!(err.contains(message), "{message}: {err}");
    }
}
