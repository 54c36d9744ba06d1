/work/main/examples/qemu-hypervisor/target/aarch64-unknown-none/release/deps/arm_pl011_uart-be2d0ec4483fd16b.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/arm-pl011-uart-0.5.1/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/arm-pl011-uart-0.5.1/src/../README.md

/work/main/examples/qemu-hypervisor/target/aarch64-unknown-none/release/deps/libarm_pl011_uart-be2d0ec4483fd16b.rlib: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/arm-pl011-uart-0.5.1/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/arm-pl011-uart-0.5.1/src/../README.md

/work/main/examples/qemu-hypervisor/target/aarch64-unknown-none/release/deps/libarm_pl011_uart-be2d0ec4483fd16b.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/arm-pl011-uart-0.5.1/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/arm-pl011-uart-0.5.1/src/../README.md

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/arm-pl011-uart-0.5.1/src/lib.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/arm-pl011-uart-0.5.1/src/../README.md:
