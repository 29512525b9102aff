//! Evaluation building blocks shared by fine-tuning, export and the fidelity check: tokenized
//! data sets and their batches, the task loss, predictions, and class names.

use crate::bert::{Batch, Bert, Ctx};
use crate::data::{Encoded, Task};
use crate::quant::Scheme;
use crate::rng::Rng;
use anyhow::{bail, Result};
use candle_core::{Device, Tensor, D};
use std::collections::BTreeMap;

/// A tokenized data set ready for batching.
pub struct Dataset {
    pub rows: Vec<Encoded>,
}

impl Dataset {
    /// Pads `idx` rows to their longest length.
    pub fn batch(&self, idx: &[usize], pad_id: u32) -> Result<(Batch, Vec<f32>)> {
        let seq = idx.iter().map(|&i| self.rows[i].ids.len()).max().unwrap_or(1);
        let n = idx.len();
        let mut ids = vec![pad_id; n * seq];
        let mut types = vec![0u32; n * seq];
        let mut mask = vec![0f32; n * seq];
        let mut labels = Vec::with_capacity(n);
        for (b, &i) in idx.iter().enumerate() {
            let r = &self.rows[i];
            for (t, (&id, &ty)) in r.ids.iter().zip(&r.type_ids).enumerate() {
                ids[b * seq + t] = id;
                types[b * seq + t] = ty;
                mask[b * seq + t] = 1.0;
            }
            labels.push(r.label);
        }
        Ok((Batch::new(&ids, &types, &mask, n, seq)?, labels))
    }

    /// Length-bucketed batches: shuffle, cut into pools of 50 batches, sort each pool by length,
    /// then shuffle the batch order. Padding waste drops while batches stay random.
    pub fn bucketed_batches(&self, batch_size: usize, rng: &mut Rng) -> Vec<Vec<usize>> {
        let mut idx: Vec<usize> = (0..self.rows.len()).collect();
        rng.shuffle(&mut idx);
        let mut batches = Vec::new();
        for pool in idx.chunks(batch_size * 50) {
            let mut pool = pool.to_vec();
            pool.sort_by_key(|&i| self.rows[i].ids.len());
            batches.extend(pool.chunks(batch_size).map(|c| c.to_vec()));
        }
        rng.shuffle(&mut batches);
        batches
    }

    /// Deterministic batches sorted by length (evaluation).
    pub fn sorted_batches(&self, batch_size: usize) -> Vec<Vec<usize>> {
        let mut idx: Vec<usize> = (0..self.rows.len()).collect();
        idx.sort_by_key(|&i| self.rows[i].ids.len());
        idx.chunks(batch_size).map(|c| c.to_vec()).collect()
    }
}

/// Mean cross-entropy (classification) or mean squared error (regression, one output).
pub fn loss(logits: &Tensor, labels: &[f32], regression: bool) -> Result<Tensor> {
    let (n, c) = logits.dims2()?;
    if regression {
        let y = Tensor::from_slice(labels, (n, 1), &Device::Cpu)?;
        return Ok((logits - y)?.sqr()?.mean_all()?);
    }
    let mut onehot = vec![0f32; n * c];
    for (i, &l) in labels.iter().enumerate() {
        let l = l as usize;
        if l >= c {
            bail!("label {l} out of range for {c} classes");
        }
        onehot[i * c + l] = 1.0;
    }
    let onehot = Tensor::from_vec(onehot, (n, c), &Device::Cpu)?;
    let m = logits.max_keepdim(D::Minus1)?.detach();
    let lse = (logits.broadcast_sub(&m)?.exp()?.sum_keepdim(D::Minus1)?.log()? + m)?;
    let picked = (logits * onehot)?.sum_keepdim(D::Minus1)?;
    Ok((lse - picked)?.mean_all()?)
}

/// Raw head outputs for every row, in dataset order, and the mean loss.
pub fn predict(model: &Bert, data: &Dataset, pad_id: u32, quant: bool, scheme: Scheme, batch_size: usize, regression: bool) -> Result<(Vec<Vec<f32>>, f64)> {
    let ctx = Ctx::eval(quant, scheme);
    let mut out = vec![Vec::new(); data.rows.len()];
    let mut total_loss = 0f64;
    for idx in data.sorted_batches(batch_size) {
        let (batch, labels) = data.batch(&idx, pad_id)?;
        let logits = model.logits(&batch, &ctx)?.detach();
        total_loss += loss(&logits, &labels, regression)?.to_scalar::<f32>()? as f64 * idx.len() as f64;
        let rows: Vec<Vec<f32>> = logits.to_vec2()?;
        for (i, r) in idx.into_iter().zip(rows) {
            out[i] = r;
        }
    }
    Ok((out, total_loss / data.rows.len().max(1) as f64))
}

/// Class names in index order from a config.json `id2label`, if it names exactly `n` classes.
pub fn id2label_names(id2label: &BTreeMap<String, String>, n: usize) -> Option<Vec<String>> {
    (0..n).map(|i| id2label.get(&i.to_string()).cloned()).collect::<Option<Vec<_>>>().filter(|_| id2label.len() == n)
}

pub fn label_names(task: Task, n: usize) -> Vec<String> {
    match task {
        Task::Sst2 => vec!["negative".into(), "positive".into()],
        Task::Cola => vec!["unacceptable".into(), "acceptable".into()],
        Task::Mrpc => vec!["not_equivalent".into(), "equivalent".into()],
        _ => (0..n).map(|i| format!("LABEL_{i}")).collect(),
    }
}
