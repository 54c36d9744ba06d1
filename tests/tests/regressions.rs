//! Shrunk failing histories found by the property tests, kept as tests.

use arch_timer_virt::{Forwarding, PhysTimerMode};
use arch_timer_virt_sim::{AckPoint, FaultSite, GuestOp, Handler, Hypervisor, Invariant, Step};

/// The counter frequency of the machines here (a common SoC crystal): the
/// histories are tick-exact and do not depend on it.
const FREQUENCY_HZ: u32 = 24_000_000;

fn guest(op: GuestOp) -> Step {
    Step::Guest { cpu: 0, op }
}

/// The guest takes its timer interrupt, re-arms the timer 1 tick ahead
/// and deactivates; the tick passes while it runs; the vCPU is put and
/// loaded again. The expiry must still reach the guest.
fn rearm_deactivate_reload() -> Vec<Step> {
    vec![
        Step::Load { vcpu: 0, cpu: 0 },
        Step::Enter { cpu: 0 },
        guest(GuestOp::SetCval { ahead: 0 }),
        guest(GuestOp::SetCtl(1)),
        Step::HostIrq { cpu: 0 },
        Step::Enter { cpu: 0 },
        guest(GuestOp::Acknowledge),
        guest(GuestOp::Handle(Handler::Rearm(1))),
        guest(GuestOp::Deactivate),
        Step::Advance(1),
        Step::Put { cpu: 0 },
        Step::Load { vcpu: 0, cpu: 0 },
        Step::Enter { cpu: 0 },
    ]
}

/// Runs `steps` on `hv`; the first broken invariant panics with `what`
/// and the step.
fn run_steps(hv: &mut Hypervisor, steps: &[Step], what: &str) {
    for &s in steps {
        hv.step(s).unwrap_or_else(|v| panic!("{what}: {s:?}: {v}"));
    }
}

fn replay(
    hv: &mut Hypervisor,
    steps: &[Step],
) -> Result<(), (usize, arch_timer_virt_sim::Violation)> {
    for (i, &s) in steps.iter().enumerate() {
        hv.step(s).map_err(|v| (i, v))?;
    }
    Ok(())
}

/// With a vGIC that keeps level semantics (KVM's), the line the library
/// left high re-pends the interrupt at the next entry.
#[test]
fn rearm_deactivate_reload_with_level_resampling() {
    let mut hv = Hypervisor::new(1, 1, FREQUENCY_HZ);
    hv.set_level_resample(true);
    replay(&mut hv, &rearm_deactivate_reload()).unwrap();
    assert_eq!(hv.vcpu(0).guest.timer_irqs_taken(), 1);
    hv.step(guest(GuestOp::Acknowledge)).unwrap();
    assert_eq!(
        hv.vcpu(0).guest.timer_irqs_taken(),
        2,
        "the second expiry is delivered"
    );
}

/// With a vGIC that only pends on a raise (the `IrqChip` contract, and the
/// gicv3 backend). Found by the property tests: the core of commit bf3b06c
/// lost this expiry, because `load` set the physical PPI active for a line
/// it had recorded high although the guest had already deactivated the
/// virtual interrupt, and nothing raised it again. `load` now raises the
/// line again in that case.
#[test]
fn rearm_deactivate_reload_without_resampling() {
    let mut hv = Hypervisor::new(1, 1, FREQUENCY_HZ);
    let result = replay(&mut hv, &rearm_deactivate_reload());
    if let Err((i, v)) = &result {
        assert_ne!(v.invariant, Invariant::LostInterrupt, "step {i}: {v}");
    }
    result.unwrap();
}

/// Guest deactivates with the line still high and sleeps: `block` finds the
/// timer expired, wakes at once, and the PPI is taken again exactly once.
#[test]
fn deactivate_with_line_high_then_wfi() {
    let mut hv = Hypervisor::new(1, 1, FREQUENCY_HZ);
    hv.set_level_resample(true);
    let steps = [
        Step::Load { vcpu: 0, cpu: 0 },
        Step::Enter { cpu: 0 },
        guest(GuestOp::SetCtl(1)),
        Step::HostIrq { cpu: 0 },
        Step::Enter { cpu: 0 },
        guest(GuestOp::Acknowledge),
        guest(GuestOp::Handle(Handler::Nothing)),
        guest(GuestOp::Deactivate),
        Step::Wfi { cpu: 0 },
        Step::Enter { cpu: 0 },
        guest(GuestOp::Acknowledge),
        Step::HostIrq { cpu: 0 },
    ];
    replay(&mut hv, &steps).unwrap();
    assert_eq!(hv.stats().immediate_wakeups, 1);
    assert!(hv.vcpu(0).host_irqs() <= hv.vcpu(0).expiries() + 1);
}

/// The acknowledge race: the vtimer PPI is signalled, the guest disables
/// its timer before the exception is taken, the acknowledge still returns
/// the PPI, so `handle_host_irq` finds it spurious and must release the
/// PPI; when the guest enables the timer again, the expiry reaches it.
#[test]
fn acknowledge_race_is_spurious_and_releases_the_ppi() {
    let mut hv = Hypervisor::new(1, 1, FREQUENCY_HZ);
    let steps = [
        Step::Load { vcpu: 0, cpu: 0 },
        Step::Enter { cpu: 0 },
        guest(GuestOp::SetCval { ahead: 0 }),
        guest(GuestOp::SetCtl(1)),
        Step::Signal { cpu: 0 },
        guest(GuestOp::SetCtl(0)),
        Step::HostHandle { cpu: 0 },
        Step::Enter { cpu: 0 },
        guest(GuestOp::SetCtl(1)),
        Step::HostIrq { cpu: 0 },
        Step::Enter { cpu: 0 },
        guest(GuestOp::Acknowledge),
    ];
    for (i, &s) in steps.iter().enumerate() {
        assert!(hv.step(s).unwrap(), "step {i} {s:?} was skipped");
    }
    assert_eq!(hv.stats().spurious, 1);
    assert_eq!(hv.vcpu(0).guest.timer_irqs_taken(), 1);
}

/// Found by `vcpus_and_cpus` in CI: the guest deactivates with its
/// condition still met, so the PPI is signalled again; the guest moves CVAL
/// one tick ahead before the exception is taken; the exception's
/// `after_exit` finds the condition cleared, lowers the line and
/// deactivates the PPI; the tick passes before the handler runs, which
/// finds the timer asserted and raises the line. With the acknowledge
/// before `after_exit` (an EL2 vector that acknowledges at once), the
/// library left the PPI inactive with the line high, and the host took it
/// again while the guest had the virtual interrupt pending (a storm);
/// `handle_host_irq` then made the PPI active again. Since `after_exit`
/// asks the interrupt's state first, it no longer deactivates a PPI the
/// guest's completion already deactivated, and the race does not arise.
/// Checked with the acknowledge at both points.
fn cval_moved_ahead_while_the_ppi_is_signalled(ack: AckPoint) {
    let mut hv = Hypervisor::new(1, 1, FREQUENCY_HZ);
    hv.set_ack_point(ack);
    let steps = [
        Step::Load { vcpu: 0, cpu: 0 },
        Step::Enter { cpu: 0 },
        guest(GuestOp::SetCtl(1)),
        Step::HostIrq { cpu: 0 },
        Step::Enter { cpu: 0 },
        guest(GuestOp::Acknowledge),
        guest(GuestOp::Handle(Handler::Nothing)),
        guest(GuestOp::Deactivate),
        Step::Signal { cpu: 0 },
        guest(GuestOp::SetCval { ahead: 1 }),
        Step::HostAck { cpu: 0 },
        Step::Advance(1),
        Step::HostHandle { cpu: 0 },
        Step::Enter { cpu: 0 },
        guest(GuestOp::Acknowledge),
    ];
    for (i, &s) in steps.iter().enumerate() {
        assert!(hv.step(s).unwrap(), "{ack:?}: step {i} {s:?} was skipped");
        if s == (Step::HostHandle { cpu: 0 }) {
            assert!(
                !hv.machine().timer_irq_signalled(0),
                "{ack:?}: the PPI is signalled while the guest has the interrupt pending"
            );
        }
    }
    assert_eq!(hv.vcpu(0).guest.timer_irqs_taken(), 2, "{ack:?}");
    assert_eq!(hv.vcpu(0).host_irqs(), 2, "{ack:?}");
    // The guest had completed the interrupt, which deactivated the PPI
    // (HW bit): `after_exit` leaves it alone, so the acknowledge's active
    // state is never lost and nothing needs re-activating (before the
    // library asked the interrupt's state, it deactivated the PPI here and
    // `handle_timer_irq` re-activated it with the acknowledge before
    // `after_exit`).
    assert_eq!(hv.stats().reactivated, 0, "{ack:?}");
}

#[test]
fn cval_moved_ahead_while_signalled_with_the_acknowledge_after_exit() {
    cval_moved_ahead_while_the_ppi_is_signalled(AckPoint::AfterExit);
}

#[test]
fn cval_moved_ahead_while_signalled_with_the_acknowledge_in_the_vector() {
    cval_moved_ahead_while_the_ppi_is_signalled(AckPoint::AtException);
}

/// Issue 13, bug 1, in the model: the timer fires at the current virtual
/// count and the line is raised; the VMM moves the VM offset by one tick,
/// which a loaded vCPU takes through a physical timer register write.
/// The virtual count is now one tick behind CVAL: the line must be low
/// (checked by the step), and the expiry one tick later is delivered.
#[test]
fn offset_taken_by_a_physical_write_lowers_the_virtual_line() {
    for forwarding in [Forwarding::Hardware, Forwarding::Masking] {
        let mut hv = Hypervisor::new(1, 1, FREQUENCY_HZ);
        hv.set_forwarding(forwarding).unwrap();
        let steps = [
            Step::Advance(1000),
            Step::Load { vcpu: 0, cpu: 0 },
            Step::Enter { cpu: 0 },
            guest(GuestOp::SetCval { ahead: 0 }),
            guest(GuestOp::SetCtl(1)),
            Step::HostIrq { cpu: 0 },
            Step::SetOffset { delta: 1 },
            Step::Enter { cpu: 0 },
            Step::Advance(1),
            Step::HostIrq { cpu: 0 },
            Step::Enter { cpu: 0 },
            guest(GuestOp::Acknowledge),
        ];
        for (i, &s) in steps.iter().enumerate() {
            assert!(
                hv.step(s).unwrap(),
                "{forwarding:?}: step {i} {s:?} skipped"
            );
        }
        assert_eq!(hv.stats().offsets_taken_loaded, 1);
        assert_eq!(hv.vcpu(0).guest.timer_irqs_taken(), 1, "{forwarding:?}");
    }
}

/// Issue 13, bug 2, in the model: a vCPU sleeps with its timer 2000 ticks
/// away, is scheduled out, and the VMM moves the counter 5000 ticks ahead.
/// Blocked again, it wakes at once, and takes the interrupt when loaded.
#[test]
fn offset_change_wakes_a_sleeping_unloaded_vcpu() {
    let mut hv = Hypervisor::new(1, 1, FREQUENCY_HZ);
    let steps = [
        Step::Advance(10_000),
        Step::Load { vcpu: 0, cpu: 0 },
        Step::Enter { cpu: 0 },
        guest(GuestOp::SetCval { ahead: 2000 }),
        guest(GuestOp::SetCtl(1)),
        Step::Wfi { cpu: 0 },
        Step::Put { cpu: 0 },
        Step::SetOffset { delta: -5000 },
        Step::Load { vcpu: 0, cpu: 0 },
        Step::Enter { cpu: 0 },
        guest(GuestOp::Acknowledge),
    ];
    for (i, &s) in steps.iter().enumerate() {
        assert!(hv.step(s).unwrap(), "step {i} {s:?} skipped");
    }
    assert_eq!(hv.stats().sleeps_rearmed, 1);
    assert_eq!(hv.vcpu(0).guest.timer_irqs_taken(), 1);
}

/// Issue 13, gap 3, in the model: the VMM resets the vCPU while the guest
/// handles its timer interrupt; the reset guest arms its timer and its
/// first expiry reaches it.
#[test]
fn reset_inside_the_handler_then_the_next_expiry_arrives() {
    let mut hv = Hypervisor::new(1, 1, FREQUENCY_HZ);
    let steps = [
        Step::Load { vcpu: 0, cpu: 0 },
        Step::Enter { cpu: 0 },
        guest(GuestOp::SetCtl(1)),
        Step::HostIrq { cpu: 0 },
        Step::Enter { cpu: 0 },
        guest(GuestOp::Acknowledge),
        Step::Reset { vcpu: 0 },
        Step::Enter { cpu: 0 },
        guest(GuestOp::SetCval { ahead: 10 }),
        guest(GuestOp::SetCtl(1)),
        Step::Advance(10),
        Step::HostIrq { cpu: 0 },
        Step::Enter { cpu: 0 },
        guest(GuestOp::Acknowledge),
    ];
    for (i, &s) in steps.iter().enumerate() {
        assert!(hv.step(s).unwrap(), "step {i} {s:?} skipped");
    }
    assert_eq!(hv.stats().resets_in_handler, 1);
    assert_eq!(hv.vcpu(0).guest.timer_irqs_taken(), 2);
}

/// Issue 13, gap 5, in the model: the interrupt controller fails at each
/// call of the handler in turn; the host takes the PPI again (or the next
/// entry repairs the PPI) and the interrupt reaches the guest.
#[test]
fn a_chip_fault_in_the_handler_does_not_lose_the_interrupt() {
    for forwarding in [Forwarding::Hardware, Forwarding::Masking] {
        for after in 0..3 {
            let mut hv = Hypervisor::new(1, 1, FREQUENCY_HZ);
            hv.set_forwarding(forwarding).unwrap();
            let steps = [
                Step::Load { vcpu: 0, cpu: 0 },
                Step::Enter { cpu: 0 },
                guest(GuestOp::SetCtl(1)),
                Step::ChipFault {
                    after,
                    at: FaultSite::Handler,
                },
                Step::HostIrq { cpu: 0 },
                Step::HostIrq { cpu: 0 },
                Step::Enter { cpu: 0 },
                guest(GuestOp::Acknowledge),
            ];
            run_steps(
                &mut hv,
                &steps,
                &format!("{forwarding:?}, fault at {after}"),
            );
            assert_eq!(
                hv.vcpu(0).guest.timer_irqs_taken(),
                1,
                "{forwarding:?}, fault at call {after}: {:?}",
                hv.stats()
            );
        }
    }
}

/// Found by `one_vcpu_one_cpu` in CI: a vCPU blocked in place, its timer
/// fires, the host acknowledges the PPI, the vCPU is woken (`unblock`
/// raises the line) and the handler's raise, on a line already high,
/// fails. Releasing the PPI then would let it signal while the guest still
/// has the interrupt pending; the handler leaves it active and the next
/// entry raises the line again.
#[test]
fn a_chip_fault_raising_a_line_already_raised_by_unblock() {
    for forwarding in [Forwarding::Hardware, Forwarding::Masking] {
        for after in 0..3 {
            let mut hv = Hypervisor::new(1, 1, FREQUENCY_HZ);
            hv.set_forwarding(forwarding).unwrap();
            hv.set_ack_point(AckPoint::AfterExit);
            hv.set_block_in_place(true);
            let steps = [
                Step::Load { vcpu: 0, cpu: 0 },
                Step::Enter { cpu: 0 },
                guest(GuestOp::SetCval { ahead: 24 }),
                guest(GuestOp::SetCtl(1)),
                Step::Wfi { cpu: 0 },
                Step::ChipFault {
                    after,
                    at: FaultSite::Handler,
                },
                Step::Advance(24),
                Step::HostAck { cpu: 0 },
                Step::Kick { vcpu: 0 },
                Step::Enter { cpu: 0 },
                guest(GuestOp::Acknowledge),
            ];
            run_steps(
                &mut hv,
                &steps,
                &format!("{forwarding:?}, fault at {after}"),
            );
            assert_eq!(
                hv.vcpu(0).guest.timer_irqs_taken(),
                1,
                "{forwarding:?}, fault at call {after}: {:?}",
                hv.stats()
            );
            assert_eq!(hv.stats().slept_in_place, 1);
        }
    }
}

/// Found once the model failed exits too: the wake-up of a vCPU blocked
/// in place (`after_irq_exit` before the host's acknowledge) fails after
/// it raised the line and masked or activated the PPI. Nothing reports the
/// forwarded timer and the PPI no longer signals, so the run loop must
/// wake the vCPU on the error (as `after_irq_exit` documents); the next
/// entry repairs the host state and the guest takes its interrupt.
#[test]
fn a_chip_fault_at_an_in_place_wake_up_wakes_the_vcpu() {
    for forwarding in [Forwarding::Hardware, Forwarding::Masking] {
        for after in 0..3 {
            let mut hv = Hypervisor::new(1, 1, FREQUENCY_HZ);
            hv.set_forwarding(forwarding).unwrap();
            hv.set_phys_timer_mode(PhysTimerMode::Auto).unwrap();
            hv.set_ack_point(AckPoint::Forwarded);
            hv.set_block_in_place(true);
            let steps = [
                Step::Load { vcpu: 0, cpu: 0 },
                Step::Enter { cpu: 0 },
                guest(GuestOp::SetCval { ahead: 1 }),
                guest(GuestOp::SetCtl(1)),
                guest(GuestOp::PhysSetCval { ahead: 1 }),
                guest(GuestOp::PhysSetCtl(1)),
                Step::ChipFault {
                    after,
                    at: FaultSite::RunLoop,
                },
                Step::Wfi { cpu: 0 },
                Step::Advance(1),
                Step::HostAck { cpu: 0 },
                Step::HostHandle { cpu: 0 },
                Step::Enter { cpu: 0 },
                guest(GuestOp::Acknowledge),
            ];
            run_steps(
                &mut hv,
                &steps,
                &format!("{forwarding:?}, fault at {after}"),
            );
            assert!(!hv.vcpu(0).blocked(), "{forwarding:?}, fault at {after}");
            assert_eq!(
                hv.vcpu(0).guest.timer_irqs_taken(),
                1,
                "{forwarding:?}, fault at call {after}: {:?}",
                hv.stats()
            );
        }
    }
}

/// Found once the model failed exits: the guest holds its timer interrupt
/// active across a put and load (its line lowered, the PPI active with
/// it), the timer fires again, and the raise at the IRQ exit (taken for
/// the physical timer's PPI) fails. The
/// PPI must stay active until the guest deactivates the interrupt; then
/// the expiry is delivered.
#[test]
fn a_failed_raise_at_an_irq_exit_keeps_the_ppi_the_guest_holds() {
    let mut hv = Hypervisor::new(1, 1, FREQUENCY_HZ);
    hv.set_phys_timer_mode(PhysTimerMode::Auto).unwrap();
    hv.set_ack_point(AckPoint::Forwarded);
    let steps = [
        Step::Load { vcpu: 0, cpu: 0 },
        Step::Enter { cpu: 0 },
        guest(GuestOp::SetCval { ahead: 0 }),
        guest(GuestOp::SetCtl(1)),
        Step::HostIrq { cpu: 0 },
        Step::Enter { cpu: 0 },
        guest(GuestOp::Acknowledge),
        guest(GuestOp::SetCval { ahead: 1 }),
        Step::Put { cpu: 0 },
        Step::Load { vcpu: 0, cpu: 0 },
        Step::Enter { cpu: 0 },
        guest(GuestOp::SetCval { ahead: 0 }),
        // The physical timer's PPI is what makes the IRQ exit.
        guest(GuestOp::PhysSetCval { ahead: 0 }),
        guest(GuestOp::PhysSetCtl(1)),
        Step::ChipFault {
            after: 1,
            at: FaultSite::RunLoop,
        },
        Step::HostIrq { cpu: 0 },
        Step::Enter { cpu: 0 },
        guest(GuestOp::Deactivate),
        Step::HostIrq { cpu: 0 },
        Step::Enter { cpu: 0 },
        guest(GuestOp::Acknowledge),
    ];
    run_steps(&mut hv, &steps, "");
    assert_eq!(hv.stats().exit_chip_errors, 1, "{:?}", hv.stats());
    assert_eq!(hv.vcpu(0).guest.timer_irqs_taken(), 2, "{:?}", hv.stats());
}

/// Found once the model failed `unblock`: a WFI with the timer fired and
/// its interrupt pending; `unblock` fails at once (its `virtual_active`
/// question), leaving the PPI's state to the next entry's repair; the VMM
/// saves and restores the timer registers in between, which writes CTL
/// without ISTATUS. The repair must not judge by that memory copy of CTL:
/// the guest holds the interrupt pending, so the PPI stays active. Before:
/// released under the pending interrupt, it signalled at once. The
/// second history fails `unblock` of a timer that fired during the sleep:
/// it must still go back on the hardware.
#[test]
fn a_chip_fault_in_unblock_converges() {
    for forwarding in [Forwarding::Hardware, Forwarding::Masking] {
        let mut hv = Hypervisor::new(1, 1, FREQUENCY_HZ);
        hv.set_forwarding(forwarding).unwrap();
        let steps = [
            Step::Load { vcpu: 0, cpu: 0 },
            Step::Enter { cpu: 0 },
            guest(GuestOp::SetCval { ahead: 0 }),
            guest(GuestOp::SetCtl(1)),
            Step::HostIrq { cpu: 0 },
            Step::Enter { cpu: 0 },
            Step::ChipFault {
                after: 0,
                at: FaultSite::RunLoop,
            },
            Step::Wfi { cpu: 0 },
            Step::SaveRestore {
                vcpu: 0,
                order: 105,
                fresh: false,
            },
            Step::Enter { cpu: 0 },
            guest(GuestOp::Acknowledge),
        ];
        run_steps(&mut hv, &steps, &format!("{forwarding:?}"));
        assert_eq!(hv.vcpu(0).guest.timer_irqs_taken(), 1, "{forwarding:?}");

        let mut hv = Hypervisor::new(1, 1, FREQUENCY_HZ);
        hv.set_forwarding(forwarding).unwrap();
        let steps = [
            Step::Load { vcpu: 0, cpu: 0 },
            Step::Enter { cpu: 0 },
            guest(GuestOp::SetCval { ahead: 10 }),
            guest(GuestOp::SetCtl(1)),
            Step::Wfi { cpu: 0 },
            Step::ChipFault {
                after: 0,
                at: FaultSite::RunLoop,
            },
            Step::Advance(10),
            Step::Enter { cpu: 0 },
            Step::HostIrq { cpu: 0 },
            Step::Enter { cpu: 0 },
            guest(GuestOp::Acknowledge),
        ];
        run_steps(&mut hv, &steps, &format!("{forwarding:?}"));
        assert_eq!(hv.stats().wake_chip_errors, 1, "{forwarding:?}");
        assert_eq!(hv.vcpu(0).guest.timer_irqs_taken(), 1, "{forwarding:?}");
    }
}

/// `before_entry` fails while it raises the emulated physical timer's
/// line (it fired while the guest was out): the guest is not entered, and
/// the next entry raises it.
#[test]
fn a_failed_entry_is_tried_again() {
    // `Forwarding::Hardware`: with `Masking` the VMM raises the line, so
    // the entry makes no interrupt controller call to fail.
    let mut hv = Hypervisor::new(1, 1, FREQUENCY_HZ);
    let steps = [
        Step::Load { vcpu: 0, cpu: 0 },
        Step::Enter { cpu: 0 },
        guest(GuestOp::PhysSetCval { ahead: 5 }),
        guest(GuestOp::PhysSetCtl(1)),
        Step::Exit { cpu: 0 },
        Step::Advance(5),
        Step::ChipFault {
            after: 0,
            at: FaultSite::RunLoop,
        },
        Step::Enter { cpu: 0 },
    ];
    run_steps(&mut hv, &steps, "");
    assert_eq!(hv.stats().entry_chip_errors, 1);
    assert_eq!(hv.vcpu(0).guest.ptimer_irqs_taken(), 0);
    run_steps(
        &mut hv,
        &[Step::Enter { cpu: 0 }, guest(GuestOp::Acknowledge)],
        "",
    );
    assert_eq!(hv.vcpu(0).guest.ptimer_irqs_taken(), 1);
}

/// `load` fails at each of its interrupt controller calls in turn: the
/// vCPU stays unloaded, and the next `load` delivers the expiry.
#[test]
fn a_failed_load_is_tried_again() {
    for forwarding in [Forwarding::Hardware, Forwarding::Masking] {
        let mut failures = 0;
        for after in 0..4 {
            let mut hv = Hypervisor::new(1, 1, FREQUENCY_HZ);
            hv.set_forwarding(forwarding).unwrap();
            let steps = [
                Step::Load { vcpu: 0, cpu: 0 },
                Step::Enter { cpu: 0 },
                guest(GuestOp::SetCval { ahead: 5 }),
                guest(GuestOp::SetCtl(1)),
                Step::Put { cpu: 0 },
                Step::Advance(5),
                Step::ChipFault {
                    after,
                    at: FaultSite::Load,
                },
                Step::Load { vcpu: 0, cpu: 0 },
            ];
            run_steps(&mut hv, &steps, &format!("{forwarding:?} {after}"));
            let failed = hv.stats().load_chip_errors;
            failures += failed;
            assert_eq!(
                hv.vcpu(0).cpu().is_none(),
                failed == 1,
                "{forwarding:?} {after}"
            );
            run_steps(
                &mut hv,
                &[
                    Step::Load { vcpu: 0, cpu: 0 },
                    Step::Enter { cpu: 0 },
                    guest(GuestOp::Acknowledge),
                ],
                &format!("{forwarding:?} {after}"),
            );
            assert_eq!(
                hv.vcpu(0).guest.timer_irqs_taken(),
                1,
                "{forwarding:?} {after}"
            );
        }
        // `load` makes at least two interrupt controller calls here in
        // either mode (the PPI's two host states; with `Hardware` also the
        // mapping, the question and the raise): the fault struck at least
        // that often, so the retries above were tested.
        assert!(failures >= 2, "{forwarding:?}: {failures} failed loads");
    }
}

/// Found by the long property run once exits could fail: the guest
/// completes its interrupt and re-arms its timer ahead, and the exit's
/// lowering of the line fails (the exit taken for a VMM offset change).
/// The line lags the timer until the next exit lowers it (the model's
/// check after the offset change allows that only after such an error);
/// the next expiry is delivered.
#[test]
fn a_failed_lowering_is_retried_at_the_next_exit() {
    let mut hv = Hypervisor::new(1, 1, FREQUENCY_HZ);
    let steps = [
        Step::Load { vcpu: 0, cpu: 0 },
        Step::Enter { cpu: 0 },
        guest(GuestOp::SetCval { ahead: 0 }),
        guest(GuestOp::SetCtl(1)),
        Step::HostIrq { cpu: 0 },
        Step::Enter { cpu: 0 },
        guest(GuestOp::Acknowledge),
        guest(GuestOp::Handle(Handler::Rearm(10))),
        guest(GuestOp::Deactivate),
        Step::ChipFault {
            after: 0,
            at: FaultSite::RunLoop,
        },
        Step::SetOffset { delta: 0 },
    ];
    run_steps(&mut hv, &steps, "");
    assert_eq!(hv.stats().exit_chip_errors, 1);
    assert!(
        hv.vcpu(0).timer.levels().virtual_timer,
        "the lowering failed"
    );
    hv.step(Step::Enter { cpu: 0 }).unwrap();
    hv.step(Step::Exit { cpu: 0 }).unwrap();
    assert!(
        !hv.vcpu(0).timer.levels().virtual_timer,
        "lowered at the exit"
    );
    run_steps(
        &mut hv,
        &[
            Step::Advance(10),
            Step::HostIrq { cpu: 0 },
            Step::Enter { cpu: 0 },
            guest(GuestOp::Acknowledge),
        ],
        "",
    );
    assert_eq!(hv.vcpu(0).guest.timer_irqs_taken(), 2);
}

/// Found by `vcpus_and_cpus` once offset changes were generated: the VMM's
/// round trip into a new `VcpuTimer` was allowed while the emulated
/// physical timer's line was high in the vGIC (the model checked only the
/// virtual timer's); the new `VcpuTimer` starts with both lines low, so the
/// stale high line stayed after an offset change un-met the condition. A
/// restore into a new `VcpuTimer` now waits until neither line is high, as
/// on a new host with a fresh vGIC.
#[test]
fn fresh_restore_waits_for_the_physical_timer_line() {
    let mut hv = Hypervisor::new(2, 2, FREQUENCY_HZ);
    let g1 = |op| Step::Guest { cpu: 1, op };
    let steps = [
        Step::Advance(1454),
        Step::Load { vcpu: 1, cpu: 1 },
        Step::Enter { cpu: 1 },
        g1(GuestOp::PhysSetCval { ahead: 0 }),
        g1(GuestOp::PhysSetCtl(1)),
        Step::Advance(881),
        Step::Put { cpu: 1 },
        Step::SaveRestore {
            vcpu: 1,
            order: 0,
            fresh: true,
        },
        Step::SetOffset { delta: 882 },
        Step::Load { vcpu: 1, cpu: 0 },
        Step::Enter { cpu: 0 },
    ];
    for (i, &s) in steps.iter().enumerate() {
        assert!(hv.step(s).unwrap(), "step {i} {s:?} skipped");
    }
    assert_eq!(hv.stats().fresh_restores, 0);
}
