//! Tokenizers matching Hugging Face `tokenizers`, with `longest_first` truncation:
//! - BERT WordPiece (`BertWordPieceTokenizer`: BertNormalizer + BertPreTokenizer +
//!   WordPiece + BertProcessing);
//! - byte-level BPE (RoBERTa: ByteLevel + BPE + RobertaProcessing), in [`bpe`];
//! - SentencePiece Unigram (XLM-RoBERTa: Precompiled + Metaspace + Unigram), in [`unigram`].

pub mod bpe;
#[rustfmt::skip]
#[allow(clippy::all)]
mod bytelevel_tables;
#[rustfmt::skip]
#[allow(clippy::all)]
mod grapheme_tables;
mod normalize;
#[rustfmt::skip]
#[allow(clippy::all)]
mod tables;
pub mod unigram;
mod vocab;
mod wordpiece;

pub use bpe::{encode_merges, Merges};
pub use unigram::{encode_scores, Charsmap, Unigram};
pub use vocab::{encode_vocab, fnv1a64, EncodedVocab, Vocab, VocabError};

use alloc::vec::Vec;
use bpe::{BpeScratch, ByteLevel};
use core::fmt;
use normalize::{Flags, Pipeline, WordSink};
use unigram::UnigramScratch;
use wordpiece::{wordpiece, Lookup, STATES};

/// Tokenizer options (the resolved values stored in the model file).
#[derive(Debug, Clone)]
pub struct TokenizerSettings {
    pub do_lower_case: bool,
    /// HF's `strip_accents=None` means "same as lowercase"; this is the resolved bool.
    pub strip_accents: bool,
    pub tokenize_chinese_chars: bool,
    pub unk_id: u32,
    pub cls_id: u32,
    pub sep_id: u32,
    pub pad_id: u32,
    /// Longer words (in chars, after normalization) become [UNK]; HF default 100.
    pub max_input_chars_per_word: u32,
    pub kind: TokenizerKind,
}

/// The tokenization algorithm. Byte-level BPE ignores the WordPiece options above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenizerKind {
    /// `[CLS] a [SEP] b [SEP]`, type ids 0 then 1.
    WordPiece,
    /// `<s> a </s></s> b </s>` (cls = `<s>`, sep = `</s>`), every type id 0; a `<mask>`
    /// token takes the whitespace before it (lstrip), as RoBERTa's.
    ByteLevelBpe { add_prefix_space: bool },
    /// SentencePiece Unigram with XLM-RoBERTa's layout: `<s> a </s></s> b </s>`, every type
    /// id 0, `<mask>` lstrip.
    Unigram,
}

impl TokenizerSettings {
    /// bert-base-uncased style settings with the standard special ids.
    pub fn uncased() -> Self {
        TokenizerSettings {
            do_lower_case: true,
            strip_accents: true,
            tokenize_chinese_chars: true,
            unk_id: 100,
            cls_id: 101,
            sep_id: 102,
            pad_id: 0,
            max_input_chars_per_word: 100,
            kind: TokenizerKind::WordPiece,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truncation {
    /// Fail with [`TokenizeError::TooLong`] instead of dropping tokens.
    Error,
    /// HF `truncation='longest_first'` as the Rust `tokenizers` crate (fast
    /// tokenizer) does it: the shorter side keeps all its tokens if it fits in
    /// half the budget, otherwise each side gets half and the longer side the
    /// odd token. Tokens are dropped from the end.
    LongestFirst,
}

/// Output of [`Tokenizer::encode`]; reuse one across calls with [`Tokenizer::encode_into`].
#[derive(Debug, Clone, Default)]
pub struct Encoding {
    pub ids: Vec<i32>,
    pub type_ids: Vec<i32>,
    /// Tokens dropped by truncation.
    pub num_truncated: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenizeError {
    /// `needed` tokens (special tokens included) do not fit in `max`.
    TooLong { needed: usize, max: usize },
    /// `max_len` is below the number of special tokens (2, or 3 for a pair).
    /// HF silently skips truncation there; we refuse instead.
    MaxLenTooSmall,
}

impl TokenizeError {
    pub fn message(&self) -> &'static str {
        match self {
            TokenizeError::TooLong { .. } => "input needs more tokens than max_len",
            TokenizeError::MaxLenTooSmall => "max_len is smaller than the number of special tokens",
        }
    }
}

impl fmt::Display for TokenizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenizeError::TooLong { needed, max } => {
                write!(f, "input needs {} tokens but max_len is {}", needed, max)
            }
            other => f.write_str(other.message()),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for TokenizeError {}

/// Most special tokens that are split out of raw text.
const MAX_SPECIALS: usize = 8;

pub struct Tokenizer<'a> {
    vocab: Vocab<'a>,
    lookup: Lookup<'a>,
    /// Set for [`TokenizerKind::ByteLevelBpe`].
    byte_level: Option<ByteLevel<'a>>,
    /// Set for [`TokenizerKind::Unigram`].
    unigram: Option<Unigram<'a>>,
    settings: TokenizerSettings,
    /// Special-token strings matched verbatim in the raw text before
    /// normalization, like HF's added tokens (leftmost, then longest).
    specials: [(u32, &'a str); MAX_SPECIALS],
    /// The id of a special token that also takes the whitespace before it (RoBERTa's
    /// `<mask>`, `lstrip`); `u32::MAX` for none.
    lstrip_id: u32,
    n_specials: usize,
    /// First bytes of the special strings, to skip the matcher cheaply.
    special_first: [bool; 256],
}

impl fmt::Debug for Tokenizer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab", &self.vocab)
            .field("settings", &self.settings)
            .field("specials", &&self.specials[..self.n_specials])
            .finish()
    }
}

impl<'a> Tokenizer<'a> {
    /// Checks that the special ids are in range. The tokens of unk/cls/sep/pad,
    /// plus `[MASK]` when the vocab has it, are split out of raw text as HF's
    /// BertWordPieceTokenizer does (see [`Tokenizer::set_special_tokens`]).
    /// Byte-level BPE needs [`Tokenizer::with_merges`].
    pub fn new(vocab: Vocab<'a>, settings: TokenizerSettings) -> Result<Self, VocabError> {
        if settings.kind != TokenizerKind::WordPiece {
            return Err(VocabError::BadMerges);
        }
        Self::build(vocab, None, None, settings)
    }

    /// A byte-level BPE tokenizer (`settings.kind` must be [`TokenizerKind::ByteLevelBpe`]).
    /// Its unk/cls/sep/pad tokens and `<mask>` are split out of raw text.
    pub fn with_merges(vocab: Vocab<'a>, merges: Merges<'a>, settings: TokenizerSettings) -> Result<Self, VocabError> {
        let TokenizerKind::ByteLevelBpe { add_prefix_space } = settings.kind else {
            return Err(VocabError::BadMerges);
        };
        let byte_level = ByteLevel::new(&vocab, merges, add_prefix_space);
        Self::build(vocab, Some(byte_level), None, settings)
    }

    /// A SentencePiece Unigram tokenizer (`settings.kind` must be [`TokenizerKind::Unigram`]).
    /// Its unk/cls/sep/pad tokens and `<mask>` are split out of raw text.
    pub fn with_unigram(vocab: Vocab<'a>, unigram: Unigram<'a>, settings: TokenizerSettings) -> Result<Self, VocabError> {
        if settings.kind != TokenizerKind::Unigram {
            return Err(VocabError::BadUnigram);
        }
        Self::build(vocab, None, Some(unigram), settings)
    }

    fn build(vocab: Vocab<'a>, byte_level: Option<ByteLevel<'a>>, unigram: Option<Unigram<'a>>, settings: TokenizerSettings) -> Result<Self, VocabError> {
        let v = vocab.len();
        if v > i32::MAX as usize {
            return Err(VocabError::TooLarge);
        }
        for id in [
            settings.unk_id,
            settings.cls_id,
            settings.sep_id,
            settings.pad_id,
        ] {
            if id as usize >= v {
                return Err(VocabError::BadSpecialId);
            }
        }
        let mut ids = [
            settings.pad_id,
            settings.unk_id,
            settings.cls_id,
            settings.sep_id,
            0,
        ];
        let roberta = byte_level.is_some() || unigram.is_some();
        let mask = vocab.lookup(if roberta { "<mask>" } else { "[MASK]" });
        let n = match mask {
            Some(m) => {
                ids[4] = m;
                5
            }
            None => 4,
        };
        let mut t = Tokenizer {
            vocab,
            lookup: Lookup::new(vocab),
            lstrip_id: match (roberta, mask) {
                (true, Some(m)) => m,
                _ => u32::MAX,
            },
            byte_level,
            unigram,
            settings,
            specials: [(0, ""); MAX_SPECIALS],
            n_specials: 0,
            special_first: [false; 256],
        };
        t.set_special_tokens(&ids[..n])?;
        Ok(t)
    }

    /// Replaces the tokens that are matched verbatim in raw text (at most 8;
    /// duplicates ignored; empty slice disables matching).
    pub fn set_special_tokens(&mut self, ids: &[u32]) -> Result<(), VocabError> {
        let mut specials = [(0u32, ""); MAX_SPECIALS];
        let mut n = 0;
        let mut first = [false; 256];
        for &id in ids {
            let s = self.vocab.token(id).ok_or(VocabError::BadSpecialId)?;
            if specials[..n].iter().any(|&(i, _)| i == id) {
                continue;
            }
            if n == MAX_SPECIALS {
                return Err(VocabError::TooLarge);
            }
            specials[n] = (id, s);
            n += 1;
            first[s.as_bytes()[0] as usize] = true;
        }
        self.specials = specials;
        self.n_specials = n;
        self.special_first = first;
        Ok(())
    }

    pub fn vocab(&self) -> &Vocab<'a> {
        &self.vocab
    }

    pub fn settings(&self) -> &TokenizerSettings {
        &self.settings
    }

    /// The Unigram model of a SentencePiece tokenizer.
    pub fn unigram(&self) -> Option<&Unigram<'a>> {
        self.unigram.as_ref()
    }

    /// The BPE merge table of a byte-level tokenizer.
    pub fn merges(&self) -> Option<&Merges<'a>> {
        self.byte_level.as_ref().map(|b| b.merges())
    }

    /// `[CLS] a [SEP] (b [SEP])`; type ids are 0 for the first segment including
    /// CLS and the first SEP, 1 for b and its SEP. `max_len` counts special tokens
    /// (use `usize::MAX` for no limit).
    pub fn encode(
        &self,
        text_a: &str,
        text_b: Option<&str>,
        max_len: usize,
        truncation: Truncation,
    ) -> Result<Encoding, TokenizeError> {
        let mut out = Encoding::default();
        self.encode_into(text_a, text_b, max_len, truncation, &mut out)?;
        Ok(out)
    }

    /// Like [`Tokenizer::encode`] but reuses `out`'s buffers. On error `out` is left empty.
    pub fn encode_into(
        &self,
        text_a: &str,
        text_b: Option<&str>,
        max_len: usize,
        truncation: Truncation,
        out: &mut Encoding,
    ) -> Result<(), TokenizeError> {
        out.ids.clear();
        out.type_ids.clear();
        out.num_truncated = 0;
        let roberta = self.byte_level.is_some() || self.unigram.is_some();
        // Separator tokens between the segments: one, or RoBERTa's `</s></s>`.
        let mid = if roberta { 2 } else { 1 };
        let n_special = if text_b.is_some() { 2 + mid } else { 2 };
        if max_len < n_special {
            return Err(TokenizeError::MaxLenTooSmall);
        }
        let cls = self.settings.cls_id as i32;
        let sep = self.settings.sep_id as i32;
        let ids = &mut out.ids;
        ids.push(cls);
        self.tokenize_append(text_a, ids);
        let la = ids.len() - 1;
        let lb = match text_b {
            Some(b) => {
                self.tokenize_append(b, ids);
                ids.len() - 1 - la
            }
            None => 0,
        };
        let needed = la + lb + n_special;
        let budget = max_len - n_special;
        let (na, nb) = if needed <= max_len {
            (la, lb)
        } else {
            match truncation {
                Truncation::Error => {
                    ids.clear();
                    return Err(TokenizeError::TooLong {
                        needed,
                        max: max_len,
                    });
                }
                Truncation::LongestFirst => {
                    if text_b.is_some() {
                        longest_first(la, lb, budget)
                    } else {
                        (budget, 0)
                    }
                }
            }
        };
        // Layout now: CLS a[..la] b[..lb]; make it CLS a[..na] SEP (SEP) b[..nb] (SEP).
        let total = na + nb + n_special;
        if ids.len() < total {
            ids.resize(total, 0);
        }
        if text_b.is_some() {
            ids.copy_within(1 + la..1 + la + nb, na + 1 + mid);
            ids[na + 1..na + 1 + mid].fill(sep);
            ids[total - 1] = sep;
        } else {
            ids[na + 1] = sep;
        }
        ids.truncate(total);
        out.num_truncated = la + lb - na - nb;
        // RoBERTa's models have one token type; HF's fast tokenizer does not pass them.
        let first = if roberta { total } else { na + 2 };
        out.type_ids.resize(first, 0);
        out.type_ids.resize(total, 1);
        Ok(())
    }

    /// WordPiece ids of `text` without special tokens; `out` is cleared first.
    pub fn tokenize_ids(&self, text: &str, out: &mut Vec<i32>) {
        out.clear();
        self.tokenize_append(text, out);
    }

    /// Calls `f` with each word after normalization and pre-tokenization (the
    /// input of WordPiece or BPE), and with the text of verbatim special tokens.
    /// WordPiece words longer than `max_input_chars_per_word` are cut there (they
    /// become [UNK]); byte-level pieces are the raw text GPT-2's regex splits off.
    pub fn words(&self, text: &str, mut f: impl FnMut(&str)) {
        if let Some(u) = &self.unigram {
            let mut normalized = alloc::string::String::new();
            self.split_specials(text, |part| match part {
                Part::Text(t) => u.pieces(t, &mut normalized, &mut f),
                Part::Special(id) => f(self.vocab.token(id).unwrap_or("")),
            });
            return;
        }
        if let Some(bl) = &self.byte_level {
            let mut prefixed = alloc::string::String::new();
            self.split_specials(text, |part| match part {
                Part::Text(t) => bpe::split_pieces(with_prefix_space(bl, t, &mut prefixed), &mut f),
                Part::Special(id) => f(self.vocab.token(id).unwrap_or("")),
            });
            return;
        }
        struct Words<'v, 'a, F> {
            vocab: &'v Vocab<'a>,
            f: F,
        }
        impl<F: FnMut(&str)> WordSink for Words<'_, '_, F> {
            fn word(&mut self, bytes: &[u8], _nchars: usize) {
                (self.f)(core::str::from_utf8(bytes).unwrap_or(""));
            }
            fn special(&mut self, id: u32) {
                (self.f)(self.vocab.token(id).unwrap_or(""));
            }
        }
        self.run(
            text,
            &mut Words {
                vocab: &self.vocab,
                f,
            },
        );
    }

    /// Token ids of `text` appended to `out`.
    fn tokenize_append(&self, text: &str, out: &mut Vec<i32>) {
        if let Some(u) = &self.unigram {
            let mut scratch = UnigramScratch::default();
            let unk = self.settings.unk_id;
            self.split_specials(text, |part| match part {
                Part::Text(t) => u.encode_segment(&self.vocab, unk, t, &mut scratch, out),
                Part::Special(id) => out.push(id as i32),
            });
            return;
        }
        if let Some(bl) = &self.byte_level {
            let mut scratch = BpeScratch::default();
            let mut prefixed = alloc::string::String::new();
            self.split_specials(text, |part| match part {
                Part::Text(t) => bpe::split_pieces(with_prefix_space(bl, t, &mut prefixed), |piece| {
                    bl.encode_piece(piece.as_bytes(), &mut scratch, out)
                }),
                Part::Special(id) => out.push(id as i32),
            });
            return;
        }
        let mut sink = Sink {
            lookup: &self.lookup,
            unk: self.settings.unk_id as i32,
            max_chars: self.settings.max_input_chars_per_word as usize,
            states: [0; STATES],
            out,
        };
        self.run(text, &mut sink);
    }

    /// WordPiece: splits out verbatim special tokens, then normalizes and
    /// pre-tokenizes each remaining segment into `sink`.
    fn run<S: WordSink>(&self, text: &str, sink: &mut S) {
        let s = &self.settings;
        let flags = Flags {
            lower: s.do_lower_case,
            strip: s.strip_accents,
            chinese: s.tokenize_chinese_chars,
        };
        let mut p = Pipeline::new(flags, s.max_input_chars_per_word as usize, sink);
        self.split_specials(text, |part| match part {
            Part::Text(t) => p.segment(t),
            Part::Special(id) => p.sink.special(id),
        });
    }

    /// Calls `f` with the text between verbatim special tokens and with each special
    /// token, in order. The lstrip token takes the whitespace before it.
    fn split_specials(&self, text: &str, mut f: impl FnMut(Part<'_>)) {
        let bytes = text.as_bytes();
        let mut seg_start = 0;
        let mut i = 0;
        if self.n_specials != 0 {
            while i < bytes.len() {
                if self.special_first[bytes[i] as usize] {
                    if let Some((id, len)) = self.match_special(&bytes[i..]) {
                        // Both ends are char boundaries: a whole UTF-8 token matched.
                        let mut seg = &text[seg_start..i];
                        if id == self.lstrip_id {
                            seg = seg.trim_end_matches(char::is_whitespace);
                        }
                        f(Part::Text(seg));
                        f(Part::Special(id));
                        i += len;
                        seg_start = i;
                        continue;
                    }
                }
                i += 1;
            }
        }
        f(Part::Text(&text[seg_start..]));
    }

    /// Longest special token that `rest` starts with.
    #[inline]
    fn match_special(&self, rest: &[u8]) -> Option<(u32, usize)> {
        let mut best: Option<(u32, usize)> = None;
        for &(id, s) in &self.specials[..self.n_specials] {
            if rest.starts_with(s.as_bytes()) && !matches!(best, Some((_, l)) if l >= s.len()) {
                best = Some((id, s.len()));
            }
        }
        best
    }
}

enum Part<'t> {
    Text(&'t str),
    Special(u32),
}

/// The segment with a space in front when the byte-level pre-tokenizer adds one (HF:
/// `add_prefix_space` and the segment does not start with U+0020).
fn with_prefix_space<'t>(bl: &ByteLevel<'_>, t: &'t str, buf: &'t mut alloc::string::String) -> &'t str {
    if !bl.add_prefix_space || t.is_empty() || t.starts_with(' ') {
        return t;
    }
    buf.clear();
    buf.push(' ');
    buf.push_str(t);
    buf
}

/// HF tokenizers' `longest_first` split of `budget` tokens between a pair of
/// lengths (both exceed it together): the shorter keeps everything if it fits in
/// half, otherwise both get half and the longer one the odd token.
fn longest_first(la: usize, lb: usize, budget: usize) -> (usize, usize) {
    if budget == 0 {
        return (0, 0);
    }
    let swap = la > lb;
    let mut n1 = la.min(lb);
    let mut n2 = if n1 > budget { n1 } else { n1.max(budget - n1) };
    if n1 + n2 > budget {
        n1 = budget / 2;
        n2 = n1 + budget % 2;
    }
    let (ka, kb) = if swap { (n2, n1) } else { (n1, n2) };
    (la.min(ka), lb.min(kb))
}

struct Sink<'v, 'a, 'o> {
    lookup: &'v Lookup<'a>,
    unk: i32,
    max_chars: usize,
    states: [u64; STATES],
    out: &'o mut Vec<i32>,
}

impl WordSink for Sink<'_, '_, '_> {
    #[inline]
    fn word(&mut self, bytes: &[u8], nchars: usize) {
        wordpiece(
            self.lookup,
            bytes,
            nchars,
            self.max_chars,
            self.unk,
            &mut self.states,
            self.out,
        );
    }

    #[inline]
    fn special(&mut self, id: u32) {
        self.out.push(id as i32);
    }
}

#[cfg(test)]
mod tests;
