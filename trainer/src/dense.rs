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
    /// Reads the module in `folder`, whose input must be `width` wide (the pooled vector's or
    /// the previous Dense module's output).
    pub fn load(folder: &Path, width: usize) -> Result<DenseModule> {
        let config_path = folder.join("config.json");
        let text = std::fs::read_to_string(&config_path).with_context(|| format!("reading {} (the Dense module's config)", config_path.display()))?;
        let cfg: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", config_path.display()))?;
        let size = |k: &str| cfg.get(k).and_then(|v| v.as_u64()).filter(|&n| n >= 1).map(|n| n as usize).with_context(|| format!("{}: {k} must be a positive integer", config_path.display()));
        let (in_features, out_features) = (size("in_features")?, size("out_features")?);
        if in_features != width {
            bail!("{}: in_features {in_features} is not {width}, the width of what comes before it (the pooled vector, H per pooling mode, or the previous Dense module's out_features)", config_path.display());
        }
        // Options of newer sentence-transformers releases that change what the module computes.
        if cfg.get("use_residual").and_then(|v| v.as_bool()).unwrap_or(false) {
            bail!("{}: use_residual is true; the runtime implements Dense without a residual connection", config_path.display());
        }
        for key in ["module_input_name", "module_output_name"] {
            match cfg.get(key) {
                None | Some(serde_json::Value::Null) => {}
                Some(serde_json::Value::String(s)) if s == "sentence_embedding" => {}
                Some(v) => bail!("{}: {key} is {v}; the runtime applies Dense to the sentence embedding only", config_path.display()),
            }
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

/// Most Dense modules the runtime chains (`q8bert::model::MAX_DENSE_LAYERS`).
pub const MAX_CHAIN: usize = 8;

/// The Dense modules of the sentence-transformers directory `dir` (modules.json), in order:
/// none, or a run of them right after the Pooling module (a Normalize module may follow). The
/// first one's input is `pooled_width` wide (H per pooling mode).
pub fn find(dir: &Path, pooled_width: usize) -> Result<Vec<DenseModule>> {
    let p = dir.join("modules.json");
    if !p.is_file() {
        return Ok(Vec::new());
    }
    let mods: Vec<serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?)
        .with_context(|| format!("parsing {}", p.display()))?;
    let ty = |m: &serde_json::Value| m.get("type").and_then(|t| t.as_str()).unwrap_or("").to_string();
    let dense: Vec<usize> = (0..mods.len()).filter(|&i| ty(&mods[i]).ends_with(".Dense")).collect();
    let Some(&first) = dense.first() else { return Ok(Vec::new()) };
    if first == 0 || !ty(&mods[first - 1]).ends_with(".Pooling") || dense.windows(2).any(|w| w[1] != w[0] + 1) {
        bail!("{}: the Dense modules must come one after another right after the Pooling module (the runtime applies them to the pooled vector)", p.display());
    }
    if dense.len() > MAX_CHAIN {
        bail!("{}: {} Dense modules; the runtime chains at most {}", p.display(), dense.len(), MAX_CHAIN);
    }
    let mut chain: Vec<DenseModule> = Vec::new();
    for i in dense {
        let path = mods[i].get("path").and_then(|v| v.as_str()).unwrap_or("");
        let width = chain.last().map_or(pooled_width, |d| d.out_features);
        chain.push(DenseModule::load(&dir.join(path), width)?);
    }
    Ok(chain)
}
