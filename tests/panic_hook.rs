//! A panic inside a C entry point becomes Q8BERT_STATUS_PANIC with a message, and the library
//! keeps working. Needs the test-only fault injection: `cargo test --features test-hooks`.

mod common;

use std::ffi::CStr;
use std::ptr::null;

use common::{tiny_config, Aligned, FpModel};
use q8bert::builder::Head;
use q8bert::ffi::*;
use q8bert::Status;

#[test]
fn injected_panic_is_reported_and_the_next_call_works() {
    let buf = Aligned::new(&FpModel::random(tiny_config(), Head::Regression, 1).bytes());
    let mut model = std::ptr::null_mut();
    unsafe {
        assert_eq!(q8bert_create_from_memory(buf.bytes().as_ptr(), buf.bytes().len(), null(), &mut model), Status::Ok);
        let ids = [2, 7, 9, 3];
        let mut out = [0f32; 1];
        assert_eq!(q8bert_run(model, ids.as_ptr(), null(), null(), 1, 4, out.as_mut_ptr(), 1), Status::Ok);
        let reference = out[0];

        test_hooks::panic_next_call();
        out[0] = f32::NAN;
        let s = q8bert_run(model, ids.as_ptr(), null(), null(), 1, 4, out.as_mut_ptr(), 1);
        assert_eq!(s, Status::Panic);
        assert_eq!(s as u32, 901);
        let msg = CStr::from_ptr(q8bert_last_error()).to_str().unwrap().to_string();
        assert!(msg.contains("panic") && msg.contains("test hook: injected panic"), "{msg}");
        assert!(out[0].is_nan(), "outputs are not written by a failed call");

        // The model and the library still work: same answer as before the panic.
        assert_eq!(q8bert_run(model, ids.as_ptr(), null(), null(), 1, 4, out.as_mut_ptr(), 1), Status::Ok);
        assert_eq!(out[0].to_bits(), reference.to_bits());

        // Also for a call that creates: a panic there leaves *model_out untouched.
        test_hooks::panic_next_call();
        let mut other = std::ptr::null_mut();
        assert_eq!(q8bert_create_from_memory(buf.bytes().as_ptr(), buf.bytes().len(), null(), &mut other), Status::Panic);
        assert!(other.is_null());
        assert_eq!(q8bert_create_from_memory(buf.bytes().as_ptr(), buf.bytes().len(), null(), &mut other), Status::Ok);
        q8bert_free(other);
        q8bert_free(model);
    }
}
