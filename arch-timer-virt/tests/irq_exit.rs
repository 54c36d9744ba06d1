//! `after_irq_exit`: at an exit taken by an IRQ, a direct timer that fired
//! is forwarded before the host acknowledges anything (its PPI made active
//! or masked, its line raised), and everything `after_exit` does still
//! happens.

mod common;

use arch_timer_virt::mock::{MockChipError, MockIrqChip, MockSoftTimers, MockTimerHw};
use arch_timer_virt::{Error, Forwarded, Forwarding, Ticks, TimerCtl, TimerId, VcpuTimer, VmTimer};
use common::{VTIMER, expect_forward, loaded_with, quiet_chip, quiet_hw, raised};
use mockall::Sequence;
use mockall::predicate::eq;

/// A timer register mock whose virtual timer reads `ctl`, once.
fn ctl_once(ctl: TimerCtl) -> MockTimerHw {
    let mut hw = MockTimerHw::new();
    hw.expect_vtimer_ctl().times(1).return_const(ctl);
    hw
}

const FIRED: TimerCtl = TimerCtl::ENABLE.union(TimerCtl::ISTATUS);

/// The line low and the timer fired: the PPI is made active first (so the
/// host's acknowledge finds nothing), then the line raised; the next entry
/// and exit are quiet again apart from the CTL read a high line costs.
#[test]
fn a_fired_timer_is_forwarded_with_its_ppi_made_active_first() {
    let (_vm, mut timer) = loaded_with(Ticks::ZERO);
    let mut chip = expect_forward(&mut Sequence::new(), Ok(()));
    let forwarded =
        timer.after_irq_exit(&mut ctl_once(FIRED), &mut chip, &mut MockSoftTimers::new());
    assert_eq!(forwarded.map(|f| f.contains(TimerId::Virtual)), Ok(true));
    assert_eq!(forwarded.map(|f| f.contains(TimerId::Physical)), Ok(false));
    assert!(timer.vtimer().level());
    // Entry: nothing to do.
    assert_eq!(
        timer.before_entry(
            &mut MockTimerHw::new(),
            &mut MockIrqChip::new(),
            &mut MockSoftTimers::new()
        ),
        Ok(())
    );
}

/// Nothing fired: one CTL read, no interrupt controller call, nothing
/// forwarded (an IRQ exit for another interrupt).
#[test]
fn an_irq_exit_with_nothing_fired_reads_ctl_only() {
    let (_vm, mut timer) = loaded_with(Ticks::ZERO);
    let forwarded = timer.after_irq_exit(
        &mut ctl_once(TimerCtl::ENABLE),
        &mut MockIrqChip::new(),
        &mut MockSoftTimers::new(),
    );
    assert_eq!(forwarded, Ok(Forwarded::default()));
    assert!(!timer.vtimer().level());
    assert!(forwarded.is_ok_and(Forwarded::is_empty));
}

/// The line already high and the timer still asserted: raised again only
/// for an interrupt the guest no longer holds. The mock answers
/// `virtual_state` through the trait's default, which reports one that is
/// not active as pending: nothing is written, and a PPI that is in fact
/// pending again is taken by the host and goes to `handle_timer_irq`.
#[test]
fn a_high_line_the_guest_may_still_hold_is_left_alone() {
    let (_vm, mut timer) = raised(Forwarding::Hardware);
    let mut chip = MockIrqChip::new();
    chip.expect_virtual_active()
        .with(eq(VTIMER))
        .times(1)
        .returning(|_| Ok(false));
    assert_eq!(
        timer.after_irq_exit(&mut ctl_once(FIRED), &mut chip, &mut MockSoftTimers::new()),
        Ok(Forwarded::default())
    );
    assert!(timer.vtimer().level());
}

/// The guest cleared the condition: the line is lowered (and the PPI
/// deactivated, the interrupt being withdrawn while pending), as
/// `after_exit` does; nothing is forwarded.
#[test]
fn a_cleared_condition_is_lowered_as_after_exit_does() {
    let (_vm, mut timer) = raised(Forwarding::Hardware);
    let mut seq = Sequence::new();
    let mut chip = MockIrqChip::new();
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
        .returning(|_, _| Ok(()));
    assert_eq!(
        timer.after_irq_exit(
            &mut ctl_once(TimerCtl::ENABLE),
            &mut chip,
            &mut MockSoftTimers::new()
        ),
        Ok(Forwarded::default())
    );
    assert!(!timer.vtimer().level());
}

/// With a VMM that owns the interrupt controller: the PPI is masked (not
/// made active: it was never acknowledged), the line reported; a high
/// line's PPI is masked already, so a second IRQ exit leaves it.
#[test]
fn masking_mode_masks_the_ppi_and_tells_the_vmm() {
    let mut vm = VmTimer::new();
    assert_eq!(vm.set_forwarding(Forwarding::Masking), Ok(()));
    let mut timer = VcpuTimer::new();
    assert_eq!(timer.load(&vm, &mut quiet_hw(), &mut quiet_chip()), Ok(()));
    let mut chip = MockIrqChip::new();
    chip.expect_set_host_masked()
        .with(eq(VTIMER), eq(true))
        .times(1)
        .returning(|_, _| Ok(()));
    let forwarded =
        timer.after_irq_exit(&mut ctl_once(FIRED), &mut chip, &mut MockSoftTimers::new());
    assert_eq!(forwarded.map(|f| f.contains(TimerId::Virtual)), Ok(true));
    assert!(timer.should_notify_user());
    assert!(timer.take_user_levels().virtual_timer);
    assert_eq!(
        timer.after_irq_exit(
            &mut ctl_once(FIRED),
            &mut MockIrqChip::new(),
            &mut MockSoftTimers::new()
        ),
        Ok(Forwarded::default())
    );
}

#[test]
fn an_irq_exit_of_a_vcpu_that_is_not_loaded_is_an_error() {
    let mut timer = VcpuTimer::new();
    assert_eq!(
        timer.after_irq_exit(
            &mut MockTimerHw::new(),
            &mut MockIrqChip::new(),
            &mut MockSoftTimers::new()
        ),
        Err(Error::NotLoaded)
    );
}

/// A chip on which the IRQ exit's forward fails at the raise (the PPI made
/// active first), then answers `virtual_active` with `held`.
fn raise_fails_then_asked(seq: &mut Sequence, held: bool) -> MockIrqChip {
    let mut chip = expect_forward(seq, Err(MockChipError));
    chip.expect_virtual_active()
        .times(1)
        .in_sequence(seq)
        .returning(move |_| Ok(held));
    chip
}

/// A failed activation injects nothing and leaves the PPI's state to be
/// written again before the next entry; a failed raise deactivates the
/// PPI again (the guest does not hold the last interrupt) so that it
/// signals and the host takes it.
#[test]
fn a_failing_chip_at_an_irq_exit_leaves_state_that_converges() {
    // The activation fails: line low, the next entry writes the PPI again.
    let (_vm, mut timer) = loaded_with(Ticks::ZERO);
    let mut chip = MockIrqChip::new();
    chip.expect_set_host_active()
        .with(eq(VTIMER), eq(true))
        .times(1)
        .returning(|_, _| Err(MockChipError));
    assert_eq!(
        timer.after_irq_exit(&mut ctl_once(FIRED), &mut chip, &mut MockSoftTimers::new()),
        Err(Error::IrqChip(MockChipError))
    );
    assert!(!timer.vtimer().level());
    let mut chip = MockIrqChip::new();
    chip.expect_virtual_active()
        .times(1)
        .returning(|_| Ok(false));
    chip.expect_set_host_active()
        .with(eq(VTIMER), eq(false))
        .times(1)
        .returning(|_, _| Ok(()));
    assert_eq!(
        timer.before_entry(
            &mut MockTimerHw::new(),
            &mut chip,
            &mut MockSoftTimers::new()
        ),
        Ok(())
    );

    // The raise fails: the PPI is deactivated again, the line stays low.
    let (_vm, mut timer) = loaded_with(Ticks::ZERO);
    let mut seq = Sequence::new();
    let mut chip = raise_fails_then_asked(&mut seq, false);
    chip.expect_set_host_active()
        .with(eq(VTIMER), eq(false))
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _| Ok(()));
    assert_eq!(
        timer.after_irq_exit(&mut ctl_once(FIRED), &mut chip, &mut MockSoftTimers::new()),
        Err(Error::IrqChip(MockChipError))
    );
    assert!(!timer.vtimer().level());
}

/// Found by the model once it failed exits: the guest still holds the last
/// timer interrupt active (the PPI active with it, through the HW bit)
/// while its line is low (lowered when the vCPU was put), the timer fires
/// again, and the raise at the IRQ exit fails. Deactivating the PPI then
/// would let it signal while the guest holds the interrupt: it is left to
/// the guest's deactivation.
#[test]
fn a_failed_raise_at_an_irq_exit_leaves_a_ppi_the_guest_holds() {
    let (_vm, mut timer) = loaded_with(Ticks::ZERO);
    let mut chip = raise_fails_then_asked(&mut Sequence::new(), true);
    chip.expect_set_host_active().never();
    assert_eq!(
        timer.after_irq_exit(&mut ctl_once(FIRED), &mut chip, &mut MockSoftTimers::new()),
        Err(Error::IrqChip(MockChipError))
    );
    assert!(!timer.vtimer().level());
}
