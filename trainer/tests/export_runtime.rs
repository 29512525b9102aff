//! Export through the runtime's writer, re-open with its loader, and check that the packed
//! model's forward agrees with the trainer's fake-quantized forward (tiny random BERT).
#![cfg(feature = "runtime")]

use std::cell::RefCell;
use trainer::bert::{Bert, BertConfig, Ctx, Track};
use trainer::data::{Encoded, TextTokenizer, Task};
use trainer::export::{export_classifier, TrainMeta};
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
    for per_channel in [false, true] {
        let vocab = tiny_vocab(40);
        let mut cfg = BertConfig::tiny(vocab.len());
        cfg.hidden_size = 32;
        cfg.intermediate_size = 64;
        let model = Bert::random(cfg, Some(3), 5).unwrap();
        let tok = TextTokenizer::new(vocab, serde_json::from_str("{}").unwrap()).unwrap();
        // Ranges: a short EMA "training" pass over random batches.
        let calib = Dataset { rows: random_rows(64, 40, 1) };
        let ctx = Ctx { dropout: false, quant: true, track: Track::Ema(0.9), per_channel, rng: RefCell::new(Rng::new(0)) };
        for idx in calib.sorted_batches(8) {
            let (b, _) = calib.batch(&idx, 0).unwrap();
            model.logits(&b, &ctx).unwrap();
        }
        let check = Dataset { rows: random_rows(50, 40, 2) };
        let path = std::env::temp_dir().join(format!("trainer-export-test-{}-{per_channel}.q8b", std::process::id()));
        let report = export_classifier(&model, &tok, Task::Classification, &path, per_channel, &TrainMeta::default(), Some((&check, 0))).unwrap();
        let agree = report["runtime_agreement"].as_f64().unwrap();
        let diff = report["runtime_max_abs_diff"].as_f64().unwrap();
        let (sim, _) = predict(&model, &check, 0, true, per_channel, 8, false).unwrap();
        let scale = sim.iter().flatten().fold(0f32, |m, v| m.max(v.abs())) as f64;
        eprintln!("per_channel={per_channel}: agreement {agree}, max |runtime - trainer| = {diff:e} (logit scale {scale})");
        assert!(agree >= 0.98, "argmax agreement {agree}");
        assert!(diff <= 0.02 * scale.max(1.0), "max abs diff {diff}");
        std::fs::remove_file(&path).ok();
    }
}
