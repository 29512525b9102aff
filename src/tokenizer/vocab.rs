//! Flat, zero-copy vocabulary: offsets + UTF-8 bytes + open-addressing hash table.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

/// FNV-1a 64-bit offset basis.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64-bit prime.
pub const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// One FNV-1a step; public so the hash can be continued incrementally.
#[inline(always)]
pub const fn fnv1a_step(h: u64, b: u8) -> u64 {
    (h ^ b as u64).wrapping_mul(FNV_PRIME)
}

/// FNV-1a 64-bit over `bytes`, starting from `seed` (use [`FNV_OFFSET`] for a plain hash).
#[inline]
pub const fn fnv1a_from(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = seed;
    let mut i = 0;
    while i < bytes.len() {
        h = fnv1a_step(h, bytes[i]);
        i += 1;
    }
    h
}

/// FNV-1a 64-bit hash of a token, as used by the vocabulary hash table.
#[inline]
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    fnv1a_from(FNV_OFFSET, bytes)
}

/// Why a vocabulary (or the tokenizer settings that refer to it) was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VocabError {
    /// `offsets` is empty, does not start at 0, decreases, or does not end at `bytes.len()`.
    BadOffsets,
    /// `bytes` is not UTF-8, or an offset splits a character.
    BadUtf8,
    /// A token has zero length.
    EmptyToken,
    /// Table size not a power of two / smaller than 2V, an entry > V, an id missing
    /// or present twice, or a token that a lookup would not reach.
    BadHashTable,
    /// Two ids have the same token text.
    DuplicateToken,
    /// More tokens or bytes than the u32 format can address.
    TooLarge,
    /// A special token id (unk/cls/sep/pad) is not below the vocabulary size.
    BadSpecialId,
    /// A BPE merge table that is not sorted rows of in-range ids, or a merge whose
    /// parts or result are not in the vocabulary.
    BadMerges,
    /// A Unigram score table that is not one finite f64 per token, or a SentencePiece
    /// charsmap that is not `[u32 size][trie][UTF-8]`.
    BadUnigram,
}

impl VocabError {
    pub fn message(&self) -> &'static str {
        match self {
            VocabError::BadOffsets => "vocab offsets are not monotonic from 0 to bytes.len()",
            VocabError::BadUtf8 => "vocab token bytes are not valid UTF-8",
            VocabError::EmptyToken => "vocab contains an empty token",
            VocabError::BadHashTable => "vocab hash table is malformed",
            VocabError::DuplicateToken => "vocab contains a duplicate token",
            VocabError::TooLarge => "vocab is too large for u32 offsets/ids",
            VocabError::BadSpecialId => "special token id is out of vocab range",
            VocabError::BadMerges => "BPE merge table is malformed or names tokens missing from the vocab",
            VocabError::BadUnigram => "Unigram scores or SentencePiece charsmap are malformed",
        }
    }
}

impl fmt::Display for VocabError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

#[cfg(feature = "std")]
impl std::error::Error for VocabError {}

/// Vocabulary stored as three flat arrays so it can be used zero-copy from a
/// memory-mapped model file.
///
/// File format (all little-endian u32 when serialized):
/// - `offsets`: `V + 1` entries, `offsets[0] == 0`, strictly increasing,
///   `offsets[V] == bytes.len()`. Token `i` is `bytes[offsets[i]..offsets[i + 1]]`,
///   non-empty valid UTF-8. The token id is its index.
/// - `bytes`: concatenated token text.
/// - `hash`: `T` slots, `T` a power of two with `T >= 2 * V` (so an empty slot always
///   exists). Slot value is `token_id + 1`, `0` means empty. A token is stored by open
///   addressing with linear probing: start at `slot = fnv1a64(token) & (T - 1)` and step
///   `slot = (slot + 1) & (T - 1)` until a free slot. `fnv1a64` is FNV-1a 64-bit over the
///   token's UTF-8 bytes (offset basis `0xcbf29ce484222325`, prime `0x100000001b3`).
#[derive(Clone, Copy)]
pub struct Vocab<'a> {
    offsets: &'a [u32],
    text: &'a str,
    hash: &'a [u32],
    mask: usize,
    /// Longest token in bytes (bounds the first greedy candidate).
    pub(crate) max_len: usize,
    /// Longest `##` token in bytes, without the prefix.
    pub(crate) max_cont_len: usize,
}

impl fmt::Debug for Vocab<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vocab")
            .field("len", &self.len())
            .field("table", &self.hash.len())
            .finish()
    }
}

pub(crate) const CONT_PREFIX: &[u8] = b"##";

impl<'a> Vocab<'a> {
    /// Validates the three arrays (see the type docs for the format) in
    /// O(V + T + bytes) time (byte comparisons happen only among tokens whose
    /// full 64-bit hashes collide) and O(V) scratch memory, then wraps them
    /// without copying. Never panics.
    pub fn from_parts(
        offsets: &'a [u32],
        bytes: &'a [u8],
        hash: &'a [u32],
    ) -> Result<Vocab<'a>, VocabError> {
        let v = match offsets.len().checked_sub(1) {
            Some(v) => v,
            None => return Err(VocabError::BadOffsets),
        };
        // ids + 1 must fit the u32 table entries.
        if v >= u32::MAX as usize || bytes.len() > u32::MAX as usize {
            return Err(VocabError::TooLarge);
        }
        if offsets[0] != 0 || offsets[v] as usize != bytes.len() {
            return Err(VocabError::BadOffsets);
        }
        let mut max_len = 0usize;
        let mut max_cont_len = 0usize;
        for w in offsets.windows(2) {
            if w[1] < w[0] {
                return Err(VocabError::BadOffsets);
            }
            if w[1] == w[0] {
                return Err(VocabError::EmptyToken);
            }
        }
        let text = core::str::from_utf8(bytes).map_err(|_| VocabError::BadUtf8)?;
        for &o in offsets {
            if !text.is_char_boundary(o as usize) {
                return Err(VocabError::BadUtf8);
            }
        }
        for w in offsets.windows(2) {
            let tok = &bytes[w[0] as usize..w[1] as usize];
            max_len = max_len.max(tok.len());
            if tok.len() > 2 && tok.starts_with(CONT_PREFIX) {
                max_cont_len = max_cont_len.max(tok.len() - 2);
            }
        }

        let t = hash.len();
        if !t.is_power_of_two() || t / 2 < v {
            return Err(VocabError::BadHashTable);
        }
        let mask = t - 1;
        let vocab = Vocab {
            offsets,
            text,
            hash,
            mask,
            max_len,
            max_cont_len,
        };
        if v == 0 {
            return if hash.iter().all(|&e| e == 0) {
                Ok(vocab)
            } else {
                Err(VocabError::BadHashTable)
            };
        }

        // Each id exactly once, nothing out of range.
        let mut seen = vec![0u64; v.div_ceil(64)];
        let mut filled = 0usize;
        for &e in hash {
            if e == 0 {
                continue;
            }
            let id = e as usize - 1;
            if id >= v {
                return Err(VocabError::BadHashTable);
            }
            let (w, b) = (id / 64, 1u64 << (id % 64));
            if seen[w] & b != 0 {
                return Err(VocabError::BadHashTable);
            }
            seen[w] |= b;
            filled += 1;
        }
        if filled != v {
            return Err(VocabError::BadHashTable);
        }
        drop(seen);

        let hashes: Vec<u64> = (0..v).map(|i| fnv1a64(vocab.token_bytes(i))).collect();

        // Reachability: a probe from a token's home slot must not cross an empty
        // slot before reaching it, i.e. its home lies inside its occupied run.
        // Scanning from just after an empty slot visits every run in one pass.
        let empty = match hash.iter().position(|&e| e == 0) {
            Some(p) => p,
            None => return Err(VocabError::BadHashTable),
        };
        let mut run_start = (empty + 1) & mask;
        for k in 1..=t {
            let s = (empty + k) & mask;
            let e = hash[s];
            if e == 0 {
                run_start = (s + 1) & mask;
                continue;
            }
            let home = (hashes[e as usize - 1] as usize) & mask;
            let from_home = s.wrapping_sub(home) & mask;
            let from_run = s.wrapping_sub(run_start) & mask;
            if from_home > from_run {
                return Err(VocabError::BadHashTable);
            }
        }

        // Duplicates: equal tokens have equal hashes, so they share a home slot and one run.
        // Probing from token i's home, the first entry with i's bytes is i itself unless a
        // duplicate stands earlier in the probe; of two equal tokens, the later one's probe
        // meets the earlier. Bytes are compared only on a full 64-bit hash match.
        for (i, &h) in hashes.iter().enumerate() {
            let mut s = (h as usize) & mask;
            loop {
                // Reachability (above) puts i's own slot before any empty one.
                let Some(id) = (hash[s] as usize).checked_sub(1) else { return Err(VocabError::BadHashTable) };
                if id == i {
                    break;
                }
                if hashes[id] == h && vocab.token_bytes(id) == vocab.token_bytes(i) {
                    return Err(VocabError::DuplicateToken);
                }
                s = (s + 1) & mask;
            }
        }
        Ok(vocab)
    }

    /// Number of tokens (V).
    #[inline]
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Token text for an id, `None` if out of range.
    pub fn token(&self, id: u32) -> Option<&'a str> {
        let i = id as usize;
        let start = *self.offsets.get(i)? as usize;
        let end = *self.offsets.get(i.checked_add(1)?)? as usize;
        self.text.get(start..end)
    }

    /// Id of a token, `None` if absent.
    #[inline]
    pub fn lookup(&self, s: &str) -> Option<u32> {
        self.find_hashed(fnv1a64(s.as_bytes()), b"", s.as_bytes())
    }

    /// Id of the token `s` whose FNV-1a hash the caller computed incrementally.
    #[inline]
    pub(crate) fn lookup_hashed(&self, h: u64, s: &[u8]) -> Option<u32> {
        self.find_hashed(h, b"", s)
    }

    /// The raw hash table and its mask (for derived lookup structures).
    #[inline(always)]
    pub(crate) fn table(&self) -> (&'a [u32], usize) {
        (self.hash, self.mask)
    }

    /// Bytes of token `i`; `i < len()` is guaranteed by callers.
    #[inline(always)]
    pub(crate) fn token_bytes(&self, i: usize) -> &'a [u8] {
        let b = self.text.as_bytes();
        &b[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    /// Looks up `prefix ++ rest` whose FNV-1a hash is `h` (computed by the caller,
    /// possibly incrementally).
    #[inline]
    fn find_hashed(&self, h: u64, prefix: &[u8], rest: &[u8]) -> Option<u32> {
        let want = prefix.len() + rest.len();
        let mut slot = h as usize & self.mask;
        // Validation guarantees an empty slot; the bound only keeps this total.
        for _ in 0..self.hash.len() {
            let e = self.hash[slot];
            if e == 0 {
                return None;
            }
            let id = (e - 1) as usize;
            let tok = self.token_bytes(id);
            if tok.len() == want && tok[..prefix.len()] == *prefix && tok[prefix.len()..] == *rest {
                return Some(id as u32);
            }
            slot = (slot + 1) & self.mask;
        }
        None
    }
}

/// Owned arrays in the [`Vocab`] format, built by [`encode_vocab`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedVocab {
    pub offsets: Vec<u32>,
    pub bytes: Vec<u8>,
    pub hash: Vec<u32>,
}

impl EncodedVocab {
    /// Borrow as a validated [`Vocab`].
    pub fn vocab(&self) -> Result<Vocab<'_>, VocabError> {
        Vocab::from_parts(&self.offsets, &self.bytes, &self.hash)
    }
}

/// Builds the three arrays from a token list (index = id). Table size is the
/// smallest power of two >= 2V (minimum 2).
pub fn encode_vocab<S: AsRef<str>>(tokens: &[S]) -> Result<EncodedVocab, VocabError> {
    let v = tokens.len();
    if v >= (u32::MAX / 2) as usize {
        return Err(VocabError::TooLarge);
    }
    let mut offsets = Vec::with_capacity(v + 1);
    let mut bytes = Vec::new();
    offsets.push(0u32);
    for t in tokens {
        let t = t.as_ref().as_bytes();
        if t.is_empty() {
            return Err(VocabError::EmptyToken);
        }
        bytes.extend_from_slice(t);
        if bytes.len() > u32::MAX as usize {
            return Err(VocabError::TooLarge);
        }
        offsets.push(bytes.len() as u32);
    }
    let size = (2 * v).max(2).next_power_of_two();
    let mask = size - 1;
    let mut hash = vec![0u32; size];
    for (id, t) in tokens.iter().enumerate() {
        let t = t.as_ref().as_bytes();
        let mut slot = fnv1a64(t) as usize & mask;
        loop {
            let e = hash[slot];
            if e == 0 {
                hash[slot] = id as u32 + 1;
                break;
            }
            let other = e as usize - 1;
            if &bytes[offsets[other] as usize..offsets[other + 1] as usize] == t {
                return Err(VocabError::DuplicateToken);
            }
            slot = (slot + 1) & mask;
        }
    }
    Ok(EncodedVocab {
        offsets,
        bytes,
        hash,
    })
}
