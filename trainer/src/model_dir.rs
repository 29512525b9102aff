//! Checks of a Hugging Face model directory, in the order that gives the most useful error first:
//! the directory itself, config.json and its model_type, then the weights and the vocabulary.
//! Every error names the file it looked for and says what to do next.

use crate::bert::BertConfig;
use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// What a `--model` directory must hold.
pub const LAYOUT: &str = "a Hugging Face BERT model directory (config.json, model.safetensors, vocab.txt; or pytorch_model.bin or shards with their index instead of model.safetensors)";

/// Checks the whole directory: config first (an unsupported model_type is the real problem even
/// when other files are missing too), then weights and vocabulary. Returns the config.
pub fn check(dir: &Path) -> Result<BertConfig> {
    let cfg = config(dir)?;
    checkpoint(dir)?;
    if subword_files(dir)?.is_none() {
        vocab_path(dir)?;
    }
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

/// The weights of a model directory, in the order transformers prefers them.
#[derive(Clone, Debug)]
pub enum Checkpoint {
    /// model.safetensors.
    Safetensors(PathBuf),
    /// model.safetensors.index.json or pytorch_model.bin.index.json: the index and its
    /// `weight_map` (tensor name -> shard file in the same directory).
    Sharded { index: PathBuf, weight_map: BTreeMap<String, String> },
    /// pytorch_model.bin: PyTorch's zip/pickle format (torch.save since PyTorch 1.6).
    Pytorch(PathBuf),
}

impl Checkpoint {
    /// The file that names the checkpoint (the index for a sharded one).
    pub fn path(&self) -> &Path {
        match self {
            Checkpoint::Safetensors(p) | Checkpoint::Pytorch(p) => p,
            Checkpoint::Sharded { index, .. } => index,
        }
    }

    /// Every tensor of the checkpoint under its name in the file (prefixes such as `bert.` are
    /// left to the model loader, the same for every layout).
    pub fn load(&self) -> Result<HashMap<String, Tensor>> {
        match self {
            Checkpoint::Safetensors(p) => load_safetensors(p),
            Checkpoint::Pytorch(p) => load_pytorch(p),
            Checkpoint::Sharded { index, weight_map } => {
                let dir = index.parent().unwrap_or(Path::new("."));
                let mut by_shard: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
                for (name, shard) in weight_map {
                    by_shard.entry(shard.as_str()).or_default().push(name.as_str());
                }
                let mut out = HashMap::new();
                for (shard, names) in by_shard {
                    let path = dir.join(shard);
                    let mut tensors = if shard.ends_with(".bin") { load_pytorch(&path)? } else { load_safetensors(&path)? };
                    for name in names {
                        let t = tensors.remove(name).with_context(|| {
                            format!("{}: no tensor {name:?}, which {} places in this shard; the download may be incomplete or mixed from two revisions (download the model again)", path.display(), index.display())
                        })?;
                        out.insert(name.to_string(), t);
                    }
                }
                Ok(out)
            }
        }
    }
}

fn load_safetensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    candle_core::safetensors::load(path, &Device::Cpu)
        .with_context(|| format!("loading {}: not a readable safetensors file (download it again, or write it with `model.save_pretrained(DIR)` in transformers)", path.display()))
}

/// A PyTorch checkpoint read with candle's pickle reader: the zip format of torch.save since
/// PyTorch 1.6 (the legacy format is refused with the conversion command).
fn load_pytorch(path: &Path) -> Result<HashMap<String, Tensor>> {
    use std::io::Read;
    let mut magic = [0u8; 4];
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let n = f.read(&mut magic).with_context(|| format!("reading {}", path.display()))?;
    let p = path.display();
    let convert = format!(
        "python -c \"import torch; from safetensors.torch import save_file; sd = torch.load('{p}', map_location='cpu'); save_file({{k: v.clone().contiguous() for k, v in sd.items()}}, 'model.safetensors', metadata={{'format': 'pt'}})\" (then move model.safetensors beside config.json)"
    );
    if n < 4 || &magic != b"PK\x03\x04" {
        bail!("{p}: not a zip archive, so not PyTorch's checkpoint format since 1.6 (the legacy torch.save format is not read); convert it once with\n  {convert}");
    }
    let tensors = candle_core::pickle::read_all(path).with_context(|| format!("reading {p} as a PyTorch checkpoint; convert it once with\n  {convert}"))?;
    if tensors.is_empty() {
        bail!("{p}: no tensors found; a checkpoint holds a state_dict (`torch.save(model.state_dict(), ...)` or `model.save_pretrained(DIR)`), not a pickled module; convert it once with\n  {convert}");
    }
    Ok(tensors.into_iter().collect())
}

/// The weights of `dir`: model.safetensors, else model.safetensors.index.json and its shards,
/// else pytorch_model.bin, else pytorch_model.bin.index.json and its shards; or an error naming
/// the file looked for and saying how to get one.
pub fn checkpoint(dir: &Path) -> Result<Checkpoint> {
    check_is_dir(dir)?;
    let path = dir.join("model.safetensors");
    if path.is_file() {
        return Ok(Checkpoint::Safetensors(path));
    }
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        return sharded(index);
    }
    let bin = dir.join("pytorch_model.bin");
    if bin.is_file() {
        return Ok(Checkpoint::Pytorch(bin));
    }
    let index = dir.join("pytorch_model.bin.index.json");
    if index.is_file() {
        return sharded(index);
    }
    let d = dir.display();
    let others: Vec<&str> = ["tf_model.h5", "flax_model.msgpack", "model.onnx", "onnx/model.onnx"].into_iter().filter(|f| dir.join(f).is_file()).collect();
    if !others.is_empty() {
        bail!(
            "{} not found (nor pytorch_model.bin): {d} has {} only; the trainer reads PyTorch weights (transformers: `from_pretrained(DIR, from_tf=True)` or `from_flax=True`, then `save_pretrained(DIR)`)",
            path.display(),
            others.join(", ")
        );
    }
    bail!(
        "{} not found (nor model.safetensors.index.json, pytorch_model.bin): {d} is not {LAYOUT}; write the weights with `model.save_pretrained(DIR)` in transformers",
        path.display()
    )
}

/// Reads an index and checks that every shard it names is there.
fn sharded(index: PathBuf) -> Result<Checkpoint> {
    let text = std::fs::read_to_string(&index).with_context(|| format!("reading {}", index.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", index.display()))?;
    let map = v.get("weight_map").and_then(|m| m.as_object()).with_context(|| {
        format!("{}: no \"weight_map\" object (tensor name -> shard file); download the model again or write it with `model.save_pretrained(DIR)`", index.display())
    })?;
    let dir = index.parent().unwrap_or(Path::new("."));
    let mut weight_map = BTreeMap::new();
    for (name, shard) in map {
        let shard = shard.as_str().with_context(|| format!("{}: weight_map[{name:?}] is not a file name", index.display()))?;
        let shard_path = dir.join(shard);
        if !shard_path.is_file() {
            bail!(
                "{} not found: {} places {name:?} in it; download every shard the index names (`huggingface-cli download MODEL --local-dir DIR`)",
                shard_path.display(),
                index.display()
            );
        }
        weight_map.insert(name.clone(), shard.to_string());
    }
    if weight_map.is_empty() {
        bail!("{}: weight_map is empty; download the model again or write it with `model.save_pretrained(DIR)`", index.display());
    }
    Ok(Checkpoint::Sharded { index, weight_map })
}

/// Where a byte-level BPE or Unigram tokenizer's files are.
pub enum SubwordFiles {
    BpeTokenizerJson(PathBuf),
    BpeVocabMerges { vocab: PathBuf, merges: PathBuf },
    /// SentencePiece Unigram (XLM-RoBERTa), from tokenizer.json only.
    UnigramTokenizerJson(PathBuf),
    /// WordPiece from tokenizer.json when there is no vocab.txt (transformers 5 saves only
    /// tokenizer.json).
    WordPieceTokenizerJson(PathBuf),
}

/// The tokenizer files of a directory without vocab.txt: tokenizer.json whose model is BPE,
/// Unigram or WordPiece, or vocab.json + merges.txt. None for a directory with vocab.txt.
pub fn subword_files(dir: &Path) -> Result<Option<SubwordFiles>> {
    check_is_dir(dir)?;
    if dir.join("vocab.txt").is_file() {
        return Ok(None);
    }
    let tj = dir.join("tokenizer.json");
    if tj.is_file() {
        // Only the model type is needed here; the full parse comes with the tokenizer.
        let text = std::fs::read_to_string(&tj).with_context(|| format!("reading {}", tj.display()))?;
        let t: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", tj.display()))?;
        match t["model"]["type"].as_str() {
            Some("BPE") => return Ok(Some(SubwordFiles::BpeTokenizerJson(tj))),
            Some("Unigram") => return Ok(Some(SubwordFiles::UnigramTokenizerJson(tj))),
            Some("WordPiece") => return Ok(Some(SubwordFiles::WordPieceTokenizerJson(tj))),
            None => return Ok(None),
            Some(other) => bail!(
                "{}: tokenizer model {other} is not supported; supported: WordPiece (BERT, DistilBERT: vocab.txt), byte-level BPE (RoBERTa: tokenizer.json, or vocab.json + merges.txt) and SentencePiece Unigram (XLM-RoBERTa: tokenizer.json)",
                tj.display()
            ),
        }
    }
    let (vocab, merges) = (dir.join("vocab.json"), dir.join("merges.txt"));
    if vocab.is_file() && merges.is_file() {
        return Ok(Some(SubwordFiles::BpeVocabMerges { vocab, merges }));
    }
    Ok(None)
}

/// vocab.txt, the WordPiece vocabulary.
pub fn vocab_path(dir: &Path) -> Result<PathBuf> {
    check_is_dir(dir)?;
    let path = dir.join("vocab.txt");
    if path.is_file() {
        return Ok(path);
    }
    let d = dir.display();
    if dir.join("sentencepiece.bpe.model").is_file() || dir.join("spiece.model").is_file() {
        bail!(
            "{} not found, and the trainer reads a SentencePiece tokenizer from tokenizer.json only: write it with\n  \
             python -c \"from transformers import AutoTokenizer; AutoTokenizer.from_pretrained('{d}').save_pretrained('{d}')\"",
            path.display()
        );
    }
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
