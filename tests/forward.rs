//! The int8 forward pass against an independent f64 reference of the same quantized
//! arithmetic, across heads, batch sizes, padding, sentence pairs and weight granularities;
//! plus determinism and input validation.

mod common;

use common::{reference_forward, tiny_config, Aligned, FpModel, Rng};
use q8bert::builder::{Head, Pooling, WeightGranularity};
use q8bert::{Model, Options, Status};

fn heads() -> Vec<Head> {
    vec![
        Head::Classification { labels: vec!["neg".into(), "pos".into(), "other".into()] },
        Head::Regression,
        Head::Embedding { pooling: Pooling::Mean, normalize: true },
        Head::Embedding { pooling: Pooling::Cls, normalize: false },
        Head::TokenStates,
        // sentence-transformers' other pooling modes.
        Head::Embedding { pooling: Pooling::Max, normalize: false },
        Head::Embedding { pooling: Pooling::MeanSqrtLen, normalize: false },
        Head::Embedding { pooling: Pooling::WeightedMean, normalize: true },
        Head::Embedding { pooling: Pooling::LastToken, normalize: false },
    ]
}

/// A random sequence: [CLS] ... [SEP] (... [SEP]) with token types for pairs.
fn random_sequence(rng: &mut Rng, len: usize, pair: bool, vocab: usize) -> (Vec<i32>, Vec<i32>) {
    let mut ids = vec![2];
    let split = if pair { len / 2 } else { len };
    while ids.len() < len {
        ids.push(if ids.len() == split - 1 || ids.len() == len - 1 { 3 } else { 5 + rng.below(vocab - 5) as i32 });
    }
    let types = (0..len).map(|i| if pair && i >= split { 1 } else { 0 }).collect();
    (ids, types)
}

struct Batch {
    ids: Vec<i32>,
    types: Vec<i32>,
    mask: Vec<i32>,
    seqs: Vec<(Vec<i32>, Vec<i32>)>,
    seq_len: usize,
}

fn random_batch(rng: &mut Rng, batch: usize, seq_len: usize, vocab: usize) -> Batch {
    let mut b = Batch { ids: vec![], types: vec![], mask: vec![], seqs: vec![], seq_len };
    for _ in 0..batch {
        let len = 2 + rng.below(seq_len - 1);
        let pair = rng.below(2) == 1 && len >= 4;
        let (ids, types) = random_sequence(rng, len, pair, vocab);
        for p in 0..seq_len {
            b.ids.push(if p < len { ids[p] } else { 0 });
            b.types.push(if p < len { types[p] } else { 0 });
            b.mask.push((p < len) as i32);
        }
        b.seqs.push((ids, types));
    }
    b
}

fn check_against_reference(fp: &FpModel, tolerance: f64) {
    check_shapes_against_reference(fp, tolerance, &[(1, 5), (3, 9), (4, 24)]);
}

fn check_shapes_against_reference(fp: &FpModel, tolerance: f64, shapes: &[(usize, usize)]) {
    let bytes = fp.bytes();
    let buf = Aligned::new(&bytes);
    let model = Model::from_bytes(buf.bytes(), &Options::default()).unwrap();
    let mut rng = Rng::new(7);
    let (mut worst, mut total, mut count) = (0.0f64, 0.0f64, 0usize);
    for &(batch, seq_len) in shapes {
        let b = random_batch(&mut rng, batch, seq_len, fp.config.vocab_size as usize);
        let mut out = vec![0.0f32; model.output_len(batch, seq_len)];
        model.run(&b.ids, Some(&b.types), Some(&b.mask), batch, seq_len, &mut out).unwrap();
        let per_seq = out.len() / batch;
        for (s, (ids, types)) in b.seqs.iter().enumerate() {
            let want = reference_forward(fp, ids, types);
            let got = &out[s * per_seq..(s + 1) * per_seq];
            let h = fp.config.hidden_size as usize;
            for (i, &w) in want.iter().enumerate() {
                let err = (got[i] as f64 - w).abs();
                worst = worst.max(err);
                total += err;
                count += 1;
                assert!(err <= tolerance, "head {:?}, batch {batch}x{seq_len}, seq {s}, output {i}: got {}, reference {w}", fp.head, got[i]);
            }
            if matches!(fp.head, Head::TokenStates) {
                assert!(got[ids.len() * h..].iter().all(|&v| v == 0.0), "padding positions must be zero");
            }
        }
    }
    let mean = total / count as f64;
    eprintln!("head {:?} {:?}: worst |int8 - reference| = {worst:.2e}, mean {mean:.2e}", fp.head, fp.granularity);
    assert!(mean < 1e-2, "mean error {mean} is too large for rounding-order differences");
}

// The runtime (f32) and the reference (f64) differ only in float rounding, which now and then
// moves an activation across a quantization boundary: one int8 step (input_max/127, up to
// 0.031 here) at that element, which the next linear layer and LayerNorm carry into the output.
// So every output must agree within two such steps, and the mean error must stay at float level.
const TOLERANCE: f64 = 0.06;

#[test]
fn int8_forward_matches_reference_for_every_head() {
    for (i, head) in heads().into_iter().enumerate() {
        let fp = FpModel::random(tiny_config(), head, 100 + i as u64);
        check_against_reference(&fp, TOLERANCE);
    }
}

/// Head sizes and lengths that exercise every attention tile path: head size the wide value
/// tile (64), the half tile (32), both (96), a half tile plus a remainder (48), wide plus a
/// remainder (80), and smaller (8); more keys than one key tile (64) and query blocks that are
/// not a multiple of the query tile.
#[test]
fn attention_tiles_match_reference() {
    for (i, (hidden, heads)) in [(128u32, 2u32), (64, 2), (192, 2), (96, 2), (160, 2), (32, 4)].into_iter().enumerate() {
        let mut config = tiny_config();
        config.hidden_size = hidden;
        config.num_heads = heads;
        config.intermediate_size = 2 * hidden;
        config.max_position_embeddings = 160;
        let fp = FpModel::random(config, Head::Embedding { pooling: Pooling::Mean, normalize: false }, 400 + i as u64);
        check_shapes_against_reference(&fp, TOLERANCE, &[(1, 131), (2, 70)]);
    }
}

/// int8 attention scores (format 1.1): requantized Q and K, int32 Q·Kᵀ. Tight ranges make
/// the clipping matter, so a runtime that ignored the scales would miss the reference.
#[test]
fn int8_attention_matches_reference() {
    for (i, head) in heads().into_iter().enumerate() {
        let fp = FpModel::random(tiny_config(), head, 500 + i as u64).with_int8_attention(1.5, 1.0);
        check_against_reference(&fp, TOLERANCE);
    }
    // Long sequences (several score blocks of 64 queries, key counts not a multiple of the
    // kernels' 16-column panels) and head sizes the scores GEMM sees as K: 64, 48 and 80 (not
    // a multiple of its 64-byte chunks) and 9 (not a multiple of its groups of 4).
    for (i, (hidden, heads)) in [(128u32, 2u32), (96, 2), (160, 2), (36, 4)].into_iter().enumerate() {
        let mut config = tiny_config();
        (config.hidden_size, config.num_heads, config.intermediate_size, config.max_position_embeddings) = (hidden, heads, 2 * hidden, 160);
        let fp = FpModel::random(config, Head::Embedding { pooling: Pooling::Mean, normalize: false }, 510 + i as u64).with_int8_attention(2.0, 2.0);
        check_shapes_against_reference(&fp, TOLERANCE, &[(1, 131), (2, 70)]);
    }
}

/// int8 P·V (format 1.1): probabilities as u8, requantized V, int32 accumulation; alone and
/// with int8 scores.
#[test]
fn int8_values_match_reference() {
    for (i, head) in heads().into_iter().enumerate() {
        let fp = FpModel::random(tiny_config(), head, 530 + i as u64).with_int8_values(1.5);
        check_against_reference(&fp, TOLERANCE);
        let fp = FpModel::random(tiny_config(), heads()[i].clone(), 540 + i as u64).with_int8_attention(1.5, 1.0).with_int8_values(1.5);
        check_against_reference(&fp, TOLERANCE);
    }
    // Long sequences (several blocks of 64 queries, key counts not a multiple of 4 or 16) and
    // head sizes the P·V GEMM sees as N: 64, 48, 80 and 9 (not a multiple of its 16-column panels).
    for (i, (hidden, heads)) in [(128u32, 2u32), (96, 2), (160, 2), (36, 4)].into_iter().enumerate() {
        let mut config = tiny_config();
        (config.hidden_size, config.num_heads, config.intermediate_size, config.max_position_embeddings) = (hidden, heads, 2 * hidden, 160);
        let fp = FpModel::random(config, Head::Embedding { pooling: Pooling::Mean, normalize: false }, 550 + i as u64).with_int8_attention(2.0, 2.0).with_int8_values(2.0);
        check_shapes_against_reference(&fp, TOLERANCE, &[(1, 131), (2, 70)]);
    }
}

/// A classification or regression head with ReLU after its pooler (DistilBERT's
/// pre-classifier, format 1.7) against the f64 reference, static and per-row inputs; and it is
/// not the tanh head.
#[test]
fn relu_pooler_matches_reference() {
    for (i, head) in [Head::Classification { labels: vec!["a".into(), "b".into(), "c".into()] }, Head::Regression].into_iter().enumerate() {
        let mut fp = FpModel::random(tiny_config(), head.clone(), 595 + i as u64);
        fp.pooler_relu = true;
        check_against_reference(&fp, TOLERANCE);
        let relu = fp.bytes();
        assert_eq!(u16::from_le_bytes([relu[10], relu[11]]), 7);
        let fp = fp.with_per_row_inputs();
        check_against_reference(&fp, TOLERANCE);
        let mut tanh = fp.clone();
        tanh.pooler_relu = false;
        let (a, b) = (Aligned::new(&fp.bytes()), Aligned::new(&tanh.bytes()));
        let run = |buf: &Aligned| {
            let m = Model::from_bytes(buf.bytes(), &Options::default()).unwrap();
            let mut out = vec![0.0f32; m.output_len(1, 6)];
            m.run(&[2, 7, 9, 11, 13, 3], None, None, 1, 6, &mut out).unwrap();
            out
        };
        assert_ne!(run(&a), run(&b), "{head:?}: relu and tanh poolers must differ");
    }
}

/// Dynamic int8 attention (format 1.6): each query row quantized with its own 127 / max|q| per
/// head, K and V with one scale per sequence and head, probabilities as u8, against the f64
/// reference of that arithmetic; with per-row and with static linear inputs, every head, and
/// long sequences over several query blocks and odd head sizes.
#[test]
fn dynamic_int8_attention_matches_reference() {
    for (i, head) in heads().into_iter().enumerate() {
        let fp = FpModel::random(tiny_config(), head.clone(), 560 + i as u64).with_per_row_inputs().with_per_row_embeddings().with_per_row_zero_points().with_dynamic_attention();
        check_against_reference(&fp, TOLERANCE);
        let fp = FpModel::random(tiny_config(), head, 570 + i as u64).with_dynamic_attention();
        check_against_reference(&fp, TOLERANCE);
    }
    for (i, (hidden, heads)) in [(128u32, 2u32), (160, 2), (36, 4)].into_iter().enumerate() {
        let mut config = tiny_config();
        (config.hidden_size, config.num_heads, config.intermediate_size, config.max_position_embeddings) = (hidden, heads, 2 * hidden, 160);
        let fp = FpModel::random(config, Head::Embedding { pooling: Pooling::Mean, normalize: false }, 580 + i as u64).with_per_row_inputs().with_dynamic_attention();
        check_shapes_against_reference(&fp, TOLERANCE, &[(1, 131), (2, 70)]);
    }
}

/// Dynamic int8 attention is finer than the reference tests' tolerance can tell from fp32
/// attention, so this checks it by distance: the runtime's outputs are several times closer to
/// the reference of dynamic int8 attention than to the reference of the same model with fp32
/// attention (every other quantization alike).
#[test]
fn dynamic_int8_attention_is_the_reference_arithmetic() {
    let mean_error = |run: &FpModel, reference: &FpModel| {
        let bytes = run.bytes();
        let buf = Aligned::new(&bytes);
        let model = Model::from_bytes(buf.bytes(), &Options::default()).unwrap();
        let b = random_batch(&mut Rng::new(17), 4, 24, run.config.vocab_size as usize);
        let mut out = vec![0.0f32; model.output_len(4, 24)];
        model.run(&b.ids, Some(&b.types), Some(&b.mask), 4, 24, &mut out).unwrap();
        let per_seq = out.len() / 4;
        let (mut total, mut count) = (0.0f64, 0usize);
        for (s, (ids, types)) in b.seqs.iter().enumerate() {
            let want = reference_forward(reference, ids, types);
            for (i, &w) in want.iter().enumerate() {
                total += (out[s * per_seq + i] as f64 - w).abs();
                count += 1;
            }
        }
        total / count as f64
    };
    for seed in [590, 591, 592] {
        let fp32_attention = FpModel::random(tiny_config(), Head::TokenStates, seed).with_per_row_inputs();
        let dynamic = fp32_attention.clone().with_dynamic_attention();
        let (to_dynamic, to_fp32) = (mean_error(&dynamic, &dynamic), mean_error(&dynamic, &fp32_attention));
        eprintln!("seed {seed}: mean |runtime - reference|: dynamic reference {to_dynamic:.2e}, fp32-attention reference {to_fp32:.2e}");
        assert!(to_dynamic * 3.0 < to_fp32, "seed {seed}: {to_dynamic:.2e} to the dynamic reference vs {to_fp32:.2e} to fp32 attention");
    }
}

/// The scales really change the computation: int8 attention and fp32 attention over the same
/// weights give different outputs (by more than the reference tests' tolerance, so those tests
/// tell them apart; dynamic int8 attention is closer to fp32, see the next test).
#[test]
fn int8_attention_differs_from_fp32_attention() {
    let fp = FpModel::random(tiny_config(), Head::TokenStates, 520);
    let run = |bytes: Vec<u8>| {
        let buf = Aligned::new(&bytes);
        let model = Model::from_bytes(buf.bytes(), &Options::default()).unwrap();
        let ids: Vec<i32> = (0..12).map(|i| 5 + i % 30).collect();
        let mut out = vec![0.0f32; model.output_len(1, 12)];
        model.run(&ids, None, None, 1, 12, &mut out).unwrap();
        out
    };
    let fp32 = run(fp.bytes());
    let fp = fp.with_int8_attention(1.5, 1.0);
    let int8_scores = run(fp.bytes());
    let int8_both = run(fp.with_int8_values(0.5).bytes());
    for (what, a, b) in [("int8 scores", &fp32, &int8_scores), ("int8 P·V", &int8_scores, &int8_both)] {
        let max_diff = a.iter().zip(b).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(max_diff > TOLERANCE as f32, "{what} changed the outputs by only {max_diff}");
    }
}

#[test]
fn per_channel_weight_scales_match_reference() {
    for (i, head) in heads().into_iter().take(3).enumerate() {
        let mut fp = FpModel::random(tiny_config(), head, 200 + i as u64);
        fp.granularity = WeightGranularity::PerChannel;
        check_against_reference(&fp, TOLERANCE);
    }
}

/// Per-row input scales (format 1.2): every linear input quantized with 127 / max|row| at run
/// time, f32 biases, against the f64 reference; with int8 attention too (the QKV epilogue then
/// requantizes from a per-row dequantization), and long rows (several GEMM blocks).
#[test]
fn per_row_input_scales_match_reference() {
    for (i, head) in heads().into_iter().enumerate() {
        let fp = FpModel::random(tiny_config(), head.clone(), 600 + i as u64).with_per_row_inputs();
        check_against_reference(&fp, TOLERANCE);
        let fp = FpModel::random(tiny_config(), head.clone(), 610 + i as u64).with_per_row_inputs().with_int8_attention(1.5, 1.0).with_int8_values(1.5);
        check_against_reference(&fp, TOLERANCE);
        // `trainer quantize`'s per-token scheme: per-row embedding scales as well (format 1.3).
        let fp = FpModel::random(tiny_config(), head, 630 + i as u64).with_per_row_inputs().with_per_row_embeddings();
        check_against_reference(&fp, TOLERANCE);
    }
    for (i, (hidden, heads)) in [(128u32, 2u32), (36, 4)].into_iter().enumerate() {
        let mut config = tiny_config();
        (config.hidden_size, config.num_heads, config.intermediate_size, config.max_position_embeddings) = (hidden, heads, 2 * hidden, 160);
        let fp = FpModel::random(config, Head::Embedding { pooling: Pooling::Mean, normalize: false }, 620 + i as u64).with_per_row_inputs();
        check_shapes_against_reference(&fp, TOLERANCE, &[(1, 131), (2, 70)]);
    }
}

/// A file may mix static and per-row layers (each linear layer's tensors say which it is):
/// layer 0 per-row, layer 1 static, head per-row, and the reverse. These hit the epilogues that
/// go from one kind to the other. Against the reference and across kernels.
#[test]
fn mixed_static_and_per_row_layers() {
    use q8bert::builder::ActivationQuant::{PerRow, Static};
    for (i, (layers, head_kind)) in [([PerRow, Static], PerRow), ([Static, PerRow], Static)].into_iter().enumerate() {
        let mut fp = FpModel::random(tiny_config(), heads()[0].clone(), 640 + i as u64);
        fp.granularity = WeightGranularity::PerChannel;
        fp.layer_activations = layers.to_vec();
        fp.activations = head_kind;
        let buf = Aligned::new(&fp.bytes());
        let model = Model::from_bytes(buf.bytes(), &Options::default()).unwrap();
        assert!(model.layout().per_row_linears() > 0 && model.layout().per_row_linears() < model.layout().linears().count());
        check_against_reference(&fp, TOLERANCE);
        assert_kernels_identical(&fp, 4, 24);
    }
}

/// max |int8 - unquantized (f64)| over the outputs of one unpadded sequence.
fn max_error_vs_float(fp: &FpModel, ids: &[i32]) -> f64 {
    let bytes = fp.bytes();
    let buf = Aligned::new(&bytes);
    let model = Model::from_bytes(buf.bytes(), &Options::default()).unwrap();
    let mut out = vec![0.0f32; model.output_len(1, ids.len())];
    model.run(ids, None, None, 1, ids.len(), &mut out).unwrap();
    let exact = common::float_forward(fp, ids, &vec![0; ids.len()]);
    out.iter().zip(&exact).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max)
}

/// One embedding row with values 40x the others (a rare token) sets a per-table scale that
/// leaves the other rows few int8 codes; a scale per row (format 1.3) does not. Errors against
/// the unquantized model (f64) on sentences without that token, per-row inputs in both.
#[test]
fn per_row_embedding_scales_beat_a_per_table_scale() {
    let mut fp = FpModel::random(tiny_config(), Head::TokenStates, 640).with_per_row_inputs();
    let h = fp.config.hidden_size as usize;
    fp.word[39 * h..40 * h].iter_mut().for_each(|v| *v *= 40.0);
    let ids = [3, 7, 12, 20, 25, 31];
    let error = |fp: &FpModel| max_error_vs_float(fp, &ids);
    let per_table = error(&fp);
    let per_row = error(&fp.clone().with_per_row_embeddings());
    eprintln!("max |int8 - fp32|: per-table embedding scales {per_table:.4}, per-row {per_row:.4}");
    assert!(per_row * 3.0 < per_table, "per-row {per_row} vs per-table {per_table}");
}

/// Per-row scales fit every token: static ranges either clip (the test model's ranges are
/// tighter than some activations) or, widened 40x as one outlier token would set them, waste
/// most of the int8 codes on the other tokens. Per-row scales beat both by a wide margin.
/// Errors are against the unquantized model (f64).
#[test]
fn per_row_scales_beat_static_ranges() {
    let fp = FpModel::random(tiny_config(), Head::TokenStates, 630);
    let ids = [3, 7, 12, 20, 25, 31];
    let error = |fp: &FpModel| max_error_vs_float(fp, &ids);
    let fitted = error(&fp);
    // The ranges an outlier token 40x larger than the others would have set.
    let mut wide = fp.clone();
    for l in wide.layers.iter_mut() {
        for lin in [&mut l.q, &mut l.k, &mut l.v, &mut l.ao, &mut l.inter, &mut l.out] {
            lin.input_max *= 40.0;
        }
    }
    let static_wide = error(&wide);
    let per_row = error(&wide.with_per_row_inputs());
    eprintln!("max |int8 - fp32|: static fitted ranges {fitted:.3}, static 40x ranges {static_wide:.3}, per-row {per_row:.3}");
    assert!(per_row * 5.0 < fitted.min(static_wide), "per-row {per_row} vs static {fitted} / {static_wide}");
}

#[test]
fn output_is_independent_of_batch_and_padding() {
    for head in heads() {
        let fp = FpModel::random(tiny_config(), head, 300);
        let bytes = fp.bytes();
        let buf = Aligned::new(&bytes);
        let model = Model::from_bytes(buf.bytes(), &Options::default()).unwrap();
        let mut rng = Rng::new(11);
        let b = random_batch(&mut rng, 5, 20, 40);
        let mut batched = vec![0.0f32; model.output_len(5, 20)];
        model.run(&b.ids, Some(&b.types), Some(&b.mask), 5, 20, &mut batched).unwrap();
        let per_seq = batched.len() / 5;
        for (s, (ids, types)) in b.seqs.iter().enumerate() {
            // Alone, unpadded (token states compared on the real positions only).
            let mut alone = vec![0.0f32; model.output_len(1, ids.len())];
            model.run(ids, Some(types), None, 1, ids.len(), &mut alone).unwrap();
            let n = alone.len().min(per_seq);
            assert_eq!(&batched[s * per_seq..s * per_seq + n], &alone[..n], "sequence {s} differs between batch and alone");
        }
    }
}

#[test]
fn masked_positions_inside_a_sequence_are_ignored() {
    let fp = FpModel::random(tiny_config(), Head::Embedding { pooling: Pooling::Mean, normalize: false }, 5);
    let bytes = fp.bytes();
    let buf = Aligned::new(&bytes);
    let model = Model::from_bytes(buf.bytes(), &Options::default()).unwrap();
    // Same tokens at the same positions; a masked token in the middle takes no part.
    let ids = [2, 7, 9, 11, 3];
    let mut a = vec![0.0; 32];
    let mut b = vec![0.0; 32];
    model.run(&ids, None, Some(&[1, 1, 0, 1, 1]), 1, 5, &mut a).unwrap();
    model.run(&[2, 7, 30, 11, 3], None, Some(&[1, 1, 0, 1, 1]), 1, 5, &mut b).unwrap();
    assert_eq!(a, b);
}

#[test]
fn file_and_memory_give_identical_results() {
    let fp = FpModel::random(tiny_config(), heads().remove(0), 9);
    let dir = std::env::temp_dir().join(format!("q8bert-forward-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tiny.q8b");
    fp.builder().write(&path).unwrap();
    let from_file = Model::open(&path, &Options { verify_checksum: true, ..Default::default() }).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let buf = Aligned::new(&bytes);
    let from_mem = Model::from_bytes(buf.bytes(), &Options::default()).unwrap();
    // `huge_pages`: the model is copied (so even a misaligned buffer opens) and runs the same.
    let huge = Options { huge_pages: true, verify_checksum: true, ..Default::default() };
    let file_copy = Model::open(&path, &huge).unwrap();
    let mut shifted = vec![0u8; bytes.len() + 1];
    shifted[1..].copy_from_slice(&bytes);
    let misaligned = &shifted[1..];
    assert_eq!(Model::from_bytes(misaligned, &Options::default()).err().map(|e| e.status), Some(Status::MisalignedBuffer));
    let mem_copy = Model::from_bytes(misaligned, &huge).unwrap();
    let ids = [2, 8, 9, 10, 3];
    let run = |m: &Model| {
        let mut out = vec![0.0; 3];
        m.run(&ids, None, None, 1, 5, &mut out).unwrap();
        out
    };
    let a = run(&from_file);
    assert_eq!(from_file.head().labels, vec!["neg", "pos", "other"]);
    assert_eq!(a, run(&from_mem));
    assert_eq!(a, run(&mem_copy));
    // Only a real copy survives the file being overwritten (after the map is gone).
    drop(from_file);
    std::fs::write(&path, vec![0u8; bytes.len()]).unwrap();
    assert_eq!(a, run(&file_copy));
    assert_eq!(file_copy.head().labels, vec!["neg", "pos", "other"]);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_inputs_get_specific_errors() {
    let fp = FpModel::random(tiny_config(), heads().remove(0), 13);
    let bytes = fp.bytes();
    let buf = Aligned::new(&bytes);
    let model = Model::from_bytes(buf.bytes(), &Options::default()).unwrap();
    let mut out = vec![0.0f32; 64];
    let status = |r: q8bert::Result<()>| r.unwrap_err().status;
    assert_eq!(status(model.run(&[2, 40, 3], None, None, 1, 3, &mut out)), Status::TokenOutOfRange);
    assert_eq!(status(model.run(&[2, -1, 3], None, None, 1, 3, &mut out)), Status::TokenOutOfRange);
    assert_eq!(status(model.run(&[2, 5, 3], Some(&[0, 2, 0]), None, 1, 3, &mut out)), Status::TokenOutOfRange);
    assert_eq!(status(model.run(&[2, 5, 3], None, Some(&[1, 2, 1]), 1, 3, &mut out)), Status::InvalidArgument);
    assert_eq!(status(model.run(&[2, 5, 3], None, Some(&[0, 0, 0]), 1, 3, &mut out)), Status::InvalidArgument);
    assert_eq!(status(model.run(&[2, 5, 3], None, None, 1, 4, &mut out)), Status::InvalidArgument);
    assert_eq!(status(model.run(&[2, 5, 3], None, None, 0, 3, &mut out)), Status::InvalidArgument);
    let long = vec![5; 25];
    assert_eq!(status(model.run(&long, None, None, 1, 25, &mut out)), Status::SequenceTooLong);
    let err = model.run(&[2, 5, 3, 2, 5, 3], None, None, 2, 3, &mut out[..5]).unwrap_err();
    assert_eq!(err.status, Status::BufferTooSmall);
    assert!(err.message.contains('6'), "message says the size needed: {}", err.message);
    // The model still works after errors.
    model.run(&[2, 5, 3], None, None, 1, 3, &mut out).unwrap();
}

#[test]
fn misaligned_buffer_is_rejected() {
    let fp = FpModel::random(tiny_config(), Head::Regression, 1);
    let bytes = fp.bytes();
    let mut shifted = vec![0u8; bytes.len() + 8];
    let start = (4 - shifted.as_ptr() as usize % 4) % 4 + 1; // 1 mod 4
    shifted[start..start + bytes.len()].copy_from_slice(&bytes);
    let err = Model::from_bytes(&shifted[start..start + bytes.len()], &Options::default()).err().unwrap();
    assert_eq!(err.status, Status::MisalignedBuffer);
}

#[test]
fn threads_sharing_one_model_get_identical_results() {
    let fp = FpModel::random(tiny_config(), heads().remove(0), 21);
    let bytes = fp.bytes();
    let buf = Aligned::new(&bytes);
    let model = Model::from_bytes(buf.bytes(), &Options::default()).unwrap();
    let mut rng = Rng::new(5);
    let batches: Vec<Batch> = (0..8).map(|i| random_batch(&mut rng, 1 + i % 4, 6 + i, 40)).collect();
    let reference: Vec<Vec<f32>> = batches
        .iter()
        .map(|b| {
            let n = b.seqs.len();
            let mut out = vec![0.0; model.output_len(n, b.seq_len)];
            model.run(&b.ids, Some(&b.types), Some(&b.mask), n, b.seq_len, &mut out).unwrap();
            out
        })
        .collect();
    std::thread::scope(|s| {
        for t in 0..4 {
            let (model, batches, reference) = (&model, &batches, &reference);
            s.spawn(move || {
                for round in 0..50 {
                    let i = (t + round) % batches.len();
                    let b = &batches[i];
                    let n = b.seqs.len();
                    let mut out = vec![0.0; model.output_len(n, b.seq_len)];
                    model.run(&b.ids, Some(&b.types), Some(&b.mask), n, b.seq_len, &mut out).unwrap();
                    assert_eq!(out, reference[i], "thread {t} round {round}");
                }
            });
        }
    });
}

fn assert_kernels_identical(fp: &FpModel, batch: usize, seq_len: usize) {
    use q8bert::KernelKind;
    let bytes = fp.bytes();
    let buf = Aligned::new(&bytes);
    let mut rng = Rng::new(17);
    let b = random_batch(&mut rng, batch, seq_len, fp.config.vocab_size as usize);
    let run = |kind: KernelKind| {
        let model = Model::from_bytes(buf.bytes(), &Options { kernel: Some(kind), ..Default::default() }).unwrap();
        assert_eq!(model.kernel().kind(), kind, "the requested kernel runs");
        let mut out = vec![0.0f32; model.output_len(batch, seq_len)];
        model.run(&b.ids, Some(&b.types), Some(&b.mask), batch, seq_len, &mut out).unwrap();
        out
    };
    let reference = run(KernelKind::Scalar);
    for kind in KernelKind::ALL {
        if q8bert::Kernel::new(kind).is_none() {
            eprintln!("SKIPPED: kernel {} is not available on this CPU", kind.name());
            continue;
        }
        assert_eq!(run(kind), reference, "kernel {} differs from scalar", kind.name());
        eprintln!("kernel {}: bit-identical to scalar", kind.name());
    }
}

#[test]
fn every_kernel_gives_bit_identical_outputs() {
    for head in heads() {
        assert_kernels_identical(&FpModel::random(tiny_config(), head, 31), 4, 24);
    }
    // Head sizes with every value-tile combination (48 = half + remainder, 96 = wide + half,
    // 80 = wide + remainder; 40: two 16x16 blocks of the K transpose and a scalar tail) and more
    // keys than one key tile.
    for (i, hidden) in [96u32, 192, 160, 80].into_iter().enumerate() {
        let mut config = tiny_config();
        (config.hidden_size, config.num_heads, config.intermediate_size, config.max_position_embeddings) = (hidden, 2, 2 * hidden, 80);
        assert_kernels_identical(&FpModel::random(config, Head::TokenStates, 32 + i as u64), 3, 70);
        // int8 attention: the scores and P·V GEMMs run on each kernel too.
        assert_kernels_identical(&FpModel::random(config, Head::TokenStates, 35 + i as u64).with_int8_attention(2.0, 2.0), 3, 70);
        assert_kernels_identical(&FpModel::random(config, Head::TokenStates, 45 + i as u64).with_int8_values(2.0), 3, 70);
        // Both: Q, K, V requantized in the QKV epilogue.
        assert_kernels_identical(&FpModel::random(config, Head::TokenStates, 55 + i as u64).with_int8_attention(2.0, 2.0).with_int8_values(2.0), 3, 70);
        // Dynamic int8 attention (run-time scales).
        assert_kernels_identical(&FpModel::random(config, Head::TokenStates, 65 + i as u64).with_per_row_inputs().with_dynamic_attention(), 3, 70);
    }
    assert_kernels_identical(&FpModel::random(tiny_config(), heads()[0].clone(), 38).with_int8_attention(1.5, 1.0), 4, 24);
    // Per-row input scales (format 1.2), alone and with fully int8 attention, every head.
    for head in heads() {
        assert_kernels_identical(&FpModel::random(tiny_config(), head.clone(), 39).with_per_row_inputs(), 4, 24);
        assert_kernels_identical(&FpModel::random(tiny_config(), head.clone(), 40).with_per_row_inputs().with_int8_attention(1.5, 1.0).with_int8_values(1.5), 4, 24);
        assert_kernels_identical(&FpModel::random(tiny_config(), head.clone(), 42).with_per_row_inputs().with_per_row_embeddings(), 4, 24);
        assert_kernels_identical(&FpModel::random(tiny_config(), head, 43).with_per_row_inputs().with_per_row_zero_points().with_dynamic_attention(), 4, 24);
    }
}

/// 7-bit weights (`weight_bits(7)`): with the AVX2 kernel the model finds every linear layer's
/// weights narrow when it opens the file (other kernels do not look), every kernel (the AVX2 one through its unsigned step) gives the scalar
/// kernel's bits, and the error against the unquantized model stays within a small factor of
/// the 8-bit one (about 2x with per-row inputs, where the weights' rounding dominates it).
#[test]
fn seven_bit_weights_are_found_and_run_bit_identically() {
    use q8bert::{KernelKind, WeightRange};
    // Token states, and heads with their own linear layers (pooler and classifier; Dense).
    let cases = [
        (71, false, WeightGranularity::PerTensor, Head::TokenStates),
        (72, true, WeightGranularity::PerChannel, Head::TokenStates),
        (74, true, WeightGranularity::PerChannel, heads()[0].clone()),
        (75, false, WeightGranularity::PerChannel, Head::Embedding { pooling: Pooling::Mean, normalize: true }),
    ];
    for (seed, per_row, granularity, head) in cases {
        let dense = matches!(head, Head::Embedding { .. });
        let mut fp = FpModel::random(tiny_config(), head, seed);
        if dense {
            fp = fp.with_dense(24, q8bert::builder::DenseActivation::Tanh, seed + 100);
        }
        if per_row {
            fp = fp.with_per_row_inputs().with_per_row_zero_points();
        }
        fp.granularity = granularity;
        let eight = fp.clone();
        fp.weight_bits = 7;
        let bytes = fp.bytes();
        let buf = Aligned::new(&bytes);
        let bytes8 = eight.bytes();
        let buf8 = Aligned::new(&bytes8);
        // Only a kernel that gains from them looks for narrow weights (AVX2 without VNNI).
        for kind in KernelKind::ALL.into_iter().filter(|&k| q8bert::Kernel::new(k).is_some()) {
            let options = Options { kernel: Some(kind), ..Default::default() };
            let model = Model::from_bytes(buf.bytes(), &options).unwrap();
            let want = if model.kernel().gains_from_narrow_weights() { WeightRange::Narrow } else { WeightRange::Full };
            for lin in model.layout().linears() {
                assert_eq!(lin.weight_range, want, "7-bit weights of a {}x{} layer, kernel {}", lin.n, lin.k, kind.name());
            }
            let model8 = Model::from_bytes(buf8.bytes(), &options).unwrap();
            assert!(model8.layout().linears().all(|l| l.weight_range == WeightRange::Full), "8-bit weights are full range");
        }
        assert_kernels_identical(&fp, 4, 24);
        let ids = [3, 7, 12, 20, 25, 31];
        let (e7, e8) = (max_error_vs_float(&fp, &ids), max_error_vs_float(&eight, &ids));
        eprintln!("max |int8 - fp32|: 8-bit weights {e8:.4}, 7-bit {e7:.4}");
        // The weights' rounding step doubles; scales that did not match the 7-bit codes would
        // put every output off by about half its value.
        assert!(e7 < 3.0 * e8, "7-bit error {e7} vs 8-bit {e8}");
    }
    let mut b = FpModel::random(tiny_config(), Head::TokenStates, 73).builder();
    assert!(b.weight_bits(6).is_err() && b.weight_bits(9).is_err());
}

#[test]
fn every_thread_count_gives_bit_identical_outputs() {
    for (i, head) in heads().into_iter().enumerate() {
        let fp = FpModel::random(tiny_config(), head, 41);
        // Every other head with int8 attention scores; every third with per-row input scales.
        let fp = if i % 2 == 1 { fp.with_int8_attention(1.5, 1.0).with_int8_values(1.5) } else { fp };
        let fp = if i % 3 != 2 { fp.with_per_row_inputs() } else { fp };
        // Every fourth with dynamic int8 attention instead of static.
        let fp = if i % 4 == 0 { fp.with_dynamic_attention() } else { fp };
        let bytes = fp.bytes();
        let buf = Aligned::new(&bytes);
        let mut rng = Rng::new(23);
        let b = random_batch(&mut rng, 5, 24, 40);
        let run = |threads: usize| {
            let model = Model::from_bytes(buf.bytes(), &Options { num_threads: threads, ..Default::default() }).unwrap();
            assert_eq!(model.num_threads(), threads);
            let mut out = vec![0.0f32; model.output_len(5, 24)];
            model.run(&b.ids, Some(&b.types), Some(&b.mask), 5, 24, &mut out).unwrap();
            out
        };
        let one = run(1);
        for threads in [2, 3, 4, 7] {
            assert_eq!(run(threads), one, "{threads} threads differ from 1");
        }
    }
}

/// The sequence-parallel path (a batch split over the threads by sequence, each share run in
/// sub-batches) gives every sequence the bits it gets alone, on the operation-parallel path.
#[test]
fn sequence_parallel_batches_match_each_sequence_alone() {
    for (i, head) in heads().into_iter().enumerate() {
        let fp = FpModel::random(tiny_config(), head, 60 + i as u64);
        let fp = match i % 3 {
            0 => fp.with_per_row_inputs().with_per_row_embeddings(),
            1 => fp.with_int8_attention(1.5, 1.0).with_int8_values(1.5),
            _ => fp.with_per_row_inputs().with_per_row_zero_points().with_dynamic_attention(),
        };
        let bytes = fp.bytes();
        let buf = Aligned::new(&bytes);
        let alone_model = Model::from_bytes(buf.bytes(), &Options { num_threads: 1, ..Default::default() }).unwrap();
        let mut rng = Rng::new(70 + i as u64);
        // (threads, batch, seq_len): equal lengths split evenly over 2 and 3 threads; 70
        // sequences of 8 tokens on 2 threads are two sub-batches of 32 sequences and one of 3
        // per task; one thread runs operation by operation.
        for (threads, batch, seq_len) in [(2usize, 6usize, 16usize), (3, 7, 12), (2, 70, 8), (1, 9, 24), (2, 9, 24)] {
            let model = Model::from_bytes(buf.bytes(), &Options { num_threads: threads, ..Default::default() }).unwrap();
            let seqs: Vec<(Vec<i32>, Vec<i32>)> = (0..batch).map(|_| random_sequence(&mut rng, seq_len, true, 40)).collect();
            let ids: Vec<i32> = seqs.iter().flat_map(|s| s.0.clone()).collect();
            let types: Vec<i32> = seqs.iter().flat_map(|s| s.1.clone()).collect();
            let mut batched = vec![0.0f32; model.output_len(batch, seq_len)];
            model.run(&ids, Some(&types), None, batch, seq_len, &mut batched).unwrap();
            let per_seq = batched.len() / batch;
            for (s, (ids, types)) in seqs.iter().enumerate() {
                let mut alone = vec![0.0f32; alone_model.output_len(1, seq_len)];
                alone_model.run(ids, Some(types), None, 1, seq_len, &mut alone).unwrap();
                assert_eq!(&batched[s * per_seq..(s + 1) * per_seq], &alone[..], "{threads} threads, batch {batch}x{seq_len}: sequence {s} differs from its run alone");
            }
        }
    }
}

/// Every pooling mode against the same model's token states, pooled here in f64 as
/// sentence-transformers pools (weights of `weightedmean`: position + 1), on padded batches:
/// the pooled heads differ from it by f32 rounding only.
#[test]
fn pooling_modes_pool_the_token_states_as_sentence_transformers_does() {
    let states = FpModel::random(tiny_config(), Head::TokenStates, 77).bytes();
    let states_buf = Aligned::new(&states);
    let states_model = Model::from_bytes(states_buf.bytes(), &Options::default()).unwrap();
    let h = tiny_config().hidden_size as usize;
    let mut rng = Rng::new(78);
    let (batch, seq_len) = (5, 12);
    let b = random_batch(&mut rng, batch, seq_len, tiny_config().vocab_size as usize);
    let mut tokens = vec![0.0f32; states_model.output_len(batch, seq_len)];
    states_model.run(&b.ids, Some(&b.types), Some(&b.mask), batch, seq_len, &mut tokens).unwrap();
    for pooling in Pooling::ALL {
        for normalize in [false, true] {
            // Same seed, same weights: only the head's metadata differs.
            let bytes = FpModel::random(tiny_config(), Head::Embedding { pooling, normalize }, 77).bytes();
            let buf = Aligned::new(&bytes);
            let model = Model::from_bytes(buf.bytes(), &Options::default()).unwrap();
            let mut out = vec![0.0f32; model.output_len(batch, seq_len)];
            model.run(&b.ids, Some(&b.types), Some(&b.mask), batch, seq_len, &mut out).unwrap();
            for s in 0..batch {
                let n = b.seqs[s].0.len();
                let row = |i: usize, d: usize| tokens[(s * seq_len + i) * h + d] as f64;
                let mut want: Vec<f64> = (0..h)
                    .map(|d| match pooling {
                        Pooling::Cls => row(0, d),
                        Pooling::LastToken => row(n - 1, d),
                        Pooling::Max => (0..n).map(|i| row(i, d)).fold(f64::NEG_INFINITY, f64::max),
                        Pooling::Mean => (0..n).map(|i| row(i, d)).sum::<f64>() / n as f64,
                        Pooling::MeanSqrtLen => (0..n).map(|i| row(i, d)).sum::<f64>() / (n as f64).sqrt(),
                        Pooling::WeightedMean => (0..n).map(|i| (i + 1) as f64 * row(i, d)).sum::<f64>() / (n * (n + 1) / 2) as f64,
                    })
                    .collect();
                if normalize {
                    let norm = want.iter().map(|v| v * v).sum::<f64>().sqrt();
                    want.iter_mut().for_each(|v| *v /= norm);
                }
                for (d, &w) in want.iter().enumerate() {
                    let got = out[s * h + d] as f64;
                    assert!((got - w).abs() <= 1e-5 * (1.0 + w.abs()), "{pooling:?} normalize {normalize}, sequence {s}, dim {d}: {got} vs {w}");
                }
            }
        }
    }
}

/// An embedding head with a Dense layer (sentence-transformers' Pooling -> Dense -> Normalize):
/// wider and narrower than H, identity and tanh, static and per-row inputs, several pooling
/// modes, against the f64 reference; `output_len` is the Dense width; the working-memory bound
/// holds (tests/working_memory.rs checks the formula for every head through `run`).
#[test]
fn dense_embedding_head_matches_reference() {
    use q8bert::builder::DenseActivation;
    let cases = [
        (Pooling::Mean, true, 24, DenseActivation::Tanh, false),
        (Pooling::Cls, false, 48, DenseActivation::Identity, false),
        (Pooling::Max, true, 40, DenseActivation::Tanh, true),
        (Pooling::Mean, true, 16, DenseActivation::Identity, true),
    ];
    for (i, (pooling, normalize, out, activation, per_row)) in cases.into_iter().enumerate() {
        let mut fp = FpModel::random(tiny_config(), Head::Embedding { pooling, normalize }, 700 + i as u64).with_dense(out, activation, 800 + i as u64);
        if per_row {
            fp = fp.with_per_row_inputs();
        }
        let bytes = fp.bytes();
        let buf = Aligned::new(&bytes);
        let model = Model::from_bytes(buf.bytes(), &Options::default()).unwrap();
        assert_eq!(model.head().dense, vec![activation]);
        assert_eq!(model.output_len(3, 9), 3 * out, "one {out}-float vector per sequence");
        check_against_reference(&fp, TOLERANCE);
    }
}

/// sentence-transformers' Pooling with several modes concatenates their vectors, and a model
/// may chain several Dense modules (format 1.10): several modes alone, several modes into a
/// chain of two and of three layers (wider, narrower, identity and tanh), static and per-row
/// inputs, against the f64 reference; bit-identical on every kernel; `output_len` is the
/// pooled width (H per mode) or the last layer's.
#[test]
fn pooling_modes_and_dense_chains_match_reference() {
    use q8bert::builder::DenseActivation::{Identity, Tanh};
    let h = tiny_config().hidden_size as usize;
    // (pooling modes, Dense layers (width, activation), normalize, per-row inputs)
    type Case<'a> = (&'a [Pooling], &'a [(usize, q8bert::builder::DenseActivation)], bool, bool);
    let cases: [Case; 5] = [
        (&[Pooling::Cls, Pooling::Mean], &[], true, false),
        (&[Pooling::Max, Pooling::Mean, Pooling::MeanSqrtLen, Pooling::WeightedMean, Pooling::LastToken], &[], false, true),
        (&[Pooling::Mean], &[(40, Tanh), (12, Identity)], true, false),
        (&[Pooling::Cls, Pooling::Max], &[(24, Identity), (48, Tanh)], false, true),
        (&[Pooling::Mean, Pooling::Cls], &[(20, Tanh), (20, Tanh), (8, Identity)], true, true),
    ];
    for (i, (modes, chain, normalize, per_row)) in cases.into_iter().enumerate() {
        let mut fp = FpModel::random(tiny_config(), Head::Embedding { pooling: Pooling::Mean, normalize }, 900 + i as u64).with_pooling_modes(modes);
        for (j, &(out, activation)) in chain.iter().enumerate() {
            fp = fp.with_dense(out, activation, 950 + (10 * i + j) as u64);
        }
        if per_row {
            fp = fp.with_per_row_inputs();
        }
        let bytes = fp.bytes();
        let buf = Aligned::new(&bytes);
        let model = Model::from_bytes(buf.bytes(), &Options::default()).unwrap();
        assert_eq!(model.head().pooling, modes.to_vec());
        assert_eq!(model.head().dense, chain.iter().map(|c| c.1).collect::<Vec<_>>());
        let width = chain.last().map_or(h * modes.len(), |c| c.0);
        assert_eq!(model.output_len(3, 9), 3 * width, "case {i}");
        let one_layer_one_mode = modes.len() == 1 && chain.len() <= 1;
        assert_eq!(u16::from_le_bytes([bytes[10], bytes[11]]) >= 10, !one_layer_one_mode, "case {i}: only lists need format 1.10");
        check_against_reference(&fp, TOLERANCE);
        assert_kernels_identical(&fp, 3, 9);
    }
}

/// Only an embedding head takes a Dense layer.
#[test]
fn dense_layer_needs_an_embedding_head() {
    use q8bert::builder::DenseActivation;
    let mut classifier = FpModel::random(tiny_config(), Head::Classification { labels: vec!["a".into(), "b".into()] }, 712).builder();
    let h = tiny_config().hidden_size as usize;
    let (w, bias) = (vec![0.1f32; 4 * h], vec![0.0f32; 4]);
    let err = classifier.dense(q8bert::builder::Linear { weight: &w, bias: &bias, input_max: 1.0 }, 4, DenseActivation::Identity).err().unwrap();
    assert_eq!(err.status, Status::InvalidArgument);
}

/// Per-row inputs with zero points (format 1.4): every head against the f64 reference of the
/// asymmetric arithmetic, bit-identical across kernels and thread counts, and closer to the fp32
/// model than the symmetric per-row scheme on the same weights.
#[test]
fn per_row_zero_points_match_reference_and_beat_symmetric_rows() {
    let (mut err_sym, mut err_asym) = (0.0f64, 0.0f64);
    for (i, head) in heads().into_iter().enumerate() {
        let sym = FpModel::random(tiny_config(), head, 900 + i as u64).with_per_row_inputs().with_per_row_embeddings();
        let asym = sym.clone().with_per_row_zero_points();
        check_against_reference(&asym, TOLERANCE);
        assert_kernels_identical(&asym, 3, 17);
        let (sym_model, asym_model) = (Aligned::new(&sym.bytes()), Aligned::new(&asym.bytes()));
        let mut rng = Rng::new(901 + i as u64);
        for _ in 0..4 {
            let (ids, types) = random_sequence(&mut rng, 12, false, tiny_config().vocab_size as usize);
            let want = common::float_forward(&sym, &ids, &types);
            for (buf, err) in [(&sym_model, &mut err_sym), (&asym_model, &mut err_asym)] {
                let m = Model::from_bytes(buf.bytes(), &Options::default()).unwrap();
                let mut out = vec![0f32; m.output_len(1, ids.len())];
                m.run(&ids, Some(&types), None, 1, ids.len(), &mut out).unwrap();
                *err += out.iter().zip(&want).map(|(&g, &w)| (g as f64 - w).powi(2)).sum::<f64>();
            }
        }
    }
    eprintln!("squared error to fp32: symmetric rows {err_sym:.4e}, with zero points {err_asym:.4e}");
    assert!(err_asym < err_sym, "zero points should bring the output closer to fp32: {err_asym} vs {err_sym}");
}
