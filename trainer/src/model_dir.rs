//! Checks of a Hugging Face model directory, in the order that gives the most useful error first:
//! the directory itself, config.json and its model_type, then the weights and the vocabulary.
//! Every error names the file it looked for and says what to do next.

use crate::bert::BertConfig;
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

/// What a `--model` directory must hold.
pub const LAYOUT: &str = "a Hugging Face BERT model directory (config.json, model.safetensors, vocab.txt)";

/// Checks the whole directory: config first (an unsupported model_type is the real problem even
/// when other files are missing too), then weights and vocabulary. Returns the config.
pub fn check(dir: &Path) -> Result<BertConfig> {
    let cfg = config(dir)?;
    weights_path(dir)?;
    vocab_path(dir)?;
    Ok(cfg)
}

/// The directory's config.json, parsed and checked (model_type, architectures, hidden_act).
pub fn config(dir: &Path) -> Result<BertConfig> {
    check_is_dir(dir)?;
    let path = dir.join("config.json");
    if !path.is_file() {
        bail!(
            "{} not found: {} is not {LAYOUT}; download one with `huggingface-cli download MODEL --local-dir DIR`, or write it with `model.save_pretrained(DIR)` in transformers",
            path.display(),
            dir.display()
        );
    }
    BertConfig::from_file(&path)
}

fn check_is_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if dir.is_file() {
        bail!("{} is a file; --model takes {LAYOUT}", dir.display());
    }
    bail!("{}: no such directory; --model takes {LAYOUT}", dir.display())
}

/// model.safetensors, or an error that says how to get it from the other checkpoint formats.
pub fn weights_path(dir: &Path) -> Result<PathBuf> {
    check_is_dir(dir)?;
    let path = dir.join("model.safetensors");
    if path.is_file() {
        return Ok(path);
    }
    let d = dir.display();
    if dir.join("pytorch_model.bin").is_file() {
        bail!(
            "{} not found: {d} has only pytorch_model.bin, and the trainer reads safetensors only today. Convert it once with\n  \
             python -c \"import torch; from safetensors.torch import save_file; sd = torch.load('{d}/pytorch_model.bin', map_location='cpu'); save_file({{k: v.clone().contiguous() for k, v in sd.items()}}, '{d}/model.safetensors', metadata={{'format': 'pt'}})\"",
            path.display()
        );
    }
    if dir.join("model.safetensors.index.json").is_file() {
        bail!(
            "{} not found: {d} holds a sharded checkpoint (model.safetensors.index.json), which the trainer does not read yet; merge it with\n  \
             python -c \"from transformers import AutoModel; AutoModel.from_pretrained('{d}').save_pretrained('{d}-merged', max_shard_size='100GB')\"\n\
             (AutoModelForSequenceClassification instead of AutoModel for a classifier)",
            path.display()
        );
    }
    let others: Vec<&str> = ["tf_model.h5", "flax_model.msgpack", "model.onnx", "onnx/model.onnx"].into_iter().filter(|f| dir.join(f).is_file()).collect();
    if !others.is_empty() {
        bail!(
            "{} not found: {d} has {} only; the trainer reads PyTorch weights as model.safetensors (transformers: `from_pretrained(DIR, from_tf=True)` or `from_flax=True`, then `save_pretrained(DIR)`)",
            path.display(),
            others.join(", ")
        );
    }
    bail!("{} not found: {d} is not {LAYOUT}; write the weights with `model.save_pretrained(DIR)` in transformers (safetensors is its default)", path.display())
}

/// vocab.txt, the WordPiece vocabulary.
pub fn vocab_path(dir: &Path) -> Result<PathBuf> {
    check_is_dir(dir)?;
    let path = dir.join("vocab.txt");
    if path.is_file() {
        return Ok(path);
    }
    let d = dir.display();
    if dir.join("tokenizer.json").is_file() {
        bail!(
            "{} not found: the trainer reads the WordPiece vocabulary from vocab.txt; write it from {d}/tokenizer.json with\n  \
             python -c \"from tokenizers import Tokenizer; Tokenizer.from_file('{d}/tokenizer.json').model.save('{d}')\"",
            path.display()
        );
    }
    bail!(
        "{} not found: {d} is not {LAYOUT}; write the vocabulary with `AutoTokenizer.from_pretrained(MODEL).save_pretrained(DIR)` in transformers",
        path.display()
    )
}
