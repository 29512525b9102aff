//! Shared setup of the fuzz targets: the tiny models of the test suite, built once.

#[path = "../../tests/common/mod.rs"]
pub mod common;

use std::sync::OnceLock;

use common::{tiny_config, Aligned, FpModel};
use q8bert::builder::Head;
use q8bert::{Model, Options};

/// The test suite's tiny classification model (vocab 40, H 32, 2 layers, 24 positions).
pub fn tiny_bytes() -> &'static Aligned {
    static B: OnceLock<Aligned> = OnceLock::new();
    B.get_or_init(|| Aligned::new(&FpModel::random(tiny_config(), Head::Classification { labels: vec!["a".into(), "b".into()] }, 3).bytes()))
}

pub fn tiny_model() -> &'static Model<'static> {
    static M: OnceLock<Model<'static>> = OnceLock::new();
    M.get_or_init(|| Model::from_bytes(tiny_bytes().bytes(), &Options { num_threads: 1, ..Default::default() }).unwrap())
}

/// A tiny one-layer regression model over the real BERT-uncased vocabulary, for text input.
pub fn text_bytes() -> &'static Aligned {
    static B: OnceLock<Aligned> = OnceLock::new();
    B.get_or_init(|| {
        let vocab: Vec<String> = include_str!("../../tests/data/vocab.txt").lines().map(str::to_string).collect();
        let mut config = tiny_config();
        config.vocab_size = vocab.len() as u32;
        config.max_position_embeddings = 64;
        config.num_layers = 1;
        let mut m = FpModel::random(config, Head::Regression, 5);
        m.vocab = vocab;
        Aligned::new(&m.bytes())
    })
}

pub fn text_model() -> &'static Model<'static> {
    static M: OnceLock<Model<'static>> = OnceLock::new();
    M.get_or_init(|| Model::from_bytes(text_bytes().bytes(), &Options { num_threads: 1, ..Default::default() }).unwrap())
}

/// A tiny one-layer RoBERTa-style regression model over the byte-level BPE of
/// tests/data/bpe/tokenizer.json (format 1.8), for text input.
pub fn bpe_text_bytes() -> &'static Aligned {
    static B: OnceLock<Aligned> = OnceLock::new();
    B.get_or_init(|| {
        let m = FpModel::with_bpe_tokenizer_json(include_str!("../../tests/data/bpe/tokenizer.json"), Head::Regression, 6);
        Aligned::new(&one_layer(m).bytes())
    })
}

pub fn bpe_text_model() -> &'static Model<'static> {
    static M: OnceLock<Model<'static>> = OnceLock::new();
    M.get_or_init(|| Model::from_bytes(bpe_text_bytes().bytes(), &Options { num_threads: 1, ..Default::default() }).unwrap())
}

/// A tiny one-layer XLM-R-style regression model over the SentencePiece Unigram of
/// tests/data/unigram/tokenizer.json (format 1.9, with its charsmap), for text input.
pub fn unigram_text_bytes() -> &'static Aligned {
    static B: OnceLock<Aligned> = OnceLock::new();
    B.get_or_init(|| {
        let m = FpModel::with_unigram_tokenizer_json(include_str!("../../tests/data/unigram/tokenizer.json"), Head::Regression, 7);
        Aligned::new(&one_layer(m).bytes())
    })
}

pub fn unigram_text_model() -> &'static Model<'static> {
    static M: OnceLock<Model<'static>> = OnceLock::new();
    M.get_or_init(|| Model::from_bytes(unigram_text_bytes().bytes(), &Options { num_threads: 1, ..Default::default() }).unwrap())
}

/// The model cut to its first layer (text fuzzing needs the tokenizer, not depth).
fn one_layer(mut m: FpModel) -> FpModel {
    m.config.num_layers = 1;
    m.layers.truncate(1);
    m.layer_activations.truncate(1);
    m.int8_attention.truncate(1);
    m.int8_values.truncate(1);
    m
}

/// Byte reader for structured inputs: returns zeros once the data runs out.
pub struct Input<'a>(pub &'a [u8]);

impl Input<'_> {
    pub fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    pub fn rest(&mut self) -> &[u8] {
        std::mem::take(&mut self.0)
    }
}
