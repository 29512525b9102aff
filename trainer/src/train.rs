//! `trainer fine-tune`: Q8BERT quantization-aware fine-tuning (or the fp32 baseline) of a BERT
//! sequence classifier/regressor, following Hugging Face `run_glue.py` conventions.

use crate::bert::{Bert, Ctx, HeadInit, Track};
use crate::data::{read_tsv, Example, Task, TextTokenizer};
use crate::metrics::glue_metrics;
use crate::optim::{linear_schedule, AdamW};
use crate::quant::Scheme;
use crate::rng::Rng;
pub use crate::eval::{id2label_names, label_names, loss, predict, Dataset};
use anyhow::{bail, Context, Result};
use candle_core::{DType, Tensor, D};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct FineTuneOptions {
    pub model: PathBuf,
    pub task: Task,
    pub train_file: PathBuf,
    pub eval_file: PathBuf,
    pub output_dir: PathBuf,
    pub epochs: f32,
    pub lr: f32,
    pub warmup_ratio: f32,
    pub weight_decay: f32,
    pub batch_size: usize,
    pub eval_batch_size: usize,
    pub max_seq_len: usize,
    pub seed: u64,
    pub eval_steps: usize,
    pub logging_steps: usize,
    pub max_train_examples: Option<usize>,
    pub max_eval_examples: Option<usize>,
    pub ema_decay: f32,
    pub qat_start_step: usize,
    /// QAT: training batches (dropout off, no fake quant) run through the model before the
    /// first step to initialise the activation ranges with the same statistic as training
    /// (useful when starting from an already fine-tuned checkpoint). 0 = none.
    pub calibrate_batches: usize,
    /// Knowledge distillation from an fp32 teacher (a fine-tuned directory, usually the same one
    /// as `model` for two-stage QAT): loss = (1 - alpha) * task loss + alpha * distillation loss
    /// (soft cross-entropy against the teacher's softmax; regression: MSE to its score).
    pub teacher: Option<PathBuf>,
    pub distill_alpha: f32,
    /// Also evaluate before the first step (logged in trainer_state.json, never exported).
    pub eval_at_start: bool,
    /// QAT activation-range statistic: the paper's bias-corrected EMA of per-batch max|x|, or
    /// the running max (never clips a value seen in training).
    pub act_range: ActRange,
    pub fp32: bool,
    /// The quantization QAT simulates and the export packs.
    pub scheme: Scheme,
    /// Attention scores from requantized Q and K (format 1.1; not part of the paper's scheme).
    pub int8_attention: bool,
    pub max_grad_norm: f32,
    pub dropout: Option<f32>,
    pub threads: usize,
    pub export: bool,
    /// Rows of the eval set run through the packed model after export (None = all).
    pub check_rows: Option<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActRange {
    Ema,
    Max,
}

impl ActRange {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "ema" => Ok(ActRange::Ema),
            "max" => Ok(ActRange::Max),
            _ => bail!("unknown activation range {s:?} (ema, max)"),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            ActRange::Ema => "ema",
            ActRange::Max => "max",
        }
    }
    pub fn track(self, ema_decay: f32) -> Track {
        match self {
            ActRange::Ema => Track::Ema(ema_decay),
            ActRange::Max => Track::Max,
        }
    }
}

/// Feeds `n` shuffled training batches through the fp32 model (no dropout, no fake quant) with
/// `track`, after clearing every range: the QAT ranges start from the model's own statistics
/// instead of from the first (dropout-perturbed) training batch.
pub fn calibrate_tracking(model: &Bert, data: &Dataset, pad_id: u32, batch_size: usize, n: usize, track: Track, seed: u64) -> Result<()> {
    for (_, t) in model.trackers() {
        t.set(None);
    }
    let ctx = Ctx { dropout: false, quant: false, track, scheme: Scheme::Q8BERT, rng: std::cell::RefCell::new(Rng::new(0)) };
    let mut rng = Rng::new(seed ^ 0x0CA1_1B7A);
    for idx in data.bucketed_batches(batch_size, &mut rng).into_iter().take(n) {
        let (batch, _) = data.batch(&idx, pad_id)?;
        model.logits(&batch, &ctx)?;
    }
    Ok(())
}

/// Distillation loss against fixed teacher outputs: soft cross-entropy
/// -sum softmax(t) * log_softmax(s) (temperature 1), or MSE for regression.
pub fn distill_loss(student: &Tensor, teacher: &Tensor, regression: bool) -> Result<Tensor> {
    if regression {
        return Ok((student - teacher)?.sqr()?.mean_all()?);
    }
    let tm = teacher.max_keepdim(D::Minus1)?;
    let te = teacher.broadcast_sub(&tm)?.exp()?;
    let p = te.broadcast_div(&te.sum_keepdim(D::Minus1)?)?;
    let m = student.max_keepdim(D::Minus1)?.detach();
    let lse = (student.broadcast_sub(&m)?.exp()?.sum_keepdim(D::Minus1)?.log()? + m)?;
    let logp = student.broadcast_sub(&lse)?;
    Ok((p * logp)?.sum_keepdim(D::Minus1)?.neg()?.mean_all()?)
}

/// Runs calibration batches through the fp32 model, setting every input range to the max |x| seen.
pub fn calibrate(model: &Bert, data: &Dataset, pad_id: u32, batch_size: usize, max_batches: usize) -> Result<()> {
    for (_, t) in model.trackers() {
        t.set(None);
    }
    let ctx = Ctx { dropout: false, quant: false, track: Track::Max, scheme: Scheme::Q8BERT, rng: std::cell::RefCell::new(Rng::new(0)) };
    for idx in data.sorted_batches(batch_size).into_iter().take(max_batches) {
        let (batch, _) = data.batch(&idx, pad_id)?;
        if model.head.is_some() {
            model.logits(&batch, &ctx)?;
        } else {
            model.encode(&batch, &ctx)?;
        }
    }
    Ok(())
}

fn sum_sq(t: &Tensor) -> Result<f64> {
    let v = t.flatten_all()?.to_vec1::<f32>()?;
    Ok(v.iter().map(|&x| (x as f64) * (x as f64)).sum())
}

pub fn num_labels(task: Task, train: &[Example]) -> usize {
    match task {
        Task::Stsb | Task::Regression => 1,
        Task::Sst2 | Task::Cola | Task::Mrpc => 2,
        Task::Classification => (train.iter().map(|e| e.label as usize).max().unwrap_or(1) + 1).max(2),
    }
}

/// Everything fine-tune produced, for the export step.
pub struct TrainOutcome {
    pub best_metrics: BTreeMap<String, f64>,
    pub eval: Dataset,
    pub train_runtime: f64,
}

pub fn fine_tune(o: &FineTuneOptions) -> Result<()> {
    let t_start = Instant::now();
    std::fs::create_dir_all(&o.output_dir).with_context(|| format!("creating {}", o.output_dir.display()))?;
    let tokenizer = TextTokenizer::from_dir(&o.model)?;
    let regression = o.task.is_regression();
    let mut train_ex = read_tsv(&o.train_file, regression)?;
    let mut eval_ex = read_tsv(&o.eval_file, regression)?;
    if let Some(n) = o.max_train_examples {
        train_ex.truncate(n);
    }
    if let Some(n) = o.max_eval_examples {
        eval_ex.truncate(n);
    }
    if train_ex.is_empty() || eval_ex.is_empty() {
        bail!("empty training or evaluation set");
    }
    let n_labels = num_labels(o.task, &train_ex);
    let mut model = Bert::load(&o.model, Some(n_labels), o.seed)?;
    model.int8_attention = o.int8_attention;
    check_head(&model, o.task)?;
    if let Some(p) = o.dropout {
        model.cfg.hidden_dropout_prob = p;
        model.cfg.attention_probs_dropout_prob = p;
    }
    let max_len = o.max_seq_len.min(model.cfg.max_position_embeddings);
    let train = Dataset { rows: tokenizer.encode_all(&train_ex, max_len)? };
    let eval = Dataset { rows: tokenizer.encode_all(&eval_ex, max_len)? };
    let pad = tokenizer.pad_id();
    let teacher = match &o.teacher {
        Some(dir) => {
            let t = Bert::load(dir, Some(n_labels), o.seed)?;
            if t.head_init != Some(HeadInit::Loaded) {
                bail!("teacher {} has no trained {n_labels}-output classifier", dir.display());
            }
            eprintln!("distilling from {} (alpha {})", dir.display(), o.distill_alpha);
            Some(t)
        }
        None => None,
    };

    let named = model.named_params();
    let vars: Vec<_> = named.iter().map(|(_, v)| *v).collect();
    let no_decay: Vec<bool> = named.iter().map(|(n, _)| n.ends_with(".bias") || n.contains("LayerNorm")).collect();
    let mut opt = AdamW::new(&vars, &no_decay, o.weight_decay);

    let mut rng = Rng::new(o.seed);
    let per_epoch = train.rows.len().div_ceil(o.batch_size);
    let total_steps = ((o.epochs * per_epoch as f32).ceil() as usize).max(1);
    let warmup = (o.warmup_ratio * total_steps as f32).ceil() as usize;
    let eval_steps = if o.eval_steps == 0 { per_epoch } else { o.eval_steps };
    let main_metric = o.task.main_metric();

    eprintln!(
        "fine-tune {} ({}): {} train / {} eval rows, {} labels, {} steps ({} per epoch), batch {}, lr {}, {} threads",
        o.task.name(),
        if o.fp32 { "fp32 baseline" } else { "QAT int8" },
        train.rows.len(),
        eval.rows.len(),
        n_labels,
        total_steps,
        per_epoch,
        o.batch_size,
        o.lr,
        o.threads
    );

    if !o.fp32 && o.calibrate_batches > 0 {
        let t0 = Instant::now();
        calibrate_tracking(&model, &train, pad, o.batch_size, o.calibrate_batches, o.act_range.track(o.ema_decay), o.seed)?;
        eprintln!("calibrated activation ranges ({}) on {} training batches in {:.1}s", o.act_range.name(), o.calibrate_batches, t0.elapsed().as_secs_f64());
    }

    let pb = ProgressBar::with_draw_target(Some(total_steps as u64), ProgressDrawTarget::stderr());
    pb.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let interactive = !pb.is_hidden();

    let mut log_history: Vec<Value> = Vec::new();
    let mut best: Option<(f64, usize, Vec<Tensor>, BTreeMap<String, Option<f32>>, BTreeMap<String, f64>)> = None;
    let (mut t_fwd, mut t_bwd, mut t_opt, mut t_eval) = (Duration::ZERO, Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut batches: Vec<Vec<usize>> = Vec::new();
    let mut loss_acc = 0f64;
    let mut loss_n = 0usize;
    let mut loss_total = 0f64;
    let mut examples_seen = 0usize;
    let t_train = Instant::now();

    let mut evaluate = |model: &Bert, step: usize, quant: bool, log_history: &mut Vec<Value>| -> Result<()> {
        let t0 = Instant::now();
        let (outs, eval_loss) = predict(model, &eval, pad, quant, o.scheme, o.eval_batch_size, regression)?;
        let dt = t0.elapsed();
        t_eval += dt;
        let m = glue_metrics(o.task, &outs, &eval.rows.iter().map(|r| r.label).collect::<Vec<_>>());
        let mut entry = serde_json::Map::new();
        for (k, v) in &m {
            entry.insert(format!("eval_{k}"), json!(v));
        }
        entry.insert("eval_loss".into(), json!(eval_loss));
        entry.insert("eval_runtime".into(), json!(dt.as_secs_f64()));
        entry.insert("eval_samples_per_second".into(), json!(eval.rows.len() as f64 / dt.as_secs_f64()));
        entry.insert("epoch".into(), json!(step as f64 / per_epoch as f64));
        entry.insert("step".into(), json!(step));
        let score = m.get(main_metric).copied().unwrap_or(f64::NAN);
        let msg = format!("step {step}: eval_{main_metric} = {score:.4}, eval_loss = {eval_loss:.4}{}", if quant { " (int8 simulated)" } else { "" });
        if interactive {
            pb.println(msg);
        } else {
            eprintln!("{msg}");
        }
        log_history.push(Value::Object(entry));
        // Step 0 (before any training, --eval-at-start) is logged but never exported: it would be
        // the starting checkpoint with its ranges, not a trained model.
        if step > 0 && best.as_ref().is_none_or(|b| score > b.0) {
            best = Some((score, step, model.snapshot()?, model.ranges(), m));
        }
        Ok(())
    };

    if o.eval_at_start {
        evaluate(&model, 0, !o.fp32 && o.qat_start_step == 0, &mut log_history)?;
    }
    for step in 0..total_steps {
        if batches.is_empty() {
            batches = model_batches(&train, o.batch_size, &mut rng);
        }
        let idx = batches.pop().unwrap();
        let (batch, labels) = train.batch(&idx, pad)?;
        let quant = !o.fp32 && step >= o.qat_start_step;
        let ctx = Ctx {
            dropout: true,
            quant,
            track: if o.fp32 { Track::None } else { o.act_range.track(o.ema_decay) },
            scheme: o.scheme,
            rng: std::cell::RefCell::new(Rng::new(o.seed.wrapping_mul(1_000_003).wrapping_add(step as u64))),
        };
        let t0 = Instant::now();
        let logits = model.logits(&batch, &ctx)?;
        let l = match &teacher {
            Some(t) if o.distill_alpha > 0.0 => {
                let tl = t.logits(&batch, &Ctx::eval(false, Scheme::Q8BERT))?.detach();
                let task_l = loss(&logits, &labels, regression)?;
                let kd = distill_loss(&logits, &tl, regression)?;
                ((task_l * (1.0 - o.distill_alpha) as f64)? + (kd * o.distill_alpha as f64)?)?
            }
            _ => loss(&logits, &labels, regression)?,
        };
        let lv = l.to_scalar::<f32>()? as f64;
        if !lv.is_finite() {
            bail!("loss became {lv} at step {step}");
        }
        let t1 = Instant::now();
        let grads = l.backward()?;
        let t2 = Instant::now();
        // Global gradient-norm clipping (HF default max_grad_norm = 1.0), folded into the lr.
        let mut norm_sq = 0f64;
        for v in &vars {
            if let Some(g) = grads.get(v) {
                norm_sq += sum_sq(g)?;
            }
        }
        let norm = norm_sq.sqrt() as f32;
        let clip = if o.max_grad_norm > 0.0 && norm > o.max_grad_norm { o.max_grad_norm / (norm + 1e-6) } else { 1.0 };
        let lr = linear_schedule(step, warmup, total_steps, o.lr);
        if clip != 1.0 {
            let scaled = scale_grads(&vars, grads, clip)?;
            opt.step(&vars, &scaled, lr)?;
        } else {
            opt.step(&vars, &grads, lr)?;
        }
        let t3 = Instant::now();
        t_fwd += t1 - t0;
        t_bwd += t2 - t1;
        t_opt += t3 - t2;
        examples_seen += idx.len();
        loss_acc += lv;
        loss_n += 1;
        loss_total += lv;
        let done = step + 1;
        let eps = examples_seen as f64 / t_train.elapsed().as_secs_f64();
        pb.set_position(done as u64);
        pb.set_message(format!("loss {:.4} | {:.1} ex/s", loss_acc / loss_n as f64, eps));
        if done % o.logging_steps == 0 || done == total_steps {
            log_history.push(json!({
                "loss": loss_acc / loss_n as f64,
                "learning_rate": lr,
                "grad_norm": norm,
                "epoch": done as f64 / per_epoch as f64,
                "step": done,
            }));
            if !interactive {
                eprintln!("step {done}/{total_steps}: loss {:.4}, lr {lr:.3e}, {eps:.1} ex/s", loss_acc / loss_n as f64);
            }
            loss_acc = 0.0;
            loss_n = 0;
        }
        if done % eval_steps == 0 || done == total_steps {
            // QAT runs always evaluate the int8 simulation (ranges are tracked from step 0), so a
            // checkpoint from before --qat-start-step cannot win on an fp32 score.
            evaluate(&model, done, !o.fp32, &mut log_history)?;
        }
    }
    pb.finish_and_clear();
    drop(evaluate);
    let train_runtime = t_train.elapsed().as_secs_f64() - t_eval.as_secs_f64();
    let (best_score, best_step, snap, ranges, best_metrics) = best.context("no evaluation ran")?;
    model.restore(&snap)?;
    model.set_ranges(&ranges);
    if o.fp32 {
        // The baseline has no trained ranges: calibrate on training batches (post-training
        // quantization) so it can still be packed and compared.
        calibrate(&model, &train, pad, o.batch_size, 32)?;
    }
    let steps_f = total_steps as f64;
    let timing = json!({
        "forward_s": t_fwd.as_secs_f64(),
        "backward_s": t_bwd.as_secs_f64(),
        "optimizer_s": t_opt.as_secs_f64(),
        "eval_s": t_eval.as_secs_f64(),
        "forward_ms_per_step": 1e3 * t_fwd.as_secs_f64() / steps_f,
        "backward_ms_per_step": 1e3 * t_bwd.as_secs_f64() / steps_f,
        "optimizer_ms_per_step": 1e3 * t_opt.as_secs_f64() / steps_f,
    });
    eprintln!("best eval_{main_metric} = {best_score:.4} at step {best_step}; time per step: {timing}");

    // fp32 weights + config + tokenizer files: a Hugging Face BertForSequenceClassification dir.
    save_hf_dir(&model, o, n_labels)?;
    std::fs::write(o.output_dir.join("quant_ranges.json"), serde_json::to_string_pretty(&model.ranges())?)?;

    let mut results = serde_json::Map::new();
    let epochs_done = total_steps as f64 / per_epoch as f64;
    results.insert("epoch".into(), json!(epochs_done));
    for (k, v) in &best_metrics {
        results.insert(format!("eval_{k}"), json!(v));
    }
    results.insert("eval_samples".into(), json!(eval.rows.len()));
    results.insert("train_loss".into(), json!(loss_total / steps_f));
    results.insert("train_runtime".into(), json!(train_runtime));
    results.insert("train_samples".into(), json!(train.rows.len()));
    results.insert("train_samples_per_second".into(), json!(examples_seen as f64 / train_runtime));
    results.insert("train_steps_per_second".into(), json!(steps_f / train_runtime));
    results.insert("train_step_timing".into(), timing);
    results.insert("qat".into(), json!(!o.fp32));
    results.insert("head_from_checkpoint".into(), json!(model.head_init == Some(HeadInit::Loaded)));
    if !o.fp32 {
        results.insert("act_range".into(), json!(o.act_range.name()));
        results.insert("calibrate_batches".into(), json!(o.calibrate_batches));
        if let Some(t) = &o.teacher {
            results.insert("distill_teacher".into(), json!(t.display().to_string()));
            results.insert("distill_alpha".into(), json!(o.distill_alpha));
        }
    }

    let state = json!({
        "best_metric": best_score,
        "best_model_checkpoint": o.output_dir.display().to_string(),
        "best_global_step": best_step,
        "metric_for_best_model": format!("eval_{main_metric}"),
        "epoch": epochs_done,
        "global_step": total_steps,
        "max_steps": total_steps,
        "num_train_epochs": o.epochs,
        "train_batch_size": o.batch_size,
        "eval_steps": eval_steps,
        "logging_steps": o.logging_steps,
        "log_history": log_history,
        "seed": o.seed,
    });
    write_json(&o.output_dir.join("trainer_state.json"), &state)?;

    // The exported model's dev outputs as the trainer simulates the packed int8 model (for the
    // fp32 baseline: its post-training-quantized pack). `trainer eval --reference` compares the
    // runtime's outputs with these (agreement) without re-running the trainer.
    let (sim, _) = predict(&model, &eval, pad, true, o.scheme, o.eval_batch_size, regression)?;
    let sim_metrics = glue_metrics(o.task, &sim, &eval.rows.iter().map(|r| r.label).collect::<Vec<_>>());
    if o.fp32 {
        for (k, v) in &sim_metrics {
            results.insert(format!("eval_int8_simulated_{k}"), json!(v));
        }
    }
    write_json(
        &o.output_dir.join("eval_predictions.json"),
        &json!({
            "task": o.task.name(),
            "eval_file": o.eval_file.display().to_string(),
            "max_seq_len": max_len,
            "int8_simulated": true,
            "metrics": sim_metrics,
            "outputs": sim,
        }),
    )?;
    if o.export {
        let meta = crate::export::TrainMeta::from_options(o, &best_metrics, &o.train_file)?;
        let n_check = o.check_rows.unwrap_or(eval.rows.len()).min(eval.rows.len());
        let check = Dataset { rows: eval.rows[..n_check].to_vec() };
        let check = (n_check > 0).then_some((&check, pad));
        let report = crate::export::export_classifier(&model, &tokenizer, o.task, &o.output_dir.join("model.q8b"), o.scheme, &meta, check)?;
        for (k, v) in report {
            results.insert(k, v);
        }
    }
    write_json(&o.output_dir.join("all_results.json"), &Value::Object(results))?;
    eprintln!("done in {:.1}s; outputs in {}", t_start.elapsed().as_secs_f64(), o.output_dir.display());
    Ok(())
}

/// Reports where the head came from and refuses a fine-tuned checkpoint whose head is for the
/// other kind of task (a regression head for a classification task or vice versa).
fn check_head(model: &Bert, task: Task) -> Result<()> {
    let how = model.head_init.context("no sequence head")?;
    match how {
        HeadInit::Loaded => {
            if let Some(pt) = model.cfg.problem_type.as_deref() {
                let ckpt_regression = pt == "regression";
                if ckpt_regression != task.is_regression() && (pt == "regression" || pt == "single_label_classification") {
                    bail!("the checkpoint's head is {pt:?} but task {} is {}", task.name(), if task.is_regression() { "regression" } else { "classification" });
                }
            }
            eprintln!("classifier loaded from the checkpoint (starting from a fine-tuned model)");
        }
        HeadInit::Initialised => eprintln!("classifier initialised N(0, 0.02) (checkpoint has none)"),
        HeadInit::ShapeMismatch => eprintln!("warning: the checkpoint's classifier has another shape; re-initialised N(0, 0.02)"),
    }
    Ok(())
}

fn model_batches(train: &Dataset, bs: usize, rng: &mut Rng) -> Vec<Vec<usize>> {
    // Reversed so that `pop` yields them in order.
    let mut b = train.bucketed_batches(bs, rng);
    b.reverse();
    b
}

fn scale_grads(vars: &[&candle_core::Var], mut grads: candle_core::backprop::GradStore, s: f32) -> Result<candle_core::backprop::GradStore> {
    for v in vars {
        if let Some(g) = grads.remove(v) {
            grads.insert(v, (g * s as f64)?);
        }
    }
    Ok(grads)
}

pub fn write_json(path: &Path, v: &Value) -> Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(v)? + "\n").with_context(|| format!("writing {}", path.display()))
}

fn save_hf_dir(model: &Bert, o: &FineTuneOptions, n_labels: usize) -> Result<()> {
    let tensors: Vec<(String, Tensor)> = model.named_params().into_iter().map(|(n, v)| (n, v.as_tensor().clone())).collect();
    let path = o.output_dir.join("model.safetensors");
    candle_core::safetensors::save(&tensors.into_iter().collect::<std::collections::HashMap<_, _>>(), &path)?;
    let mut cfg = model.cfg.clone();
    if cfg.is_roberta() {
        // The weights are saved under BERT's names with the position table already shifted:
        // as a BERT they load back (here and in transformers) to the same function.
        cfg.model_type = Some("bert".into());
        cfg.pad_token_id = None;
    }
    let names = label_names(o.task, n_labels);
    cfg.id2label = Some(names.iter().enumerate().map(|(i, n)| (i.to_string(), n.clone())).collect());
    cfg.architectures = Some(vec!["BertForSequenceClassification".into()]);
    cfg.problem_type = Some(if o.task.is_regression() { "regression" } else { "single_label_classification" }.into());
    let mut v = serde_json::to_value(&cfg)?;
    v["label2id"] = json!(names.iter().enumerate().map(|(i, n)| (n.clone(), i)).collect::<BTreeMap<_, _>>());
    write_json(&o.output_dir.join("config.json"), &v)?;
    for f in ["vocab.txt", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.json", "vocab.json", "merges.txt"] {
        let src = o.model.join(f);
        if src.exists() {
            std::fs::copy(&src, o.output_dir.join(f))?;
        }
    }
    let _ = DType::F32;
    Ok(())
}

/// Provenance of a fine-tune, for the packed file's metadata.
impl crate::export::TrainMeta {
    pub fn from_options(o: &FineTuneOptions, metrics: &BTreeMap<String, f64>, train_file: &Path) -> Result<Self> {
        use crate::export::MetaEntry::*;
        let mut e = vec![
            ("general.base_model".to_string(), Str(o.model.display().to_string())),
            ("general.producer".into(), Str(format!("trainer {}", env!("CARGO_PKG_VERSION")))),
            ("train.task".into(), Str(o.task.name().into())),
            ("train.data_hash".into(), Str(crate::data::file_hash(train_file)?)),
            ("train.method".into(), Str(if o.fp32 { "fp32+post-training-quantization" } else { "q8bert-qat" }.into())),
            ("train.epochs".into(), F32(o.epochs)),
            ("train.lr".into(), F32(o.lr)),
            ("train.warmup_ratio".into(), F32(o.warmup_ratio)),
            ("train.weight_decay".into(), F32(o.weight_decay)),
            ("train.batch_size".into(), U32(o.batch_size as u32)),
            ("train.max_seq_len".into(), U32(o.max_seq_len as u32)),
            ("train.seed".into(), U64(o.seed)),
            ("train.max_train_examples".into(), U64(o.max_train_examples.unwrap_or(0) as u64)),
            ("qat.enabled".into(), Bool(!o.fp32)),
            ("qat.ema_decay".into(), F32(o.ema_decay)),
            ("qat.start_step".into(), U64(o.qat_start_step as u64)),
            ("qat.per_channel".into(), Bool(o.scheme.per_channel)),
            ("qat.scheme".into(), Str(o.scheme.name().into())),
            ("qat.weight_bits".into(), U32(o.scheme.weight_bits.into())),
            ("qat.int8_attention".into(), Bool(o.int8_attention)),
            ("qat.act_range".into(), Str(o.act_range.name().into())),
            ("qat.calibrate_batches".into(), U64(o.calibrate_batches as u64)),
            ("qat.distill_alpha".into(), F32(if o.teacher.is_some() { o.distill_alpha } else { 0.0 })),
        ];
        for (k, v) in metrics {
            e.push((format!("metrics.eval_{k}"), F32(*v as f32)));
        }
        Ok(crate::export::TrainMeta { entries: e, ..Default::default() })
    }
}
