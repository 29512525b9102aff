//! End-to-end latency of one `run` call, for the peer comparison in scripts/bench_e2e.py.
//!
//!   cargo run --release --example bench_e2e -- --shape bert-base --batch 1 --seq 128 --threads 1
//!
//! With `--features op-timing` and `--profile-ops` it also prints the time split per operation.
//!
//! Builds (once, cached) a random-weight model of the named shape, then times `run` until
//! --min-time-ms has passed and prints one JSON line with the median and percentiles.
//! `--int8-attention` builds the model with int8 attention scores and P·V (format 1.1);
//! `--per-token` with per-channel weights, per-row input scales and zero points and per-row
//! embedding scales (format 1.4, the post-training default of `trainer quantize`;
//! `--symmetric-rows`: without the zero points, format 1.3), else per-tensor weights,
//! static scales and one scale per embedding table. `--dynamic-attention` adds int8 QKᵀ and
//! P·V with run-time scales (format 1.6). `--weight-bits 7` packs 7-bit weights
//! (`trainer quantize --weight-bits 7`). `--huge-pages` opens the model with
//! `Options::huge_pages` (a private copy in transparent huge pages instead of the file map).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use q8bert::builder::{self, BertConfig, Head, ModelBuilder, TokenizerConfig};
use q8bert::{KernelKind, Model, Options};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn shape(name: &str) -> BertConfig {
    let (layers, hidden, inter) = match name {
        "bert-base" => (12, 768, 3072),
        "minilm" => (6, 384, 1536),
        other => panic!("unknown shape {other:?} (bert-base, minilm)"),
    };
    BertConfig {
        vocab_size: 30522,
        hidden_size: hidden,
        num_layers: layers,
        num_heads: 12,
        intermediate_size: inter,
        max_position_embeddings: 512,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
    }
}

struct Rng(u64);
impl Rng {
    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                ((self.0 >> 40) as f32 / (1u64 << 23) as f32 - 1.0) * scale
            })
            .collect()
    }
}

fn view(p: &(Vec<f32>, Vec<f32>)) -> builder::Linear<'_> {
    builder::Linear { weight: &p.0, bias: &p.1, input_max: 4.0 }
}

#[allow(clippy::too_many_arguments)]
fn build(config: BertConfig, int8_attention: bool, per_token: bool, symmetric_rows: bool, dynamic_attention: bool, weight_bits: u8, path: &Path) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (h, i) = (config.hidden_size as usize, config.intermediate_size as usize);
    let vocab: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .iter()
        .map(|s| s.to_string())
        .chain((5..config.vocab_size).map(|t| format!("tok{t}")))
        .collect();
    let head = Head::Classification { labels: vec!["a".into(), "b".into()] };
    let mut b = ModelBuilder::new(config, head, TokenizerConfig::bert_uncased(vocab));
    if per_token {
        b.weight_granularity(builder::WeightGranularity::PerChannel);
        b.activation_quant(builder::ActivationQuant::PerRow);
        b.embedding_granularity(builder::EmbeddingGranularity::PerRow);
        // `trainer quantize`'s default since format 1.4: a zero point per row too.
        b.per_row_zero_points(!symmetric_rows);
    }
    b.dynamic_int8_attention(dynamic_attention);
    b.weight_bits(weight_bits).unwrap();
    let ln = (vec![1.0f32; h], vec![0.0f32; h]);
    let ln_view = || builder::LayerNorm { gamma: &ln.0, beta: &ln.1 };
    let (word, pos, typ) = (rng.vec(30522 * h, 0.1), rng.vec(512 * h, 0.1), rng.vec(2 * h, 0.1));
    b.embeddings(builder::Embeddings { word: &word, position: &pos, token_type: &typ, layer_norm: ln_view() }).unwrap();
    let lin = |rng: &mut Rng, n: usize, k: usize| (rng.vec(n * k, 0.05), rng.vec(n, 0.01));
    for l in 0..config.num_layers as usize {
        let (q, k, v, o) = (lin(&mut rng, h, h), lin(&mut rng, h, h), lin(&mut rng, h, h), lin(&mut rng, h, h));
        let (f1, f2) = (lin(&mut rng, i, h), lin(&mut rng, h, i));
        b.layer(
            l,
            builder::Layer {
                query: view(&q),
                key: view(&k),
                value: view(&v),
                attention_output: view(&o),
                attention_layer_norm: ln_view(),
                intermediate: view(&f1),
                output: view(&f2),
                output_layer_norm: ln_view(),
            },
        )
        .unwrap();
        if int8_attention {
            b.int8_attention(l, 4.0, 4.0).unwrap();
            b.int8_attention_values(l, 4.0).unwrap();
        }
    }
    let (p, c) = (lin(&mut rng, h, h), lin(&mut rng, 2, h));
    b.pooler(builder::Linear { weight: &p.0, bias: &p.1, input_max: 4.0 }).unwrap();
    b.classifier(builder::Linear { weight: &c.0, bias: &c.1, input_max: 1.0 }).unwrap();
    b.write(path).unwrap();
}

fn main() {
    let shape_name = arg("--shape").unwrap_or_else(|| "bert-base".into());
    let batch: usize = arg("--batch").map_or(1, |v| v.parse().unwrap());
    let seq: usize = arg("--seq").map_or(128, |v| v.parse().unwrap());
    let threads: usize = arg("--threads").map_or(1, |v| v.parse().unwrap());
    let min_time = Duration::from_millis(arg("--min-time-ms").map_or(2000, |v| v.parse().unwrap()));
    let kernel = arg("--kernel").map(|k| KernelKind::from_name(&k).expect("unknown kernel"));

    let dir = PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/tmp".into())).join(".cache/q8bert/bench");
    std::fs::create_dir_all(&dir).unwrap();
    let int8_attention = std::env::args().any(|a| a == "--int8-attention");
    let per_token = std::env::args().any(|a| a == "--per-token");
    // --symmetric-rows: the per-token pack without zero points (format 1.3, before 1.4's default).
    let symmetric_rows = std::env::args().any(|a| a == "--symmetric-rows");
    // --dynamic-attention: QKᵀ and P·V in int8 with run-time scales (format 1.6).
    let dynamic_attention = std::env::args().any(|a| a == "--dynamic-attention");
    let weight_bits: u8 = arg("--weight-bits").map_or(8, |v| v.parse().unwrap());
    let variant = format!(
        "{}{}{}{}{}",
        if int8_attention { "-int8-attention" } else { "" },
        if dynamic_attention { "-dynamic-attention" } else { "" },
        if per_token { "-per-token" } else { "" },
        if per_token && symmetric_rows { "-symmetric" } else { "" },
        if weight_bits == 8 { String::new() } else { format!("-w{weight_bits}") }
    );
    let path = dir.join(format!("{shape_name}{variant}-v{}.q8b", q8bert::format::VERSION_MINOR));
    if !path.exists() {
        build(shape(&shape_name), int8_attention, per_token, symmetric_rows, dynamic_attention, weight_bits, &path);
    }
    let huge_pages = std::env::args().any(|a| a == "--huge-pages");
    let model = Model::open(&path, &Options { num_threads: threads, kernel, huge_pages, ..Default::default() }).unwrap();
    let ids: Vec<i32> = (0..batch * seq).map(|i| if i % seq == 0 { 2 } else { 5 + (i as i32 * 7919) % 30000 }).collect();
    let mut out = vec![0.0f32; model.output_len(batch, seq)];
    for _ in 0..3 {
        model.run(&ids, None, None, batch, seq, &mut out).unwrap();
    }
    #[cfg(feature = "op-timing")]
    q8bert::bert::op_timing::take();
    let mut times = Vec::new();
    let start = Instant::now();
    while start.elapsed() < min_time || times.len() < 10 {
        let t = Instant::now();
        model.run(&ids, None, None, batch, seq, &mut out).unwrap();
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    #[cfg(feature = "op-timing")]
    if std::env::args().any(|a| a == "--profile-ops") {
        let ops = q8bert::bert::op_timing::take();
        let total: f64 = ops.iter().map(|o| o.1).sum();
        let wall: f64 = times.iter().sum::<f64>() * 1e-3;
        eprintln!("per-op time over {} runs (threads summed; wall {:.1} ms/run):", times.len(), wall * 1e3 / times.len() as f64);
        for (name, secs) in ops {
            eprintln!("  {name:<24} {:>8.2} ms/run  {:>5.1}%", secs * 1e3 / times.len() as f64, 100.0 * secs / total);
        }
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
    println!(
        "{{\"shape\": \"{shape_name}\", \"batch\": {batch}, \"seq\": {seq}, \"threads\": {}, \"kernel\": \"{}\", \"runs\": {}, \"median_ms\": {:.4}, \"p10_ms\": {:.4}, \"p90_ms\": {:.4}}}",
        model.num_threads(),
        model.kernel().kind().name(),
        times.len(),
        pct(0.5),
        pct(0.1),
        pct(0.9)
    );
}
