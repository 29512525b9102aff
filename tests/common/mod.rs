//! Shared test support: tiny random BERT models made with the builder, and an independent
//! f64 reference of the same quantized arithmetic (dequantized weights, simulated activation
//! quantization) to compare the runtime against.
#![allow(dead_code)]

use q8bert::builder::{self, ActivationQuant, BertConfig, EmbeddingGranularity, Head, ModelBuilder, TokenizerConfig, WeightGranularity};

pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform() * scale).collect()
    }
}

#[derive(Clone)]
pub struct FpLinear {
    pub n: usize,
    pub k: usize,
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub input_max: f32,
}

impl FpLinear {
    fn random(rng: &mut Rng, n: usize, k: usize, input_max: f32) -> Self {
        let s = 1.0 / (k as f32).sqrt();
        FpLinear { n, k, weight: rng.vec(n * k, 2.0 * s), bias: rng.vec(n, 0.2), input_max }
    }
    fn view(&self) -> builder::Linear<'_> {
        builder::Linear { weight: &self.weight, bias: &self.bias, input_max: self.input_max }
    }
}

#[derive(Clone)]
pub struct FpLayerNorm {
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
}

impl FpLayerNorm {
    fn random(rng: &mut Rng, h: usize) -> Self {
        FpLayerNorm { gamma: (0..h).map(|_| 1.0 + 0.2 * rng.uniform()).collect(), beta: rng.vec(h, 0.1) }
    }
    fn view(&self) -> builder::LayerNorm<'_> {
        builder::LayerNorm { gamma: &self.gamma, beta: &self.beta }
    }
}

#[derive(Clone)]
pub struct FpLayer {
    pub q: FpLinear,
    pub k: FpLinear,
    pub v: FpLinear,
    pub ao: FpLinear,
    pub aln: FpLayerNorm,
    pub inter: FpLinear,
    pub out: FpLinear,
    pub oln: FpLayerNorm,
}

/// An fp32 model plus the options it was packed with.
#[derive(Clone)]
pub struct FpModel {
    pub config: BertConfig,
    pub head: Head,
    pub granularity: WeightGranularity,
    /// 8, or 7 (`ModelBuilder::weight_bits`).
    pub weight_bits: u8,
    /// One scale per embedding table, or per row (format 1.3).
    pub embedding_granularity: EmbeddingGranularity,
    /// Static (per-layer) or per-row input scales of the head's linear layers...
    pub activations: ActivationQuant,
    /// ...and of each encoder layer's.
    pub layer_activations: Vec<ActivationQuant>,
    /// Per layer: (max|q|, max|k|) when attention scores are int8 (format 1.1).
    pub int8_attention: Vec<Option<(f32, f32)>>,
    /// Per layer: max|v| when P·V is int8 (format 1.1).
    pub int8_values: Vec<Option<f32>>,
    /// QKᵀ and P·V in int8 with run-time scales (format 1.6).
    pub dynamic_attention: bool,
    /// ReLU after the pooler instead of tanh (DistilBERT's pre-classifier, format 1.7).
    pub pooler_relu: bool,
    pub vocab: Vec<String>,
    pub word: Vec<f32>,
    pub pos: Vec<f32>,
    pub typ: Vec<f32>,
    pub eln: FpLayerNorm,
    pub layers: Vec<FpLayer>,
    pub pooler: FpLinear,
    pub classifier: FpLinear,
    /// Embedding head: Dense layers after the pooling (sentence-transformers' Dense modules).
    pub dense: Vec<(FpLinear, builder::DenseActivation)>,
    /// Embedding head: several pooling modes concatenated (format 1.10); empty = the head's one.
    pub pooling_modes: Vec<builder::Pooling>,
    /// Per-row inputs also get a zero point (format 1.4).
    pub per_row_zero_points: bool,
    /// Byte-level BPE merges (`merges.txt` order): the vocabulary is then a BPE one.
    pub bpe_merges: Option<Vec<(String, String)>>,
    /// SentencePiece Unigram (XLM-R): the vocabulary holds its pieces.
    pub unigram: Option<builder::UnigramConfig>,
}

pub fn tiny_config() -> BertConfig {
    BertConfig {
        vocab_size: 40,
        hidden_size: 32,
        num_layers: 2,
        num_heads: 4,
        intermediate_size: 50, // not a multiple of 4 or 16: exercises padding in the packed layout
        max_position_embeddings: 24,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
    }
}

pub fn tiny_vocab(n: usize) -> Vec<String> {
    let mut v: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"].iter().map(|s| s.to_string()).collect();
    let mut i = 0;
    while v.len() < n {
        v.push(if i % 3 == 2 { format!("##w{i}") } else { format!("w{i}") });
        i += 1;
    }
    v
}

impl FpModel {
    pub fn random(config: BertConfig, head: Head, seed: u64) -> FpModel {
        let mut rng = Rng::new(seed);
        let h = config.hidden_size as usize;
        let i = config.intermediate_size as usize;
        let layers = (0..config.num_layers)
            .map(|_| FpLayer {
                q: FpLinear::random(&mut rng, h, h, 4.0),
                k: FpLinear::random(&mut rng, h, h, 4.0),
                v: FpLinear::random(&mut rng, h, h, 4.0),
                ao: FpLinear::random(&mut rng, h, h, 1.5),
                aln: FpLayerNorm::random(&mut rng, h),
                inter: FpLinear::random(&mut rng, i, h, 4.0),
                out: FpLinear::random(&mut rng, h, i, 2.0),
                oln: FpLayerNorm::random(&mut rng, h),
            })
            .collect();
        let n_out = match &head {
            Head::Classification { labels } => labels.len(),
            _ => 1,
        };
        FpModel {
            word: rng.vec(config.vocab_size as usize * h, 1.0),
            pos: rng.vec(config.max_position_embeddings as usize * h, 0.5),
            typ: rng.vec(config.type_vocab_size as usize * h, 0.5),
            eln: FpLayerNorm::random(&mut rng, h),
            layers,
            pooler: FpLinear::random(&mut rng, h, h, 4.0),
            classifier: FpLinear::random(&mut rng, n_out, h, 1.0),
            dense: Vec::new(),
            pooling_modes: Vec::new(),
            per_row_zero_points: false,
            config,
            head,
            granularity: WeightGranularity::PerTensor,
            weight_bits: 8,
            embedding_granularity: EmbeddingGranularity::PerTable,
            activations: ActivationQuant::Static,
            layer_activations: vec![ActivationQuant::Static; config.num_layers as usize],
            int8_attention: vec![None; config.num_layers as usize],
            int8_values: vec![None; config.num_layers as usize],
            dynamic_attention: false,
            pooler_relu: false,
            vocab: tiny_vocab(config.vocab_size as usize),
            bpe_merges: None,
            unigram: None,
        }
    }

    /// A small random model over the real BERT-uncased vocabulary (tests/data/vocab.txt), for
    /// text input.
    pub fn with_real_vocab(head: Head, seed: u64) -> FpModel {
        let vocab: Vec<String> = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/vocab.txt"))
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        let mut config = tiny_config();
        config.vocab_size = vocab.len() as u32;
        config.max_position_embeddings = 64;
        let mut m = FpModel::random(config, head, seed);
        m.vocab = vocab;
        m
    }

    /// A small random RoBERTa-style model (one token type) over the byte-level BPE of
    /// tests/data/bpe/tokenizer.json, for text input.
    pub fn with_bpe_vocab(head: Head, seed: u64) -> FpModel {
        FpModel::with_bpe_tokenizer_json(&std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/bpe/tokenizer.json")).unwrap(), head, seed)
    }

    /// As [`FpModel::with_bpe_vocab`], from a tokenizer.json's text.
    pub fn with_bpe_tokenizer_json(text: &str, head: Head, seed: u64) -> FpModel {
        let json: serde_json::Value = serde_json::from_str(text).unwrap();
        let map = json["model"]["vocab"].as_object().unwrap();
        let mut vocab = vec![String::new(); map.len()];
        for (t, id) in map {
            vocab[id.as_u64().unwrap() as usize] = t.clone();
        }
        let merges = json["model"]["merges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m[0].as_str().unwrap().to_string(), m[1].as_str().unwrap().to_string()))
            .collect();
        let mut config = tiny_config();
        config.vocab_size = vocab.len() as u32;
        config.max_position_embeddings = 64;
        config.type_vocab_size = 1;
        let mut m = FpModel::random(config, head, seed);
        m.vocab = vocab;
        m.bpe_merges = Some(merges);
        m
    }

    /// A RoBERTa-style model (one token type, 64 positions) over an XLM-R style Unigram
    /// tokenizer.json's pieces, scores and charsmap.
    pub fn with_unigram_tokenizer_json(text: &str, head: Head, seed: u64) -> FpModel {
        use base64::Engine;
        let json: serde_json::Value = serde_json::from_str(text).unwrap();
        let pieces = json["model"]["vocab"].as_array().unwrap();
        let vocab: Vec<String> = pieces.iter().map(|p| p[0].as_str().unwrap().to_string()).collect();
        let scores = pieces.iter().map(|p| p[1].as_f64().unwrap()).collect();
        let b64 = json["normalizer"]["normalizers"][0]["precompiled_charsmap"].as_str().unwrap();
        let charsmap = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
        let mut config = tiny_config();
        config.vocab_size = vocab.len() as u32;
        config.max_position_embeddings = 64;
        config.type_vocab_size = 1;
        let mut m = FpModel::random(config, head, seed);
        m.vocab = vocab;
        m.unigram = Some(builder::UnigramConfig { scores, charsmap: Some(charsmap), collapse_spaces: true });
        m
    }

    /// The same model with int8 attention scores in every layer, Q and K ranges given.
    pub fn with_int8_attention(mut self, query_max: f32, key_max: f32) -> FpModel {
        self.int8_attention = vec![Some((query_max, key_max)); self.layers.len()];
        self
    }

    /// The same model with per-channel weights and per-row input scales (format 1.2).
    pub fn with_per_row_inputs(mut self) -> FpModel {
        self.granularity = WeightGranularity::PerChannel;
        self.activations = ActivationQuant::PerRow;
        self.layer_activations.iter_mut().for_each(|a| *a = ActivationQuant::PerRow);
        self
    }

    /// The same model with a scale per embedding row (format 1.3), as `trainer quantize` writes.
    pub fn with_per_row_embeddings(mut self) -> FpModel {
        self.embedding_granularity = EmbeddingGranularity::PerRow;
        self
    }

    /// The same model with int8 QKᵀ and P·V whose scales are taken at run time (format 1.6).
    pub fn with_dynamic_attention(mut self) -> FpModel {
        self.dynamic_attention = true;
        self
    }

    /// The same model with per-row inputs quantized with a zero point too (format 1.4); only
    /// meaningful with per-row inputs.
    pub fn with_per_row_zero_points(mut self) -> FpModel {
        self.per_row_zero_points = true;
        self
    }

    /// Adds a random Dense layer (pooled width or the previous layer's -> `out`) after the
    /// embedding head's pooling.
    pub fn with_dense(mut self, out: usize, activation: builder::DenseActivation, seed: u64) -> FpModel {
        let k = match self.dense.last() {
            Some((d, _)) => d.n,
            None => self.config.hidden_size as usize * self.pooling_modes.len().max(1),
        };
        self.dense.push((FpLinear::random(&mut Rng::new(seed), out, k, 1.5), activation));
        self
    }

    /// Pools with several modes, concatenated in this order (call before `with_dense`).
    pub fn with_pooling_modes(mut self, modes: &[builder::Pooling]) -> FpModel {
        assert!(self.dense.is_empty(), "pooling modes set the first Dense layer's width");
        self.pooling_modes = modes.to_vec();
        self
    }

    /// The same model with int8 P·V in every layer, V range given.
    pub fn with_int8_values(mut self, value_max: f32) -> FpModel {
        self.int8_values = vec![Some(value_max); self.layers.len()];
        self
    }

    pub fn builder(&self) -> ModelBuilder {
        let mut tokenizer = TokenizerConfig::bert_uncased(self.vocab.clone());
        if let Some(merges) = &self.bpe_merges {
            let (unk, cls, sep, pad, mask) = ("<unk>", "<s>", "</s>", "<pad>", "<mask>");
            (tokenizer.unk_token, tokenizer.cls_token, tokenizer.sep_token, tokenizer.pad_token, tokenizer.mask_token) = (unk.into(), cls.into(), sep.into(), pad.into(), mask.into());
            (tokenizer.do_lower_case, tokenizer.strip_accents, tokenizer.tokenize_chinese_chars) = (false, false, false);
            tokenizer.bpe = Some(builder::BpeConfig { merges: merges.clone(), add_prefix_space: false });
        }
        if let Some(u) = &self.unigram {
            let (unk, cls, sep, pad, mask) = ("<unk>", "<s>", "</s>", "<pad>", "<mask>");
            (tokenizer.unk_token, tokenizer.cls_token, tokenizer.sep_token, tokenizer.pad_token, tokenizer.mask_token) = (unk.into(), cls.into(), sep.into(), pad.into(), mask.into());
            (tokenizer.do_lower_case, tokenizer.strip_accents, tokenizer.tokenize_chinese_chars) = (false, false, false);
            tokenizer.unigram = Some(u.clone());
        }
        let mut b = ModelBuilder::new(self.config, self.head.clone(), tokenizer);
        b.weight_granularity(self.granularity);
        b.weight_bits(self.weight_bits).unwrap();
        b.embedding_granularity(self.embedding_granularity);
        b.embeddings(builder::Embeddings { word: &self.word, position: &self.pos, token_type: &self.typ, layer_norm: self.eln.view() })
            .unwrap();
        for (idx, l) in self.layers.iter().enumerate() {
            b.activation_quant(self.layer_activations[idx]);
            b.layer(
                idx,
                builder::Layer {
                    query: l.q.view(),
                    key: l.k.view(),
                    value: l.v.view(),
                    attention_output: l.ao.view(),
                    attention_layer_norm: l.aln.view(),
                    intermediate: l.inter.view(),
                    output: l.out.view(),
                    output_layer_norm: l.oln.view(),
                },
            )
            .unwrap();
        }
        for (idx, r) in self.int8_attention.iter().enumerate() {
            if let Some((q_max, k_max)) = *r {
                b.int8_attention(idx, q_max, k_max).unwrap();
            }
        }
        for (idx, r) in self.int8_values.iter().enumerate() {
            if let Some(v_max) = *r {
                b.int8_attention_values(idx, v_max).unwrap();
            }
        }
        b.activation_quant(self.activations);
        if matches!(self.head, Head::Classification { .. } | Head::Regression) {
            b.pooler(self.pooler.view()).unwrap();
            b.classifier(self.classifier.view()).unwrap();
        }
        if !self.pooling_modes.is_empty() {
            b.pooling_modes(&self.pooling_modes).unwrap();
        }
        for (d, activation) in &self.dense {
            b.dense(d.view(), d.n, *activation).unwrap();
        }
        b.per_row_zero_points(self.per_row_zero_points);
        b.dynamic_int8_attention(self.dynamic_attention);
        if self.pooler_relu {
            b.pooler_activation(q8bert::model::PoolerActivation::Relu);
        }
        b
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.builder().to_bytes().unwrap()
    }
}

/// Heap buffer aligned to 8 bytes (the runtime needs 4), for `Model::from_bytes`.
pub struct Aligned {
    buf: Vec<u64>,
    len: usize,
}

impl Aligned {
    pub fn new(bytes: &[u8]) -> Self {
        let mut buf = vec![0u64; bytes.len().div_ceil(8)];
        let dst: &mut [u8] = bytemuck::cast_slice_mut(&mut buf);
        dst[..bytes.len()].copy_from_slice(bytes);
        Aligned { buf, len: bytes.len() }
    }
    pub fn bytes(&self) -> &[u8] {
        let b: &[u8] = bytemuck::cast_slice(&self.buf);
        &b[..self.len]
    }
}

// ---------- f64 reference of the quantized arithmetic ----------

fn scale_of(v: &[f32]) -> f64 {
    let m = v.iter().fold(0.0f32, |m, &x| m.max(x.abs()));
    if m > 0.0 {
        127.0 / m as f64
    } else {
        1.0
    }
}

std::thread_local! {
    /// The model being referenced quantizes per-row inputs with zero points (set by `forward_f64`).
    static ZERO_POINTS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn fake_quant(x: f64, s: f64) -> f64 {
    (x * s).clamp(-127.0, 127.0).round_ties_even() / s
}

fn erf(x: f64) -> f64 {
    let ax = x.abs();
    let r = if ax < 3.0 {
        let (mut term, mut s, mut n) = (ax, ax, 0.0f64);
        loop {
            n += 1.0;
            term *= -ax * ax / n;
            let add = term / (2.0 * n + 1.0);
            s += add;
            if add.abs() < 1e-17 {
                break;
            }
        }
        s * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        let mut f = 0.0;
        for k in (1..60).rev() {
            f = (k as f64 / 2.0) / (ax + f);
        }
        1.0 - (-ax * ax).exp() / std::f64::consts::PI.sqrt() / (ax + f)
    };
    r.copysign(x)
}

/// Reference linear: fake-quantized input and weights, bias rounded at S_w*S_x; with
/// `shared_input_max` None, each input row quantized with its own scale 127 / max|row| and the
/// bias exact.
fn ref_linear(l: &FpLinear, x: &[f64], g: WeightGranularity, shared_input_max: Option<f32>) -> Vec<f64> {
    let rows = x.len() / l.k;
    let (xq, sx): (Vec<f64>, Option<f64>) = match shared_input_max {
        Some(m) => {
            let sx = (127.0f32 / m) as f64;
            (x.iter().map(|&v| fake_quant(v, sx)).collect(), Some(sx))
        }
        None if ZERO_POINTS.with(|z| z.get()) => (
            // The runtime's asymmetric rows: [min, max] (0 included) onto -127..=127, scale and
            // zero point computed in f32 as it does.
            x.chunks_exact(l.k)
                .flat_map(|row| {
                    let (lo, hi) = row.iter().fold((0.0f64, 0.0f64), |(lo, hi), &v| (lo.min(v), hi.max(v)));
                    let (lo, hi) = (lo as f32, hi as f32);
                    let s = 254.0f32 / (hi - lo);
                    let s = if hi - lo > 0.0 && s.is_finite() { s } else { 1.0 };
                    let zero = (-127.0 - (lo * s).max(-254.0).round_ties_even()).clamp(-127.0, 127.0) as f64;
                    let s = s as f64;
                    row.iter().map(move |&v| ((v * s + zero).clamp(-127.0, 127.0).round_ties_even() - zero) / s)
                })
                .collect(),
            None,
        ),
        None => (
            x.chunks_exact(l.k)
                .flat_map(|row| {
                    let m = row.iter().fold(0.0f64, |m, v| m.max(v.abs())) as f32;
                    let s = if m > 0.0 { (127.0f32 / m) as f64 } else { 1.0 };
                    row.iter().map(move |&v| fake_quant(v, s))
                })
                .collect(),
            None,
        ),
    };
    let tensor_scale = scale_of(&l.weight);
    let mut out = vec![0.0; rows * l.n];
    for j in 0..l.n {
        let wrow = &l.weight[j * l.k..(j + 1) * l.k];
        let sw = match g {
            WeightGranularity::PerTensor => tensor_scale,
            WeightGranularity::PerChannel => scale_of(wrow),
        };
        let sw32 = sw as f32 as f64;
        let bq = match sx {
            Some(sx) => (l.bias[j] as f64 * sw32 * sx).round_ties_even() / (sw32 * sx),
            None => l.bias[j] as f64,
        };
        for r in 0..rows {
            let mut acc = 0.0;
            for kk in 0..l.k {
                acc += xq[r * l.k + kk] * fake_quant(wrow[kk] as f64, sw32);
            }
            out[r * l.n + j] = acc + bq;
        }
    }
    out
}

/// [`ref_linear`], or the plain fp32 linear without `quantize`.
fn ref_linear_q(quantize: bool, l: &FpLinear, x: &[f64], g: WeightGranularity, shared_input_max: Option<f32>) -> Vec<f64> {
    if quantize {
        return ref_linear(l, x, g, shared_input_max);
    }
    let rows = x.len() / l.k;
    let mut out = vec![0.0; rows * l.n];
    for j in 0..l.n {
        for r in 0..rows {
            let acc: f64 = (0..l.k).map(|kk| x[r * l.k + kk] * l.weight[j * l.k + kk] as f64).sum();
            out[r * l.n + j] = acc + l.bias[j] as f64;
        }
    }
    out
}

fn ref_layer_norm(x: &mut [f64], ln: &FpLayerNorm, eps: f64) {
    let h = ln.gamma.len();
    for row in x.chunks_exact_mut(h) {
        let mean = row.iter().sum::<f64>() / h as f64;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / h as f64;
        for (i, v) in row.iter_mut().enumerate() {
            *v = (*v - mean) / (var + eps).sqrt() * ln.gamma[i] as f64 + ln.beta[i] as f64;
        }
    }
}

/// Reference output for ONE sequence of unpadded token ids.
pub fn reference_forward(m: &FpModel, ids: &[i32], types: &[i32]) -> Vec<f64> {
    forward_f64(m, ids, types, true)
}

/// The fp32 model's output (no quantization at all), in f64.
#[allow(dead_code)]
pub fn float_forward(m: &FpModel, ids: &[i32], types: &[i32]) -> Vec<f64> {
    forward_f64(m, ids, types, false)
}

fn forward_f64(m: &FpModel, ids: &[i32], types: &[i32], quantize: bool) -> Vec<f64> {
    ZERO_POINTS.with(|z| z.set(m.per_row_zero_points));
    let fq = |x: f64, s: f64| if quantize { fake_quant(x, s) } else { x };
    let c = &m.config;
    let h = c.hidden_size as usize;
    let t = ids.len();
    let eps = c.layer_norm_eps as f64;
    // The scale of row r of a table: the table's, or (format 1.3) the row's own.
    let row_scale = |table: &[f32], r: usize| match m.embedding_granularity {
        EmbeddingGranularity::PerRow if table.len() > h => scale_of(&table[r * h..(r + 1) * h]),
        _ => scale_of(table),
    };
    let mut x = vec![0.0f64; t * h];
    for i in 0..t {
        let (sw, sp, st) = (row_scale(&m.word, ids[i] as usize), row_scale(&m.pos, i), row_scale(&m.typ, types[i] as usize));
        for d in 0..h {
            let w = fq(m.word[ids[i] as usize * h + d] as f64, sw);
            let p = fq(m.pos[i * h + d] as f64, sp);
            let y = fq(m.typ[types[i] as usize * h + d] as f64, st);
            x[i * h + d] = w + y + p;
        }
    }
    ref_layer_norm(&mut x, &m.eln, eps);
    let heads = c.num_heads as usize;
    let dh = h / heads;
    let g = m.granularity;
    let head_per_row = m.activations == ActivationQuant::PerRow;
    for (((l, int8_attention), int8_values), layer_activations) in m.layers.iter().zip(&m.int8_attention).zip(&m.int8_values).zip(&m.layer_activations) {
        let range = |max: f32| (*layer_activations == ActivationQuant::Static).then_some(max);
        let qkv_max = l.q.input_max.max(l.k.input_max).max(l.v.input_max);
        let mut q = ref_linear_q(quantize, &l.q, &x, g, range(qkv_max));
        let mut k = ref_linear_q(quantize, &l.k, &x, g, range(qkv_max));
        if let Some((q_max, k_max)) = *int8_attention {
            let (sq, sk) = ((127.0f32 / q_max) as f64, (127.0f32 / k_max) as f64);
            q.iter_mut().for_each(|v| *v = fq(*v, sq));
            k.iter_mut().for_each(|v| *v = fq(*v, sk));
        }
        let mut v = ref_linear_q(quantize, &l.v, &x, g, range(qkv_max));
        if let Some(v_max) = *int8_values {
            let sv = (127.0f32 / v_max) as f64;
            v.iter_mut().for_each(|x| *x = fq(*x, sv));
        }
        // Dynamic int8 attention: every row of Q, K and V in every head its own scale; the
        // 1/S_v of each value row goes into the probabilities, which are then quantized with
        // their row's largest at 255 (`v_scale` keeps each value row's S_v for that).
        let mut v_scale = vec![1.0f64; t * heads];
        if m.dynamic_attention && quantize {
            let max_of = |x: &[f64], r: usize, hd: usize| (0..dh).map(|d| x[r * h + hd * dh + d].abs()).fold(0.0f64, f64::max);
            let scale = |max: f64| if max > 0.0 { (127.0f32 / max as f32) as f64 } else { 1.0 };
            for hd in 0..heads {
                for i in 0..t {
                    let (sq, sk, sv) = (scale(max_of(&q, i, hd)), scale(max_of(&k, i, hd)), scale(max_of(&v, i, hd)));
                    v_scale[i * heads + hd] = sv;
                    for d in 0..dh {
                        let at = i * h + hd * dh + d;
                        (q[at], k[at], v[at]) = (fq(q[at], sq), fq(k[at], sk), fq(v[at], sv));
                    }
                }
            }
        }
        let int8_values = if m.dynamic_attention { &Some(0.0) } else { int8_values };
        let mut ctx = vec![0.0; t * h];
        for hd in 0..heads {
            for i in 0..t {
                let mut s: Vec<f64> = (0..t)
                    .map(|j| (0..dh).map(|d| q[i * h + hd * dh + d] * k[j * h + hd * dh + d]).sum::<f64>() / (dh as f64).sqrt())
                    .collect();
                let mx = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = s.iter_mut().map(|v| {
                    *v = (*v - mx).exp();
                    *v
                }).sum();
                // Probabilities as u8 at scale 255, or (dynamic) p_j / S_v[j] with the row's
                // largest at 255, times S_v[j] v_j.
                let dynamic = m.dynamic_attention && quantize;
                let pv: Vec<f64> = (0..t).map(|j| s[j] / sum / if dynamic { v_scale[j * heads + hd] } else { 1.0 }).collect();
                let p_scale = if dynamic { 255.0 / pv.iter().cloned().fold(0.0, f64::max) } else { 255.0 };
                for j in 0..t {
                    let mut p = pv[j];
                    if int8_values.is_some() && quantize {
                        p = (p * p_scale).round_ties_even() / p_scale;
                    }
                    if dynamic {
                        p *= v_scale[j * heads + hd];
                    }
                    for d in 0..dh {
                        ctx[i * h + hd * dh + d] += p * v[j * h + hd * dh + d];
                    }
                }
            }
        }
        let mut a = ref_linear_q(quantize, &l.ao, &ctx, g, range(l.ao.input_max));
        for (o, r) in a.iter_mut().zip(&x) {
            *o += r;
        }
        ref_layer_norm(&mut a, &l.aln, eps);
        let mut inter = ref_linear_q(quantize, &l.inter, &a, g, range(l.inter.input_max));
        for v in inter.iter_mut() {
            *v = 0.5 * *v * (1.0 + erf(*v / std::f64::consts::SQRT_2));
        }
        let mut o = ref_linear_q(quantize, &l.out, &inter, g, range(l.out.input_max));
        for (o, r) in o.iter_mut().zip(&a) {
            *o += r;
        }
        ref_layer_norm(&mut o, &l.oln, eps);
        x = o;
    }
    let range = |max: f32| (!head_per_row).then_some(max);
    match &m.head {
        Head::Classification { .. } | Head::Regression => {
            let act = |v: &f64| if m.pooler_relu { v.max(0.0) } else { v.tanh() };
            let pooled: Vec<f64> = ref_linear_q(quantize, &m.pooler, &x[..h], g, range(m.pooler.input_max)).iter().map(act).collect();
            ref_linear_q(quantize, &m.classifier, &pooled, g, range(m.classifier.input_max))
        }
        Head::Embedding { pooling, normalize } => {
            let modes = if m.pooling_modes.is_empty() { vec![*pooling] } else { m.pooling_modes.clone() };
            let mut out: Vec<f64> = Vec::new();
            for mode in modes {
                out.extend(match mode {
                    builder::Pooling::Cls => x[..h].to_vec(),
                    builder::Pooling::LastToken => x[(t - 1) * h..t * h].to_vec(),
                    builder::Pooling::Mean => (0..h).map(|d| (0..t).map(|i| x[i * h + d]).sum::<f64>() / t as f64).collect(),
                    builder::Pooling::MeanSqrtLen => (0..h).map(|d| (0..t).map(|i| x[i * h + d]).sum::<f64>() / (t as f64).sqrt()).collect(),
                    builder::Pooling::Max => (0..h).map(|d| (0..t).map(|i| x[i * h + d]).fold(f64::NEG_INFINITY, f64::max)).collect::<Vec<f64>>(),
                    builder::Pooling::WeightedMean => {
                        let total = (t * (t + 1) / 2) as f64;
                        (0..h).map(|d| (0..t).map(|i| (i + 1) as f64 * x[i * h + d]).sum::<f64>() / total).collect()
                    }
                });
            }
            for (d, activation) in &m.dense {
                out = ref_linear_q(quantize, d, &out, g, range(d.input_max));
                if *activation == builder::DenseActivation::Tanh {
                    out.iter_mut().for_each(|v| *v = v.tanh());
                }
            }
            if *normalize {
                let n = out.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
                out.iter_mut().for_each(|v| *v /= n);
            }
            out
        }
        Head::TokenStates => x,
    }
}
