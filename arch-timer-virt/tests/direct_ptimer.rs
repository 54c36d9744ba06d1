//! The timer map: the physical timer direct (on the hardware, forwarded
//! from its host PPI) or emulated, decided at load. The direct physical
//! timer checked for what the virtual timer has: lazy save/restore, a quiet
//! hot path, forwarding without storms, block/unblock, migration, the
//! register API and the Masking mode.

mod common;

use std::collections::BTreeMap;

use arch_timer_virt::mock::{MockIrqChip, MockSoftTimers, MockTimerHw};
use arch_timer_virt::{
    Forwarding, HostIrq, IntId, IrqChip, PhysTimerMode, Residency, Ticks, TimerCtl, TimerId,
    TimerMode, TimerReg, VcpuTimer, VirtualState, VmTimer, Wakeup,
};
use common::{FakeCpu, FakeSoft};
use mockall::Sequence;
use mockall::predicate::eq;

const PTIMER: IntId = IntId::PHYSICAL_TIMER;
const VTIMER: IntId = IntId::VIRTUAL_TIMER;

/// An interrupt controller fake that keeps per-INTID virtual line, pending
/// and active state, the HW mappings and each host PPI's active and
/// masked state, and counts every call.
#[derive(Debug, Default)]
struct Chip {
    line: BTreeMap<u32, bool>,
    /// Pending for the guest: raised, not yet acknowledged or withdrawn.
    pending: BTreeMap<u32, bool>,
    /// The guest has acknowledged (and not yet deactivated) it.
    active: BTreeMap<u32, bool>,
    mapped: BTreeMap<u32, u32>,
    host_active: BTreeMap<u32, bool>,
    host_masked: BTreeMap<u32, bool>,
    calls: u32,
}

impl Chip {
    fn line(&self, i: IntId) -> bool {
        self.line.get(&i.get()).copied().unwrap_or(false)
    }
    fn host_active(&self, i: IntId) -> bool {
        self.host_active.get(&i.get()).copied().unwrap_or(false)
    }
    fn host_masked(&self, i: IntId) -> bool {
        self.host_masked.get(&i.get()).copied().unwrap_or(false)
    }
    /// The guest acknowledges `i`.
    fn guest_ack(&mut self, i: IntId) {
        self.pending.insert(i.get(), false);
        self.active.insert(i.get(), true);
    }
    /// The guest deactivates `i`: with the HW bit, the host PPI too.
    fn guest_deactivate(&mut self, i: IntId) {
        self.active.insert(i.get(), false);
        if let Some(&host) = self.mapped.get(&i.get()) {
            self.host_active.insert(host, false);
        }
    }
}

impl IrqChip for Chip {
    type Error = core::convert::Infallible;
    fn set_host_active(&mut self, ppi: IntId, active: bool) -> Result<(), Self::Error> {
        self.calls += 1;
        self.host_active.insert(ppi.get(), active);
        Ok(())
    }
    fn set_host_masked(&mut self, ppi: IntId, masked: bool) -> Result<(), Self::Error> {
        self.calls += 1;
        self.host_masked.insert(ppi.get(), masked);
        Ok(())
    }
    fn set_virtual_level(&mut self, intid: IntId, level: bool) -> Result<(), Self::Error> {
        self.calls += 1;
        self.line.insert(intid.get(), level);
        // Raising makes it pending unless the guest holds it active (HW:
        // the physical side signals again after the deactivation);
        // lowering withdraws a pending one.
        let active = self.virtual_active(intid)?;
        self.pending.insert(intid.get(), level && !active);
        Ok(())
    }
    fn virtual_active(&self, intid: IntId) -> Result<bool, Self::Error> {
        Ok(self.active.get(&intid.get()).copied().unwrap_or(false))
    }
    fn virtual_state(&self, intid: IntId) -> Result<VirtualState, Self::Error> {
        let pending = self.pending.get(&intid.get()).copied().unwrap_or(false);
        Ok(match (pending, self.virtual_active(intid)?) {
            (false, false) => VirtualState::Inactive,
            (true, false) => VirtualState::Pending,
            (false, true) => VirtualState::Active,
            (true, true) => VirtualState::PendingActive,
        })
    }
    fn map_virtual(&mut self, intid: IntId, host: IntId) -> Result<(), Self::Error> {
        self.calls += 1;
        self.mapped.insert(intid.get(), host.get());
        Ok(())
    }
    fn unmap_virtual(&mut self, intid: IntId) -> Result<(), Self::Error> {
        self.calls += 1;
        self.mapped.remove(&intid.get());
        Ok(())
    }
}

fn vm(mode: PhysTimerMode) -> VmTimer {
    let mut vm = VmTimer::new();
    vm.set_phys_timer_mode(mode).unwrap();
    vm
}

fn cpu(now: u64, ecv: bool) -> FakeCpu {
    FakeCpu {
        now,
        ecv,
        ..FakeCpu::default()
    }
}

/// A vCPU of an `Auto` VM loaded on `hw`.
fn loaded(vm: &VmTimer, hw: &mut FakeCpu, chip: &mut Chip) -> VcpuTimer {
    let mut t = VcpuTimer::new();
    t.load(vm, hw, chip).unwrap();
    t
}

/// The guest programs its (direct) physical timer on the hardware.
fn guest_arm_ptimer(hw: &mut FakeCpu, cval: u64) {
    hw.pcval = cval;
    hw.pctl = TimerCtl::ENABLE.bits();
}

#[test]
fn the_map_follows_the_vm_choice_the_offset_and_ecv() {
    let mut chip = Chip::default();
    // The default keeps today's behaviour: emulated, accesses trapped.
    let mut hw = cpu(0, true);
    let t = loaded(&VmTimer::new(), &mut hw, &mut chip);
    assert_eq!(t.timer_map().physical_timer, TimerMode::Emulated);
    assert_eq!(t.timer_map().virtual_timer, TimerMode::Direct);
    assert!(!hw.el1_physical_access);
    assert_eq!(t.timer_for_host_ppi(PTIMER), None);
    assert_eq!(t.timer_for_host_ppi(VTIMER), Some(TimerId::Virtual));

    // Auto with offset 0: direct, without ECV too.
    for ecv in [false, true] {
        let mut hw = cpu(0, ecv);
        let mut chip = Chip::default();
        let t = loaded(&vm(PhysTimerMode::Auto), &mut hw, &mut chip);
        assert!(t.is_direct(TimerId::Physical), "ecv={ecv}");
        assert!(hw.el1_physical_access, "direct: EL1 reaches CNTP_* itself");
        assert_eq!(t.timer_for_host_ppi(PTIMER), Some(TimerId::Physical));
        assert_eq!(chip.mapped.get(&30), Some(&30), "PPI 30 mapped (HW bit)");
        assert_eq!(t.ptimer().residency(), Residency::Hardware);
        assert!(!hw.ecv_enabled, "offset 0 leaves ECV off");
    }

    // Auto with a VM offset: emulated without ECV, direct with it.
    let mut with_offset = vm(PhysTimerMode::Auto);
    with_offset.set_counter_offset(Ticks::new(1000));
    let mut hw = cpu(5000, false);
    let t = loaded(&with_offset, &mut hw, &mut Chip::default());
    assert_eq!(t.timer_map().physical_timer, TimerMode::Emulated);
    assert!(!hw.el1_physical_access);
    assert_eq!(t.ptimer().residency(), Residency::Memory);

    let mut hw = cpu(5000, true);
    let mut t = loaded(&with_offset, &mut hw, &mut Chip::default());
    assert!(t.is_direct(TimerId::Physical));
    assert_eq!((hw.cntpoff, hw.ecv_enabled), (1000, true));
    assert_eq!(hw.guest_physical_count(), 4000);
    t.put(&mut hw, &mut FakeSoft::default()).unwrap();
    assert_eq!((hw.cntpoff, hw.ecv_enabled), (0, false), "put clears it");
    assert!(hw.el1_physical_access);

    // An explicit Emulated wins over ECV.
    let mut hw = cpu(0, true);
    let t = loaded(&vm(PhysTimerMode::Emulated), &mut hw, &mut Chip::default());
    assert!(!t.is_direct(TimerId::Physical));
}

/// load of a direct physical timer: the physical timer's CVAL, barrier
/// and CTL in that order, after the virtual timer's; CNTHCTL last.
#[test]
fn load_restores_the_physical_timer_cval_barrier_ctl() {
    let vm = vm(PhysTimerMode::Auto);
    let mut t = VcpuTimer::new();
    let mut soft = FakeSoft::default();
    let mut fake = cpu(0, false);
    let mut chip = Chip::default();
    t.load(&vm, &mut fake, &mut chip).unwrap();
    t.set_reg(
        &vm,
        &mut fake,
        &mut chip,
        TimerId::Physical,
        TimerReg::Cval,
        900,
    )
    .unwrap();
    t.set_reg(
        &vm,
        &mut fake,
        &mut chip,
        TimerId::Physical,
        TimerReg::Ctl,
        1,
    )
    .unwrap();
    t.put(&mut fake, &mut soft).unwrap();

    let mut seq = Sequence::new();
    let mut hw = MockTimerHw::new();
    hw.expect_has_physical_offset()
        .times(1)
        .in_sequence(&mut seq)
        .return_const(false);
    hw.expect_physical_count().return_const(Ticks::new(10));
    hw.expect_set_virtual_offset()
        .times(1)
        .in_sequence(&mut seq)
        .return_const(());
    hw.expect_set_vtimer_cval()
        .times(1)
        .in_sequence(&mut seq)
        .return_const(());
    hw.expect_barrier()
        .times(1)
        .in_sequence(&mut seq)
        .return_const(());
    hw.expect_set_vtimer_ctl()
        .times(1)
        .in_sequence(&mut seq)
        .return_const(());
    hw.expect_set_ptimer_cval()
        .with(eq(Ticks::new(900)))
        .times(1)
        .in_sequence(&mut seq)
        .return_const(());
    hw.expect_barrier()
        .times(1)
        .in_sequence(&mut seq)
        .return_const(());
    hw.expect_set_ptimer_ctl()
        .with(eq(TimerCtl::ENABLE))
        .times(1)
        .in_sequence(&mut seq)
        .return_const(());
    hw.expect_set_el1_physical_access()
        .with(eq(true))
        .times(1)
        .in_sequence(&mut seq)
        .return_const(());
    t.load(&vm, &mut hw, &mut Chip::default()).unwrap();
    assert_eq!(t.ptimer().residency(), Residency::Hardware);
}

/// Invariant 4 for the direct physical timer: with both lines low, entry
/// and exit touch no timer register at all (a strict mock with no
/// expectations panics on any call), and arm no soft timer.
#[test]
fn hot_path_is_quiet_with_both_lines_low() {
    let vm = vm(PhysTimerMode::Auto);
    let mut fake = cpu(0, false);
    let mut chip = Chip::default();
    let mut t = loaded(&vm, &mut fake, &mut chip);
    guest_arm_ptimer(&mut fake, 1_000_000);
    let mut hw = MockTimerHw::new();
    let mut soft = MockSoftTimers::new();
    let mut strict_chip = MockIrqChip::new();
    for _ in 0..3 {
        t.before_entry(&mut hw, &mut strict_chip, &mut soft)
            .unwrap();
        t.after_exit(&mut hw, &mut strict_chip, &mut soft).unwrap();
    }
}

/// With the physical line high, after_exit reads its CTL only.
#[test]
fn after_exit_with_the_physical_line_high_reads_ctl_only() {
    let vm = vm(PhysTimerMode::Auto);
    let mut fake = cpu(0, false);
    let mut chip = Chip::default();
    let mut t = loaded(&vm, &mut fake, &mut chip);
    guest_arm_ptimer(&mut fake, 100);
    fake.now = 150;
    assert_eq!(
        t.handle_timer_irq(TimerId::Physical, &mut fake, &mut chip)
            .unwrap(),
        HostIrq::Raised
    );
    chip.guest_ack(PTIMER);

    let mut hw = MockTimerHw::new();
    hw.expect_ptimer_ctl()
        .times(1)
        .return_const(TimerCtl::ENABLE | TimerCtl::ISTATUS);
    let mut strict_chip = MockIrqChip::new();
    t.after_exit(&mut hw, &mut strict_chip, &mut MockSoftTimers::new())
        .unwrap();
    assert!(t.ptimer().level());
}

/// The direct physical timer's interrupt: raised with the PPI left active,
/// no storm while the guest holds it, completed by the guest's
/// deactivation (HW bit), and the next expiry taken again.
#[test]
fn forwarding_raises_once_and_the_guest_deactivation_completes_it() {
    let vm = vm(PhysTimerMode::Auto);
    let mut hw = cpu(0, false);
    let mut chip = Chip::default();
    let mut soft = FakeSoft::default();
    let mut t = loaded(&vm, &mut hw, &mut chip);
    guest_arm_ptimer(&mut hw, 100);
    hw.now = 100;
    assert!(hw.ptimer_line());
    // The host acknowledged PPI 30 (active) and dropped priority.
    chip.host_active.insert(30, true);
    assert_eq!(t.timer_for_host_ppi(PTIMER), Some(TimerId::Physical));
    assert_eq!(
        t.handle_timer_irq(TimerId::Physical, &mut hw, &mut chip)
            .unwrap(),
        HostIrq::Raised
    );
    assert!(chip.line(PTIMER));
    assert!(chip.host_active(PTIMER), "left active: no storm");
    assert!(!chip.line(VTIMER), "the virtual timer is untouched");

    // The guest leaves its interrupt active across many exits: the PPI
    // stays active (no storm), the line stays high.
    chip.guest_ack(PTIMER);
    for _ in 0..5 {
        t.before_entry(&mut hw, &mut chip, &mut soft).unwrap();
        hw.now += 10;
        t.after_exit(&mut hw, &mut chip, &mut soft).unwrap();
        assert!(chip.host_active(PTIMER));
        assert!(t.ptimer().level());
    }
    // The guest re-arms its timer and deactivates: the GIC deactivates the
    // PPI (HW bit); the next exit lowers the line without touching it.
    guest_arm_ptimer(&mut hw, 1000);
    chip.guest_deactivate(PTIMER);
    assert!(!chip.host_active(PTIMER));
    t.after_exit(&mut hw, &mut chip, &mut soft).unwrap();
    assert!(!t.ptimer().level());
    assert!(!chip.line(PTIMER));
    // The next expiry is taken again.
    hw.now = 1000;
    chip.host_active.insert(30, true);
    assert_eq!(
        t.handle_timer_irq(TimerId::Physical, &mut hw, &mut chip)
            .unwrap(),
        HostIrq::Raised
    );
    assert!(soft.physical.is_none(), "no soft timer for a direct timer");
}

/// A loaded vCPU of an `Auto` VM whose direct physical timer fired at 5:
/// the host took PPI 30 (active) and raised the line.
fn ptimer_raised_at_5() -> (VcpuTimer, FakeCpu, Chip) {
    let vm = vm(PhysTimerMode::Auto);
    let mut hw = cpu(0, false);
    let mut chip = Chip::default();
    let mut t = loaded(&vm, &mut hw, &mut chip);
    guest_arm_ptimer(&mut hw, 5);
    hw.now = 5;
    chip.host_active.insert(30, true);
    assert_eq!(
        t.handle_timer_irq(TimerId::Physical, &mut hw, &mut chip)
            .unwrap(),
        HostIrq::Raised
    );
    (t, hw, chip)
}

/// The guest disables its timer without deactivating the interrupt it
/// never took: the next exit lowers the line and deactivates the PPI.
#[test]
fn a_cleared_condition_releases_the_physical_ppi() {
    let (mut t, mut hw, mut chip) = ptimer_raised_at_5();
    let mut soft = FakeSoft::default();
    hw.pctl = 0;
    t.after_exit(&mut hw, &mut chip, &mut soft).unwrap();
    assert!(!chip.line(PTIMER));
    assert!(!chip.host_active(PTIMER));
    // A late acknowledge of the old expiry is spurious.
    assert_eq!(
        t.handle_timer_irq(TimerId::Physical, &mut hw, &mut chip)
            .unwrap(),
        HostIrq::Spurious
    );
}

/// The guest took and completed the interrupt (the HW bit deactivated the
/// PPI), then disabled its timer: the next exit lowers the line and writes
/// nothing to the PPI, and the next expiry is taken and raised.
#[test]
fn a_cleared_condition_after_the_guest_completed_it_leaves_the_ppi_alone() {
    let (mut t, mut hw, mut chip) = ptimer_raised_at_5();
    let mut soft = FakeSoft::default();
    chip.guest_ack(PTIMER);
    chip.guest_deactivate(PTIMER);
    assert!(!chip.host_active(PTIMER), "completed through the HW bit");
    hw.pctl = 0;
    let before = chip.calls;
    t.after_exit(&mut hw, &mut chip, &mut soft).unwrap();
    assert!(!chip.line(PTIMER));
    assert_eq!(chip.calls, before + 1, "the lowering only, no PPI write");
    assert!(!chip.host_active(PTIMER));
    // The guest arms it again; the expiry is taken and raised.
    guest_arm_ptimer(&mut hw, 9);
    hw.now = 9;
    t.before_entry(&mut hw, &mut chip, &mut soft).unwrap();
    chip.host_active.insert(30, true);
    assert_eq!(
        t.handle_timer_irq(TimerId::Physical, &mut hw, &mut chip)
            .unwrap(),
        HostIrq::Raised
    );
    assert!(chip.line(PTIMER) && chip.host_active(PTIMER));
}

/// The emulated physical timer's host PPI (its hardware timer disabled)
/// is spurious: deactivated, nothing injected.
#[test]
fn the_physical_ppi_of_an_emulated_timer_is_spurious() {
    let mut hw = cpu(0, false);
    let mut chip = Chip::default();
    let mut t = loaded(&VmTimer::new(), &mut hw, &mut chip);
    chip.host_active.insert(30, true);
    assert_eq!(
        t.handle_timer_irq(TimerId::Physical, &mut hw, &mut chip)
            .unwrap(),
        HostIrq::Spurious
    );
    assert!(!chip.host_active(PTIMER));
    assert!(!chip.line(PTIMER));
}

/// Invariant 6 with both timers direct: block saves both (the hardware
/// timers disabled), arms the background timer at the earliest expiry,
/// and unblock after it restores both and raises the expired line.
#[test]
fn block_arms_the_earliest_of_both_and_unblock_raises_the_expired_one() {
    let vm = vm(PhysTimerMode::Auto);
    let mut hw = cpu(0, false);
    let mut chip = Chip::default();
    let mut soft = FakeSoft::default();
    let mut t = loaded(&vm, &mut hw, &mut chip);
    guest_arm_ptimer(&mut hw, 300);
    hw.cval = 500;
    hw.ctl = TimerCtl::ENABLE.bits();
    hw.now = 100;
    assert_eq!(
        t.block(&vm, &mut hw, &mut soft),
        Wakeup::At(Ticks::new(300))
    );
    assert_eq!(soft.background, Some(Ticks::new(300)));
    assert_eq!(t.ptimer().residency(), Residency::Memory);
    assert_eq!((hw.pctl, hw.ctl), (0, 0), "both hardware timers disabled");
    // Saved and disabled: neither PPI fires while asleep.
    hw.now = 300;
    assert!(!hw.ptimer_line());
    t.unblock(&mut hw, &mut chip, &mut soft).unwrap();
    assert_eq!(soft.background, None);
    assert!(chip.line(PTIMER), "raised at unblock");
    assert!(
        chip.host_active(PTIMER),
        "active until the guest deactivates"
    );
    assert!(!chip.line(VTIMER));
    assert_eq!(
        (hw.pcval, hw.pctl),
        (300, TimerCtl::ENABLE.bits()),
        "restored"
    );
    assert_eq!(t.ptimer().residency(), Residency::Hardware);
    // Only the physical timer fires: never a virtual wake-up here.
    assert_eq!(
        t.block(&vm, &mut hw, &mut soft),
        Wakeup::Now,
        "expired: do not sleep"
    );
}

/// Invariant 5: put on CPU A, load on CPU B (with ECV and a VM offset):
/// same CTL, CVAL and a continuous guest physical count; a pending expiry
/// still fires on B.
#[test]
fn migration_keeps_the_physical_timer_and_its_offset_count() {
    let mut vm = vm(PhysTimerMode::Auto);
    vm.set_counter_offset(Ticks::new(10_000));
    let mut a = cpu(50_000, true);
    let mut b = cpu(50_000, true);
    let mut chip = Chip::default();
    let mut soft = FakeSoft::default();
    let mut t = loaded(&vm, &mut a, &mut chip);
    assert_eq!(a.guest_physical_count(), 40_000);
    guest_arm_ptimer(&mut a, 40_500);
    t.put(&mut a, &mut soft).unwrap();
    assert_eq!((a.pctl, a.cntpoff, a.ecv_enabled), (0, 0, false));
    assert_eq!(
        t.get_reg(&vm, &a, TimerId::Physical, TimerReg::Cnt),
        40_000,
        "read while not loaded"
    );
    t.load(&vm, &mut b, &mut chip).unwrap();
    assert_eq!(b.guest_physical_count(), 40_000);
    assert_eq!((b.pcval, b.pctl), (40_500, TimerCtl::ENABLE.bits()));
    b.now = 50_499;
    assert!(!b.ptimer_line());
    b.now = 50_500;
    assert!(b.ptimer_line(), "fires at the guest's CVAL, offset applied");
    assert_eq!(
        t.handle_timer_irq(TimerId::Physical, &mut b, &mut chip)
            .unwrap(),
        HostIrq::Raised
    );
}

/// The register API has one meaning whichever mode: the same writes to a
/// direct and an emulated physical timer read back the same, and a direct
/// one's writes reach the hardware.
#[test]
fn registers_read_the_same_direct_or_emulated() {
    let mut readings = Vec::new();
    for mode in [PhysTimerMode::Auto, PhysTimerMode::Emulated] {
        let vm = vm(mode);
        let mut hw = cpu(1000, false);
        let mut chip = Chip::default();
        let mut t = loaded(&vm, &mut hw, &mut chip);
        let mut set = |t: &mut VcpuTimer, hw: &mut FakeCpu, reg, v| {
            t.set_reg(&vm, hw, &mut chip, TimerId::Physical, reg, v)
                .unwrap();
        };
        set(&mut t, &mut hw, TimerReg::Tval, 500);
        set(&mut t, &mut hw, TimerReg::Ctl, 0b111);
        if mode == PhysTimerMode::Auto {
            assert_eq!((hw.pcval, hw.pctl), (1500, 0b11), "on the hardware");
        }
        hw.now = 1600;
        let read = |reg| t.get_reg(&vm, &hw, TimerId::Physical, reg);
        readings.push([
            read(TimerReg::Ctl),
            read(TimerReg::Cval),
            read(TimerReg::Tval),
            read(TimerReg::Cnt),
        ]);
    }
    assert_eq!(readings[0], readings[1]);
    assert_eq!(
        readings[0],
        [0b111, 1500, u64::from((-100_i32).cast_unsigned()), 1600]
    );
}

/// A CNT write gives a direct physical timer a non-zero offset: applied
/// with CNTPOFF_EL2 on a CPU with ECV; without, the timer becomes emulated
/// at once (state kept, accesses trapped, PPI unmapped) and the next load
/// keeps it so.
#[test]
fn an_offset_the_cpu_cannot_apply_makes_the_timer_emulated() {
    let vm = vm(PhysTimerMode::Auto);
    for ecv in [true, false] {
        let mut hw = cpu(1000, ecv);
        let mut chip = Chip::default();
        let mut soft = FakeSoft::default();
        let mut t = loaded(&vm, &mut hw, &mut chip);
        guest_arm_ptimer(&mut hw, 1200);
        t.set_reg(
            &vm,
            &mut hw,
            &mut chip,
            TimerId::Physical,
            TimerReg::Cnt,
            400,
        )
        .unwrap();
        assert_eq!(
            t.get_reg(&vm, &hw, TimerId::Physical, TimerReg::Cnt),
            400,
            "ecv={ecv}"
        );
        assert_eq!(t.get_reg(&vm, &hw, TimerId::Physical, TimerReg::Cval), 1200);
        if ecv {
            assert!(t.is_direct(TimerId::Physical));
            assert_eq!((hw.cntpoff, hw.ecv_enabled), (600, true));
            assert_eq!(hw.guest_physical_count(), 400);
            assert_eq!(hw.pctl, TimerCtl::ENABLE.bits(), "restored");
        } else {
            assert!(!t.is_direct(TimerId::Physical));
            assert!(!hw.el1_physical_access, "trapped again");
            assert_eq!(hw.pctl, 0, "the hardware timer is left disabled");
            assert!(!chip.mapped.contains_key(&30));
            // Emulated from here: the soft timer takes over.
            t.before_entry(&mut hw, &mut chip, &mut soft).unwrap();
            assert_eq!(soft.physical, Some(Ticks::new(1800)));
            t.put(&mut hw, &mut soft).unwrap();
            t.load(&vm, &mut hw, &mut chip).unwrap();
            assert!(!t.is_direct(TimerId::Physical));
        }
    }
}

/// Masking mode: the direct physical timer's PPI is masked while its line
/// is high and unmasked once the guest clears the condition; the VMM is
/// told of both changes.
#[test]
fn masking_mode_masks_the_physical_ppi_while_the_line_is_high() {
    let mut vm = vm(PhysTimerMode::Auto);
    vm.set_forwarding(Forwarding::Masking).unwrap();
    let mut hw = cpu(0, false);
    let mut chip = Chip::default();
    let mut soft = FakeSoft::default();
    let mut t = loaded(&vm, &mut hw, &mut chip);
    assert!(chip.mapped.is_empty(), "no HW mapping in Masking mode");
    guest_arm_ptimer(&mut hw, 10);
    hw.now = 10;
    chip.host_active.insert(30, true);
    assert_eq!(
        t.handle_timer_irq(TimerId::Physical, &mut hw, &mut chip)
            .unwrap(),
        HostIrq::Raised
    );
    assert!(chip.host_masked(PTIMER));
    assert!(!chip.host_active(PTIMER));
    assert!(t.should_notify_user());
    assert!(t.take_user_levels().physical_timer);
    hw.pctl = 0;
    t.after_exit(&mut hw, &mut chip, &mut soft).unwrap();
    assert!(!chip.host_masked(PTIMER));
    assert!(t.should_notify_user());
    assert!(!t.take_user_levels().physical_timer);
}

/// reset disables the direct physical timer on the hardware and releases
/// its PPI.
#[test]
fn reset_disables_the_direct_physical_timer() {
    let vm = vm(PhysTimerMode::Auto);
    let mut hw = cpu(0, false);
    let mut chip = Chip::default();
    let mut soft = FakeSoft::default();
    let mut t = loaded(&vm, &mut hw, &mut chip);
    guest_arm_ptimer(&mut hw, 0);
    chip.host_active.insert(30, true);
    assert_eq!(
        t.handle_timer_irq(TimerId::Physical, &mut hw, &mut chip),
        Ok(HostIrq::Raised)
    );
    t.reset(&mut hw, &mut chip, &mut soft).unwrap();
    assert_eq!(hw.pctl, 0);
    assert!(!chip.line(PTIMER));
    assert!(!chip.host_active(PTIMER));
    assert_eq!(t.ptimer().ctl(), TimerCtl::empty());
}

/// A VM whose physical timer was direct and is loaded again with a
/// configuration that makes it emulated (here: an offset set while it was
/// scheduled out, no ECV) has its INTID unmapped.
#[test]
fn a_timer_that_becomes_emulated_at_load_is_unmapped() {
    let mut vm = vm(PhysTimerMode::Auto);
    let mut hw = cpu(0, false);
    let mut chip = Chip::default();
    let mut soft = FakeSoft::default();
    let mut t = loaded(&vm, &mut hw, &mut chip);
    assert!(chip.mapped.contains_key(&30));
    t.put(&mut hw, &mut soft).unwrap();
    vm.set_counter_offset(Ticks::new(7));
    t.load(&vm, &mut hw, &mut chip).unwrap();
    assert!(!t.is_direct(TimerId::Physical));
    assert!(!chip.mapped.contains_key(&30));
    assert!(
        chip.mapped.contains_key(&27),
        "the virtual timer keeps its map"
    );
}

/// The physical timer's host PPI is configurable and must differ from the
/// virtual timer's.
#[test]
fn host_ppis_are_configurable_and_distinct() {
    let mut vm = vm(PhysTimerMode::Auto);
    let p = IntId::ppi(29).unwrap();
    vm.set_host_ppis(VTIMER, p).unwrap();
    let mut hw = cpu(0, false);
    let mut chip = Chip::default();
    let t = loaded(&vm, &mut hw, &mut chip);
    assert_eq!(chip.mapped.get(&30), Some(&29));
    assert_eq!(t.timer_for_host_ppi(p), Some(TimerId::Physical));
    assert_eq!(t.timer_for_host_ppi(PTIMER), None);
}
