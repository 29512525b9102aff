//! q8bert: an embeddable int8 BERT inference runtime implementing Q8BERT
//! (Zafrir et al., "Q8BERT: Quantized 8Bit BERT", 2019).
//!
//! Architecture, bottom up:
//! - [`format`]: the `.q8b` container (spec in `docs/FORMAT.md`): validating reader, writer.
//! - [`model`]: the BERT configuration, head and typed tensor views resolved from a file.
//! - [`kernels`]: int8 GEMM kernels behind one dispatch point (scalar reference + x86 SIMD).
//! - [`ops`]: fp32 math shared by all kernels (LayerNorm, softmax, GELU, requantization).
//! - [`bert`]: the forward pass; [`runtime`]: the [`Model`] handle users hold.
//! - [`tokenizer`]: BERT WordPiece driven by the vocabulary stored in the file.
//! - [`arena`]: the caller's one byte buffer as the allocator (feature `arena`, firmware).
//! - [`builder`] (std): quantizes fp32 weights into a model file.
//! - `ffi` (std): the C ABI declared in `include/q8bert.h`; the workspace member `capi/` builds
//!   it as libq8bert.so / libq8bert.a, so this crate is an rlib only (firmware can depend on it).
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

/// cbindgen:ignore
pub mod arena;
pub mod error;
/// cbindgen:ignore
pub mod format;
/// cbindgen:ignore
pub mod kernels;
/// cbindgen:ignore
pub mod model;
/// cbindgen:ignore
pub mod ops;
/// cbindgen:ignore
pub mod bert;
/// cbindgen:ignore
pub mod runtime;
/// cbindgen:ignore
pub mod tokenizer;
/// cbindgen:ignore
#[cfg(feature = "std")]
pub mod builder;
#[cfg(feature = "std")]
pub mod ffi;
/// cbindgen:ignore
#[cfg(feature = "std")]
pub mod threads;

pub use bert::{Input, Workspace};
pub use error::{Error, Result, Status};
pub use kernels::{Kernel, KernelKind, WeightRange};
pub use model::{AttentionScales, Config, HeadConfig, HeadKind, Options, Pooling};
pub use runtime::{Model, Prompt};

/// Library version, from Cargo.toml.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
