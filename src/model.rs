//! A validated BERT model: configuration, head and typed views of the tensors, resolved once
//! at load from the container index. Weights stay where they are (memory map or caller buffer).

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::ops::Range;

use crate::error::{bail, Error, Result, Status};
use crate::format::{DType, FileIndex, MetaValue, TensorInfo};
use crate::kernels::{Kernel, KernelKind, WeightRange};
use crate::tokenizer::{TokenizerKind, TokenizerSettings, Truncation};

/// Metadata keys the runtime reads. Everything else in the file is free-form.
pub mod keys {
    pub const ARCHITECTURE: &str = "general.architecture";
    pub const VOCAB_SIZE: &str = "bert.vocab_size";
    pub const HIDDEN_SIZE: &str = "bert.hidden_size";
    pub const NUM_LAYERS: &str = "bert.num_layers";
    pub const NUM_HEADS: &str = "bert.num_heads";
    pub const INTERMEDIATE_SIZE: &str = "bert.intermediate_size";
    pub const MAX_POSITIONS: &str = "bert.max_position_embeddings";
    pub const TYPE_VOCAB_SIZE: &str = "bert.type_vocab_size";
    pub const LAYER_NORM_EPS: &str = "bert.layer_norm_eps";
    pub const HIDDEN_ACT: &str = "bert.hidden_act";
    pub const HEAD_KIND: &str = "head.kind";
    pub const HEAD_LABELS: &str = "head.labels";
    pub const HEAD_POOLING: &str = "head.pooling";
    pub const HEAD_NORMALIZE: &str = "head.normalize";
    pub const HEAD_DENSE_ACTIVATION: &str = "head.dense.activation";
    pub const QUANT_WEIGHT_GRANULARITY: &str = "quant.weight_granularity";
    pub const QUANT_ACTIVATIONS: &str = "quant.activations";
    pub const QUANT_EMBEDDINGS: &str = "quant.embeddings";
    pub const QUANT_PER_ROW_ZERO_POINTS: &str = "quant.per_row_zero_points";
    /// Optional: `dynamic_int8` = attention scores and P·V in int8 with scales measured at run
    /// time (1.6); absent = as the layers' tensors say (fp32, or static int8 scales).
    pub const QUANT_ATTENTION: &str = "quant.attention";
    pub const TOK_LOWER_CASE: &str = "tokenizer.do_lower_case";
    pub const TOK_STRIP_ACCENTS: &str = "tokenizer.strip_accents";
    pub const TOK_CHINESE_CHARS: &str = "tokenizer.tokenize_chinese_chars";
    pub const TOK_MAX_CHARS_PER_WORD: &str = "tokenizer.max_input_chars_per_word";
    pub const TOK_UNK_ID: &str = "tokenizer.unk_token_id";
    pub const TOK_CLS_ID: &str = "tokenizer.cls_token_id";
    pub const TOK_SEP_ID: &str = "tokenizer.sep_token_id";
    pub const TOK_PAD_ID: &str = "tokenizer.pad_token_id";
    pub const TOK_MASK_ID: &str = "tokenizer.mask_token_id";
    /// `wordpiece` (the default when absent), `byte_level_bpe` (format 1.8) or `unigram` (1.9).
    pub const TOK_KIND: &str = "tokenizer.kind";
    /// Byte-level BPE: a space goes in front of text that does not start with one (1.8).
    /// Unigram: runs of spaces become one after the charsmap (format 1.9).
    pub const TOK_COLLAPSE_SPACES: &str = "tokenizer.unigram.collapse_spaces";
    pub const TOK_ADD_PREFIX_SPACE: &str = "tokenizer.add_prefix_space";
    /// Optional: the model's own token limit for text input (sentence-transformers'
    /// `max_seq_length`), the default of `Options::max_seq_len`.
    pub const TOK_MAX_SEQ_LEN: &str = "tokenizer.max_seq_len";
    /// Optional, together: sentence-transformers' named prompts
    /// (`config_sentence_transformers.json` `prompts`), names and texts in the same order.
    pub const TOK_PROMPT_NAMES: &str = "tokenizer.prompt_names";
    pub const TOK_PROMPT_TEXTS: &str = "tokenizer.prompt_texts";
    /// Optional: the prompt used when the caller names none (`default_prompt_name`; 1.5).
    pub const TOK_DEFAULT_PROMPT: &str = "tokenizer.default_prompt_name";
    /// Optional, default true: pooling also covers the prompt's tokens (sentence-transformers'
    /// Pooling `include_prompt`); false needs 1.5.
    pub const HEAD_INCLUDE_PROMPT: &str = "head.include_prompt";
    /// Optional, default `tanh` (BERT's pooler): `relu` for DistilBERT's pre-classifier (1.7).
    pub const HEAD_POOLER_ACTIVATION: &str = "head.pooler.activation";
}

/// Most named prompts a file may carry.
pub const MAX_PROMPTS: usize = 256;

/// Limits on configuration values: far above any BERT, low enough that sizes derived from
/// them cannot overflow.
const MAX_DIM: u32 = 1 << 16;
const MAX_LAYERS: u32 = 256;
const MAX_VOCAB: u32 = 1 << 24;
const MAX_LABELS: usize = 1 << 16;
const MAX_DENSE_OUT: usize = MAX_DIM as usize;
/// Most Dense layers an embedding head chains.
pub const MAX_DENSE_LAYERS: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f32,
    /// The FFN activation (`bert.hidden_act`).
    pub hidden_act: Activation,
}

/// The FFN activation of a model, as `bert.hidden_act` names it (Hugging Face's names). The
/// runtime computes it with `ops::math::{gelu, gelu_tanh, relu}` (`ops::activate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `gelu`: x/2 (1 + erf(x/sqrt 2)), the exact form (BERT, MiniLM, bge, e5).
    Gelu,
    /// `gelu_new` and `gelu_pytorch_tanh`: the tanh approximation
    /// x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))); the two names are the same function.
    GeluTanh,
    /// `relu`: max(x, 0).
    Relu,
}

impl Activation {
    /// Every `bert.hidden_act` value a reader of this version accepts.
    pub const NAMES: [&'static str; 4] = ["gelu", "gelu_new", "gelu_pytorch_tanh", "relu"];

    pub fn from_name(s: &str) -> Option<Activation> {
        match s {
            "gelu" => Some(Activation::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" => Some(Activation::GeluTanh),
            "relu" => Some(Activation::Relu),
            _ => None,
        }
    }
}

impl Config {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads
    }
}

/// What the model outputs per sequence. Numbers are part of the C ABI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum HeadKind {
    /// Pooler (tanh) + classifier: `num_labels` logits per sequence.
    Classification = 1,
    /// Pooler (tanh) + one-output regressor: 1 float per sequence.
    Regression = 2,
    /// Pooled sentence embedding (mean or CLS, optionally L2-normalized): `hidden_size` floats.
    Embedding = 3,
    /// Final hidden state of every token: `seq_len * hidden_size` floats per sequence.
    TokenStates = 4,
}

impl HeadKind {
    pub fn name(self) -> &'static str {
        match self {
            HeadKind::Classification => "classification",
            HeadKind::Regression => "regression",
            HeadKind::Embedding => "embedding",
            HeadKind::TokenStates => "token_states",
        }
    }

    pub fn from_name(s: &str) -> Option<HeadKind> {
        [HeadKind::Classification, HeadKind::Regression, HeadKind::Embedding, HeadKind::TokenStates]
            .into_iter()
            .find(|h| h.name() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Mean of the unmasked tokens.
    Mean,
    /// The first token ([CLS]).
    Cls,
    /// Per dimension, the largest value over the unmasked tokens.
    Max,
    /// Sum of the unmasked tokens over the square root of their count.
    MeanSqrtLen,
    /// Mean weighted by position (1 for the first position of the row), as sentence-transformers'
    /// `weightedmean`.
    WeightedMean,
    /// The last unmasked token.
    LastToken,
}

/// The pooling names a file may give, for error messages.
const POOLING_NAMES: &str = "mean, cls, max, mean_sqrt_len, weighted_mean, last_token";

/// Each name of a metadata list parsed by `from_name`; None if one is unknown.
fn parse_names<T>(names: &[String], from_name: fn(&str) -> Option<T>) -> Option<Vec<T>> {
    let mut out = Vec::with_capacity(names.len());
    for n in names {
        out.push(from_name(n)?);
    }
    Some(out)
}

/// Tensor prefix of an embedding head's Dense layer `i`: `dense`, then `dense.1`, `dense.2`, ...
pub fn dense_name(i: usize) -> String {
    if i == 0 {
        "dense".to_string()
    } else {
        alloc::format!("dense.{i}")
    }
}

impl Pooling {
    pub const ALL: [Pooling; 6] = [Pooling::Mean, Pooling::Cls, Pooling::Max, Pooling::MeanSqrtLen, Pooling::WeightedMean, Pooling::LastToken];

    /// The name in the file's `head.pooling`.
    pub fn name(self) -> &'static str {
        match self {
            Pooling::Mean => "mean",
            Pooling::Cls => "cls",
            Pooling::Max => "max",
            Pooling::MeanSqrtLen => "mean_sqrt_len",
            Pooling::WeightedMean => "weighted_mean",
            Pooling::LastToken => "last_token",
        }
    }

    pub fn from_name(s: &str) -> Option<Pooling> {
        Pooling::ALL.into_iter().find(|p| p.name() == s)
    }
}

/// The activation after an embedding head's Dense layer (sentence-transformers' `Dense`
/// module: `activation_function`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenseActivation {
    Identity,
    Tanh,
}

impl DenseActivation {
    pub fn name(self) -> &'static str {
        match self {
            DenseActivation::Identity => "identity",
            DenseActivation::Tanh => "tanh",
        }
    }

    pub fn from_name(s: &str) -> Option<DenseActivation> {
        [DenseActivation::Identity, DenseActivation::Tanh].into_iter().find(|a| a.name() == s)
    }
}

/// The activation after a classification or regression head's pooler: tanh (BERT's pooler) or
/// ReLU (DistilBERT's pre-classifier).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolerActivation {
    Tanh,
    Relu,
}

impl PoolerActivation {
    pub fn name(self) -> &'static str {
        match self {
            PoolerActivation::Tanh => "tanh",
            PoolerActivation::Relu => "relu",
        }
    }

    pub fn from_name(s: &str) -> Option<PoolerActivation> {
        [PoolerActivation::Tanh, PoolerActivation::Relu].into_iter().find(|a| a.name() == s)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct HeadConfig {
    pub kind: HeadKind,
    /// Label names (classification); empty otherwise.
    pub labels: Vec<String>,
    /// Embedding head: the pooling modes, their vectors concatenated in this order
    /// (sentence-transformers' Pooling with several `pooling_mode_*` set; format 1.10). One or more.
    pub pooling: Vec<Pooling>,
    /// Embedding head: the Dense layers after the pooling (tensors `dense.*`, `dense.1.*`, ...;
    /// sentence-transformers' chained `Dense` modules), each one's activation. Empty: none.
    pub dense: Vec<DenseActivation>,
    pub normalize: bool,
    /// After the pooler of a classification or regression head (tanh otherwise).
    pub pooler_activation: PoolerActivation,
    /// Pooling covers the prompt's tokens too (false: they are left out, as sentence-transformers'
    /// `include_prompt: false`; the [CLS] token counts as part of the prompt then).
    pub include_prompt: bool,
}

/// An int8 linear layer: where its tensors are and its activation scale.
#[derive(Debug, Clone)]
pub struct LinearRef {
    /// Output features.
    pub n: usize,
    /// Input features.
    pub k: usize,
    pub weight: Range<usize>,
    /// f32 [groups]: rows `g*n/groups .. (g+1)*n/groups` share scale `g`.
    pub weight_scale: Range<usize>,
    pub groups: usize,
    /// How the input is quantized; also says what `bias` holds.
    pub input: InputQuant,
    /// i32 [n] at scale S_w * S_x for a static input, f32 [n] for a per-row input.
    pub bias: Range<usize>,
    pub weight_sum: Range<usize>,
    /// Whether the weights fit 7 bits: `Full` until [`ModelLayout::find_narrow_weights`] looks
    /// (some kernels are faster on narrow weights; the results are the same).
    pub weight_range: WeightRange,
}

/// How a linear layer quantizes its input activations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum InputQuant {
    /// One scale S_x for every row, learned in training or calibration: x is quantized as
    /// clamp(round(x * S_x)), and the bias is stored as int32 at S_w * S_x (the Q8BERT scheme).
    Static(f32),
    /// A scale per row (per token) computed at run time, S_x = 127 / max|row| (1 for an all-zero
    /// row), so an outlier token cannot flatten the others; the bias is stored as f32 (format 1.2).
    PerRow,
}

impl InputQuant {
    pub fn is_per_row(&self) -> bool {
        matches!(self, InputQuant::PerRow)
    }
}

#[derive(Debug, Clone)]
pub struct LayerNormRef {
    pub gamma: Range<usize>,
    pub beta: Range<usize>,
}

#[derive(Debug, Clone)]
pub struct EmbeddingRef {
    pub table: Range<usize>,
    pub rows: usize,
    pub scales: EmbeddingScales,
}

/// How an embedding table's rows are dequantized.
#[derive(Debug, Clone)]
pub enum EmbeddingScales {
    /// One scale for the table: the multiplier 1/S.
    PerTable { inv_scale: f32 },
    /// One scale per row (format 1.3): f32 [rows] in the file; row r is multiplied by 1/S[r].
    PerRow { scales: Range<usize> },
}

/// Scale of quantized attention probabilities in int8 P·V: p in [0, 1] is stored as
/// round(p * 255), an unsigned 8-bit value (format 1.1).
pub const PROBABILITY_SCALE: f32 = 255.0;

/// Scales of int8 attention scores (format 1.1): Q and K are requantized after the QKV
/// projection and Q·Kᵀ accumulates in int32, as the trainer simulated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionScales {
    /// S_q = 127 / EMA(max|q|): q is quantized as clamp(round(q * query_scale)).
    pub query_scale: f32,
    /// S_k, likewise for k.
    pub key_scale: f32,
}

#[derive(Debug, Clone)]
pub struct LayerRefs {
    /// Fused Q, K, V projection: [3H, H], rows Q then K then V.
    pub qkv: LinearRef,
    pub attention_output: LinearRef,
    pub attention_layer_norm: LayerNormRef,
    pub intermediate: LinearRef,
    pub output: LinearRef,
    pub output_layer_norm: LayerNormRef,
    /// `Some` when this layer computes attention scores in int8; fp32 otherwise.
    pub attention_scales: Option<AttentionScales>,
    /// `Some(S_v)` when this layer computes P·V in int8 (format 1.1): V requantized with S_v,
    /// probabilities as u8 with scale [`PROBABILITY_SCALE`]; fp32 otherwise.
    pub attention_value_scale: Option<f32>,
}

/// Typed, validated view of a whole model file.
#[derive(Debug, Clone)]
pub struct ModelLayout {
    pub config: Config,
    pub head: HeadConfig,
    pub tokenizer: TokenizerSettings,
    pub mask_id: u32,
    /// The model's own token limit for text input (`tokenizer.max_seq_len`, e.g. 256 for
    /// all-MiniLM-L6-v2), if the file records one; at most `max_position_embeddings`.
    pub text_limit: Option<usize>,
    /// Named prompts (name, text), prepended to a text when the caller asks for them.
    pub prompts: Vec<(String, String)>,
    /// Index into `prompts` of the one used when the caller names none.
    pub default_prompt: Option<usize>,
    pub word_embeddings: EmbeddingRef,
    pub position_embeddings: EmbeddingRef,
    pub token_type_embeddings: EmbeddingRef,
    pub embeddings_layer_norm: LayerNormRef,
    pub layers: Vec<LayerRefs>,
    pub pooler: Option<LinearRef>,
    pub classifier: Option<LinearRef>,
    /// The embedding head's Dense layers in order: the first [out, pooled width], each next
    /// one [out, previous out].
    pub dense: Vec<LinearRef>,
    /// Per-row inputs are quantized with a zero point too (format 1.4): the row's [min, max]
    /// onto -127..=127 instead of [-max|x|, max|x|].
    pub per_row_zero_points: bool,
    /// Every layer computes QKᵀ and P·V in int8 with scales taken at run time (format 1.6):
    /// each query row its own, K and V one per sequence and head (127 / max|x|).
    pub dynamic_int8_attention: bool,
    /// Where the tokenizer's tables are (feature `text`: only text input reads them).
    #[cfg(feature = "text")]
    pub tokenizer_tables: TokenizerTables,
}

/// Where the tokenizer's tables are in the file (their contents are checked when the tokenizer
/// is built from them at open).
#[cfg(feature = "text")]
#[derive(Debug, Clone)]
pub struct TokenizerTables {
    /// Pieces in the vocabulary (the offsets tensor has one more entry).
    pub vocab_len: usize,
    pub vocab_offsets: Range<usize>,
    pub vocab_bytes: Range<usize>,
    pub vocab_hash: Range<usize>,
    /// Byte-level BPE merge rows (`tokenizer.bpe.merges`, `[n, 4]` u32).
    pub bpe_merges: Option<Range<usize>>,
    /// Unigram scores (`tokenizer.unigram.scores`, `[V, 2]` u32 = f64 bits) and the optional
    /// SentencePiece charsmap (`tokenizer.unigram.charsmap`, u8).
    pub unigram: Option<UnigramRefs>,
}

#[cfg(feature = "text")]
#[derive(Debug, Clone)]
pub struct UnigramRefs {
    pub scores: Range<usize>,
    pub charsmap: Option<Range<usize>>,
    pub collapse_spaces: bool,
}

#[cfg(feature = "text")]
impl TokenizerTables {
    /// Finds the tables of a tokenizer of `kind` and checks their names, dtypes and shapes.
    /// Their contents (the vocabulary's offsets, hash and pieces, BPE merges, Unigram scores and
    /// charsmap) are checked once, by building the tokenizer from them (`Model::from_bytes`).
    fn resolve(r: &mut TensorResolver, vocab_size: usize, kind: TokenizerKind, collapse_spaces: bool) -> Result<TokenizerTables> {
        let offsets = r.index.tensor("tokenizer.vocab.offsets").map(|t| t.dims.clone());
        let v_plus_1 = match offsets.as_deref() {
            Some([n]) => *n as usize,
            Some(_) => bail!(Status::WrongShape, "tensor \"tokenizer.vocab.offsets\" must be 1-D"),
            None => bail!(Status::MissingTensor, "tensor \"tokenizer.vocab.offsets\" is missing"),
        };
        if v_plus_1 < 2 || v_plus_1 - 1 > vocab_size {
            bail!(Status::BadVocab, "vocabulary has {} tokens; the embedding table has {} rows", v_plus_1.saturating_sub(1), vocab_size);
        }
        let vocab_len = v_plus_1 - 1;
        let vocab_offsets = r.get("tokenizer.vocab.offsets", DType::U32, &[v_plus_1])?.range.clone();
        let bytes_len = r.index.tensor("tokenizer.vocab.bytes").map(|t| t.dims.clone());
        let vocab_bytes = match bytes_len.as_deref() {
            Some([n]) => r.get("tokenizer.vocab.bytes", DType::U8, &[*n as usize])?.range.clone(),
            _ => bail!(Status::MissingTensor, "tensor \"tokenizer.vocab.bytes\" is missing or not 1-D"),
        };
        let hash_len = r.index.tensor("tokenizer.vocab.hash").map(|t| t.dims.clone());
        let vocab_hash = match hash_len.as_deref() {
            Some([n]) => r.get("tokenizer.vocab.hash", DType::U32, &[*n as usize])?.range.clone(),
            _ => bail!(Status::MissingTensor, "tensor \"tokenizer.vocab.hash\" is missing or not 1-D"),
        };
        let mut bpe_merges = None;
        let mut unigram = None;
        match kind {
            TokenizerKind::WordPiece => {}
            TokenizerKind::ByteLevelBpe { .. } => {
                let rows = match r.index.tensor("tokenizer.bpe.merges").map(|t| t.dims.clone()).as_deref() {
                    Some([n, 4]) => *n as usize,
                    Some(_) => bail!(Status::WrongShape, "tensor \"tokenizer.bpe.merges\" must be [n, 4]"),
                    None => bail!(Status::MissingTensor, "tensor \"tokenizer.bpe.merges\" is missing (tokenizer.kind is byte_level_bpe)"),
                };
                bpe_merges = Some(r.get("tokenizer.bpe.merges", DType::U32, &[rows, 4])?.range.clone());
            }
            TokenizerKind::Unigram => {
                let scores = match r.index.tensor("tokenizer.unigram.scores").map(|t| t.dims.clone()).as_deref() {
                    Some([n, 2]) if *n as usize == vocab_len => r.get("tokenizer.unigram.scores", DType::U32, &[vocab_len, 2])?.range.clone(),
                    Some(_) => bail!(Status::WrongShape, "tensor \"tokenizer.unigram.scores\" must be [{vocab_len}, 2] (one f64 per vocabulary piece)"),
                    None => bail!(Status::MissingTensor, "tensor \"tokenizer.unigram.scores\" is missing (tokenizer.kind is unigram)"),
                };
                let charsmap = match r.index.tensor("tokenizer.unigram.charsmap").map(|t| t.dims.clone()).as_deref() {
                    None => None,
                    Some([n]) => Some(r.get("tokenizer.unigram.charsmap", DType::U8, &[*n as usize])?.range.clone()),
                    Some(_) => bail!(Status::WrongShape, "tensor \"tokenizer.unigram.charsmap\" must be 1-D"),
                };
                unigram = Some(UnigramRefs { scores, charsmap, collapse_spaces });
            }
        }
        Ok(TokenizerTables { vocab_len, vocab_offsets, vocab_bytes, vocab_hash, bpe_merges, unigram })
    }
}

/// Reads the four-byte-aligned little-endian slice `r` of `file` as `T` values.
pub(crate) fn cast<'f, T: bytemuck::Pod>(file: &'f [u8], r: &Range<usize>) -> &'f [T] {
    // Alignment holds: tensor offsets are multiples of 64 and the buffer start is checked to be
    // 4-aligned at load; the reader checked the range lies inside the file.
    bytemuck::cast_slice(&file[r.clone()])
}

/// MISSING_METADATA: `key` is absent (`found` None) or not of the type `want`. One cold
/// function for every metadata read (flash on a microcontroller).
#[cold]
#[inline(never)]
fn wrong_metadata(key: &str, want: &str, found: Option<&MetaValue>) -> Error {
    let message = match found {
        None => alloc::format!("required metadata {key:?} is missing"),
        Some(v) => alloc::format!("metadata {key:?} must be a {want}, found the {} {v}", v.type_name()),
    };
    Error::new(Status::MissingMetadata, message)
}

fn meta_u32(index: &FileIndex, key: &str) -> Result<u32> {
    match index.metadata.get(key) {
        Some(MetaValue::U32(v)) => Ok(*v),
        Some(other) => Err(wrong_metadata(key, "u32", Some(other))),
        None => Err(wrong_metadata(key, "", None)),
    }
}

fn meta_bool(index: &FileIndex, key: &str) -> Result<bool> {
    match index.metadata.get(key) {
        Some(MetaValue::Bool(v)) => Ok(*v),
        Some(other) => Err(wrong_metadata(key, "bool", Some(other))),
        None => Err(wrong_metadata(key, "", None)),
    }
}

/// Named prompts (name, text) and the index of the default one.
#[cfg(feature = "text")]
type NamedPrompts = (Vec<(String, String)>, Option<usize>);

/// The named prompts and the default one (an index into them), checked: names and texts in
/// pairs, names unique and non-empty, the default among them.
#[cfg(feature = "text")]
fn read_prompts(index: &FileIndex) -> Result<NamedPrompts> {
    let list = |key: &str| match index.metadata.get(key) {
        None => Ok(None),
        Some(MetaValue::StrArray(v)) => Ok(Some(v)),
        Some(other) => Err(wrong_metadata(key, "string array", Some(other))),
    };
    let prompts: Vec<(String, String)> = match (list(keys::TOK_PROMPT_NAMES)?, list(keys::TOK_PROMPT_TEXTS)?) {
        (None, None) => Vec::new(),
        (Some(names), Some(texts)) if names.len() == texts.len() && names.len() <= MAX_PROMPTS => names.iter().cloned().zip(texts.iter().cloned()).collect(),
        _ => bail!(Status::BadConfig, "{} and {} must both be present, with the same number (at most {MAX_PROMPTS}) of entries", keys::TOK_PROMPT_NAMES, keys::TOK_PROMPT_TEXTS),
    };
    for (i, (name, _)) in prompts.iter().enumerate() {
        if name.is_empty() || prompts[..i].iter().any(|(n, _)| n == name) {
            bail!(Status::BadConfig, "prompt name {name:?} is empty or given twice");
        }
    }
    let default = match index.metadata.get(keys::TOK_DEFAULT_PROMPT) {
        None => None,
        Some(_) => {
            needs_minor(index, 5, keys::TOK_DEFAULT_PROMPT)?;
            let name = meta_str(index, keys::TOK_DEFAULT_PROMPT)?;
            match prompts.iter().position(|(n, _)| n == name) {
                Some(i) => Some(i),
                None => bail!(Status::BadConfig, "{} {name:?} is not one of the prompts", keys::TOK_DEFAULT_PROMPT),
            }
        }
    };
    Ok((prompts, default))
}

/// UNSUPPORTED_VERSION unless the file declares format 1.`minor` or later for `what`.
fn needs_minor(index: &FileIndex, minor: u16, what: &str) -> Result<()> {
    if index.version_minor < minor {
        bail!(Status::UnsupportedVersion, "{what} needs format version 1.{minor}; the file says {}.{}", index.version_major, index.version_minor);
    }
    Ok(())
}

fn meta_str<'i>(index: &'i FileIndex, key: &str) -> Result<&'i str> {
    match index.metadata.get(key) {
        Some(MetaValue::Str(v)) => Ok(v),
        Some(other) => Err(wrong_metadata(key, "string", Some(other))),
        None => Err(wrong_metadata(key, "", None)),
    }
}

fn dim(index: &FileIndex, key: &str, max: u32) -> Result<usize> {
    let v = meta_u32(index, key)?;
    if v == 0 || v > max {
        bail!(Status::BadConfig, "{key} = {v} is outside 1..={max}");
    }
    Ok(v as usize)
}

/// Resolves tensors by name with dtype and shape checks, and records which were used.
struct TensorResolver<'i> {
    index: &'i FileIndex,
    file: &'i [u8],
    used: Vec<bool>,
}

impl<'i> TensorResolver<'i> {
    fn get(&mut self, name: &str, dtype: DType, dims: &[usize]) -> Result<&'i TensorInfo> {
        let Some(i) = self.index.tensor_index(name) else {
            bail!(Status::MissingTensor, "tensor {name:?} is missing");
        };
        let t = &self.index.tensors[i];
        if t.dtype != dtype {
            bail!(Status::WrongDtype, "tensor {name:?} is {}, must be {}", t.dtype.name(), dtype.name());
        }
        if t.dims.len() != dims.len() || t.dims.iter().zip(dims).any(|(&a, &b)| a != b as u64) {
            bail!(Status::WrongShape, "tensor {name:?} has shape {:?}, the configuration needs {dims:?}", t.dims);
        }
        self.used[i] = true;
        Ok(t)
    }

    /// Marks every tensor whose name starts with `prefix` as part of the model without
    /// checking it (the tokenizer's tables where nothing reads them).
    #[cfg(not(feature = "text"))]
    fn accept_unread(&mut self, prefix: &str) {
        for (used, t) in self.used.iter_mut().zip(&self.index.tensors) {
            *used |= t.name.starts_with(prefix);
        }
    }

    fn scale(&mut self, name: &str) -> Result<f32> {
        let t = self.get(name, DType::F32, &[1])?;
        let s = cast::<f32>(self.file, &t.range)[0];
        check_scale(name, s)?;
        Ok(s)
    }

    fn linear(&mut self, prefix: &str, n: usize, k: usize) -> Result<LinearRef> {
        let weight = self.get(&alloc::format!("{prefix}.weight"), DType::I8P16K4, &[n, k])?.range.clone();
        let scale_name = alloc::format!("{prefix}.weight_scale");
        let Some(si) = self.index.tensor_index(&scale_name) else {
            bail!(Status::MissingTensor, "tensor {scale_name:?} is missing");
        };
        let groups = self.index.tensors[si].dims.first().copied().unwrap_or(0) as usize;
        if groups == 0 || groups > n || !n.is_multiple_of(groups) {
            bail!(Status::WrongShape, "tensor {scale_name:?} has {groups} scales; it needs a divisor of {n} (1 per tensor, {n} per channel)");
        }
        let weight_scale = self.get(&scale_name, DType::F32, &[groups])?.range.clone();
        for &s in cast::<f32>(self.file, &weight_scale) {
            check_scale(&scale_name, s)?;
        }
        // No input scale: the input is quantized per row at run time (1.2), and the bias is f32.
        let scale_name = alloc::format!("{prefix}.input_scale");
        let bias_name = alloc::format!("{prefix}.bias");
        let (input, bias) = if self.index.tensor_index(&scale_name).is_some() {
            let s = self.scale(&scale_name)?;
            (InputQuant::Static(s), self.get(&bias_name, DType::I32, &[n])?.range.clone())
        } else if self.index.tensor_index(&bias_name).is_some_and(|i| self.index.tensors[i].dtype == DType::F32) {
            if self.index.version_minor < 2 {
                bail!(Status::UnsupportedVersion, "{prefix} quantizes its input per row (f32 bias, no input_scale), which needs format version 1.2; the file says {}.{}", self.index.version_major, self.index.version_minor);
            }
            let bias = self.get(&bias_name, DType::F32, &[n])?.range.clone();
            if let Some(b) = cast::<f32>(self.file, &bias).iter().find(|b| !b.is_finite()) {
                bail!(Status::BadScale, "tensor {bias_name:?} holds {b}; an f32 bias must be finite");
            }
            (InputQuant::PerRow, bias)
        } else {
            bail!(Status::MissingTensor, "tensor {scale_name:?} is missing (a linear layer needs it, or an f32 bias for per-row input quantization)");
        };
        let weight_sum = self.get(&alloc::format!("{prefix}.weight_sum"), DType::I32, &[n])?.range.clone();
        Ok(LinearRef { n, k, weight, weight_scale, groups, input, bias, weight_sum, weight_range: WeightRange::Full })
    }

    /// The optional query/key scales of int8 attention: both or neither, and only in a file
    /// of version 1.1 or later (a 1.0 reader would not know what they mean).
    fn attention_scales(&mut self, prefix: &str) -> Result<Option<AttentionScales>> {
        let (q, k) = (alloc::format!("{prefix}.query_scale"), alloc::format!("{prefix}.key_scale"));
        match (self.optional_scale_1_1(&q)?, self.optional_scale_1_1(&k)?) {
            (None, None) => Ok(None),
            (Some(query_scale), Some(key_scale)) => Ok(Some(AttentionScales { query_scale, key_scale })),
            (Some(_), None) => bail!(Status::MissingTensor, "tensor {k:?} is missing (int8 attention needs both {q:?} and it)"),
            (None, Some(_)) => bail!(Status::MissingTensor, "tensor {q:?} is missing (int8 attention needs both it and {k:?})"),
        }
    }

    /// The optional value scale of int8 P·V.
    fn attention_value_scale(&mut self, prefix: &str) -> Result<Option<f32>> {
        self.optional_scale_1_1(&alloc::format!("{prefix}.value_scale"))
    }

    /// An optional f32 [1] scale that only a file of version 1.1 or later may carry.
    fn optional_scale_1_1(&mut self, name: &str) -> Result<Option<f32>> {
        if self.index.tensor_index(name).is_none() {
            return Ok(None);
        }
        if self.index.version_minor < 1 {
            bail!(Status::UnsupportedVersion, "tensor {name:?} (int8 attention) needs format version 1.1; the file says {}.{}", self.index.version_major, self.index.version_minor);
        }
        Ok(Some(self.scale(name)?))
    }

    fn layer_norm(&mut self, prefix: &str, h: usize) -> Result<LayerNormRef> {
        Ok(LayerNormRef {
            gamma: self.get(&alloc::format!("{prefix}.gamma"), DType::F32, &[h])?.range.clone(),
            beta: self.get(&alloc::format!("{prefix}.beta"), DType::F32, &[h])?.range.clone(),
        })
    }

    fn embedding(&mut self, prefix: &str, rows: usize, h: usize) -> Result<EmbeddingRef> {
        let table = self.get(&alloc::format!("{prefix}.weight"), DType::I8, &[rows, h])?.range.clone();
        let name = alloc::format!("{prefix}.scale");
        let Some(si) = self.index.tensor_index(&name) else {
            bail!(Status::MissingTensor, "tensor {name:?} is missing");
        };
        let per_row = rows > 1 && self.index.tensors[si].dims.as_slice() == [rows as u64];
        if !per_row {
            let scale = self.scale(&name)?;
            return Ok(EmbeddingRef { table, rows, scales: EmbeddingScales::PerTable { inv_scale: 1.0 / scale } });
        }
        if self.index.version_minor < 3 {
            bail!(Status::UnsupportedVersion, "{name:?} has a scale per row, which needs format version 1.3; the file says {}.{}", self.index.version_major, self.index.version_minor);
        }
        let scales = self.get(&name, DType::F32, &[rows])?.range.clone();
        for &s in cast::<f32>(self.file, &scales) {
            check_scale(&name, s)?;
        }
        Ok(EmbeddingRef { table, rows, scales: EmbeddingScales::PerRow { scales } })
    }
}

// Written so that NaN fails every test (a NaN scale is rejected), which the simpler form hides.
#[allow(clippy::nonminimal_bool)]
fn check_scale(name: &str, s: f32) -> Result<()> {
    if !(s.is_finite() && s > 0.0) || !(1.0 / s).is_finite() {
        bail!(Status::BadScale, "scale {name:?} is {s}; scales must be finite and positive");
    }
    Ok(())
}

impl ModelLayout {
    /// Checks that the container holds a complete, consistent BERT model. Cost is O(number of
    /// tensors + vocabulary size + number of scales), independent of the weight bytes.
    pub fn resolve(index: &FileIndex, file: &[u8]) -> Result<ModelLayout> {
        let arch = meta_str(index, keys::ARCHITECTURE)?;
        if arch != "bert" {
            bail!(Status::BadConfig, "architecture {arch:?} is not supported (only \"bert\")");
        }
        let act = meta_str(index, keys::HIDDEN_ACT)?;
        let Some(hidden_act) = Activation::from_name(act) else {
            bail!(Status::BadConfig, "hidden_act {act:?} is not supported (supported: {})", Activation::NAMES.join(", "));
        };
        let config = Config {
            vocab_size: dim(index, keys::VOCAB_SIZE, MAX_VOCAB)?,
            hidden_size: dim(index, keys::HIDDEN_SIZE, MAX_DIM)?,
            num_layers: dim(index, keys::NUM_LAYERS, MAX_LAYERS)?,
            num_heads: dim(index, keys::NUM_HEADS, MAX_DIM)?,
            intermediate_size: dim(index, keys::INTERMEDIATE_SIZE, MAX_DIM)?,
            max_position_embeddings: dim(index, keys::MAX_POSITIONS, MAX_DIM)?,
            type_vocab_size: dim(index, keys::TYPE_VOCAB_SIZE, MAX_DIM)?,
            layer_norm_eps: match index.metadata.get(keys::LAYER_NORM_EPS) {
                Some(MetaValue::F32(v)) if v.is_finite() && *v > 0.0 => *v,
                Some(v) => bail!(Status::BadConfig, "layer_norm_eps {v} must be a finite positive f32"),
                None => bail!(Status::MissingMetadata, "required metadata {:?} is missing", keys::LAYER_NORM_EPS),
            },
            hidden_act,
        };
        if !config.hidden_size.is_multiple_of(config.num_heads) {
            bail!(Status::BadConfig, "hidden_size {} is not a multiple of num_heads {}", config.hidden_size, config.num_heads);
        }

        let kind_name = meta_str(index, keys::HEAD_KIND)?;
        let Some(kind) = HeadKind::from_name(kind_name) else {
            bail!(Status::BadConfig, "head kind {kind_name:?} is unknown");
        };
        let labels = match (kind, index.metadata.get(keys::HEAD_LABELS)) {
            (HeadKind::Classification, Some(MetaValue::StrArray(l))) if !l.is_empty() && l.len() <= MAX_LABELS => l.clone(),
            (HeadKind::Classification, _) => bail!(Status::MissingMetadata, "a classification head needs {:?}: 1 to {MAX_LABELS} label names", keys::HEAD_LABELS),
            _ => Vec::new(),
        };
        let pooling = match index.metadata.get(keys::HEAD_POOLING) {
            None => alloc::vec![Pooling::Mean],
            Some(MetaValue::Str(s)) if Pooling::from_name(s).is_some() => alloc::vec![Pooling::from_name(s).unwrap()],
            Some(MetaValue::StrArray(names)) => {
                needs_minor(index, 10, "several pooling modes (head.pooling as a list)")?;
                match parse_names(names, Pooling::from_name) {
                    Some(modes) if !modes.is_empty() && modes.iter().enumerate().all(|(i, m)| !modes[..i].contains(m)) => modes,
                    _ => bail!(Status::BadConfig, "head.pooling must list distinct modes from {POOLING_NAMES}"),
                }
            }
            Some(v) => bail!(Status::BadConfig, "head.pooling {v} must be one of {POOLING_NAMES}, or a list of them"),
        };
        let normalize = match index.metadata.get(keys::HEAD_NORMALIZE) {
            None => false,
            Some(_) => meta_bool(index, keys::HEAD_NORMALIZE)?,
        };
        let dense_activation: Vec<DenseActivation> = match index.metadata.get(keys::HEAD_DENSE_ACTIVATION) {
            None => Vec::new(),
            Some(MetaValue::Str(s)) if DenseActivation::from_name(s).is_some() => alloc::vec![DenseActivation::from_name(s).unwrap()],
            Some(MetaValue::StrArray(names)) => {
                needs_minor(index, 10, "a chain of Dense layers (head.dense.activation as a list)")?;
                match parse_names(names, DenseActivation::from_name) {
                    Some(chain) if !chain.is_empty() && chain.len() <= MAX_DENSE_LAYERS => chain,
                    _ => bail!(Status::BadConfig, "{} must list 1 to {MAX_DENSE_LAYERS} activations, each \"identity\" or \"tanh\"", keys::HEAD_DENSE_ACTIVATION),
                }
            }
            Some(v) => bail!(Status::BadConfig, "{} {v} must be \"identity\" or \"tanh\", or a list of them", keys::HEAD_DENSE_ACTIVATION),
        };
        let has_dense = index.tensor_index("dense.weight").is_some();
        match (kind, has_dense, dense_activation.is_empty()) {
            (HeadKind::Embedding, true, true) => bail!(Status::MissingMetadata, "the embedding head's Dense layer needs {:?}", keys::HEAD_DENSE_ACTIVATION),
            (HeadKind::Embedding, false, false) => bail!(Status::MissingTensor, "{:?} is set but tensor \"dense.weight\" is missing", keys::HEAD_DENSE_ACTIVATION),
            (HeadKind::Embedding, _, _) => {}
            (_, _, false) => bail!(Status::BadConfig, "only an embedding head has a Dense layer ({:?})", keys::HEAD_DENSE_ACTIVATION),
            (_, _, true) => {} // a stray dense.* tensor is refused below as unknown
        }
        let include_prompt = match index.metadata.get(keys::HEAD_INCLUDE_PROMPT) {
            None => true,
            Some(_) => meta_bool(index, keys::HEAD_INCLUDE_PROMPT)?,
        };
        if !include_prompt {
            needs_minor(index, 5, "head.include_prompt = false")?;
        }
        let pooler_activation = match index.metadata.get(keys::HEAD_POOLER_ACTIVATION) {
            None => PoolerActivation::Tanh,
            Some(v) => {
                needs_minor(index, 7, keys::HEAD_POOLER_ACTIVATION)?;
                if !matches!(kind, HeadKind::Classification | HeadKind::Regression) {
                    bail!(Status::BadConfig, "{} is set, but only a classification or regression head has a pooler", keys::HEAD_POOLER_ACTIVATION);
                }
                match v {
                    MetaValue::Str(name) if PoolerActivation::from_name(name).is_some() => PoolerActivation::from_name(name).unwrap(),
                    v => bail!(Status::BadConfig, "{} {v} must be \"tanh\" or \"relu\"", keys::HEAD_POOLER_ACTIVATION),
                }
            }
        };
        let head = HeadConfig { kind, labels, pooling, dense: dense_activation, normalize, pooler_activation, include_prompt };

        let mut r = TensorResolver { index, file, used: alloc::vec![false; index.tensors.len()] };
        let (h, i_size) = (config.hidden_size, config.intermediate_size);
        let word_embeddings = r.embedding("embeddings.word_embeddings", config.vocab_size, h)?;
        let position_embeddings = r.embedding("embeddings.position_embeddings", config.max_position_embeddings, h)?;
        let token_type_embeddings = r.embedding("embeddings.token_type_embeddings", config.type_vocab_size, h)?;
        let embeddings_layer_norm = r.layer_norm("embeddings.layer_norm", h)?;
        let mut layers = Vec::new();
        for l in 0..config.num_layers {
            let p = alloc::format!("encoder.layer.{l}");
            layers.push(LayerRefs {
                qkv: r.linear(&alloc::format!("{p}.attention.qkv"), 3 * h, h)?,
                attention_output: r.linear(&alloc::format!("{p}.attention.output"), h, h)?,
                attention_layer_norm: r.layer_norm(&alloc::format!("{p}.attention_layer_norm"), h)?,
                intermediate: r.linear(&alloc::format!("{p}.intermediate"), i_size, h)?,
                output: r.linear(&alloc::format!("{p}.output"), h, i_size)?,
                output_layer_norm: r.layer_norm(&alloc::format!("{p}.output_layer_norm"), h)?,
                attention_scales: r.attention_scales(&alloc::format!("{p}.attention"))?,
                attention_value_scale: r.attention_value_scale(&alloc::format!("{p}.attention"))?,
            });
        }
        let (pooler, classifier) = match kind {
            HeadKind::Classification | HeadKind::Regression => {
                let outputs = if kind == HeadKind::Regression { 1 } else { head.labels.len() };
                (Some(r.linear("pooler", h, h)?), Some(r.linear("classifier", outputs, h)?))
            }
            _ => (None, None),
        };
        // Dense layers: the first reads the pooled vector (H per pooling mode), each next one
        // the previous one's output.
        let mut dense = Vec::new();
        let mut width = h * head.pooling.len();
        for i in 0..head.dense.len() {
            let name = dense_name(i);
            let weight = alloc::format!("{name}.weight");
            let n = match r.index.tensor(&weight).map(|t| t.dims.clone()).as_deref() {
                Some([n, _]) if *n >= 1 && *n <= MAX_DENSE_OUT as u64 => *n as usize,
                Some(_) => bail!(Status::WrongShape, "tensor {weight:?} must be [out, {width}] with 1 <= out <= {MAX_DENSE_OUT}"),
                None => bail!(Status::MissingTensor, "the head has {} Dense layers but tensor {weight:?} is missing", head.dense.len()),
            };
            dense.push(r.linear(&name, n, width)?);
            width = n;
        }

        // Tokenizer settings, then (feature `text`) its tables.
        let mut tokenizer = TokenizerSettings {
            do_lower_case: meta_bool(index, keys::TOK_LOWER_CASE)?,
            strip_accents: meta_bool(index, keys::TOK_STRIP_ACCENTS)?,
            tokenize_chinese_chars: meta_bool(index, keys::TOK_CHINESE_CHARS)?,
            max_input_chars_per_word: meta_u32(index, keys::TOK_MAX_CHARS_PER_WORD)?,
            unk_id: meta_u32(index, keys::TOK_UNK_ID)?,
            cls_id: meta_u32(index, keys::TOK_CLS_ID)?,
            sep_id: meta_u32(index, keys::TOK_SEP_ID)?,
            pad_id: meta_u32(index, keys::TOK_PAD_ID)?,
            kind: TokenizerKind::WordPiece,
        };
        let mut collapse_spaces = false;
        if let Some(v) = index.metadata.get(keys::TOK_KIND) {
            needs_minor(index, 8, keys::TOK_KIND)?;
            match v {
                MetaValue::Str(v) if v == "wordpiece" => {}
                MetaValue::Str(v) if v == "byte_level_bpe" => {
                    tokenizer.kind = TokenizerKind::ByteLevelBpe { add_prefix_space: meta_bool(index, keys::TOK_ADD_PREFIX_SPACE)? };
                }
                MetaValue::Str(v) if v == "unigram" => {
                    needs_minor(index, 9, "tokenizer.kind unigram")?;
                    tokenizer.kind = TokenizerKind::Unigram;
                    collapse_spaces = meta_bool(index, keys::TOK_COLLAPSE_SPACES)?;
                }
                v => bail!(Status::BadConfig, "{} {v} must be \"wordpiece\", \"byte_level_bpe\" or \"unigram\"", keys::TOK_KIND),
            }
        }
        #[cfg(feature = "text")]
        let tables = TokenizerTables::resolve(&mut r, config.vocab_size, tokenizer.kind, collapse_spaces)?;
        // Without text input nothing reads the tables: they are accepted unread (a firmware's
        // flash holds them or not, as its model file does), and the special ids below are
        // checked against the embedding table instead of the vocabulary.
        #[cfg(not(feature = "text"))]
        let _ = collapse_spaces;
        #[cfg(not(feature = "text"))]
        r.accept_unread("tokenizer.");
        #[cfg(feature = "text")]
        let vocab_len = tables.vocab_len;
        #[cfg(not(feature = "text"))]
        let vocab_len = config.vocab_size;
        let mask_id = meta_u32(index, keys::TOK_MASK_ID)?;
        let text_limit = match index.metadata.get(keys::TOK_MAX_SEQ_LEN) {
            None => None,
            Some(_) => {
                let n = meta_u32(index, keys::TOK_MAX_SEQ_LEN)?;
                if n < 2 || n as usize > config.max_position_embeddings {
                    bail!(Status::BadConfig, "{} = {n} is outside 2..={} (the position table)", keys::TOK_MAX_SEQ_LEN, config.max_position_embeddings);
                }
                Some(n as usize)
            }
        };
        // Prompts are read (and checked) only where text input can use them (feature `text`).
        #[cfg(feature = "text")]
        let (prompts, default_prompt) = read_prompts(index)?;
        #[cfg(not(feature = "text"))]
        let (prompts, default_prompt) = (Vec::new(), None);
        for (name, id) in [
            ("unk", tokenizer.unk_id),
            ("cls", tokenizer.cls_id),
            ("sep", tokenizer.sep_id),
            ("pad", tokenizer.pad_id),
            ("mask", mask_id),
        ] {
            if id as usize >= vocab_len {
                bail!(Status::BadSpecialToken, "{name} token id {id} is outside the {vocab_len}-token vocabulary");
            }
        }

        let per_row_zero_points = match index.metadata.get(keys::QUANT_PER_ROW_ZERO_POINTS) {
            None => false,
            Some(_) => {
                needs_minor(index, 4, keys::QUANT_PER_ROW_ZERO_POINTS)?;
                meta_bool(index, keys::QUANT_PER_ROW_ZERO_POINTS)?
            }
        };

        let dynamic_int8_attention = match index.metadata.get(keys::QUANT_ATTENTION) {
            None => false,
            Some(v) => {
                needs_minor(index, 6, keys::QUANT_ATTENTION)?;
                match v {
                    MetaValue::Str(v) if v == "dynamic_int8" => true,
                    v => bail!(Status::BadConfig, "{} {v} must be \"dynamic_int8\"", keys::QUANT_ATTENTION),
                }
            }
        };
        if dynamic_int8_attention && layers.iter().any(|l| l.attention_scales.is_some() || l.attention_value_scale.is_some()) {
            bail!(Status::BadConfig, "{} = dynamic_int8 and static int8 attention scales in the same file", keys::QUANT_ATTENTION);
        }

        if let Some(i) = r.used.iter().position(|u| !u) {
            bail!(Status::UnknownTensor, "tensor {:?} is not part of a {} model", index.tensors[i].name, kind.name());
        }

        Ok(ModelLayout {
            config,
            head,
            tokenizer,
            mask_id,
            text_limit,
            prompts,
            default_prompt,
            word_embeddings,
            position_embeddings,
            token_type_embeddings,
            embeddings_layer_norm,
            layers,
            pooler,
            classifier,
            dense,
            per_row_zero_points,
            dynamic_int8_attention,
            #[cfg(feature = "text")]
            tokenizer_tables: tables,
        })
    }

    /// Marks the linear layers whose weights all fit 7 bits (`trainer quantize --weight-bits
    /// 7`), if `kernel` runs those faster: a scan of the weights that stops at the first wider
    /// byte. Other kernels skip it, so their open time does not change.
    pub(crate) fn find_narrow_weights(&mut self, file: &[u8], kernel: Kernel) {
        if !kernel.gains_from_narrow_weights() {
            return;
        }
        let layers = self.layers.iter_mut().flat_map(|l| [&mut l.qkv, &mut l.attention_output, &mut l.intermediate, &mut l.output]);
        for lin in layers.chain(self.pooler.iter_mut()).chain(self.classifier.iter_mut()).chain(self.dense.iter_mut()) {
            lin.weight_range = WeightRange::of(&file[lin.weight.clone()]);
        }
    }

    /// Every linear layer, encoder first, then the head's.
    pub fn linears(&self) -> impl Iterator<Item = &LinearRef> {
        self.layers
            .iter()
            .flat_map(|l| [&l.qkv, &l.attention_output, &l.intermediate, &l.output])
            .chain(self.pooler.iter())
            .chain(self.classifier.iter())
            .chain(self.dense.iter())
    }

    /// Width of an embedding head's pooled vector: H per pooling mode.
    pub fn pooled_dim(&self) -> usize {
        self.config.hidden_size * self.head.pooling.len()
    }

    /// How many linear layers quantize their input per row at run time (format 1.2).
    pub fn per_row_linears(&self) -> usize {
        self.linears().filter(|l| l.input.is_per_row()).count()
    }

    /// Whether any layer computes its attention scores or P·V in int8 (format 1.1).
    pub fn int8_attention(&self) -> bool {
        self.int8_scores() || self.int8_values()
    }

    /// Whether any layer computes its attention scores in int8.
    pub fn int8_scores(&self) -> bool {
        self.dynamic_int8_attention || self.layers.iter().any(|l| l.attention_scales.is_some())
    }

    /// Whether any layer computes P·V in int8.
    pub fn int8_values(&self) -> bool {
        self.dynamic_int8_attention || self.layers.iter().any(|l| l.attention_value_scale.is_some())
    }

    /// Whether any layer's QKV projection writes fp32 rows: all but a fully int8 attention
    /// (static scores and P·V) and dynamic int8 attention, whose epilogues write int8.
    pub fn fp32_qkv(&self) -> bool {
        !self.dynamic_int8_attention && self.layers.iter().any(|l| l.attention_scales.is_none() || l.attention_value_scale.is_none())
    }

    /// Whether any layer computes fp32 attention scores (and so needs K^T): all but layers with
    /// static int8 scores, and none under dynamic int8 attention.
    pub fn fp32_scores(&self) -> bool {
        !self.dynamic_int8_attention && self.layers.iter().any(|l| l.attention_scales.is_none())
    }

    /// Floats written per sequence for an input of `seq_len` tokens.
    pub fn output_dim(&self, seq_len: usize) -> usize {
        match self.head.kind {
            HeadKind::Classification => self.head.labels.len(),
            HeadKind::Regression => 1,
            HeadKind::Embedding => self.dense.last().map_or(self.pooled_dim(), |d| d.n),
            HeadKind::TokenStates => seq_len * self.config.hidden_size,
        }
    }
}

/// How to open a model.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Worker threads for one run; 0 = one per available core.
    pub num_threads: usize,
    /// Force a kernel; `None` = the `Q8BERT_KERNEL` environment variable if set, else the best available.
    pub kernel: Option<KernelKind>,
    /// Hash the whole payload at load and compare with the stored checksum (O(file size)).
    pub verify_checksum: bool,
    /// Longest token sequence for text input; 0 = the model's own limit when the file records
    /// one (`tokenizer.max_seq_len`: sentence-transformers' `max_seq_length`, 256 for
    /// all-MiniLM-L6-v2), else its max_position_embeddings.
    pub max_seq_len: usize,
    /// What text input longer than `max_seq_len` does: an error or longest-first truncation.
    /// `None` (default): the model's own behaviour, which is truncation when the file records a
    /// text limit (a sentence-transformers model cuts its input there) and an error otherwise.
    pub truncation: Option<Truncation>,
    /// Copy the model into this process's own memory, advised for transparent huge pages on
    /// Linux, instead of reading the mapped file (or the caller's buffer) in place. Opening then
    /// costs a copy of the whole file and the memory is no longer shared between processes, but
    /// runs read the weights from memory in 2 MiB pages: on a Zen 4, BERT-base 1x32 1.09x, 8x128
    /// 1.02-1.03x, MiniLM 1x32 1.05x, 8x128 1.01x (docs/PERFORMANCE.md, session 25). For servers
    /// that open once and run many calls. `std` only; ignored by `Arena::open` (the copy would
    /// live outside the arena).
    pub huge_pages: bool,
}

pub(crate) fn choose_kernel(requested: Option<KernelKind>) -> Result<Kernel> {
    #[allow(unused_mut)]
    let mut requested = requested;
    #[cfg(feature = "std")]
    if requested.is_none() {
        if let Ok(name) = std::env::var("Q8BERT_KERNEL") {
            if !name.is_empty() && name != "auto" {
                match KernelKind::from_name(&name) {
                    Some(k) => requested = Some(k),
                    None => bail!(Status::KernelUnavailable, "Q8BERT_KERNEL={name:?} is not a kernel name (scalar, portable, avx2, avx-vnni, avx512-vnni, amx, neon, neon-dotprod, neon-i8mm, arm-dsp, arm-helium, auto)"),
                }
            }
        }
    }
    match requested {
        None => Ok(Kernel::best_available()),
        Some(kind) => match Kernel::new(kind) {
            Some(k) => Ok(k),
            None => bail!(Status::KernelUnavailable, "kernel {} is not compiled in or not supported by this CPU", kind.name()),
        },
    }
}

impl From<crate::tokenizer::VocabError> for Error {
    fn from(e: crate::tokenizer::VocabError) -> Self {
        Error::new(Status::BadVocab, e.message().to_string())
    }
}
