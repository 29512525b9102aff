//! Greedy longest-match-first WordPiece over one pre-tokenized word.

use super::vocab::{fnv1a64, fnv1a_from, fnv1a_step, Vocab, CONT_PREFIX, FNV_OFFSET};
use alloc::vec::Vec;

/// Vocab lookup over a derived copy of the hash table whose slots also hold a
/// 16-bit hash tag and the token length, so a probe past another token costs
/// one load and never touches the offsets/bytes arrays (failed greedy
/// candidates are the common case). Built at load time; the file format is unchanged.
pub(crate) struct Lookup<'a> {
    pub vocab: Vocab<'a>,
    /// `id + 1` (0 = empty) | tag << 32 | min(len, 0xffff) << 48.
    slots: Vec<u64>,
    mask: usize,
}

#[inline(always)]
fn tag_of(h: u64) -> u64 {
    h >> 48
}

/// Byte equality without a libc call (tokens are short).
#[inline(always)]
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

impl<'a> Lookup<'a> {
    pub fn new(vocab: Vocab<'a>) -> Self {
        let (hash, mask) = vocab.table();
        let slots = hash
            .iter()
            .map(|&e| {
                if e == 0 {
                    return 0;
                }
                let tok = vocab.token_bytes(e as usize - 1);
                e as u64 | tag_of(fnv1a64(tok)) << 32 | (tok.len().min(0xffff) as u64) << 48
            })
            .collect();
        Lookup { vocab, slots, mask }
    }

    /// Id of `prefix ++ rest`, whose FNV-1a hash is `h`.
    #[inline]
    pub fn find(&self, h: u64, prefix: &[u8], rest: &[u8]) -> Option<u32> {
        let want = prefix.len() + rest.len();
        let key = tag_of(h) | (want.min(0xffff) as u64) << 16;
        let mut slot = h as usize & self.mask;
        for _ in 0..self.slots.len() {
            let e = self.slots[slot];
            if e == 0 {
                return None;
            }
            if e >> 32 == key {
                let id = e as u32 - 1;
                let tok = self.vocab.token_bytes(id as usize);
                if tok.len() == want
                    && same(&tok[..prefix.len()], prefix)
                    && same(&tok[prefix.len()..], rest)
                {
                    return Some(id);
                }
            }
            slot = (slot + 1) & self.mask;
        }
        None
    }
}

/// Hash state after "##", so continuation candidates hash without concatenation.
const PREFIX_SEED: u64 = fnv1a_from(FNV_OFFSET, CONT_PREFIX);

/// Candidates up to this many bytes reuse prefix hash states (one pass per start).
pub(crate) const STATES: usize = 64;

#[inline(always)]
fn is_continuation(b: u8) -> bool {
    b & 0xC0 == 0x80
}

/// Appends the pieces of `word` (valid UTF-8, `nchars` chars in total) to `out`;
/// a word over `max_chars` chars or with any unmatched piece becomes one `unk`.
#[inline]
pub(crate) fn wordpiece(
    lookup: &Lookup<'_>,
    word: &[u8],
    nchars: usize,
    max_chars: usize,
    unk: i32,
    states: &mut [u64; STATES],
    out: &mut Vec<i32>,
) {
    if nchars > max_chars {
        out.push(unk);
        return;
    }
    let mark = out.len();
    let mut start = 0;
    while start < word.len() {
        let (seed, prefix, limit): (u64, &[u8], usize) = if start == 0 {
            (FNV_OFFSET, b"", lookup.vocab.max_len)
        } else {
            (PREFIX_SEED, CONT_PREFIX, lookup.vocab.max_cont_len)
        };
        // Longer candidates cannot be tokens; start from the longest that can.
        let mut end = word.len().min(start.saturating_add(limit));
        while end > start && end < word.len() && is_continuation(word[end]) {
            end -= 1;
        }
        let rest = &word[start..end];
        let mut found = None;
        if rest.len() <= STATES {
            let mut h = seed;
            for (i, &b) in rest.iter().enumerate() {
                h = fnv1a_step(h, b);
                states[i] = h;
            }
            let mut e = end;
            while e > start {
                if let Some(id) = lookup.find(states[e - start - 1], prefix, &word[start..e]) {
                    found = Some((id, e));
                    break;
                }
                e -= 1;
                while e > start && is_continuation(word[e]) {
                    e -= 1;
                }
            }
        } else {
            // Only with a vocab holding very long tokens: hash each candidate afresh.
            let mut e = end;
            while e > start {
                let h = fnv1a_from(seed, &word[start..e]);
                if let Some(id) = lookup.find(h, prefix, &word[start..e]) {
                    found = Some((id, e));
                    break;
                }
                e -= 1;
                while e > start && is_continuation(word[e]) {
                    e -= 1;
                }
            }
        }
        match found {
            Some((id, e)) => {
                out.push(id as i32);
                start = e;
            }
            None => {
                out.truncate(mark);
                out.push(unk);
                return;
            }
        }
    }
}
