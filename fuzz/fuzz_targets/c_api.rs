//! Argument validation of the C entry points: NULL or valid pointers, arbitrary sizes, option
//! fields, limits, policies and texts (including invalid UTF-8). Buffers are always as large
//! as the lengths passed claim (the C contract), so every failure must be a status, never a
//! panic (Q8BERT_STATUS_PANIC) or a memory error.
#![no_main]

use std::ffi::{c_char, CStr, CString};
use std::ptr::{null, null_mut};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use q8bert::ffi::*;
use q8bert::Status;
use q8bert_fuzz::common::Aligned;
use q8bert_fuzz::{text_bytes, tiny_bytes, Input};

struct Shared(*mut q8bert_model);
// SAFETY: a q8bert_model is immutable and thread-safe; the pointer is never freed.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

fn open(bytes: &'static Aligned) -> *mut q8bert_model {
    let mut opts = std::mem::MaybeUninit::<q8bert_options>::uninit();
    // SAFETY: writable storage for the options, which the call initializes.
    let mut opts = unsafe {
        q8bert_options_init(opts.as_mut_ptr());
        opts.assume_init()
    };
    opts.num_threads = 1;
    let mut m = null_mut();
    let b = bytes.bytes();
    // SAFETY: the buffer is static and aligned.
    assert_eq!(unsafe { q8bert_create_from_memory(b.as_ptr(), b.len(), &opts, &mut m) }, Status::Ok);
    m
}

fn models() -> (*const q8bert_model, *const q8bert_model) {
    static M: OnceLock<(Shared, Shared)> = OnceLock::new();
    let (a, b) = M.get_or_init(|| (Shared(open(tiny_bytes())), Shared(open(text_bytes()))));
    (a.0, b.0)
}

fn check(s: Status) {
    assert_ne!(s, Status::Panic, "panic at the C boundary: {:?}", unsafe { CStr::from_ptr(q8bert_last_error()) });
    if s != Status::Ok {
        // SAFETY: last_error is always a valid C string.
        assert!(!unsafe { CStr::from_ptr(q8bert_last_error()) }.to_bytes().is_empty());
    }
}

/// A C string from fuzz bytes (cut at the first NUL; may be invalid UTF-8).
fn cstring(b: &[u8]) -> CString {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    CString::new(&b[..end]).unwrap()
}

fn maybe<T>(present: bool, p: *const T) -> *const T {
    if present { p } else { null() }
}

fn maybe_mut<T>(present: bool, p: *mut T) -> *mut T {
    if present { p } else { null_mut() }
}

fuzz_target!(|data: &[u8]| {
    let (tiny, text) = models();
    let mut inp = Input(data);
    let op = inp.u8();
    let nulls = inp.u8(); // bit i set: pointer argument i is NULL
    let model = if nulls & 1 != 0 { null() } else if op & 0x80 != 0 { text } else { tiny };
    unsafe {
        match op % 6 {
            0 => {
                // create_from_memory with arbitrary options and either a valid or a fuzzed buffer.
                let mut o = std::mem::zeroed::<q8bert_options>();
                q8bert_options_init(&mut o);
                if inp.u8() & 1 != 0 {
                    o.struct_size = inp.u32();
                    o.kernel = inp.u8() as u32 % 6;
                    o.flags = inp.u8() as u32;
                    o.max_seq_len = inp.u8() as u32;
                }
                o.num_threads = match inp.u8() {
                    255 => inp.u32(),
                    t => t as u32 % 3,
                };
                let buf = Aligned::new(inp.rest());
                let bytes = if buf.bytes().len() < 8 { tiny_bytes().bytes() } else { buf.bytes() };
                let mut m = null_mut();
                let s = q8bert_create_from_memory(maybe(nulls & 2 == 0, bytes.as_ptr()), bytes.len(), maybe(nulls & 4 == 0, &o), maybe_mut(nulls & 8 == 0, &mut m));
                check(s);
                assert_eq!(s == Status::Ok, !m.is_null());
                q8bert_free(m);
            }
            1 => {
                // run: honest buffers up to 64 x 64, or an overflowing batch x seq_len.
                let batch = match inp.u8() { 255 => usize::MAX, b => b as usize % 65 };
                let seq_len = inp.u8() as usize % 65;
                let n = batch.checked_mul(seq_len).filter(|&n| n <= 64 * 64).unwrap_or(0);
                let fill = inp.u8();
                let ids: Vec<i32> = (0..n).map(|i| ((i as u32 * 7 + fill as u32) % 45) as i32 - 2).collect();
                let types: Vec<i32> = (0..n).map(|i| (i % 3 == 0 && fill & 1 != 0) as i32).collect();
                let mask: Vec<i32> = (0..n).map(|i| (i % 5 != 4 || fill & 2 == 0) as i32).collect();
                let out_len = inp.u16() as usize;
                let mut out = vec![0f32; out_len];
                let s = q8bert_run(model, maybe(nulls & 2 == 0, ids.as_ptr()), maybe(nulls & 4 == 0, types.as_ptr()), maybe(nulls & 8 == 0, mask.as_ptr()), if n == 0 && batch != usize::MAX { 0 } else { batch }, seq_len, maybe_mut(nulls & 16 == 0, out.as_mut_ptr()), out_len);
                check(s);
            }
            2 => {
                // tokenize_ex: texts, limit, policy, capacity.
                let max_len = inp.u8() as usize;
                let truncation = inp.u8() as u32 % 3;
                let capacity = inp.u8() as usize;
                let split = inp.u8() as usize;
                let rest = inp.rest();
                let (a, b) = rest.split_at(split.min(rest.len()));
                let (a, b) = (cstring(a), cstring(b));
                let mut ids = vec![0i32; capacity];
                let mut types = vec![0i32; capacity];
                let (mut len, mut trunc) = (0usize, 0usize);
                let s = q8bert_tokenize_ex(model, maybe(nulls & 2 == 0, a.as_ptr()), maybe(nulls & 4 == 0, b.as_ptr()), max_len, truncation, maybe_mut(nulls & 8 == 0, ids.as_mut_ptr()), maybe_mut(nulls & 16 == 0, types.as_mut_ptr()), capacity, maybe_mut(nulls & 32 == 0, &mut len), maybe_mut(nulls & 64 == 0, &mut trunc));
                check(s);
                if s == Status::Ok || s == Status::BufferTooSmall {
                    assert!(s != Status::Ok || len <= capacity);
                }
                let s = q8bert_tokenize(model, a.as_ptr(), null(), ids.as_mut_ptr(), null_mut(), capacity, &mut len);
                check(s);
            }
            3 => {
                // run_text: up to 4 texts, output capacity.
                let batch = inp.u8() as usize % 5;
                let out_len = inp.u8() as usize;
                let rest = inp.rest();
                let chunks: Vec<CString> = (0..2 * batch).map(|i| cstring(rest.get(i * rest.len() / (2 * batch).max(1)..).unwrap_or(&[]))).collect();
                let ptrs: Vec<*const c_char> = chunks.iter().map(|c| c.as_ptr()).collect();
                let mut out = vec![0f32; out_len];
                let (pa, pb) = ptrs.split_at(batch);
                let s = if nulls & 16 == 0 {
                    q8bert_run_text(model, maybe(nulls & 2 == 0, pa.as_ptr()), maybe(nulls & 4 == 0, pb.as_ptr()), batch, maybe_mut(nulls & 8 == 0, out.as_mut_ptr()), out_len)
                } else {
                    // With a prompt: a name and/or a text (both: INVALID_ARGUMENT), or neither.
                    let prompt = cstring(rest.get(..rest.len() / 3).unwrap_or(&[]));
                    let (name, text) = (maybe(nulls & 32 == 0, prompt.as_ptr()), maybe(nulls & 64 == 0, prompt.as_ptr()));
                    q8bert_run_text_prompt(model, name, text, maybe(nulls & 2 == 0, pa.as_ptr()), maybe(nulls & 4 == 0, pb.as_ptr()), batch, maybe_mut(nulls & 8 == 0, out.as_mut_ptr()), out_len)
                };
                check(s);
            }
            4 => {
                let batch = (inp.u32() as usize).saturating_mul(if inp.u8() & 1 != 0 { 1 << 40 } else { 1 });
                let seq_len = inp.u32() as usize;
                let mut len = 0usize;
                check(q8bert_output_len(model, batch, seq_len, maybe_mut(nulls & 2 == 0, &mut len)));
                check(q8bert_text_output_len(model, batch, maybe_mut(nulls & 4 == 0, &mut len)));
                let mut info = q8bert_info::default();
                check(q8bert_model_info(model, maybe_mut(nulls & 8 == 0, &mut info)));
                let _ = q8bert_label_name(model, batch);
                let _ = (q8bert_prompt_name(model, batch), q8bert_prompt_text(model, batch), q8bert_prompt_count(model), q8bert_default_prompt_name(model));
            }
            _ => {
                let v = inp.u32();
                assert!(!q8bert_status_string(v).is_null());
                assert!(!q8bert_kernel_name(v).is_null());
                assert!(!q8bert_version().is_null());
            }
        }
    }
});
