//! Links the check program as a static Linux executable: a fixed image
//! base in user space and `_start` as its entry (no dynamic section, no
//! interpreter: Linux maps its segments and jumps there).

use std::env;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if env::var("TARGET").unwrap_or_default() == "aarch64-unknown-none" {
        for arg in [
            "--image-base=0x400000",
            "--entry=_start",
            "-zmax-page-size=4096",
            "--gc-sections",
        ] {
            println!("cargo:rustc-link-arg-bin=linux-timer-check={arg}");
        }
    }
}
