//! Two-stage QAT: starting from an already fine-tuned BertForSequenceClassification directory
//! (the trainer's own output). Tiny random BERTs generated here; no external files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use trainer::bert::{Bert, BertConfig, HeadInit, Track};
use trainer::data::{Encoded, Task};
use trainer::rng::Rng;
use trainer::train::{calibrate_tracking, fine_tune, ActRange, Dataset, FineTuneOptions};

fn save(model: &Bert, cfg_json: &serde_json::Value, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let t: HashMap<String, candle_core::Tensor> = model.named_params().into_iter().map(|(n, v)| (n, v.as_tensor().clone())).collect();
    candle_core::safetensors::save(&t, dir.join("model.safetensors")).unwrap();
    std::fs::write(dir.join("config.json"), serde_json::to_string(cfg_json).unwrap()).unwrap();
}

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("trainer-{name}-{}", std::process::id()))
}

fn values(t: &candle_core::Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn classifier_of_a_finetuned_checkpoint_is_loaded_not_reinitialised() {
    let dir = tmp("head-load");
    let cfg = BertConfig::tiny(20);
    // A "fine-tuned" classifier: random head, saved with the bert. prefix + classifier.*.
    let src = Bert::random(cfg.clone(), Some(3), 5).unwrap();
    let mut v = serde_json::to_value(&cfg).unwrap();
    v["problem_type"] = "single_label_classification".into();
    save(&src, &v, &dir);

    // Seed differs from the one that made the head: a re-initialised head would differ.
    let m = Bert::load(&dir, Some(3), 1234).unwrap();
    assert_eq!(m.head_init, Some(HeadInit::Loaded));
    let (a, b) = (src.head.as_ref().unwrap(), m.head.as_ref().unwrap());
    assert_eq!(values(a.classifier.weight.as_tensor()), values(b.classifier.weight.as_tensor()));
    assert_eq!(values(a.classifier.bias.as_tensor()), values(b.classifier.bias.as_tensor()));
    assert_eq!(values(a.pooler.weight.as_tensor()), values(b.pooler.weight.as_tensor()));
    // Every parameter round-trips (encoder included).
    for ((na, va), (nb, vb)) in src.named_params().into_iter().zip(m.named_params()) {
        assert_eq!(na, nb);
        assert_eq!(values(va.as_tensor()), values(vb.as_tensor()), "{na}");
    }

    // Another label count: re-initialised, and reported as such.
    let m2 = Bert::load(&dir, Some(2), 1234).unwrap();
    assert_eq!(m2.head_init, Some(HeadInit::ShapeMismatch));
    assert_eq!(m2.num_labels(), Some(2));

    // A plain encoder checkpoint (BertModel): initialised.
    let enc_dir = tmp("head-init");
    let enc = Bert::random(cfg.clone(), None, 5).unwrap();
    save(&enc, &serde_json::to_value(&cfg).unwrap(), &enc_dir);
    let m3 = Bert::load(&enc_dir, Some(2), 1).unwrap();
    assert_eq!(m3.head_init, Some(HeadInit::Initialised));
    assert_eq!(Bert::load(&enc_dir, None, 1).unwrap().head_init, None);
    std::fs::remove_dir_all(&dir).ok();
    std::fs::remove_dir_all(&enc_dir).ok();
}

fn random_rows(n: usize, vocab: u32, seed: u64) -> Vec<Encoded> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|i| {
            let len = 4 + rng.below(8);
            let ids: Vec<u32> = (0..len).map(|_| 1 + rng.below(vocab as usize - 1) as u32).collect();
            Encoded { type_ids: vec![0; ids.len()], ids, label: (i % 2) as f32 }
        })
        .collect()
}

#[test]
fn calibration_sets_every_range_with_the_training_statistic() {
    let cfg = BertConfig::tiny(20);
    let model = Bert::random(cfg, Some(2), 3).unwrap();
    let data = Dataset { rows: random_rows(40, 20, 1) };
    for (_, t) in model.trackers() {
        t.set(Some(123.0)); // stale values must be cleared
    }
    // Running max over 5 batches of 8: >= the EMA (mean of maxima) of the same batches.
    calibrate_tracking(&model, &data, 0, 8, 5, Track::Max, 9).unwrap();
    let max = model.ranges();
    calibrate_tracking(&model, &data, 0, 8, 5, Track::Ema(0.9999), 9).unwrap();
    let ema = model.ranges();
    assert_eq!(max.len(), ema.len());
    for (k, m) in &max {
        let (m, e) = (m.expect("range set"), ema[k].expect("range set"));
        assert!(m > 0.0 && m < 100.0 && e > 0.0, "{k}: {m} {e}");
        assert!(e <= m * (1.0 + 1e-6), "{k}: ema {e} > max {m}");
    }
    // With one batch both statistics are that batch's max.
    calibrate_tracking(&model, &data, 0, 8, 1, Track::Max, 9).unwrap();
    let one_max = model.ranges();
    calibrate_tracking(&model, &data, 0, 8, 1, Track::Ema(0.9999), 9).unwrap();
    let one_ema = model.ranges();
    for (k, v) in &one_max {
        assert!((v.unwrap() - one_ema[k].unwrap()).abs() <= 1e-6 * v.unwrap(), "{k}");
    }
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

/// fp32 fine-tune, then QAT from its output directory: the second stage starts from the first
/// stage's classifier (its int8-simulated dev accuracy at step 0 is already the first stage's
/// PTQ level) and records where the head came from.
#[test]
fn qat_from_the_trainers_own_fp32_output() {
    let root = tmp("two-stage");
    let base = root.join("base");
    std::fs::create_dir_all(&base).unwrap();
    let mut vocab: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"].iter().map(|s| s.to_string()).collect();
    for w in ["good", "great", "fun", "bad", "awful", "dull", "the", "movie", "was", "a", "plot"] {
        vocab.push(w.into());
    }
    let cfg = BertConfig::tiny(vocab.len());
    save(&Bert::random(cfg.clone(), None, 9).unwrap(), &serde_json::to_value(&cfg).unwrap(), &base);
    std::fs::write(base.join("vocab.txt"), vocab.join("\n") + "\n").unwrap();
    write_tsv(&root.join("train.tsv"), 64, 1);
    write_tsv(&root.join("dev.tsv"), 24, 2);
    let opts = |model: PathBuf, out: &str, fp32: bool, calib: usize| FineTuneOptions {
        teacher: (!fp32).then(|| model.clone()),
        model,
        task: Task::Sst2,
        train_file: root.join("train.tsv"),
        eval_file: root.join("dev.tsv"),
        output_dir: root.join(out),
        epochs: 1.0,
        lr: 1e-3,
        warmup_ratio: 0.1,
        weight_decay: 0.0,
        batch_size: 8,
        eval_batch_size: 16,
        max_seq_len: 16,
        seed: 7,
        eval_steps: 0,
        logging_steps: 4,
        max_train_examples: None,
        max_eval_examples: None,
        ema_decay: 0.9999,
        qat_start_step: 0,
        calibrate_batches: calib,
        eval_at_start: calib > 0,
        distill_alpha: 0.5,
        act_range: ActRange::Ema,
        fp32,
        scheme: trainer::quant::Scheme::Q8BERT,
        int8_attention: false,
        max_grad_norm: 1.0,
        dropout: None,
        threads: 2,
        export: false,
        check_rows: Some(0),
    };
    fine_tune(&opts(base.clone(), "fp32", true, 0)).unwrap();
    let fp32_dir = root.join("fp32");
    let results = |d: &str| -> serde_json::Value { serde_json::from_str(&std::fs::read_to_string(root.join(d).join("all_results.json")).unwrap()).unwrap() };
    assert_eq!(results("fp32")["head_from_checkpoint"], false);
    // The saved directory loads with its trained head.
    let saved = Bert::load(&fp32_dir, Some(2), 99).unwrap();
    assert_eq!(saved.head_init, Some(HeadInit::Loaded));

    fine_tune(&opts(fp32_dir.clone(), "qat", false, 3)).unwrap();
    let r = results("qat");
    assert_eq!(r["head_from_checkpoint"], true);
    assert_eq!(r["calibrate_batches"], 3);
    assert_eq!(r["act_range"], "ema");
    assert_eq!(r["distill_alpha"], 0.5);
    // Ranges were learned for every quantized input.
    let ranges: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(root.join("qat/quant_ranges.json")).unwrap()).unwrap();
    for (k, v) in ranges.as_object().unwrap() {
        assert!(v.as_f64().is_some_and(|x| x > 0.0), "{k}: {v}");
    }
    // --eval-at-start logged the step-0 (starting checkpoint) score but did not export it.
    let state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(root.join("qat/trainer_state.json")).unwrap()).unwrap();
    let evals: Vec<&serde_json::Value> = state["log_history"].as_array().unwrap().iter().filter(|e| e.get("eval_accuracy").is_some()).collect();
    assert_eq!(evals[0]["step"], 0);
    assert!(evals.len() >= 2);
    assert!(state["best_global_step"].as_u64().unwrap() > 0);
    // A regression checkpoint is refused for a classification task.
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fp32_dir.join("config.json")).unwrap()).unwrap();
    v["problem_type"] = "regression".into();
    std::fs::write(fp32_dir.join("config.json"), serde_json::to_string(&v).unwrap()).unwrap();
    let err = fine_tune(&opts(fp32_dir.clone(), "qat-bad", false, 0)).unwrap_err();
    assert!(format!("{err:#}").contains("regression"), "{err:#}");
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn distillation_loss_is_soft_cross_entropy_or_mse() {
    use candle_core::{Device, Tensor};
    use trainer::train::{distill_loss, loss};
    let s = Tensor::from_vec(vec![0.3f32, -1.0, 2.0, 0.5], (2, 2), &Device::Cpu).unwrap();
    // A (nearly) one-hot teacher gives the hard-label cross-entropy.
    let t = Tensor::from_vec(vec![40f32, 0.0, 0.0, 40.0], (2, 2), &Device::Cpu).unwrap();
    let kd = distill_loss(&s, &t, false).unwrap().to_scalar::<f32>().unwrap();
    let ce = loss(&s, &[0.0, 1.0], false).unwrap().to_scalar::<f32>().unwrap();
    assert!((kd - ce).abs() < 1e-5, "{kd} {ce}");
    // Teacher = student: the loss is the teacher's entropy, and its gradient is zero.
    let v = candle_core::Var::from_tensor(&s).unwrap();
    let l = distill_loss(v.as_tensor(), &s, false).unwrap();
    let g = l.backward().unwrap();
    let gv: Vec<f32> = g.get(&v).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    assert!(gv.iter().all(|x| x.abs() < 1e-6), "{gv:?}");
    // Regression: MSE to the teacher's score.
    let a = Tensor::from_vec(vec![1f32, 2.0], (2, 1), &Device::Cpu).unwrap();
    let b = Tensor::from_vec(vec![2f32, 4.0], (2, 1), &Device::Cpu).unwrap();
    assert!((distill_loss(&a, &b, true).unwrap().to_scalar::<f32>().unwrap() - 2.5).abs() < 1e-6);
}
