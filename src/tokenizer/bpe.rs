//! Byte-level BPE as RoBERTa and GPT-2 use it (Hugging Face `tokenizers`: ByteLevel
//! pre-tokenizer + BPE without dropout, prefix or suffix): text is split with GPT-2's
//! regex, each piece's bytes become one vocabulary character each, and the pair of
//! adjacent symbols with the lowest merge rank is merged until none is left.

use super::bytelevel_tables::{CLASS_RUNS, LETTER, NUMBER, OTHER, SPACE};
use super::vocab::{Vocab, VocabError};
use alloc::collections::BinaryHeap;
use alloc::vec::Vec;
use core::cmp::Reverse;

/// The merge table, zero-copy from the model file: `n` rows of
/// `[left id, right id, merged id, rank]`, sorted by `(left, right)` without duplicates,
/// ranks below `n` (a merge's rank is its line in `merges.txt`).
#[derive(Clone, Copy)]
pub struct Merges<'a> {
    rows: &'a [u32],
}

impl<'a> Merges<'a> {
    pub fn from_table(rows: &'a [u32], vocab_len: usize) -> Result<Self, VocabError> {
        if !rows.len().is_multiple_of(4) {
            return Err(VocabError::BadMerges);
        }
        let n = rows.len() / 4;
        let mut last: Option<(u32, u32)> = None;
        for r in rows.chunks_exact(4) {
            let key = (r[0], r[1]);
            if matches!(last, Some(k) if k >= key) || r[..3].iter().any(|&id| id as usize >= vocab_len) || r[3] as usize >= n {
                return Err(VocabError::BadMerges);
            }
            last = Some(key);
        }
        Ok(Merges { rows })
    }

    pub fn len(&self) -> usize {
        self.rows.len() / 4
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// `(rank, merged id)` of the pair, if it merges.
    #[inline]
    fn find(&self, left: u32, right: u32) -> Option<(u32, u32)> {
        let (mut lo, mut hi) = (0usize, self.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            let r = &self.rows[mid * 4..mid * 4 + 4];
            match (r[0], r[1]).cmp(&(left, right)) {
                core::cmp::Ordering::Less => lo = mid + 1,
                core::cmp::Ordering::Greater => hi = mid,
                core::cmp::Ordering::Equal => return Some((r[3], r[2])),
            }
        }
        None
    }
}

/// Builds the merge table from `merges.txt`-order pairs of token strings. As Hugging Face,
/// a pair listed twice keeps its last rank; a pair whose parts or concatenation are not
/// in the vocabulary is an error.
pub fn encode_merges<S: AsRef<str>>(vocab: &Vocab<'_>, pairs: &[(S, S)]) -> Result<Vec<u32>, (usize, VocabError)> {
    let mut rows: Vec<[u32; 4]> = Vec::with_capacity(pairs.len());
    let mut joined = alloc::string::String::new();
    for (i, (a, b)) in pairs.iter().enumerate() {
        let (a, b) = (a.as_ref(), b.as_ref());
        joined.clear();
        joined.push_str(a);
        joined.push_str(b);
        let ids = (vocab.lookup(a), vocab.lookup(b), vocab.lookup(&joined));
        let (Some(l), Some(r), Some(m)) = ids else {
            return Err((i, VocabError::BadMerges));
        };
        rows.push([l, r, m, i as u32]);
    }
    // Stable sort, then keep the last of equal keys (the highest rank).
    rows.sort_by_key(|r| (r[0], r[1]));
    let mut out: Vec<u32> = Vec::with_capacity(rows.len() * 4);
    for (i, r) in rows.iter().enumerate() {
        if rows.get(i + 1).is_some_and(|n| n[..2] == r[..2]) {
            continue;
        }
        out.extend_from_slice(r);
    }
    // Ranks must stay below the row count: renumber densely in rank order.
    let n = out.len() / 4;
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&k| out[k * 4 + 3]);
    for (rank, k) in order.into_iter().enumerate() {
        out[k * 4 + 3] = rank as u32;
    }
    Ok(out)
}

/// GPT-2's byte-to-character map: printable Latin-1 bytes stand for themselves, the
/// others (controls, space, 0x7F-0xA0, soft hyphen) for U+0100 onward, in byte order.
pub fn byte_char(b: u8) -> char {
    let printable = |b: u8| (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
    if printable(b) {
        return b as char;
    }
    let rank = (0..b).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(256 + rank).unwrap_or('\u{FFFD}')
}

/// Byte-level state of a tokenizer: the id of each byte's one-character token.
#[derive(Clone, Copy)]
pub struct ByteLevel<'a> {
    merges: Merges<'a>,
    /// `u32::MAX` where the vocabulary lacks the byte: Hugging Face drops it (no unk).
    byte_ids: [u32; 256],
    pub add_prefix_space: bool,
}

impl<'a> ByteLevel<'a> {
    pub fn new(vocab: &Vocab<'_>, merges: Merges<'a>, add_prefix_space: bool) -> Self {
        let mut byte_ids = [u32::MAX; 256];
        for (b, id) in byte_ids.iter_mut().enumerate() {
            let mut buf = [0u8; 4];
            if let Some(t) = vocab.lookup(byte_char(b as u8).encode_utf8(&mut buf)) {
                *id = t;
            }
        }
        ByteLevel { merges, byte_ids, add_prefix_space }
    }

    pub fn merges(&self) -> &Merges<'a> {
        &self.merges
    }

    /// Appends the ids of one pre-tokenized piece.
    pub fn encode_piece(&self, piece: &[u8], scratch: &mut BpeScratch, out: &mut Vec<i32>) {
        let syms = &mut scratch.symbols;
        syms.clear();
        for &b in piece {
            let id = self.byte_ids[b as usize];
            if id != u32::MAX {
                let i = syms.len() as u32;
                syms.push(Symbol { id, prev: i.wrapping_sub(1), next: i + 1, alive: true });
            }
        }
        let n = syms.len() as u32;
        if n == 0 {
            return;
        }
        syms[n as usize - 1].next = u32::MAX;
        let heap = &mut scratch.heap;
        heap.clear();
        for i in 0..n as usize - 1 {
            if let Some((rank, merged)) = self.merges.find(syms[i].id, syms[i + 1].id) {
                heap.push(Reverse((rank, i as u32, merged)));
            }
        }
        // Lowest rank first, leftmost among equals; entries whose pair has changed since
        // they were queued are skipped (the same order as Hugging Face's `Word::merge_all`).
        while let Some(Reverse((_, pos, merged))) = heap.pop() {
            let p = pos as usize;
            let next = syms[p].next;
            if !syms[p].alive || next == u32::MAX {
                continue;
            }
            let right = syms[next as usize];
            if self.merges.find(syms[p].id, right.id).map(|m| m.1) != Some(merged) {
                continue;
            }
            syms[p].id = merged;
            syms[p].next = right.next;
            syms[next as usize].alive = false;
            if right.next != u32::MAX {
                syms[right.next as usize].prev = pos;
            }
            let prev = syms[p].prev;
            if prev != u32::MAX {
                if let Some((rank, m)) = self.merges.find(syms[prev as usize].id, merged) {
                    heap.push(Reverse((rank, prev, m)));
                }
            }
            if right.next != u32::MAX {
                if let Some((rank, m)) = self.merges.find(merged, syms[right.next as usize].id) {
                    heap.push(Reverse((rank, pos, m)));
                }
            }
        }
        let mut i = 0u32;
        while i != u32::MAX {
            out.push(syms[i as usize].id as i32);
            i = syms[i as usize].next;
        }
    }
}

#[derive(Clone, Copy)]
struct Symbol {
    id: u32,
    prev: u32,
    next: u32,
    alive: bool,
}

/// Buffers reused across pieces.
#[derive(Default)]
pub struct BpeScratch {
    symbols: Vec<Symbol>,
    heap: BinaryHeap<Reverse<(u32, u32, u32)>>,
}

#[inline]
fn class(c: char) -> u8 {
    let cp = c as u32;
    if cp < 0x80 {
        let b = cp as u8;
        return if b.is_ascii_alphabetic() {
            LETTER
        } else if b.is_ascii_digit() {
            NUMBER
        } else if matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r') {
            SPACE
        } else {
            OTHER
        };
    }
    let i = CLASS_RUNS.partition_point(|&r| r >> 8 <= cp);
    // CLASS_RUNS starts at 0, so i >= 1.
    (CLASS_RUNS[i - 1] & 0xFF) as u8
}

/// Calls `f` with each piece of GPT-2's pre-tokenizer regex
/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`.
pub fn split_pieces(text: &str, mut f: impl FnMut(&str)) {
    let b = text.as_bytes();
    let mut i = 0;
    let char_at = |i: usize| text[i..].chars().next();
    while i < b.len() {
        let start = i;
        let c = char_at(i).unwrap_or(' ');
        // Contractions, tried first at their position.
        if c == '\'' {
            let rest = &b[i + 1..];
            let n = if rest.starts_with(b"re") || rest.starts_with(b"ve") || rest.starts_with(b"ll") {
                2
            } else if matches!(rest.first(), Some(b's' | b't' | b'm' | b'd')) {
                1
            } else {
                0
            };
            if n > 0 {
                i += 1 + n;
                f(&text[start..i]);
                continue;
            }
        }
        // ` ?X+` for X in letters, numbers, others: an optional leading U+0020.
        let (run_from, run_class) = if c == ' ' {
            match char_at(i + 1) {
                Some(d) if class(d) != SPACE => (i + 1, class(d)),
                _ => (i, SPACE),
            }
        } else {
            (i, class(c))
        };
        if run_class != SPACE {
            i = run_from;
            while let Some(d) = char_at(i) {
                if class(d) != run_class {
                    break;
                }
                i += d.len_utf8();
            }
            f(&text[start..i]);
            continue;
        }
        // Whitespace: `\s+(?!\S)` leaves the last one for the next piece when a non-space
        // follows; a lone space before a non-space falls to `\s+`.
        let mut last = i;
        while let Some(d) = char_at(i) {
            if class(d) != SPACE {
                break;
            }
            last = i;
            i += d.len_utf8();
        }
        if i < b.len() && last > start {
            i = last;
        }
        f(&text[start..i]);
    }
}
