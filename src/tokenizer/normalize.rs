//! BertNormalizer + BertPreTokenizer as one streaming pass over chars.
//!
//! Stages, in the reference's order: clean_text (drop controls, whitespace to
//! ' '), CJK spacing, NFD + drop nonspacing marks, lowercase, then split on
//! whitespace and isolate punctuation. Everything is per char except NFD's
//! canonical reordering, which needs a small pending buffer.

use super::tables::*;
use alloc::vec::Vec;

/// Class bits (see tables.rs) for any char.
#[inline]
pub(crate) fn class_of(c: char) -> u8 {
    let cp = c as u32;
    if cp < 0x80 {
        return ASCII_CLASS[cp as usize];
    }
    run_lookup(&CLASS_RUNS, cp)
}

/// Class bits from the run table alone (tests check the ASCII table against it).
#[cfg(test)]
pub(crate) fn class_from_runs(cp: u32) -> u8 {
    run_lookup(&CLASS_RUNS, cp)
}

/// Value of the run containing `cp` in a `start << 8 | value` run table.
#[inline]
fn run_lookup(runs: &[u32], cp: u32) -> u8 {
    let key = (cp << 8) | 0xff;
    let i = runs.partition_point(|&r| r <= key);
    match i.checked_sub(1).and_then(|i| runs.get(i)) {
        Some(&r) => (r & 0xff) as u8,
        None => 0,
    }
}

/// Canonical combining class.
#[inline]
pub(crate) fn ccc(c: char) -> u8 {
    // Nothing below U+0300 combines.
    if (c as u32) < 0x300 {
        return 0;
    }
    run_lookup(&CCC_RUNS, c as u32)
}

#[inline]
pub(crate) fn is_chinese(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF
        | 0x3400..=0x4DBF
        | 0x20000..=0x2A6DF
        | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F
        | 0x2B920..=0x2CEAF
        | 0xF900..=0xFAFF
        | 0x2F800..=0x2FA1F)
}

const HANGUL_S: u32 = 0xAC00;
const HANGUL_COUNT: u32 = 11172;

/// Full canonical decomposition of `c`, fed to `f` in order.
#[inline]
pub(crate) fn decompose(c: char, mut f: impl FnMut(char)) {
    let cp = c as u32;
    // Nothing below U+00C0 decomposes.
    if cp < 0xC0 {
        return f(c);
    }
    let s = cp.wrapping_sub(HANGUL_S);
    if s < HANGUL_COUNT {
        let (l, v, t) = (0x1100 + s / 588, 0x1161 + (s % 588) / 28, 0x11A7 + s % 28);
        f(char::from_u32(l).unwrap_or(c));
        f(char::from_u32(v).unwrap_or(c));
        if t != 0x11A7 {
            f(char::from_u32(t).unwrap_or(c));
        }
        return;
    }
    if let Ok(i) = DECOMP_KEYS.binary_search(&cp) {
        let (a, b) = (DECOMP_OFFS[i] as usize, DECOMP_OFFS[i + 1] as usize);
        for &d in &DECOMP_CHARS[a..b] {
            f(d);
        }
        return;
    }
    f(c)
}

/// Lowercase mapping (per char, no context), fed to `f`.
#[inline]
pub(crate) fn lowercase(c: char, mut f: impl FnMut(char)) {
    let cp = c as u32;
    if cp < 0x80 {
        return f(c.to_ascii_lowercase());
    }
    for &(k, m) in LOWER_MULTI.iter() {
        if k == c {
            for &x in m {
                f(x);
            }
            return;
        }
    }
    let i = LOWER_RUNS.partition_point(|r| r.0 <= cp);
    if let Some(&(start, count, stride, delta)) = i.checked_sub(1).and_then(|i| LOWER_RUNS.get(i)) {
        let off = cp - start;
        // Strides are 1 or 2 (see the generator).
        let (odd_ok, shift) = if stride == 1 { (true, 0) } else { (false, 1) };
        if (odd_ok || off & 1 == 0) && (off >> shift) < count as u32 {
            if let Some(l) = char::from_u32(cp.wrapping_add(delta as u32)) {
                return f(l);
            }
        }
    }
    f(c)
}

/// Receives each pre-tokenized word (UTF-8 bytes, at most `max_chars` chars
/// stored) with its full char count.
pub(crate) trait WordSink {
    fn word(&mut self, bytes: &[u8], nchars: usize);
    /// A special token matched verbatim in the raw text.
    fn special(&mut self, id: u32);
}

#[derive(Clone, Copy)]
pub(crate) struct Flags {
    pub lower: bool,
    pub strip: bool,
    pub chinese: bool,
}

const STACK_WORD: usize = 512;

/// Current word: on the stack unless a (non-default) char limit lets it grow past it.
struct WordBuf {
    stack: [u8; STACK_WORD],
    len: usize,
    heap: Vec<u8>,
    spilled: bool,
}

impl WordBuf {
    #[inline(always)]
    fn push(&mut self, bytes: &[u8]) {
        if !self.spilled && self.len + bytes.len() <= STACK_WORD {
            self.stack[self.len..self.len + bytes.len()].copy_from_slice(bytes);
            self.len += bytes.len();
        } else {
            self.push_heap(bytes);
        }
    }

    #[inline(always)]
    fn push_ascii(&mut self, run: &[u8], lower: bool) {
        let start = self.len;
        self.push(run);
        if lower {
            let buf = if self.spilled {
                &mut self.heap[..]
            } else {
                &mut self.stack[..]
            };
            buf[start..start + run.len()].make_ascii_lowercase();
        }
    }

    #[cold]
    fn push_heap(&mut self, bytes: &[u8]) {
        if !self.spilled {
            self.heap.clear();
            self.heap.extend_from_slice(&self.stack[..self.len]);
            self.spilled = true;
        }
        self.heap.extend_from_slice(bytes);
        self.len += bytes.len();
    }

    #[inline(always)]
    fn bytes(&self) -> &[u8] {
        if self.spilled {
            &self.heap
        } else {
            &self.stack[..self.len]
        }
    }

    #[inline(always)]
    fn clear(&mut self) {
        self.len = 0;
        self.spilled = false;
    }
}

/// Per-call state of the normalize + pre-tokenize pass.
pub(crate) struct Pipeline<'s, S: WordSink> {
    flags: Flags,
    max_chars: usize,
    word: WordBuf,
    nchars: usize,
    /// Combining chars (ccc > 0, not Mn) awaiting canonical ordering.
    pending: Vec<(char, u8)>,
    pub sink: &'s mut S,
}

impl<'s, S: WordSink> Pipeline<'s, S> {
    pub fn new(flags: Flags, max_chars: usize, sink: &'s mut S) -> Self {
        Pipeline {
            flags,
            max_chars,
            word: WordBuf {
                stack: [0; STACK_WORD],
                len: 0,
                heap: Vec::new(),
                spilled: false,
            },
            nchars: 0,
            pending: Vec::new(),
            sink,
        }
    }

    /// Processes one text segment (between special tokens) completely.
    pub fn segment(&mut self, s: &str) {
        let bytes = s.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if b < 0x80 {
                if ASCII_CLASS[b as usize] == 0 {
                    // Run of plain ASCII letters/digits: copy it in one go.
                    let mut j = i + 1;
                    while j < bytes.len() && bytes[j] < 0x80 && ASCII_CLASS[bytes[j] as usize] == 0
                    {
                        j += 1;
                    }
                    self.ascii_run(&bytes[i..j]);
                    i = j;
                } else {
                    self.ascii(b);
                    i += 1;
                }
            } else {
                // `i` is always on a char boundary here.
                match s.get(i..).and_then(|r| r.chars().next()) {
                    Some(c) => {
                        self.clean(c);
                        i += c.len_utf8();
                    }
                    None => break,
                }
            }
        }
        self.flush_pending();
        self.end_word();
    }

    /// Plain ASCII letters/digits (class 0): no normalization beyond lowercase.
    #[inline(always)]
    fn ascii_run(&mut self, run: &[u8]) {
        if !self.pending.is_empty() {
            self.flush_pending();
        }
        let take = run.len().min(self.max_chars.saturating_sub(self.nchars));
        if take > 0 {
            self.word.push_ascii(&run[..take], self.flags.lower);
        }
        self.nchars = self.nchars.saturating_add(run.len());
    }

    /// Fast path: ASCII never decomposes, is never a mark and lowercases to ASCII.
    #[inline(always)]
    fn ascii(&mut self, b: u8) {
        let cls = ASCII_CLASS[b as usize];
        if cls & REMOVED != 0 {
            return;
        }
        if !self.pending.is_empty() {
            self.flush_pending();
        }
        if cls & WS != 0 {
            self.end_word();
        } else if cls & PUNCT != 0 {
            self.end_word();
            self.push_byte(b);
            self.end_word();
        } else {
            let b = if self.flags.lower {
                b.to_ascii_lowercase()
            } else {
                b
            };
            self.push_byte(b);
        }
    }

    /// clean_text and CJK spacing for a non-ASCII char.
    fn clean(&mut self, c: char) {
        let cls = class_of(c);
        if cls & REMOVED != 0 {
            return;
        }
        if cls & WS != 0 {
            self.nfd(' ');
        } else if self.flags.chinese && is_chinese(c) {
            self.nfd(' ');
            self.nfd(c);
            self.nfd(' ');
        } else {
            self.nfd(c);
        }
    }

    /// strip_accents: NFD, canonical ordering, drop Mn.
    #[inline]
    fn nfd(&mut self, c: char) {
        if !self.flags.strip {
            return self.lower(c);
        }
        decompose(c, |d| self.decomposed(d));
    }

    fn decomposed(&mut self, d: char) {
        let k = ccc(d);
        let mark = class_of(d) & MN != 0;
        if k == 0 {
            // A starter (even a dropped one) ends the reorderable run.
            self.flush_pending();
            if !mark {
                self.lower(d);
            }
        } else if !mark {
            // Stable insertion by class. Dropping Mn before sorting is safe:
            // a stable sort keeps the order of the surviving subsequence.
            let pos = self
                .pending
                .iter()
                .rposition(|&(_, pk)| pk <= k)
                .map_or(0, |p| p + 1);
            self.pending.insert(pos, (d, k));
        }
    }

    fn flush_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let mut pending = core::mem::take(&mut self.pending);
        for &(c, _) in pending.iter() {
            self.lower(c);
        }
        pending.clear();
        self.pending = pending;
    }

    #[inline]
    fn lower(&mut self, c: char) {
        if self.flags.lower {
            lowercase(c, |l| self.pretok(l));
        } else {
            self.pretok(c);
        }
    }

    /// BertPreTokenizer on the normalized char.
    #[inline]
    fn pretok(&mut self, c: char) {
        let cls = class_of(c);
        if cls & WS != 0 {
            self.end_word();
        } else if cls & PUNCT != 0 {
            self.end_word();
            self.push_char(c);
            self.end_word();
        } else {
            self.push_char(c);
        }
    }

    #[inline(always)]
    fn push_byte(&mut self, b: u8) {
        if self.nchars < self.max_chars {
            self.word.push(&[b]);
        }
        self.nchars = self.nchars.saturating_add(1);
    }

    #[inline(always)]
    fn push_char(&mut self, c: char) {
        // Past the limit the word becomes [UNK]; only the count matters.
        if self.nchars < self.max_chars {
            let mut tmp = [0u8; 4];
            self.word.push(c.encode_utf8(&mut tmp).as_bytes());
        }
        self.nchars = self.nchars.saturating_add(1);
    }

    #[inline(always)]
    fn end_word(&mut self) {
        if self.nchars != 0 {
            self.sink.word(self.word.bytes(), self.nchars);
            self.word.clear();
            self.nchars = 0;
        }
    }
}
