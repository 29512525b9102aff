//! The Rust side of scripts/bench_bindings.sh: median µs of one short-text classification per
//! `run_text` call on one thread, the baseline the language bindings are compared with.
//!
//!   cargo run --release --example bench_call -- MODEL.q8b [CALLS]

use std::time::Instant;

use q8bert::{Model, Options};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let calls: usize = args.get(2).map(|c| c.parse().unwrap()).unwrap_or(2000);
    let model = Model::open(&args[1], &Options { num_threads: 1, ..Default::default() }).unwrap();
    let texts = ["a gripping, funny film."];
    let mut out = vec![0.0f32; model.text_output_len(1)];
    for _ in 0..calls / 10 {
        model.run_text(&texts, None, &mut out).unwrap();
    }
    let mut times: Vec<f64> = (0..calls)
        .map(|_| {
            let t0 = Instant::now();
            model.run_text(&texts, None, &mut out).unwrap();
            t0.elapsed().as_nanos() as f64 / 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    println!("rust {:.2}", times[calls / 2]);
}
