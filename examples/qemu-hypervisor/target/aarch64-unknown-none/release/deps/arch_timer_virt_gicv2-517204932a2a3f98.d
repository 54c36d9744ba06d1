/work/main/examples/qemu-hypervisor/target/aarch64-unknown-none/release/deps/arch_timer_virt_gicv2-517204932a2a3f98.d: backends/gicv2/src/lib.rs backends/gicv2/src/error.rs backends/gicv2/src/host.rs backends/gicv2/src/registers.rs backends/gicv2/src/vgic.rs backends/gicv2/src/../README.md

/work/main/examples/qemu-hypervisor/target/aarch64-unknown-none/release/deps/libarch_timer_virt_gicv2-517204932a2a3f98.rlib: backends/gicv2/src/lib.rs backends/gicv2/src/error.rs backends/gicv2/src/host.rs backends/gicv2/src/registers.rs backends/gicv2/src/vgic.rs backends/gicv2/src/../README.md

/work/main/examples/qemu-hypervisor/target/aarch64-unknown-none/release/deps/libarch_timer_virt_gicv2-517204932a2a3f98.rmeta: backends/gicv2/src/lib.rs backends/gicv2/src/error.rs backends/gicv2/src/host.rs backends/gicv2/src/registers.rs backends/gicv2/src/vgic.rs backends/gicv2/src/../README.md

backends/gicv2/src/lib.rs:
backends/gicv2/src/error.rs:
backends/gicv2/src/host.rs:
backends/gicv2/src/registers.rs:
backends/gicv2/src/vgic.rs:
backends/gicv2/src/../README.md:
