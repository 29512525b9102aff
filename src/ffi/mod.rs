//! The C ABI (`include/q8bert.h`, generated from this module by cbindgen).
//!
//! Conventions: every function returns a `q8bert_status` (0 = OK) unless it cannot fail;
//! pointers are checked for NULL; outputs are written only on success; no panic crosses the
//! boundary (each body runs under `catch_unwind`); the library never prints. The detail of the
//! last failure on the calling thread is available from `q8bert_last_error()`.
#![allow(non_camel_case_types)]

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::{Error, Status};
use crate::kernels::KernelKind;
use crate::model::Options;
use crate::runtime::{Model, Prompt};
use crate::tokenizer::{Encoding, Truncation};

mod util;
use util::{check_mut, check_ref, slice_from};

/// Library version, also available at run time from `q8bert_version()`.
pub const Q8BERT_VERSION_MAJOR: u32 = 0;
pub const Q8BERT_VERSION_MINOR: u32 = 1;
pub const Q8BERT_VERSION_PATCH: u32 = 0;
/// MAJOR * 10000 + MINOR * 100 + PATCH, for compile-time checks.
pub const Q8BERT_VERSION_NUMBER: u32 = Q8BERT_VERSION_MAJOR * 10000 + Q8BERT_VERSION_MINOR * 100 + Q8BERT_VERSION_PATCH;

/// `q8bert_options.kernel`: pick the fastest kernel this CPU supports (or `$Q8BERT_KERNEL`).
pub const Q8BERT_KERNEL_AUTO: u32 = 0;
/// Portable reference kernel, available everywhere.
pub const Q8BERT_KERNEL_SCALAR: u32 = 1;
/// x86-64 AVX2 with FMA (`vpmaddubsw`; FMA for the fp32 attention).
pub const Q8BERT_KERNEL_AVX2: u32 = 2;
/// x86-64 AVX-VNNI (256-bit `vpdpbusd`; also needs AVX2 and FMA).
pub const Q8BERT_KERNEL_AVX_VNNI: u32 = 3;
/// x86-64 AVX512-VNNI (512-bit `vpdpbusd`).
pub const Q8BERT_KERNEL_AVX512_VNNI: u32 = 4;
/// aarch64 NEON baseline (`smull`/`smlal`/`sadalp`; every ARMv8-A core).
pub const Q8BERT_KERNEL_NEON: u32 = 5;
/// aarch64 dot-product extension (`sdot`; ARMv8.2+ FEAT_DotProd).
pub const Q8BERT_KERNEL_NEON_DOTPROD: u32 = 6;
/// aarch64 int8 matrix multiply (`smmla`; ARMv8.6 FEAT_I8MM).
pub const Q8BERT_KERNEL_NEON_I8MM: u32 = 7;
/// x86-64 AMX-INT8 tiles (`tdpbssd`; Sapphire Rapids and later, where the OS grants tile state).
pub const Q8BERT_KERNEL_AMX: u32 = 8;
/// 32-bit Arm Cortex-M DSP extension (`SXTB16` + `SMLAD`; built in for targets with `dsp`).
pub const Q8BERT_KERNEL_ARM_DSP: u32 = 9;
/// Arm Helium / MVE (`VMLADAVA.S8`, Cortex-M55/M85; built in with `--cfg q8bert_helium`).
pub const Q8BERT_KERNEL_ARM_HELIUM: u32 = 10;
/// Portable blocked Rust, every target (the default where no int8 SIMD kernel exists).
pub const Q8BERT_KERNEL_PORTABLE: u32 = 11;

/// `q8bert_options.flags`: hash the whole file at load and check its payload checksum.
pub const Q8BERT_FLAG_VERIFY_CHECKSUM: u32 = 1;

/// `q8bert_options.flags`: text longer than the sequence limit is truncated longest-first (as
/// Hugging Face does) instead of failing with `Q8BERT_STATUS_SEQUENCE_TOO_LONG`. Without this
/// flag or `Q8BERT_FLAG_NO_TRUNCATE`, the model decides: models that record a text limit
/// (sentence-transformers' `max_seq_length`) truncate there, as sentence-transformers does;
/// others fail.
pub const Q8BERT_FLAG_TRUNCATE: u32 = 2;
/// `q8bert_options.flags`: text longer than the sequence limit fails with
/// `Q8BERT_STATUS_SEQUENCE_TOO_LONG`, even where the model would truncate.
pub const Q8BERT_FLAG_NO_TRUNCATE: u32 = 4;
/// `q8bert_options.flags`: copy the model into this process's memory, in transparent huge pages
/// where Linux offers them, instead of reading the mapped file or the caller's buffer in place:
/// a slower open (a copy of the file) and memory not shared between processes, for faster runs
/// (up to 9% on a Zen 4: BERT-base, one sequence of 32 tokens; 0-3% on batches). See
/// `Options::huge_pages`.
pub const Q8BERT_FLAG_HUGE_PAGES: u32 = 8;

/// `q8bert_tokenize_ex` truncation policy: fail when the text is too long.
pub const Q8BERT_TRUNCATION_ERROR: u32 = 0;
/// `q8bert_tokenize_ex` truncation policy: drop tokens longest-first.
pub const Q8BERT_TRUNCATION_LONGEST_FIRST: u32 = 1;

/// `q8bert_info.head_kind`: `num_labels` logits per sequence.
pub const Q8BERT_HEAD_CLASSIFICATION: u32 = 1;
/// One float per sequence.
pub const Q8BERT_HEAD_REGRESSION: u32 = 2;
/// A pooled sentence embedding of `hidden_size` floats per sequence.
pub const Q8BERT_HEAD_EMBEDDING: u32 = 3;
/// `seq_len * hidden_size` floats per sequence (zeros at masked positions).
pub const Q8BERT_HEAD_TOKEN_STATES: u32 = 4;

/// `q8bert_info.activations`: every linear layer quantizes its input with one scale learned in
/// training or calibration (the Q8BERT paper's scheme).
pub const Q8BERT_ACTIVATIONS_STATIC: u32 = 0;
/// Every linear layer quantizes its input with a scale per token computed at run time (format 1.2).
pub const Q8BERT_ACTIVATIONS_PER_ROW: u32 = 1;
/// Some layers static, some per token.
pub const Q8BERT_ACTIVATIONS_MIXED: u32 = 2;

/// Options for `q8bert_create*`. Initialize with `q8bert_options_init`, then change fields.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct q8bert_options {
    /// `sizeof(q8bert_options)`, set by `q8bert_options_init`; lets the struct grow compatibly.
    pub struct_size: u32,
    /// Threads used inside one `q8bert_run` call; 0 = one per available core.
    pub num_threads: u32,
    /// One of `Q8BERT_KERNEL_*`; `Q8BERT_KERNEL_AUTO` (0) by default.
    pub kernel: u32,
    /// Bitwise OR of `Q8BERT_FLAG_*`; 0 by default.
    pub flags: u32,
    /// Longest token sequence for text input, special tokens included; 0 = the model's maximum.
    pub max_seq_len: u32,
}

/// Facts about a loaded model, filled by `q8bert_model_info`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct q8bert_info {
    /// `sizeof(q8bert_info)` as this library defines it.
    pub struct_size: u32,
    /// One of `Q8BERT_HEAD_*`.
    pub head_kind: u32,
    /// Floats per sequence in `q8bert_run`'s output (per token for `Q8BERT_HEAD_TOKEN_STATES`).
    pub output_dim: u32,
    /// Longest sequence accepted (the model's max_position_embeddings).
    pub max_seq_len: u32,
    pub vocab_size: u32,
    pub hidden_size: u32,
    pub num_layers: u32,
    pub num_heads: u32,
    pub intermediate_size: u32,
    /// Number of classes (classification), else 1 (regression) or 0.
    pub num_labels: u32,
    /// The kernel in use, one of `Q8BERT_KERNEL_*` (never AUTO).
    pub kernel: u32,
    /// Threads used per run.
    pub num_threads: u32,
    /// Size of the model file in bytes.
    pub file_size: u64,
    /// Token limit for text input (the `max_seq_len` option, or `max_seq_len` above).
    pub max_text_tokens: u32,
    /// How the linear layers quantize their inputs, one of `Q8BERT_ACTIVATIONS_*`.
    pub activations: u32,
}

/// A loaded model. Opaque; immutable after creation, so one model may be used by many threads
/// at once.
pub struct q8bert_model {
    model: Model<'static>,
    labels: Vec<CString>,
    /// Named prompts as C strings: (name, text).
    prompts: Vec<(CString, CString)>,
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(e: &Error) {
    let text = format!("{}: {}", e.status.description(), e.message).replace('\0', " ");
    let text = CString::new(text).unwrap_or_default();
    LAST_ERROR.with(|l| *l.borrow_mut() = text);
}

/// Test-only fault injection (cargo feature `test-hooks`, never in a release build).
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
pub mod test_hooks {
    use std::cell::Cell;

    thread_local! {
        pub(super) static PANIC_NEXT_CALL: Cell<bool> = const { Cell::new(false) };
    }

    /// Makes the calling thread's next guarded C call panic inside its body.
    pub fn panic_next_call() {
        PANIC_NEXT_CALL.with(|p| p.set(true));
    }
}

/// Runs `body` with the panic boundary and records a failure's detail for `q8bert_last_error`.
fn guard(body: impl FnOnce() -> Result<(), Error>) -> Status {
    let result = catch_unwind(AssertUnwindSafe(|| {
        #[cfg(feature = "test-hooks")]
        if test_hooks::PANIC_NEXT_CALL.with(|p| p.replace(false)) {
            panic!("test hook: injected panic");
        }
        body()
    }))
    .unwrap_or_else(|payload| {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        Err(Error::new(Status::Panic, what))
    });
    match result {
        Ok(()) => Status::Ok,
        Err(e) => {
            set_last_error(&e);
            e.status
        }
    }
}

fn options_from_c(opts: *const q8bert_options) -> Result<Options, Error> {
    let Some(o) = (unsafe { util::opt_ref(opts) }) else {
        return Ok(Options::default());
    };
    if (o.struct_size as usize) < std::mem::size_of::<q8bert_options>() {
        return Err(Error::new(Status::UnsupportedOptions, format!("options.struct_size is {}; call q8bert_options_init first", o.struct_size)));
    }
    if o.flags & !(Q8BERT_FLAG_VERIFY_CHECKSUM | Q8BERT_FLAG_TRUNCATE | Q8BERT_FLAG_NO_TRUNCATE | Q8BERT_FLAG_HUGE_PAGES) != 0 {
        return Err(Error::new(Status::UnsupportedOptions, format!("unknown option flags 0x{:x}", o.flags)));
    }
    let kernel = match o.kernel {
        Q8BERT_KERNEL_AUTO => None,
        k => match KernelKind::from_u32(k) {
            Some(kind) => Some(kind),
            None => return Err(Error::new(Status::UnsupportedOptions, format!("unknown kernel id {k}"))),
        },
    };
    Ok(Options {
        num_threads: o.num_threads as usize,
        kernel,
        verify_checksum: o.flags & Q8BERT_FLAG_VERIFY_CHECKSUM != 0,
        max_seq_len: o.max_seq_len as usize,
        truncation: match (o.flags & Q8BERT_FLAG_TRUNCATE != 0, o.flags & Q8BERT_FLAG_NO_TRUNCATE != 0) {
            (true, true) => return Err(Error::new(Status::UnsupportedOptions, "flags: Q8BERT_FLAG_TRUNCATE and Q8BERT_FLAG_NO_TRUNCATE contradict each other")),
            (true, false) => Some(Truncation::LongestFirst),
            (false, true) => Some(Truncation::Error),
            (false, false) => None,
        },
        huge_pages: o.flags & Q8BERT_FLAG_HUGE_PAGES != 0,
    })
}

fn finish_create(model: Model<'static>, model_out: *mut *mut q8bert_model) -> Result<(), Error> {
    let labels = model.head().labels.iter().map(|l| CString::new(l.replace('\0', " ")).unwrap_or_default()).collect();
    let c = |s: &str| CString::new(s.replace('\0', " ")).unwrap_or_default();
    let prompts = model.prompts().iter().map(|(n, t)| (c(n), c(t))).collect();
    let boxed = Box::new(q8bert_model { model, labels, prompts });
    // SAFETY: model_out was checked non-NULL by the caller of this helper.
    unsafe { *model_out = Box::into_raw(boxed) };
    Ok(())
}

/// Fills `opts` with the defaults: auto kernel, one thread per core, no extra verification.
/// A NULL `opts` does nothing.
///
/// # Safety
/// `opts` is NULL or points to writable, aligned storage for a `q8bert_options`, which need not
/// be initialized.
#[no_mangle]
pub unsafe extern "C" fn q8bert_options_init(opts: *mut q8bert_options) {
    if opts.is_null() {
        return;
    }
    let defaults = q8bert_options {
        struct_size: std::mem::size_of::<q8bert_options>() as u32,
        num_threads: 0,
        kernel: Q8BERT_KERNEL_AUTO,
        flags: 0,
        max_seq_len: 0,
    };
    // SAFETY: non-NULL, aligned and writable (caller's contract); a raw write, since the
    // storage may be uninitialized (no reference to it is made).
    unsafe { opts.write(defaults) };
}

/// Opens a model file by memory-mapping it. `opts` may be NULL for defaults. On success
/// `*model_out` receives a model to release with `q8bert_free`; on failure it is untouched.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `opts` is NULL or points to an initialized
/// `q8bert_options`; `model_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn q8bert_create(path: *const c_char, opts: *const q8bert_options, model_out: *mut *mut q8bert_model) -> Status {
    guard(|| {
        if path.is_null() || model_out.is_null() {
            return Err(Error::new(Status::NullArgument, "path and model_out must not be NULL"));
        }
        // SAFETY: path is non-NULL and NUL-terminated per the contract above.
        let bytes = unsafe { CStr::from_ptr(path) }.to_bytes();
        let path = std::path::Path::new(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(bytes));
        let options = options_from_c(opts)?;
        finish_create(Model::open(path, &options)?, model_out)
    })
}

/// Opens a model from a buffer without copying it. The buffer must start at a 4-byte-aligned
/// address and stay alive and unchanged until `q8bert_free`. (With `Q8BERT_FLAG_HUGE_PAGES` the
/// model is copied at create, and neither applies.)
///
/// # Safety
/// `data` points to `len` readable bytes that outlive the model; `opts`/`model_out` as in
/// `q8bert_create`.
#[no_mangle]
pub unsafe extern "C" fn q8bert_create_from_memory(
    data: *const u8,
    len: usize,
    opts: *const q8bert_options,
    model_out: *mut *mut q8bert_model,
) -> Status {
    guard(|| {
        if data.is_null() || model_out.is_null() {
            return Err(Error::new(Status::NullArgument, "data and model_out must not be NULL"));
        }
        // SAFETY: the caller guarantees `len` readable bytes at `data` that outlive the model,
        // which is what the 'static lifetime stands for here.
        let bytes: &'static [u8] = unsafe { slice_from(data, len, "data")? };
        let options = options_from_c(opts)?;
        finish_create(Model::from_bytes(bytes, &options)?, model_out)
    })
}

/// Describes the model.
///
/// # Safety
/// `model` is NULL or a live model; `info_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn q8bert_model_info(model: *const q8bert_model, info_out: *mut q8bert_info) -> Status {
    guard(|| {
        // SAFETY: per the contract, non-NULL pointers are valid.
        let m = unsafe { check_ref(model, "model")? };
        let info = unsafe { check_mut(info_out, "info_out")? };
        let model = &m.model;
        let c = model.config();
        let head = model.head();
        *info = q8bert_info {
            struct_size: std::mem::size_of::<q8bert_info>() as u32,
            head_kind: head.kind as u32,
            output_dim: model.layout().output_dim(1) as u32,
            max_seq_len: c.max_position_embeddings as u32,
            vocab_size: c.vocab_size as u32,
            hidden_size: c.hidden_size as u32,
            num_layers: c.num_layers as u32,
            num_heads: c.num_heads as u32,
            intermediate_size: c.intermediate_size as u32,
            num_labels: match head.kind {
                crate::HeadKind::Classification => head.labels.len() as u32,
                crate::HeadKind::Regression => 1,
                _ => 0,
            },
            kernel: model.kernel().kind() as u32,
            num_threads: model.num_threads() as u32,
            file_size: model.file_bytes().len() as u64,
            max_text_tokens: model.max_seq_len() as u32,
            activations: match (model.layout().per_row_linears(), model.layout().linears().count()) {
                (0, _) => Q8BERT_ACTIVATIONS_STATIC,
                (p, all) if p == all => Q8BERT_ACTIVATIONS_PER_ROW,
                _ => Q8BERT_ACTIVATIONS_MIXED,
            },
        };
        Ok(())
    })
}

/// Number of floats `q8bert_run` writes for `batch` sequences of `seq_len` tokens.
///
/// # Safety
/// `model` is NULL or a live model; `len_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn q8bert_output_len(model: *const q8bert_model, batch: usize, seq_len: usize, len_out: *mut usize) -> Status {
    guard(|| {
        // SAFETY: per the contract, non-NULL pointers are valid.
        let m = unsafe { check_ref(model, "model")? };
        let out = unsafe { check_mut(len_out, "len_out")? };
        *out = m.model.output_len(batch, seq_len);
        Ok(())
    })
}

/// Upper bound of the heap bytes one `q8bert_run` of `batch` sequences of `seq_len` tokens
/// allocates (scratch memory the model keeps for reuse; see docs/HARDENING.md). Fails like
/// `q8bert_run` would for the same sizes (zero, too long, too large).
///
/// # Safety
/// `model` is NULL or a live model; `bytes_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn q8bert_working_memory(model: *const q8bert_model, batch: usize, seq_len: usize, bytes_out: *mut usize) -> Status {
    guard(|| {
        // SAFETY: per the contract, non-NULL pointers are valid.
        let m = unsafe { check_ref(model, "model")? };
        let out = unsafe { check_mut(bytes_out, "bytes_out")? };
        *out = m.model.working_memory(batch, seq_len)?;
        Ok(())
    })
}

/// Runs the model on `batch` sequences of `seq_len` token ids (row-major `[batch][seq_len]`).
/// `token_type_ids` NULL = all zeros; `attention_mask` NULL = all ones (values must be 0 or 1).
/// Writes `q8bert_output_len(batch, seq_len)` floats to `output` (capacity `output_len` floats).
///
/// # Safety
/// Non-NULL arrays hold `batch * seq_len` values; `output` holds `output_len` floats.
#[no_mangle]
pub unsafe extern "C" fn q8bert_run(
    model: *const q8bert_model,
    input_ids: *const i32,
    token_type_ids: *const i32,
    attention_mask: *const i32,
    batch: usize,
    seq_len: usize,
    output: *mut f32,
    output_len: usize,
) -> Status {
    guard(|| {
        // SAFETY: per the contract, non-NULL pointers are valid for the stated lengths.
        let m = unsafe { check_ref(model, "model")? };
        if input_ids.is_null() || output.is_null() {
            return Err(Error::new(Status::NullArgument, "input_ids and output must not be NULL"));
        }
        let Some(n) = batch.checked_mul(seq_len) else {
            return Err(Error::new(Status::InvalidArgument, format!("batch {batch} x seq_len {seq_len} overflows")));
        };
        let ids = unsafe { slice_from(input_ids, n, "input_ids")? };
        let types = if token_type_ids.is_null() { None } else { Some(unsafe { slice_from(token_type_ids, n, "token_type_ids")? }) };
        let mask = if attention_mask.is_null() { None } else { Some(unsafe { slice_from(attention_mask, n, "attention_mask")? }) };
        let needed = m.model.output_len(batch, seq_len);
        if output_len < needed {
            return Err(Error::new(Status::BufferTooSmall, format!("output_len is {output_len} floats, {needed} are needed")));
        }
        let out = unsafe { util::slice_from_mut(output, output_len, "output")? };
        m.model.run(ids, types, mask, batch, seq_len, out)
    })
}

/// Reads a NUL-terminated UTF-8 text argument.
///
/// # Safety
/// A non-NULL `p` points to a NUL-terminated string.
unsafe fn text_arg<'a>(p: *const c_char, what: &str) -> Result<&'a str, Error> {
    if p.is_null() {
        return Err(Error::new(Status::NullArgument, format!("{what} must not be NULL")));
    }
    // SAFETY: non-NULL and NUL-terminated per the caller's contract.
    let bytes = unsafe { CStr::from_ptr(p) }.to_bytes();
    std::str::from_utf8(bytes).map_err(|e| Error::new(Status::InvalidUtf8, format!("{what} is not valid UTF-8 (bad byte at offset {})", e.valid_up_to())))
}

/// Writes an encoding to the caller's arrays, or reports the size needed.
///
/// # Safety
/// `ids` (and a non-NULL `type_ids`) hold `capacity` values; `len_out` is writable.
unsafe fn write_encoding(enc: &Encoding, ids: *mut i32, type_ids: *mut i32, capacity: usize, len_out: *mut usize) -> Result<(), Error> {
    let n = enc.ids.len();
    // SAFETY: per the contract above.
    let len = unsafe { check_mut(len_out, "len_out")? };
    if capacity < n {
        *len = n;
        return Err(Error::new(Status::BufferTooSmall, format!("capacity is {capacity} tokens, {n} are needed (written to *len_out)")));
    }
    let ids = unsafe { util::slice_from_mut(ids, capacity, "ids")? };
    ids[..n].copy_from_slice(&enc.ids);
    if !type_ids.is_null() {
        let types = unsafe { util::slice_from_mut(type_ids, capacity, "type_ids")? };
        types[..n].copy_from_slice(&enc.type_ids);
    }
    *len = n;
    Ok(())
}

/// Tokenizes UTF-8 text (and an optional second text of a pair, else NULL) into
/// `[CLS] a [SEP] (b [SEP])` token ids and token type ids (`type_ids` may be NULL), with the
/// model's `max_seq_len` and truncation option. On success `*len_out` is the token count; if
/// `capacity` is too small the call fails with `Q8BERT_STATUS_BUFFER_TOO_SMALL` and `*len_out`
/// is the count needed.
///
/// # Safety
/// Texts are NUL-terminated; `ids`/`type_ids` hold `capacity` values; `len_out` is writable.
#[no_mangle]
pub unsafe extern "C" fn q8bert_tokenize(
    model: *const q8bert_model,
    text_a: *const c_char,
    text_b: *const c_char,
    ids: *mut i32,
    type_ids: *mut i32,
    capacity: usize,
    len_out: *mut usize,
) -> Status {
    // SAFETY: forwarded contract; a NULL model is reported before it is used.
    let Some(m) = (unsafe { model.as_ref() }) else {
        return guard(|| Err(Error::new(Status::NullArgument, "model must not be NULL")));
    };
    let max_len = m.model.max_seq_len();
    let truncation = match m.model.truncation() {
        Truncation::Error => Q8BERT_TRUNCATION_ERROR,
        Truncation::LongestFirst => Q8BERT_TRUNCATION_LONGEST_FIRST,
    };
    // SAFETY: same contract as q8bert_tokenize_ex with truncated_out = NULL.
    unsafe { q8bert_tokenize_ex(model, text_a, text_b, max_len, truncation, ids, type_ids, capacity, len_out, std::ptr::null_mut()) }
}

/// `q8bert_tokenize` with an explicit token limit `max_len` (special tokens included), a
/// truncation policy (`Q8BERT_TRUNCATION_*`), and `*truncated_out` (may be NULL) receiving the
/// number of tokens dropped.
///
/// # Safety
/// As `q8bert_tokenize`; `truncated_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn q8bert_tokenize_ex(
    model: *const q8bert_model,
    text_a: *const c_char,
    text_b: *const c_char,
    max_len: usize,
    truncation: u32,
    ids: *mut i32,
    type_ids: *mut i32,
    capacity: usize,
    len_out: *mut usize,
    truncated_out: *mut usize,
) -> Status {
    guard(|| {
        // SAFETY: per the contract, non-NULL pointers are valid.
        let m = unsafe { check_ref(model, "model")? };
        let a = unsafe { text_arg(text_a, "text_a")? };
        let b = if text_b.is_null() { None } else { Some(unsafe { text_arg(text_b, "text_b")? }) };
        if ids.is_null() {
            return Err(Error::new(Status::NullArgument, "ids must not be NULL"));
        }
        let policy = match truncation {
            Q8BERT_TRUNCATION_ERROR => Truncation::Error,
            Q8BERT_TRUNCATION_LONGEST_FIRST => Truncation::LongestFirst,
            t => return Err(Error::new(Status::InvalidArgument, format!("unknown truncation policy {t}"))),
        };
        let mut enc = Encoding::default();
        m.model.encode_into(a, b, max_len, policy, &mut enc)?;
        unsafe { write_encoding(&enc, ids, type_ids, capacity, len_out)? };
        if let Some(t) = unsafe { truncated_out.as_mut() } {
            *t = enc.num_truncated;
        }
        Ok(())
    })
}

/// Number of floats `q8bert_run_text` writes for `batch` texts.
///
/// # Safety
/// `model` is NULL or a live model; `len_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn q8bert_text_output_len(model: *const q8bert_model, batch: usize, len_out: *mut usize) -> Status {
    guard(|| {
        // SAFETY: per the contract, non-NULL pointers are valid.
        let m = unsafe { check_ref(model, "model")? };
        *unsafe { check_mut(len_out, "len_out")? } = m.model.text_output_len(batch);
        Ok(())
    })
}

/// Tokenizes and runs `batch` UTF-8 texts (`texts_b` NULL, or `batch` second texts of pairs).
/// Writes `q8bert_text_output_len(batch)` floats: per text, the logits, score or embedding.
///
/// # Safety
/// `texts_a` (and a non-NULL `texts_b`) hold `batch` NUL-terminated strings; `output` holds
/// `output_len` floats.
/// With the model's default prompt, if it has one (see `q8bert_run_text_prompt`).
#[no_mangle]
pub unsafe extern "C" fn q8bert_run_text(
    model: *const q8bert_model,
    texts_a: *const *const c_char,
    texts_b: *const *const c_char,
    batch: usize,
    output: *mut f32,
    output_len: usize,
) -> Status {
    // SAFETY: forwarded contract; a NULL prompt name means the model's default.
    unsafe { q8bert_run_text_prompt(model, std::ptr::null(), std::ptr::null(), texts_a, texts_b, batch, output, output_len) }
}

/// `q8bert_run_text` with a prompt in front of every first text, as sentence-transformers'
/// `encode(prompt_name=...)` / `encode(prompt=...)`: `prompt_name` names one of the model's
/// prompts (e.g. "query"; "" for no prompt), or `prompt_text` gives the text itself; both NULL:
/// the model's default prompt (none if it has none); both given: INVALID_ARGUMENT. An unknown
/// name is INVALID_ARGUMENT, and the message lists the model's prompts. A model whose pooling
/// leaves the prompt out (`include_prompt: false`) pools only the tokens after it.
///
/// # Safety
/// As `q8bert_run_text`; `prompt_name` and `prompt_text` are NULL or NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn q8bert_run_text_prompt(
    model: *const q8bert_model,
    prompt_name: *const c_char,
    prompt_text: *const c_char,
    texts_a: *const *const c_char,
    texts_b: *const *const c_char,
    batch: usize,
    output: *mut f32,
    output_len: usize,
) -> Status {
    guard(|| {
        // SAFETY: per the contract, non-NULL pointers are valid for the stated lengths.
        let m = unsafe { check_ref(model, "model")? };
        let prompt = match (prompt_name.is_null(), prompt_text.is_null()) {
            (true, true) => Prompt::Default,
            (false, true) => match unsafe { text_arg(prompt_name, "prompt_name")? } {
                "" => Prompt::None,
                name => Prompt::Name(name),
            },
            (true, false) => Prompt::Text(unsafe { text_arg(prompt_text, "prompt_text")? }),
            (false, false) => return Err(Error::new(Status::InvalidArgument, "give prompt_name or prompt_text, not both")),
        };
        let ptrs_a = unsafe { slice_from(texts_a, batch, "texts_a")? };
        let mut a = Vec::with_capacity(batch);
        for (i, &p) in ptrs_a.iter().enumerate() {
            a.push(unsafe { text_arg(p, &format!("texts_a[{i}]"))? });
        }
        let b = if texts_b.is_null() {
            None
        } else {
            let ptrs_b = unsafe { slice_from(texts_b, batch, "texts_b")? };
            let mut b = Vec::with_capacity(batch);
            for (i, &p) in ptrs_b.iter().enumerate() {
                b.push(unsafe { text_arg(p, &format!("texts_b[{i}]"))? });
            }
            Some(b)
        };
        let needed = m.model.text_output_len(batch);
        if output_len < needed {
            return Err(Error::new(Status::BufferTooSmall, format!("output_len is {output_len} floats, {needed} are needed")));
        }
        let out = unsafe { util::slice_from_mut(output, output_len, "output")? };
        m.model.run_text_prompt(prompt, &a, b.as_deref(), out)
    })
}

/// Number of named prompts the model carries (0 for most models).
///
/// # Safety
/// `model` is NULL (0) or a live model.
#[no_mangle]
pub unsafe extern "C" fn q8bert_prompt_count(model: *const q8bert_model) -> usize {
    // SAFETY: a non-NULL model is live per the contract.
    unsafe { model.as_ref() }.map_or(0, |m| m.prompts.len())
}

/// Name (e.g. "query") of prompt `index`, or NULL (out of range). Lives as long as the model.
///
/// # Safety
/// `model` is NULL or a live model.
#[no_mangle]
pub unsafe extern "C" fn q8bert_prompt_name(model: *const q8bert_model, index: usize) -> *const c_char {
    // SAFETY: a non-NULL model is live per the contract.
    unsafe { model.as_ref() }.and_then(|m| m.prompts.get(index)).map_or(std::ptr::null(), |p| p.0.as_ptr())
}

/// Text (e.g. "query: ") of prompt `index`, or NULL (out of range). Lives as long as the model.
///
/// # Safety
/// `model` is NULL or a live model.
#[no_mangle]
pub unsafe extern "C" fn q8bert_prompt_text(model: *const q8bert_model, index: usize) -> *const c_char {
    // SAFETY: a non-NULL model is live per the contract.
    unsafe { model.as_ref() }.and_then(|m| m.prompts.get(index)).map_or(std::ptr::null(), |p| p.1.as_ptr())
}

/// Name of the prompt `q8bert_run_text` uses, or NULL (the model has no default prompt).
///
/// # Safety
/// `model` is NULL or a live model.
#[no_mangle]
pub unsafe extern "C" fn q8bert_default_prompt_name(model: *const q8bert_model) -> *const c_char {
    // SAFETY: a non-NULL model is live per the contract.
    let Some(m) = (unsafe { model.as_ref() }) else { return std::ptr::null() };
    m.model.layout().default_prompt.and_then(|i| m.prompts.get(i)).map_or(std::ptr::null(), |p| p.0.as_ptr())
}

/// Name of class `index` of a classification model, or NULL (out of range, other heads).
/// The string lives as long as the model.
///
/// # Safety
/// `model` is NULL or a live model.
#[no_mangle]
pub unsafe extern "C" fn q8bert_label_name(model: *const q8bert_model, index: usize) -> *const c_char {
    // SAFETY: a non-NULL model is live per the contract.
    match unsafe { model.as_ref() }.and_then(|m| m.labels.get(index)) {
        Some(s) => s.as_ptr(),
        None => std::ptr::null(),
    }
}

/// Releases a model. NULL is a no-op.
///
/// # Safety
/// `model` is NULL or was returned by `q8bert_create*` and not freed yet; no other thread uses it.
#[no_mangle]
pub unsafe extern "C" fn q8bert_free(model: *mut q8bert_model) {
    if !model.is_null() {
        // SAFETY: the pointer came from Box::into_raw in finish_create and is freed once.
        let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(model) })));
    }
}

/// Static description of a status code (never NULL; "unknown status" for unknown codes).
#[no_mangle]
pub extern "C" fn q8bert_status_string(status: u32) -> *const c_char {
    match Status::from_u32(status) {
        Some(s) => util::static_cstr(s.description_cstr()),
        None => c"unknown status".as_ptr(),
    }
}

/// Name of a kernel id (`Q8BERT_KERNEL_*`), or "unknown".
#[no_mangle]
pub extern "C" fn q8bert_kernel_name(kernel: u32) -> *const c_char {
    let name: &'static CStr = match KernelKind::from_u32(kernel) {
        Some(KernelKind::Scalar) => c"scalar",
        Some(KernelKind::Avx2) => c"avx2",
        Some(KernelKind::AvxVnni) => c"avx-vnni",
        Some(KernelKind::Avx512Vnni) => c"avx512-vnni",
        Some(KernelKind::Neon) => c"neon",
        Some(KernelKind::NeonDotprod) => c"neon-dotprod",
        Some(KernelKind::NeonI8mm) => c"neon-i8mm",
        Some(KernelKind::Amx) => c"amx",
        Some(KernelKind::ArmDsp) => c"arm-dsp",
        Some(KernelKind::ArmHelium) => c"arm-helium",
        Some(KernelKind::Portable) => c"portable",
        None if kernel == Q8BERT_KERNEL_AUTO => c"auto",
        None => c"unknown",
    };
    util::static_cstr(name)
}

/// Detail of the calling thread's most recent failure ("" if none). Valid until the next
/// failing call on this thread.
#[no_mangle]
pub extern "C" fn q8bert_last_error() -> *const c_char {
    LAST_ERROR.with(|l| l.borrow().as_ptr())
}

/// The library version as "MAJOR.MINOR.PATCH".
#[no_mangle]
pub extern "C" fn q8bert_version() -> *const c_char {
    const VERSION: &CStr = match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
        Ok(v) => v,
        Err(_) => panic!("version contains NUL"),
    };
    VERSION.as_ptr()
}

/// The library version as MAJOR * 10000 + MINOR * 100 + PATCH (compare with `Q8BERT_VERSION_NUMBER`).
#[no_mangle]
pub extern "C" fn q8bert_version_number() -> u32 {
    Q8BERT_VERSION_NUMBER
}
