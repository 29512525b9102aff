//! SentencePiece Unigram as Hugging Face `tokenizers` runs XLM-RoBERTa's: SentencePiece's
//! `Precompiled` normalizer (its charsmap, applied per grapheme cluster), then
//! `Replace(" {2,}", " ")`, `Metaspace("▁", prepend_scheme = always, split)`, and the
//! best-scoring segmentation of each piece (Viterbi), consecutive unknown characters fused
//! into one unknown token.

use super::grapheme_tables::{RUN_CLASSES, RUN_STARTS};
use super::vocab::{fnv1a_step, Vocab, VocabError, FNV_OFFSET};
use alloc::string::String;
use alloc::vec::Vec;

/// SentencePiece's word-boundary mark, U+2581.
pub const METASPACE: char = '\u{2581}';
/// Score of an unknown character below the lowest piece score (SentencePiece's `kUnkPenalty`).
const UNK_PENALTY: f64 = 10.0;

/// SentencePiece's `precompiled_charsmap`, zero-copy: `[u32 trie size in bytes][darts-clone
/// double-array trie of u32 units][NUL-terminated UTF-8 replacements]`. A trie key is the
/// UTF-8 of a character or sequence; its value is the offset of the replacement.
#[derive(Clone, Copy)]
pub struct Charsmap<'a> {
    trie: &'a [u8],
    replacements: &'a str,
}

impl<'a> Charsmap<'a> {
    /// Checks the framing and that the replacements are UTF-8; trie walks are bounds-checked,
    /// so a damaged trie gives wrong text but never a crash.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, VocabError> {
        let size = bytes.get(..4).ok_or(VocabError::BadUnigram)?;
        let size = u32::from_le_bytes([size[0], size[1], size[2], size[3]]) as usize;
        let rest = &bytes[4..];
        if !size.is_multiple_of(4) || size == 0 || size > rest.len() {
            return Err(VocabError::BadUnigram);
        }
        let replacements = core::str::from_utf8(&rest[size..]).map_err(|_| VocabError::BadUnigram)?;
        Ok(Charsmap { trie: &rest[..size], replacements })
    }

    #[inline]
    fn unit(&self, pos: usize) -> Option<u32> {
        let b = self.trie.get(pos.checked_mul(4)?..pos * 4 + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// The replacement of the shortest key that `chunk` starts with (Hugging Face takes the
    /// first hit of the common-prefix search, so the rest of `chunk` is dropped).
    fn transform(&self, chunk: &[u8]) -> Option<&'a str> {
        let offset = |u: u32| ((u >> 10) << ((u & (1 << 9)) >> 6)) as usize;
        let mut unit = self.unit(0)?;
        let mut pos = offset(unit);
        for &c in chunk {
            if c == 0 {
                break;
            }
            pos ^= c as usize;
            unit = self.unit(pos)?;
            if unit & ((1 << 31) | 0xFF) != c as u32 {
                return None;
            }
            pos ^= offset(unit);
            if (unit >> 8) & 1 == 1 {
                let start = (self.unit(pos)? & ((1 << 31) - 1)) as usize;
                let tail = self.replacements.get(start..)?;
                return Some(&tail[..tail.find('\0').unwrap_or(tail.len())]);
            }
        }
        None
    }

    /// Appends the normalized `text`: each grapheme cluster shorter than 6 bytes is replaced
    /// whole when it starts with a key, otherwise each character on its own.
    pub fn normalize(&self, text: &str, out: &mut String) {
        let mut start = 0;
        while start < text.len() {
            let end = grapheme_end(text, start);
            let g = &text[start..end];
            start = end;
            if g.len() < 6 {
                if let Some(r) = self.transform(g.as_bytes()) {
                    out.push_str(r);
                    continue;
                }
            }
            for (i, c) in g.char_indices() {
                match self.transform(&g.as_bytes()[i..i + c.len_utf8()]) {
                    Some(r) => out.push_str(r),
                    None => out.push(c),
                }
            }
        }
    }
}

// Grapheme classes, numbered as in grapheme_tables.rs.
const OTHER: u8 = 0;
const CR: u8 = 1;
const LF: u8 = 2;
const CONTROL: u8 = 3;
const EXTEND: u8 = 4;
const ZWJ: u8 = 5;
const REGIONAL_INDICATOR: u8 = 6;
const PREPEND: u8 = 7;
const SPACING_MARK: u8 = 8;
const L: u8 = 9;
const V: u8 = 10;
const T: u8 = 11;
const LV: u8 = 12;
const LVT: u8 = 13;
const PICTOGRAPHIC: u8 = 14;
const INCB_CONSONANT: u8 = 15;
const EXTEND_INCB_EXTEND: u8 = 16;
const EXTEND_INCB_LINKER: u8 = 17;

fn class(c: char) -> u8 {
    let cp = c as u32;
    if cp < 0x7F {
        return match cp {
            0x0D => CR,
            0x0A => LF,
            0..=0x1F => CONTROL,
            _ => OTHER,
        };
    }
    RUN_CLASSES[RUN_STARTS.partition_point(|&s| s <= cp) - 1]
}

fn is_extend(k: u8) -> bool {
    matches!(k, EXTEND | EXTEND_INCB_EXTEND | EXTEND_INCB_LINKER)
}

/// End of the extended grapheme cluster (UAX #29) that starts at byte `start` of `s`.
pub fn grapheme_end(s: &str, start: usize) -> usize {
    let mut chars = s[start..].char_indices();
    let Some((_, first)) = chars.next() else {
        return start;
    };
    let mut prev = class(first);
    // Context of the no-break rules, all inside the current cluster: regional indicators
    // so far (GB12/13), `Pictographic Extend*` [+ ZWJ] (GB11), and an Indic `Consonant`
    // followed by extends [with a linker] (GB9c).
    let mut regional = (prev == REGIONAL_INDICATOR) as u32;
    let (mut pict, mut pict_zwj) = (prev == PICTOGRAPHIC, false);
    let (mut consonant, mut linker) = (prev == INCB_CONSONANT, false);
    for (i, c) in chars {
        let next = class(c);
        let joins = match (prev, next) {
            (CR, LF) => true,
            (CR | LF | CONTROL, _) | (_, CR | LF | CONTROL) => false,
            (L, L | V | LV | LVT) | (LV | V, V | T) | (LVT | T, T) => true,
            (_, EXTEND | EXTEND_INCB_EXTEND | EXTEND_INCB_LINKER | ZWJ | SPACING_MARK) | (PREPEND, _) => true,
            (_, INCB_CONSONANT) if linker => true,
            (ZWJ, PICTOGRAPHIC) if pict_zwj => true,
            (REGIONAL_INDICATOR, REGIONAL_INDICATOR) => regional % 2 == 1,
            _ => false,
        };
        if !joins {
            return start + i;
        }
        regional = if next == REGIONAL_INDICATOR { regional + 1 } else { 0 };
        pict_zwj = pict && next == ZWJ;
        pict = next == PICTOGRAPHIC || (pict && is_extend(next));
        match next {
            INCB_CONSONANT => (consonant, linker) = (true, false),
            EXTEND_INCB_LINKER if consonant => linker = true,
            EXTEND_INCB_EXTEND | ZWJ if consonant => {}
            _ => (consonant, linker) = (false, false),
        }
        prev = next;
    }
    s.len()
}

/// Unigram pieces and their log-probabilities, zero-copy: `scores` holds each piece's f64
/// as `[low u32, high u32]` (Hugging Face sums f64 scores; f32 sums would pick other paths
/// on ties and near-ties).
#[derive(Clone, Copy)]
pub struct Unigram<'a> {
    scores: &'a [u32],
    unk_score: f64,
    pub charsmap: Option<Charsmap<'a>>,
    /// Apply `Replace(" {2,}", " ")` after the charsmap.
    pub collapse_spaces: bool,
}

/// Buffers reused across segments: the normalized text and the Viterbi lattice.
#[derive(Default)]
pub struct UnigramScratch {
    normalized: String,
    lattice: Lattice,
}

#[derive(Default)]
pub struct Lattice {
    /// `best[e]` = (score, start, id) of the best path ending at byte `e`.
    best: Vec<(f64, u32, u32)>,
    /// The chosen pieces, last first: (start, end, id).
    path: Vec<(u32, u32, u32)>,
}

impl<'a> Unigram<'a> {
    pub fn new(vocab_len: usize, scores: &'a [u32], charsmap: Option<Charsmap<'a>>, collapse_spaces: bool) -> Result<Self, VocabError> {
        if scores.len() != vocab_len * 2 || vocab_len == 0 {
            return Err(VocabError::BadUnigram);
        }
        let mut min = f64::INFINITY;
        for s in scores.chunks_exact(2) {
            let v = score_of(s);
            if !v.is_finite() {
                return Err(VocabError::BadUnigram);
            }
            min = min.min(v);
        }
        Ok(Unigram { scores, unk_score: min - UNK_PENALTY, charsmap, collapse_spaces })
    }

    pub fn score(&self, id: u32) -> f64 {
        score_of(&self.scores[id as usize * 2..id as usize * 2 + 2])
    }

    /// Appends the normalized segment (charsmap, then the space collapse) to `out`.
    pub fn normalize(&self, text: &str, out: &mut String) {
        let from = out.len();
        match &self.charsmap {
            Some(map) => map.normalize(text, out),
            None => out.push_str(text),
        }
        if self.collapse_spaces && out[from..].contains("  ") {
            let tail: String = out[from..].into();
            out.truncate(from);
            let mut last_space = false;
            for c in tail.chars() {
                if !(c == ' ' && last_space) {
                    out.push(c);
                }
                last_space = c == ' ';
            }
        }
    }

    /// Appends the ids of a text segment (between special tokens).
    pub fn encode_segment(&self, vocab: &Vocab<'_>, unk_id: u32, text: &str, scratch: &mut UnigramScratch, out: &mut Vec<i32>) {
        let UnigramScratch { normalized, lattice } = scratch;
        self.pieces(text, normalized, |piece| self.encode_piece(vocab, unk_id, piece, lattice, out));
    }

    /// Calls `f` with each Metaspace piece of a text segment (`norm` is scratch space).
    pub fn pieces(&self, text: &str, norm: &mut String, mut f: impl FnMut(&str)) {
        norm.clear();
        self.normalize(text, norm);
        if norm.is_empty() {
            return;
        }
        let mut spaced = String::with_capacity(norm.len() + 3 * 8);
        if !norm.starts_with(' ') && !norm.starts_with(METASPACE) {
            spaced.push(METASPACE);
        }
        for c in norm.chars() {
            spaced.push(if c == ' ' { METASPACE } else { c });
        }
        // Split before each mark, the mark staying with what follows.
        let mut start = 0;
        for (i, _) in spaced.match_indices(METASPACE) {
            if i > start {
                f(&spaced[start..i]);
            }
            start = i;
        }
        f(&spaced[start..]);
    }

    /// Appends the ids of the best segmentation of one piece.
    pub fn encode_piece(&self, vocab: &Vocab<'_>, unk_id: u32, piece: &str, lattice: &mut Lattice, out: &mut Vec<i32>) {
        const NONE: u32 = u32::MAX;
        let Lattice { best, path } = lattice;
        let bytes = piece.as_bytes();
        let n = bytes.len();
        best.clear();
        best.resize(n + 1, (0.0, NONE, 0));
        let mut start = 0;
        while start < n {
            let base = best[start].0;
            let char_len = utf8_len(bytes[start]);
            let mut single = false;
            let mut h = FNV_OFFSET;
            let stop = n.min(start + vocab.max_len);
            for end in start + 1..=stop {
                h = fnv1a_step(h, bytes[end - 1]);
                if !piece.is_char_boundary(end) {
                    continue;
                }
                if let Some(id) = vocab.lookup_hashed(h, &bytes[start..end]) {
                    let cand = self.score(id) + base;
                    let node = &mut best[end];
                    if node.1 == NONE || cand > node.0 {
                        *node = (cand, start as u32, id);
                    }
                    single |= end - start == char_len;
                }
            }
            if !single {
                let cand = self.unk_score + base;
                let node = &mut best[start + char_len];
                if node.1 == NONE || cand > node.0 {
                    *node = (cand, start as u32, unk_id);
                }
            }
            start += char_len;
        }
        // Walk back; runs of unknown nodes become one token (Hugging Face `fuse_unk`).
        path.clear();
        let mut end = n;
        while end > 0 {
            let (_, s, id) = best[end];
            let s = s as usize;
            match path.last_mut() {
                Some(last) if id == unk_id && last.2 == unk_id && last.0 as usize == end => last.0 = s as u32,
                _ => path.push((s as u32, end as u32, id)),
            }
            end = s;
        }
        for &(s, e, id) in path.iter().rev() {
            // A fused run is looked up as text, as Hugging Face does.
            let id = if id == unk_id { vocab.lookup(&piece[s as usize..e as usize]).unwrap_or(unk_id) } else { id };
            out.push(id as i32);
        }
    }
}

fn score_of(pair: &[u32]) -> f64 {
    f64::from_bits(pair[0] as u64 | (pair[1] as u64) << 32)
}

fn utf8_len(b: u8) -> usize {
    match b {
        0..=0x7F => 1,
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}

/// The `[V, 2]` u32 score table of [`Unigram`] from scores by id.
pub fn encode_scores(scores: &[f64]) -> Vec<u32> {
    scores.iter().flat_map(|s| [s.to_bits() as u32, (s.to_bits() >> 32) as u32]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clusters(s: &str) -> Vec<&str> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < s.len() {
            let e = grapheme_end(s, i);
            out.push(&s[i..e]);
            i = e;
        }
        out
    }

    #[test]
    fn grapheme_rules() {
        assert_eq!(clusters("a\r\nb"), ["a", "\r\n", "b"]);
        assert_eq!(clusters("e\u{301}\u{308}x"), ["e\u{301}\u{308}", "x"]);
        // Hangul L V T, then a new syllable.
        assert_eq!(clusters("\u{1100}\u{1161}\u{11A8}\u{1100}"), ["\u{1100}\u{1161}\u{11A8}", "\u{1100}"]);
        // Flags pair up.
        assert_eq!(clusters("🇩🇪🇫🇷🇮"), ["🇩🇪", "🇫🇷", "🇮"]);
        // Emoji ZWJ sequence with a skin tone; ZWJ after a letter does not join a pictograph.
        assert_eq!(clusters("👩🏽\u{200D}💻a\u{200D}💻"), ["👩🏽\u{200D}💻", "a\u{200D}", "💻"]);
        // Devanagari conjunct (GB9c): KA + VIRAMA + SSA is one cluster; without the virama, two.
        assert_eq!(clusters("क्षक"), ["क्ष", "क"]);
        assert_eq!(clusters("कष"), ["क", "ष"]);
        // A control breaks on both sides, even before an extend.
        assert_eq!(clusters("a\u{7}\u{301}"), ["a", "\u{7}", "\u{301}"]);
        assert_eq!(clusters(""), Vec::<&str>::new());
    }

    #[test]
    fn bad_charsmaps_are_rejected_or_harmless() {
        assert!(Charsmap::from_bytes(&[]).is_err());
        assert!(Charsmap::from_bytes(&[8, 0, 0, 0, 1, 2, 3, 4]).is_err());
        assert!(Charsmap::from_bytes(&[4, 0, 0, 0, 1, 2, 3, 4, 0xFF]).is_err());
        // A trie whose offsets point outside it: no key matches, nothing panics.
        let map = Charsmap::from_bytes(&[4, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, b'x', 0]).unwrap();
        let mut out = String::new();
        map.normalize("abc é 👍🏽", &mut out);
        assert_eq!(out, "abc é 👍🏽");
    }

    #[test]
    fn scores_must_be_finite_and_one_per_token() {
        assert!(Unigram::new(2, &encode_scores(&[0.0, -1.0]), None, true).is_ok());
        assert!(Unigram::new(3, &encode_scores(&[0.0, -1.0]), None, true).is_err());
        assert!(Unigram::new(2, &encode_scores(&[0.0, f64::NAN]), None, true).is_err());
    }
}
