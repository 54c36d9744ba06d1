//! Links the bare-metal binary with aarch64-rt's `image.ld` and our `memory.ld`.

use std::env;

fn main() {
    println!("cargo:rerun-if-changed=memory.ld");
    println!("cargo:rerun-if-changed=build.rs");
    let target = env::var("TARGET").unwrap_or_default();
    if target == "aarch64-unknown-none" {
        let dir = env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
        println!("cargo:rustc-link-search={dir}");
        println!("cargo:rustc-link-arg-bins=-Timage.ld");
        println!("cargo:rustc-link-arg-bins=-Tmemory.ld");
    }
}
