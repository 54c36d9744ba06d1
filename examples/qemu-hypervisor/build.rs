//! Links the hypervisor with aarch64-rt's `image.ld` and our `memory.ld`,
//! and the sample external guest (`guest-hello`) with its own script at
//! 0x4800_0000.

use std::env;

fn main() {
    println!("cargo:rerun-if-changed=memory.ld");
    println!("cargo:rerun-if-changed=guest-hello/guest.ld");
    println!("cargo:rerun-if-changed=build.rs");
    let target = env::var("TARGET").unwrap_or_default();
    if target == "aarch64-unknown-none" {
        let dir = env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
        println!("cargo:rustc-link-search={dir}");
        println!("cargo:rustc-link-arg-bin=qemu-hypervisor=-Timage.ld");
        println!("cargo:rustc-link-arg-bin=qemu-hypervisor=-Tmemory.ld");
        // The ELF entry is the EL3 stage (src/el3.rs), which goes on to
        // aarch64-rt's `entry` (image.ld's ENTRY) at EL2.
        println!("cargo:rustc-link-arg-bin=qemu-hypervisor=--entry=el3_entry");
        println!("cargo:rustc-link-arg-bin=guest-hello=-T{dir}/guest-hello/guest.ld");
    }
}
