/work/main/examples/qemu-hypervisor/target/aarch64-unknown-none/release/deps/qemu_hypervisor-70aec6c41fa867e7.d: examples/qemu-hypervisor/src/main.rs examples/qemu-hypervisor/src/console.rs examples/qemu-hypervisor/src/cs.rs examples/qemu-hypervisor/src/el1.rs examples/qemu-hypervisor/src/el2.rs examples/qemu-hypervisor/src/exit.rs examples/qemu-hypervisor/src/gic.rs examples/qemu-hypervisor/src/guest.rs examples/qemu-hypervisor/src/hyp.rs examples/qemu-hypervisor/src/hypercall.rs examples/qemu-hypervisor/src/migrate.rs examples/qemu-hypervisor/src/stage2.rs examples/qemu-hypervisor/src/sysreg.rs examples/qemu-hypervisor/src/vectors.rs

/work/main/examples/qemu-hypervisor/target/aarch64-unknown-none/release/deps/qemu_hypervisor-70aec6c41fa867e7: examples/qemu-hypervisor/src/main.rs examples/qemu-hypervisor/src/console.rs examples/qemu-hypervisor/src/cs.rs examples/qemu-hypervisor/src/el1.rs examples/qemu-hypervisor/src/el2.rs examples/qemu-hypervisor/src/exit.rs examples/qemu-hypervisor/src/gic.rs examples/qemu-hypervisor/src/guest.rs examples/qemu-hypervisor/src/hyp.rs examples/qemu-hypervisor/src/hypercall.rs examples/qemu-hypervisor/src/migrate.rs examples/qemu-hypervisor/src/stage2.rs examples/qemu-hypervisor/src/sysreg.rs examples/qemu-hypervisor/src/vectors.rs

examples/qemu-hypervisor/src/main.rs:
examples/qemu-hypervisor/src/console.rs:
examples/qemu-hypervisor/src/cs.rs:
examples/qemu-hypervisor/src/el1.rs:
examples/qemu-hypervisor/src/el2.rs:
examples/qemu-hypervisor/src/exit.rs:
examples/qemu-hypervisor/src/gic.rs:
examples/qemu-hypervisor/src/guest.rs:
examples/qemu-hypervisor/src/hyp.rs:
examples/qemu-hypervisor/src/hypercall.rs:
examples/qemu-hypervisor/src/migrate.rs:
examples/qemu-hypervisor/src/stage2.rs:
examples/qemu-hypervisor/src/sysreg.rs:
examples/qemu-hypervisor/src/vectors.rs:
