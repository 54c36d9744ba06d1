/work/main/examples/qemu-hypervisor/target/aarch64-unknown-none/release/deps/arch_timer_virt-fcfd7ab541487736.d: arch-timer-virt/src/lib.rs arch-timer-virt/src/context.rs arch-timer-virt/src/ctl.rs arch-timer-virt/src/emulate.rs arch-timer-virt/src/error.rs arch-timer-virt/src/hw.rs arch-timer-virt/src/intid.rs arch-timer-virt/src/regs.rs arch-timer-virt/src/shared.rs arch-timer-virt/src/ticks.rs arch-timer-virt/src/vcpu.rs arch-timer-virt/src/vm.rs arch-timer-virt/src/../README.md

/work/main/examples/qemu-hypervisor/target/aarch64-unknown-none/release/deps/libarch_timer_virt-fcfd7ab541487736.rlib: arch-timer-virt/src/lib.rs arch-timer-virt/src/context.rs arch-timer-virt/src/ctl.rs arch-timer-virt/src/emulate.rs arch-timer-virt/src/error.rs arch-timer-virt/src/hw.rs arch-timer-virt/src/intid.rs arch-timer-virt/src/regs.rs arch-timer-virt/src/shared.rs arch-timer-virt/src/ticks.rs arch-timer-virt/src/vcpu.rs arch-timer-virt/src/vm.rs arch-timer-virt/src/../README.md

/work/main/examples/qemu-hypervisor/target/aarch64-unknown-none/release/deps/libarch_timer_virt-fcfd7ab541487736.rmeta: arch-timer-virt/src/lib.rs arch-timer-virt/src/context.rs arch-timer-virt/src/ctl.rs arch-timer-virt/src/emulate.rs arch-timer-virt/src/error.rs arch-timer-virt/src/hw.rs arch-timer-virt/src/intid.rs arch-timer-virt/src/regs.rs arch-timer-virt/src/shared.rs arch-timer-virt/src/ticks.rs arch-timer-virt/src/vcpu.rs arch-timer-virt/src/vm.rs arch-timer-virt/src/../README.md

arch-timer-virt/src/lib.rs:
arch-timer-virt/src/context.rs:
arch-timer-virt/src/ctl.rs:
arch-timer-virt/src/emulate.rs:
arch-timer-virt/src/error.rs:
arch-timer-virt/src/hw.rs:
arch-timer-virt/src/intid.rs:
arch-timer-virt/src/regs.rs:
arch-timer-virt/src/shared.rs:
arch-timer-virt/src/ticks.rs:
arch-timer-virt/src/vcpu.rs:
arch-timer-virt/src/vm.rs:
arch-timer-virt/src/../README.md:
