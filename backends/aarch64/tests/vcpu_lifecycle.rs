//! `VcpuTimer` load/put of the core crate driving [`GenericTimer`] over
//! [`FakeRegisters`], in both host modes: the guest's timer state goes
//! through the right registers and `CNTHCTL_EL2` keeps its other bits.

use arch_timer_virt::mock::{MockIrqChip, MockSoftTimers};
use arch_timer_virt::{Forwarding, Ticks, TimerCtl, VcpuTimer, VmTimer};
use arch_timer_virt_aarch64::{FakeRegisters, GenericTimer, HostMode};

/// EVNTEN (bit 2), EVNTI = 3 (bits 7:4), ECV (bit 12): must survive.
const OTHER_CNTHCTL_BITS: u64 = (1 << 2) | (3 << 4) | (1 << 12);

fn chip() -> MockIrqChip {
    let mut chip = MockIrqChip::new();
    chip.expect_set_host_masked().returning(|_, _| Ok(()));
    chip.expect_set_host_active().returning(|_, _| Ok(()));
    chip
}

fn vm() -> VmTimer {
    let mut vm = VmTimer::new();
    assert!(vm.set_forwarding(Forwarding::Masking).is_ok());
    vm.set_counter_offset(Ticks::new(400));
    vm
}

fn lifecycle(mode: HostMode) {
    let access = mode.cnthctl_el1_physical_access();
    let mut regs = FakeRegisters::new(mode);
    regs.cntpct = 1_000;
    regs.cnthctl_el2 = OTHER_CNTHCTL_BITS | access;
    let mut hw = GenericTimer::detect(regs);
    let vm = vm();
    let mut chip = chip();
    let mut vcpu = VcpuTimer::new();

    assert!(vcpu.load(&vm, &mut hw, &mut chip).is_ok());
    let r = hw.registers();
    assert_eq!(r.cntvoff_el2, 400, "{mode}");
    assert_eq!(r.cnthctl_el2, OTHER_CNTHCTL_BITS, "{mode}: EL1 traps on");
    assert_eq!(r.isb_count, 1, "{mode}: barrier between CVAL and CTL");

    // The guest programs its own virtual timer while it runs.
    hw.registers_mut().el1_vtimer_cval = 1_500;
    hw.registers_mut().el1_vtimer_ctl = 1;

    assert!(vcpu.put(&mut hw, &mut MockSoftTimers::new()).is_ok());
    assert_eq!(vcpu.vtimer().cval(), Ticks::new(1_500), "{mode}");
    assert!(vcpu.vtimer().ctl().is_enabled(), "{mode}");
    let r = hw.registers();
    assert_eq!(r.el1_vtimer_ctl, 0, "{mode}: disabled once saved");
    assert_eq!(r.cntvoff_el2, 0, "{mode}: no vCPU offset left behind");
    assert_eq!(r.cnthctl_el2, OTHER_CNTHCTL_BITS | access, "{mode}");
    // Under VHE the EL2 virtual timer (CNTHV_*) was never touched.
    assert_eq!((r.el2_vtimer_ctl, r.el2_vtimer_cval), (0, 0), "{mode}");
    assert_eq!(r.undefined_accesses(), 0, "{mode}");

    // Load on another CPU: the saved state goes back on its hardware.
    let mut other = GenericTimer::detect(FakeRegisters::new(mode));
    assert!(vcpu.load(&vm, &mut other, &mut chip).is_ok());
    let r = other.registers();
    assert_eq!(r.el1_vtimer_cval, 1_500, "{mode}");
    assert_eq!(r.el1_vtimer_ctl, TimerCtl::ENABLE.bits(), "{mode}");
    assert_eq!((r.el2_vtimer_ctl, r.el2_vtimer_cval), (0, 0), "{mode}");
    assert_eq!(r.undefined_accesses(), 0, "{mode}");
}

#[test]
fn load_and_put_without_vhe() {
    lifecycle(HostMode::NonVhe);
}

#[test]
fn load_and_put_with_vhe() {
    lifecycle(HostMode::Vhe);
}
