//! Packing a trained model into `.q8b` with the runtime's own writer (`q8bert::builder`), then
//! re-opening it with the runtime's loader and checking its predictions against the trainer's
//! fake-quantized ones. Compiled only with the `runtime` feature (the q8bert crate dependency).

use crate::data::{Task, TextTokenizer};
use crate::eval::Dataset;
use anyhow::Result;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// Provenance stored in the file's metadata.
#[derive(Clone, Debug, Default)]
pub struct TrainMeta {
    pub entries: Vec<(String, MetaEntry)>,
    /// The model's own token limit for text input (sentence-transformers' `max_seq_length`),
    /// written as `tokenizer.max_seq_len`: the runtime's default text limit.
    pub text_limit: Option<u32>,
    /// sentence-transformers' named prompts (name, text) and its default prompt's name
    /// (`config_sentence_transformers.json`).
    pub prompts: Vec<(String, String)>,
    pub default_prompt: Option<String>,
    /// The Pooling module's `include_prompt: false`: pooling leaves the prompt's tokens out.
    pub exclude_prompt: bool,
    /// int8 QKᵀ and P·V with run-time scales (`quant.attention = dynamic_int8`).
    pub dynamic_int8_attention: bool,
}

#[derive(Clone, Debug)]
pub enum MetaEntry {
    Str(String),
    F32(f32),
    U32(u32),
    U64(u64),
    Bool(bool),
}

#[cfg(not(feature = "runtime"))]
pub fn export_classifier(
    _model: &crate::bert::Bert,
    _tok: &TextTokenizer,
    _task: Task,
    path: &Path,
    _scheme: crate::quant::Scheme,
    _meta: &TrainMeta,
    _check: Option<(&Dataset, u32)>,
) -> Result<BTreeMap<String, Value>> {
    anyhow::bail!("cannot write {}: trainer was built without the `runtime` feature (q8bert crate)", path.display())
}

#[cfg(not(feature = "runtime"))]
pub fn export_embedding(
    _model: &crate::bert::Bert,
    _tok: &TextTokenizer,
    path: &Path,
    _pooling: crate::fidelity::Poolings,
    _normalize: bool,
    _scheme: crate::quant::Scheme,
    _meta: &TrainMeta,
) -> Result<()> {
    anyhow::bail!("cannot write {}: trainer was built without the `runtime` feature (q8bert crate)", path.display())
}

#[cfg(feature = "runtime")]
pub use with_runtime::{eval_packed, export_classifier, export_embedding, inspect, run_texts};

#[cfg(not(feature = "runtime"))]
pub fn run_texts(path: &Path, _rows: &[crate::data::Example], _max_len: usize, _batch_size: usize, _threads: usize) -> Result<(crate::fidelity::Output, Vec<Vec<f32>>)> {
    anyhow::bail!("cannot run {}: trainer was built without the `runtime` feature", path.display())
}

/// What `trainer eval` measured: the task's GLUE metrics on the packed model run by the runtime,
/// and the raw outputs (one row per example, in file order).
#[derive(Clone, Debug)]
pub struct PackedEval {
    pub metrics: BTreeMap<String, f64>,
    pub outputs: Vec<Vec<f32>>,
    pub runtime_s: f64,
    pub max_seq_len: usize,
}

impl PackedEval {
    /// HF `run_glue.py` style result object: `eval_*` metrics, samples, runtime, throughput.
    pub fn to_json(&self) -> Value {
        let mut m = serde_json::Map::new();
        for (k, v) in &self.metrics {
            m.insert(format!("eval_{k}"), serde_json::json!(v));
        }
        let n = self.outputs.len();
        m.insert("eval_samples".into(), serde_json::json!(n));
        m.insert("eval_runtime".into(), serde_json::json!(self.runtime_s));
        m.insert("eval_samples_per_second".into(), serde_json::json!(n as f64 / self.runtime_s.max(1e-9)));
        m.insert("eval_max_seq_len".into(), serde_json::json!(self.max_seq_len));
        Value::Object(m)
    }
}

#[cfg(not(feature = "runtime"))]
pub fn eval_packed(path: &Path, _task: Task, _data: &[crate::data::Example], _max_seq_len: Option<usize>, _batch_size: usize, _threads: usize) -> Result<PackedEval> {
    anyhow::bail!("cannot evaluate {}: trainer was built without the `runtime` feature", path.display())
}

#[cfg(not(feature = "runtime"))]
pub fn inspect(path: &Path) -> Result<String> {
    anyhow::bail!("cannot read {}: trainer was built without the `runtime` feature", path.display())
}

#[cfg(feature = "runtime")]
mod with_runtime {
    use super::*;
    use crate::bert::{Bert, LayerNorm as TLayerNorm, Linear as TLinear};
    use crate::quant::Scheme;
    use anyhow::{anyhow, bail, Context};
    use candle_core::Var;
    use q8bert::builder as qb;
    use serde_json::json;

    fn vec_of(v: &Var) -> Result<Vec<f32>> {
        Ok(v.as_tensor().flatten_all()?.to_vec1::<f32>()?)
    }

    /// Owned copies of one linear's tensors, for the builder's borrowed views.
    struct OwnedLinear {
        w: Vec<f32>,
        b: Vec<f32>,
        input_max: f32,
    }
    impl OwnedLinear {
        /// `input_max` is needed for a static input; a per-row input (`scheme`) does without.
        fn new(l: &TLinear, input_max: Option<f32>, scheme: Scheme, what: &str) -> Result<Self> {
            let input_max = if scheme.per_row_inputs { input_max.or(Some(1.0)) } else { input_max };
            let input_max = input_max.with_context(|| format!("no input range for {what}: train with QAT or calibrate first"))?;
            Ok(OwnedLinear { w: vec_of(&l.weight)?, b: vec_of(&l.bias)?, input_max })
        }
        fn view(&self) -> qb::Linear<'_> {
            qb::Linear { weight: &self.w, bias: &self.b, input_max: self.input_max }
        }
    }
    struct OwnedLn {
        g: Vec<f32>,
        b: Vec<f32>,
    }
    impl OwnedLn {
        fn new(l: &TLayerNorm) -> Result<Self> {
            Ok(OwnedLn { g: vec_of(&l.gamma)?, b: vec_of(&l.beta)? })
        }
        fn view(&self) -> qb::LayerNorm<'_> {
            qb::LayerNorm { gamma: &self.g, beta: &self.b }
        }
    }

    fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
        anyhow!("q8bert: {e}")
    }

    fn builder(model: &Bert, tok: &TextTokenizer, head: qb::Head, scheme: Scheme, meta: &TrainMeta) -> Result<qb::ModelBuilder> {
        let c = &model.cfg;
        let cfg = qb::BertConfig {
            vocab_size: c.vocab_size as u32,
            hidden_size: c.hidden_size as u32,
            num_layers: c.num_hidden_layers as u32,
            num_heads: c.num_attention_heads as u32,
            intermediate_size: c.intermediate_size as u32,
            max_position_embeddings: c.max_position_embeddings as u32,
            type_vocab_size: c.type_vocab_size as u32,
            layer_norm_eps: c.layer_norm_eps as f32,
        };
        let s = tok.settings();
        let tc = &tok.config;
        let tcfg = qb::TokenizerConfig {
            vocab: tok.vocab.clone(),
            do_lower_case: s.do_lower_case,
            strip_accents: s.strip_accents,
            tokenize_chinese_chars: s.tokenize_chinese_chars,
            unk_token: tc.unk_token.clone(),
            cls_token: tc.cls_token.clone(),
            sep_token: tc.sep_token.clone(),
            pad_token: tc.pad_token.clone(),
            mask_token: tc.mask_token.clone(),
            max_input_chars_per_word: s.max_input_chars_per_word,
            bpe: tok.bpe.as_ref().map(|b| qb::BpeConfig { merges: b.merges.clone(), add_prefix_space: b.add_prefix_space }),
            unigram: tok.unigram.as_ref().map(|u| qb::UnigramConfig { scores: u.scores.clone(), charsmap: u.charsmap.clone(), collapse_spaces: u.collapse_spaces }),
        };
        let mut b = qb::ModelBuilder::new(cfg, head, tcfg);
        b.hidden_act(&c.hidden_act).map_err(err)?;
        if let Some(n) = meta.text_limit {
            b.text_limit(n).map_err(err)?;
        }
        if !meta.prompts.is_empty() {
            b.prompts(meta.prompts.clone(), meta.default_prompt.as_deref()).map_err(err)?;
        }
        b.include_prompt(!meta.exclude_prompt);
        b.dynamic_int8_attention(meta.dynamic_int8_attention);
        b.weight_granularity(if scheme.per_channel { qb::WeightGranularity::PerChannel } else { qb::WeightGranularity::PerTensor });
        b.activation_quant(if scheme.per_row_inputs { qb::ActivationQuant::PerRow } else { qb::ActivationQuant::Static });
        b.embedding_granularity(if scheme.per_row_embeddings { qb::EmbeddingGranularity::PerRow } else { qb::EmbeddingGranularity::PerTable });
        b.per_row_zero_points(scheme.per_row_zero_points);
        b.weight_bits(scheme.weight_bits)?;
        let e = &model.embeddings;
        let (word, pos, tt) = (vec_of(&e.word)?, vec_of(&e.position)?, vec_of(&e.token_type)?);
        let eln = OwnedLn::new(&e.layer_norm)?;
        b.embeddings(qb::Embeddings { word: &word, position: &pos, token_type: &tt, layer_norm: eln.view() }).map_err(err)?;
        for (i, l) in model.layers.iter().enumerate() {
            let qkv = l.qkv_in.get();
            let q = OwnedLinear::new(&l.query, qkv, scheme, &format!("layer {i} query"))?;
            let k = OwnedLinear::new(&l.key, qkv, scheme, &format!("layer {i} key"))?;
            let v = OwnedLinear::new(&l.value, qkv, scheme, &format!("layer {i} value"))?;
            let ao = OwnedLinear::new(&l.attention_output, l.attention_output_in.get(), scheme, &format!("layer {i} attention output"))?;
            let it = OwnedLinear::new(&l.intermediate, l.intermediate_in.get(), scheme, &format!("layer {i} intermediate"))?;
            let out = OwnedLinear::new(&l.output, l.output_in.get(), scheme, &format!("layer {i} output"))?;
            let (aln, oln) = (OwnedLn::new(&l.attention_layer_norm)?, OwnedLn::new(&l.output_layer_norm)?);
            b.layer(
                i,
                qb::Layer {
                    query: q.view(),
                    key: k.view(),
                    value: v.view(),
                    attention_output: ao.view(),
                    attention_layer_norm: aln.view(),
                    intermediate: it.view(),
                    output: out.view(),
                    output_layer_norm: oln.view(),
                },
            )
            .map_err(err)?;
            if model.int8_attention {
                let range = |t: &crate::quant::RangeTracker, what: &str| t.get().with_context(|| format!("layer {i} {what}: activation range was never observed"));
                b.int8_attention(i, range(&l.query_out, "query output")?, range(&l.key_out, "key output")?).map_err(err)?;
                b.int8_attention_values(i, range(&l.value_out, "value output")?).map_err(err)?;
            }
        }
        if let Some(h) = &model.head {
            let p = OwnedLinear::new(&h.pooler, h.pooler_in.get(), scheme, "pooler")?;
            let c = OwnedLinear::new(&h.classifier, h.classifier_in.get(), scheme, "classifier")?;
            b.pooler(p.view()).map_err(err)?;
            b.classifier(c.view()).map_err(err)?;
            if h.pooler_relu {
                b.pooler_activation(q8bert::model::PoolerActivation::Relu);
            }
        }
        for (k, v) in &meta.entries {
            let mv = match v {
                MetaEntry::Str(s) => qb::MetaValue::Str(s.clone()),
                MetaEntry::F32(x) => qb::MetaValue::F32(*x),
                MetaEntry::U32(x) => qb::MetaValue::U32(*x),
                MetaEntry::U64(x) => qb::MetaValue::U64(*x),
                MetaEntry::Bool(x) => qb::MetaValue::Bool(*x),
            };
            b.metadata(k, mv);
        }
        Ok(b)
    }

    /// Writes a classification/regression model and re-opens it with the runtime. With `check`,
    /// runs those rows through the runtime and reports agreement with the trainer's
    /// fake-quantized predictions (argmax; max abs difference for regression).
    pub fn export_classifier(
        model: &Bert,
        tok: &TextTokenizer,
        task: Task,
        path: &Path,
        scheme: Scheme,
        meta: &TrainMeta,
        check: Option<(&Dataset, u32)>,
    ) -> Result<BTreeMap<String, Value>> {
        let n = model.num_labels().context("model has no head")?;
        let head = if task.is_regression() {
            qb::Head::Regression
        } else {
            // A GLUE task names its classes; otherwise the checkpoint's id2label, if it fits.
            let from_config = model.cfg.id2label.as_ref().and_then(|m| crate::eval::id2label_names(m, n));
            let labels = match (task, from_config) {
                (Task::Classification, Some(l)) => l,
                _ => crate::eval::label_names(task, n),
            };
            qb::Head::Classification { labels }
        };
        let b = builder(model, tok, head, scheme, meta)?;
        b.write(path).map_err(err)?;
        let rt = q8bert::Model::open(path, &q8bert::Options::default()).map_err(err)?;
        let mut report = BTreeMap::new();
        report.insert("model_file".into(), json!(path.display().to_string()));
        let Some((data, pad)) = check else { return Ok(report) };
        let (sim, _) = crate::eval::predict(model, data, pad, true, scheme, 32, task.is_regression())?;
        let mut runtime_out = Vec::with_capacity(data.rows.len());
        for row in &data.rows {
            let seq = row.ids.len();
            let ids: Vec<i32> = row.ids.iter().map(|&x| x as i32).collect();
            let tys: Vec<i32> = row.type_ids.iter().map(|&x| x as i32).collect();
            let mut out = vec![0f32; rt.output_len(1, seq)];
            rt.run(&ids, Some(&tys), None, 1, seq, &mut out).map_err(err)?;
            runtime_out.push(out);
        }
        if runtime_out.is_empty() {
            bail!("no rows to check");
        }
        let gold: Vec<f32> = data.rows.iter().map(|r| r.label).collect();
        for (k, v) in crate::metrics::glue_metrics(task, &runtime_out, &gold) {
            report.insert(format!("runtime_eval_{k}"), json!(v));
        }
        let (agree, max_diff) = crate::metrics::agreement(task, &runtime_out, &sim);
        report.insert("runtime_agreement".into(), json!(agree));
        report.insert("runtime_max_abs_diff".into(), json!(max_diff));
        report.insert("runtime_check_rows".into(), json!(data.rows.len()));
        eprintln!("runtime check: {report:?}");
        Ok(report)
    }

    /// The trainer's pooling modes (usable without the runtime) and the runtime's, one to one.
    const POOLINGS: [(crate::fidelity::Pooling, qb::Pooling); 6] = {
        use crate::fidelity::Pooling as P;
        [
            (P::Mean, qb::Pooling::Mean),
            (P::Cls, qb::Pooling::Cls),
            (P::Max, qb::Pooling::Max),
            (P::MeanSqrtLen, qb::Pooling::MeanSqrtLen),
            (P::WeightedMean, qb::Pooling::WeightedMean),
            (P::LastToken, qb::Pooling::LastToken),
        ]
    };

    pub fn export_embedding(model: &Bert, tok: &TextTokenizer, path: &Path, pooling: crate::fidelity::Poolings, normalize: bool, scheme: Scheme, meta: &TrainMeta) -> Result<()> {
        let modes: Vec<qb::Pooling> = pooling.as_slice().iter().map(|&m| POOLINGS.iter().find(|(p, _)| *p == m).map(|&(_, r)| r).unwrap()).collect();
        let mut b = builder(model, tok, qb::Head::Embedding { pooling: modes[0], normalize }, scheme, meta)?;
        if modes.len() > 1 {
            b.pooling_modes(&modes).map_err(err)?;
        }
        for d in &model.dense {
            let activation = if d.tanh { qb::DenseActivation::Tanh } else { qb::DenseActivation::Identity };
            b.dense(qb::Linear { weight: &d.weight, bias: &d.bias, input_max: d.input_max.max(1e-6) }, d.out_features, activation).map_err(err)?;
        }
        b.write(path).map_err(err)?;
        q8bert::Model::open(path, &q8bert::Options::default()).map_err(err)?;
        Ok(())
    }

    /// Runs `data` through the packed model with the runtime's text API (its own tokenizer,
    /// longest-first truncation to `max_seq_len`, default: the `train.max_seq_len` the model was
    /// fine-tuned with, else 128) in length-sorted batches, and computes the task's metrics.
    pub fn eval_packed(path: &Path, task: Task, data: &[crate::data::Example], max_seq_len: Option<usize>, batch_size: usize, threads: usize) -> Result<PackedEval> {
        use q8bert::model::HeadKind;
        if data.is_empty() {
            bail!("no evaluation rows");
        }
        let probe = q8bert::Model::open(path, &q8bert::Options::default()).map_err(err)?;
        let trained_len = match probe.metadata().get("train.max_seq_len") {
            Some(q8bert::format::MetaValue::U32(v)) => Some(*v as usize),
            Some(q8bert::format::MetaValue::U64(v)) => Some(*v as usize),
            _ => None,
        };
        let max_len = max_seq_len.or(trained_len).unwrap_or(128).min(probe.config().max_position_embeddings as usize);
        drop(probe);
        let opts = q8bert::Options { max_seq_len: max_len, truncation: Some(q8bert::tokenizer::Truncation::LongestFirst), num_threads: threads, ..Default::default() };
        let rt = q8bert::Model::open(path, &opts).map_err(err)?;
        let head = rt.head();
        let width = match head.kind {
            HeadKind::Classification if !task.is_regression() => head.labels.len().max(1),
            HeadKind::Regression if task.is_regression() => 1,
            k => bail!("{}: a {k:?} head cannot be evaluated as {} (needs a {} head)", path.display(), task.name(), if task.is_regression() { "regression" } else { "classification" }),
        };
        // Length-sorted batches (by characters, a cheap proxy for tokens) waste less padding; the
        // runtime's output for a row does not depend on its batch or padding.
        let mut order: Vec<usize> = (0..data.len()).collect();
        order.sort_by_key(|&i| data[i].text_a.len() + data[i].text_b.as_ref().map_or(0, |b| b.len()));
        let mut outputs = vec![Vec::new(); data.len()];
        let t0 = std::time::Instant::now();
        let mut buf = Vec::new();
        for chunk in order.chunks(batch_size.max(1)) {
            let a: Vec<&str> = chunk.iter().map(|&i| data[i].text_a.as_str()).collect();
            let pairs = data[chunk[0]].text_b.is_some();
            let b: Vec<&str> = chunk.iter().map(|&i| data[i].text_b.as_deref().unwrap_or("")).collect();
            buf.resize(rt.text_output_len(chunk.len()), 0f32);
            rt.run_text(&a, pairs.then_some(&b[..]), &mut buf).map_err(err)?;
            if buf.len() != chunk.len() * width {
                bail!("runtime wrote {} floats for {} rows of width {width}", buf.len(), chunk.len());
            }
            for (k, &i) in chunk.iter().enumerate() {
                outputs[i] = buf[k * width..(k + 1) * width].to_vec();
            }
        }
        let runtime_s = t0.elapsed().as_secs_f64();
        let gold: Vec<f32> = data.iter().map(|e| e.label).collect();
        let metrics = crate::metrics::glue_metrics(task, &outputs, &gold);
        Ok(PackedEval { metrics, outputs, runtime_s, max_seq_len: max_len })
    }

    /// Runs `rows` through the packed model's text API (longest-first truncation to `max_len`,
    /// length-sorted batches), in row order, and says what kind of output it is.
    pub fn run_texts(path: &Path, rows: &[crate::data::Example], max_len: usize, batch_size: usize, threads: usize) -> Result<(crate::fidelity::Output, Vec<Vec<f32>>)> {
        use crate::fidelity::Output;
        use q8bert::model::HeadKind;
        let opts = q8bert::Options { max_seq_len: max_len, truncation: Some(q8bert::tokenizer::Truncation::LongestFirst), num_threads: threads, ..Default::default() };
        let rt = q8bert::Model::open(path, &opts).map_err(err)?;
        let head = rt.head();
        let output = match head.kind {
            HeadKind::Embedding => {
                let modes: Vec<crate::fidelity::Pooling> = head.pooling.iter().map(|&m| POOLINGS.iter().find(|(_, r)| *r == m).map(|&(p, _)| p).unwrap()).collect();
                let pooling = crate::fidelity::Poolings::new(&modes).with_context(|| format!("{}: pooling modes {:?} repeat", path.display(), head.pooling))?;
                Output::Embedding { pooling, normalize: head.normalize }
            }
            HeadKind::Classification => Output::Classification { labels: head.labels.len() },
            HeadKind::Regression => Output::Regression,
            HeadKind::TokenStates => bail!("{}: a token-states model has no per-text output to compare", path.display()),
        };
        let width = rt.text_output_len(1);
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by_key(|&i| rows[i].text_a.len() + rows[i].text_b.as_ref().map_or(0, |b| b.len()));
        let mut outputs = vec![Vec::new(); rows.len()];
        let mut buf = Vec::new();
        // Pairs and single texts cannot share a batch: split each chunk by kind.
        for chunk in order.chunks(batch_size.max(1)) {
            for pairs in [false, true] {
                let part: Vec<usize> = chunk.iter().copied().filter(|&i| rows[i].text_b.is_some() == pairs).collect();
                if part.is_empty() {
                    continue;
                }
                let a: Vec<&str> = part.iter().map(|&i| rows[i].text_a.as_str()).collect();
                let b: Vec<&str> = part.iter().map(|&i| rows[i].text_b.as_deref().unwrap_or("")).collect();
                buf.resize(rt.text_output_len(part.len()), 0f32);
                // The model itself, with no prompt: the fp32 side has none either.
                rt.run_text_prompt(q8bert::Prompt::None, &a, pairs.then_some(&b[..]), &mut buf).map_err(err)?;
                for (k, &i) in part.iter().enumerate() {
                    outputs[i] = buf[k * width..(k + 1) * width].to_vec();
                }
            }
        }
        Ok((output, outputs))
    }

    /// Human-readable summary of a packed model: config, head, kernel, metadata, and every tensor
    /// with its scales (small f32 tensors are printed in full, larger ones summarised).
    pub fn inspect(path: &Path) -> Result<String> {
        use std::fmt::Write;
        let m = q8bert::Model::open(path, &q8bert::Options::default()).map_err(err)?;
        let mut o = String::new();
        writeln!(o, "file: {}", path.display())?;
        let fi = m.file_index();
        writeln!(o, "format: {}.{}", fi.version_major, fi.version_minor)?;
        writeln!(o, "config: {:?}", m.config())?;
        let int8_layers: Vec<usize> = m.layout().layers.iter().enumerate().filter(|(_, l)| l.attention_scales.is_some()).map(|(i, _)| i).collect();
        writeln!(o, "attention scores: {}", if int8_layers.is_empty() { "fp32".to_string() } else { format!("int8 in layers {int8_layers:?}") })?;
        let per_row = m.layout().per_row_linears();
        let activations = match (per_row, m.layout().linears().count()) {
            (0, _) => "static (one scale per layer, int32 bias)".to_string(),
            (p, n) if p == n && m.layout().per_row_zero_points => "per-token (a scale and a zero point per row at run time, f32 bias)".to_string(),
            (p, n) if p == n => "per-token (a scale per row at run time, f32 bias)".to_string(),
            (p, n) => format!("mixed: per-token in {p} of {n} linear layers"),
        };
        writeln!(o, "activations: {activations}")?;
        let per_row_tables = [&m.layout().word_embeddings, &m.layout().position_embeddings, &m.layout().token_type_embeddings]
            .iter()
            .filter(|e| matches!(e.scales, q8bert::model::EmbeddingScales::PerRow { .. }))
            .count();
        writeln!(o, "embedding scales: {}", if per_row_tables == 0 { "one per table" } else { "one per row" })?;
        writeln!(o, "head: {:?}", m.head())?;
        writeln!(o, "kernel: {:?}, threads: {}", m.kernel(), m.num_threads())?;
        writeln!(o, "metadata:")?;
        for (k, v) in m.metadata() {
            writeln!(o, "  {k} = {v:?}")?;
        }
        writeln!(o, "tensors:")?;
        let bytes = m.file_bytes();
        for t in m.tensors() {
            let mut line = format!("  {:<48} {:?} {:?}", t.name, t.dtype, t.dims);
            if format!("{:?}", t.dtype) == "F32" && (t.name.contains("scale")) {
                let vals: Vec<f32> = bytes[t.range.clone()].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
                if vals.len() <= 4 {
                    line += &format!(" = {vals:?}");
                } else {
                    let (mn, mx) = vals.iter().fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
                    line += &format!(" = [{} values, min {mn}, max {mx}]", vals.len());
                }
            }
            writeln!(o, "{line}")?;
        }
        Ok(o)
    }
}
