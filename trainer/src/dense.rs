//! sentence-transformers' `Dense` module (`sentence_transformers.models.Dense`): a linear layer
//! and an activation applied to the pooled sentence vector, before `Normalize`. LaBSE and many
//! domain models end with one. Read from the module's folder: `config.json` (`in_features`,
//! `out_features`, `bias`, `activation_function`) and its weights (`linear.weight` [out, in],
//! `linear.bias`) in model.safetensors or pytorch_model.bin.

use anyhow::{bail, Context, Result};
use std::path::Path;

#[derive(Clone, Debug)]
pub struct DenseModule {
    pub in_features: usize,
    pub out_features: usize,
    /// Row-major [out_features][in_features].
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    /// tanh after the linear layer (else identity).
    pub tanh: bool,
    /// Largest |input| seen in calibration: the static input range of the paper's scheme.
    pub input_max: f32,
}

/// The activations the runtime implements, by the class path sentence-transformers stores.
const ACTIVATIONS: [(&str, bool); 4] = [
    ("torch.nn.modules.activation.Tanh", true),
    ("torch.nn.modules.linear.Identity", false),
    ("torch.nn.Tanh", true),
    ("torch.nn.Identity", false),
];

impl DenseModule {
    /// Reads the module in `folder`, whose input must be `hidden` wide.
    pub fn load(folder: &Path, hidden: usize) -> Result<DenseModule> {
        let config_path = folder.join("config.json");
        let text = std::fs::read_to_string(&config_path).with_context(|| format!("reading {} (the Dense module's config)", config_path.display()))?;
        let cfg: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", config_path.display()))?;
        let size = |k: &str| cfg.get(k).and_then(|v| v.as_u64()).filter(|&n| n >= 1).map(|n| n as usize).with_context(|| format!("{}: {k} must be a positive integer", config_path.display()));
        let (in_features, out_features) = (size("in_features")?, size("out_features")?);
        if in_features != hidden {
            bail!("{}: in_features {in_features} is not the pooled vector's width {hidden}; the runtime supports one Dense module right after the Pooling module", config_path.display());
        }
        let activation = cfg.get("activation_function").and_then(|v| v.as_str()).unwrap_or("torch.nn.modules.activation.Tanh");
        let Some(&(_, tanh)) = ACTIVATIONS.iter().find(|(name, _)| *name == activation) else {
            bail!("{}: activation_function {activation:?} is not supported; the runtime implements Tanh and Identity", config_path.display());
        };
        let has_bias = cfg.get("bias").and_then(|v| v.as_bool()).unwrap_or(true);
        let tensors = crate::model_dir::checkpoint(folder)?.load().with_context(|| format!("reading the Dense module's weights in {}", folder.display()))?;
        let get = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
            let t = tensors.get(name).with_context(|| format!("{}: the Dense module's weights have no {name:?}", folder.display()))?;
            if t.dims() != shape {
                bail!("{}: {name} is {:?}, expected {shape:?}", folder.display(), t.dims());
            }
            Ok(t.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1()?)
        };
        let weight = get("linear.weight", &[out_features, in_features])?;
        let bias = if has_bias { get("linear.bias", &[out_features])? } else { vec![0.0; out_features] };
        Ok(DenseModule { in_features, out_features, weight, bias, tanh, input_max: 0.0 })
    }

    /// `activation(W x + b)` for one pooled vector.
    pub fn apply(&self, x: &[f32]) -> Vec<f32> {
        self.weight
            .chunks_exact(self.in_features)
            .zip(&self.bias)
            .map(|(row, b)| {
                let y = row.iter().zip(x).map(|(w, v)| w * v).sum::<f32>() + b;
                if self.tanh {
                    y.tanh()
                } else {
                    y
                }
            })
            .collect()
    }
}

/// The Dense module of the sentence-transformers directory `dir` (modules.json), if it has one:
/// at most one, right after the Pooling module.
pub fn find(dir: &Path, hidden: usize) -> Result<Option<DenseModule>> {
    let p = dir.join("modules.json");
    if !p.is_file() {
        return Ok(None);
    }
    let mods: Vec<serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?)
        .with_context(|| format!("parsing {}", p.display()))?;
    let ty = |m: &serde_json::Value| m.get("type").and_then(|t| t.as_str()).unwrap_or("").to_string();
    let dense: Vec<usize> = (0..mods.len()).filter(|&i| ty(&mods[i]).ends_with(".Dense")).collect();
    match dense.as_slice() {
        [] => Ok(None),
        [i] => {
            if *i == 0 || !ty(&mods[i - 1]).ends_with(".Pooling") {
                bail!("{}: the Dense module must come right after the Pooling module (the runtime applies it to the pooled vector)", p.display());
            }
            let path = mods[*i].get("path").and_then(|v| v.as_str()).unwrap_or("");
            Ok(Some(DenseModule::load(&dir.join(path), hidden)?))
        }
        _ => bail!("{}: {} Dense modules; the runtime implements one", p.display(), dense.len()),
    }
}
