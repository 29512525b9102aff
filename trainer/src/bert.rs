//! BERT on candle primitives with Q8BERT quantization-aware-training hooks.
//!
//! LayerNorm and softmax are composed from primitive ops on purpose: candle_nn's fused versions
//! have no backward pass and would silently stop gradients. Biases (and LayerNorm gain/shift) are
//! applied as a rank-1 matmul `ones[N,1] · b[1,out]` because the gradient of a broadcast add is a
//! sum over the leading dimension, which candle computes with a slow scalar loop.

use crate::quant::{abs_max, fake_quant, fake_quant_per_row, row_abs_max, scale_for, scale_to, RangeTracker, Scales, Scheme, QMAX_I32, QMAX_I8};
use crate::rng::Rng;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var, D};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

fn default_eps() -> f64 {
    1e-12
}
fn default_act() -> String {
    "gelu".into()
}
fn default_dropout() -> f32 {
    0.1
}

/// The subset of a Hugging Face `config.json` that a BERT encoder needs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "default_dropout")]
    pub hidden_dropout_prob: f32,
    #[serde(default = "default_dropout")]
    pub attention_probs_dropout_prob: f32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id2label: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architectures: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_type: Option<String>,
    /// RoBERTa's padding id: its position ids start at `pad_token_id + 1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pad_token_id: Option<usize>,
}
fn default_type_vocab() -> usize {
    2
}

impl BertConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        // Say what is unsupported before serde complains about a field another architecture lacks.
        let mut raw: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        if let Some(t) = raw.get("model_type").and_then(|v| v.as_str()) {
            if !MODEL_TYPES.contains(&t) {
                bail!(
                    "{}: model_type {t:?} is not supported; supported: bert (BERT encoders such as MiniLM, bge, e5, gte), distilbert, roberta, xlm-roberta",
                    path.display()
                );
            }
        }
        if raw.get("model_type").and_then(|v| v.as_str()) == Some("distilbert") {
            distilbert_config(&mut raw).with_context(|| format!("{}", path.display()))?;
        }
        const ARCHITECTURES: [&str; 13] = [
            "BertModel",
            "BertForSequenceClassification",
            "BertForMaskedLM",
            "BertForPreTraining",
            "DistilBertModel",
            "DistilBertForSequenceClassification",
            "DistilBertForMaskedLM",
            "RobertaModel",
            "RobertaForSequenceClassification",
            "RobertaForMaskedLM",
            "XLMRobertaModel",
            "XLMRobertaForSequenceClassification",
            "XLMRobertaForMaskedLM",
        ];
        if let Some(a) = raw.get("architectures").and_then(|v| v.as_array()) {
            for name in a.iter().filter_map(|v| v.as_str()) {
                if !ARCHITECTURES.contains(&name) {
                    bail!("{}: architecture {name:?} is not supported (supported: {})", path.display(), ARCHITECTURES.join(", "));
                }
            }
        }
        let mut cfg: BertConfig = serde_json::from_value(raw).with_context(|| format!("parsing {}", path.display()))?;
        if cfg.is_roberta() {
            // The first pad_token_id + 1 rows of the position table are never used: the
            // loader drops them, so position i is row i as in BERT.
            let offset = cfg.position_offset();
            if cfg.max_position_embeddings <= offset {
                bail!("{}: max_position_embeddings {} leaves no positions after RoBERTa's offset {offset} (pad_token_id + 1)", path.display(), cfg.max_position_embeddings);
            }
            cfg.max_position_embeddings -= offset;
        }
        if cfg.num_attention_heads == 0 || cfg.hidden_size % cfg.num_attention_heads != 0 {
            bail!("hidden_size {} not divisible by num_attention_heads {}", cfg.hidden_size, cfg.num_attention_heads);
        }
        if q8bert::model::Activation::from_name(&cfg.hidden_act).is_none() {
            bail!(
                "{}: hidden_act {:?} is not supported; supported: {} (gelu_new and gelu_pytorch_tanh are the same tanh approximation)",
                path.display(),
                cfg.hidden_act,
                q8bert::model::Activation::NAMES.map(|n| format!("{n:?}")).join(", ")
            );
        }
        Ok(cfg)
    }
    /// A DistilBERT checkpoint (`model_type: distilbert`), read into the BERT structures: the
    /// same encoder without token types, and a sequence head whose pre-classifier has ReLU.
    pub fn is_distilbert(&self) -> bool {
        self.model_type.as_deref() == Some("distilbert")
    }

    /// A RoBERTa or XLM-RoBERTa checkpoint (`model_type: roberta`, `xlm-roberta`): BERT's encoder with position ids from
    /// `pad_token_id + 1` and one token type; its classification head (dense, tanh, out_proj
    /// on `<s>`) is BERT's pooler and classifier.
    pub fn is_roberta(&self) -> bool {
        matches!(self.model_type.as_deref(), Some("roberta" | "xlm-roberta"))
    }

    /// Rows of a RoBERTa position table before position 0 (`pad_token_id + 1`); 0 otherwise.
    pub fn position_offset(&self) -> usize {
        if self.is_roberta() {
            self.pad_token_id.unwrap_or(1) + 1
        } else {
            0
        }
    }

    pub fn tiny(vocab: usize) -> Self {
        BertConfig {
            vocab_size: vocab,
            hidden_size: 16,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            intermediate_size: 32,
            max_position_embeddings: 32,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            hidden_act: "gelu".into(),
            hidden_dropout_prob: 0.1,
            attention_probs_dropout_prob: 0.1,
            id2label: None,
            problem_type: None,
            architectures: None,
            model_type: Some("bert".into()),
            pad_token_id: None,
        }
    }
}

/// Model types the trainer reads.
pub const MODEL_TYPES: [&str; 4] = ["bert", "distilbert", "roberta", "xlm-roberta"];

/// DistilBERT's config.json under BERT's names (`dim` -> `hidden_size`, `n_layers`, `n_heads`,
/// `hidden_dim`, `activation`, `dropout`, `attention_dropout`), with DistilBERT's fixed
/// LayerNorm eps 1e-12 and two token types that the checkpoint leaves at zero (so text pairs
/// add nothing, as DistilBERT, which has no token types). A config already under BERT's names
/// (a model this trainer fine-tuned and saved) is left as it is.
fn distilbert_config(raw: &mut serde_json::Value) -> Result<()> {
    let obj = raw.as_object_mut().context("config.json is not a JSON object")?;
    for (from, to) in [
        ("dim", "hidden_size"),
        ("n_layers", "num_hidden_layers"),
        ("n_heads", "num_attention_heads"),
        ("hidden_dim", "intermediate_size"),
        ("activation", "hidden_act"),
        ("dropout", "hidden_dropout_prob"),
        ("attention_dropout", "attention_probs_dropout_prob"),
    ] {
        if let Some(v) = obj.remove(from) {
            obj.insert(to.to_string(), v);
        }
    }
    obj.entry("layer_norm_eps").or_insert(serde_json::json!(1e-12));
    obj.entry("type_vocab_size").or_insert(serde_json::json!(2));
    Ok(())
}

/// A `hidden_act` on a tensor, as Hugging Face computes it, with gradients (the QAT path trains
/// through it): `gelu` the erf form, `gelu_new` / `gelu_pytorch_tanh` the tanh approximation, `relu`.
pub fn apply_activation(name: &str, x: &Tensor) -> Result<Tensor> {
    use q8bert::model::Activation;
    Ok(match Activation::from_name(name) {
        Some(Activation::Gelu) => x.gelu_erf()?,
        // candle's `gelu` is the tanh approximation: 0.5x(1 + tanh(sqrt(2/pi) x (1 + 0.044715 x^2))).
        Some(Activation::GeluTanh) => x.gelu()?,
        Some(Activation::Relu) => x.relu()?,
        None => bail!("hidden_act {name:?} is not supported; supported: {}", Activation::NAMES.join(", ")),
    })
}

/// `hidden_act` `name` applied to `xs` by the trainer's forward (tests).
pub fn activation_values(name: &str, xs: &[f32]) -> Result<Vec<f32>> {
    let t = Tensor::from_slice(xs, xs.len(), &Device::Cpu)?;
    Ok(apply_activation(name, &t)?.to_vec1()?)
}

/// How range trackers are updated during a forward pass.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Track {
    None,
    /// Q8BERT training: EMA of max|x| with this decay.
    Ema(f32),
    /// Post-training calibration: running max.
    Max,
}

/// Per-forward settings.
pub struct Ctx {
    /// Dropout on (training).
    pub dropout: bool,
    /// Fake-quantize inputs, weights, biases and embedding tables as the runtime will.
    pub quant: bool,
    pub track: Track,
    /// The quantization that `quant` simulates.
    pub scheme: Scheme,
    pub rng: RefCell<Rng>,
}

impl Ctx {
    pub fn eval(quant: bool, scheme: Scheme) -> Self {
        Ctx { dropout: false, quant, track: Track::None, scheme, rng: RefCell::new(Rng::new(0)) }
    }
}

pub struct Linear {
    pub weight: Var, // [out, in]
    pub bias: Var,   // [out]
}

impl Linear {
    fn new(w: Tensor, b: Tensor) -> Result<Self> {
        Ok(Linear { weight: Var::from_tensor(&w)?, bias: Var::from_tensor(&b)? })
    }
    fn init(out: usize, inp: usize, rng: &mut Rng) -> Result<Self> {
        // Hugging Face's BERT init: N(0, 0.02) weights, zero bias.
        let w: Vec<f32> = (0..out * inp).map(|_| rng.normal() * 0.02).collect();
        Self::new(Tensor::from_vec(w, (out, inp), &Device::Cpu)?, Tensor::zeros(out, DType::F32, &Device::Cpu)?)
    }
    pub fn out_dim(&self) -> usize {
        self.weight.dims()[0]
    }
}

pub struct LayerNorm {
    pub gamma: Var,
    pub beta: Var,
}

impl LayerNorm {
    fn forward(&self, x: &Tensor, eps: f64) -> Result<Tensor> {
        let (n, h) = x.dims2()?;
        let mean = x.mean_keepdim(1)?;
        let xc = x.broadcast_sub(&mean)?;
        let var = xc.sqr()?.mean_keepdim(1)?;
        let xhat = xc.broadcast_div(&(var + eps)?.sqrt()?)?;
        let ones = Tensor::ones((n, 1), DType::F32, x.device())?;
        let g = ones.matmul(&self.gamma.reshape((1, h))?)?;
        let b = ones.matmul(&self.beta.reshape((1, h))?)?;
        Ok(((xhat * g)? + b)?)
    }
}

/// y = x W^T + b for one or several linears sharing the same input (fused Q/K/V), with the
/// runtime's quantization simulated when `ctx.quant`: x with S_x = 127/EMA(max|x|), each W with
/// S_w = 127/max|W| (63/max|W| with 7-bit weights; per tensor, or per output row), bias rounded at scale S_w*S_x; or, with
/// per-row inputs, each row of x with its own S_x = 127/max|row| and the bias kept in fp32.
pub fn qlinear(x: &Tensor, parts: &[&Linear], tracker: &RangeTracker, ctx: &Ctx) -> Result<Tensor> {
    let n = x.dims2()?.0;
    match ctx.track {
        Track::None => {}
        Track::Ema(decay) => tracker.observe(abs_max(x)?, decay),
        Track::Max => tracker.observe_max(abs_max(x)?),
    }
    let mut ws = Vec::with_capacity(parts.len());
    let mut bs = Vec::with_capacity(parts.len());
    let x = if ctx.quant {
        let per_row = ctx.scheme.per_row_inputs;
        let sx = if per_row { 1.0 } else { scale_for(tracker.get().context("quantized forward before the input range was observed")?) };
        for p in parts {
            let qmax = ctx.scheme.weight_qmax();
            let sw: Vec<f32> = if ctx.scheme.per_channel {
                row_abs_max(&p.weight)?.into_iter().map(|m| scale_to(m, qmax)).collect()
            } else {
                vec![scale_to(abs_max(&p.weight)?, qmax)]
            };
            let in_dim = p.weight.dims()[1];
            let sb: Vec<f32> = sw.iter().map(|s| s * sx).collect();
            ws.push(fake_quant(&p.weight, Scales { scales: sw.into(), inner: in_dim }, qmax)?);
            bs.push(if per_row { p.bias.as_tensor().clone() } else { fake_quant(&p.bias, Scales { scales: sb.into(), inner: 1 }, QMAX_I32)? });
        }
        if per_row && ctx.scheme.per_row_zero_points {
            crate::quant::fake_quant_per_row_asymmetric(x)?
        } else if per_row {
            fake_quant_per_row(x)?
        } else {
            fake_quant(x, Scales::per_tensor(sx), QMAX_I8)?
        }
    } else {
        for p in parts {
            ws.push(p.weight.as_tensor().clone());
            bs.push(p.bias.as_tensor().clone());
        }
        x.clone()
    };
    let (w, b) = if parts.len() == 1 {
        (ws.pop().unwrap(), bs.pop().unwrap())
    } else {
        (Tensor::cat(&ws, 0)?, Tensor::cat(&bs, 0)?)
    };
    let out = w.dims()[0];
    let y = x.matmul(&w.t()?)?;
    let ones = Tensor::ones((n, 1), DType::F32, x.device())?;
    Ok((y + ones.matmul(&b.reshape((1, out))?)?)?)
}

/// An activation the runtime requantizes (Q or K of int8 attention): its range is tracked like
/// a linear layer's input, and it is fake-quantized per tensor when `ctx.quant`.
fn requantize(x: &Tensor, tracker: &RangeTracker, ctx: &Ctx) -> Result<Tensor> {
    match ctx.track {
        Track::None => {}
        Track::Ema(decay) => tracker.observe(abs_max(x)?, decay),
        Track::Max => tracker.observe_max(abs_max(x)?),
    }
    if !ctx.quant {
        return Ok(x.clone());
    }
    let range = tracker.get().context("quantized forward before the Q/K range was observed")?;
    Ok(fake_quant(x, Scales::per_tensor(scale_for(range)), QMAX_I8)?)
}

/// Attention probabilities as the runtime's int8 P·V sees them: round(p * 255) / 255 (p is in
/// [0, 1], so no clipping), straight-through gradient.
fn fake_quant_probabilities(p: &Tensor) -> Result<Tensor> {
    Ok(fake_quant(p, Scales::per_tensor(q8bert::model::PROBABILITY_SCALE), 255.0)?)
}

fn dropout(x: &Tensor, p: f32, ctx: &Ctx) -> Result<Tensor> {
    if !ctx.dropout || p <= 0.0 {
        return Ok(x.clone());
    }
    let keep = 1.0 / (1.0 - p);
    let mask = ctx.rng.borrow_mut().dropout_mask(x.elem_count(), p, keep);
    let mask = Tensor::from_vec(mask, x.shape(), x.device())?;
    Ok((x * mask)?)
}

fn softmax_last(x: &Tensor) -> Result<Tensor> {
    let m = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&m)?.exp()?;
    let s = e.sum_keepdim(D::Minus1)?;
    Ok(e.broadcast_div(&s)?)
}

pub struct Embeddings {
    pub word: Var,
    pub position: Var,
    pub token_type: Var,
    pub layer_norm: LayerNorm,
}

pub struct Layer {
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    pub attention_output: Linear,
    pub attention_layer_norm: LayerNorm,
    pub intermediate: Linear,
    pub output: Linear,
    pub output_layer_norm: LayerNorm,
    /// Shared input range of Q, K and V.
    pub qkv_in: RangeTracker,
    pub attention_output_in: RangeTracker,
    pub intermediate_in: RangeTracker,
    pub output_in: RangeTracker,
    /// Ranges of the Q, K and V projections' outputs (int8 attention only).
    pub query_out: RangeTracker,
    pub key_out: RangeTracker,
    pub value_out: RangeTracker,
}

/// Sequence-level head: pooler (tanh dense on the first token; DistilBERT's pre-classifier:
/// ReLU) then a classifier.
pub struct ClsHead {
    pub pooler: Linear,
    /// ReLU after the pooler instead of tanh (DistilBERT).
    pub pooler_relu: bool,
    pub classifier: Linear,
    pub pooler_in: RangeTracker,
    pub classifier_in: RangeTracker,
}

pub struct Bert {
    pub cfg: BertConfig,
    pub embeddings: Embeddings,
    pub layers: Vec<Layer>,
    pub head: Option<ClsHead>,
    /// Pooler weights found in a BertModel checkpoint, kept so a head can reuse them.
    pub spare_pooler: Option<Linear>,
    /// How the sequence head was obtained (None without a head).
    pub head_init: Option<HeadInit>,
    /// int8 attention (format 1.1): the ranges of Q, K and V are tracked and, when quantizing,
    /// Q, K and V are fake-quantized and the probabilities rounded to u8 (scale 255) before
    /// Q·Kᵀ and P·V, as the runtime will.
    pub int8_attention: bool,
    /// sentence-transformers Dense modules after the pooling, in order (embedding models only).
    pub dense: Vec<crate::dense::DenseModule>,
}

/// Where the classifier of a sequence head came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadInit {
    /// `classifier.*` of the requested shape was in the checkpoint (a fine-tuned
    /// BertForSequenceClassification, e.g. the trainer's own output directory).
    Loaded,
    /// No classifier in the checkpoint: N(0, 0.02) from the seed.
    Initialised,
    /// The checkpoint has a classifier of another shape (another label count): re-initialised.
    ShapeMismatch,
}

/// One batch of token ids, row-major [batch, seq].
pub struct Batch {
    pub input_ids: Tensor,      // u32 [B, T]
    pub token_type_ids: Tensor, // u32 [B, T]
    pub attention_mask: Tensor, // f32 [B, T], 1 = token, 0 = padding
    pub batch: usize,
    pub seq: usize,
}

impl Batch {
    pub fn new(ids: &[u32], types: &[u32], mask: &[f32], batch: usize, seq: usize) -> Result<Self> {
        let dev = Device::Cpu;
        Ok(Batch {
            input_ids: Tensor::from_slice(ids, (batch, seq), &dev)?,
            token_type_ids: Tensor::from_slice(types, (batch, seq), &dev)?,
            attention_mask: Tensor::from_slice(mask, (batch, seq), &dev)?,
            batch,
            seq,
        })
    }
}

/// Tensors of a checkpoint with the optional `bert.` prefix removed.
struct Weights(HashMap<String, Tensor>);

impl Weights {
    fn take(&mut self, name: &str) -> Result<Tensor> {
        self.0.remove(name).with_context(|| format!("checkpoint has no tensor {name:?}"))?.to_dtype(DType::F32).map_err(Into::into)
    }
    /// LayerNorm under either the modern (weight/bias) or the old TF (gamma/beta) names.
    fn layer_norm(&mut self, prefix: &str) -> Result<LayerNorm> {
        let g = self.take_any(&[format!("{prefix}.weight"), format!("{prefix}.gamma")])?;
        let b = self.take_any(&[format!("{prefix}.bias"), format!("{prefix}.beta")])?;
        Ok(LayerNorm { gamma: Var::from_tensor(&g)?, beta: Var::from_tensor(&b)? })
    }
    fn take_any(&mut self, names: &[String]) -> Result<Tensor> {
        for n in names {
            if self.0.contains_key(n) {
                return self.take(n);
            }
        }
        bail!("checkpoint has none of {names:?}")
    }
    fn linear(&mut self, prefix: &str) -> Result<Linear> {
        Linear::new(self.take(&format!("{prefix}.weight"))?, self.take(&format!("{prefix}.bias"))?)
    }
    fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
}

/// A DistilBERT state dict under BERT's names: `distilbert.` dropped, `transformer.layer.N`
/// -> `encoder.layer.N` with `q_lin`/`k_lin`/`v_lin` -> `attention.self.{query,key,value}`,
/// `out_lin` -> `attention.output.dense`, `sa_layer_norm` -> `attention.output.LayerNorm`,
/// `ffn.lin1` / `ffn.lin2` -> `intermediate.dense` / `output.dense`, `output_layer_norm` ->
/// `output.LayerNorm`, `pre_classifier` -> `pooler.dense`; token-type embeddings of zeros
/// added. Names already in BERT's form pass through.
fn distilbert_tensors(tensors: HashMap<String, Tensor>, types: usize, h: usize) -> Result<HashMap<String, Tensor>> {
    const PARTS: [(&str, &str); 8] = [
        ("attention.q_lin.", "attention.self.query."),
        ("attention.k_lin.", "attention.self.key."),
        ("attention.v_lin.", "attention.self.value."),
        ("attention.out_lin.", "attention.output.dense."),
        ("sa_layer_norm.", "attention.output.LayerNorm."),
        ("ffn.lin1.", "intermediate.dense."),
        ("ffn.lin2.", "output.dense."),
        ("output_layer_norm.", "output.LayerNorm."),
    ];
    let mut out = HashMap::new();
    for (name, t) in tensors {
        let mut n = name.strip_prefix("distilbert.").unwrap_or(&name).to_string();
        if let Some(rest) = n.strip_prefix("transformer.layer.") {
            let (idx, tail) = rest.split_once('.').with_context(|| format!("tensor {name:?}: no layer index"))?;
            let tail = PARTS.iter().find_map(|(from, to)| tail.strip_prefix(from).map(|t| format!("{to}{t}"))).unwrap_or_else(|| tail.to_string());
            n = format!("encoder.layer.{idx}.{tail}");
        } else if let Some(rest) = n.strip_prefix("pre_classifier.") {
            n = format!("pooler.dense.{rest}");
        }
        out.insert(n, t);
    }
    out.entry("embeddings.token_type_embeddings.weight".to_string()).or_insert(Tensor::zeros((types, h), candle_core::DType::F32, &Device::Cpu)?);
    Ok(out)
}

/// A RoBERTa state dict under BERT's names: `roberta.` dropped, the position table without
/// its first `offset` rows, `classifier.dense` -> `pooler.dense` and `classifier.out_proj` ->
/// `classifier` (RobertaClassificationHead is BERT's pooler + classifier), `lm_head` dropped.
fn roberta_tensors(tensors: HashMap<String, Tensor>, offset: usize, positions: usize) -> Result<HashMap<String, Tensor>> {
    let mut out = HashMap::new();
    for (name, t) in tensors {
        let n = name.strip_prefix("roberta.").unwrap_or(&name);
        let n = if let Some(rest) = n.strip_prefix("classifier.dense.") {
            format!("pooler.dense.{rest}")
        } else if let Some(rest) = n.strip_prefix("classifier.out_proj.") {
            format!("classifier.{rest}")
        } else if n.starts_with("lm_head.") || n == "embeddings.position_ids" {
            continue;
        } else {
            n.to_string()
        };
        let t = if n == "embeddings.position_embeddings.weight" {
            let rows = t.dim(0)?;
            if rows != positions + offset {
                bail!("position table has {rows} rows; config.json says max_position_embeddings {}", positions + offset);
            }
            t.narrow(0, offset, positions)?
        } else {
            t
        };
        out.insert(n, t);
    }
    Ok(out)
}

impl Bert {
    /// Loads `config.json` and the weights (model.safetensors, its shards, or pytorch_model.bin:
    /// see [`crate::model_dir::checkpoint`]) from a Hugging Face directory. With
    /// `num_labels = Some(n)` a sequence head is attached: taken from the checkpoint when it has a
    /// classifier of that size (BertForSequenceClassification), else initialised N(0, 0.02) with
    /// a seeded generator (the pooler is reused when present).
    pub fn load(dir: &Path, num_labels: Option<usize>, seed: u64) -> Result<Self> {
        let cfg = crate::model_dir::config(dir)?;
        let ck = crate::model_dir::checkpoint(dir)?;
        let tensors = ck.load()?;
        Self::from_tensors(cfg, tensors, num_labels, seed).with_context(|| format!("{} (with {})", ck.path().display(), dir.join("config.json").display()))
    }

    pub fn from_tensors(cfg: BertConfig, tensors: HashMap<String, Tensor>, num_labels: Option<usize>, seed: u64) -> Result<Self> {
        let mut rng = Rng::new(seed.wrapping_add(0xC1A5));
        let mut tensors: HashMap<String, Tensor> = tensors.into_iter().map(|(k, v)| (k.strip_prefix("bert.").map(str::to_owned).unwrap_or(k), v)).collect();
        if cfg.is_distilbert() {
            tensors = distilbert_tensors(tensors, cfg.type_vocab_size, cfg.hidden_size)?;
        }
        if cfg.is_roberta() {
            tensors = roberta_tensors(tensors, cfg.position_offset(), cfg.max_position_embeddings)?;
        }
        let mut w = Weights(tensors);
        let word = w.take("embeddings.word_embeddings.weight")?;
        let h = cfg.hidden_size;
        if word.dims() != [cfg.vocab_size, h] {
            bail!("word embeddings have shape {:?}, config says [{}, {}]", word.dims(), cfg.vocab_size, h);
        }
        let embeddings = Embeddings {
            word: Var::from_tensor(&word)?,
            position: Var::from_tensor(&w.take("embeddings.position_embeddings.weight")?)?,
            token_type: Var::from_tensor(&w.take("embeddings.token_type_embeddings.weight")?)?,
            layer_norm: w.layer_norm("embeddings.LayerNorm")?,
        };
        let mut layers = Vec::new();
        for i in 0..cfg.num_hidden_layers {
            let p = format!("encoder.layer.{i}");
            layers.push(Layer {
                query: w.linear(&format!("{p}.attention.self.query"))?,
                key: w.linear(&format!("{p}.attention.self.key"))?,
                value: w.linear(&format!("{p}.attention.self.value"))?,
                attention_output: w.linear(&format!("{p}.attention.output.dense"))?,
                attention_layer_norm: w.layer_norm(&format!("{p}.attention.output.LayerNorm"))?,
                intermediate: w.linear(&format!("{p}.intermediate.dense"))?,
                output: w.linear(&format!("{p}.output.dense"))?,
                output_layer_norm: w.layer_norm(&format!("{p}.output.LayerNorm"))?,
                qkv_in: Default::default(),
                attention_output_in: Default::default(),
                intermediate_in: Default::default(),
                output_in: Default::default(),
                query_out: Default::default(),
                key_out: Default::default(),
                value_out: Default::default(),
            });
        }
        let pooler = if w.has("pooler.dense.weight") { Some(w.linear("pooler.dense")?) } else { None };
        let mut head_init = None;
        let head = match num_labels {
            None => None,
            Some(n) => {
                let pooler = match &pooler {
                    Some(p) => Linear::new(p.weight.as_tensor().copy()?, p.bias.as_tensor().copy()?)?,
                    None => Linear::init(h, h, &mut rng)?,
                };
                let (classifier, how) = if !w.has("classifier.weight") {
                    (Linear::init(n, h, &mut rng)?, HeadInit::Initialised)
                } else if w.0["classifier.weight"].dims() == [n, h] {
                    (w.linear("classifier")?, HeadInit::Loaded)
                } else {
                    (Linear::init(n, h, &mut rng)?, HeadInit::ShapeMismatch)
                };
                head_init = Some(how);
                Some(ClsHead { pooler, pooler_relu: cfg.is_distilbert(), classifier, pooler_in: Default::default(), classifier_in: Default::default() })
            }
        };
        Ok(Bert { cfg, embeddings, layers, head, spare_pooler: pooler, head_init, int8_attention: false, dense: Vec::new() })
    }

    /// A randomly initialised model (tests).
    pub fn random(cfg: BertConfig, num_labels: Option<usize>, seed: u64) -> Result<Self> {
        let mut rng = Rng::new(seed);
        let dev = Device::Cpu;
        let mut t = HashMap::new();
        let mut randn = |name: String, shape: &[usize], std: f32, mean: f32| -> Result<()> {
            let n: usize = shape.iter().product();
            let v: Vec<f32> = (0..n).map(|_| mean + std * rng.normal()).collect();
            t.insert(name, Tensor::from_vec(v, shape, &dev)?);
            Ok(())
        };
        let h = cfg.hidden_size;
        let it = cfg.intermediate_size;
        randn("embeddings.word_embeddings.weight".into(), &[cfg.vocab_size, h], 0.5, 0.0)?;
        randn("embeddings.position_embeddings.weight".into(), &[cfg.max_position_embeddings, h], 0.5, 0.0)?;
        randn("embeddings.token_type_embeddings.weight".into(), &[cfg.type_vocab_size, h], 0.5, 0.0)?;
        randn("embeddings.LayerNorm.weight".into(), &[h], 0.1, 1.0)?;
        randn("embeddings.LayerNorm.bias".into(), &[h], 0.1, 0.0)?;
        for i in 0..cfg.num_hidden_layers {
            let p = format!("encoder.layer.{i}");
            for (name, o, inp) in [
                ("attention.self.query", h, h),
                ("attention.self.key", h, h),
                ("attention.self.value", h, h),
                ("attention.output.dense", h, h),
                ("intermediate.dense", it, h),
                ("output.dense", h, it),
            ] {
                randn(format!("{p}.{name}.weight"), &[o, inp], 0.3, 0.0)?;
                randn(format!("{p}.{name}.bias"), &[o], 0.1, 0.0)?;
            }
            for name in ["attention.output.LayerNorm", "output.LayerNorm"] {
                randn(format!("{p}.{name}.weight"), &[h], 0.1, 1.0)?;
                randn(format!("{p}.{name}.bias"), &[h], 0.1, 0.0)?;
            }
        }
        randn("pooler.dense.weight".into(), &[h, h], 0.3, 0.0)?;
        randn("pooler.dense.bias".into(), &[h], 0.1, 0.0)?;
        Self::from_tensors(cfg, t, num_labels, seed)
    }

    /// Final hidden states, [B*T, H].
    pub fn encode(&self, b: &Batch, ctx: &Ctx) -> Result<Tensor> {
        let cfg = &self.cfg;
        let (bsz, t, h) = (b.batch, b.seq, cfg.hidden_size);
        if t > cfg.max_position_embeddings {
            bail!("sequence length {t} exceeds max_position_embeddings {}", cfg.max_position_embeddings);
        }
        let e = &self.embeddings;
        // Gather rows first, then fake-quantize them with the whole table's scale, or each with its
        // own (a row's scale depends on that row only): identical to quantizing the table, without
        // touching all 30k rows per step.
        let table = |var: &Var, ids: &Tensor| -> Result<Tensor> {
            let rows = var.index_select(&ids.flatten_all()?, 0)?;
            match (ctx.quant, ctx.scheme.per_row_embeddings) {
                (false, _) => Ok(rows),
                (true, false) => Ok(fake_quant(&rows, Scales::per_tensor(scale_for(abs_max(var)?)), QMAX_I8)?),
                (true, true) => Ok(fake_quant_per_row(&rows)?),
            }
        };
        let pos_ids: Vec<u32> = (0..bsz).flat_map(|_| 0..t as u32).collect();
        let pos_ids = Tensor::from_vec(pos_ids, (bsz, t), &Device::Cpu)?;
        let x = ((table(&e.word, &b.input_ids)? + table(&e.position, &pos_ids)?)? + table(&e.token_type, &b.token_type_ids)?)?;
        let mut x = dropout(&e.layer_norm.forward(&x, cfg.layer_norm_eps)?, cfg.hidden_dropout_prob, ctx)?;

        let nh = cfg.num_attention_heads;
        let hd = h / nh;
        // Additive mask [B, 1, 1, T]: 0 for tokens, large negative for padding.
        let mask_bias = ((b.attention_mask.ones_like()? - &b.attention_mask)? * -1e9f64)?.reshape((bsz, 1, 1, t))?;
        let scale = 1.0 / (hd as f64).sqrt();
        for l in &self.layers {
            let qkv = qlinear(&x, &[&l.query, &l.key, &l.value], &l.qkv_in, ctx)?;
            let heads = |i: usize| -> Result<Tensor> {
                Ok(qkv.narrow(1, i * h, h)?.reshape((bsz, t, nh, hd))?.transpose(1, 2)?.contiguous()?)
            };
            let (q, k, v) = (heads(0)?, heads(1)?, heads(2)?);
            let (q, k, v) = if self.int8_attention {
                (requantize(&q, &l.query_out, ctx)?, requantize(&k, &l.key_out, ctx)?, requantize(&v, &l.value_out, ctx)?)
            } else {
                (q, k, v)
            };
            let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&mask_bias)?;
            let probs = softmax_last(&scores)?;
            let probs = if self.int8_attention && ctx.quant { fake_quant_probabilities(&probs)? } else { probs };
            let probs = dropout(&probs, cfg.attention_probs_dropout_prob, ctx)?;
            let context = probs.matmul(&v)?.transpose(1, 2)?.reshape((bsz * t, h))?;
            let a = qlinear(&context, &[&l.attention_output], &l.attention_output_in, ctx)?;
            let a = dropout(&a, cfg.hidden_dropout_prob, ctx)?;
            let h1 = l.attention_layer_norm.forward(&(a + &x)?, cfg.layer_norm_eps)?;
            let i = self.activation(&qlinear(&h1, &[&l.intermediate], &l.intermediate_in, ctx)?)?;
            let o = qlinear(&i, &[&l.output], &l.output_in, ctx)?;
            let o = dropout(&o, cfg.hidden_dropout_prob, ctx)?;
            x = l.output_layer_norm.forward(&(o + h1)?, cfg.layer_norm_eps)?;
        }
        Ok(x)
    }

    /// The FFN activation `cfg.hidden_act`, as Hugging Face computes it (with gradients).
    fn activation(&self, x: &Tensor) -> Result<Tensor> {
        apply_activation(&self.cfg.hidden_act, x)
    }

    /// Logits [B, num_labels] of the sequence head.
    pub fn logits(&self, b: &Batch, ctx: &Ctx) -> Result<Tensor> {
        let head = self.head.as_ref().context("model has no classification head")?;
        let x = self.encode(b, ctx)?;
        let h = self.cfg.hidden_size;
        let first = x.reshape((b.batch, b.seq, h))?.narrow(1, 0, 1)?.reshape((b.batch, h))?;
        let pooled = qlinear(&first, &[&head.pooler], &head.pooler_in, ctx)?;
        let pooled = if head.pooler_relu { pooled.relu()? } else { pooled.tanh()? };
        let pooled = dropout(&pooled, self.cfg.hidden_dropout_prob, ctx)?;
        qlinear(&pooled, &[&head.classifier], &head.classifier_in, ctx)
    }

    /// Mean over non-padding tokens, optionally L2-normalised: [B, H].
    pub fn mean_pooled(&self, b: &Batch, ctx: &Ctx, normalize: bool) -> Result<Tensor> {
        let h = self.cfg.hidden_size;
        let x = self.encode(b, ctx)?.reshape((b.batch, b.seq, h))?;
        let m = b.attention_mask.unsqueeze(2)?;
        let sum = x.broadcast_mul(&m)?.sum(1)?;
        let cnt = m.sum(1)?.clamp(1e-9, f64::MAX)?;
        let mean = sum.broadcast_div(&cnt)?;
        if normalize {
            let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
            Ok(mean.broadcast_div(&norm)?)
        } else {
            Ok(mean)
        }
    }

    /// All trainable tensors under Hugging Face names (BertForSequenceClassification layout when
    /// a head is attached, BertModel otherwise).
    pub fn named_params(&self) -> Vec<(String, &Var)> {
        let pre = if self.head.is_some() { "bert." } else { "" };
        let mut v: Vec<(String, &Var)> = Vec::new();
        let e = &self.embeddings;
        v.push((format!("{pre}embeddings.word_embeddings.weight"), &e.word));
        v.push((format!("{pre}embeddings.position_embeddings.weight"), &e.position));
        v.push((format!("{pre}embeddings.token_type_embeddings.weight"), &e.token_type));
        v.push((format!("{pre}embeddings.LayerNorm.weight"), &e.layer_norm.gamma));
        v.push((format!("{pre}embeddings.LayerNorm.bias"), &e.layer_norm.beta));
        for (i, l) in self.layers.iter().enumerate() {
            let p = format!("{pre}encoder.layer.{i}");
            for (name, lin) in [
                ("attention.self.query", &l.query),
                ("attention.self.key", &l.key),
                ("attention.self.value", &l.value),
                ("attention.output.dense", &l.attention_output),
                ("intermediate.dense", &l.intermediate),
                ("output.dense", &l.output),
            ] {
                v.push((format!("{p}.{name}.weight"), &lin.weight));
                v.push((format!("{p}.{name}.bias"), &lin.bias));
            }
            for (name, ln) in [("attention.output.LayerNorm", &l.attention_layer_norm), ("output.LayerNorm", &l.output_layer_norm)] {
                v.push((format!("{p}.{name}.weight"), &ln.gamma));
                v.push((format!("{p}.{name}.bias"), &ln.beta));
            }
        }
        if let Some(hd) = &self.head {
            v.push((format!("{pre}pooler.dense.weight"), &hd.pooler.weight));
            v.push((format!("{pre}pooler.dense.bias"), &hd.pooler.bias));
            v.push(("classifier.weight".into(), &hd.classifier.weight));
            v.push(("classifier.bias".into(), &hd.classifier.bias));
        }
        v
    }

    /// Every activation range tracker with a stable name.
    pub fn trackers(&self) -> Vec<(String, &RangeTracker)> {
        let mut v = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            v.push((format!("layer.{i}.qkv"), &l.qkv_in));
            v.push((format!("layer.{i}.attention_output"), &l.attention_output_in));
            v.push((format!("layer.{i}.intermediate"), &l.intermediate_in));
            v.push((format!("layer.{i}.output"), &l.output_in));
            if self.int8_attention {
                v.push((format!("layer.{i}.query"), &l.query_out));
                v.push((format!("layer.{i}.key"), &l.key_out));
                v.push((format!("layer.{i}.value"), &l.value_out));
            }
        }
        if let Some(h) = &self.head {
            v.push(("pooler".into(), &h.pooler_in));
            v.push(("classifier".into(), &h.classifier_in));
        }
        v
    }

    pub fn ranges(&self) -> BTreeMap<String, Option<f32>> {
        self.trackers().into_iter().map(|(k, t)| (k, t.get())).collect()
    }

    pub fn set_ranges(&self, r: &BTreeMap<String, Option<f32>>) {
        for (k, t) in self.trackers() {
            if let Some(v) = r.get(&k) {
                t.set(*v);
            }
        }
    }

    pub fn num_labels(&self) -> Option<usize> {
        self.head.as_ref().map(|h| h.classifier.out_dim())
    }

    /// Deep copy of every parameter (for keeping the best checkpoint).
    pub fn snapshot(&self) -> Result<Vec<Tensor>> {
        self.named_params().into_iter().map(|(_, v)| Ok(v.as_tensor().copy()?)).collect()
    }

    pub fn restore(&self, snap: &[Tensor]) -> Result<()> {
        for ((_, v), t) in self.named_params().into_iter().zip(snap) {
            v.set(t)?;
        }
        Ok(())
    }
}
