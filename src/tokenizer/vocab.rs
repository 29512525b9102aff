//! The vocabulary as three flat arrays, used zero-copy from the model file:
//! `offsets` u32 [V+1], `bytes` (concatenated UTF-8 tokens), and `hash`, an open-addressing
//! table of T (power of two, >= 2V) u32 slots holding `id + 1` (0 = empty), FNV-1a 64 of the
//! token bytes masked to T-1, linear probing.

use alloc::vec::Vec;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VocabError {
    BadOffsets,
    BadUtf8,
    EmptyToken,
    BadHashTable,
    DuplicateToken,
    TooLarge,
}

impl VocabError {
    pub fn message(&self) -> &'static str {
        match self {
            VocabError::BadOffsets => "vocabulary offsets are not monotonic or out of bounds",
            VocabError::BadUtf8 => "a vocabulary token is not valid UTF-8",
            VocabError::EmptyToken => "a vocabulary token is empty",
            VocabError::BadHashTable => "vocabulary hash table is inconsistent",
            VocabError::DuplicateToken => "a vocabulary token appears twice",
            VocabError::TooLarge => "vocabulary too large",
        }
    }
}

pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[derive(Debug, Clone, Copy)]
pub struct Vocab<'a> {
    offsets: &'a [u32],
    bytes: &'a [u8],
    hash: &'a [u32],
}

impl<'a> Vocab<'a> {
    pub fn from_parts(offsets: &'a [u32], bytes: &'a [u8], hash: &'a [u32]) -> Result<Vocab<'a>, VocabError> {
        let v = offsets.len().checked_sub(1).ok_or(VocabError::BadOffsets)?;
        if offsets[0] != 0 || offsets[v] as usize != bytes.len() || offsets.windows(2).any(|w| w[0] > w[1]) {
            return Err(VocabError::BadOffsets);
        }
        if offsets.windows(2).any(|w| w[0] == w[1]) {
            return Err(VocabError::EmptyToken);
        }
        if core::str::from_utf8(bytes).is_err() {
            return Err(VocabError::BadUtf8);
        }
        let t = hash.len();
        if !t.is_power_of_two() || t < 2 * v {
            return Err(VocabError::BadHashTable);
        }
        if hash.iter().any(|&e| e as usize > v) {
            return Err(VocabError::BadHashTable);
        }
        let vocab = Vocab { offsets, bytes, hash };
        for id in 0..v {
            // Token boundaries must fall on char boundaries for per-token UTF-8 validity.
            let tok = vocab.token_bytes(id as u32);
            if core::str::from_utf8(tok).is_err() {
                return Err(VocabError::BadUtf8);
            }
            if vocab.lookup_bytes(tok) != Some(id as u32) {
                return Err(if vocab.lookup_bytes(tok).is_some() { VocabError::DuplicateToken } else { VocabError::BadHashTable });
            }
        }
        Ok(vocab)
    }

    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn token_bytes(&self, id: u32) -> &'a [u8] {
        let i = id as usize;
        &self.bytes[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    pub fn token(&self, id: u32) -> Option<&'a str> {
        if id as usize >= self.len() {
            return None;
        }
        core::str::from_utf8(self.token_bytes(id)).ok()
    }

    pub fn lookup(&self, s: &str) -> Option<u32> {
        self.lookup_bytes(s.as_bytes())
    }

    fn lookup_bytes(&self, s: &[u8]) -> Option<u32> {
        let mask = self.hash.len() - 1;
        let mut slot = fnv1a(s) as usize & mask;
        // At least half the slots are empty, so probing ends; the bound is for hostile tables.
        for _ in 0..self.hash.len() {
            let e = self.hash[slot];
            if e == 0 {
                return None;
            }
            if self.token_bytes(e - 1) == s {
                return Some(e - 1);
            }
            slot = (slot + 1) & mask;
        }
        None
    }
}

pub struct EncodedVocab {
    pub offsets: Vec<u32>,
    pub bytes: Vec<u8>,
    pub hash: Vec<u32>,
}

pub fn encode_vocab<S: AsRef<str>>(tokens: &[S]) -> Result<EncodedVocab, VocabError> {
    let mut offsets = Vec::with_capacity(tokens.len() + 1);
    let mut bytes = Vec::new();
    offsets.push(0u32);
    for t in tokens {
        let t = t.as_ref();
        if t.is_empty() {
            return Err(VocabError::EmptyToken);
        }
        bytes.extend_from_slice(t.as_bytes());
        offsets.push(u32::try_from(bytes.len()).map_err(|_| VocabError::TooLarge)?);
    }
    let size = (2 * tokens.len()).max(2).next_power_of_two();
    let mut hash = alloc::vec![0u32; size];
    for (id, t) in tokens.iter().enumerate() {
        let t = t.as_ref().as_bytes();
        let mut slot = fnv1a(t) as usize & (size - 1);
        while hash[slot] != 0 {
            let other = hash[slot] as usize - 1;
            if &bytes[offsets[other] as usize..offsets[other + 1] as usize] == t {
                return Err(VocabError::DuplicateToken);
            }
            slot = (slot + 1) & (size - 1);
        }
        hash[slot] = id as u32 + 1;
    }
    Ok(EncodedVocab { offsets, bytes, hash })
}
