/work/main/examples/qemu-hypervisor/target/aarch64-unknown-none/release/deps/qemu_hypervisor-1b99ede61419e6a2.d: examples/qemu-hypervisor/src/lib.rs examples/qemu-hypervisor/src/config.rs examples/qemu-hypervisor/src/../README.md

/work/main/examples/qemu-hypervisor/target/aarch64-unknown-none/release/deps/libqemu_hypervisor-1b99ede61419e6a2.rlib: examples/qemu-hypervisor/src/lib.rs examples/qemu-hypervisor/src/config.rs examples/qemu-hypervisor/src/../README.md

/work/main/examples/qemu-hypervisor/target/aarch64-unknown-none/release/deps/libqemu_hypervisor-1b99ede61419e6a2.rmeta: examples/qemu-hypervisor/src/lib.rs examples/qemu-hypervisor/src/config.rs examples/qemu-hypervisor/src/../README.md

examples/qemu-hypervisor/src/lib.rs:
examples/qemu-hypervisor/src/config.rs:
examples/qemu-hypervisor/src/../README.md:
