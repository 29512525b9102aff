//! `trainer fidelity`: how far a packed int8 model is from the fp32 checkpoint it was made from,
//! on the user's own text. The fp32 side is the trainer's candle forward (which matches Hugging
//! Face transformers, `tests/minilm_reference.rs`); the int8 side is the runtime's text API, so
//! tokenization, truncation and the forward pass are exactly what an application gets.

use crate::bert::{Batch, Bert, Ctx, HeadInit};
use crate::data::{Example, TextTokenizer};
use crate::quant::Scheme;
use crate::eval::Dataset;
use crate::metrics::{argmax, pearson};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::path::Path;

/// How token states become one sentence embedding: sentence-transformers' Pooling modes, as
/// the runtime implements them (`q8bert::model::Pooling`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    Mean,
    Cls,
    Max,
    MeanSqrtLen,
    /// Weights = position + 1.
    WeightedMean,
    LastToken,
}

/// One or more pooling modes whose vectors are concatenated in this order (sentence-transformers'
/// Pooling with several modes set). A small copyable list, so [`Output`] stays `Copy`.
#[derive(Clone, Copy)]
pub struct Poolings {
    modes: [Pooling; 6],
    len: usize,
}

impl Poolings {
    /// 1 to 6 distinct modes, or None.
    pub fn new(modes: &[Pooling]) -> Option<Poolings> {
        if modes.is_empty() || modes.len() > 6 || modes.iter().enumerate().any(|(i, m)| modes[..i].contains(m)) {
            return None;
        }
        let mut all = [Pooling::Mean; 6];
        all[..modes.len()].copy_from_slice(modes);
        Some(Poolings { modes: all, len: modes.len() })
    }

    pub fn as_slice(&self) -> &[Pooling] {
        &self.modes[..self.len]
    }
}

impl From<Pooling> for Poolings {
    fn from(p: Pooling) -> Poolings {
        Poolings { modes: [p; 6], len: 1 }
    }
}

// Equality and printing see the listed modes only, not the unused slots.
impl PartialEq for Poolings {
    fn eq(&self, other: &Poolings) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Poolings {}

impl std::fmt::Debug for Poolings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_slice().fmt(f)
    }
}

/// What the packed model outputs, as far as the comparison is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// Sentence embeddings: compared by cosine.
    Embedding { pooling: Poolings, normalize: bool },
    /// Class logits: compared by argmax agreement and logit differences.
    Classification { labels: usize },
    /// One score per row: compared by absolute difference and correlation.
    Regression,
}

/// One row's comparison.
#[derive(Clone, Debug, PartialEq)]
pub struct RowFidelity {
    pub index: usize,
    pub cosine: f64,
    pub max_abs_diff: f64,
    /// Classification: the int8 argmax equals the fp32 one (always true otherwise).
    pub same_label: bool,
}

/// The summary `trainer fidelity` prints.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub rows: usize,
    pub cosine_mean: f64,
    pub cosine_min: f64,
    /// 1st percentile (nearest rank) of the per-row cosines.
    pub cosine_p1: f64,
    pub max_abs_diff: f64,
    pub mean_abs_diff: f64,
    /// Share of rows whose argmax agrees (classification; 1 otherwise).
    pub label_agreement: f64,
    /// Pearson correlation of fp32 and int8 scores (regression only).
    pub score_pearson: Option<f64>,
    /// Rows, worst first: lowest cosine (embeddings), else largest difference.
    pub worst: Vec<RowFidelity>,
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum();
    let na: f64 = a.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
    if na == 0.0 || nb == 0.0 {
        // Two zero vectors are the same output; one zero vector is as far as it gets.
        return if na == nb { 1.0 } else { 0.0 };
    }
    dot / (na * nb)
}

/// Compares fp32 and int8 outputs row by row; `worst` rows are kept for the report.
pub fn compare(output: Output, fp32: &[Vec<f32>], int8: &[Vec<f32>], worst: usize) -> Result<Report> {
    if fp32.len() != int8.len() || fp32.is_empty() {
        bail!("fidelity needs the same number of rows on both sides, at least one (fp32 {}, int8 {})", fp32.len(), int8.len());
    }
    let mut rows = Vec::with_capacity(fp32.len());
    let mut diff_sum = 0.0;
    let mut diff_count = 0usize;
    for (i, (a, b)) in fp32.iter().zip(int8).enumerate() {
        if a.len() != b.len() {
            bail!("row {i}: fp32 has {} values, int8 {}", a.len(), b.len());
        }
        let max_abs_diff = a.iter().zip(b).map(|(&x, &y)| (x as f64 - y as f64).abs()).fold(0.0, f64::max);
        diff_sum += a.iter().zip(b).map(|(&x, &y)| (x as f64 - y as f64).abs()).sum::<f64>();
        diff_count += a.len();
        let same_label = !matches!(output, Output::Classification { .. }) || argmax(a) == argmax(b);
        rows.push(RowFidelity { index: i, cosine: cosine(a, b), max_abs_diff, same_label });
    }
    let mut cosines: Vec<f64> = rows.iter().map(|r| r.cosine).collect();
    cosines.sort_by(f64::total_cmp);
    let p1 = cosines[((cosines.len() as f64 * 0.01).ceil() as usize).saturating_sub(1)];
    match output {
        Output::Embedding { .. } => rows.sort_by(|x, y| x.cosine.total_cmp(&y.cosine)),
        _ => rows.sort_by(|x, y| (x.same_label, -x.max_abs_diff).partial_cmp(&(y.same_label, -y.max_abs_diff)).unwrap()),
    }
    let n = fp32.len() as f64;
    let score_pearson = matches!(output, Output::Regression).then(|| {
        let a: Vec<f64> = fp32.iter().map(|r| r[0] as f64).collect();
        let b: Vec<f64> = int8.iter().map(|r| r[0] as f64).collect();
        pearson(&a, &b)
    });
    Ok(Report {
        rows: fp32.len(),
        cosine_mean: cosines.iter().sum::<f64>() / n,
        cosine_min: cosines[0],
        cosine_p1: p1,
        max_abs_diff: rows.iter().map(|r| r.max_abs_diff).fold(0.0, f64::max),
        mean_abs_diff: diff_sum / diff_count.max(1) as f64,
        label_agreement: rows.iter().filter(|r| r.same_label).count() as f64 / n,
        score_pearson,
        worst: rows.into_iter().take(worst).collect(),
    })
}

/// The texts of a `--texts` file, with where each came from so reports point at file lines.
#[derive(Clone, Debug, Default)]
pub struct TextFile {
    pub rows: Vec<Example>,
    /// The 1-based file line of each row.
    pub lines: Vec<usize>,
    /// 1-based lines that are empty or whitespace only: not scored, reported.
    pub blank_lines: Vec<usize>,
}

/// Reads the texts to compare: one text per line, or two separated by a tab (a pair); there is
/// no header. Blank lines are skipped but keep their numbers: rows are reported by file line.
pub fn read_texts(path: &Path) -> Result<TextFile> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut file = TextFile::default();
    for (i, l) in text.lines().enumerate() {
        let l = l.trim_end_matches('\r');
        if l.trim().is_empty() {
            file.blank_lines.push(i + 1);
            continue;
        }
        file.rows.push(match l.split_once('\t') {
            Some((a, b)) => Example { text_a: a.to_string(), text_b: Some(b.split('\t').next().unwrap_or("").to_string()), label: 0.0 },
            None => Example { text_a: l.to_string(), text_b: None, label: 0.0 },
        });
        file.lines.push(i + 1);
    }
    if file.rows.is_empty() {
        bail!("{}: no text lines (one text, or two tab-separated texts, per line)", path.display());
    }
    Ok(file)
}

/// Rows longer than the token limit: both sides cut them (longest-first) to `max_seq_len`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Truncation {
    pub max_seq_len: usize,
    /// Indices into the rows.
    pub rows: Vec<usize>,
}

/// Which rows `max_seq_len` truncates: a row encoded with one more token allowed comes out
/// longer than the limit exactly when it does not fit.
pub fn truncation(tok: &TextTokenizer, rows: &[Example], max_seq_len: usize) -> Result<Truncation> {
    let encoded = tok.encode_all(rows, max_seq_len + 1)?;
    Ok(Truncation { max_seq_len, rows: encoded.iter().enumerate().filter(|(_, e)| e.ids.len() > max_seq_len).map(|(i, _)| i).collect() })
}

/// The fp32 checkpoint's outputs for `rows`, shaped like the packed model's (`output`).
pub fn fp32_outputs(model: &Bert, tok: &TextTokenizer, rows: &[Example], output: Output, max_len: usize, batch_size: usize) -> Result<Vec<Vec<f32>>> {
    let data = Dataset { rows: tok.encode_all(rows, max_len)? };
    let pad = tok.pad_id();
    let ctx = Ctx::eval(false, Scheme::Q8BERT);
    let mut out = vec![Vec::new(); rows.len()];
    for idx in data.sorted_batches(batch_size.max(1)) {
        let (batch, _) = data.batch(&idx, pad)?;
        let values: Vec<Vec<f32>> = match output {
            Output::Embedding { pooling, normalize } if !model.dense.is_empty() => {
                let mut rows = pooled(model, &batch, &ctx, pooling, false)?;
                for dense in &model.dense {
                    rows = rows.iter().map(|r| dense.apply(r)).collect();
                }
                if normalize {
                    rows.iter_mut().for_each(|r| l2_normalize(r));
                }
                rows
            }
            Output::Embedding { pooling, normalize } if pooling == Pooling::Mean.into() => model.mean_pooled(&batch, &ctx, normalize)?.to_vec2()?,
            Output::Embedding { pooling, normalize } => pooled(model, &batch, &ctx, pooling, normalize)?,
            Output::Classification { .. } | Output::Regression => model.logits(&batch, &ctx)?.to_vec2()?,
        };
        for (i, v) in idx.into_iter().zip(values) {
            out[i] = v;
        }
    }
    Ok(out)
}

fn l2_normalize(r: &mut [f32]) {
    let n = r.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
    r.iter_mut().for_each(|v| *v /= n);
}

/// Pools each row's unmasked token states (right-padded batches) as sentence-transformers does,
/// one vector per mode, concatenated.
pub fn pooled(model: &Bert, batch: &Batch, ctx: &Ctx, pooling: Poolings, normalize: bool) -> Result<Vec<Vec<f32>>> {
    let h = model.cfg.hidden_size;
    let x: Vec<Vec<Vec<f32>>> = model.encode(batch, ctx)?.reshape((batch.batch, batch.seq, h))?.to_vec3()?;
    let mask: Vec<Vec<f32>> = batch.attention_mask.to_vec2()?;
    let mut rows: Vec<Vec<f32>> = x
        .iter()
        .zip(&mask)
        .map(|(tokens, mask)| {
            let n = mask.iter().filter(|&&m| m > 0.0).count().max(1);
            let tokens = &tokens[..n];
            let sum = |weight: &dyn Fn(usize) -> f32| (0..h).map(|d| tokens.iter().enumerate().map(|(i, t)| weight(i) * t[d]).sum::<f32>()).collect::<Vec<f32>>();
            pooling
                .as_slice()
                .iter()
                .flat_map(|mode| match mode {
                    Pooling::Cls => tokens[0].clone(),
                    Pooling::LastToken => tokens[n - 1].clone(),
                    Pooling::Max => (0..h).map(|d| tokens.iter().map(|t| t[d]).fold(f32::NEG_INFINITY, f32::max)).collect(),
                    Pooling::Mean => sum(&|_| 1.0).into_iter().map(|v| v / n as f32).collect(),
                    Pooling::MeanSqrtLen => sum(&|_| 1.0).into_iter().map(|v| v / (n as f32).sqrt()).collect(),
                    Pooling::WeightedMean => sum(&|i| (i + 1) as f32).into_iter().map(|v| v / (n * (n + 1) / 2) as f32).collect(),
                })
                .collect()
        })
        .collect();
    if normalize {
        rows.iter_mut().for_each(|r| l2_normalize(r));
    }
    Ok(rows)
}

/// Loads the checkpoint with the head the packed model has; refuses a classifier checkpoint
/// without a trained classifier of that size (the comparison would be meaningless).
pub fn load_fp32(dir: &Path, output: Output) -> Result<Bert> {
    let labels = match output {
        Output::Embedding { .. } => None,
        Output::Classification { labels } => Some(labels),
        Output::Regression => Some(1),
    };
    let mut model = Bert::load(dir, labels, 0)?;
    if let Output::Embedding { pooling, .. } = output {
        model.dense = crate::dense::find(dir, model.cfg.hidden_size * pooling.as_slice().len())?;
    }
    if labels.is_some() && model.head_init != Some(HeadInit::Loaded) {
        bail!("{}: the packed model has a {}-output head but the checkpoint has no classifier of that shape", dir.display(), labels.unwrap_or(0));
    }
    Ok(model)
}

impl Report {
    pub fn to_json(&self, output: Output, texts: &TextFile, truncation: &Truncation) -> Value {
        let worst: Vec<Value> = self
            .worst
            .iter()
            .map(|r| {
                let e = &texts.rows[r.index];
                json!({"line": texts.lines[r.index], "cosine": r.cosine, "max_abs_diff": r.max_abs_diff, "same_label": r.same_label, "text": e.text_a, "text_b": e.text_b})
            })
            .collect();
        let mut v = json!({
            "rows": self.rows,
            "blank_lines_skipped": texts.blank_lines,
            "max_seq_len": truncation.max_seq_len,
            "truncated_lines": truncation.rows.iter().map(|&i| texts.lines[i]).collect::<Vec<_>>(),
            "cosine_mean": self.cosine_mean,
            "cosine_min": self.cosine_min,
            "cosine_p1": self.cosine_p1,
            "max_abs_diff": self.max_abs_diff,
            "mean_abs_diff": self.mean_abs_diff,
            "worst": worst,
        });
        if matches!(output, Output::Classification { .. }) {
            v["label_agreement"] = json!(self.label_agreement);
        }
        if let Some(p) = self.score_pearson {
            v["score_pearson"] = json!(p);
        }
        v
    }

    /// The human-readable summary.
    pub fn to_text(&self, output: Output, texts: &TextFile, truncation: &Truncation) -> String {
        use std::fmt::Write;
        let mut o = String::new();
        let _ = writeln!(o, "rows: {}", self.rows);
        if !texts.blank_lines.is_empty() {
            let _ = writeln!(o, "blank lines skipped: {} ({})", texts.blank_lines.len(), line_list(&texts.blank_lines));
        }
        let truncated: Vec<usize> = truncation.rows.iter().map(|&i| texts.lines[i]).collect();
        if truncated.is_empty() {
            let _ = writeln!(o, "truncated: none (limit {} tokens)", truncation.max_seq_len);
        } else {
            let _ = writeln!(
                o,
                "truncated: {} of {} rows are longer than {} tokens and were cut to it on both sides ({}); --max-seq-len sets the limit",
                truncated.len(),
                self.rows,
                truncation.max_seq_len,
                line_list(&truncated)
            );
        }
        let _ = writeln!(o, "cosine(int8, fp32): mean {:.5}, min {:.5}, 1st percentile {:.5}", self.cosine_mean, self.cosine_min, self.cosine_p1);
        let _ = writeln!(o, "|int8 - fp32|: max {:.4e}, mean {:.4e}", self.max_abs_diff, self.mean_abs_diff);
        if matches!(output, Output::Classification { .. }) {
            let _ = writeln!(o, "label agreement: {:.2}% ({} of {} rows differ)", 100.0 * self.label_agreement, self.rows - (self.label_agreement * self.rows as f64).round() as usize, self.rows);
        }
        if let Some(p) = self.score_pearson {
            let _ = writeln!(o, "score correlation (Pearson): {p:.5}");
        }
        let _ = writeln!(o, "worst rows:");
        for r in &self.worst {
            let e = &texts.rows[r.index];
            let mut text = e.text_a.clone();
            if let Some(b) = &e.text_b {
                text = format!("{text} | {b}");
            }
            if text.chars().count() > 90 {
                text = text.chars().take(87).collect::<String>() + "...";
            }
            let flag = if r.same_label { "" } else { "  LABEL DIFFERS" };
            let _ = writeln!(o, "  line {:>6}: cosine {:.5}, max diff {:.3e}{flag}  {text:?}", texts.lines[r.index], r.cosine, r.max_abs_diff);
        }
        o
    }
}

/// "line 3", "lines 3, 8, 12" for a few line numbers, "lines 3, 8, 12, ... (40 more)" for many.
fn line_list(lines: &[usize]) -> String {
    const SHOWN: usize = 10;
    let mut s = if lines.len() == 1 { "line ".to_string() } else { "lines ".to_string() };
    s += &lines.iter().take(SHOWN).map(|l| l.to_string()).collect::<Vec<_>>().join(", ");
    if lines.len() > SHOWN {
        s += &format!(", ... ({} more)", lines.len() - SHOWN);
    }
    s
}
