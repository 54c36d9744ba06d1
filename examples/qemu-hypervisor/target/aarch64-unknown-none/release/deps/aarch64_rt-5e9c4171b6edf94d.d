/work/main/examples/qemu-hypervisor/target/aarch64-unknown-none/release/deps/aarch64_rt-5e9c4171b6edf94d.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/aarch64-rt-0.4.3/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/aarch64-rt-0.4.3/src/entry.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/aarch64-rt-0.4.3/src/pagetable.rs

/work/main/examples/qemu-hypervisor/target/aarch64-unknown-none/release/deps/libaarch64_rt-5e9c4171b6edf94d.rlib: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/aarch64-rt-0.4.3/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/aarch64-rt-0.4.3/src/entry.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/aarch64-rt-0.4.3/src/pagetable.rs

/work/main/examples/qemu-hypervisor/target/aarch64-unknown-none/release/deps/libaarch64_rt-5e9c4171b6edf94d.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/aarch64-rt-0.4.3/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/aarch64-rt-0.4.3/src/entry.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/aarch64-rt-0.4.3/src/pagetable.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/aarch64-rt-0.4.3/src/lib.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/aarch64-rt-0.4.3/src/entry.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/aarch64-rt-0.4.3/src/pagetable.rs:
