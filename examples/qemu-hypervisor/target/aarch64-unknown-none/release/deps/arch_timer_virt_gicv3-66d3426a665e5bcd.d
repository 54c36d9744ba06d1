/work/main/examples/qemu-hypervisor/target/aarch64-unknown-none/release/deps/arch_timer_virt_gicv3-66d3426a665e5bcd.d: backends/gicv3/src/lib.rs backends/gicv3/src/error.rs backends/gicv3/src/host.rs backends/gicv3/src/registers.rs backends/gicv3/src/sysreg.rs backends/gicv3/src/vgic.rs backends/gicv3/src/../README.md

/work/main/examples/qemu-hypervisor/target/aarch64-unknown-none/release/deps/libarch_timer_virt_gicv3-66d3426a665e5bcd.rlib: backends/gicv3/src/lib.rs backends/gicv3/src/error.rs backends/gicv3/src/host.rs backends/gicv3/src/registers.rs backends/gicv3/src/sysreg.rs backends/gicv3/src/vgic.rs backends/gicv3/src/../README.md

/work/main/examples/qemu-hypervisor/target/aarch64-unknown-none/release/deps/libarch_timer_virt_gicv3-66d3426a665e5bcd.rmeta: backends/gicv3/src/lib.rs backends/gicv3/src/error.rs backends/gicv3/src/host.rs backends/gicv3/src/registers.rs backends/gicv3/src/sysreg.rs backends/gicv3/src/vgic.rs backends/gicv3/src/../README.md

backends/gicv3/src/lib.rs:
backends/gicv3/src/error.rs:
backends/gicv3/src/host.rs:
backends/gicv3/src/registers.rs:
backends/gicv3/src/sysreg.rs:
backends/gicv3/src/vgic.rs:
backends/gicv3/src/../README.md:
