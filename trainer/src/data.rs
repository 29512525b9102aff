//! Task data (GLUE-format TSV) and tokenization. All tokenization goes through this module so the
//! tokenizer is the runtime's own (`q8bert::tokenizer`).

use anyhow::{bail, Context, Result};
use q8bert::tokenizer as tok;
use serde::Deserialize;
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    Sst2,
    Cola,
    Mrpc,
    Stsb,
    /// --train-file/--eval-file with integer labels.
    Classification,
    /// --train-file/--eval-file with float labels.
    Regression,
}

impl Task {
    pub fn parse(s: &str) -> Result<Task> {
        Ok(match s.to_ascii_lowercase().replace('-', "").as_str() {
            "sst2" => Task::Sst2,
            "cola" => Task::Cola,
            "mrpc" => Task::Mrpc,
            "stsb" => Task::Stsb,
            "classification" => Task::Classification,
            "regression" => Task::Regression,
            _ => bail!("unknown task {s:?} (sst2, cola, mrpc, stsb, classification, regression)"),
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            Task::Sst2 => "sst2",
            Task::Cola => "cola",
            Task::Mrpc => "mrpc",
            Task::Stsb => "stsb",
            Task::Classification => "classification",
            Task::Regression => "regression",
        }
    }
    /// Directory name in a GLUE-format data dir.
    pub fn glue_dir(self) -> Option<&'static str> {
        match self {
            Task::Sst2 => Some("SST-2"),
            Task::Cola => Some("CoLA"),
            Task::Mrpc => Some("MRPC"),
            Task::Stsb => Some("STS-B"),
            _ => None,
        }
    }
    pub fn is_regression(self) -> bool {
        matches!(self, Task::Stsb | Task::Regression)
    }
    /// The metric that picks the best checkpoint (HF key without the `eval_` prefix).
    pub fn main_metric(self) -> &'static str {
        match self {
            Task::Cola => "matthews_correlation",
            Task::Mrpc => "f1",
            Task::Stsb | Task::Regression => "pearson",
            Task::Sst2 | Task::Classification => "accuracy",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Example {
    pub text_a: String,
    pub text_b: Option<String>,
    /// Class index, or the score for regression.
    pub label: f32,
}

/// Reads a TSV with a header row: `text<TAB>label` or `text_a<TAB>text_b<TAB>label`
/// (the GLUE files' layout). Fields never contain tabs or newlines.
pub fn read_tsv(path: &Path, regression: bool) -> Result<Vec<Example>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text.lines();
    let header = lines.next().with_context(|| format!("{} is empty", path.display()))?;
    let ncol = header.split('\t').count();
    if !(2..=3).contains(&ncol) {
        bail!("{}: expected 2 or 3 columns (text [text_b] label), header has {ncol}", path.display());
    }
    let mut out = Vec::new();
    for (i, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != ncol {
            bail!("{}:{}: {} fields, header has {ncol}", path.display(), i + 2, f.len());
        }
        let label: f32 = f[ncol - 1].trim().parse().with_context(|| format!("{}:{}: bad label {:?}", path.display(), i + 2, f[ncol - 1]))?;
        if !regression && (label < 0.0 || label.fract() != 0.0) {
            bail!("{}:{}: classification label must be a non-negative integer, got {label}", path.display(), i + 2);
        }
        out.push(Example { text_a: f[0].to_owned(), text_b: (ncol == 3).then(|| f[1].to_owned()), label });
    }
    Ok(out)
}

/// Special tokens and flags from `tokenizer_config.json` (HF names and defaults).
#[derive(Clone, Debug, Deserialize)]
pub struct TokenizerFileConfig {
    #[serde(default = "yes")]
    pub do_lower_case: bool,
    #[serde(default)]
    pub strip_accents: Option<bool>,
    #[serde(default = "yes")]
    pub tokenize_chinese_chars: bool,
    #[serde(default = "unk")]
    pub unk_token: String,
    #[serde(default = "cls")]
    pub cls_token: String,
    #[serde(default = "sep")]
    pub sep_token: String,
    #[serde(default = "pad")]
    pub pad_token: String,
    #[serde(default = "mask")]
    pub mask_token: String,
}
fn yes() -> bool {
    true
}
fn unk() -> String {
    "[UNK]".into()
}
fn cls() -> String {
    "[CLS]".into()
}
fn sep() -> String {
    "[SEP]".into()
}
fn pad() -> String {
    "[PAD]".into()
}
fn mask() -> String {
    "[MASK]".into()
}

/// WordPiece tokenizer of a model directory (vocab.txt + tokenizer_config.json).
pub struct TextTokenizer {
    pub vocab: Vec<String>,
    pub config: TokenizerFileConfig,
    encoded: tok::EncodedVocab,
    settings: tok::TokenizerSettings,
}

/// One tokenized example, without padding.
#[derive(Clone, Debug)]
pub struct Encoded {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
    pub label: f32,
}

impl TextTokenizer {
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let vocab_path = crate::model_dir::vocab_path(dir)?;
        let vocab: Vec<String> = std::fs::read_to_string(&vocab_path)
            .with_context(|| format!("reading {}", vocab_path.display()))?
            .lines()
            .map(|l| l.trim_end_matches('\r').to_owned())
            .collect();
        let cfg_path = dir.join("tokenizer_config.json");
        let config: TokenizerFileConfig = if cfg_path.exists() {
            serde_json::from_str(&std::fs::read_to_string(&cfg_path).with_context(|| format!("reading {}", cfg_path.display()))?)
                .with_context(|| format!("parsing {}", cfg_path.display()))?
        } else {
            serde_json::from_str("{}")?
        };
        Self::new(vocab, config).with_context(|| format!("{} with {}", vocab_path.display(), cfg_path.display()))
    }

    pub fn new(vocab: Vec<String>, config: TokenizerFileConfig) -> Result<Self> {
        let id = |t: &str| -> Result<u32> {
            vocab.iter().position(|v| v == t).map(|i| i as u32).with_context(|| format!("special token {t:?} not in vocab"))
        };
        let settings = tok::TokenizerSettings {
            do_lower_case: config.do_lower_case,
            // HF: strip_accents=None follows lowercasing.
            strip_accents: config.strip_accents.unwrap_or(config.do_lower_case),
            tokenize_chinese_chars: config.tokenize_chinese_chars,
            unk_id: id(&config.unk_token)?,
            cls_id: id(&config.cls_token)?,
            sep_id: id(&config.sep_token)?,
            pad_id: id(&config.pad_token)?,
            max_input_chars_per_word: 100,
            kind: tok::TokenizerKind::WordPiece,
        };
        let encoded = tok::encode_vocab(&vocab).map_err(|e| anyhow::anyhow!("vocab: {e}"))?;
        Ok(TextTokenizer { vocab, config, encoded, settings })
    }

    pub fn settings(&self) -> &tok::TokenizerSettings {
        &self.settings
    }

    /// Lower-cases the input before WordPiece, as sentence-transformers' Transformer module does
    /// with `do_lower_case: true` (sentence_bert_config.json) on top of the tokenizer's own
    /// settings; accent stripping stays the tokenizer's.
    pub fn lower_case_input(&mut self) {
        self.settings.do_lower_case = true;
    }

    /// Tokenizes examples as `[CLS] a [SEP] (b [SEP])`, truncated longest-first to `max_len`.
    pub fn encode_all(&self, examples: &[Example], max_len: usize) -> Result<Vec<Encoded>> {
        let vocab = self.encoded.vocab().map_err(|e| anyhow::anyhow!("vocab: {e}"))?;
        let t = tok::Tokenizer::new(vocab, self.settings.clone()).map_err(|e| anyhow::anyhow!("tokenizer: {e}"))?;
        let mut enc = tok::Encoding::default();
        let mut out = Vec::with_capacity(examples.len());
        for ex in examples {
            t.encode_into(&ex.text_a, ex.text_b.as_deref(), max_len, tok::Truncation::LongestFirst, &mut enc)
                .map_err(|e| anyhow::anyhow!("tokenizing {:?}: {e}", ex.text_a))?;
            out.push(Encoded {
                ids: enc.ids.iter().map(|&i| i as u32).collect(),
                type_ids: enc.type_ids.iter().map(|&i| i as u32).collect(),
                label: ex.label,
            });
        }
        Ok(out)
    }

    pub fn pad_id(&self) -> u32 {
        self.settings.pad_id
    }
}

/// FNV-1a 64 of a file's bytes, for the provenance metadata ("data hash").
pub fn file_hash(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path)?;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    Ok(format!("fnv1a64:{h:016x}"))
}
