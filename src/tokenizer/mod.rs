//! BERT WordPiece tokenization driven by the vocabulary stored in the model file.

pub mod vocab;
pub use vocab::{encode_vocab, EncodedVocab, Vocab, VocabError};
