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
            // Pool into `output`, or with a Dense layer into `pooled` first: pooled vectors
            // [batch][H], then the layer's outputs [batch][out].
            let dim = layout.dense.as_ref().map_or(h, |d| d.n);
            let mut pooled = core::mem::take(&mut ws.pooled);
            for s in 0..batch {
                let (a, b) = (ws.seq_start[s], ws.seq_start[s + 1]);
                let out = if layout.dense.is_some() { &mut pooled[s * h..(s + 1) * h] } else { &mut output[s * h..(s + 1) * h] };
                let rows = |i: usize| &ws.hidden[i * h..(i + 1) * h];
                // Every mode but cls pools tokens at positions >= pooling_skip (a prompt left
                // out); none left gives what sentence-transformers gives for an all-zero mask.
                let cls = a;
                let a = (a..b).find(|&i| ws.tokens[i].0 as usize >= input.pooling_skip).unwrap_or(b);
                if a == b && layout.head.pooling != Pooling::Cls {
                    out.fill(if layout.head.pooling == Pooling::Max { -1e9 } else { 0.0 });
                    continue;
                }
                match layout.head.pooling {
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
                        let divisor = if layout.head.pooling == Pooling::Mean { count } else { math::sqrt(count) };
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
            if let (Some(dense), Some(activation)) = (&layout.dense, layout.head.dense) {
                let (pooled, dense_out) = pooled.split_at_mut(batch * h);
                cx.linear(Op::Head, dense, LinearIn::F32(pooled), batch, bufs!(ws), LinearOut::F32(&mut dense_out[..batch * dim]));
                if activation == DenseActivation::Tanh {
                    for v in dense_out[..batch * dim].iter_mut() {
                        *v = math::tanh(*v);
                    }
                }
                output[..batch * dim].copy_from_slice(&dense_out[..batch * dim]);
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
