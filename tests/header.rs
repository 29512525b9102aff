//! The checked-in C header is exactly what cbindgen generates from the code, and its version
//! macros match Cargo.toml. `Q8BERT_BLESS=1 cargo test --test header` rewrites the header.

use std::path::Path;

#[test]
fn checked_in_header_matches_cbindgen() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(root.join("cbindgen.toml")).unwrap();
    let bindings = cbindgen::Builder::new().with_crate(root).with_config(config).generate().expect("cbindgen failed");
    let mut fresh = Vec::new();
    bindings.write(&mut fresh);
    let path = root.join("include/q8bert.h");
    if std::env::var_os("Q8BERT_BLESS").is_some() {
        std::fs::write(&path, &fresh).unwrap();
    }
    let checked_in = std::fs::read(&path).unwrap_or_default();
    assert!(
        checked_in == fresh,
        "include/q8bert.h is stale: regenerate it with `Q8BERT_BLESS=1 cargo test --test header` and commit it"
    );
}

#[test]
fn version_macros_match_cargo_toml() {
    use q8bert::ffi::*;
    let parse = |s: &str| s.parse::<u32>().unwrap();
    assert_eq!(Q8BERT_VERSION_MAJOR, parse(env!("CARGO_PKG_VERSION_MAJOR")));
    assert_eq!(Q8BERT_VERSION_MINOR, parse(env!("CARGO_PKG_VERSION_MINOR")));
    assert_eq!(Q8BERT_VERSION_PATCH, parse(env!("CARGO_PKG_VERSION_PATCH")));
    assert_eq!(q8bert_version_number(), Q8BERT_VERSION_NUMBER);
    let v = unsafe { std::ffi::CStr::from_ptr(q8bert_version()) };
    assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
}

#[test]
fn c_library_crate_has_the_runtime_version() {
    // capi/ builds libq8bert.so / .a from this crate's `ffi` module; install.sh and the wheel
    // name the library after the runtime's version, so the two manifests must agree.
    let manifest = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("capi/Cargo.toml")).unwrap();
    let version = manifest.lines().find_map(|l| l.strip_prefix("version = ")).expect("capi/Cargo.toml has no version line");
    assert_eq!(version.trim_matches('"'), env!("CARGO_PKG_VERSION"), "capi/Cargo.toml version differs from the runtime's");
}
