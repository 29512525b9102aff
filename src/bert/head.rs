//! The output head: pooler + classifier, pooled (optionally normalized) embedding, or every
//! token's final hidden state.

use super::*;
use crate::model::{DenseActivation, PoolerActivation};

pub(super) fn write_head(layout: &ModelLayout, cx: &Ctx, input: &Input, ws: &mut Workspace, output: &mut [f32]) {
    let h = layout.config.hidden_size;
    let batch = input.batch;
    match layout.head.kind {
        HeadKind::Classification | HeadKind::Regression => {
            let (Some(pooler), Some(classifier)) = (&layout.pooler, &layout.classifier) else {
                unreachable!("layout resolution guarantees pooler and classifier for this head");
            };
            // First unmasked token of every sequence ([CLS]).
            resize(&mut ws.pooled, batch * h);
            for s in 0..batch {
                let first = ws.seq_start[s];
                ws.pooled[s * h..(s + 1) * h].copy_from_slice(&ws.hidden[first * h..(first + 1) * h]);
            }
            cx.linear(Op::Head, pooler, LinearIn::F32(&ws.pooled), batch, bufs!(ws), LinearOut::F32(&mut ws.tmp));
            match layout.head.pooler_activation {
                PoolerActivation::Tanh => ws.tmp[..batch * h].iter_mut().for_each(|v| *v = math::tanh(*v)),
                PoolerActivation::Relu => ws.tmp[..batch * h].iter_mut().for_each(|v| *v = math::relu(*v)),
            }
            let n = classifier.n;
            cx.linear(Op::Head, classifier, LinearIn::F32(&ws.tmp), batch, bufs!(ws), LinearOut::F32(&mut output[..batch * n]));
        }
        HeadKind::Embedding => {
            // Pool into `output`, or with Dense layers into `pooled` first: pooled vectors
            // [batch][P] (P = H per pooling mode), then two [batch][widest layer] buffers the
            // layers write in turn.
            let p = layout.pooled_dim();
            let widest = layout.dense.iter().map(|d| d.n).max().unwrap_or(0);
            let mut pooled = core::mem::take(&mut ws.pooled);
            for s in 0..batch {
                let out = if layout.dense.is_empty() { &mut output[s * p..(s + 1) * p] } else { &mut pooled[s * p..(s + 1) * p] };
                for (mode, out) in layout.head.pooling.iter().zip(out.chunks_exact_mut(h)) {
                    pool(*mode, ws, s, input.pooling_skip, h, out);
                }
            }
            let mut dim = p;
            if !layout.dense.is_empty() {
                let (pooled, rest) = pooled.split_at_mut(batch * p);
                let (mut a, mut b) = rest.split_at_mut(batch * widest);
                let mut input_rows: &[f32] = pooled;
                for (i, (dense, activation)) in layout.dense.iter().zip(&layout.head.dense).enumerate() {
                    let y = &mut a[..batch * dense.n];
                    cx.linear(Op::Head, dense, LinearIn::F32(&input_rows[..batch * dim]), batch, bufs!(ws), LinearOut::F32(y));
                    if *activation == DenseActivation::Tanh {
                        y.iter_mut().for_each(|v| *v = math::tanh(*v));
                    }
                    dim = dense.n;
                    if i + 1 == layout.dense.len() {
                        output[..batch * dim].copy_from_slice(y);
                        break;
                    }
                    core::mem::swap(&mut a, &mut b);
                    input_rows = b;
                }
            }
            ws.pooled = pooled;
            if layout.head.normalize {
                for out in output[..batch * dim].chunks_exact_mut(dim) {
                    let norm = math::sqrt(math::dot(out, out)).max(1e-12);
                    for o in out.iter_mut() {
                        *o /= norm;
                    }
                }
            }
        }
        HeadKind::TokenStates => {
            let l = input.seq_len;
            output[..batch * l * h].fill(0.0);
            for s in 0..batch {
                for i in ws.seq_start[s]..ws.seq_start[s + 1] {
                    let pos = ws.tokens[i].0 as usize;
                    output[(s * l + pos) * h..(s * l + pos + 1) * h].copy_from_slice(&ws.hidden[i * h..(i + 1) * h]);
                }
            }
        }
    }
}

/// Pools sequence `s`'s final hidden states with one mode into `out` (H values). Every mode but
/// cls pools tokens at positions >= `skip` (a prompt left out); none left gives what
/// sentence-transformers gives for an all-zero mask.
fn pool(mode: Pooling, ws: &Workspace, s: usize, skip: usize, h: usize, out: &mut [f32]) {
    let (cls, b) = (ws.seq_start[s], ws.seq_start[s + 1]);
    let rows = |i: usize| &ws.hidden[i * h..(i + 1) * h];
    let a = (cls..b).find(|&i| ws.tokens[i].0 as usize >= skip).unwrap_or(b);
    if a == b && mode != Pooling::Cls {
        out.fill(if mode == Pooling::Max { -1e9 } else { 0.0 });
        return;
    }
    match mode {
        Pooling::Cls => out.copy_from_slice(rows(cls)),
        Pooling::LastToken => out.copy_from_slice(rows(b - 1)),
        Pooling::Max => {
            out.copy_from_slice(rows(a));
            for i in a + 1..b {
                for (o, &v) in out.iter_mut().zip(rows(i)) {
                    // Not f32::max: NaN must propagate the same way on every target.
                    if v > *o || v.is_nan() {
                        *o = v;
                    }
                }
            }
        }
        Pooling::Mean | Pooling::MeanSqrtLen => {
            out.fill(0.0);
            for i in a..b {
                for (o, &v) in out.iter_mut().zip(rows(i)) {
                    *o += v;
                }
            }
            let count = (b - a) as f32;
            let divisor = if mode == Pooling::Mean { count } else { math::sqrt(count) };
            for o in out.iter_mut() {
                *o /= divisor;
            }
        }
        Pooling::WeightedMean => {
            // Weight = position in the row + 1 (sentence-transformers' arange(1, seq + 1)).
            out.fill(0.0);
            let mut total = 0.0f32;
            for i in a..b {
                let weight = (ws.tokens[i].0 + 1) as f32;
                total += weight;
                for (o, &v) in out.iter_mut().zip(rows(i)) {
                    *o += weight * v;
                }
            }
            for o in out.iter_mut() {
                *o /= total;
            }
        }
    }
}
