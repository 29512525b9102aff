//! Quantization-aware-training unit tests on tiny random BERTs.

use candle_core::{Device, Tensor, Var};
use trainer::bert::{qlinear, Batch, Bert, BertConfig, Ctx, Track};
use trainer::quant::{fake_quant, quantize_value, RangeTracker, Scales, QMAX_I8};
use trainer::rng::Rng;

fn tiny_batch(vocab: u32, bsz: usize, seq: usize, seed: u64) -> Batch {
    let mut rng = Rng::new(seed);
    let mut ids = Vec::new();
    let mut types = Vec::new();
    let mut mask = Vec::new();
    for b in 0..bsz {
        let len = seq - (b % 3); // some padding
        for t in 0..seq {
            ids.push(if t < len { 1 + rng.below(vocab as usize - 1) as u32 } else { 0 });
            types.push(if t >= len / 2 && t < len { 1 } else { 0 });
            mask.push(if t < len { 1.0 } else { 0.0 });
        }
    }
    Batch::new(&ids, &types, &mask, bsz, seq).unwrap()
}

fn ctx(quant: bool, track: Track, dropout: bool) -> Ctx {
    Ctx { dropout, quant, track, scheme: trainer::quant::Scheme::Q8BERT, rng: std::cell::RefCell::new(Rng::new(7)) }
}

#[test]
fn quantize_rounds_ties_to_even_and_clamps() {
    assert_eq!(quantize_value(0.5, 1.0, 127.0), 0.0);
    assert_eq!(quantize_value(1.5, 1.0, 127.0), 2.0);
    assert_eq!(quantize_value(2.5, 1.0, 127.0), 2.0);
    assert_eq!(quantize_value(-2.5, 1.0, 127.0), -2.0);
    assert_eq!(quantize_value(300.0, 1.0, 127.0), 127.0);
    assert_eq!(quantize_value(-300.0, 1.0, 127.0), -127.0);
}

#[test]
fn ste_gradient_is_identity_inside_range_and_zero_outside() {
    // Range max 1.0 (scale 127); values inside and outside the clip range.
    let xs = vec![-3.0f32, -1.0, -0.37, 0.0, 0.004, 0.5, 0.999, 1.0, 1.01, 2.5];
    let x = Var::from_vec(xs.clone(), xs.len(), &Device::Cpu).unwrap();
    let c = Tensor::from_vec((1..=xs.len()).map(|i| i as f32).collect::<Vec<_>>(), xs.len(), &Device::Cpu).unwrap();
    let y = fake_quant(&x, Scales::per_tensor(127.0), QMAX_I8).unwrap();
    // Forward value is the dequantized int8 value.
    let yv: Vec<f32> = y.to_vec1().unwrap();
    for (a, b) in xs.iter().zip(&yv) {
        let want = quantize_value(*a, 127.0, 127.0) / 127.0;
        assert_eq!(*b, want);
    }
    let g_q = (y * &c).unwrap().sum_all().unwrap().backward().unwrap();
    let g_q: Vec<f32> = g_q.get(&x).unwrap().to_vec1().unwrap();
    // The unquantized gradient of sum(c * x) is c.
    let g_f = (x.as_tensor() * &c).unwrap().sum_all().unwrap().backward().unwrap();
    let g_f: Vec<f32> = g_f.get(&x).unwrap().to_vec1().unwrap();
    for i in 0..xs.len() {
        if xs[i].abs() <= 1.0 {
            assert_eq!(g_q[i], g_f[i], "inside range at {}", xs[i]);
        } else {
            assert_eq!(g_q[i], 0.0, "outside range at {}", xs[i]);
        }
    }
}

#[test]
fn per_channel_fake_quant_uses_row_scales() {
    let w = Tensor::from_vec(vec![1.0f32, 0.5, 0.1, -0.1], (2, 2), &Device::Cpu).unwrap();
    let s = Scales { scales: vec![127.0f32, 1270.0].into(), inner: 2 };
    let y: Vec<f32> = fake_quant(&w, s, QMAX_I8).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(y, vec![1.0, 64.0 / 127.0, 127.0 / 1270.0, -127.0 / 1270.0]);
}

#[test]
fn ema_update_math() {
    let t = RangeTracker::default();
    assert_eq!(t.get(), None);
    t.observe(2.0, 0.9);
    assert!((t.get().unwrap() - 2.0).abs() < 1e-6); // bias correction: first observation as is
    t.observe(4.0, 0.9);
    // biased = 0.9*0.2 + 0.4 = 0.58; corrected = 0.58 / (1 - 0.81)
    assert!((t.get().unwrap() - 0.58 / 0.19).abs() < 1e-5);
    t.observe(1.0, 0.9);
    assert!((t.get().unwrap() - (0.9 * 0.58 + 0.1) / (1.0 - 0.729)).abs() < 1e-5);
    // With Q8BERT's 0.9999 a short run averages the maxima it saw (instead of freezing the first).
    let s = RangeTracker::default();
    for i in 0..100 {
        s.observe(if i < 50 { 1.0 } else { 3.0 }, 0.9999);
    }
    assert!((s.get().unwrap() - 2.0).abs() < 0.01, "{:?}", s.get());
    // Long runs become the plain EMA: after 200k steps of 5.0 the old value is forgotten.
    for _ in 0..200_000 {
        s.observe(5.0, 0.9999);
    }
    assert!((s.get().unwrap() - 5.0).abs() < 1e-3);
    s.set(Some(7.0));
    assert_eq!(s.get(), Some(7.0));
    s.observe(1.0, 0.9999);
    assert!((s.get().unwrap() - 1.0).abs() < 1e-6); // set() restarts the average
    let m = RangeTracker::default();
    m.observe_max(3.0);
    m.observe_max(1.0);
    assert_eq!(m.get(), Some(3.0));
}

#[test]
fn qlinear_tracks_max_abs_input_with_ema() {
    let cfg = BertConfig::tiny(20);
    let model = Bert::random(cfg, Some(2), 1).unwrap();
    let l = &model.layers[0];
    let x1 = Tensor::from_vec(vec![0.5f32; 32].into_iter().enumerate().map(|(i, v)| if i == 3 { -3.0 } else { v }).collect::<Vec<_>>(), (2, 16), &Device::Cpu).unwrap();
    let x2 = (x1.clone() * 2.0).unwrap();
    let c = ctx(true, Track::Ema(0.99), false);
    qlinear(&x1, &[&l.intermediate], &l.intermediate_in, &c).unwrap();
    assert_eq!(l.intermediate_in.get(), Some(3.0));
    qlinear(&x2, &[&l.intermediate], &l.intermediate_in, &c).unwrap();
    let want = (0.99 * 0.03 + 0.01 * 6.0) / (1.0 - 0.99 * 0.99); // bias-corrected EMA
    assert!((l.intermediate_in.get().unwrap() - want).abs() < 1e-5);
    // No tracking in eval.
    qlinear(&x2, &[&l.intermediate], &l.intermediate_in, &ctx(true, Track::None, false)).unwrap();
    assert!((l.intermediate_in.get().unwrap() - want).abs() < 1e-5);
}

fn check_all_grads(quant: bool, dropout: bool) {
    check_all_grads_with(quant, dropout, false)
}

fn check_all_grads_with(quant: bool, dropout: bool, int8_attention: bool) {
    let cfg = BertConfig::tiny(30);
    let mut model = Bert::random(cfg, Some(3), 11).unwrap();
    model.int8_attention = int8_attention;
    let batch = tiny_batch(30, 4, 9, 5);
    let c = ctx(quant, Track::Ema(0.9), dropout);
    let logits = model.logits(&batch, &c).unwrap();
    let w = Tensor::from_vec((0..12).map(|i| (i as f32 - 5.5) / 3.0).collect::<Vec<_>>(), (4, 3), &Device::Cpu).unwrap();
    let loss = (logits * w).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    let params = model.named_params();
    assert!(params.len() > 20);
    for (name, var) in params {
        let g = grads.get(var).unwrap_or_else(|| panic!("no gradient for {name} (quant={quant})"));
        let m = g.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(m > 0.0 && m.is_finite(), "gradient of {name} is {m} (quant={quant})");
    }
}

#[test]
fn every_trainable_tensor_gets_gradient_fp32() {
    check_all_grads(false, false);
}

#[test]
fn every_trainable_tensor_gets_gradient_qat() {
    check_all_grads(true, true);
}

/// With int8 attention the straight-through estimator carries gradients through the
/// fake-quantized Q, K, V and probabilities to every parameter, and their ranges are tracked.
#[test]
fn every_trainable_tensor_gets_gradient_qat_int8_attention() {
    check_all_grads_with(true, true, true);
}

#[test]
fn int8_attention_tracks_q_k_v_ranges() {
    let cfg = BertConfig::tiny(30);
    let mut model = Bert::random(cfg, Some(3), 11).unwrap();
    let batch = tiny_batch(30, 4, 9, 5);
    assert_eq!(model.trackers().len(), 2 * 4 + 2, "no Q/K/V trackers without int8 attention");
    model.int8_attention = true;
    assert_eq!(model.trackers().len(), 2 * 7 + 2);
    model.logits(&batch, &ctx(false, Track::Max, false)).unwrap();
    for l in &model.layers {
        for t in [&l.query_out, &l.key_out, &l.value_out] {
            let r = t.get().expect("range observed");
            assert!(r.is_finite() && r > 0.0);
        }
    }
}

#[test]
fn fake_quant_forward_stays_close_to_fp32() {
    let cfg = BertConfig::tiny(30);
    let model = Bert::random(cfg, Some(2), 3).unwrap();
    let batch = tiny_batch(30, 3, 8, 9);
    let f: Vec<f32> = model.logits(&batch, &ctx(false, Track::Max, false)).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    let q: Vec<f32> = model.logits(&batch, &ctx(true, Track::None, false)).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    let scale = f.iter().fold(0f32, |m, v| m.max(v.abs()));
    for (a, b) in f.iter().zip(&q) {
        assert!((a - b).abs() < 0.1 * scale.max(1.0), "fp32 {a} vs int8-simulated {b}");
    }
    assert_ne!(f, q, "quantization should change the output a little");
}

#[test]
fn parallel_fake_quant_matches_scalar_reference() {
    // Large enough for the two-thread path; per tensor and per row (rows not a multiple of 2).
    let (rows, cols) = (301usize, 257usize);
    let mut rng = Rng::new(3);
    let v: Vec<f32> = (0..rows * cols).map(|_| rng.normal() * 2.0).collect();
    let x = Tensor::from_vec(v.clone(), (rows, cols), &Device::Cpu).unwrap();
    let row_scales: Vec<f32> = (0..rows).map(|r| 127.0 / (1.0 + r as f32 * 0.01)).collect();
    for scales in [Scales::per_tensor(40.0), Scales { scales: row_scales.clone().into(), inner: cols }] {
        let got: Vec<f32> = fake_quant(&x, scales.clone(), QMAX_I8).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        for (i, (&g, &xv)) in got.iter().zip(&v).enumerate() {
            let s = if scales.scales.len() == 1 { scales.scales[0] } else { row_scales[i / cols] };
            let want = quantize_value(xv, s, QMAX_I8) * (1.0 / s);
            assert_eq!(g, want, "element {i}");
        }
    }
}
