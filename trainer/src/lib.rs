//! Q8BERT quantization-aware fine-tuning for the q8bert runtime.
pub mod bert;
pub mod data;
pub mod dense;
pub mod eval;
pub mod export;
pub mod fidelity;
pub mod metrics;
pub mod model_dir;
pub mod optim;
pub mod quant;
pub mod rng;
pub mod train;

/// Worker threads for the trainer's own parallel loops (from RAYON_NUM_THREADS, set by --threads).
pub fn threads() -> usize {
    static N: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *N.get_or_init(|| {
        if std::env::var_os("TRAINER_SERIAL_KERNELS").is_some() {
            return 1;
        }
        std::env::var("RAYON_NUM_THREADS")
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
    })
}
