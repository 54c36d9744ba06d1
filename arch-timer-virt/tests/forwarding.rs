//! Forwarding decisions in both modes, the quiet hot path (invariant 4),
//! host IRQs (spurious ones included), background wake-ups and reset.

mod common;

use arch_timer_virt::mock::{MockIrqChip, MockSoftTimers, MockTimerHw};
use arch_timer_virt::{
    Forwarding, HostIrq, SoftTimer, Ticks, TimerCtl, TimerLevels, VcpuTimer, VmTimer, Wakeup,
};
use common::{VTIMER, loaded_with, quiet_chip, quiet_hw, quiet_hw_at, quiet_soft, raised};
use mockall::Sequence;
use mockall::predicate::eq;

/// Invariant 4: with the line low, an entry/exit round trip touches no
/// timer register, no interrupt controller state and no soft timer (the
/// mocks have no expectations, so any call fails the test).
#[test]
fn round_trip_with_the_line_low_touches_nothing() {
    let (_vm, mut timer) = loaded_with(Ticks::ZERO);
    let mut hw = MockTimerHw::new();
    let mut chip = MockIrqChip::new();
    let mut soft = MockSoftTimers::new();
    for _ in 0..100 {
        assert_eq!(timer.before_entry(&mut hw, &mut chip, &mut soft), Ok(()));
        assert_eq!(timer.after_exit(&mut hw, &mut chip, &mut soft), Ok(()));
    }
}

/// Invariant 4 (at most CTL and CVAL): with the line high and the
/// condition still met, the exit reads CTL once (its ISTATUS tells) and
/// nothing else.
#[test]
fn round_trip_with_the_line_high_reads_ctl_only() {
    let (_vm, mut timer) = raised(Forwarding::Hardware);
    let mut hw = MockTimerHw::new();
    hw.expect_vtimer_ctl()
        .times(1)
        .return_const(TimerCtl::ENABLE | TimerCtl::ISTATUS);
    let mut chip = MockIrqChip::new();
    let mut soft = MockSoftTimers::new();
    assert_eq!(timer.before_entry(&mut hw, &mut chip, &mut soft), Ok(()));
    assert_eq!(timer.after_exit(&mut hw, &mut chip, &mut soft), Ok(()));
    assert!(timer.vtimer().level());
}

#[test]
fn host_irq_with_the_output_asserted_injects_and_leaves_the_host_irq_active() {
    let (_vm, mut timer) = loaded_with(Ticks::ZERO);
    let mut hw = MockTimerHw::new();
    hw.expect_vtimer_ctl()
        .times(1)
        .return_const(TimerCtl::ENABLE | TimerCtl::ISTATUS);
    let mut chip = MockIrqChip::new();
    chip.expect_set_virtual_level()
        .with(eq(VTIMER), eq(true))
        .times(1)
        .returning(|_, _| Ok(()));
    // No set_host_active: the interrupt stays active until the guest
    // deactivates the virtual one.
    assert_eq!(
        timer.handle_host_irq(&mut hw, &mut chip),
        Ok(HostIrq::Raised)
    );
    assert!(timer.vtimer().level());
}

/// The EL2 vector acknowledged the PPI at the exit, before `after_exit`;
/// the guest had moved CVAL ahead just before the exit, so `after_exit`
/// lowers the line and deactivates the PPI; the timer fires again before
/// the handler runs. The handler raises the line and makes the PPI active
/// again, as the acknowledge had left it, so the host does not take it a
/// second time while the guest has it pending. A handler that follows a
/// plain acknowledge (nothing released since the entry) writes no host
/// state.
#[test]
fn host_irq_after_a_release_in_the_same_exit_makes_the_ppi_active_again() {
    let (_vm, mut timer) = raised(Forwarding::Hardware);
    let mut seq = Sequence::new();
    let mut hw = MockTimerHw::new();
    // after_exit: the condition no longer holds.
    hw.expect_vtimer_ctl()
        .times(1)
        .in_sequence(&mut seq)
        .return_const(TimerCtl::ENABLE);
    // handle_host_irq: it holds again.
    hw.expect_vtimer_ctl()
        .times(1)
        .in_sequence(&mut seq)
        .return_const(TimerCtl::ENABLE | TimerCtl::ISTATUS);
    let mut chip = MockIrqChip::new();
    chip.expect_set_virtual_level()
        .with(eq(VTIMER), eq(false))
        .times(1)
        .returning(|_, _| Ok(()));
    chip.expect_virtual_active()
        .with(eq(VTIMER))
        .times(1)
        .returning(|_| Ok(false));
    chip.expect_set_host_active()
        .with(eq(VTIMER), eq(false))
        .times(1)
        .returning(|_, _| Ok(()));
    chip.expect_set_virtual_level()
        .with(eq(VTIMER), eq(true))
        .times(1)
        .returning(|_, _| Ok(()));
    chip.expect_set_host_active()
        .with(eq(VTIMER), eq(true))
        .times(1)
        .returning(|_, _| Ok(()));
    let mut soft = MockSoftTimers::new();
    assert_eq!(timer.after_exit(&mut hw, &mut chip, &mut soft), Ok(()));
    assert!(!timer.vtimer().level());
    assert_eq!(
        timer.handle_host_irq(&mut hw, &mut chip),
        Ok(HostIrq::Raised)
    );
    assert!(timer.vtimer().level());

    // The next entry starts afresh: a host IRQ after it writes no host
    // state (the mock has no expectation for it).
    let mut hw = MockTimerHw::new();
    hw.expect_vtimer_ctl()
        .times(1)
        .return_const(TimerCtl::ENABLE | TimerCtl::ISTATUS);
    let mut chip = MockIrqChip::new();
    chip.expect_set_virtual_level()
        .with(eq(VTIMER), eq(true))
        .times(1)
        .returning(|_, _| Ok(()));
    assert_eq!(timer.before_entry(&mut hw, &mut chip, &mut soft), Ok(()));
    assert_eq!(
        timer.handle_host_irq(&mut hw, &mut chip),
        Ok(HostIrq::Raised)
    );
}

/// The guest disabled or masked the timer while its interrupt was on the
/// way: nothing is injected, and the physical interrupt is deactivated so
/// the next expiry is not hidden behind it.
#[test]
fn spurious_host_irq_injects_nothing_and_deactivates() {
    for ctl in [
        TimerCtl::empty(),
        TimerCtl::ENABLE,
        TimerCtl::ENABLE | TimerCtl::IMASK | TimerCtl::ISTATUS,
        TimerCtl::ISTATUS,
    ] {
        let (_vm, mut timer) = loaded_with(Ticks::ZERO);
        let mut hw = MockTimerHw::new();
        hw.expect_vtimer_ctl().times(1).return_const(ctl);
        let mut chip = MockIrqChip::new();
        chip.expect_set_host_active()
            .with(eq(VTIMER), eq(false))
            .times(1)
            .returning(|_, _| Ok(()));
        assert_eq!(
            timer.handle_host_irq(&mut hw, &mut chip),
            Ok(HostIrq::Spurious),
            "{ctl:?}"
        );
        assert!(!timer.vtimer().level());
    }
}

/// The guest deactivated the interrupt, the timer fired again, and the
/// guest disabled it before the host looked: the stale line goes low and the
/// physical interrupt is deactivated at once, not at the next exit.
#[test]
fn spurious_host_irq_with_the_line_high_lowers_it_and_deactivates() {
    let (_vm, mut timer) = raised(Forwarding::Hardware);
    let mut seq = Sequence::new();
    let mut hw = MockTimerHw::new();
    hw.expect_vtimer_ctl()
        .times(1)
        .return_const(TimerCtl::empty());
    let mut chip = MockIrqChip::new();
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
        timer.handle_host_irq(&mut hw, &mut chip),
        Ok(HostIrq::Spurious)
    );
    assert!(!timer.vtimer().level());
}

/// A host IRQ while the vCPU is blocked (its timer saved, the hardware
/// disabled) reads no register: it is spurious.
#[test]
fn host_irq_while_blocked_is_spurious() {
    let (vm, mut timer) = loaded_with(Ticks::ZERO);
    let mut hw = quiet_hw_at(10);
    hw.expect_vtimer_ctl().return_const(TimerCtl::ENABLE);
    hw.expect_vtimer_cval().return_const(Ticks::new(1000));
    assert_eq!(
        timer.block(&vm, &mut hw, &mut quiet_soft()),
        Wakeup::At(Ticks::new(1000))
    );

    let mut untouched = MockTimerHw::new();
    let mut chip = MockIrqChip::new();
    chip.expect_set_host_active()
        .with(eq(VTIMER), eq(false))
        .times(1)
        .returning(|_, _| Ok(()));
    assert_eq!(
        timer.handle_host_irq(&mut untouched, &mut chip),
        Ok(HostIrq::Spurious)
    );
}

/// The line is high but the host took the PPI again: the guest deactivated
/// the interrupt with the condition still met, so it is pending again.
#[test]
fn host_irq_with_the_line_already_high_re_raises() {
    let (_vm, mut timer) = raised(Forwarding::Hardware);
    let mut hw = MockTimerHw::new();
    hw.expect_vtimer_ctl()
        .return_const(TimerCtl::ENABLE | TimerCtl::ISTATUS);
    let mut chip = MockIrqChip::new();
    chip.expect_set_virtual_level()
        .with(eq(VTIMER), eq(true))
        .times(1)
        .returning(|_, _| Ok(()));
    assert_eq!(
        timer.handle_host_irq(&mut hw, &mut chip),
        Ok(HostIrq::Raised)
    );
}

/// The guest moved CVAL forward: the exit asks the virtual interrupt's
/// state, lowers the line, then deactivates the physical interrupt. The
/// mock chip answers through `IrqChip::virtual_state`'s default, which
/// cannot tell a completed interrupt from a pending one and reports one
/// that is not active as pending: withdrawn, so no guest deactivation will
/// come.
#[test]
fn cleared_condition_lowers_the_line_then_deactivates() {
    let (_vm, mut timer) = raised(Forwarding::Hardware);
    let mut seq = Sequence::new();
    let mut hw = MockTimerHw::new();
    hw.expect_vtimer_ctl()
        .times(1)
        .in_sequence(&mut seq)
        .return_const(TimerCtl::ENABLE);
    let mut chip = MockIrqChip::new();
    chip.expect_virtual_active()
        .with(eq(VTIMER))
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
        timer.after_exit(&mut hw, &mut chip, &mut MockSoftTimers::new()),
        Ok(())
    );
    assert!(!timer.vtimer().level());
    // CVAL was not read: the timer stays on the hardware, and its memory
    // copy (documented as possibly stale there) is refreshed when saved.
}

/// The guest masked the timer while still handling the interrupt: the line
/// goes low, but the physical interrupt stays active for the guest's
/// deactivation to complete.
#[test]
fn cleared_condition_with_the_virtual_irq_active_does_not_deactivate() {
    let (_vm, mut timer) = raised(Forwarding::Hardware);
    let mut hw = MockTimerHw::new();
    hw.expect_vtimer_ctl()
        .return_const(TimerCtl::ENABLE | TimerCtl::IMASK | TimerCtl::ISTATUS);
    hw.expect_vtimer_cval().return_const(Ticks::new(5));
    let mut chip = MockIrqChip::new();
    chip.expect_set_virtual_level()
        .with(eq(VTIMER), eq(false))
        .times(1)
        .returning(|_, _| Ok(()));
    chip.expect_virtual_active().returning(|_| Ok(true));
    chip.expect_set_host_active().never();
    assert_eq!(
        timer.after_exit(&mut hw, &mut chip, &mut MockSoftTimers::new()),
        Ok(())
    );
    assert!(!timer.vtimer().level());
}

/// On load the line follows the saved timer, and the physical interrupt is
/// made active exactly when the line is high or the guest still has the
/// virtual interrupt active. A line that was high with the timer still
/// firing but the virtual interrupt no longer active (the guest deactivated
/// it without clearing the condition) is raised again: nothing is lost.
#[test]
fn load_brings_the_line_and_the_host_active_state_in_step() {
    // (saved timer fires, line high before, virtual active) ->
    // (virtual level call, host active)
    let cases = [
        ((false, false, false), (None, false)),
        ((false, false, true), (None, true)),
        ((false, true, false), (Some(false), false)),
        ((false, true, true), (Some(false), true)),
        ((true, false, false), (Some(true), true)),
        ((true, false, true), (Some(true), true)),
        ((true, true, false), (Some(true), true)),
        ((true, true, true), (None, true)),
    ];
    for ((fires, line_high, virtual_active), (level_call, expect_active)) in cases {
        let (vm, mut timer) = if line_high {
            raised(Forwarding::Hardware)
        } else {
            loaded_with(Ticks::ZERO)
        };
        let mut hw = quiet_hw_at(1);
        let saved_cval = if fires { 0 } else { 100 };
        hw.expect_vtimer_ctl().return_const(TimerCtl::ENABLE);
        hw.expect_vtimer_cval().return_const(Ticks::new(saved_cval));
        assert_eq!(timer.put(&mut hw, &mut quiet_soft()), Ok(()));

        let mut seq = Sequence::new();
        let mut chip = MockIrqChip::new();
        chip.expect_virtual_active()
            .returning(move |_| Ok(virtual_active));
        match level_call {
            Some(level) => {
                chip.expect_set_virtual_level()
                    .with(eq(VTIMER), eq(level))
                    .times(1)
                    .in_sequence(&mut seq)
                    .returning(|_, _| Ok(()));
            }
            None => {
                chip.expect_set_virtual_level().never();
            }
        }
        chip.expect_set_host_masked()
            .with(eq(VTIMER), eq(false))
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_, _| Ok(()));
        chip.expect_set_host_active()
            .with(eq(VTIMER), eq(expect_active))
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_, _| Ok(()));
        let case = (fires, line_high, virtual_active);
        assert_eq!(timer.load(&vm, &mut hw, &mut chip), Ok(()), "{case:?}");
        assert_eq!(timer.vtimer().level(), fires, "{case:?}");
    }
}

#[test]
fn masking_mode_masks_while_high_and_tells_the_vmm() {
    let mut vm = VmTimer::new();
    assert_eq!(vm.set_forwarding(Forwarding::Masking), Ok(()));
    let mut timer = VcpuTimer::new();

    // Load with the line low: inactive and unmasked, no mapping.
    let mut chip = MockIrqChip::new();
    chip.expect_set_host_active()
        .with(eq(VTIMER), eq(false))
        .times(1)
        .returning(|_, _| Ok(()));
    chip.expect_set_host_masked()
        .with(eq(VTIMER), eq(false))
        .times(1)
        .returning(|_, _| Ok(()));
    assert_eq!(timer.load(&vm, &mut quiet_hw(), &mut chip), Ok(()));
    assert!(!timer.should_notify_user());

    // Host IRQ: no injection; masked, then deactivated.
    let mut seq = Sequence::new();
    let mut hw = MockTimerHw::new();
    hw.expect_vtimer_ctl()
        .return_const(TimerCtl::ENABLE | TimerCtl::ISTATUS);
    let mut chip = MockIrqChip::new();
    chip.expect_set_host_masked()
        .with(eq(VTIMER), eq(true))
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _| Ok(()));
    chip.expect_set_host_active()
        .with(eq(VTIMER), eq(false))
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _| Ok(()));
    assert_eq!(
        timer.handle_host_irq(&mut hw, &mut chip),
        Ok(HostIrq::Raised)
    );
    assert!(timer.should_notify_user());
    let levels: TimerLevels = timer.take_user_levels();
    assert!(levels.virtual_timer);
    assert!(!levels.physical_timer);
    assert!(!timer.should_notify_user());

    // The guest cleared the condition: line low, PPI unmasked, VMM told.
    let mut hw = MockTimerHw::new();
    hw.expect_vtimer_ctl().return_const(TimerCtl::empty());
    hw.expect_vtimer_cval().return_const(Ticks::ZERO);
    let mut chip = MockIrqChip::new();
    chip.expect_set_host_masked()
        .with(eq(VTIMER), eq(false))
        .times(1)
        .returning(|_, _| Ok(()));
    assert_eq!(
        timer.after_exit(&mut hw, &mut chip, &mut MockSoftTimers::new()),
        Ok(())
    );
    assert!(timer.should_notify_user());
    assert_eq!(timer.take_user_levels(), TimerLevels::default());
}

#[test]
fn hardware_mode_never_asks_to_notify_the_vmm() {
    let (_vm, timer) = raised(Forwarding::Hardware);
    assert!(timer.vtimer().level());
    assert!(!timer.should_notify_user());
}

fn blocked_at(
    ctl: TimerCtl,
    cval: u64,
    offset: u64,
    now: u64,
) -> (Wakeup, VcpuTimer, Vec<(SoftTimer, Ticks)>) {
    let (vm, mut timer) = loaded_with(Ticks::new(offset));
    let mut hw = quiet_hw_at(now);
    hw.expect_vtimer_ctl().return_const(ctl);
    hw.expect_vtimer_cval().return_const(Ticks::new(cval));
    let armed = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = armed.clone();
    let mut soft = MockSoftTimers::new();
    soft.expect_arm().returning(move |t, at| {
        if let Ok(mut log) = log.lock() {
            log.push((t, at));
        }
    });
    soft.expect_cancel().return_const(());
    let wakeup = timer.block(&vm, &mut hw, &mut soft);
    let armed = armed.lock().map(|a| a.clone()).unwrap_or_default();
    (wakeup, timer, armed)
}

#[test]
fn block_arms_the_background_timer_at_the_physical_expiry() {
    // Virtual CVAL 500 with offset 1000 expires at physical 1500.
    let (wakeup, _timer, armed) = blocked_at(TimerCtl::ENABLE, 500, 1000, 1200);
    assert_eq!(wakeup, Wakeup::At(Ticks::new(1500)));
    assert_eq!(armed, vec![(SoftTimer::Background, Ticks::new(1500))]);
}

#[test]
fn block_arms_nothing_when_a_timer_already_expired_or_none_can_fire() {
    let (wakeup, _timer, armed) = blocked_at(TimerCtl::ENABLE, 500, 0, 500);
    assert_eq!(wakeup, Wakeup::Now);
    assert!(armed.is_empty());

    for ctl in [TimerCtl::empty(), TimerCtl::ENABLE | TimerCtl::IMASK] {
        let (wakeup, _, armed) = blocked_at(ctl, 500, 0, 100);
        assert_eq!(wakeup, Wakeup::Never);
        assert!(armed.is_empty());
    }
}

#[test]
fn cval_at_the_top_of_the_counter_blocks_without_overflow() {
    let (wakeup, _, _) = blocked_at(TimerCtl::ENABLE, u64::MAX, 0, 100);
    assert_eq!(wakeup, Wakeup::At(Ticks::MAX));
    // With an offset the deadline lies past the counter's range: saturated.
    let (wakeup, _, _) = blocked_at(TimerCtl::ENABLE, u64::MAX - 5, 1000, 2000);
    assert_eq!(wakeup, Wakeup::At(Ticks::MAX));
    // A counter that wrapped below the offset sees a huge virtual count: expired.
    let (wakeup, _, _) = blocked_at(TimerCtl::ENABLE, 1 << 63, 1000, 10);
    assert_eq!(wakeup, Wakeup::Now);
}

#[test]
fn reset_disables_lowers_and_releases() {
    let (_vm, mut timer) = raised(Forwarding::Hardware);
    let mut hw = MockTimerHw::new();
    hw.expect_set_vtimer_ctl()
        .with(eq(TimerCtl::empty()))
        .times(1)
        .return_const(());
    let mut chip = MockIrqChip::new();
    chip.expect_set_virtual_level()
        .with(eq(VTIMER), eq(false))
        .times(1)
        .returning(|_, _| Ok(()));
    chip.expect_virtual_active().returning(|_| Ok(false));
    chip.expect_set_host_active()
        .with(eq(VTIMER), eq(false))
        .times(1)
        .returning(|_, _| Ok(()));
    assert_eq!(
        timer.reset(&mut hw, &mut chip, &mut MockSoftTimers::new()),
        Ok(())
    );
    assert!(!timer.vtimer().level());
    assert_eq!(timer.vtimer().ctl(), TimerCtl::empty());
}

#[test]
fn a_failing_chip_during_host_irq_is_an_error_not_a_panic() {
    let (_vm, mut timer) = loaded_with(Ticks::ZERO);
    let mut hw = MockTimerHw::new();
    hw.expect_vtimer_ctl()
        .return_const(TimerCtl::ENABLE | TimerCtl::ISTATUS);
    let mut chip = quiet_chip();
    chip.checkpoint();
    chip.expect_set_virtual_level()
        .returning(|_, _| Err(arch_timer_virt::mock::MockChipError));
    // Nothing was injected: the PPI is released so that it signals again.
    chip.expect_set_host_active()
        .with(eq(VTIMER), eq(false))
        .times(1)
        .returning(|_, _| Ok(()));
    assert!(matches!(
        timer.handle_host_irq(&mut hw, &mut chip),
        Err(arch_timer_virt::Error::IrqChip(_))
    ));
    assert!(!timer.vtimer().level(), "the level the chip refused");
}

/// With `Forwarding::Masking`, a timer that expired while the vCPU was
/// scheduled out is raised at `load` (the VMM is told, nothing is injected
/// through the vGIC) and the host PPI is masked, not active; a timer that
/// expired during a sleep is raised the same way at `unblock`; `put` and
/// `load` with the line low leave the PPI unmasked and inactive.
#[test]
fn masking_mode_load_and_unblock_raise_for_the_vmm_and_mask_the_ppi() {
    use common::{FakeChip, FakeCpu, FakeSoft};

    let mut vm = VmTimer::new();
    assert_eq!(vm.set_forwarding(Forwarding::Masking), Ok(()));
    let mut timer = VcpuTimer::new();
    let mut cpu = FakeCpu {
        now: 1_000,
        ..FakeCpu::default()
    };
    let mut chip = FakeChip::default();
    let mut soft = FakeSoft::default();

    // Armed for 1,500, scheduled out; the deadline passes meanwhile.
    assert_eq!(timer.load(&vm, &mut cpu, &mut chip), Ok(()));
    assert!(!chip.host_masked && !chip.host_active);
    cpu.cval = 1_500;
    cpu.ctl = 1;
    assert_eq!(timer.put(&mut cpu, &mut soft), Ok(()));
    cpu.now = 2_000;
    assert_eq!(timer.load(&vm, &mut cpu, &mut chip), Ok(()));
    assert!(timer.levels().virtual_timer);
    assert!(timer.should_notify_user());
    assert!(chip.host_masked, "masked while the line is high");
    assert!(!chip.host_active);
    assert_eq!(chip.raised, 0, "the VMM injects, not the vGIC");
    assert!(timer.take_user_levels().virtual_timer);

    // The guest moves CVAL ahead: the line drops at the exit and the PPI is
    // unmasked again.
    cpu.cval = 10_000;
    assert_eq!(timer.after_exit(&mut cpu, &mut chip, &mut soft), Ok(()));
    assert!(!timer.levels().virtual_timer);
    assert!(!chip.host_masked);
    assert!(timer.should_notify_user());
    let _ = timer.take_user_levels();

    // It sleeps; the deadline passes; unblock raises and masks.
    assert_eq!(
        timer.block(&vm, &mut cpu, &mut soft),
        Wakeup::At(Ticks::new(10_000))
    );
    cpu.now = 10_500;
    assert_eq!(timer.unblock(&mut cpu, &mut chip, &mut soft), Ok(()));
    assert!(timer.levels().virtual_timer);
    assert!(timer.should_notify_user());
    assert!(chip.host_masked && !chip.host_active);
    assert_eq!(soft.background, None, "unblock cancels the wake-up");
    assert_eq!(chip.raised, 0);
}
