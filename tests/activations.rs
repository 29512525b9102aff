//! `bert.hidden_act` in the runtime: gelu (erf), gelu_new / gelu_pytorch_tanh (the tanh
//! approximation) and relu. Each runs bit-identically on every kernel and thread count, with a
//! static (fused GELU + requantize epilogue) or per-row (dequantize, activate, requantize) next
//! input; the activation changes the output as it should; an unknown name is refused by the
//! builder and the reader. The activation functions themselves are checked against f64
//! references in src/ops/math.rs; the trainer's tests/activations.rs compares whole models with
//! the trainer's fp32 forward.

mod common;

use common::{tiny_config, Aligned, FpModel, Rng};
use q8bert::builder::{Head, Pooling};
use q8bert::kernels::{Kernel, KernelKind};
use q8bert::model::Activation;
use q8bert::{Model, Options, Status};

fn model_bytes(act: Option<&str>, per_row: bool) -> Vec<u8> {
    let mut fp = FpModel::random(tiny_config(), Head::Embedding { pooling: Pooling::Mean, normalize: false }, 21);
    if per_row {
        fp = fp.with_per_row_inputs();
    }
    let mut b = fp.builder();
    if let Some(a) = act {
        b.hidden_act(a).unwrap();
    }
    b.to_bytes().unwrap()
}

/// A batch of 3 random sequences of up to 11 tokens, padded.
fn batch() -> (Vec<i32>, Vec<i32>, usize, usize) {
    let mut rng = Rng::new(5);
    let (b, t) = (3, 11);
    let mut ids = vec![0; b * t];
    let mut mask = vec![0; b * t];
    for s in 0..b {
        let len = 4 + rng.below(t - 3);
        for p in 0..len {
            ids[s * t + p] = if p == 0 { 2 } else if p == len - 1 { 3 } else { 5 + rng.below(35) as i32 };
            mask[s * t + p] = 1;
        }
    }
    (ids, mask, b, t)
}

fn run(bytes: &[u8], kernel: Option<KernelKind>, threads: usize) -> Vec<f32> {
    let a = Aligned::new(bytes);
    let m = Model::from_bytes(a.bytes(), &Options { kernel, num_threads: threads, ..Options::default() }).unwrap();
    let (ids, mask, b, t) = batch();
    let mut out = vec![0.0; m.output_len(b, t)];
    m.run(&ids, None, Some(&mask), b, t, &mut out).unwrap();
    out
}

#[test]
fn every_activation_is_bit_identical_across_kernels_and_threads() {
    let kernels: Vec<KernelKind> = KernelKind::ALL.into_iter().filter(|&k| Kernel::new(k).is_some()).collect();
    assert!(kernels.contains(&KernelKind::Scalar));
    for act in ["gelu", "gelu_new", "gelu_pytorch_tanh", "relu"] {
        for per_row in [false, true] {
            let bytes = model_bytes(Some(act), per_row);
            let a = Aligned::new(&bytes);
            let m = Model::from_bytes(a.bytes(), &Options::default()).unwrap();
            assert_eq!(m.config().hidden_act, Activation::from_name(act).unwrap());
            assert_eq!(m.layout().per_row_linears() > 0, per_row);
            let want = run(&bytes, Some(KernelKind::Scalar), 1);
            assert!(want.iter().all(|v| v.is_finite()));
            for &k in &kernels {
                for threads in [1, 2, 3] {
                    let got = run(&bytes, Some(k), threads);
                    let same = got.iter().zip(&want).all(|(x, y)| x.to_bits() == y.to_bits());
                    assert!(same, "{act} per_row={per_row}: kernel {} on {threads} threads differs from scalar", k.name());
                }
            }
        }
    }
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn the_activation_changes_the_output_as_it_should() {
    for per_row in [false, true] {
        let default = run(&model_bytes(None, per_row), None, 1);
        let gelu = run(&model_bytes(Some("gelu"), per_row), None, 1);
        let gelu_new = run(&model_bytes(Some("gelu_new"), per_row), None, 1);
        let pytorch_tanh = run(&model_bytes(Some("gelu_pytorch_tanh"), per_row), None, 1);
        let relu = run(&model_bytes(Some("relu"), per_row), None, 1);
        // Files written before hidden_act could be chosen say "gelu": unchanged bits.
        assert_eq!(default, gelu, "per_row={per_row}");
        // Two names of the same function.
        assert_eq!(gelu_new, pytorch_tanh, "per_row={per_row}");
        // The tanh form is close to the erf form (|difference| <= 4.7e-4 per activation), relu is not.
        let (near, far) = (max_diff(&gelu, &gelu_new), max_diff(&gelu, &relu));
        eprintln!("per_row={per_row}: max |gelu - gelu_new| {near:.3e}, max |gelu - relu| {far:.3e}");
        assert!(near > 0.0, "gelu_new must not run the erf GELU");
        assert!(far > 10.0 * near, "relu {far} vs tanh {near}");
    }
}

/// The builder refuses a name the runtime does not implement (the reader's refusal of one in a
/// file is in tests/format.rs).
#[test]
fn unknown_activation_is_refused_with_the_supported_list() {
    let fp = FpModel::random(tiny_config(), Head::Embedding { pooling: Pooling::Mean, normalize: false }, 3);
    let mut b = fp.builder();
    let err = b.hidden_act("swish").err().expect("swish accepted");
    assert_eq!(err.status, Status::InvalidArgument);
    assert!(err.message.contains("\"swish\"") && err.message.contains("gelu_pytorch_tanh"), "{}", err.message);
}
