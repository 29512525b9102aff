//! Export through the runtime's writer, re-open with its loader, and check that the packed
//! model's forward agrees with the trainer's fake-quantized forward (tiny random BERT).
#![cfg(feature = "runtime")]

use std::cell::RefCell;
use trainer::bert::{Bert, BertConfig, Ctx, Track};
use trainer::data::{Encoded, TextTokenizer, Task};
use trainer::export::{export_classifier, TrainMeta};
use trainer::quant::Scheme;
use trainer::rng::Rng;
use trainer::train::{predict, Dataset};

fn tiny_vocab(n: usize) -> Vec<String> {
    let mut v: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"].iter().map(|s| s.to_string()).collect();
    while v.len() < n {
        v.push(format!("tok{}", v.len()));
    }
    v
}

fn random_rows(n: usize, vocab: usize, seed: u64) -> Vec<Encoded> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|i| {
            let len = 4 + rng.below(12);
            let mut ids = vec![2u32];
            ids.extend((0..len - 2).map(|_| 5 + rng.below(vocab - 5) as u32));
            ids.push(3);
            let split = if i % 2 == 0 { len } else { len / 2 };
            let type_ids = (0..len).map(|t| (t >= split) as u32).collect();
            Encoded { ids, type_ids, label: (i % 3) as f32 }
        })
        .collect()
}

#[test]
fn packed_model_agrees_with_fake_quantized_forward() {
    for (scheme, int8_attention) in [
        (Scheme::Q8BERT, false),
        (Scheme::Q8BERT_PER_CHANNEL, false),
        (Scheme::Q8BERT, true),
        (Scheme::PER_TOKEN, false),
        (Scheme::PER_TOKEN, true),
        (Scheme::PER_TOKEN_SYMMETRIC, false),
        // 7-bit weights: the simulation and the packer round to the same 63 codes.
        (Scheme::PER_TOKEN.with_weight_bits(7).unwrap(), false),
        (Scheme::Q8BERT.with_weight_bits(7).unwrap(), true),
    ] {
        let per_channel = format!("{}-w{}", scheme.name(), scheme.weight_bits);
        let vocab = tiny_vocab(40);
        let mut cfg = BertConfig::tiny(vocab.len());
        cfg.hidden_size = 32;
        cfg.intermediate_size = 64;
        let mut model = Bert::random(cfg, Some(3), 5).unwrap();
        model.int8_attention = int8_attention;
        let tok = TextTokenizer::new(vocab, serde_json::from_str("{}").unwrap()).unwrap();
        // Ranges: a short EMA "training" pass over random batches.
        let calib = Dataset { rows: random_rows(64, 40, 1) };
        let ctx = Ctx { dropout: false, quant: true, track: Track::Ema(0.9), scheme, rng: RefCell::new(Rng::new(0)) };
        for idx in calib.sorted_batches(8) {
            let (b, _) = calib.batch(&idx, 0).unwrap();
            model.logits(&b, &ctx).unwrap();
        }
        let check = Dataset { rows: random_rows(50, 40, 2) };
        let path = std::env::temp_dir().join(format!("trainer-export-test-{}-{per_channel}-{int8_attention}.q8b", std::process::id()));
        let report = export_classifier(&model, &tok, Task::Classification, &path, scheme, &TrainMeta::default(), Some((&check, 0))).unwrap();
        let agree = report["runtime_agreement"].as_f64().unwrap();
        let diff = report["runtime_max_abs_diff"].as_f64().unwrap();
        let (sim, _) = predict(&model, &check, 0, true, scheme, 8, false).unwrap();
        let scale = sim.iter().flatten().fold(0f32, |m, v| m.max(v.abs())) as f64;
        eprintln!("scheme={per_channel} int8_attention={int8_attention}: agreement {agree}, max |runtime - trainer| = {diff:e} (logit scale {scale})");
        assert!(agree >= 0.98, "argmax agreement {agree}");
        assert!(diff <= 0.02 * scale.max(1.0), "max abs diff {diff}");
        let packed = q8bert::Model::open(&path, &q8bert::Options::default()).unwrap();
        assert_eq!(packed.layout().int8_attention(), int8_attention, "the file carries int8 attention iff the model simulated it");
        let listing = trainer::export::inspect(&path).unwrap();
        let version = match (scheme.per_row_inputs, int8_attention) {
            (true, _) if scheme.per_row_zero_points => "format: 1.4",
            (true, _) => "format: 1.3",
            (false, true) => "format: 1.1",
            (false, false) => "format: 1.0",
        };
        let scores = if int8_attention { "attention scores: int8 in layers [0, 1]" } else { "attention scores: fp32" };
        let activations = match (scheme.per_row_inputs, scheme.per_row_zero_points) {
            (true, true) => "activations: per-token (a scale and a zero point per row",
            (true, false) => "activations: per-token (a scale per row",
            (false, _) => "activations: static",
        };
        let embeddings = if scheme.per_row_embeddings { "embedding scales: one per row" } else { "embedding scales: one per table" };
        assert!(listing.contains(version) && listing.contains(scores) && listing.contains(activations) && listing.contains(embeddings), "inspect says:\n{listing}");
        assert_eq!(packed.layout().per_row_linears() > 0, scheme.per_row_inputs, "per-row inputs iff the scheme has them");
        // The AVX2 kernel (where this CPU has it) is the one that looks for 7-bit weights.
        if let Some(kind) = q8bert::Kernel::new(q8bert::KernelKind::Avx2).map(|k| k.kind()) {
            let on_avx2 = q8bert::Model::open(&path, &q8bert::Options { kernel: Some(kind), ..Default::default() }).unwrap();
            let narrow = on_avx2.layout().linears().all(|lin| lin.weight_range == q8bert::WeightRange::Narrow);
            assert_eq!(narrow, scheme.weight_bits == 7, "the runtime finds 7-bit weights iff they were asked for");
        }
        if int8_attention {
            // The simulation of int8 attention is what the runtime matches: without it the
            // trainer's outputs are further from the packed model than with it.
            model.int8_attention = false;
            let (plain, _) = predict(&model, &check, 0, true, scheme, 8, false).unwrap();
            let plain_diff = sim.iter().flatten().zip(plain.iter().flatten()).fold(0f32, |m, (a, b)| m.max((a - b).abs())) as f64;
            eprintln!("  simulation with vs without int8 attention: max diff {plain_diff:e}");
            assert!(plain_diff > 2.0 * diff, "int8 attention barely changes the simulation ({plain_diff}) relative to the runtime gap ({diff})");
        }
        std::fs::remove_file(&path).ok();
    }
}

/// `trainer eval`'s engine: text in, runtime tokenization and forward, GLUE metrics out. The
/// runtime's outputs must match the trainer's fake-quantized forward on the same texts, for
/// single sentences (classification) and pairs (regression), whatever the batch size.
#[test]
fn eval_packed_runs_text_through_the_runtime() {
    use trainer::data::Example;
    use trainer::export::eval_packed;
    use trainer::metrics::{argmax, glue_metrics};
    for (task, n_out) in [(Task::Sst2, 2), (Task::Stsb, 1)] {
        let vocab = tiny_vocab(40);
        let mut cfg = BertConfig::tiny(vocab.len());
        cfg.hidden_size = 32;
        cfg.intermediate_size = 64;
        let model = Bert::random(cfg, Some(n_out), 11).unwrap();
        let tok = TextTokenizer::new(vocab, serde_json::from_str("{}").unwrap()).unwrap();
        let calib = Dataset { rows: random_rows(64, 40, 1) };
        let ctx = Ctx { dropout: false, quant: true, track: Track::Ema(0.9), scheme: Scheme::Q8BERT, rng: RefCell::new(Rng::new(0)) };
        for idx in calib.sorted_batches(8) {
            let (b, _) = calib.batch(&idx, 0).unwrap();
            model.logits(&b, &ctx).unwrap();
        }
        let path = std::env::temp_dir().join(format!("trainer-eval-test-{}-{}.q8b", std::process::id(), task.name()));
        export_classifier(&model, &tok, task, &path, Scheme::Q8BERT, &TrainMeta::default(), None).unwrap();
        // Text rows ("tok7 tok12 ..."), some longer than the 12-token limit (truncated).
        let mut rng = Rng::new(3);
        let words = |rng: &mut Rng, n: usize| (0..n).map(|_| format!("tok{}", 5 + rng.below(35))).collect::<Vec<_>>().join(" ");
        let rows: Vec<Example> = (0..37)
            .map(|i| {
                let la = 1 + rng.below(14);
                let text_a = words(&mut rng, la);
                let text_b = task.is_regression().then(|| {
                    let lb = 1 + rng.below(8);
                    words(&mut rng, lb)
                });
                Example { text_a, text_b, label: if task.is_regression() { rng.below(50) as f32 / 10.0 } else { (i % 2) as f32 } }
            })
            .collect();
        let max_len = 12;
        let r1 = eval_packed(&path, task, &rows, Some(max_len), 8, 1).unwrap();
        let r2 = eval_packed(&path, task, &rows, Some(max_len), 1, 2).unwrap();
        assert_eq!(r1.outputs, r2.outputs, "batching/threads changed the runtime's outputs");
        assert_eq!(r1.max_seq_len, max_len);
        let gold: Vec<f32> = rows.iter().map(|e| e.label).collect();
        assert_eq!(r1.metrics, glue_metrics(task, &r1.outputs, &gold));
        let main = format!("eval_{}", task.main_metric());
        assert!(r1.to_json()[&main].is_number(), "{}", r1.to_json());
        assert_eq!(r1.to_json()["eval_samples"], 37);
        // Same rows through the trainer (its tokenizer, fake-quantized forward).
        let enc = Dataset { rows: tok.encode_all(&rows, max_len).unwrap() };
        assert!(enc.rows.iter().any(|r| r.ids.len() == max_len), "no row was truncated");
        let (sim, _) = predict(&model, &enc, 0, true, Scheme::Q8BERT, 8, task.is_regression()).unwrap();
        let scale = sim.iter().flatten().fold(0f32, |m, v| m.max(v.abs())).max(1.0);
        let mut agree = 0;
        for (a, b) in r1.outputs.iter().zip(&sim) {
            assert_eq!(a.len(), n_out);
            for (x, y) in a.iter().zip(b) {
                assert!((x - y).abs() <= 0.02 * scale, "runtime {a:?} vs trainer {b:?}");
            }
            agree += (argmax(a) == argmax(b)) as usize;
        }
        assert!(agree as f64 / rows.len() as f64 >= 0.95, "agreement {agree}/{}", rows.len());
        // The wrong head for the task is refused.
        let wrong = if task.is_regression() { Task::Sst2 } else { Task::Stsb };
        assert!(eval_packed(&path, wrong, &rows, None, 8, 1).is_err());
        std::fs::remove_file(&path).ok();
    }
}
