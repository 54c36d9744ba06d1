//! Regression tests for the bugs and gaps an independent audit found
//! (issue 13): the VM-wide counter offset reaching a loaded vCPU through a
//! physical timer register write, `block` of an unloaded vCPU after an
//! offset change, `reset` inside the guest's handler, `before_entry` on a
//! blocked vCPU, and a transient interrupt controller error in
//! `handle_host_irq`.
//!
//! They run on behavioural fakes: `FakeCpu` for the timer registers, and
//! here a fake interrupt controller that keeps the host PPI's active and
//! masked state, the guest's virtual interrupt state, and can fail one
//! chosen call.

mod common;

use arch_timer_virt::emulate::{self, TimerSysReg};
use arch_timer_virt::{
    Error, Forwarding, HostIrq, IntId, IrqChip, Residency, Ticks, TimerId, TimerReg, VcpuTimer,
    VmTimer, Wakeup,
};
use common::{FakeCpu, FakeSoft, VTIMER};

/// The error the fake interrupt controller returns when told to fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Glitch;

impl core::fmt::Display for Glitch {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("transient interrupt controller error")
    }
}

/// An interrupt controller fake: the host PPI's state, the virtual lines,
/// whether the guest has the virtual timer interrupt active, and a one-shot
/// failure of the `fail_at`-th call from now (0 = the next one).
#[derive(Debug, Default)]
struct Chip {
    host_active: bool,
    host_masked: bool,
    levels: std::collections::BTreeMap<u32, bool>,
    guest_active: bool,
    fail_at: Option<u32>,
    calls: Vec<&'static str>,
}

impl Chip {
    fn level(&self, intid: IntId) -> bool {
        self.levels.get(&intid.get()).copied().unwrap_or(false)
    }

    fn call(&mut self, name: &'static str) -> Result<(), Glitch> {
        self.calls.push(name);
        match self.fail_at {
            Some(0) => {
                self.fail_at = None;
                Err(Glitch)
            }
            Some(n) => {
                self.fail_at = Some(n - 1);
                Ok(())
            }
            None => Ok(()),
        }
    }
}

impl IrqChip for Chip {
    type Error = Glitch;
    fn set_host_active(&mut self, _: IntId, active: bool) -> Result<(), Glitch> {
        self.call("set_host_active")?;
        self.host_active = active;
        Ok(())
    }
    fn set_host_masked(&mut self, _: IntId, masked: bool) -> Result<(), Glitch> {
        self.call("set_host_masked")?;
        self.host_masked = masked;
        Ok(())
    }
    fn set_virtual_level(&mut self, intid: IntId, level: bool) -> Result<(), Glitch> {
        self.call("set_virtual_level")?;
        self.levels.insert(intid.get(), level);
        Ok(())
    }
    fn virtual_active(&self, _: IntId) -> Result<bool, Glitch> {
        // A read: counted by neither the failure knob nor the call list.
        Ok(self.guest_active)
    }
    fn map_virtual(&mut self, _: IntId, _: IntId) -> Result<(), Glitch> {
        self.call("map_virtual")
    }
    fn unmap_virtual(&mut self, _: IntId) -> Result<(), Glitch> {
        self.call("unmap_virtual")
    }
}

/// A vCPU loaded at physical count `now` with `forwarding`, its virtual
/// timer armed to fire at the current virtual count, the PPI taken by the
/// host (active) and handled: the virtual line is high.
fn raised_at(now: u64, forwarding: Forwarding) -> (VmTimer, VcpuTimer, FakeCpu, Chip) {
    let mut vm = VmTimer::new();
    vm.set_forwarding(forwarding).unwrap();
    let mut timer = VcpuTimer::new();
    let mut cpu = FakeCpu {
        now,
        ..FakeCpu::default()
    };
    let mut chip = Chip::default();
    timer.load(&vm, &mut cpu, &mut chip).unwrap();
    // The guest writes CNTV_CVAL = its count and CNTV_CTL = ENABLE.
    cpu.cval = now;
    cpu.ctl = 1;
    // The host acknowledges the PPI.
    chip.host_active = true;
    assert_eq!(
        timer.handle_host_irq(&mut cpu, &mut chip),
        Ok(HostIrq::Raised)
    );
    (vm, timer, cpu, chip)
}

/// Issue 13, bug 1: a physical timer register write makes a loaded vCPU
/// take a new VM offset, which moves the virtual count behind CVAL; the
/// virtual line must come down with it (and the PPI be released), not stay
/// pending into the next entry. Failed before the fix: `set_reg` looked at
/// the named (physical) timer's line only, so the virtual line stayed high
/// with the virtual count at 999 and CVAL at 1000.
#[test]
fn offset_taken_by_a_physical_timer_write_lowers_the_virtual_line() {
    let (mut vm, mut timer, mut cpu, mut chip) = raised_at(1000, Forwarding::Hardware);
    assert!(chip.level(VTIMER));
    vm.set_counter_offset(Ticks::new(1));
    let ctl = timer.get_reg(&vm, &cpu, TimerId::Physical, TimerReg::Ctl);
    timer
        .set_reg(
            &vm,
            &mut cpu,
            &mut chip,
            TimerId::Physical,
            TimerReg::Ctl,
            ctl,
        )
        .unwrap();
    let mut soft = FakeSoft::default();
    timer.before_entry(&mut cpu, &mut chip, &mut soft).unwrap();
    assert_eq!(cpu.cntvoff, 1, "the new offset is on the hardware");
    assert!(
        !chip.level(VTIMER),
        "virtual count 999 < CVAL 1000, yet the virtual line is high"
    );
    assert!(!timer.vtimer().level());
    assert!(
        !chip.host_active,
        "the PPI is released so the real expiry is taken"
    );
}

/// The same through a trapped guest `CNTP_CTL_EL0` write.
#[test]
fn offset_taken_by_a_trapped_cntp_ctl_write_lowers_the_virtual_line() {
    let (mut vm, mut timer, mut cpu, mut chip) = raised_at(1000, Forwarding::Hardware);
    vm.set_counter_offset(Ticks::new(1));
    emulate::access(
        &mut timer,
        &vm,
        &mut cpu,
        &mut chip,
        TimerSysReg::PhysicalCtl,
        emulate::Access::Write(0),
    )
    .unwrap();
    assert_eq!(cpu.cntvoff, 1);
    assert!(!chip.level(VTIMER));
    assert!(!chip.host_active);
    // One tick later the virtual count reaches CVAL again: the hardware
    // raises the PPI by itself (the line is left to it).
    cpu.now += 1;
    chip.host_active = true;
    assert_eq!(
        timer.handle_host_irq(&mut cpu, &mut chip),
        Ok(HostIrq::Raised)
    );
    assert!(chip.level(VTIMER));
}

/// An offset that moves the virtual count *ahead* past CVAL on a physical
/// timer write: the line is left to the hardware PPI, which fires at once
/// (the library does not raise it early nor late).
#[test]
fn offset_moving_the_count_ahead_leaves_the_raise_to_the_ppi() {
    let mut vm = VmTimer::new();
    let mut timer = VcpuTimer::new();
    let mut cpu = FakeCpu {
        now: 1000,
        ..FakeCpu::default()
    };
    let mut chip = Chip::default();
    timer.load(&vm, &mut cpu, &mut chip).unwrap();
    cpu.cval = 1500;
    cpu.ctl = 1;
    vm.set_counter_offset(Ticks::new(0u64.wrapping_sub(600)));
    timer
        .set_reg(
            &vm,
            &mut cpu,
            &mut chip,
            TimerId::Physical,
            TimerReg::Cval,
            7,
        )
        .unwrap();
    // CNTVCT = 1000 + 600 >= CVAL: the hardware line is up.
    assert!(cpu.now.wrapping_sub(cpu.cntvoff) >= cpu.cval);
    assert!(!chip.host_active, "the PPI can be signalled");
    assert!(
        !chip.level(VTIMER),
        "raised by the host interrupt, not here"
    );
}

/// Issue 13, bug 2: `block` of an unloaded vCPU uses the VM-wide offset its
/// register reads already report. Failed before the fix: `block` returned
/// `At(12000)` (the stale per-vCPU offset), waking the vCPU 2000 ticks late.
#[test]
fn block_of_an_unloaded_vcpu_uses_the_vm_offset() {
    let mut vm = VmTimer::new();
    let mut timer = VcpuTimer::new();
    let mut cpu = FakeCpu {
        now: 10_000,
        ..FakeCpu::default()
    };
    let mut chip = Chip::default();
    let mut soft = FakeSoft::default();
    timer.load(&vm, &mut cpu, &mut chip).unwrap();
    cpu.cval = 12_000;
    cpu.ctl = 1;
    timer.put(&mut cpu, &mut soft).unwrap();
    vm.set_counter_offset(Ticks::new(0u64.wrapping_sub(5000)));
    let ctl = timer.get_reg(&vm, &cpu, TimerId::Virtual, TimerReg::Ctl);
    assert_eq!(ctl & 4, 4, "register reads report ISTATUS");
    assert_eq!(timer.block(&vm, &mut cpu, &mut soft), Wakeup::Now);
    assert_eq!(soft.background, None);
}

/// Issue 13, bug 2, second half: a background timer armed before an offset
/// change is re-armed by calling `block` again (documented on
/// `VmTimer::set_counter_offset`). Failed before the fix: the second
/// `block` armed the stale deadline again.
#[test]
fn block_again_after_an_offset_change_rearms_the_background_timer() {
    let mut vm = VmTimer::new();
    let mut timer = VcpuTimer::new();
    let mut cpu = FakeCpu {
        now: 10_000,
        ..FakeCpu::default()
    };
    let mut chip = Chip::default();
    let mut soft = FakeSoft::default();
    timer.load(&vm, &mut cpu, &mut chip).unwrap();
    cpu.cval = 12_000;
    cpu.ctl = 1;
    timer.put(&mut cpu, &mut soft).unwrap();
    assert_eq!(
        timer.block(&vm, &mut cpu, &mut soft),
        Wakeup::At(Ticks::new(12_000))
    );
    // The virtual count moves 1000 ahead: the expiry is 1000 earlier.
    vm.set_counter_offset(Ticks::new(0u64.wrapping_sub(1000)));
    assert_eq!(
        timer.block(&vm, &mut cpu, &mut soft),
        Wakeup::At(Ticks::new(11_000))
    );
    assert_eq!(soft.background, Some(Ticks::new(11_000)));
    // Loaded again, the vCPU runs with the offset its sleep used.
    timer.load(&vm, &mut cpu, &mut chip).unwrap();
    timer.unblock(&mut cpu, &mut chip, &mut soft).unwrap();
    assert_eq!(cpu.cntvoff, 0u64.wrapping_sub(1000));
}

/// Issue 13, gap 3: `reset` while the guest handles its timer interrupt
/// (the virtual interrupt active) deactivates the physical PPI, as KVM
/// does, so the reset guest's first expiry is taken. Failed before: the PPI
/// stayed active, held for a guest that no longer exists.
#[test]
fn reset_inside_the_handler_deactivates_the_ppi() {
    let (_vm, mut timer, mut cpu, mut chip) = raised_at(1000, Forwarding::Hardware);
    // The guest acknowledged the virtual interrupt and handles it.
    chip.guest_active = true;
    let mut soft = FakeSoft::default();
    timer.reset(&mut cpu, &mut chip, &mut soft).unwrap();
    assert!(!chip.level(VTIMER));
    assert!(!chip.host_active, "the PPI is left active after reset");
    assert_eq!(cpu.ctl, 0);
    // The reset guest arms its timer again: the expiry can be taken.
    cpu.ctl = 1;
    chip.guest_active = false;
    chip.host_active = true;
    assert_eq!(
        timer.handle_host_irq(&mut cpu, &mut chip),
        Ok(HostIrq::Raised)
    );
}

/// `reset` of an unloaded vCPU touches no host PPI (it is not this vCPU's
/// while it is not loaded); the next `load` programs it from the state.
#[test]
fn reset_of_an_unloaded_vcpu_leaves_the_ppi_to_load() {
    let (vm, mut timer, mut cpu, mut chip) = raised_at(1000, Forwarding::Hardware);
    let mut soft = FakeSoft::default();
    timer.put(&mut cpu, &mut soft).unwrap();
    chip.calls.clear();
    timer.reset(&mut cpu, &mut chip, &mut soft).unwrap();
    assert!(!chip.calls.contains(&"set_host_active"), "{:?}", chip.calls);
    timer.load(&vm, &mut cpu, &mut chip).unwrap();
    assert!(!chip.host_active);
    assert!(!chip.level(VTIMER));
}

/// Issue 13, gap 4: `before_entry` between `block` and `unblock` is a
/// wrong-state call (the virtual timer is saved and disabled on the
/// hardware), reported like the others. Failed before: it returned `Ok`.
#[test]
fn before_entry_on_a_blocked_vcpu_is_an_error() {
    let vm = VmTimer::new();
    let mut timer = VcpuTimer::new();
    let mut cpu = FakeCpu {
        now: 100,
        ..FakeCpu::default()
    };
    let mut chip = Chip::default();
    let mut soft = FakeSoft::default();
    timer.load(&vm, &mut cpu, &mut chip).unwrap();
    cpu.cval = 500;
    cpu.ctl = 1;
    assert_eq!(
        timer.block(&vm, &mut cpu, &mut soft),
        Wakeup::At(Ticks::new(500))
    );
    assert!(timer.is_blocked());
    assert_eq!(
        timer.before_entry(&mut cpu, &mut chip, &mut soft),
        Err(Error::Blocked)
    );
    assert_eq!(cpu.ctl, 0, "nothing restored");
    timer.unblock(&mut cpu, &mut chip, &mut soft).unwrap();
    assert!(!timer.is_blocked());
    assert_eq!(timer.before_entry(&mut cpu, &mut chip, &mut soft), Ok(()));
    assert_eq!(cpu.ctl, 1);
}

/// A blocked vCPU scheduled out and in again is still blocked until
/// `unblock` (the order `block, put, load, unblock`).
#[test]
fn blocked_survives_put_and_load() {
    let vm = VmTimer::new();
    let mut timer = VcpuTimer::new();
    let mut cpu = FakeCpu::default();
    let mut chip = Chip::default();
    let mut soft = FakeSoft::default();
    timer.load(&vm, &mut cpu, &mut chip).unwrap();
    assert_eq!(timer.block(&vm, &mut cpu, &mut soft), Wakeup::Never);
    timer.put(&mut cpu, &mut soft).unwrap();
    timer.load(&vm, &mut cpu, &mut chip).unwrap();
    assert_eq!(
        timer.before_entry(&mut cpu, &mut chip, &mut soft),
        Err(Error::Blocked)
    );
    timer.unblock(&mut cpu, &mut chip, &mut soft).unwrap();
    assert_eq!(timer.before_entry(&mut cpu, &mut chip, &mut soft), Ok(()));
}

/// Loads a vCPU at 1000 with its timer firing and the host having just
/// acknowledged the PPI; the `fail_at`-th chip call of the handler fails.
fn fired_with_glitch(forwarding: Forwarding, fail_at: u32) -> (VcpuTimer, FakeCpu, Chip) {
    let mut vm = VmTimer::new();
    vm.set_forwarding(forwarding).unwrap();
    let mut timer = VcpuTimer::new();
    let mut cpu = FakeCpu {
        now: 1000,
        ..FakeCpu::default()
    };
    let mut chip = Chip::default();
    timer.load(&vm, &mut cpu, &mut chip).unwrap();
    cpu.cval = 1000;
    cpu.ctl = 1;
    chip.host_active = true;
    chip.fail_at = Some(fail_at);
    chip.calls.clear();
    (timer, cpu, chip)
}

/// Issue 13, gap 5: the interrupt controller fails while the handler raises
/// the virtual line. The PPI must not stay active with nothing injected:
/// it is released, so the level-triggered PPI signals again and the next
/// `handle_host_irq` delivers. Failed before: the PPI stayed active, the
/// line was recorded high, and the interrupt was lost until the next load.
#[test]
fn failed_raise_in_the_handler_is_retried_by_the_next_host_irq() {
    let (mut timer, mut cpu, mut chip) = fired_with_glitch(Forwarding::Hardware, 0);
    assert_eq!(
        timer.handle_host_irq(&mut cpu, &mut chip),
        Err(Error::IrqChip(Glitch))
    );
    assert!(!chip.level(VTIMER));
    assert!(!timer.vtimer().level(), "recorded as the chip has it");
    assert!(!chip.host_active, "the PPI can signal again");
    // The host takes it again.
    chip.host_active = true;
    assert_eq!(
        timer.handle_host_irq(&mut cpu, &mut chip),
        Ok(HostIrq::Raised)
    );
    assert!(chip.level(VTIMER));
    assert!(chip.host_active, "held for the guest's deactivation");
}

/// The same with the VMM-owned interrupt controller: masking the PPI
/// fails; the PPI is released unmasked, the line not reported, and the
/// next host interrupt delivers.
#[test]
fn failed_mask_in_the_handler_is_retried_by_the_next_host_irq() {
    let (mut timer, mut cpu, mut chip) = fired_with_glitch(Forwarding::Masking, 0);
    assert!(timer.handle_host_irq(&mut cpu, &mut chip).is_err());
    assert!(!timer.vtimer().level());
    assert!(!timer.should_notify_user());
    assert!(!chip.host_active && !chip.host_masked);
    chip.host_active = true;
    assert_eq!(
        timer.handle_host_irq(&mut cpu, &mut chip),
        Ok(HostIrq::Raised)
    );
    assert!(timer.should_notify_user());
    assert!(!chip.host_active && chip.host_masked);
}

/// Found by the model in CI: the handler's raise fails on a line that was
/// already high (raised by `unblock` after the host acknowledged the PPI,
/// or before a guest completion the timer fired again after). The guest
/// may hold that interrupt pending, linked to the PPI, so the PPI must not
/// be released (it would signal while the guest has it). The next
/// `before_entry` asks where the interrupt stands (this chip answers as the
/// trait's default does: pending, not active), keeps the PPI active and
/// raises the line again, which injects the interrupt if the guest had
/// completed it and changes nothing if not.
#[test]
fn failed_raise_of_a_line_already_high_keeps_the_ppi_and_raises_again_at_entry() {
    let (_vm, mut timer, mut cpu, mut chip) = raised_at(1000, Forwarding::Hardware);
    chip.host_active = true;
    chip.fail_at = Some(0);
    chip.calls.clear();
    assert_eq!(
        timer.handle_host_irq(&mut cpu, &mut chip),
        Err(Error::IrqChip(Glitch))
    );
    assert!(
        chip.host_active,
        "released under a possibly pending interrupt"
    );
    assert!(timer.vtimer().level());
    chip.calls.clear();
    let mut soft = FakeSoft::default();
    timer.before_entry(&mut cpu, &mut chip, &mut soft).unwrap();
    assert_eq!(chip.calls, ["set_host_active", "set_virtual_level"]);
    assert!(chip.host_active && chip.level(VTIMER));
    chip.calls.clear();
    timer.before_entry(&mut cpu, &mut chip, &mut soft).unwrap();
    assert!(chip.calls.is_empty(), "repaired once");
}

/// Found by the model once `unblock` could fail: an interrupt controller
/// error while `unblock` raised a timer that fired during the sleep left
/// the timer saved and disabled, and the vCPU ran on unblocked with its
/// timer off the hardware (the guest's own timer writes then reached a
/// timer the library thought in memory). The timer is restored whatever
/// fails; the PPI, made active before the line rises, cannot signal under
/// a raised interrupt; the next `before_entry` releases it (nothing was
/// injected), it signals, and the host raises the line.
#[test]
fn failed_unblock_restores_the_timer_and_the_host_delivers() {
    for fail_at in 0..2 {
        let (vm, mut timer, mut cpu, mut chip) = raised_at(1000, Forwarding::Hardware);
        let mut soft = FakeSoft::default();
        // The guest completed that interrupt and arms its timer again.
        chip.levels.clear();
        chip.host_active = false;
        cpu.cval = 2000;
        timer.after_exit(&mut cpu, &mut chip, &mut soft).unwrap();
        assert!(matches!(
            timer.block(&vm, &mut cpu, &mut soft),
            Wakeup::At(_)
        ));
        assert_eq!(cpu.ctl, 0, "saved and disabled");
        cpu.now = 2000;
        chip.fail_at = Some(fail_at);
        chip.calls.clear();
        assert_eq!(
            timer.unblock(&mut cpu, &mut chip, &mut soft),
            Err(Error::IrqChip(Glitch)),
            "fail at {fail_at}"
        );
        assert!(!timer.is_blocked());
        assert_eq!((cpu.ctl & 1, cpu.cval), (1, 2000), "restored");
        assert_eq!(timer.vtimer().residency(), Residency::Hardware);
        assert!(!timer.vtimer().level(), "fail at {fail_at}: nothing raised");
        // The PPI was made active first (or that failed): it is released at
        // entry, signals, and the host delivers.
        timer.before_entry(&mut cpu, &mut chip, &mut soft).unwrap();
        assert!(!chip.host_active, "fail at {fail_at}");
        chip.host_active = true;
        assert_eq!(
            timer.handle_host_irq(&mut cpu, &mut chip),
            Ok(HostIrq::Raised)
        );
        assert!(chip.level(VTIMER) && chip.host_active);
    }
}

/// Masking succeeded, the deactivation failed: the line is up (the PPI is
/// masked, so no storm) and the next `before_entry` deactivates the PPI,
/// so that unmasking it later lets the next expiry through.
#[test]
fn failed_deactivation_after_masking_is_repaired_at_entry() {
    let (mut timer, mut cpu, mut chip) = fired_with_glitch(Forwarding::Masking, 1);
    assert!(timer.handle_host_irq(&mut cpu, &mut chip).is_err());
    assert!(timer.vtimer().level());
    assert!(chip.host_masked && chip.host_active);
    let mut soft = FakeSoft::default();
    timer.before_entry(&mut cpu, &mut chip, &mut soft).unwrap();
    assert!(chip.host_masked && !chip.host_active);
}

/// A spurious host interrupt whose deactivation fails: the next
/// `before_entry` deactivates the PPI, so the next expiry is taken.
#[test]
fn failed_deactivation_of_a_spurious_irq_is_repaired_at_entry() {
    for forwarding in [Forwarding::Hardware, Forwarding::Masking] {
        let (mut timer, mut cpu, mut chip) = fired_with_glitch(forwarding, 0);
        cpu.ctl = 0; // the guest disabled its timer in the meantime
        assert!(
            timer.handle_host_irq(&mut cpu, &mut chip).is_err(),
            "{forwarding:?}"
        );
        assert!(chip.host_active, "{forwarding:?}");
        let mut soft = FakeSoft::default();
        timer.before_entry(&mut cpu, &mut chip, &mut soft).unwrap();
        assert!(!chip.host_active, "{forwarding:?}: the PPI stays active");
        assert!(!chip.host_masked, "{forwarding:?}");
    }
}

/// Found by the model's chip fault histories: the guest cleared its
/// condition, `after_exit` lowered the line and deactivated the PPI, the
/// host acknowledged it afterwards (active again), the timer fired again,
/// and re-activating the PPI for the raise failed. Nothing was injected
/// and the PPI stayed active from the acknowledge: it must be released.
#[test]
fn failed_reactivation_in_the_handler_releases_the_ppi() {
    let (_vm, mut timer, mut cpu, mut chip) = raised_at(1000, Forwarding::Hardware);
    let mut soft = FakeSoft::default();
    // The guest moved CVAL ahead before the exit: the line goes low, the
    // PPI is deactivated.
    cpu.cval = 2000;
    timer.after_exit(&mut cpu, &mut chip, &mut soft).unwrap();
    assert!(!chip.level(VTIMER) && !chip.host_active);
    // The acknowledge of the interrupt signalled before, then the timer
    // fires again before the handler runs; the re-activation fails.
    chip.host_active = true;
    cpu.now = 2000;
    chip.fail_at = Some(0);
    assert!(timer.handle_host_irq(&mut cpu, &mut chip).is_err());
    assert!(!chip.level(VTIMER));
    assert!(!chip.host_active, "active with nothing injected");
    chip.host_active = true;
    assert_eq!(
        timer.handle_host_irq(&mut cpu, &mut chip),
        Ok(HostIrq::Raised)
    );
    assert!(chip.level(VTIMER) && chip.host_active);
}

/// Found by the model: after a failed deactivation of a spurious host
/// interrupt, a later host interrupt is handled successfully (the line is
/// raised, the PPI held active for the guest's deactivation). The repair
/// the error left due must not run any more: deactivating the PPI now
/// would let it signal again while the guest has the interrupt pending.
#[test]
fn a_successful_host_irq_supersedes_the_repair_an_error_left_due() {
    let (mut timer, mut cpu, mut chip) = fired_with_glitch(Forwarding::Hardware, 0);
    cpu.ctl = 0;
    assert!(timer.handle_host_irq(&mut cpu, &mut chip).is_err());
    // The guest enables its timer again; the PPI (still active from the
    // first acknowledge) is taken again after a deactivation elsewhere.
    cpu.ctl = 1;
    chip.host_active = true;
    assert_eq!(
        timer.handle_host_irq(&mut cpu, &mut chip),
        Ok(HostIrq::Raised)
    );
    let mut soft = FakeSoft::default();
    timer.before_entry(&mut cpu, &mut chip, &mut soft).unwrap();
    assert!(chip.level(VTIMER));
    assert!(chip.host_active, "released under a pending interrupt");
}
