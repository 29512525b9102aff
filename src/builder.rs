//! Builds a `.q8b` model from fp32 weights and the activation ranges learned in training:
//! quantizes weights symmetrically (S_w = 127 / max|W|), biases to int32 at S_w * S_x, packs the
//! weights for the kernels, precomputes their row sums, and stores vocabulary and settings.
//! The trainer and the tests both produce models only through this.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use std::path::Path;

use crate::error::{bail, Error, Result, Status};
use crate::format::writer::FileWriter;
use crate::format::DType;
pub use crate::format::MetaValue;
use crate::kernels::{pack_weights, weight_sums};
use crate::model::keys;
pub use crate::model::{DenseActivation, Pooling};
use crate::tokenizer::{encode_merges, encode_vocab};

pub type BuildError = Error;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BertConfig {
    pub vocab_size: u32,
    pub hidden_size: u32,
    pub num_layers: u32,
    pub num_heads: u32,
    pub intermediate_size: u32,
    pub max_position_embeddings: u32,
    pub type_vocab_size: u32,
    pub layer_norm_eps: f32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Head {
    Classification { labels: Vec<String> },
    Regression,
    Embedding { pooling: Pooling, normalize: bool },
    TokenStates,
}

/// Weight scales: one per tensor (as in the Q8BERT paper) or one per output row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightGranularity {
    #[default]
    PerTensor,
    PerChannel,
}

/// The largest weight magnitude of `ModelBuilder::weight_bits(7)`: see `WeightRange::Narrow`.
const NARROW_WEIGHT_MAX: f32 = crate::kernels::WeightRange::NARROW_MAX as f32;

/// How the next linear layer is quantized.
#[derive(Clone, Copy)]
struct LinearScheme {
    granularity: WeightGranularity,
    activations: ActivationQuant,
    /// 127 (8-bit weights) or 63 (7-bit).
    weight_max: f32,
}

/// How linear layers quantize their input activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ActivationQuant {
    /// One scale per layer from the range learned in training or calibration (S_x = 127 /
    /// `input_max`), int32 bias: the Q8BERT paper's scheme.
    #[default]
    Static,
    /// A scale per row (token) computed at run time from max|row|; `input_max` is not used and
    /// the bias stays f32. Needs format 1.2.
    PerRow,
}

/// Embedding table scales: one per table (the Q8BERT paper) or one per row, i.e. per token id
/// (format 1.3): a row of rare large values then no longer coarsens every other row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EmbeddingGranularity {
    #[default]
    PerTable,
    PerRow,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TokenizerConfig {
    pub vocab: Vec<String>,
    pub do_lower_case: bool,
    pub strip_accents: bool,
    pub tokenize_chinese_chars: bool,
    pub unk_token: String,
    pub cls_token: String,
    pub sep_token: String,
    pub pad_token: String,
    pub mask_token: String,
    pub max_input_chars_per_word: u32,
    /// Byte-level BPE (RoBERTa) instead of WordPiece; the WordPiece options are then unused.
    pub bpe: Option<BpeConfig>,
    /// SentencePiece Unigram (XLM-RoBERTa) instead of WordPiece; `vocab` holds its pieces.
    pub unigram: Option<UnigramConfig>,
}

/// A SentencePiece Unigram tokenizer: one log-probability per vocabulary piece, the
/// `precompiled_charsmap` of its normalizer (if any) and whether runs of spaces collapse.
#[derive(Debug, Clone, PartialEq)]
pub struct UnigramConfig {
    pub scores: Vec<f64>,
    pub charsmap: Option<Vec<u8>>,
    pub collapse_spaces: bool,
}

/// A byte-level BPE tokenizer's merges (`merges.txt` order) and pre-tokenizer option.
#[derive(Debug, Clone, PartialEq)]
pub struct BpeConfig {
    pub merges: Vec<(String, String)>,
    pub add_prefix_space: bool,
}

impl TokenizerConfig {
    /// BERT-uncased defaults around a vocabulary.
    pub fn bert_uncased(vocab: Vec<String>) -> Self {
        TokenizerConfig {
            vocab,
            do_lower_case: true,
            strip_accents: true,
            tokenize_chinese_chars: true,
            unk_token: "[UNK]".into(),
            cls_token: "[CLS]".into(),
            sep_token: "[SEP]".into(),
            pad_token: "[PAD]".into(),
            mask_token: "[MASK]".into(),
            max_input_chars_per_word: 100,
            bpe: None,
            unigram: None,
        }
    }
}

/// An fp32 linear layer. `weight` is [out][in] row-major (PyTorch layout); `input_max` is the
/// activation range (EMA of max|x| in QAT, or calibration max), giving S_x = 127 / input_max.
#[derive(Debug, Clone, Copy)]
pub struct Linear<'a> {
    pub weight: &'a [f32],
    pub bias: &'a [f32],
    pub input_max: f32,
}

#[derive(Debug, Clone, Copy)]
pub struct LayerNorm<'a> {
    pub gamma: &'a [f32],
    pub beta: &'a [f32],
}

#[derive(Debug, Clone, Copy)]
pub struct Embeddings<'a> {
    pub word: &'a [f32],
    pub position: &'a [f32],
    pub token_type: &'a [f32],
    pub layer_norm: LayerNorm<'a>,
}

#[derive(Debug, Clone, Copy)]
pub struct Layer<'a> {
    pub query: Linear<'a>,
    pub key: Linear<'a>,
    pub value: Linear<'a>,
    pub attention_output: Linear<'a>,
    pub attention_layer_norm: LayerNorm<'a>,
    pub intermediate: Linear<'a>,
    pub output: Linear<'a>,
    pub output_layer_norm: LayerNorm<'a>,
}

struct Tensor {
    name: String,
    dtype: DType,
    dims: Vec<u64>,
    bytes: Vec<u8>,
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    bytemuck::cast_slice(v).to_vec()
}
fn i32_bytes(v: &[i32]) -> Vec<u8> {
    bytemuck::cast_slice(v).to_vec()
}

/// Symmetric scale for values whose largest magnitude is `max_abs` (1.0 for an all-zero tensor).
pub fn symmetric_scale(max_abs: f32) -> f32 {
    symmetric_scale_to(max_abs, 127.0)
}

/// The scale that maps `max_abs` to `qmax` (1.0 for an all-zero tensor).
fn symmetric_scale_to(max_abs: f32, qmax: f32) -> f32 {
    if max_abs > 0.0 && max_abs.is_finite() {
        qmax / max_abs
    } else {
        1.0
    }
}

/// clamp(round(x * s), -127, 127), ties to even like the runtime.
pub fn quantize_value(x: f32, s: f32) -> i8 {
    crate::ops::math::quantize(x, s)
}

fn max_abs(v: &[f32]) -> f32 {
    v.iter().fold(0.0f32, |m, &x| m.max(x.abs()))
}

/// Assembles a model file. Components may be given in any order; `to_bytes` checks that all
/// the configuration needs is present.
pub struct ModelBuilder {
    config: BertConfig,
    head: Head,
    tokenizer: TokenizerConfig,
    granularity: WeightGranularity,
    activations: ActivationQuant,
    /// 127, or 63 after `weight_bits(7)`.
    weight_max: f32,
    /// Whether a linear layer with a per-row input was added (the file then declares 1.2).
    any_per_row: bool,
    /// Per-row inputs also get a zero point (format 1.4).
    per_row_zero_points: bool,
    embedding_granularity: EmbeddingGranularity,
    embeddings: Option<Vec<Tensor>>,
    layers: Vec<Option<Vec<Tensor>>>,
    /// Per layer: (max|q|, max|k|) for int8 attention scores, if requested.
    attention_ranges: Vec<Option<(f32, f32)>>,
    /// Per layer: max|v| for int8 P·V, if requested.
    value_ranges: Vec<Option<f32>>,
    pooler: Option<Vec<Tensor>>,
    /// Embedding head: each Dense layer's tensors and activation, in order.
    dense: Vec<(Vec<Tensor>, DenseActivation)>,
    /// Embedding head: pooling modes concatenated (set by `pooling_modes`); empty = the
    /// head's one mode.
    pooling_modes: Vec<Pooling>,
    classifier: Option<Vec<Tensor>>,
    metadata: Vec<(String, MetaValue)>,
    /// `bert.hidden_act`, as the checkpoint names it (one of [`crate::model::Activation::NAMES`]).
    hidden_act: String,
    /// `tokenizer.max_seq_len`, the model's own token limit for text input.
    text_limit: Option<u32>,
    /// Named prompts (name, text) and the default prompt's name.
    prompts: Vec<(String, String)>,
    default_prompt: Option<String>,
    /// `head.include_prompt` (written only when false).
    include_prompt: bool,
    /// `quant.attention = dynamic_int8` (format 1.6).
    dynamic_int8_attention: bool,
    /// `head.pooler.activation` (written when not tanh, format 1.7).
    pooler_activation: crate::model::PoolerActivation,
}

impl ModelBuilder {
    pub fn new(config: BertConfig, head: Head, tokenizer: TokenizerConfig) -> Self {
        let layers = (0..config.num_layers).map(|_| None).collect();
        let attention_ranges = (0..config.num_layers).map(|_| None).collect();
        let value_ranges = (0..config.num_layers).map(|_| None).collect();
        ModelBuilder {
            config,
            head,
            tokenizer,
            granularity: WeightGranularity::PerTensor,
            activations: ActivationQuant::Static,
            weight_max: 127.0,
            any_per_row: false,
            per_row_zero_points: false,
            embedding_granularity: EmbeddingGranularity::PerTable,
            embeddings: None,
            layers,
            attention_ranges,
            value_ranges,
            pooler: None,
            dense: Vec::new(),
            pooling_modes: Vec::new(),
            classifier: None,
            metadata: Vec::new(),
            hidden_act: "gelu".to_string(),
            text_limit: None,
            prompts: Vec::new(),
            default_prompt: None,
            include_prompt: true,
            dynamic_int8_attention: false,
            pooler_activation: crate::model::PoolerActivation::Tanh,
        }
    }

    /// The activation after a classification or regression head's pooler: tanh (BERT, the
    /// default) or ReLU (DistilBERT's pre-classifier; format 1.7).
    pub fn pooler_activation(&mut self, activation: crate::model::PoolerActivation) -> &mut Self {
        self.pooler_activation = activation;
        self
    }

    /// Every layer computes QKᵀ and P·V in int8 with scales taken at run time (each query row
    /// its own, K and V one per sequence and head), the way the per-token scheme treats linear
    /// inputs: `quant.attention = dynamic_int8`, format 1.6. Not with static int8 attention.
    pub fn dynamic_int8_attention(&mut self, on: bool) -> &mut Self {
        self.dynamic_int8_attention = on;
        self
    }

    /// sentence-transformers' named prompts (`config_sentence_transformers.json`), e.g.
    /// `("query", "query: ")`, and the one used when a caller names none (its
    /// `default_prompt_name`). Names must be unique and non-empty; the default among them.
    pub fn prompts(&mut self, prompts: Vec<(String, String)>, default: Option<&str>) -> Result<&mut Self> {
        if prompts.len() > crate::model::MAX_PROMPTS {
            bail!(Status::InvalidArgument, "{} prompts; at most {} fit a file", prompts.len(), crate::model::MAX_PROMPTS);
        }
        for (i, (name, _)) in prompts.iter().enumerate() {
            if name.is_empty() || prompts[..i].iter().any(|(n, _)| n == name) {
                bail!(Status::InvalidArgument, "prompt name {name:?} is empty or given twice");
            }
        }
        if let Some(d) = default {
            if !prompts.iter().any(|(n, _)| n == d) {
                bail!(Status::InvalidArgument, "default prompt {d:?} is not one of the prompts");
            }
        }
        self.prompts = prompts;
        self.default_prompt = default.map(str::to_string);
        Ok(self)
    }

    /// Whether pooling covers the prompt's tokens (sentence-transformers' Pooling
    /// `include_prompt`; default true). False writes format 1.5.
    pub fn include_prompt(&mut self, include: bool) -> &mut Self {
        self.include_prompt = include;
        self
    }

    /// The model's own token limit for text input, special tokens included (sentence-transformers'
    /// `max_seq_length`): stored as `tokenizer.max_seq_len`, the runtime's default `max_seq_len`.
    /// 2 ..= max_position_embeddings.
    pub fn text_limit(&mut self, tokens: u32) -> Result<&mut Self> {
        if tokens < 2 || tokens > self.config.max_position_embeddings {
            bail!(Status::InvalidArgument, "text limit {tokens} is outside 2..={} (the position table)", self.config.max_position_embeddings);
        }
        self.text_limit = Some(tokens);
        Ok(self)
    }

    /// The FFN activation, by its Hugging Face name (`gelu`, the default; `gelu_new`,
    /// `gelu_pytorch_tanh`, `relu`): stored as `bert.hidden_act`.
    pub fn hidden_act(&mut self, name: &str) -> Result<&mut Self> {
        if crate::model::Activation::from_name(name).is_none() {
            bail!(Status::InvalidArgument, "hidden_act {name:?} is not supported (supported: {})", crate::model::Activation::NAMES.join(", "));
        }
        self.hidden_act = name.to_string();
        Ok(self)
    }

    /// Applies to linear layers added after this call.
    pub fn weight_granularity(&mut self, g: WeightGranularity) -> &mut Self {
        self.granularity = g;
        self
    }

    /// Applies to linear layers added after this call.
    pub fn activation_quant(&mut self, a: ActivationQuant) -> &mut Self {
        self.activations = a;
        self
    }

    /// Weights of 8 bits (-127..=127, the default) or 7 (-63..=63: twice the rounding error,
    /// and on CPUs without VNNI the GEMMs take three instructions per 32 multiply-adds instead
    /// of four, see `WeightRange::Narrow`). Applies to linear layers added after this call;
    /// the file format is the same.
    pub fn weight_bits(&mut self, bits: u8) -> Result<&mut Self> {
        self.weight_max = match bits {
            8 => 127.0,
            7 => NARROW_WEIGHT_MAX,
            _ => bail!(Status::InvalidArgument, "weight bits must be 8 or 7, not {bits}"),
        };
        Ok(self)
    }

    /// How the next linear layer is quantized.
    fn scheme(&mut self) -> LinearScheme {
        self.any_per_row |= self.activations == ActivationQuant::PerRow;
        LinearScheme { granularity: self.granularity, activations: self.activations, weight_max: self.weight_max }
    }

    fn h(&self) -> usize {
        self.config.hidden_size as usize
    }

    /// Applies to the embedding tables given after this call.
    /// Per-row (per-token) inputs quantized with a zero point as well as a scale: each row's
    /// [min, max] onto the 255 int8 levels instead of [-max|x|, max|x|] (format 1.4). Applies to
    /// every layer with a per-row input; no effect without one.
    pub fn per_row_zero_points(&mut self, on: bool) -> &mut Self {
        self.per_row_zero_points = on;
        self
    }

    pub fn embedding_granularity(&mut self, g: EmbeddingGranularity) -> &mut Self {
        self.embedding_granularity = g;
        self
    }

    pub fn embeddings(&mut self, e: Embeddings<'_>) -> Result<&mut Self> {
        let h = self.h();
        let c = self.config;
        let mut out = Vec::new();
        for (name, table, rows) in [
            ("embeddings.word_embeddings", e.word, c.vocab_size),
            ("embeddings.position_embeddings", e.position, c.max_position_embeddings),
            ("embeddings.token_type_embeddings", e.token_type, c.type_vocab_size),
        ] {
            let rows = rows as usize;
            if table.len() != rows * h {
                bail!(Status::InvalidArgument, "{name} has {} values, expected {rows} x {h}", table.len());
            }
            // A one-row table has one scale either way (and stays readable by 1.0 readers).
            let scales: Vec<f32> = match self.embedding_granularity {
                EmbeddingGranularity::PerRow if rows > 1 => table.chunks_exact(h).map(|r| symmetric_scale(max_abs(r))).collect(),
                _ => alloc::vec![symmetric_scale(max_abs(table))],
            };
            let q: Vec<u8> = table.chunks_exact(h).enumerate().flat_map(|(r, row)| {
                let s = scales[if scales.len() == 1 { 0 } else { r }];
                row.iter().map(move |&x| quantize_value(x, s) as u8)
            }).collect();
            out.push(Tensor { name: alloc::format!("{name}.weight"), dtype: DType::I8, dims: alloc::vec![rows as u64, h as u64], bytes: q });
            out.push(Tensor { name: alloc::format!("{name}.scale"), dtype: DType::F32, dims: alloc::vec![scales.len() as u64], bytes: f32_bytes(&scales) });
        }
        out.extend(layer_norm_tensors("embeddings.layer_norm", e.layer_norm, h)?);
        self.embeddings = Some(out);
        Ok(self)
    }

    pub fn layer(&mut self, index: usize, l: Layer<'_>) -> Result<&mut Self> {
        if index >= self.layers.len() {
            bail!(Status::InvalidArgument, "layer index {index} but the model has {} layers", self.layers.len());
        }
        let (h, i) = (self.h(), self.config.intermediate_size as usize);
        let p = alloc::format!("encoder.layer.{index}");
        let g = self.scheme();
        let mut t = Vec::new();
        t.extend(qkv_tensors(&alloc::format!("{p}.attention.qkv"), [l.query, l.key, l.value], h, g)?);
        t.extend(linear_tensors(&alloc::format!("{p}.attention.output"), &[l.attention_output], h, h, g)?);
        t.extend(layer_norm_tensors(&alloc::format!("{p}.attention_layer_norm"), l.attention_layer_norm, h)?);
        t.extend(linear_tensors(&alloc::format!("{p}.intermediate"), &[l.intermediate], i, h, g)?);
        t.extend(linear_tensors(&alloc::format!("{p}.output"), &[l.output], h, i, g)?);
        t.extend(layer_norm_tensors(&alloc::format!("{p}.output_layer_norm"), l.output_layer_norm, h)?);
        self.layers[index] = Some(t);
        Ok(self)
    }

    /// Makes layer `index` compute its attention scores in int8: Q and K requantized with
    /// S_q = 127 / `query_max` and S_k = 127 / `key_max` (the ranges of the QKV projection's
    /// Q and K outputs, tracked in training). Needs format 1.1, which the file then declares.
    pub fn int8_attention(&mut self, index: usize, query_max: f32, key_max: f32) -> Result<&mut Self> {
        if index >= self.attention_ranges.len() {
            bail!(Status::InvalidArgument, "layer index {index} but the model has {} layers", self.attention_ranges.len());
        }
        for (what, v) in [("query_max", query_max), ("key_max", key_max)] {
            if !(v.is_finite() && v > 0.0) {
                bail!(Status::InvalidArgument, "layer {index}: {what} {v} must be finite and positive");
            }
        }
        self.attention_ranges[index] = Some((query_max, key_max));
        Ok(self)
    }

    /// Makes layer `index` compute P·V in int8: V requantized with S_v = 127 / `value_max` (the
    /// range of the QKV projection's V output), probabilities as u8 at scale 255. Format 1.1.
    pub fn int8_attention_values(&mut self, index: usize, value_max: f32) -> Result<&mut Self> {
        if index >= self.value_ranges.len() {
            bail!(Status::InvalidArgument, "layer index {index} but the model has {} layers", self.value_ranges.len());
        }
        if !(value_max.is_finite() && value_max > 0.0) {
            bail!(Status::InvalidArgument, "layer {index}: value_max {value_max} must be finite and positive");
        }
        self.value_ranges[index] = Some(value_max);
        Ok(self)
    }

    pub fn pooler(&mut self, l: Linear<'_>) -> Result<&mut Self> {
        let h = self.h();
        let g = self.scheme();
        self.pooler = Some(linear_tensors("pooler", &[l], h, h, g)?);
        Ok(self)
    }

    /// Several pooling modes whose vectors are concatenated in this order (sentence-transformers'
    /// Pooling with several `pooling_mode_*` flags; format 1.10): the pooled vector is H wide per
    /// mode. Replaces the embedding head's one mode; call it before `dense`.
    pub fn pooling_modes(&mut self, modes: &[Pooling]) -> Result<&mut Self> {
        if !matches!(self.head, Head::Embedding { .. }) {
            bail!(Status::InvalidArgument, "only an embedding head pools");
        }
        if !self.dense.is_empty() {
            bail!(Status::InvalidArgument, "set the pooling modes before the Dense layers: the first layer's input is their width");
        }
        if modes.is_empty() || modes.iter().enumerate().any(|(i, m)| modes[..i].contains(m)) {
            bail!(Status::InvalidArgument, "pooling modes {modes:?} must be one or more distinct modes");
        }
        self.pooling_modes = modes.to_vec();
        Ok(self)
    }

    /// Adds a Dense layer after the pooling (sentence-transformers' `Dense` module): `out` x
    /// K weights, then `activation`. The first layer's K is the pooled width (H per pooling
    /// mode), each next one's the previous layer's `out`; the head's normalization comes last.
    pub fn dense(&mut self, l: Linear<'_>, out: usize, activation: DenseActivation) -> Result<&mut Self> {
        if !matches!(self.head, Head::Embedding { .. }) {
            bail!(Status::InvalidArgument, "only an embedding head has a Dense layer");
        }
        if out == 0 {
            bail!(Status::InvalidArgument, "a Dense layer needs at least one output");
        }
        if self.dense.len() == crate::model::MAX_DENSE_LAYERS {
            bail!(Status::InvalidArgument, "an embedding head chains at most {} Dense layers", crate::model::MAX_DENSE_LAYERS);
        }
        let k = match self.dense.last() {
            Some((tensors, _)) => tensors[0].dims[0] as usize,
            None => self.h() * self.pooling_modes.len().max(1),
        };
        let g = self.scheme();
        let name = crate::model::dense_name(self.dense.len());
        self.dense.push((linear_tensors(&name, &[l], out, k, g)?, activation));
        Ok(self)
    }

    pub fn classifier(&mut self, l: Linear<'_>) -> Result<&mut Self> {
        let n = match &self.head {
            Head::Classification { labels } => labels.len(),
            Head::Regression => 1,
            _ => bail!(Status::InvalidArgument, "only classification and regression heads have a classifier"),
        };
        let (g, h) = (self.scheme(), self.h());
        self.classifier = Some(linear_tensors("classifier", &[l], n, h, g)?);
        Ok(self)
    }

    /// Free-form metadata (base model, training arguments, metrics...). Keys the runtime
    /// reserves (`general.architecture`, `bert.*`, `head.*`, `tokenizer.*`, `quant.*`) are set
    /// by the builder and cannot be overridden here.
    pub fn metadata(&mut self, key: &str, value: MetaValue) -> &mut Self {
        self.metadata.retain(|(k, _)| k != key);
        self.metadata.push((key.to_string(), value));
        self
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let c = self.config;
        let mut w = FileWriter::new();
        w.metadata(keys::ARCHITECTURE, MetaValue::Str("bert".into()));
        w.metadata(keys::VOCAB_SIZE, MetaValue::U32(c.vocab_size));
        w.metadata(keys::HIDDEN_SIZE, MetaValue::U32(c.hidden_size));
        w.metadata(keys::NUM_LAYERS, MetaValue::U32(c.num_layers));
        w.metadata(keys::NUM_HEADS, MetaValue::U32(c.num_heads));
        w.metadata(keys::INTERMEDIATE_SIZE, MetaValue::U32(c.intermediate_size));
        w.metadata(keys::MAX_POSITIONS, MetaValue::U32(c.max_position_embeddings));
        w.metadata(keys::TYPE_VOCAB_SIZE, MetaValue::U32(c.type_vocab_size));
        w.metadata(keys::LAYER_NORM_EPS, MetaValue::F32(c.layer_norm_eps));
        w.metadata(keys::HIDDEN_ACT, MetaValue::Str(self.hidden_act.clone()));
        if let Some(n) = self.text_limit {
            w.metadata(keys::TOK_MAX_SEQ_LEN, MetaValue::U32(n));
        }
        let (kind, pooling, normalize) = match &self.head {
            Head::Classification { labels } => {
                w.metadata(keys::HEAD_LABELS, MetaValue::StrArray(labels.clone()));
                ("classification", None, None)
            }
            Head::Regression => ("regression", None, None),
            Head::Embedding { pooling, normalize } => ("embedding", Some(*pooling), Some(*normalize)),
            Head::TokenStates => ("token_states", None, None),
        };
        w.metadata(keys::HEAD_KIND, MetaValue::Str(kind.into()));
        match (pooling, self.pooling_modes.as_slice()) {
            (Some(p), []) => w.metadata(keys::HEAD_POOLING, MetaValue::Str(p.name().into())),
            (Some(_), [p]) => w.metadata(keys::HEAD_POOLING, MetaValue::Str(p.name().into())),
            (Some(_), modes) => {
                w.metadata(keys::HEAD_POOLING, MetaValue::StrArray(modes.iter().map(|p| p.name().to_string()).collect()));
                w.version_minor(w.minor().max(10));
            }
            (None, _) => {}
        }
        if let Some(n) = normalize {
            w.metadata(keys::HEAD_NORMALIZE, MetaValue::Bool(n));
        }
        if self.pooler_activation != crate::model::PoolerActivation::Tanh {
            if !matches!(self.head, Head::Classification { .. } | Head::Regression) {
                bail!(Status::InvalidArgument, "a pooler activation needs a classification or regression head");
            }
            w.metadata(keys::HEAD_POOLER_ACTIVATION, MetaValue::Str(self.pooler_activation.name().into()));
            w.version_minor(w.minor().max(7));
        }
        if !self.include_prompt {
            w.metadata(keys::HEAD_INCLUDE_PROMPT, MetaValue::Bool(false));
            w.version_minor(w.minor().max(5));
        }
        if !self.prompts.is_empty() {
            w.metadata(keys::TOK_PROMPT_NAMES, MetaValue::StrArray(self.prompts.iter().map(|p| p.0.clone()).collect()));
            w.metadata(keys::TOK_PROMPT_TEXTS, MetaValue::StrArray(self.prompts.iter().map(|p| p.1.clone()).collect()));
        }
        if let Some(d) = &self.default_prompt {
            w.metadata(keys::TOK_DEFAULT_PROMPT, MetaValue::Str(d.clone()));
            w.version_minor(w.minor().max(5));
        }
        let gran = match self.granularity {
            WeightGranularity::PerTensor => "per_tensor",
            WeightGranularity::PerChannel => "per_channel",
        };
        w.metadata(keys::QUANT_WEIGHT_GRANULARITY, MetaValue::Str(gran.into()));
        let act = if self.any_per_row { "per_row" } else { "static" };
        w.metadata(keys::QUANT_ACTIVATIONS, MetaValue::Str(act.into()));
        if self.any_per_row {
            w.version_minor(w.minor().max(2));
        }
        let per_row_embeddings = self.embeddings.as_ref().is_some_and(|e| e.iter().any(|t| t.name.ends_with(".scale") && t.dims[0] > 1));
        w.metadata(keys::QUANT_EMBEDDINGS, MetaValue::Str(if per_row_embeddings { "per_row" } else { "per_table" }.into()));
        if per_row_embeddings {
            w.version_minor(w.minor().max(3));
        }
        if self.dynamic_int8_attention {
            if self.attention_ranges.iter().any(Option::is_some) || self.value_ranges.iter().any(Option::is_some) {
                bail!(Status::InvalidArgument, "dynamic int8 attention and static int8 attention scales exclude each other");
            }
            w.metadata(keys::QUANT_ATTENTION, MetaValue::Str("dynamic_int8".into()));
            w.version_minor(w.minor().max(6));
        }
        if self.any_per_row && self.per_row_zero_points {
            w.metadata(keys::QUANT_PER_ROW_ZERO_POINTS, MetaValue::Bool(true));
            w.version_minor(w.minor().max(4));
        }

        let tk = &self.tokenizer;
        let id_of = |tok: &str| -> Result<u32> {
            match tk.vocab.iter().position(|t| t == tok) {
                Some(i) => Ok(i as u32),
                None => bail!(Status::InvalidArgument, "special token {tok:?} is not in the vocabulary"),
            }
        };
        w.metadata(keys::TOK_LOWER_CASE, MetaValue::Bool(tk.do_lower_case));
        w.metadata(keys::TOK_STRIP_ACCENTS, MetaValue::Bool(tk.strip_accents));
        w.metadata(keys::TOK_CHINESE_CHARS, MetaValue::Bool(tk.tokenize_chinese_chars));
        w.metadata(keys::TOK_MAX_CHARS_PER_WORD, MetaValue::U32(tk.max_input_chars_per_word));
        w.metadata(keys::TOK_UNK_ID, MetaValue::U32(id_of(&tk.unk_token)?));
        w.metadata(keys::TOK_CLS_ID, MetaValue::U32(id_of(&tk.cls_token)?));
        w.metadata(keys::TOK_SEP_ID, MetaValue::U32(id_of(&tk.sep_token)?));
        w.metadata(keys::TOK_PAD_ID, MetaValue::U32(id_of(&tk.pad_token)?));
        w.metadata(keys::TOK_MASK_ID, MetaValue::U32(id_of(&tk.mask_token)?));
        for (k, v) in &self.metadata {
            let reserved = ["general.architecture", "bert.", "head.", "tokenizer.", "quant."];
            if reserved.iter().any(|r| k == r || (r.ends_with('.') && k.starts_with(r))) {
                bail!(Status::InvalidArgument, "metadata key {k:?} is reserved for the runtime");
            }
            w.metadata(k, v.clone());
        }

        let Some(emb) = &self.embeddings else {
            bail!(Status::InvalidArgument, "embeddings were not given");
        };
        let mut all: Vec<&Tensor> = emb.iter().collect();
        for (i, l) in self.layers.iter().enumerate() {
            match l {
                Some(t) => all.extend(t.iter()),
                None => bail!(Status::InvalidArgument, "layer {i} was not given"),
            }
        }
        if matches!(self.head, Head::Classification { .. } | Head::Regression) {
            match (&self.pooler, &self.classifier) {
                (Some(p), Some(cl)) => all.extend(p.iter().chain(cl.iter())),
                _ => bail!(Status::InvalidArgument, "a {kind} head needs pooler and classifier weights"),
            }
        }
        if matches!(self.head, Head::Embedding { .. }) {
            match self.dense.as_slice() {
                [] => {}
                [(_, activation)] => w.metadata(keys::HEAD_DENSE_ACTIVATION, MetaValue::Str(activation.name().into())),
                chain => {
                    w.metadata(keys::HEAD_DENSE_ACTIVATION, MetaValue::StrArray(chain.iter().map(|(_, a)| a.name().to_string()).collect()));
                    w.version_minor(w.minor().max(10));
                }
            }
            all.extend(self.dense.iter().flat_map(|(tensors, _)| tensors.iter()));
        }
        for t in all {
            w.tensor(&t.name, t.dtype, &t.dims, t.bytes.clone());
        }
        for (i, r) in self.attention_ranges.iter().enumerate() {
            if let Some((q_max, k_max)) = *r {
                w.version_minor(w.minor().max(1));
                w.tensor_f32(&alloc::format!("encoder.layer.{i}.attention.query_scale"), &[1], &[127.0 / q_max]);
                w.tensor_f32(&alloc::format!("encoder.layer.{i}.attention.key_scale"), &[1], &[127.0 / k_max]);
            }
        }
        for (i, r) in self.value_ranges.iter().enumerate() {
            if let Some(v_max) = *r {
                w.version_minor(w.minor().max(1));
                w.tensor_f32(&alloc::format!("encoder.layer.{i}.attention.value_scale"), &[1], &[127.0 / v_max]);
            }
        }
        if tk.vocab.len() > c.vocab_size as usize {
            bail!(Status::InvalidArgument, "vocabulary has {} tokens but vocab_size is {}", tk.vocab.len(), c.vocab_size);
        }
        let v = encode_vocab(&tk.vocab).map_err(|e| Error::new(Status::InvalidArgument, e.message()))?;
        if let Some(bpe) = &tk.bpe {
            let vocab = v.vocab().map_err(|e| Error::new(Status::InvalidArgument, e.message()))?;
            let rows = encode_merges(&vocab, &bpe.merges).map_err(|(i, _)| {
                let (a, b) = &bpe.merges[i];
                Error::new(Status::InvalidArgument, format!("merge {} ({a:?} {b:?}): its parts or result are not in the vocabulary", i + 1))
            })?;
            w.tensor_u32("tokenizer.bpe.merges", &[rows.len() as u64 / 4, 4], &rows);
            w.metadata(keys::TOK_KIND, MetaValue::Str("byte_level_bpe".into()));
            w.metadata(keys::TOK_ADD_PREFIX_SPACE, MetaValue::Bool(bpe.add_prefix_space));
            w.version_minor(w.minor().max(8));
        }
        if let Some(u) = &tk.unigram {
            if tk.bpe.is_some() {
                bail!(Status::InvalidArgument, "a tokenizer is either byte-level BPE or Unigram, not both");
            }
            if u.scores.len() != tk.vocab.len() {
                bail!(Status::InvalidArgument, "{} Unigram scores for {} vocabulary pieces", u.scores.len(), tk.vocab.len());
            }
            let scores = crate::tokenizer::encode_scores(&u.scores);
            crate::tokenizer::Unigram::new(tk.vocab.len(), &scores, None, u.collapse_spaces).map_err(|e| Error::new(Status::InvalidArgument, e.message()))?;
            w.tensor_u32("tokenizer.unigram.scores", &[tk.vocab.len() as u64, 2], &scores);
            if let Some(map) = &u.charsmap {
                crate::tokenizer::Charsmap::from_bytes(map).map_err(|e| Error::new(Status::InvalidArgument, e.message()))?;
                w.tensor("tokenizer.unigram.charsmap", DType::U8, &[map.len() as u64], map.clone());
            }
            w.metadata(keys::TOK_KIND, MetaValue::Str("unigram".into()));
            w.metadata(keys::TOK_COLLAPSE_SPACES, MetaValue::Bool(u.collapse_spaces));
            w.version_minor(w.minor().max(9));
        }
        w.tensor_u32("tokenizer.vocab.offsets", &[v.offsets.len() as u64], &v.offsets);
        w.tensor("tokenizer.vocab.bytes", DType::U8, &[v.bytes.len() as u64], v.bytes);
        w.tensor_u32("tokenizer.vocab.hash", &[v.hash.len() as u64], &v.hash);
        Ok(w.to_bytes())
    }

    /// Writes the file atomically: a temporary file in the same directory, then a rename.
    pub fn write(&self, path: &Path) -> Result<()> {
        let bytes = self.to_bytes()?;
        let tmp = path.with_extension("q8b.tmp");
        let io = |e: std::io::Error| Error::new(Status::Io, alloc::format!("writing {}: {e}", path.display()));
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(io)?;
            f.write_all(&bytes).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, path).map_err(io)
    }
}

fn layer_norm_tensors(prefix: &str, ln: LayerNorm<'_>, h: usize) -> Result<Vec<Tensor>> {
    if ln.gamma.len() != h || ln.beta.len() != h {
        bail!(Status::InvalidArgument, "{prefix}: gamma/beta must have {h} values");
    }
    Ok(alloc::vec![
        Tensor { name: alloc::format!("{prefix}.gamma"), dtype: DType::F32, dims: alloc::vec![h as u64], bytes: f32_bytes(ln.gamma) },
        Tensor { name: alloc::format!("{prefix}.beta"), dtype: DType::F32, dims: alloc::vec![h as u64], bytes: f32_bytes(ln.beta) },
    ])
}

/// Fuses Q, K and V (same input) into one [3H, H] linear with per-part weight scales.
fn qkv_tensors(prefix: &str, parts: [Linear<'_>; 3], h: usize, g: LinearScheme) -> Result<Vec<Tensor>> {
    linear_tensors(prefix, &parts, h, h, g)
}

/// Quantizes one linear layer, or several stacked along the output dimension that share an
/// input (each part keeps its own per-tensor scale).
fn linear_tensors(prefix: &str, parts: &[Linear<'_>], n_part: usize, k: usize, scheme: LinearScheme) -> Result<Vec<Tensor>> {
    let LinearScheme { granularity: g, activations: act, weight_max } = scheme;
    let mut input_max = 0.0f32;
    let per_row = act == ActivationQuant::PerRow;
    for p in parts {
        if p.weight.len() != n_part * k || p.bias.len() != n_part {
            bail!(Status::InvalidArgument, "{prefix}: weight must be {n_part} x {k} and bias {n_part} values (got {} and {})", p.weight.len(), p.bias.len());
        }
        if per_row {
            if let Some(b) = p.bias.iter().find(|b| !b.is_finite()) {
                bail!(Status::InvalidArgument, "{prefix}: bias value {b} is not finite");
            }
            continue;
        }
        if !(p.input_max.is_finite() && p.input_max > 0.0) {
            bail!(Status::InvalidArgument, "{prefix}: input_max {} must be finite and positive", p.input_max);
        }
        input_max = input_max.max(p.input_max);
    }
    let sx = if per_row { 1.0 } else { 127.0 / input_max };
    let n = n_part * parts.len();
    let mut q = Vec::with_capacity(n * k);
    let mut scales = Vec::new();
    let mut bias = Vec::with_capacity(n);
    for p in parts {
        let row_scales: Vec<f32> = match g {
            WeightGranularity::PerTensor => alloc::vec![symmetric_scale_to(max_abs(p.weight), weight_max); 1],
            WeightGranularity::PerChannel => p.weight.chunks_exact(k).map(|r| symmetric_scale_to(max_abs(r), weight_max)).collect(),
        };
        for (r, row) in p.weight.chunks_exact(k).enumerate() {
            let sw = row_scales[if row_scales.len() == 1 { 0 } else { r }];
            // (A finite weight already rounds within ±weight_max; the clamp covers the rest.)
            q.extend(row.iter().map(|&x| quantize_value(x, sw).clamp(-weight_max as i8, weight_max as i8)));
            let b = (p.bias[r] as f64 * sw as f64 * sx as f64).round_ties_even();
            bias.push(b.clamp(i32::MIN as f64, i32::MAX as f64) as i32);
        }
        scales.extend(row_scales);
    }
    let packed = pack_weights(&q, n, k);
    let sums = weight_sums(&q, n, k);
    let mut t = alloc::vec![
        Tensor { name: alloc::format!("{prefix}.weight"), dtype: DType::I8P16K4, dims: alloc::vec![n as u64, k as u64], bytes: packed },
        Tensor { name: alloc::format!("{prefix}.weight_scale"), dtype: DType::F32, dims: alloc::vec![scales.len() as u64], bytes: f32_bytes(&scales) },
    ];
    if per_row {
        // The input scale is per row, known only at run time: the bias stays f32.
        let bias: Vec<f32> = parts.iter().flat_map(|p| p.bias.iter().copied()).collect();
        t.push(Tensor { name: alloc::format!("{prefix}.bias"), dtype: DType::F32, dims: alloc::vec![n as u64], bytes: f32_bytes(&bias) });
    } else {
        t.push(Tensor { name: alloc::format!("{prefix}.input_scale"), dtype: DType::F32, dims: alloc::vec![1], bytes: f32_bytes(&[sx]) });
        t.push(Tensor { name: alloc::format!("{prefix}.bias"), dtype: DType::I32, dims: alloc::vec![n as u64], bytes: i32_bytes(&bias) });
    }
    t.push(Tensor { name: alloc::format!("{prefix}.weight_sum"), dtype: DType::I32, dims: alloc::vec![n as u64], bytes: i32_bytes(&sums) });
    Ok(t)
}
