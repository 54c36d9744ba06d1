//! Shared helpers for the core's integration tests.
#![allow(dead_code, unreachable_pub)]

use arch_timer_virt::mock::{MockChipError, MockIrqChip, MockSoftTimers, MockTimerHw};
use arch_timer_virt::{IntId, Ticks, TimerCtl, VcpuTimer, VmTimer};
use mockall::Sequence;
use mockall::predicate::eq;

/// The usual virtual timer INTID, used for both guest and host here.
pub const VTIMER: IntId = IntId::VIRTUAL_TIMER;

/// A mock timer that accepts every write, with the counter at 0.
pub fn quiet_hw() -> MockTimerHw {
    quiet_hw_at(0)
}

/// A mock timer that accepts every write, with the counter at `now`.
pub fn quiet_hw_at(now: u64) -> MockTimerHw {
    let mut hw = MockTimerHw::new();
    hw.expect_physical_count().return_const(Ticks::new(now));
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

/// A behavioural fake of one CPU's timer registers: a counter the test
/// sets, the EL1 virtual and physical timers with ISTATUS derived from
/// their conditions, and FEAT_ECV's physical offset if `ecv`.
#[derive(Debug, Default)]
pub struct FakeCpu {
    pub now: u64,
    pub ctl: u64,
    pub cval: u64,
    pub cntvoff: u64,
    pub el1_physical_access: bool,
    pub pctl: u64,
    pub pcval: u64,
    pub ecv: bool,
    pub cntpoff: u64,
    /// `CNTHCTL_EL2.ECV`.
    pub ecv_enabled: bool,
}

impl FakeCpu {
    /// The EL1 physical timer's output line.
    pub fn ptimer_line(&self) -> bool {
        use arch_timer_virt::TimerHw;
        self.ptimer_ctl().output_asserted()
    }

    /// The EL1 virtual timer's output line.
    pub fn vtimer_line(&self) -> bool {
        use arch_timer_virt::TimerHw;
        self.vtimer_ctl().output_asserted()
    }

    /// The physical count the guest reads (`CNTPCT_EL0` at EL1).
    pub fn guest_physical_count(&self) -> u64 {
        let off = if self.ecv_enabled { self.cntpoff } else { 0 };
        self.now.wrapping_sub(off)
    }
}

impl arch_timer_virt::TimerHw for FakeCpu {
    fn physical_count(&self) -> Ticks {
        Ticks::new(self.now)
    }
    fn vtimer_ctl(&self) -> TimerCtl {
        let met = self.now.wrapping_sub(self.cntvoff) >= self.cval;
        TimerCtl::from_write(self.ctl).with_istatus(met)
    }
    fn set_vtimer_ctl(&mut self, ctl: TimerCtl) {
        self.ctl = ctl.writable().bits();
    }
    fn vtimer_cval(&self) -> Ticks {
        Ticks::new(self.cval)
    }
    fn set_vtimer_cval(&mut self, cval: Ticks) {
        self.cval = cval.get();
    }
    fn set_virtual_offset(&mut self, offset: Ticks) {
        self.cntvoff = offset.get();
    }
    fn barrier(&mut self) {}
    fn set_el1_physical_access(&mut self, allowed: bool) {
        self.el1_physical_access = allowed;
    }
    fn ptimer_ctl(&self) -> TimerCtl {
        let met = self.guest_physical_count() >= self.pcval;
        TimerCtl::from_write(self.pctl).with_istatus(met)
    }
    fn set_ptimer_ctl(&mut self, ctl: TimerCtl) {
        self.pctl = ctl.writable().bits();
    }
    fn ptimer_cval(&self) -> Ticks {
        Ticks::new(self.pcval)
    }
    fn set_ptimer_cval(&mut self, cval: Ticks) {
        self.pcval = cval.get();
    }
    fn has_physical_offset(&self) -> bool {
        self.ecv
    }
    fn set_physical_offset(&mut self, offset: Ticks) {
        assert!(self.ecv, "CNTPOFF_EL2 written without FEAT_ECV");
        self.cntpoff = offset.get();
        self.ecv_enabled = offset != Ticks::ZERO;
    }
}

/// A behavioural fake interrupt controller: line levels per virtual INTID
/// and the host PPI's active and masked state.
#[derive(Debug, Default)]
pub struct FakeChip {
    pub levels: std::collections::BTreeMap<u32, bool>,
    pub raised: u32,
    pub host_active: bool,
    pub host_masked: bool,
}

impl FakeChip {
    pub fn level(&self, intid: IntId) -> bool {
        self.levels.get(&intid.get()).copied().unwrap_or(false)
    }
}

impl arch_timer_virt::IrqChip for FakeChip {
    type Error = core::convert::Infallible;
    fn set_host_active(&mut self, _: IntId, active: bool) -> Result<(), Self::Error> {
        self.host_active = active;
        Ok(())
    }
    fn set_host_masked(&mut self, _: IntId, masked: bool) -> Result<(), Self::Error> {
        self.host_masked = masked;
        Ok(())
    }
    fn set_virtual_level(&mut self, intid: IntId, level: bool) -> Result<(), Self::Error> {
        if level {
            self.raised = self.raised.saturating_add(1);
        }
        self.levels.insert(intid.get(), level);
        Ok(())
    }
    fn virtual_active(&self, _: IntId) -> Result<bool, Self::Error> {
        Ok(false)
    }
    fn map_virtual(&mut self, _: IntId, _: IntId) -> Result<(), Self::Error> {
        Ok(())
    }
    fn unmap_virtual(&mut self, _: IntId) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// Soft timers that remember their deadlines.
#[derive(Debug, Default)]
pub struct FakeSoft {
    pub background: Option<Ticks>,
    pub physical: Option<Ticks>,
}

impl arch_timer_virt::SoftTimers for FakeSoft {
    fn arm(&mut self, timer: arch_timer_virt::SoftTimer, at: Ticks) {
        match timer {
            arch_timer_virt::SoftTimer::Background => self.background = Some(at),
            arch_timer_virt::SoftTimer::Physical => self.physical = Some(at),
        }
    }
    fn cancel(&mut self, timer: arch_timer_virt::SoftTimer) {
        match timer {
            arch_timer_virt::SoftTimer::Background => self.background = None,
            arch_timer_virt::SoftTimer::Physical => self.physical = None,
        }
    }
}

/// A mock chip that expects the forward of a fired timer, in order: the
/// PPI made active, then the line raised (which returns `raise`).
pub fn expect_forward(seq: &mut Sequence, raise: Result<(), MockChipError>) -> MockIrqChip {
    let mut chip = MockIrqChip::new();
    chip.expect_set_host_active()
        .with(eq(VTIMER), eq(true))
        .times(1)
        .in_sequence(seq)
        .returning(|_, _| Ok(()));
    chip.expect_set_virtual_level()
        .with(eq(VTIMER), eq(true))
        .times(1)
        .in_sequence(seq)
        .returning(move |_, _| raise);
    chip
}
