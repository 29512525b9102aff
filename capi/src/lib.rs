//! The C library of q8bert. Every exported function is defined in the runtime crate's `ffi`
//! module (so Rust tests call the very code C programs do); re-exporting it here makes it part
//! of this crate's `cdylib` and `staticlib`. `scripts/check_symbols.sh` checks the exported set
//! against include/q8bert.h.
pub use runtime::ffi::*;
