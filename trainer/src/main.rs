use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use trainer::bert::Bert;
use trainer::data::{read_tsv, Example, Task, TextTokenizer};
use trainer::train::{calibrate, Dataset, FineTuneOptions};

// Training allocates and frees many large temporaries per step; glibc malloc returned them to the
// OS each time (millions of page faults, 30-40% system time). mimalloc with purging disabled
// keeps them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "trainer", version, about = "Q8BERT quantization-aware training for the q8bert runtime")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Fine-tune a BERT checkpoint on a GLUE task or a TSV with QAT, writing OUT/model.q8b.
    FineTune(FineTuneArgs),
    /// Post-training quantization of an fp32 model (classifier or sentence-transformers embedding).
    Quantize(QuantizeArgs),
    /// Run a packed model through the runtime on a TSV and print the task's GLUE metrics as JSON.
    Eval(EvalArgs),
    /// Print a packed model's config, head, metadata, tensors and scales.
    Inspect { file: PathBuf },
    /// Compare a packed model with the fp32 checkpoint it was made from, on your own text:
    /// cosine, label agreement, differences, and the worst rows.
    Fidelity(FidelityArgs),
}

#[derive(clap::Args)]
struct FineTuneArgs {
    /// Hugging Face model directory (config.json, model.safetensors, vocab.txt).
    #[arg(long)]
    model: PathBuf,
    /// sst2, cola, mrpc, stsb; or classification/regression with --train-file/--eval-file.
    #[arg(long)]
    task: String,
    /// GLUE-format directory (SST-2/train.tsv, ...).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// TSV with a header: text [text_b] label.
    #[arg(long)]
    train_file: Option<PathBuf>,
    #[arg(long)]
    eval_file: Option<PathBuf>,
    #[arg(long)]
    output_dir: PathBuf,
    #[arg(long, default_value_t = 3.0)]
    epochs: f32,
    #[arg(long, default_value_t = 2e-5)]
    lr: f32,
    #[arg(long, default_value_t = 0.0)]
    warmup_ratio: f32,
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f32,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    #[arg(long, default_value_t = 64)]
    eval_batch_size: usize,
    #[arg(long, default_value_t = 128)]
    max_seq_len: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Worker threads (default: all available cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Evaluate every N steps (0 = once per epoch); always at the end.
    #[arg(long, default_value_t = 0)]
    eval_steps: usize,
    #[arg(long, default_value_t = 50)]
    logging_steps: usize,
    #[arg(long)]
    max_train_examples: Option<usize>,
    #[arg(long)]
    max_eval_examples: Option<usize>,
    /// Decay of the bias-corrected EMA of max|x| that sets each activation's quantization range
    /// (Q8BERT: 0.9999). Bias correction makes it the mean of the maxima seen while
    /// step << 1/(1-decay), so short runs work with the paper's value.
    #[arg(long, default_value_t = 0.9999)]
    ema_decay: f32,
    /// Step from which fake quantization is applied (ranges are tracked from step 0). Default 0:
    /// with the bias-corrected EMA the range is valid from the first batch.
    #[arg(long, default_value_t = 0)]
    qat_start_step: usize,
    /// QAT from an already fine-tuned checkpoint (two-stage): run N training batches through the
    /// fp32 model (no dropout) before step 0 to initialise the activation ranges. 0 = none.
    #[arg(long, default_value_t = 0)]
    calibrate_batches: usize,
    /// Distil from this fine-tuned fp32 directory (e.g. the same as --model for two-stage QAT):
    /// loss = (1 - alpha) * task loss + alpha * soft cross-entropy to the teacher (MSE for
    /// regression). Not part of the Q8BERT recipe.
    #[arg(long)]
    teacher: Option<PathBuf>,
    #[arg(long, default_value_t = 0.5)]
    distill_alpha: f32,
    /// Also evaluate before the first step (int8-simulated for QAT: with --calibrate-batches this
    /// is the starting checkpoint's post-training-quantized score). Logged, never exported.
    #[arg(long)]
    eval_at_start: bool,
    /// QAT activation range: "ema" (Q8BERT: bias-corrected EMA of per-batch max|x|) or "max"
    /// (running max over all training batches).
    #[arg(long, default_value = "ema")]
    act_range: String,
    /// Train without QAT (the fp32 baseline; the export is then post-training quantized).
    #[arg(long)]
    fp32: bool,
    /// One weight scale per output row instead of per tensor (with --scheme q8bert).
    #[arg(long)]
    per_channel: bool,
    /// Weight bits: 8, or 7 (-63..=63: about twice the weights' rounding error; on x86 CPUs
    /// with AVX2 but no VNNI the GEMMs run ~1.4x faster, docs/PERFORMANCE.md). Same format.
    #[arg(long, default_value_t = 8)]
    weight_bits: u8,
    /// Quantization simulated in QAT and packed: "q8bert" (the paper: per-tensor weights, static
    /// EMA activation ranges, int32 bias) or "per-token" (per-channel weights, a scale and a zero
    /// point per token computed at run time for every linear input, fp32 bias, a scale per
    /// embedding row; format 1.4); "per-token-symmetric": per-token without the zero points
    /// (format 1.3, for runtimes before 1.4).
    /// per-token is the recommended scheme for the second (QAT) stage of a two-stage recipe
    /// (docs/ACCURACY.md); the default stays the paper's.
    #[arg(long, default_value = "q8bert")]
    scheme: String,
    /// Also run attention's two matrix products in int8: Q, K and V requantized (ranges tracked
    /// like the linear inputs), probabilities as u8, int32 accumulation in Q·Kᵀ and P·V. Not in
    /// the Q8BERT paper; faster attention in the runtime. Writes format 1.1.
    #[arg(long)]
    int8_attention: bool,
    #[arg(long, default_value_t = 1.0)]
    max_grad_norm: f32,
    /// Override the checkpoint's dropout probabilities.
    #[arg(long)]
    dropout: Option<f32>,
    /// Skip writing model.q8b (still saves the fp32 weights).
    #[arg(long)]
    no_export: bool,
    /// Dev rows run through the packed runtime model after export to check agreement with the
    /// trainer (default: all; 0 skips the check).
    #[arg(long)]
    check_rows: Option<usize>,
}

#[derive(clap::Args)]
struct EvalArgs {
    /// Packed model (.q8b) with a classification or regression head.
    #[arg(long)]
    model: PathBuf,
    /// sst2, cola, mrpc, stsb (or classification/regression for a user TSV).
    #[arg(long)]
    task: String,
    /// TSV with a header: text [text_b] label (GLUE dev.tsv layout).
    #[arg(long)]
    data: PathBuf,
    /// Token limit (longest-first truncation); default: the model's train.max_seq_len, else 128.
    #[arg(long)]
    max_seq_len: Option<usize>,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Evaluate only the first N rows.
    #[arg(long)]
    max_eval_examples: Option<usize>,
    /// Runtime threads (default: all available cores).
    #[arg(long)]
    threads: Option<usize>,
    /// eval_predictions.json written by fine-tune (the trainer's fake-quantized outputs on the
    /// same file): adds runtime_agreement (argmax; for regression, |diff| <= 0.05 of the label
    /// range) and runtime_max_abs_diff.
    #[arg(long)]
    reference: Option<PathBuf>,
    /// Also write the JSON here.
    #[arg(long)]
    output: Option<PathBuf>,
}

#[derive(clap::Args)]
struct FidelityArgs {
    /// The fp32 Hugging Face directory the packed model was made from.
    #[arg(long)]
    model: PathBuf,
    /// The packed model (.q8b).
    #[arg(long)]
    q8b: PathBuf,
    /// Text file: one text per line, or two tab-separated texts (a pair); no header. Blank
    /// lines are skipped; rows are reported by their line number in this file.
    #[arg(long)]
    texts: PathBuf,
    /// Token limit (longest-first truncation), the same on both sides; default: what the runtime
    /// uses by default: a sentence-transformers model's max_seq_length, else its
    /// max_position_embeddings. Truncated texts are counted.
    #[arg(long)]
    max_seq_len: Option<usize>,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// How many of the worst rows to list.
    #[arg(long, default_value_t = 10)]
    worst: usize,
    /// Runtime and trainer threads (default: all available cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Also write the summary as JSON here.
    #[arg(long)]
    output: Option<PathBuf>,
}

#[derive(clap::Args)]
struct QuantizeArgs {
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    output: PathBuf,
    /// TSV (header row; first column text, optional second text) used to calibrate ranges.
    #[arg(long)]
    calibration: Option<PathBuf>,
    /// auto (sentence-transformers dir -> embedding; classifier config -> its head),
    /// embedding, classification, regression.
    #[arg(long, default_value = "auto")]
    head: String,
    #[arg(long)]
    task: Option<String>,
    /// Token limit of the calibration text; default 128, or the model's positions if fewer.
    #[arg(long)]
    max_seq_len: Option<usize>,
    #[arg(long, default_value_t = 64)]
    calibration_batches: usize,
    /// "per-token" (default: per-channel weights, a scale and a zero point per token computed at
    /// run time for every linear input, a scale per embedding row; format 1.4),
    /// "per-token-symmetric" (the same without zero points; format 1.3, for runtimes before 1.4)
    /// or "q8bert" (the paper: per-tensor weights, static ranges calibrated as the running max
    /// over the calibration text).
    #[arg(long, default_value = "per-token")]
    scheme: String,
    /// One weight scale per output row (with --scheme q8bert; per-token always has it).
    #[arg(long)]
    per_channel: bool,
    /// Weight bits: 8, or 7 (-63..=63: about twice the weights' rounding error; on x86 CPUs
    /// with AVX2 but no VNNI the GEMMs run ~1.4x faster, docs/PERFORMANCE.md). Same format.
    #[arg(long, default_value_t = 8)]
    weight_bits: u8,
    /// int8 attention scores (see `fine-tune --int8-attention`).
    #[arg(long)]
    int8_attention: bool,
    /// int8 QKᵀ and P·V with scales taken at run time (every row of Q, K and V in every head its
    /// own, probabilities as u8 with their row's scale), as the per-token scheme treats linear
    /// inputs: no calibration, format 1.6. Faster than fp32 attention on batches of long
    /// sequences, slower on short ones (docs/PERFORMANCE.md, session 23).
    #[arg(long, conflicts_with = "int8_attention")]
    dynamic_int8_attention: bool,
    #[arg(long)]
    threads: Option<usize>,
}

fn set_threads(n: Option<usize>) -> usize {
    let n = n.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)).max(1);
    // candle and gemm size their pools from this variable; it must be set before their first use.
    // (candle's default counts physical cores, which is 1 on a 2-vCPU machine.)
    std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    n
}

fn disable_mimalloc_purge() {
    // mi_option_purge_delay (15 in mimalloc v2 and v3) = -1: never return freed pages to the OS.
    unsafe { libmimalloc_sys::mi_option_set(15, -1) };
}

fn main() -> std::process::ExitCode {
    disable_mimalloc_purge();
    // candle attaches a backtrace to its errors' Display when RUST_BACKTRACE is set; a user's
    // error is the message. RUST_LIB_BACKTRACE=1 still asks for them (panics are unaffected).
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}`: the message and its causes on one line, "outer: cause: cause".
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::FineTune(a) => fine_tune(a),
        Cmd::Quantize(a) => quantize(a),
        Cmd::Eval(a) => eval(a),
        Cmd::Inspect { file } => {
            print!("{}", trainer::export::inspect(&file)?);
            Ok(())
        }
        Cmd::Fidelity(a) => fidelity(a),
    }
}

fn fine_tune(a: FineTuneArgs) -> Result<()> {
    let threads = set_threads(a.threads);
    trainer::model_dir::check(&a.model)?;
    if let Some(t) = &a.teacher {
        trainer::model_dir::check(t).context("--teacher")?;
    }
    let task = Task::parse(&a.task)?;
    let (train_file, eval_file) = match (&a.train_file, &a.eval_file, &a.data_dir) {
        (Some(t), Some(e), _) => (t.clone(), e.clone()),
        (None, None, Some(d)) => {
            let sub = task.glue_dir().context("--data-dir needs a GLUE task (sst2, cola, mrpc, stsb)")?;
            (d.join(sub).join("train.tsv"), d.join(sub).join("dev.tsv"))
        }
        _ => bail!("give either --data-dir or both --train-file and --eval-file"),
    };
    let o = FineTuneOptions {
        model: a.model,
        task,
        train_file,
        eval_file,
        output_dir: a.output_dir,
        epochs: a.epochs,
        lr: a.lr,
        warmup_ratio: a.warmup_ratio,
        weight_decay: a.weight_decay,
        batch_size: a.batch_size.max(1),
        eval_batch_size: a.eval_batch_size.max(1),
        max_seq_len: a.max_seq_len,
        seed: a.seed,
        eval_steps: a.eval_steps,
        logging_steps: a.logging_steps.max(1),
        max_train_examples: a.max_train_examples,
        max_eval_examples: a.max_eval_examples,
        ema_decay: a.ema_decay,
        qat_start_step: a.qat_start_step,
        calibrate_batches: a.calibrate_batches,
        eval_at_start: a.eval_at_start,
        teacher: a.teacher,
        distill_alpha: a.distill_alpha,
        act_range: trainer::train::ActRange::parse(&a.act_range)?,
        fp32: a.fp32,
        scheme: trainer::quant::Scheme::parse(&a.scheme, a.per_channel)?.with_weight_bits(a.weight_bits)?,
        int8_attention: a.int8_attention,
        max_grad_norm: a.max_grad_norm,
        dropout: a.dropout,
        threads,
        export: !a.no_export,
        check_rows: a.check_rows,
    };
    trainer::train::fine_tune(&o)
}

fn eval(a: EvalArgs) -> Result<()> {
    let threads = set_threads(a.threads);
    let task = Task::parse(&a.task)?;
    let mut rows = read_tsv(&a.data, task.is_regression())?;
    if let Some(n) = a.max_eval_examples {
        rows.truncate(n);
    }
    let r = trainer::export::eval_packed(&a.model, task, &rows, a.max_seq_len, a.batch_size, threads)?;
    let mut out = r.to_json();
    if let Some(p) = &a.reference {
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?)?;
        let reference: Vec<Vec<f32>> = serde_json::from_value(v["outputs"].clone()).context("reference has no outputs")?;
        if reference.len() < r.outputs.len() {
            bail!("{} has {} rows, evaluated {}", p.display(), reference.len(), r.outputs.len());
        }
        let (agree, max_diff) = trainer::metrics::agreement(task, &r.outputs, &reference[..r.outputs.len()]);
        out["runtime_agreement"] = serde_json::json!(agree);
        out["runtime_max_abs_diff"] = serde_json::json!(max_diff);
    }
    let text = serde_json::to_string_pretty(&out)?;
    println!("{text}");
    if let Some(p) = &a.output {
        std::fs::write(p, text + "\n").with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

/// Built-in calibration text: varied everyday English, short and long.
const CALIBRATION: &[&str] = &[
    "The quick brown fox jumps over the lazy dog.",
    "A man is playing a guitar on the street corner.",
    "How do I reset my password if I no longer have access to my email?",
    "The film was a gripping, funny and deeply moving experience from start to finish.",
    "Stock markets fell sharply on Tuesday after the central bank raised interest rates.",
    "Please send the quarterly report to the finance team before Friday.",
    "She said the weather would be sunny, but it rained all afternoon.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "What is the capital of Australia?",
    "I absolutely hated the ending; it made no sense at all.",
    "The new smartphone has a larger battery and a faster processor than last year's model.",
    "Two dogs are running through a field of tall grass.",
    "Researchers published the results of the clinical trial in a peer-reviewed journal.",
    "Can you recommend a good Italian restaurant near the train station?",
    "The committee postponed its decision until more data becomes available.",
    "He fixed the leaking faucet with a wrench and some tape.",
    "This product stopped working after two days and customer service never replied.",
    "The museum's collection includes paintings from the 17th and 18th centuries.",
    "Children were playing soccer in the park while their parents watched.",
    "Machine learning models can be compressed by quantizing their weights to 8-bit integers.",
    "Is it safe to drink tap water in this city?",
    "The orchestra performed Beethoven's ninth symphony to a sold-out audience.",
    "Traffic on the highway was backed up for miles because of an accident.",
    "Our team won the championship after a dramatic overtime victory!",
];

#[derive(serde::Deserialize)]
struct StModule {
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    path: String,
}

/// What a sentence-transformers directory (modules.json) asks of the packed model.
struct StHead {
    /// The Pooling module's modes, concatenated in this order.
    pooling: trainer::fidelity::Poolings,
    /// A Normalize module follows the pooling.
    normalize: bool,
    /// The Transformer module's `max_seq_length` (sentence_bert_config.json): the model's text
    /// limit; sentence-transformers cuts longer texts there.
    max_seq_length: Option<usize>,
    /// The Transformer module's `do_lower_case`: sentence-transformers lower-cases the text
    /// before the tokenizer.
    do_lower_case: bool,
    /// `config_sentence_transformers.json`: named prompts (name, text) and the default one.
    prompts: Vec<(String, String)>,
    default_prompt: Option<String>,
    /// The Pooling module's `include_prompt` (default true).
    include_prompt: bool,
}

/// The sentence-transformers modules the runtime implements.
const ST_MODULES: [&str; 4] = ["Transformer", "Pooling", "Dense", "Normalize"];

/// sentence-transformers layout, when modules.json has a Pooling module. Any module the runtime
/// does not implement (LayerNorm, CNN, ...) is refused by name: dropping it would give other
/// embeddings without a word. (A Dense module is read by `trainer::dense::find`.)
fn sentence_transformers_head(dir: &Path) -> Result<Option<StHead>> {
    let p = dir.join("modules.json");
    if !p.exists() {
        return Ok(None);
    }
    let mods: Vec<StModule> = serde_json::from_str(&std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?)
        .with_context(|| format!("parsing {}", p.display()))?;
    for m in &mods {
        let short = m.ty.rsplit('.').next().unwrap_or(&m.ty);
        if !ST_MODULES.contains(&short) {
            bail!(
                "{}: module {:?} ({}) is not supported; the runtime implements {} only, and converting without it would give other embeddings than sentence-transformers. Convert the model without that module only if you mean to (remove it from modules.json)",
                p.display(),
                m.path,
                m.ty,
                ST_MODULES.join(", ")
            );
        }
    }
    let Some(pool) = mods.iter().find(|m| m.ty.ends_with(".Pooling")) else { return Ok(None) };
    let pool_config = dir.join(&pool.path).join("config.json");
    let text = std::fs::read_to_string(&pool_config)
        .with_context(|| format!("reading {} (the Pooling module that {} names)", pool_config.display(), p.display()))?;
    let cfg: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", pool_config.display()))?;
    let pooling = pooling_modes(&cfg, &pool_config)?;
    let normalize = mods.iter().any(|m| m.ty.ends_with(".Normalize"));
    // sentence-transformers reads max_seq_length from the Transformer module's folder.
    let transformer_path = mods.iter().find(|m| m.ty.ends_with(".Transformer")).map(|m| m.path.as_str()).unwrap_or("");
    let sbert = dir.join(transformer_path).join("sentence_bert_config.json");
    let (max_seq_length, do_lower_case) = if sbert.is_file() {
        let text = std::fs::read_to_string(&sbert).with_context(|| format!("reading {}", sbert.display()))?;
        let v: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", sbert.display()))?;
        let max_seq_length = match v.get("max_seq_length") {
            None | Some(serde_json::Value::Null) => None,
            Some(n) => Some(n.as_u64().filter(|&n| n >= 2).with_context(|| format!("{}: max_seq_length {n} is not a token count (2 or more)", sbert.display()))? as usize),
        };
        (max_seq_length, v.get("do_lower_case").and_then(|b| b.as_bool()).unwrap_or(false))
    } else {
        (None, false)
    };
    // Without max_seq_length (sentence-transformers 6 no longer writes it), the limit is the
    // tokenizer's model_max_length (tokenizer_config.json), as sentence-transformers reads it;
    // `text_limit` caps it at the position table (transformers' "no limit" is 1e30).
    let max_seq_length = match max_seq_length {
        Some(n) => Some(n),
        None => {
            let tc = dir.join(transformer_path).join("tokenizer_config.json");
            let v: serde_json::Value = if tc.is_file() {
                serde_json::from_str(&std::fs::read_to_string(&tc).with_context(|| format!("reading {}", tc.display()))?).with_context(|| format!("parsing {}", tc.display()))?
            } else {
                serde_json::Value::Null
            };
            v.get("model_max_length").and_then(|n| n.as_f64()).filter(|&n| n >= 2.0).map(|n| n.min(u32::MAX as f64) as usize)
        }
    };
    let include_prompt = match cfg.get("include_prompt") {
        None | Some(serde_json::Value::Null) => true,
        Some(v) => v.as_bool().with_context(|| format!("{}: include_prompt {v} is not true or false", pool_config.display()))?,
    };
    let (prompts, default_prompt) = st_prompts(dir)?;
    Ok(Some(StHead { pooling, normalize, max_seq_length, do_lower_case, prompts, default_prompt, include_prompt }))
}

/// The Pooling module's modes, in the order their vectors are concatenated: `pooling_mode` (a
/// name or a list; sentence-transformers 6 writes it) or, in older configs, the
/// `pooling_mode_*` flags, in sentence-transformers' fixed order (cls, max, mean,
/// mean_sqrt_len_tokens, weightedmean, lasttoken).
fn pooling_modes(cfg: &serde_json::Value, pool_config: &Path) -> Result<trainer::fidelity::Poolings> {
    use trainer::fidelity::Pooling as P;
    let names = [("cls", P::Cls), ("max", P::Max), ("mean", P::Mean), ("mean_sqrt_len_tokens", P::MeanSqrtLen), ("weightedmean", P::WeightedMean), ("lasttoken", P::LastToken)];
    let flags = [
        "pooling_mode_cls_token",
        "pooling_mode_max_tokens",
        "pooling_mode_mean_tokens",
        "pooling_mode_mean_sqrt_len_tokens",
        "pooling_mode_weightedmean_tokens",
        "pooling_mode_lasttoken",
    ];
    let modes: Vec<P> = match cfg.get("pooling_mode") {
        Some(serde_json::Value::String(_)) | Some(serde_json::Value::Array(_)) => {
            let listed: Vec<&serde_json::Value> = match cfg.get("pooling_mode") {
                Some(serde_json::Value::Array(a)) => a.iter().collect(),
                Some(v) => vec![v],
                None => unreachable!(),
            };
            let mut modes = Vec::new();
            for v in listed {
                let name = v.as_str().unwrap_or("");
                let Some(&(_, m)) = names.iter().find(|(n, _)| *n == name) else {
                    bail!("{}: pooling_mode {v} is not one of {}", pool_config.display(), names.map(|n| n.0).join(", "));
                };
                modes.push(m);
            }
            modes
        }
        None | Some(serde_json::Value::Null) => {
            let flag = |k: &str| cfg.get(k).and_then(|v| v.as_bool()).unwrap_or(false);
            let on: Vec<P> = flags.iter().zip(names).filter(|(k, _)| flag(k)).map(|(_, (_, m))| m).collect();
            if on.is_empty() {
                bail!("{}: no pooling mode is set (pooling_mode, or one of {} true)", pool_config.display(), flags.join(", "));
            }
            on
        }
        Some(v) => bail!("{}: pooling_mode {v} is not a mode name or a list of them", pool_config.display()),
    };
    trainer::fidelity::Poolings::new(&modes).with_context(|| format!("{}: pooling modes {modes:?} must be one or more, each once", pool_config.display()))
}

/// The named prompts of `config_sentence_transformers.json` (e5's and bge's "query: ") and its
/// `default_prompt_name`, if the file is there. Empty prompts are dropped (sentence-transformers
/// treats "" as no prompt); a default that names no prompt is an error.
fn st_prompts(dir: &Path) -> Result<(Vec<(String, String)>, Option<String>)> {
    let p = dir.join("config_sentence_transformers.json");
    if !p.is_file() {
        return Ok((Vec::new(), None));
    }
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?).with_context(|| format!("parsing {}", p.display()))?;
    let mut prompts = Vec::new();
    match v.get("prompts") {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::Object(m)) => {
            for (name, text) in m {
                let text = text.as_str().with_context(|| format!("{}: prompt {name:?} is not a string", p.display()))?;
                if !text.is_empty() {
                    prompts.push((name.clone(), text.to_string()));
                }
            }
        }
        Some(other) => bail!("{}: prompts {other} is not an object of name -> text", p.display()),
    }
    let default = match v.get("default_prompt_name") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(d)) if prompts.iter().any(|(n, _)| n == d) => Some(d.clone()),
        // A default naming an empty prompt means no prompt.
        Some(serde_json::Value::String(d)) if v["prompts"].get(d).is_some() => None,
        Some(d) => bail!("{}: default_prompt_name {d} is not one of the prompts", p.display()),
    };
    Ok((prompts, default))
}

/// The folder of a model's config.json and weights: `dir` itself, or, for a sentence-transformers
/// model saved with its Transformer module in a subfolder (modules.json path "0_Transformer", as
/// older versions wrote them) and no config.json of its own, that subfolder.
fn transformer_dir(dir: &Path) -> PathBuf {
    if dir.join("config.json").is_file() {
        return dir.to_path_buf();
    }
    let Ok(text) = std::fs::read_to_string(dir.join("modules.json")) else { return dir.to_path_buf() };
    let Ok(mods) = serde_json::from_str::<Vec<StModule>>(&text) else { return dir.to_path_buf() };
    match mods.iter().find(|m| m.ty.ends_with(".Transformer") && !m.path.is_empty()) {
        Some(m) if dir.join(&m.path).join("config.json").is_file() => dir.join(&m.path),
        _ => dir.to_path_buf(),
    }
}

/// The text limit to record for a sentence-transformers model: its max_seq_length, lowered to the
/// position table (sentence-transformers cannot go past it either), with a note when lowered.
fn text_limit(st: Option<&StHead>, positions: usize) -> Option<u32> {
    let n = st?.max_seq_length?;
    if n > positions && n < 1 << 20 {
        eprintln!("note: max_seq_length {n} (sentence_bert_config.json) is more than the model's {positions} positions; recording {positions}");
    }
    Some(n.min(positions) as u32)
}

fn quantize(a: QuantizeArgs) -> Result<()> {
    set_threads(a.threads);
    let scheme = trainer::quant::Scheme::parse(&a.scheme, a.per_channel)?.with_weight_bits(a.weight_bits)?;
    let cfg = trainer::model_dir::check(&transformer_dir(&a.model))?;
    let st = sentence_transformers_head(&a.model)?;
    let mut tok = TextTokenizer::from_dir(&transformer_dir(&a.model))?;
    if st.as_ref().is_some_and(|s| s.do_lower_case) {
        tok.lower_case_input()?;
    }
    let examples: Vec<Example> = match &a.calibration {
        Some(p) => read_tsv_texts(p)?,
        None => CALIBRATION.iter().map(|s| Example { text_a: s.to_string(), text_b: None, label: 0.0 }).collect(),
    };
    let config_path = transformer_dir(&a.model).join("config.json");
    let cfg_json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&config_path).with_context(|| format!("reading {}", config_path.display()))?)
        .with_context(|| format!("parsing {}", config_path.display()))?;
    let n_cfg_labels = cfg_json.get("id2label").and_then(|v| v.as_object()).map(|m| m.len());
    let arch_says_classifier = cfg_json
        .get("architectures")
        .and_then(|v| v.as_array())
        .is_some_and(|a| a.iter().any(|n| n.as_str().is_some_and(|n| n.ends_with("ForSequenceClassification"))));
    let arch_says_encoder = cfg_json.get("architectures").and_then(|v| v.as_array()).is_some_and(|a| !a.is_empty()) && !arch_says_classifier;
    let head = match a.head.as_str() {
        "auto" if st.is_some() => "embedding",
        "auto" if arch_says_encoder => "embedding",
        "auto" if n_cfg_labels.is_some() || arch_says_classifier => {
            if cfg_json.get("problem_type").and_then(|v| v.as_str()) == Some("regression") || n_cfg_labels == Some(1) {
                "regression"
            } else {
                "classification"
            }
        }
        "auto" => "embedding",
        h @ ("embedding" | "classification" | "regression") => h,
        h => bail!("unknown --head {h:?}"),
    };
    let max_len = fit_to_positions(a.max_seq_len, 128, cfg.max_position_embeddings);
    let data = Dataset { rows: tok.encode_all(&examples, max_len)? };
    let meta_base = vec![
        ("general.base_model".to_string(), trainer::export::MetaEntry::Str(a.model.display().to_string())),
        ("general.producer".into(), trainer::export::MetaEntry::Str(format!("trainer {}", env!("CARGO_PKG_VERSION")))),
        ("train.method".into(), trainer::export::MetaEntry::Str("post-training-quantization".into())),
        ("train.calibration_rows".into(), trainer::export::MetaEntry::U64(data.rows.len() as u64)),
        ("qat.int8_attention".into(), trainer::export::MetaEntry::Bool(a.int8_attention)),
        ("qat.dynamic_int8_attention".into(), trainer::export::MetaEntry::Bool(a.dynamic_int8_attention)),
        ("qat.scheme".into(), trainer::export::MetaEntry::Str(scheme.name().into())),
        ("qat.weight_bits".into(), trainer::export::MetaEntry::U32(scheme.weight_bits.into())),
    ];
    let mut meta = trainer::export::TrainMeta { entries: meta_base, text_limit: text_limit(st.as_ref(), cfg.max_position_embeddings), ..Default::default() };
    meta.dynamic_int8_attention = a.dynamic_int8_attention;
    if let Some(st) = &st {
        meta.prompts = st.prompts.clone();
        meta.default_prompt = st.default_prompt.clone();
        meta.exclude_prompt = !st.include_prompt;
    }
    if head == "embedding" {
        let (pooling, normalize) = st.as_ref().map_or((trainer::fidelity::Pooling::Mean.into(), true), |s| (s.pooling, s.normalize));
        let mut model = Bert::load(&transformer_dir(&a.model), None, 0)?;
        model.int8_attention = a.int8_attention;
        model.dense = trainer::dense::find(&a.model, model.cfg.hidden_size * pooling.as_slice().len())?;
        calibrate(&model, &data, tok.pad_id(), 16, a.calibration_batches)?;
        if !model.dense.is_empty() {
            // Each Dense layer's static input range (the paper's scheme): the largest value of
            // its fp32 input over the calibration batches, as the encoder's ranges are calibrated.
            let ctx = trainer::bert::Ctx::eval(false, trainer::quant::Scheme::Q8BERT);
            let mut input_max = vec![0.0f32; model.dense.len()];
            for idx in data.sorted_batches(16).into_iter().take(a.calibration_batches.max(1)) {
                let (batch, _) = data.batch(&idx, tok.pad_id())?;
                let mut rows = trainer::fidelity::pooled(&model, &batch, &ctx, pooling, false)?;
                for (layer, max) in model.dense.iter().zip(input_max.iter_mut()) {
                    *max = rows.iter().flatten().fold(*max, |m, v| m.max(v.abs()));
                    rows = rows.iter().map(|r| layer.apply(r)).collect();
                }
            }
            for (layer, max) in model.dense.iter_mut().zip(input_max) {
                layer.input_max = max;
            }
        }
        trainer::export::export_embedding(&model, &tok, &a.output, pooling, normalize, scheme, &meta)?;
    } else {
        let task = match &a.task {
            Some(t) => Task::parse(t)?,
            None if head == "regression" => Task::Regression,
            None => Task::Classification,
        };
        let n = if head == "regression" { 1 } else { n_cfg_labels.unwrap_or(2) };
        let mut model = Bert::load(&transformer_dir(&a.model), Some(n), 0)?;
        // Post-training quantization keeps a model's answers: it cannot invent a head.
        if model.head_init != Some(trainer::bert::HeadInit::Loaded) || model.spare_pooler.is_none() {
            bail!(
                "{}: a {head} head needs the checkpoint's pooler and a classifier of {n} outputs (a fine-tuned BertForSequenceClassification); this checkpoint has {} and {}",
                a.model.display(),
                if model.spare_pooler.is_some() { "a pooler" } else { "no pooler" },
                match model.head_init {
                    Some(trainer::bert::HeadInit::ShapeMismatch) => "a classifier of another shape",
                    _ => "no classifier",
                }
            );
        }
        model.int8_attention = a.int8_attention;
        calibrate(&model, &data, tok.pad_id(), 16, a.calibration_batches)?;
        trainer::export::export_classifier(&model, &tok, task, &a.output, scheme, &meta, None)?;
    }
    eprintln!("wrote {} ({head} head, {} calibration rows)", a.output.display(), data.rows.len());
    Ok(())
}

fn fidelity(a: FidelityArgs) -> Result<()> {
    use trainer::fidelity;
    let threads = set_threads(a.threads);
    let cfg = trainer::model_dir::check(&transformer_dir(&a.model))?;
    let st = sentence_transformers_head(&a.model)?;
    let mut tok = TextTokenizer::from_dir(&transformer_dir(&a.model))?;
    if st.as_ref().is_some_and(|s| s.do_lower_case) {
        tok.lower_case_input()?;
    }
    let texts = fidelity::read_texts(&a.texts)?;
    // Default: what the runtime takes with default options: a sentence-transformers model's own
    // text limit (max_seq_length), else the whole position table.
    let st_limit = text_limit(st.as_ref(), cfg.max_position_embeddings).map(|n| n as usize);
    let max_len = fit_to_positions(a.max_seq_len, st_limit.unwrap_or(cfg.max_position_embeddings), cfg.max_position_embeddings);
    let truncation = fidelity::truncation(&tok, &texts.rows, max_len)?;
    let (output, int8) = trainer::export::run_texts(&a.q8b, &texts.rows, max_len, a.batch_size, threads)?;
    let model = fidelity::load_fp32(&transformer_dir(&a.model), output)?;
    let fp32 = fidelity::fp32_outputs(&model, &tok, &texts.rows, output, max_len, a.batch_size)?;
    let report = fidelity::compare(output, &fp32, &int8, a.worst)?;
    print!("{}", report.to_text(output, &texts, &truncation));
    if let Some(p) = &a.output {
        trainer::train::write_json(p, &report.to_json(output, &texts, &truncation))?;
    }
    Ok(())
}

/// The token limit: `--max-seq-len` if given, else `default`, lowered to the model's position
/// table (a longer sequence has no position embedding), with a note when a given value was lowered.
fn fit_to_positions(max_seq_len: Option<usize>, default: usize, positions: usize) -> usize {
    match max_seq_len {
        Some(n) if n > positions => {
            eprintln!("note: --max-seq-len {n} is more than the model's {positions} positions; using {positions}");
            positions
        }
        Some(n) => n,
        None => default.min(positions),
    }
}

/// Calibration TSV: header row, text in the first column (and the second when there are 3+).
fn read_tsv_texts(p: &Path) -> Result<Vec<Example>> {
    if let Ok(rows) = read_tsv(p, true) {
        return Ok(rows);
    }
    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    Ok(text
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            Example { text_a: f[0].to_string(), text_b: (f.len() >= 3).then(|| f[1].to_string()), label: 0.0 }
        })
        .collect())
}
