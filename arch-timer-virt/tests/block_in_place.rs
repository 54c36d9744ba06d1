//! `block_in_place`: a WFI sleep with the vCPU loaded and its direct timers
//! left running, their PPIs waking the CPU; `put` turning it into an
//! ordinary block; the wake through `after_irq_exit` and `unblock`.

mod common;

use arch_timer_virt::mock::{MockChipError, MockIrqChip, MockSoftTimers, MockTimerHw};
use arch_timer_virt::{
    Error, Residency, SoftTimer, Ticks, TimerCtl, TimerId, TimerReg, VcpuTimer, VmTimer, Wakeup,
};
use common::{VTIMER, expect_forward, loaded_with, quiet_chip, quiet_hw, quiet_hw_at};
use mockall::Sequence;
use mockall::predicate::eq;

const FIRED: TimerCtl = TimerCtl::ENABLE.union(TimerCtl::ISTATUS);

/// A timer register mock on which the virtual timer reads `ctl` and `cval`
/// and the counter `now`, and nothing may be written.
fn reads(ctl: TimerCtl, cval: u64, now: u64) -> MockTimerHw {
    let mut hw = MockTimerHw::new();
    hw.expect_vtimer_ctl().times(1).return_const(ctl);
    hw.expect_vtimer_cval()
        .times(1)
        .return_const(Ticks::new(cval));
    hw.expect_physical_count().return_const(Ticks::new(now));
    hw
}

/// An interrupt controller on which the guest does not hold the virtual
/// timer's interrupt active (asked once), and nothing may be written.
fn inactive() -> MockIrqChip {
    let mut chip = MockIrqChip::new();
    chip.expect_virtual_active()
        .with(eq(VTIMER))
        .times(1)
        .returning(|_| Ok(false));
    chip
}

/// `before_entry` with mocks that allow no call: an entry with nothing to
/// do, or `Error::Blocked`.
fn entry_touching_nothing(timer: &mut VcpuTimer) -> Result<(), Error<MockChipError>> {
    timer.before_entry(
        &mut MockTimerHw::new(),
        &mut MockIrqChip::new(),
        &mut MockSoftTimers::new(),
    )
}

/// `unblock` with mocks that allow no call: nothing to restore, raise or
/// cancel.
fn unblock_touching_nothing(timer: &mut VcpuTimer) -> Result<(), Error<MockChipError>> {
    timer.unblock(
        &mut MockTimerHw::new(),
        &mut MockIrqChip::new(),
        &mut MockSoftTimers::new(),
    )
}

/// A loaded vCPU (its physical timer emulated and disabled) blocked in
/// place with its virtual timer armed at 100 at count 50.
fn blocked_in_place() -> (VmTimer, VcpuTimer) {
    let (vm, mut timer) = loaded_with(Ticks::ZERO);
    let wakeup = timer.block_in_place(
        &vm,
        &mut reads(TimerCtl::ENABLE, 100, 50),
        &mut inactive(),
        &mut MockSoftTimers::new(),
    );
    assert_eq!(wakeup, Wakeup::At(Ticks::new(100)));
    (vm, timer)
}

/// The timer stays on the hardware and enabled: CTL and CVAL are read, no
/// register is written, no soft timer armed (the PPI wakes the CPU); the
/// vCPU is blocked and cannot be entered.
#[test]
fn the_direct_timer_keeps_running_and_nothing_is_armed() {
    let (_vm, mut timer) = blocked_in_place();
    assert!(timer.is_blocked());
    assert!(timer.is_blocked_in_place());
    assert_eq!(entry_touching_nothing(&mut timer), Err(Error::Blocked));
}

/// A timer that has already fired: `Now`, as `block` says, and nothing
/// armed; the vCPU is blocked until `unblock`. With nothing forwarded at a
/// wake-up, `unblock` reads CTL and forwards it (PPI made active, then the
/// line raised): the PPI may not have reached the host yet, and the guest
/// must find the interrupt pending when it resumes.
#[test]
fn an_expired_timer_means_do_not_sleep_and_unblock_forwards_it() {
    let (vm, mut timer) = loaded_with(Ticks::ZERO);
    let wakeup = timer.block_in_place(
        &vm,
        &mut reads(FIRED, 10, 50),
        &mut inactive(),
        &mut MockSoftTimers::new(),
    );
    assert_eq!(wakeup, Wakeup::Now);
    assert!(timer.is_blocked_in_place());
    let mut hw = MockTimerHw::new();
    hw.expect_vtimer_ctl().times(1).return_const(FIRED);
    let mut chip = expect_forward(&mut Sequence::new(), Ok(()));
    assert_eq!(
        timer.unblock(&mut hw, &mut chip, &mut MockSoftTimers::new()),
        Ok(())
    );
    assert!(timer.vtimer().level());
    assert!(!timer.is_blocked());
    assert!(!timer.is_blocked_in_place());
    // Forwarded once: the next unblock or entry has nothing to do.
    assert_eq!(entry_touching_nothing(&mut timer), Ok(()));
}

/// Woken for another reason before the timer fires: `unblock` reads CTL,
/// finds the output not asserted, and touches nothing else (the timer runs
/// on, its PPI will exit the guest).
#[test]
fn unblock_before_the_timer_fires_only_reads_ctl() {
    let (_vm, mut timer) = blocked_in_place();
    let mut hw = MockTimerHw::new();
    hw.expect_vtimer_ctl()
        .times(1)
        .return_const(TimerCtl::ENABLE);
    assert_eq!(
        timer.unblock(&mut hw, &mut MockIrqChip::new(), &mut MockSoftTimers::new()),
        Ok(())
    );
    assert!(!timer.vtimer().level());
    assert_eq!(timer.vtimer().residency(), Residency::Hardware);
}

/// The counter has passed CVAL but CTL does not report the output asserted
/// yet (QEMU updates ISTATUS when its timer event runs, later under load):
/// the timer is due at the current count, not `Now`, since neither its PPI
/// nor the guest's read of CTL would show it yet; the PPI wakes the CPU.
/// Answering `Now` here made `unblock` forward an interrupt whose handler
/// read ISTATUS clear (an early interrupt in the guest's eyes).
#[test]
fn a_timer_past_cval_whose_output_is_not_asserted_yet_is_due_now_not_fired() {
    let (vm, mut timer) = loaded_with(Ticks::ZERO);
    let wakeup = timer.block_in_place(
        &vm,
        &mut reads(TimerCtl::ENABLE, 10, 50),
        &mut inactive(),
        &mut MockSoftTimers::new(),
    );
    assert_eq!(wakeup, Wakeup::At(Ticks::new(50)));
    assert!(timer.is_blocked_in_place());
    assert_eq!(timer.vtimer().residency(), Residency::Hardware);
}

/// The emulated physical timer is in memory: nothing but the background
/// timer can wake the vCPU for it, so it is armed, at the physical timer's
/// own expiry (later than the virtual timer's, which `Wakeup` reports).
#[test]
fn the_emulated_physical_timer_still_gets_the_background_timer() {
    let (vm, mut timer) = loaded_with(Ticks::ZERO);
    assert!(!timer.is_direct(TimerId::Physical));
    for (reg, value) in [(TimerReg::Cval, 300), (TimerReg::Ctl, 1)] {
        let result = timer.set_reg(
            &vm,
            &mut quiet_hw(),
            &mut quiet_chip(),
            TimerId::Physical,
            reg,
            value,
        );
        assert_eq!(result, Ok(()));
    }
    let mut soft = MockSoftTimers::new();
    soft.expect_arm()
        .with(eq(SoftTimer::Background), eq(Ticks::new(300)))
        .times(1)
        .return_const(());
    let wakeup = timer.block_in_place(
        &vm,
        &mut reads(TimerCtl::ENABLE, 100, 50),
        &mut inactive(),
        &mut soft,
    );
    assert_eq!(wakeup, Wakeup::At(Ticks::new(100)));
}

/// Scheduled away while blocked in place: `put` saves the timer and arms
/// the background timer at its expiry, as `block` would have; the vCPU
/// stays blocked, no longer in place.
#[test]
fn put_turns_it_into_a_saved_block_with_the_background_timer() {
    let (_vm, mut timer) = blocked_in_place();
    let mut seq = Sequence::new();
    let mut hw = MockTimerHw::new();
    hw.expect_set_el1_physical_access()
        .with(eq(true))
        .times(1)
        .in_sequence(&mut seq)
        .return_const(());
    hw.expect_vtimer_ctl()
        .times(1)
        .in_sequence(&mut seq)
        .return_const(TimerCtl::ENABLE);
    hw.expect_vtimer_cval()
        .times(1)
        .in_sequence(&mut seq)
        .return_const(Ticks::new(100));
    hw.expect_set_vtimer_ctl()
        .with(eq(TimerCtl::empty()))
        .times(1)
        .in_sequence(&mut seq)
        .return_const(());
    hw.expect_set_virtual_offset()
        .with(eq(Ticks::ZERO))
        .times(1)
        .in_sequence(&mut seq)
        .return_const(());
    hw.expect_physical_count()
        .times(1)
        .in_sequence(&mut seq)
        .return_const(Ticks::new(60));
    let mut soft = MockSoftTimers::new();
    soft.expect_arm()
        .with(eq(SoftTimer::Background), eq(Ticks::new(100)))
        .times(1)
        .return_const(());
    assert_eq!(timer.put(&mut hw, &mut soft), Ok(()));
    assert!(timer.is_blocked());
    assert!(!timer.is_blocked_in_place());
}

/// The timer fired between the block and the put: its PPI pended, but the
/// saved and disabled timer no longer signals it. The background timer is
/// armed at the current count, so it expires at once and the vCPU wakes.
#[test]
fn put_after_the_timer_fired_arms_the_background_timer_at_once() {
    let (_vm, mut timer) = blocked_in_place();
    let mut hw = quiet_hw_at_with(150, FIRED, 100);
    let mut soft = MockSoftTimers::new();
    soft.expect_arm()
        .with(eq(SoftTimer::Background), eq(Ticks::new(150)))
        .times(1)
        .return_const(());
    assert_eq!(timer.put(&mut hw, &mut soft), Ok(()));
    assert!(timer.is_blocked());
}

/// A mock timer that accepts every write, with the counter at `now` and
/// the virtual timer reading `ctl` and `cval`.
fn quiet_hw_at_with(now: u64, ctl: TimerCtl, cval: u64) -> MockTimerHw {
    let mut hw = common::quiet_hw_at(now);
    hw.expect_vtimer_ctl().return_const(ctl);
    hw.expect_vtimer_cval().return_const(Ticks::new(cval));
    hw
}

/// The CPU woke because the timer fired: `after_irq_exit` forwards it (PPI
/// made active, then the line raised) before the host acknowledges, and
/// `unblock` then has nothing to restore; the next entry is the guest's.
#[test]
fn the_wake_forwards_the_fired_timer_and_unblock_restores_nothing() {
    let (_vm, mut timer) = blocked_in_place();
    let mut chip = expect_forward(&mut Sequence::new(), Ok(()));
    let mut hw = MockTimerHw::new();
    hw.expect_vtimer_ctl().times(1).return_const(FIRED);
    let forwarded = timer.after_irq_exit(&mut hw, &mut chip, &mut MockSoftTimers::new());
    assert_eq!(forwarded.map(|f| f.contains(TimerId::Virtual)), Ok(true));
    assert_eq!(unblock_touching_nothing(&mut timer), Ok(()));
    assert!(!timer.is_blocked());
    assert!(timer.vtimer().level());
    assert_eq!(entry_touching_nothing(&mut timer), Ok(()));
}

/// Woken by something else (the timer not fired): nothing is forwarded,
/// the vCPU stays blocked in place, and it may sleep again.
#[test]
fn another_interrupt_forwards_nothing_and_the_vcpu_may_sleep_again() {
    let (vm, mut timer) = blocked_in_place();
    let mut hw = MockTimerHw::new();
    hw.expect_vtimer_ctl()
        .times(1)
        .return_const(TimerCtl::ENABLE);
    let forwarded =
        timer.after_irq_exit(&mut hw, &mut MockIrqChip::new(), &mut MockSoftTimers::new());
    assert!(forwarded.is_ok_and(|f| f.is_empty()));
    assert!(timer.is_blocked_in_place());
    let wakeup = timer.block_in_place(
        &vm,
        &mut reads(TimerCtl::ENABLE, 100, 70),
        &mut inactive(),
        &mut MockSoftTimers::new(),
    );
    assert_eq!(wakeup, Wakeup::At(Ticks::new(100)));
}

/// `block` on a vCPU blocked in place saves the timer and arms the
/// background timer: an ordinary block from then on.
#[test]
fn block_after_block_in_place_saves() {
    let (vm, mut timer) = blocked_in_place();
    let mut hw = quiet_hw_at_with(60, TimerCtl::ENABLE, 100);
    let mut soft = MockSoftTimers::new();
    soft.expect_arm()
        .with(eq(SoftTimer::Background), eq(Ticks::new(100)))
        .times(1)
        .return_const(());
    assert_eq!(
        timer.block(&vm, &mut hw, &mut soft),
        Wakeup::At(Ticks::new(100))
    );
    assert!(timer.is_blocked());
    assert!(!timer.is_blocked_in_place());
}

/// The guest still holds the virtual interrupt active (it waits inside its
/// handler): the PPI stays active until it deactivates, so it cannot wake
/// the CPU. The timer is saved (and disabled) and the background timer
/// covers it, as `block` does; so when the interrupt controller cannot
/// say.
#[test]
fn a_ppi_that_cannot_signal_gets_the_timer_saved_and_the_background_timer() {
    for answer in [Ok(true), Err(MockChipError)] {
        let (vm, mut timer) = loaded_with(Ticks::ZERO);
        let mut chip = MockIrqChip::new();
        chip.expect_virtual_active()
            .with(eq(VTIMER))
            .times(1)
            .returning(move |_| answer);
        let mut hw = quiet_hw_at_with(50, TimerCtl::ENABLE, 100);
        let mut soft = MockSoftTimers::new();
        soft.expect_arm()
            .with(eq(SoftTimer::Background), eq(Ticks::new(100)))
            .times(1)
            .return_const(());
        assert_eq!(
            timer.block_in_place(&vm, &mut hw, &mut chip, &mut soft),
            Wakeup::At(Ticks::new(100))
        );
        assert_eq!(timer.vtimer().residency(), Residency::Memory);
        assert!(timer.is_blocked_in_place());
    }
}

/// Not loaded: nothing runs on a CPU to leave running; `block` blocks it.
#[test]
fn a_vcpu_that_is_not_loaded_is_blocked_by_block() {
    let vm = VmTimer::new();
    let mut timer = VcpuTimer::new();
    for (reg, value) in [(TimerReg::Cval, 100), (TimerReg::Ctl, 1)] {
        let mut counter = MockTimerHw::new();
        counter.expect_physical_count().return_const(Ticks::new(40));
        let result = timer.set_reg(
            &vm,
            &mut counter,
            &mut MockIrqChip::new(),
            TimerId::Virtual,
            reg,
            value,
        );
        assert_eq!(result, Ok(()));
    }
    let mut hw = MockTimerHw::new();
    hw.expect_physical_count().return_const(Ticks::new(50));
    let mut soft = MockSoftTimers::new();
    soft.expect_arm()
        .with(eq(SoftTimer::Background), eq(Ticks::new(100)))
        .times(1)
        .return_const(());
    assert_eq!(
        timer.block_in_place(&vm, &mut hw, &mut MockIrqChip::new(), &mut soft),
        Wakeup::At(Ticks::new(100))
    );
    assert!(timer.is_blocked());
    assert!(!timer.is_blocked_in_place());
}

/// The exit lowered a cleared line but could not deactivate the withdrawn
/// interrupt's PPI: it is left to repair. The next entry deactivates it,
/// and a sleep in place before that saves the timer instead of trusting a
/// PPI that may still be active.
#[test]
fn a_ppi_the_exit_failed_to_deactivate_is_repaired_and_not_trusted() {
    let mut seq = Sequence::new();
    let (vm, mut timer) = common::raised(arch_timer_virt::Forwarding::Hardware);
    let mut chip = MockIrqChip::new();
    // The trait's default lowering: asked, then lowered; then the failed
    // deactivation of the interrupt withdrawn while pending.
    chip.expect_virtual_active()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| Ok(false));
    chip.expect_set_virtual_level()
        .with(eq(VTIMER), eq(false))
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _| Ok(()));
    chip.expect_set_host_active()
        .with(eq(VTIMER), eq(false))
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _| Err(MockChipError));
    let mut hw = MockTimerHw::new();
    hw.expect_vtimer_ctl()
        .times(1)
        .return_const(TimerCtl::ENABLE);
    assert_eq!(
        timer.after_exit(&mut hw, &mut chip, &mut MockSoftTimers::new()),
        Err(Error::IrqChip(MockChipError))
    );
    assert!(!timer.vtimer().level());

    // A WFI now: the PPI is not trusted (no question asked), the timer is
    // saved and the background timer armed.
    let mut hw = quiet_hw_at_with(50, TimerCtl::ENABLE, 100);
    let mut soft = MockSoftTimers::new();
    soft.expect_arm()
        .with(eq(SoftTimer::Background), eq(Ticks::new(100)))
        .times(1)
        .return_const(());
    assert_eq!(
        timer.block_in_place(&vm, &mut hw, &mut MockIrqChip::new(), &mut soft),
        Wakeup::At(Ticks::new(100))
    );
    assert_eq!(timer.vtimer().residency(), Residency::Memory);
    // The wake-up restores the timer and repairs the PPI: deactivated, the
    // guest holding nothing.
    let mut soft = MockSoftTimers::new();
    soft.expect_cancel().times(1).return_const(());
    let mut chip = MockIrqChip::new();
    chip.expect_virtual_active()
        .times(1)
        .returning(|_| Ok(false));
    chip.expect_set_host_active()
        .with(eq(VTIMER), eq(false))
        .times(1)
        .returning(|_, _| Ok(()));
    assert_eq!(
        timer.unblock(&mut quiet_hw_at(60), &mut chip, &mut soft),
        Ok(())
    );
    // Repaired: the entry has nothing to do.
    assert_eq!(entry_touching_nothing(&mut timer), Ok(()));
}

/// The same with `Forwarding::Masking`: the exit could not unmask the PPI
/// of the lowered line; the next entry unmasks it.
#[test]
fn a_ppi_the_exit_failed_to_unmask_is_repaired_before_the_next_entry() {
    let (_vm, mut timer) = common::raised(arch_timer_virt::Forwarding::Masking);
    let mut chip = MockIrqChip::new();
    chip.expect_set_host_masked()
        .with(eq(VTIMER), eq(false))
        .times(1)
        .returning(|_, _| Err(MockChipError));
    let mut hw = MockTimerHw::new();
    hw.expect_vtimer_ctl()
        .times(1)
        .return_const(TimerCtl::ENABLE);
    assert_eq!(
        timer.after_exit(&mut hw, &mut chip, &mut MockSoftTimers::new()),
        Err(Error::IrqChip(MockChipError))
    );
    assert!(!timer.vtimer().level());
    let mut seq = Sequence::new();
    let mut chip = MockIrqChip::new();
    chip.expect_set_host_active()
        .with(eq(VTIMER), eq(false))
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _| Ok(()));
    chip.expect_set_host_masked()
        .with(eq(VTIMER), eq(false))
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _| Ok(()));
    assert_eq!(
        timer.before_entry(
            &mut MockTimerHw::new(),
            &mut chip,
            &mut MockSoftTimers::new()
        ),
        Ok(())
    );
}
