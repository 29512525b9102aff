//! End to end on a tiny random BERT written as a Hugging Face directory: fine-tune (QAT) twice
//! with the same seed, check the outputs exist and the runs reproduce bit for bit.

use std::collections::HashMap;
use std::path::Path;
use trainer::bert::{Bert, BertConfig};
use trainer::data::Task;
use trainer::rng::Rng;
use trainer::train::{fine_tune, FineTuneOptions};

fn write_tiny_model(dir: &Path) -> Vec<String> {
    std::fs::create_dir_all(dir).unwrap();
    let mut vocab: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"].iter().map(|s| s.to_string()).collect();
    for w in ["good", "great", "fun", "bad", "awful", "dull", "the", "movie", "was", "a", "plot"] {
        vocab.push(w.into());
    }
    let cfg = BertConfig::tiny(vocab.len());
    let model = Bert::random(cfg.clone(), None, 9).unwrap();
    let t: HashMap<String, candle_core::Tensor> = model.named_params().into_iter().map(|(n, v)| (n, v.as_tensor().clone())).collect();
    candle_core::safetensors::save(&t, dir.join("model.safetensors")).unwrap();
    std::fs::write(dir.join("config.json"), serde_json::to_string(&cfg).unwrap()).unwrap();
    std::fs::write(dir.join("vocab.txt"), vocab.join("\n") + "\n").unwrap();
    vocab
}

fn write_tsv(path: &Path, n: usize, seed: u64) {
    let pos = ["good", "great", "fun"];
    let neg = ["bad", "awful", "dull"];
    let filler = ["the", "movie", "was", "a", "plot"];
    let mut rng = Rng::new(seed);
    let mut s = String::from("sentence\tlabel\n");
    for i in 0..n {
        let label = i % 2;
        let mut words: Vec<&str> = (0..3 + rng.below(5)).map(|_| filler[rng.below(filler.len())]).collect();
        let w = if label == 1 { pos[rng.below(3)] } else { neg[rng.below(3)] };
        let at = rng.below(words.len() + 1);
        words.insert(at, w);
        s += &format!("{}\t{label}\n", words.join(" "));
    }
    std::fs::write(path, s).unwrap();
}

#[test]
fn seeded_fine_tune_reproduces_and_exports() {
    let root = std::env::temp_dir().join(format!("trainer-e2e-{}", std::process::id()));
    let model_dir = root.join("model");
    write_tiny_model(&model_dir);
    write_tsv(&root.join("train.tsv"), 96, 1);
    write_tsv(&root.join("dev.tsv"), 40, 2);
    let run = |out: &str| {
        let o = FineTuneOptions {
            model: model_dir.clone(),
            task: Task::Sst2,
            train_file: root.join("train.tsv"),
            eval_file: root.join("dev.tsv"),
            output_dir: root.join(out),
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
            export: cfg!(feature = "runtime"),
            check_rows: None,
        };
        fine_tune(&o).unwrap();
        std::fs::read(root.join(out).join("model.safetensors")).unwrap()
    };
    let a = run("a");
    let b = run("b");
    assert!(a == b, "same seed must give identical weights");
    let results: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(root.join("a/all_results.json")).unwrap()).unwrap();
    for k in ["eval_accuracy", "train_runtime", "train_samples_per_second"] {
        assert!(results.get(k).is_some(), "all_results.json lacks {k}");
    }
    let state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(root.join("a/trainer_state.json")).unwrap()).unwrap();
    assert!(state["log_history"].as_array().unwrap().len() >= 3);
    assert!(state["best_metric"].as_f64().is_some());
    if cfg!(feature = "runtime") {
        assert!(root.join("a/model.q8b").exists());
        assert!(results["runtime_agreement"].as_f64().unwrap() >= 0.95);
    }
    // The task is learnable: the token "good"/"bad" decides the label.
    eprintln!("tiny e2e: eval_accuracy {}", results["eval_accuracy"]);
    std::fs::remove_dir_all(&root).ok();
}
