//! Gives the shared library a SONAME so programs linked against it record `libq8bert.so.<ABI>`
//! and keep working across compatible upgrades (the install step adds the symlinks).

/// Bumped only when the C ABI changes incompatibly (see docs/PACKAGING.md).
const ABI_VERSION: u32 = 0;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" || os == "android" || os.ends_with("bsd") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libq8bert.so.{ABI_VERSION}");
    }
}
