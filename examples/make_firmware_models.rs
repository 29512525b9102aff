//! Writes the models the bare-metal firmware example (`firmware/`) embeds, and the digests of
//! their outputs on this machine, which the firmware must reproduce bit for bit under QEMU.
//!
//!   cargo run --release --example make_firmware_models -- OUTDIR
//!
//! OUTDIR gets `classify.q8b` (tiny BERT, paper scheme, int8 attention, classifier),
//! `embed.q8b` (per-token scheme: per-row input and embedding scales, mean pooling + L2 norm) and
//! `states.q8b` (token states), `minilm3.q8b` (MiniLM-L3-sized, for the RV32 board only, with
//! `expected_rv32.txt` and `minilm3_macs.txt`), `bench.q8b` (0.6 MB, for instruction counts; its GEMM MACs per
//! forward pass in `bench_macs.txt`), and `expected.txt`: one `name digest` line per model, the
//! FNV-1a 64 digest of the output floats' bits for `firmware::INPUT_IDS`. Every kernel this CPU
//! has must give the same digest (checked here).

#[path = "../tests/common/mod.rs"]
mod common;

use std::fmt::Write as _;
use std::path::PathBuf;

use common::{tiny_config, FpModel};
use q8bert::builder::{Head, Pooling};
use q8bert::{Kernel, KernelKind, Model, Options};

/// The input every firmware run uses (also in firmware/src/main.rs): one sequence of 8 tokens.
const INPUT_IDS: [i32; 8] = [2, 7, 11, 5, 19, 23, 8, 3];

fn fnv1a(values: &[f32]) -> u64 {
    fnv1a_bytes(values.iter().flat_map(|v| v.to_bits().to_le_bytes()))
}

fn fnv1a_bytes(bytes: impl Iterator<Item = u8>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The 16-token input of the MiniLM-L3-sized model (also in firmware/src/main.rs).
const SENTENCE_IDS: [i32; 16] = [2, 7592, 1010, 2023, 2003, 1037, 2460, 6251, 2005, 1996, 2034, 14055, 2944, 2006, 1012, 3];

/// The digest of `bytes`' output for `ids`, which every kernel of this CPU must agree on.
fn host_digest(name: &str, bytes: &[u8], ids: &[i32]) -> u64 {
    let aligned = common::Aligned::new(bytes);
    let mut digest = None;
    for kernel in KernelKind::ALL.into_iter().filter_map(Kernel::new) {
        let opts = Options { num_threads: 1, kernel: Some(kernel.kind()), ..Default::default() };
        let model = Model::from_bytes(aligned.bytes(), &opts).unwrap();
        let mut output = vec![0f32; model.output_len(1, ids.len())];
        model.run(ids, None, None, 1, ids.len(), &mut output).unwrap();
        let d = fnv1a(&output);
        assert!(digest.is_none_or(|x| x == d), "{name}: kernel {} gives another digest", kernel.kind().name());
        digest = Some(d);
    }
    digest.unwrap()
}

/// all-MiniLM-L6-v2's shape with 3 layers and 64 positions: ~17 MB packed.
fn minilm_l3_config() -> q8bert::builder::BertConfig {
    q8bert::builder::BertConfig {
        vocab_size: 30522,
        hidden_size: 384,
        num_layers: 3,
        num_heads: 12,
        intermediate_size: 1536,
        max_position_embeddings: 64,
        ..tiny_config()
    }
}

fn bench_config() -> q8bert::builder::BertConfig {
    q8bert::builder::BertConfig {
        vocab_size: 1600,
        hidden_size: 128,
        num_layers: 2,
        num_heads: 4,
        intermediate_size: 512,
        max_position_embeddings: 64,
        ..tiny_config()
    }
}

/// int8 multiply-accumulates of one forward pass over `tokens` tokens: the six GEMMs of each
/// layer and the attention products (QK^T and P.V), which are int8 or f32 depending on the scheme.
fn forward_macs(c: &q8bert::builder::BertConfig, tokens: usize) -> usize {
    let (h, f) = (c.hidden_size as usize, c.intermediate_size as usize);
    c.num_layers as usize * tokens * (4 * h * h + 2 * h * f)
}

fn main() {
    let out: PathBuf = std::env::args().nth(1).expect("usage: make_firmware_models OUTDIR").into();
    std::fs::create_dir_all(&out).unwrap();
    let labels = vec!["a".to_string(), "b".to_string(), "c".to_string()];
    let models = [
        ("classify", FpModel::random(tiny_config(), Head::Classification { labels }, 21).with_int8_attention(4.0, 4.0).bytes()),
        (
            "embed",
            FpModel::random(tiny_config(), Head::Embedding { pooling: Pooling::Mean, normalize: true }, 22)
                .with_per_row_inputs()
                .with_per_row_embeddings()
                .with_per_row_zero_points()
                .bytes(),
        ),
        ("states", FpModel::random(tiny_config(), Head::TokenStates, 23).bytes()),
        // The instruction-count model of issue 21 (0.6 MB: hidden 128, 2 layers, FFN 512), in the
        // default scheme (per-token inputs with zero points, per-row embedding scales).
        (
            "bench",
            FpModel::random(bench_config(), Head::Embedding { pooling: Pooling::Mean, normalize: true }, 24)
                .with_per_row_inputs()
                .with_per_row_embeddings()
                .with_per_row_zero_points()
                .bytes(),
        ),
    ];
    let mut expected = String::new();
    for (name, bytes) in &models {
        std::fs::write(out.join(format!("{name}.q8b")), bytes).unwrap();
        writeln!(expected, "{name} {:016x}", host_digest(name, bytes, &INPUT_IDS)).unwrap();
    }
    // The firmware's lone GEMM (the bench model's FFN-in shape, same operands), every kernel here.
    let (m, k, n) = (8usize, 128usize, 512usize);
    let a: Vec<i8> = (0..m * k).map(|i| ((i * 37 % 255) as i32 - 127) as i8).collect();
    let w: Vec<i8> = (0..n * k).map(|i| ((i * 91 % 255) as i32 - 127) as i8).collect();
    let (packed, sums) = (q8bert::kernels::pack_weights(&w, n, k), q8bert::kernels::weight_sums(&w, n, k));
    let mut digest = None;
    for kernel in KernelKind::ALL.into_iter().filter_map(Kernel::new) {
        let mut gemm_out = vec![0i32; m * n];
        kernel.gemm_i8(&a, k, m, &packed, &sums, n, k, 0, n, &mut gemm_out, n);
        let d = fnv1a_bytes(gemm_out.iter().flat_map(|v| v.to_le_bytes()));
        assert!(digest.is_none_or(|x| x == d), "gemm: kernel {} gives another digest", kernel.kind().name());
        digest = Some(d);
    }
    writeln!(expected, "gemm {:016x}", digest.unwrap()).unwrap();
    std::fs::write(out.join("expected.txt"), &expected).unwrap();
    // The RV32 board (64 MiB of RAM) also runs a MiniLM-L3-sized model (~17 MB) on a 16-token
    // sentence.
    let bytes = FpModel::random(minilm_l3_config(), Head::Embedding { pooling: Pooling::Mean, normalize: true }, 25)
        .with_per_row_inputs()
        .with_per_row_embeddings()
        .with_per_row_zero_points()
        .bytes();
    std::fs::write(out.join("minilm3.q8b"), &bytes).unwrap();
    writeln!(expected, "minilm3 {:016x}", host_digest("minilm3", &bytes, &SENTENCE_IDS)).unwrap();
    std::fs::write(out.join("expected_rv32.txt"), &expected).unwrap();
    std::fs::write(out.join("minilm3_macs.txt"), format!("{}\n", forward_macs(&minilm_l3_config(), SENTENCE_IDS.len()))).unwrap();
    std::fs::write(out.join("bench_macs.txt"), format!("{}\n", forward_macs(&bench_config(), INPUT_IDS.len()))).unwrap();
    print!("{expected}");
}
