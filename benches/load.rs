//! Model open time for tiny, all-MiniLM-L6-v2-shaped and BERT-base-shaped files: it must stay
//! flat as the weights grow (memory map, no copy, no repacking). The full-payload checksum
//! variant is shown for contrast, and `huge_pages` (a copy of the whole file into huge pages);
//! both are O(file size) by design.
//!
//! cargo bench --bench load

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::PathBuf;

use common::FpModel;
use criterion::{criterion_group, criterion_main, Criterion};
use q8bert::builder::{BertConfig, Head, Pooling};
use q8bert::{Model, Options};

fn shape(layers: u32, hidden: u32, heads: u32, inter: u32) -> BertConfig {
    BertConfig {
        vocab_size: 30522,
        hidden_size: hidden,
        num_layers: layers,
        num_heads: heads,
        intermediate_size: inter,
        max_position_embeddings: 512,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
    }
}

fn write(name: &str, config: BertConfig) -> PathBuf {
    let path = std::env::temp_dir().join(format!("q8bert-bench-{name}.q8b"));
    if !path.exists() {
        let fp = FpModel::random(config, Head::Embedding { pooling: Pooling::Mean, normalize: true }, 1);
        fp.builder().write(&path).unwrap();
    }
    path
}

fn bench_open(c: &mut Criterion) {
    let models = [
        ("tiny", write("tiny", common::tiny_config())),
        ("minilm-l6-h384", write("minilm", shape(6, 384, 12, 1536))),
        ("bert-base", write("bert-base", shape(12, 768, 12, 3072))),
    ];
    let mut group = c.benchmark_group("open");
    for (name, path) in &models {
        let size = std::fs::metadata(path).unwrap().len();
        eprintln!("{name}: {:.1} MB", size as f64 / 1e6);
        group.bench_function(format!("{name}/default"), |b| b.iter(|| Model::open(path, &Options::default()).unwrap()));
    }
    group.sample_size(10);
    for (name, path) in &models[1..] {
        let opts = Options { verify_checksum: true, ..Default::default() };
        group.bench_function(format!("{name}/verify_checksum"), |b| b.iter(|| Model::open(path, &opts).unwrap()));
        let opts = Options { huge_pages: true, ..Default::default() };
        group.bench_function(format!("{name}/huge_pages"), |b| b.iter(|| Model::open(path, &opts).unwrap()));
    }
    group.finish();
}

criterion_group!(benches, bench_open);
criterion_main!(benches);
