//! AdamW (decoupled weight decay, bias-corrected, as torch.optim.AdamW) updating parameters in
//! place in one pass per tensor, and the linear warmup/decay schedule of Hugging Face's Trainer.

use anyhow::Result;
use candle_core::{backprop::GradStore, CpuStorage, InplaceOp2, Layout, Var};
use std::sync::Mutex;

pub struct AdamW {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    step: u64,
    /// (m, v, decays) per parameter, in the order of `vars`.
    state: Vec<Mutex<(Vec<f32>, Vec<f32>)>>,
    decay: Vec<bool>,
}

impl AdamW {
    /// `no_decay[i]`: parameter i is a bias or LayerNorm weight (HF excludes those from decay).
    pub fn new(vars: &[&Var], no_decay: &[bool], weight_decay: f32) -> Self {
        AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            step: 0,
            state: vars.iter().map(|v| Mutex::new((vec![0.0; v.elem_count()], vec![0.0; v.elem_count()]))).collect(),
            decay: no_decay.iter().map(|n| !n).collect(),
        }
    }

    pub fn step(&mut self, vars: &[&Var], grads: &GradStore, lr: f32) -> Result<()> {
        self.step += 1;
        let bc1 = 1.0 - self.beta1.powi(self.step as i32);
        let bc2 = 1.0 - self.beta2.powi(self.step as i32);
        for (i, var) in vars.iter().enumerate() {
            let Some(g) = grads.get(var) else { continue };
            let g = g.contiguous()?;
            let op = Update {
                state: &self.state[i],
                lr,
                wd: if self.decay[i] { self.weight_decay } else { 0.0 },
                b1: self.beta1,
                b2: self.beta2,
                eps: self.eps,
                bc1,
                bc2,
            };
            var.as_tensor().inplace_op2(&g, &op)?;
        }
        Ok(())
    }
}

struct Update<'a> {
    state: &'a Mutex<(Vec<f32>, Vec<f32>)>,
    lr: f32,
    wd: f32,
    b1: f32,
    b2: f32,
    eps: f32,
    bc1: f32,
    bc2: f32,
}

impl InplaceOp2 for Update<'_> {
    fn name(&self) -> &'static str {
        "adamw"
    }
    fn cpu_fwd(&self, dst: &mut CpuStorage, dst_l: &Layout, gs: &CpuStorage, gl: &Layout) -> candle_core::Result<()> {
        let (CpuStorage::F32(p), CpuStorage::F32(g)) = (dst, gs) else { candle_core::bail!("adamw: f32 only") };
        let (Some((p0, p1)), Some((g0, g1))) = (dst_l.contiguous_offsets(), gl.contiguous_offsets()) else {
            candle_core::bail!("adamw: contiguous tensors only")
        };
        let (p, g) = (&mut p[p0..p1], &g[g0..g1]);
        let mut st = self.state.lock().unwrap();
        let (m, v) = &mut *st;
        let step_size = self.lr / self.bc1;
        let inv_bc2_sqrt = 1.0 / self.bc2.sqrt();
        let decay = 1.0 - self.lr * self.wd;
        let (b1, b2, eps) = (self.b1, self.b2, self.eps);
        let kernel = |p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]| {
            for i in 0..p.len() {
                let gi = g[i];
                m[i] = b1 * m[i] + (1.0 - b1) * gi;
                v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
                p[i] = p[i] * decay - step_size * m[i] / (v[i].sqrt() * inv_bc2_sqrt + eps);
            }
        };
        if p.len() < (1 << 16) || crate::threads() < 2 {
            kernel(p, g, m, v);
        } else {
            // Two halves on two threads: the word-embedding table alone is 11.7M values.
            let h = p.len() / 2;
            let (p0, p1) = p.split_at_mut(h);
            let (g0, g1) = g.split_at(h);
            let (m0, m1) = m.split_at_mut(h);
            let (v0, v1) = v.split_at_mut(h);
            std::thread::scope(|s| {
                s.spawn(|| kernel(p0, g0, m0, v0));
                kernel(p1, g1, m1, v1);
            });
        }
        Ok(())
    }
}

/// HF `get_linear_schedule_with_warmup`: 0 -> lr over `warmup` steps, then linearly to 0.
pub fn linear_schedule(step: usize, warmup: usize, total: usize, lr: f32) -> f32 {
    if step < warmup {
        lr * step as f32 / warmup.max(1) as f32
    } else {
        lr * (total.saturating_sub(step)) as f32 / (total.saturating_sub(warmup)).max(1) as f32
    }
}
