/work/main/examples/qemu-hypervisor/target/aarch64-unknown-none/release/deps/arch_timer_virt_aarch64-1b0c4636f0972651.d: backends/aarch64/src/lib.rs backends/aarch64/src/error.rs backends/aarch64/src/fake.rs backends/aarch64/src/registers.rs backends/aarch64/src/sysregs.rs backends/aarch64/src/timer.rs backends/aarch64/src/../README.md

/work/main/examples/qemu-hypervisor/target/aarch64-unknown-none/release/deps/libarch_timer_virt_aarch64-1b0c4636f0972651.rlib: backends/aarch64/src/lib.rs backends/aarch64/src/error.rs backends/aarch64/src/fake.rs backends/aarch64/src/registers.rs backends/aarch64/src/sysregs.rs backends/aarch64/src/timer.rs backends/aarch64/src/../README.md

/work/main/examples/qemu-hypervisor/target/aarch64-unknown-none/release/deps/libarch_timer_virt_aarch64-1b0c4636f0972651.rmeta: backends/aarch64/src/lib.rs backends/aarch64/src/error.rs backends/aarch64/src/fake.rs backends/aarch64/src/registers.rs backends/aarch64/src/sysregs.rs backends/aarch64/src/timer.rs backends/aarch64/src/../README.md

backends/aarch64/src/lib.rs:
backends/aarch64/src/error.rs:
backends/aarch64/src/fake.rs:
backends/aarch64/src/registers.rs:
backends/aarch64/src/sysregs.rs:
backends/aarch64/src/timer.rs:
backends/aarch64/src/../README.md:
