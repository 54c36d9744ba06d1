//! Shared helpers for the core's integration tests.
#![allow(dead_code, unreachable_pub)]

use arch_timer_virt::mock::{MockIrqChip, MockSoftTimers, MockTimerHw};
use arch_timer_virt::{IntId, Ticks, TimerCtl, VcpuTimer, VmTimer};

/// The usual virtual timer INTID, used for both guest and host here.
pub const VTIMER: IntId = IntId::VIRTUAL_TIMER;

/// A mock timer that accepts every write and reads a disabled timer.
pub fn quiet_hw() -> MockTimerHw {
    let mut hw = MockTimerHw::new();
    hw.expect_set_virtual_offset().return_const(());
    hw.expect_set_vtimer_cval().return_const(());
    hw.expect_set_vtimer_ctl().return_const(());
    hw.expect_barrier().return_const(());
    hw.expect_set_el1_physical_access().return_const(());
    hw
}

/// A mock interrupt controller that accepts everything; nothing is active.
pub fn quiet_chip() -> MockIrqChip {
    let mut chip = MockIrqChip::new();
    chip.expect_map_virtual().returning(|_, _| Ok(()));
    chip.expect_unmap_virtual().returning(|_| Ok(()));
    chip.expect_virtual_active().returning(|_| Ok(false));
    chip.expect_set_host_active().returning(|_, _| Ok(()));
    chip.expect_set_host_masked().returning(|_, _| Ok(()));
    chip.expect_set_virtual_level().returning(|_, _| Ok(()));
    chip
}

/// Mock soft timers that accept everything.
pub fn quiet_soft() -> MockSoftTimers {
    let mut soft = MockSoftTimers::new();
    soft.expect_arm().return_const(());
    soft.expect_cancel().return_const(());
    soft
}

/// A VM with the given VM-wide counter offset and one of its vCPUs loaded.
pub fn loaded_with(offset: Ticks) -> (VmTimer, VcpuTimer) {
    let mut vm = VmTimer::new();
    vm.set_counter_offset(offset);
    let mut timer = VcpuTimer::new();
    if let Err(e) = timer.load(&vm, &mut quiet_hw(), &mut quiet_chip()) {
        panic!("load: {e:?}");
    }
    (vm, timer)
}

/// A loaded vCPU whose virtual line was raised by a host IRQ, with the
/// hardware reporting `ctl`/`cval`.
pub fn raised(forwarding: arch_timer_virt::Forwarding) -> (VmTimer, VcpuTimer) {
    let mut vm = VmTimer::new();
    if let Err(e) = vm.set_forwarding(forwarding) {
        panic!("{e:?}");
    }
    let mut timer = VcpuTimer::new();
    if let Err(e) = timer.load(&vm, &mut quiet_hw(), &mut quiet_chip()) {
        panic!("load: {e:?}");
    }
    let mut hw = MockTimerHw::new();
    hw.expect_vtimer_ctl()
        .return_const(TimerCtl::ENABLE | TimerCtl::ISTATUS);
    match timer.handle_host_irq(&mut hw, &mut quiet_chip()) {
        Ok(arch_timer_virt::HostIrq::Raised) => {}
        other => panic!("host irq: {other:?}"),
    }
    (vm, timer)
}
