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

/// Tokenizer of a model directory: WordPiece (vocab.txt + tokenizer_config.json) or byte-level
/// BPE (RoBERTa: tokenizer.json, or vocab.json + merges.txt).
pub struct TextTokenizer {
    pub vocab: Vec<String>,
    pub config: TokenizerFileConfig,
    encoded: tok::EncodedVocab,
    settings: tok::TokenizerSettings,
    /// Byte-level BPE: the merges in `merges.txt` order and their table for the runtime.
    pub bpe: Option<BpeFiles>,
    pub unigram: Option<UnigramFiles>,
}

/// A SentencePiece Unigram tokenizer as tokenizer.json describes it.
pub struct UnigramFiles {
    pub scores: Vec<f64>,
    pub charsmap: Option<Vec<u8>>,
    pub collapse_spaces: bool,
}

pub struct BpeFiles {
    pub merges: Vec<(String, String)>,
    pub add_prefix_space: bool,
    rows: Vec<u32>,
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
        match crate::model_dir::subword_files(dir)? {
            Some(crate::model_dir::SubwordFiles::UnigramTokenizerJson(p)) => return Self::from_unigram_json(dir, &p),
            Some(crate::model_dir::SubwordFiles::WordPieceTokenizerJson(p)) => return Self::from_wordpiece_json(dir, &p),
            Some(t) => return Self::from_bpe_files(dir, t),
            None => {}
        }
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
        Ok(TextTokenizer { vocab, config, encoded, settings, bpe: None, unigram: None })
    }

    /// A byte-level BPE tokenizer from its vocabulary (by id), merges (`merges.txt` order) and
    /// special tokens (`config`'s unk/cls/sep/pad/mask: RoBERTa's `<unk>`, `<s>`, `</s>`, `<pad>`,
    /// `<mask>`).
    pub fn new_bpe(vocab: Vec<String>, merges: Vec<(String, String)>, add_prefix_space: bool, config: TokenizerFileConfig) -> Result<Self> {
        let settings = roberta_settings(&vocab, &config, tok::TokenizerKind::ByteLevelBpe { add_prefix_space })?;
        let encoded = tok::encode_vocab(&vocab).map_err(|e| anyhow::anyhow!("vocab: {e}"))?;
        let rows = tok::encode_merges(&encoded.vocab().map_err(|e| anyhow::anyhow!("vocab: {e}"))?, &merges).map_err(|(i, _)| {
            anyhow::anyhow!("merge {} ({:?} {:?}): its parts or their concatenation are not in the vocabulary", i + 1, merges[i].0, merges[i].1)
        })?;
        Ok(TextTokenizer { vocab, config, encoded, settings, bpe: Some(BpeFiles { merges, add_prefix_space, rows }), unigram: None })
    }

    /// A SentencePiece Unigram tokenizer from its pieces (by id), their scores, the normalizer's
    /// charsmap and XLM-RoBERTa's special tokens in `config`.
    pub fn new_unigram(vocab: Vec<String>, unigram: UnigramFiles, config: TokenizerFileConfig) -> Result<Self> {
        let settings = roberta_settings(&vocab, &config, tok::TokenizerKind::Unigram)?;
        let encoded = tok::encode_vocab(&vocab).map_err(|e| anyhow::anyhow!("vocab: {e}"))?;
        let scores = tok::encode_scores(&unigram.scores);
        let charsmap = unigram.charsmap.as_deref().map(tok::Charsmap::from_bytes).transpose().map_err(|e| anyhow::anyhow!("precompiled_charsmap: {e}"))?;
        tok::Unigram::new(vocab.len(), &scores, charsmap, unigram.collapse_spaces).map_err(|e| anyhow::anyhow!("Unigram scores: {e}"))?;
        Ok(TextTokenizer { vocab, config, encoded, settings, bpe: None, unigram: Some(unigram) })
    }

    /// BERT's WordPiece from tokenizer.json (a directory without vocab.txt, as transformers 5
    /// saves it): the vocabulary from `model.vocab`, the normalization from its BertNormalizer
    /// (which the fast tokenizer follows, whatever tokenizer_config.json says), special tokens
    /// from tokenizer_config.json.
    fn from_wordpiece_json(dir: &Path, path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let t: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let cfg_path = dir.join("tokenizer_config.json");
        let mut config: TokenizerFileConfig = if cfg_path.is_file() {
            serde_json::from_str(&std::fs::read_to_string(&cfg_path).with_context(|| format!("reading {}", cfg_path.display()))?)
                .with_context(|| format!("parsing {}", cfg_path.display()))?
        } else {
            serde_json::from_str("{}")?
        };
        let vocab = parse_wordpiece_tokenizer_json(&t, &mut config).with_context(|| format!("{}", path.display()))?;
        Self::new(vocab, config).with_context(|| format!("{} with {}", path.display(), cfg_path.display()))
    }

    fn from_unigram_json(dir: &Path, path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let t: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let (vocab, unigram, unk, cls_sep) = parse_unigram_tokenizer_json(&t).with_context(|| format!("{}", path.display()))?;
        let mut names = roberta_special_tokens(dir)?;
        names[0] = unk;
        if let Some((cls, sep)) = cls_sep {
            names[1] = cls;
            names[2] = sep;
        }
        let [unk, cls, sep, pad, mask] = names;
        let config = TokenizerFileConfig {
            do_lower_case: false,
            strip_accents: Some(false),
            tokenize_chinese_chars: false,
            unk_token: unk,
            cls_token: cls,
            sep_token: sep,
            pad_token: pad,
            mask_token: mask,
        };
        Self::new_unigram(vocab, unigram, config).with_context(|| format!("{}", path.display()))
    }

    fn from_bpe_files(dir: &Path, files: crate::model_dir::SubwordFiles) -> Result<Self> {
        let read = |p: &Path| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()));
        let json = |p: &Path| -> Result<serde_json::Value> { serde_json::from_str(&read(p)?).with_context(|| format!("parsing {}", p.display())) };
        let mut names = roberta_special_tokens(dir)?;
        let cfg_path = dir.join("tokenizer_config.json");
        let mut add_prefix_space = cfg_path.is_file() && json(&cfg_path)?["add_prefix_space"].as_bool().unwrap_or(false);
        let (vocab, merges, from) = match files {
            crate::model_dir::SubwordFiles::BpeTokenizerJson(p) => {
                let t = json(&p)?;
                let (vocab, merges, prefix, cls_sep) = parse_bpe_tokenizer_json(&t).with_context(|| format!("{}", p.display()))?;
                add_prefix_space = prefix;
                if let Some((cls, sep)) = cls_sep {
                    names[1] = cls;
                    names[2] = sep;
                }
                (vocab, merges, p)
            }
            crate::model_dir::SubwordFiles::BpeVocabMerges { vocab, merges } => {
                let map = json(&vocab)?;
                let map = map.as_object().with_context(|| format!("{}: expected a JSON object of token -> id", vocab.display()))?;
                let v = vocab_by_id(map).with_context(|| format!("{}", vocab.display()))?;
                let m = read(&merges)?
                    .lines()
                    .filter(|l| !l.starts_with("#version") && !l.trim().is_empty())
                    .map(|l| l.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())).with_context(|| format!("{}: line {l:?} is not \"left right\"", merges.display())))
                    .collect::<Result<Vec<_>>>()?;
                (v, m, merges)
            }
            crate::model_dir::SubwordFiles::UnigramTokenizerJson(p) | crate::model_dir::SubwordFiles::WordPieceTokenizerJson(p) => bail!("{}: not a BPE tokenizer", p.display()),
        };
        let [unk, cls, sep, pad, mask] = names;
        let config = TokenizerFileConfig {
            do_lower_case: false,
            strip_accents: Some(false),
            tokenize_chinese_chars: false,
            unk_token: unk,
            cls_token: cls,
            sep_token: sep,
            pad_token: pad,
            mask_token: mask,
        };
        Self::new_bpe(vocab, merges, add_prefix_space, config).with_context(|| format!("{}", from.display()))
    }

    pub fn settings(&self) -> &tok::TokenizerSettings {
        &self.settings
    }

    /// Lower-cases the input before WordPiece, as sentence-transformers' Transformer module does
    /// with `do_lower_case: true` (sentence_bert_config.json) on top of the tokenizer's own
    /// settings; accent stripping stays the tokenizer's. Byte-level BPE has no such step here.
    pub fn lower_case_input(&mut self) -> Result<()> {
        if self.bpe.is_some() || self.unigram.is_some() {
            bail!("do_lower_case: true with a byte-level BPE or Unigram tokenizer is not supported (the runtime has no lower-casing step for them); set it to false in sentence_bert_config.json if the model was trained on cased text");
        }
        self.settings.do_lower_case = true;
        Ok(())
    }

    /// Tokenizes examples as `[CLS] a [SEP] (b [SEP])`, truncated longest-first to `max_len`.
    pub fn encode_all(&self, examples: &[Example], max_len: usize) -> Result<Vec<Encoded>> {
        let vocab = self.encoded.vocab().map_err(|e| anyhow::anyhow!("vocab: {e}"))?;
        let scores = self.unigram.as_ref().map(|u| tok::encode_scores(&u.scores));
        let t = match (&self.bpe, &self.unigram, &scores) {
            (Some(b), _, _) => {
                let merges = tok::Merges::from_table(&b.rows, vocab.len()).map_err(|e| anyhow::anyhow!("merges: {e}"))?;
                tok::Tokenizer::with_merges(vocab, merges, self.settings.clone())
            }
            (None, Some(u), Some(scores)) => {
                let charsmap = u.charsmap.as_deref().map(tok::Charsmap::from_bytes).transpose().map_err(|e| anyhow::anyhow!("charsmap: {e}"))?;
                let unigram = tok::Unigram::new(vocab.len(), scores, charsmap, u.collapse_spaces).map_err(|e| anyhow::anyhow!("Unigram: {e}"))?;
                tok::Tokenizer::with_unigram(vocab, unigram, self.settings.clone())
            }
            _ => tok::Tokenizer::new(vocab, self.settings.clone()),
        }
        .map_err(|e| anyhow::anyhow!("tokenizer: {e}"))?;
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

/// Vocabulary by id from a token -> id map; ids must be 0..n without gaps.
fn vocab_by_id(map: &serde_json::Map<String, serde_json::Value>) -> Result<Vec<String>> {
    let mut v = vec![None; map.len()];
    for (t, id) in map {
        let i = id.as_u64().with_context(|| format!("token {t:?}: id {id} is not a number"))? as usize;
        match v.get_mut(i) {
            Some(slot @ None) => *slot = Some(t.clone()),
            _ => bail!("token ids are not 0..{} without gaps (token {t:?} has id {i})", map.len()),
        }
    }
    Ok(v.into_iter().map(|t| t.unwrap_or_default()).collect())
}

/// A byte-level BPE `tokenizer.json` as RoBERTa's: vocabulary (with added tokens), merges,
/// ByteLevel `add_prefix_space`, RobertaProcessing's cls and sep. Anything else in the
/// pipeline is refused by name, since the runtime would tokenize differently.
#[allow(clippy::type_complexity)]
fn parse_bpe_tokenizer_json(t: &serde_json::Value) -> Result<(Vec<String>, Vec<(String, String)>, bool, Option<(String, String)>)> {
    let m = &t["model"];
    for (key, ok) in [("dropout", None), ("continuing_subword_prefix", Some("")), ("end_of_word_suffix", Some(""))] {
        let v = &m[key];
        if !(v.is_null() || v.as_str() == ok) {
            bail!("BPE model.{key} = {v} is not supported (RoBERTa's byte-level BPE has none)");
        }
    }
    if m["byte_fallback"].as_bool() == Some(true) {
        bail!("BPE model.byte_fallback is not supported");
    }
    if !t["normalizer"].is_null() {
        bail!("normalizer {} is not supported with byte-level BPE (RoBERTa has none)", t["normalizer"]["type"]);
    }
    let pre = &t["pre_tokenizer"];
    if pre["type"].as_str() != Some("ByteLevel") || pre["use_regex"].as_bool() == Some(false) {
        bail!("pre_tokenizer {} is not supported; byte-level BPE needs ByteLevel with GPT-2's regex", pre["type"]);
    }
    let post = &t["post_processor"];
    let cls_sep = match post["type"].as_str() {
        Some("RobertaProcessing") => {
            let name = |k: &str| post[k][0].as_str().map(str::to_string).with_context(|| format!("post_processor.{k}"));
            Some((name("cls")?, name("sep")?))
        }
        _ => bail!("post_processor {} is not supported; byte-level BPE needs RobertaProcessing (<s> a </s></s> b </s>)", post["type"]),
    };
    let map = m["vocab"].as_object().context("model.vocab is not an object")?;
    let mut map = map.clone();
    for a in t["added_tokens"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        if let (Some(c), Some(id)) = (a["content"].as_str(), a["id"].as_u64()) {
            map.entry(c.to_string()).or_insert(id.into());
        }
    }
    let vocab = vocab_by_id(&map)?;
    let merges = m["merges"]
        .as_array()
        .context("model.merges is not a list")?
        .iter()
        .map(|x| match x {
            serde_json::Value::String(s) => s.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())).with_context(|| format!("merge {s:?}")),
            serde_json::Value::Array(p) if p.len() == 2 => {
                Ok((p[0].as_str().context("merge")?.to_string(), p[1].as_str().context("merge")?.to_string()))
            }
            other => bail!("merge {other} is neither \"a b\" nor [a, b]"),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((vocab, merges, pre["add_prefix_space"].as_bool().unwrap_or(false), cls_sep))
}

/// Settings of a RoBERTa-family tokenizer (no WordPiece normalization) whose special tokens are
/// `config`'s.
fn roberta_settings(vocab: &[String], config: &TokenizerFileConfig, kind: tok::TokenizerKind) -> Result<tok::TokenizerSettings> {
    let id = |t: &str| -> Result<u32> { vocab.iter().position(|v| v == t).map(|i| i as u32).with_context(|| format!("special token {t:?} not in vocab")) };
    Ok(tok::TokenizerSettings {
        do_lower_case: false,
        strip_accents: false,
        tokenize_chinese_chars: false,
        unk_id: id(&config.unk_token)?,
        cls_id: id(&config.cls_token)?,
        sep_id: id(&config.sep_token)?,
        pad_id: id(&config.pad_token)?,
        max_input_chars_per_word: 100,
        kind,
    })
}

/// RoBERTa's special tokens (unk, cls, sep, pad, mask), overridden by tokenizer_config.json
/// where it names them.
fn roberta_special_tokens(dir: &Path) -> Result<[String; 5]> {
    let mut names = [("unk_token", "<unk>"), ("bos_token", "<s>"), ("eos_token", "</s>"), ("pad_token", "<pad>"), ("mask_token", "<mask>")].map(|(k, v)| (k, v.to_string()));
    let cfg_path = dir.join("tokenizer_config.json");
    if cfg_path.is_file() {
        let text = std::fs::read_to_string(&cfg_path).with_context(|| format!("reading {}", cfg_path.display()))?;
        let c: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", cfg_path.display()))?;
        for (key, value) in names.iter_mut() {
            let v = &c[*key];
            if let Some(s) = v.as_str().or_else(|| v["content"].as_str()) {
                *value = s.to_string();
            }
        }
        if let Some(c) = c["cls_token"].as_str() {
            names[1].1 = c.to_string();
        }
        if let Some(s) = c["sep_token"].as_str() {
            names[2].1 = s.to_string();
        }
    }
    Ok(names.map(|(_, v)| v))
}

/// Tokens by id of a BERT WordPiece tokenizer.json, its BertNormalizer's settings and unk token
/// written into `config`. Anything but BERT's pipeline (BertNormalizer, BertPreTokenizer,
/// WordPiece with `##` and 100 characters per word, `[CLS] a [SEP] b [SEP]`) is refused by name.
fn parse_wordpiece_tokenizer_json(t: &serde_json::Value, config: &mut TokenizerFileConfig) -> Result<Vec<String>> {
    let m = &t["model"];
    if m["continuing_subword_prefix"].as_str().unwrap_or("##") != "##" || m["max_input_chars_per_word"].as_u64().unwrap_or(100) != 100 {
        bail!("WordPiece continuing_subword_prefix {} / max_input_chars_per_word {} are not supported (BERT's: \"##\", 100)", m["continuing_subword_prefix"], m["max_input_chars_per_word"]);
    }
    let norm = &t["normalizer"];
    match norm["type"].as_str() {
        Some("BertNormalizer") => {
            if norm["clean_text"].as_bool() == Some(false) {
                bail!("normalizer BertNormalizer with clean_text false is not supported");
            }
            config.do_lower_case = norm["lowercase"].as_bool().unwrap_or(true);
            config.strip_accents = norm["strip_accents"].as_bool();
            config.tokenize_chinese_chars = norm["handle_chinese_chars"].as_bool().unwrap_or(true);
        }
        _ => bail!("normalizer {} is not supported; a WordPiece tokenizer.json needs BERT's BertNormalizer", norm["type"]),
    }
    if t["pre_tokenizer"]["type"].as_str() != Some("BertPreTokenizer") {
        bail!("pre_tokenizer {} is not supported; a WordPiece tokenizer.json needs BERT's BertPreTokenizer", t["pre_tokenizer"]["type"]);
    }
    if let Some(unk) = m["unk_token"].as_str() {
        config.unk_token = unk.to_string();
    }
    // BERT's `[CLS] a [SEP] b [SEP]` with type ids 0 then 1, as the runtime builds it.
    let post = &t["post_processor"];
    let (cls, sep): (Option<String>, Option<String>) = match post["type"].as_str() {
        Some("BertProcessing") => (post["cls"][0].as_str().map(str::to_string), post["sep"][0].as_str().map(str::to_string)),
        Some("TemplateProcessing") => {
            let items = |k: &str| -> Vec<String> {
                post[k].as_array().map(Vec::as_slice).unwrap_or(&[]).iter().map(|x| {
                    match (x["SpecialToken"]["id"].as_str(), x["Sequence"]["id"].as_str(), x["SpecialToken"]["type_id"].as_u64().or(x["Sequence"]["type_id"].as_u64())) {
                        (Some(s), _, Some(t)) => format!("{s}:{t}"),
                        (_, Some(seq), Some(t)) => format!("${seq}:{t}"),
                        _ => "?".into(),
                    }
                }).collect()
            };
            match (items("single").as_slice(), items("pair").as_slice()) {
                ([c, a, s], [c2, a2, s2, b, s3]) if a == "$A:0" && a2 == "$A:0" && b == "$B:1" && c == c2 && s == s2 && c.ends_with(":0") && s.ends_with(":0") && s3.strip_suffix(":1") == s.strip_suffix(":0") => {
                    (c.strip_suffix(":0").map(str::to_string), s.strip_suffix(":0").map(str::to_string))
                }
                (single, pair) => bail!("post_processor TemplateProcessing {single:?} / {pair:?} is not supported; BERT's is [CLS] $A [SEP] / [CLS] $A [SEP] $B:1 [SEP]:1"),
            }
        }
        _ => bail!("post_processor {} is not supported; a WordPiece tokenizer.json needs BERT's [CLS] a [SEP] b [SEP] (TemplateProcessing or BertProcessing)", post["type"]),
    };
    if let (Some(cls), Some(sep)) = (cls, sep) {
        config.cls_token = cls;
        config.sep_token = sep;
    }
    let map = m["vocab"].as_object().context("model.vocab is not a map of token -> id")?;
    let mut vocab = vec![None; map.len()];
    for (token, id) in map {
        match id.as_u64().map(|i| i as usize) {
            Some(i) if i < vocab.len() && vocab[i].is_none() => vocab[i] = Some(token.clone()),
            _ => bail!("model.vocab: id {id} of {token:?} is not a unique id below the vocabulary size {}", map.len()),
        }
    }
    Ok(vocab.into_iter().map(|t| t.expect("ids 0..n each taken once")).collect())
}

/// Pieces by id, the Unigram model, the unk token and `(cls, sep)` of an XLM-RoBERTa style
/// tokenizer.json: Precompiled [+ Replace(" {2,}", " ")] normalizer, Metaspace("▁", always
/// prepend, split), Unigram without byte fallback, `<s> A </s> </s> B </s>`.
fn parse_unigram_tokenizer_json(t: &serde_json::Value) -> Result<(Vec<String>, UnigramFiles, String, Option<(String, String)>)> {
    use base64::Engine;
    let m = &t["model"];
    if m["byte_fallback"].as_bool() == Some(true) {
        bail!("Unigram model.byte_fallback is not supported");
    }
    let norm = &t["normalizer"];
    let parts: Vec<&serde_json::Value> = match norm["type"].as_str() {
        None => vec![],
        Some("Sequence") => norm["normalizers"].as_array().context("normalizer.normalizers is not a list")?.iter().collect(),
        Some(_) => vec![norm],
    };
    let (mut charsmap, mut collapse_spaces) = (None, false);
    for (i, n) in parts.iter().enumerate() {
        match n["type"].as_str() {
            Some("Precompiled") if i == 0 => {
                let b64 = n["precompiled_charsmap"].as_str().context("normalizer Precompiled has no precompiled_charsmap")?;
                charsmap = Some(base64::engine::general_purpose::STANDARD.decode(b64).context("precompiled_charsmap is not base64")?);
            }
            Some("Replace") if n["pattern"]["Regex"].as_str() == Some(" {2,}") && n["content"].as_str() == Some(" ") && !collapse_spaces => collapse_spaces = true,
            _ => bail!("normalizer {} (in {}) is not supported; XLM-RoBERTa's Unigram tokenizer needs Precompiled, then Replace(\" {{2,}}\", \" \")", n["type"], norm["type"]),
        }
    }
    let pre = &t["pre_tokenizer"];
    let always = pre["prepend_scheme"].as_str() == Some("always") || (pre["prepend_scheme"].is_null() && pre["add_prefix_space"].as_bool() == Some(true));
    if pre["type"].as_str() != Some("Metaspace") || pre["replacement"].as_str() != Some("\u{2581}") || !always || pre["split"].as_bool() == Some(false) {
        bail!("pre_tokenizer {} is not supported; the Unigram tokenizer needs Metaspace(replacement \"\u{2581}\", prepend_scheme \"always\", split)", pre);
    }
    let post = &t["post_processor"];
    let cls_sep = match post["type"].as_str() {
        Some("RobertaProcessing") => {
            let name = |k: &str| post[k][0].as_str().map(str::to_string).with_context(|| format!("post_processor.{k}"));
            Some((name("cls")?, name("sep")?))
        }
        Some("TemplateProcessing") => {
            // Accept exactly `<s> $A </s>` / `<s> $A </s> </s> $B </s>` with type ids 0.
            let items = |k: &str| -> Vec<String> {
                post[k].as_array().map(Vec::as_slice).unwrap_or(&[]).iter().map(|x| {
                    match (x["SpecialToken"]["id"].as_str(), x["Sequence"]["id"].as_str(), x["SpecialToken"]["type_id"].as_u64().or(x["Sequence"]["type_id"].as_u64())) {
                        (Some(s), _, Some(0)) => s.to_string(),
                        (_, Some(seq), Some(0)) => format!("${seq}"),
                        _ => "?".into(),
                    }
                }).collect()
            };
            let (single, pair) = (items("single"), items("pair"));
            match (single.as_slice(), pair.as_slice()) {
                ([c, a, s], [c2, a2, s2, s3, b, s4]) if a == "$A" && a2 == "$A" && b == "$B" && c == c2 && [s2, s3, s4].iter().all(|x| *x == s) => Some((c.clone(), s.clone())),
                _ => bail!("post_processor TemplateProcessing {single:?} / {pair:?} is not supported; XLM-RoBERTa's is <s> $A </s> / <s> $A </s> </s> $B </s> with type ids 0"),
            }
        }
        _ => bail!("post_processor {} is not supported; the Unigram tokenizer needs XLM-RoBERTa's <s> A </s></s> B </s> (RobertaProcessing or that TemplateProcessing)", post["type"]),
    };
    let pieces = m["vocab"].as_array().context("model.vocab is not a list of [piece, score]")?;
    let (mut vocab, mut scores) = (Vec::with_capacity(pieces.len()), Vec::with_capacity(pieces.len()));
    for (i, p) in pieces.iter().enumerate() {
        let (Some(s), Some(score)) = (p[0].as_str(), p[1].as_f64()) else {
            bail!("model.vocab[{i}] is not [piece, score]");
        };
        vocab.push(s.to_string());
        scores.push(score);
    }
    for a in t["added_tokens"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        if let (Some(c), Some(id)) = (a["content"].as_str(), a["id"].as_u64()) {
            if vocab.get(id as usize).map(String::as_str) != Some(c) {
                bail!("added token {c:?} (id {id}) is not the vocabulary's piece {id}; extra added tokens are not supported");
            }
        }
    }
    let unk_id = m["unk_id"].as_u64().context("Unigram model.unk_id is missing (the runtime needs an unknown token)")? as usize;
    let unk = vocab.get(unk_id).cloned().with_context(|| format!("model.unk_id {unk_id} is outside the vocabulary"))?;
    Ok((vocab, UnigramFiles { scores, charsmap, collapse_spaces }, unk, cls_sep))
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
