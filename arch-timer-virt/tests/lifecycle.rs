//! The vCPU timer lifecycle against mocks: the exact hardware sequences of
//! load, put, block and unblock, idempotent save/restore, and wrong-state
//! calls.

mod common;

use arch_timer_virt::mock::{MockChipError, MockIrqChip, MockSoftTimers, MockTimerHw};
use arch_timer_virt::{
    Error, IntId, Residency, SoftTimer, Ticks, TimerCtl, VcpuTimer, VmTimer, Wakeup,
};
use common::{VTIMER, loaded_with, quiet_chip, quiet_hw, quiet_hw_at, quiet_soft};
use mockall::Sequence;
use mockall::predicate::eq;

/// load on a fresh vCPU: map, the line and host PPI state, CNTVOFF, CVAL,
/// barrier, CTL, then EL1 physical access trapped; nothing else.
#[test]
fn load_writes_cntvoff_then_cval_then_barrier_then_ctl() {
    let vm = VmTimer::new();
    let mut timer = VcpuTimer::new();
    let mut seq = Sequence::new();
    let mut hw = MockTimerHw::new();
    let mut chip = MockIrqChip::new();

    chip.expect_map_virtual()
        .with(eq(VTIMER), eq(VTIMER))
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _| Ok(()));
    chip.expect_virtual_active()
        .with(eq(VTIMER))
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| Ok(false));
    hw.expect_physical_count()
        .times(1)
        .in_sequence(&mut seq)
        .return_const(Ticks::new(50));
    chip.expect_set_host_masked()
        .with(eq(VTIMER), eq(false))
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _| Ok(()));
    chip.expect_set_host_active()
        .with(eq(VTIMER), eq(false))
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _| Ok(()));
    hw.expect_set_virtual_offset()
        .with(eq(Ticks::ZERO))
        .times(1)
        .in_sequence(&mut seq)
        .return_const(());
    hw.expect_set_vtimer_cval()
        .with(eq(Ticks::ZERO))
        .times(1)
        .in_sequence(&mut seq)
        .return_const(());
    hw.expect_barrier()
        .times(1)
        .in_sequence(&mut seq)
        .return_const(());
    hw.expect_set_vtimer_ctl()
        .with(eq(TimerCtl::empty()))
        .times(1)
        .in_sequence(&mut seq)
        .return_const(());
    hw.expect_set_el1_physical_access()
        .with(eq(false))
        .times(1)
        .in_sequence(&mut seq)
        .return_const(());

    assert_eq!(timer.load(&vm, &mut hw, &mut chip), Ok(()));
    assert!(timer.is_loaded());
    assert_eq!(timer.vtimer().residency(), Residency::Hardware);
    assert!(vm.is_locked());
}

/// put: EL1 access allowed again, CTL and CVAL read, timer disabled,
/// CNTVOFF back to 0, in that order.
#[test]
fn put_saves_disables_and_zeroes_cntvoff() {
    let (_vm, mut timer) = loaded_with(Ticks::new(1000));
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
        .return_const(TimerCtl::ENABLE | TimerCtl::ISTATUS);
    hw.expect_vtimer_cval()
        .times(1)
        .in_sequence(&mut seq)
        .return_const(Ticks::new(500));
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

    // No soft timer is armed, so none is touched.
    assert_eq!(timer.put(&mut hw, &mut MockSoftTimers::new()), Ok(()));
    assert!(!timer.is_loaded());
    assert_eq!(timer.vtimer().residency(), Residency::Memory);
    assert_eq!(timer.vtimer().cval(), Ticks::new(500));
    assert_eq!(timer.vtimer().offset(), Ticks::new(1000));
}

/// A state saved on one CPU is restored on another with the same CVAL, CTL
/// (ISTATUS dropped: it is read-only) and offset.
#[test]
fn saved_state_is_restored_on_the_next_cpu() {
    let (vm, mut timer) = loaded_with(Ticks::new(1000));
    let mut cpu_a = quiet_hw();
    cpu_a
        .expect_vtimer_ctl()
        .return_const(TimerCtl::ENABLE | TimerCtl::ISTATUS);
    cpu_a.expect_vtimer_cval().return_const(Ticks::new(777));
    assert_eq!(timer.put(&mut cpu_a, &mut quiet_soft()), Ok(()));

    let mut seq = Sequence::new();
    let mut cpu_b = MockTimerHw::new();
    // The counter is still before CVAL (virtual 1700 - 1000 = 700 < 777).
    cpu_b
        .expect_physical_count()
        .times(1)
        .in_sequence(&mut seq)
        .return_const(Ticks::new(1700));
    cpu_b
        .expect_set_virtual_offset()
        .with(eq(Ticks::new(1000)))
        .times(1)
        .in_sequence(&mut seq)
        .return_const(());
    cpu_b
        .expect_set_vtimer_cval()
        .with(eq(Ticks::new(777)))
        .times(1)
        .in_sequence(&mut seq)
        .return_const(());
    cpu_b
        .expect_barrier()
        .times(1)
        .in_sequence(&mut seq)
        .return_const(());
    cpu_b
        .expect_set_vtimer_ctl()
        .with(eq(TimerCtl::ENABLE))
        .times(1)
        .in_sequence(&mut seq)
        .return_const(());
    cpu_b
        .expect_set_el1_physical_access()
        .with(eq(false))
        .times(1)
        .in_sequence(&mut seq)
        .return_const(());
    assert_eq!(timer.load(&vm, &mut cpu_b, &mut quiet_chip()), Ok(()));
}

/// The first flow of the design: block, put, load, unblock. The timer is
/// saved once (by block) and restored once (by load).
#[test]
fn block_put_load_unblock_saves_once_and_restores_once() {
    let (vm, mut timer) = loaded_with(Ticks::ZERO);
    let mut seq = Sequence::new();
    let mut hw = MockTimerHw::new();
    let mut soft = MockSoftTimers::new();

    // block: save, then look at the counter, then arm the background timer.
    hw.expect_vtimer_ctl()
        .times(1)
        .in_sequence(&mut seq)
        .return_const(TimerCtl::ENABLE);
    hw.expect_vtimer_cval()
        .times(1)
        .in_sequence(&mut seq)
        .return_const(Ticks::new(5000));
    hw.expect_set_vtimer_ctl()
        .with(eq(TimerCtl::empty()))
        .times(1)
        .in_sequence(&mut seq)
        .return_const(());
    hw.expect_physical_count()
        .times(1)
        .in_sequence(&mut seq)
        .return_const(Ticks::new(4000));
    soft.expect_arm()
        .with(eq(SoftTimer::Background), eq(Ticks::new(5000)))
        .times(1)
        .in_sequence(&mut seq)
        .return_const(());
    // put: no second save.
    hw.expect_set_el1_physical_access()
        .with(eq(true))
        .times(1)
        .in_sequence(&mut seq)
        .return_const(());
    hw.expect_set_virtual_offset()
        .with(eq(Ticks::ZERO))
        .times(1)
        .in_sequence(&mut seq)
        .return_const(());
    // load: the counter for the line, then one restore.
    hw.expect_physical_count()
        .times(1)
        .in_sequence(&mut seq)
        .return_const(Ticks::new(4100));
    hw.expect_set_virtual_offset()
        .with(eq(Ticks::ZERO))
        .times(1)
        .in_sequence(&mut seq)
        .return_const(());
    hw.expect_set_vtimer_cval()
        .with(eq(Ticks::new(5000)))
        .times(1)
        .in_sequence(&mut seq)
        .return_const(());
    hw.expect_barrier()
        .times(1)
        .in_sequence(&mut seq)
        .return_const(());
    hw.expect_set_vtimer_ctl()
        .with(eq(TimerCtl::ENABLE))
        .times(1)
        .in_sequence(&mut seq)
        .return_const(());
    hw.expect_set_el1_physical_access()
        .with(eq(false))
        .times(1)
        .in_sequence(&mut seq)
        .return_const(());
    // unblock: no second restore, just the cancel.
    soft.expect_cancel()
        .with(eq(SoftTimer::Background))
        .times(1)
        .in_sequence(&mut seq)
        .return_const(());

    assert_eq!(
        timer.block(&vm, &mut hw, &mut soft),
        Wakeup::At(Ticks::new(5000))
    );
    assert_eq!(timer.put(&mut hw, &mut soft), Ok(()));
    assert_eq!(timer.load(&vm, &mut hw, &mut quiet_chip()), Ok(()));
    assert_eq!(
        timer.unblock(&mut hw, &mut MockIrqChip::new(), &mut soft),
        Ok(())
    );
    assert_eq!(timer.vtimer().residency(), Residency::Hardware);
}

/// The second flow: block, unblock without being scheduled away.
#[test]
fn block_unblock_saves_and_restores() {
    let (vm, mut timer) = loaded_with(Ticks::ZERO);
    let mut seq = Sequence::new();
    let mut hw = MockTimerHw::new();
    let mut soft = MockSoftTimers::new();

    hw.expect_vtimer_ctl()
        .times(1)
        .in_sequence(&mut seq)
        .return_const(TimerCtl::ENABLE | TimerCtl::IMASK);
    hw.expect_vtimer_cval()
        .times(1)
        .in_sequence(&mut seq)
        .return_const(Ticks::new(10));
    hw.expect_set_vtimer_ctl()
        .with(eq(TimerCtl::empty()))
        .times(1)
        .in_sequence(&mut seq)
        .return_const(());
    hw.expect_physical_count()
        .times(1)
        .in_sequence(&mut seq)
        .return_const(Ticks::new(0));
    // unblock: the counter for the line, then the restore.
    hw.expect_physical_count()
        .times(1)
        .in_sequence(&mut seq)
        .return_const(Ticks::new(20));
    hw.expect_set_vtimer_cval()
        .with(eq(Ticks::new(10)))
        .times(1)
        .in_sequence(&mut seq)
        .return_const(());
    hw.expect_barrier()
        .times(1)
        .in_sequence(&mut seq)
        .return_const(());
    hw.expect_set_vtimer_ctl()
        .with(eq(TimerCtl::ENABLE | TimerCtl::IMASK))
        .times(1)
        .in_sequence(&mut seq)
        .return_const(());

    // Masked: it cannot fire, so nothing is armed and nothing cancelled,
    // and unblock changes no line: with the line low before and after,
    // the chip is not even asked what is active (no expectation).
    assert_eq!(timer.block(&vm, &mut hw, &mut soft), Wakeup::Never);
    let mut chip = MockIrqChip::new();
    assert_eq!(timer.unblock(&mut hw, &mut chip, &mut soft), Ok(()));
    assert_eq!(timer.vtimer().residency(), Residency::Hardware);
}

/// A timer that fired during the sleep is raised at `unblock` and its PPI
/// made active without asking the interrupt controller whether the guest
/// holds the interrupt active (the answer would change nothing).
#[test]
fn unblock_raises_a_fired_timer_without_asking_what_is_active() {
    let (vm, mut timer) = loaded_with(Ticks::ZERO);
    let mut hw = quiet_hw_at(0);
    hw.expect_vtimer_ctl().return_const(TimerCtl::ENABLE);
    hw.expect_vtimer_cval().return_const(Ticks::new(10));
    let mut soft = quiet_soft();
    assert_eq!(
        timer.block(&vm, &mut hw, &mut soft),
        Wakeup::At(Ticks::new(10))
    );
    let mut chip = MockIrqChip::new();
    chip.expect_set_virtual_level()
        .with(eq(VTIMER), eq(true))
        .times(1)
        .returning(|_, _| Ok(()));
    chip.expect_set_host_active()
        .with(eq(VTIMER), eq(true))
        .times(1)
        .returning(|_, _| Ok(()));
    let mut hw = quiet_hw_at(20);
    assert_eq!(timer.unblock(&mut hw, &mut chip, &mut soft), Ok(()));
    assert!(timer.vtimer().level());
}

/// Unblocking a vCPU that is not loaded must not write another vCPU's
/// hardware.
#[test]
fn unblock_when_not_loaded_leaves_the_hardware_alone() {
    let (vm, mut timer) = loaded_with(Ticks::ZERO);
    let mut hw = quiet_hw();
    hw.expect_vtimer_ctl().return_const(TimerCtl::ENABLE);
    hw.expect_vtimer_cval().return_const(Ticks::new(100));
    let mut soft = quiet_soft();
    assert_eq!(
        timer.block(&vm, &mut hw, &mut soft),
        Wakeup::At(Ticks::new(100))
    );
    assert_eq!(timer.put(&mut hw, &mut soft), Ok(()));

    let mut untouched = MockTimerHw::new();
    let mut chip = MockIrqChip::new();
    assert_eq!(timer.unblock(&mut untouched, &mut chip, &mut soft), Ok(()));
    assert_eq!(timer.vtimer().residency(), Residency::Memory);
}

#[test]
fn wrong_state_calls_are_reported_and_touch_nothing() {
    let vm = VmTimer::new();
    let mut timer = VcpuTimer::new();
    let mut hw = MockTimerHw::new();
    let mut chip = MockIrqChip::new();
    let mut soft = MockSoftTimers::new();

    assert_eq!(
        timer.put(&mut hw, &mut soft),
        Err(arch_timer_virt::NotLoaded)
    );
    assert_eq!(
        timer.before_entry(&mut hw, &mut chip, &mut soft),
        Err(Error::NotLoaded)
    );
    assert_eq!(
        timer.after_exit(&mut hw, &mut chip, &mut soft),
        Err(Error::NotLoaded)
    );
    assert_eq!(
        timer.handle_host_irq(&mut hw, &mut chip),
        Ok(arch_timer_virt::HostIrq::NotLoaded)
    );

    let (_vm, mut loaded) = loaded_with(Ticks::ZERO);
    assert_eq!(
        loaded.load(&vm, &mut hw, &mut chip),
        Err(Error::AlreadyLoaded)
    );
    assert!(loaded.is_loaded());
}

#[test]
fn a_failing_interrupt_controller_leaves_the_vcpu_unloaded() {
    let vm = VmTimer::new();
    let mut timer = VcpuTimer::new();
    let mut hw = MockTimerHw::new();
    let mut chip = MockIrqChip::new();
    chip.expect_map_virtual()
        .returning(|_, _| Err(MockChipError));

    assert_eq!(
        timer.load(&vm, &mut hw, &mut chip),
        Err(Error::IrqChip(MockChipError))
    );
    assert!(!timer.is_loaded());
    assert_eq!(timer.vtimer().residency(), Residency::Memory);

    // A later load retries the mapping and succeeds.
    assert_eq!(timer.load(&vm, &mut quiet_hw(), &mut quiet_chip()), Ok(()));
}

#[test]
fn the_mapping_is_made_once() {
    let vm = VmTimer::new();
    let mut timer = VcpuTimer::new();
    let mut chip = quiet_chip();
    chip.checkpoint();
    chip.expect_map_virtual().times(1).returning(|_, _| Ok(()));
    chip.expect_virtual_active().returning(|_| Ok(false));
    chip.expect_set_host_active().returning(|_, _| Ok(()));
    chip.expect_set_host_masked().returning(|_, _| Ok(()));
    let mut hw = quiet_hw();
    hw.expect_vtimer_ctl().return_const(TimerCtl::empty());
    hw.expect_vtimer_cval().return_const(Ticks::ZERO);
    for _ in 0..3 {
        assert_eq!(timer.load(&vm, &mut hw, &mut chip), Ok(()));
        assert_eq!(timer.put(&mut hw, &mut quiet_soft()), Ok(()));
    }
}

/// A vCPU loaded with another VM's interrupt numbers (a VMM that moved it
/// to a new `VmTimer`) drops the old HW mapping and makes the new one,
/// once.
#[test]
fn a_new_vm_configuration_replaces_the_mapping() {
    let ppi = |n| IntId::ppi(n).unwrap_or(VTIMER);
    let first = VmTimer::new();
    let mut second = VmTimer::new();
    assert_eq!(second.set_irqs(ppi(20), ppi(21)), Ok(()));
    let mut timer = VcpuTimer::new();
    let mut seq = Sequence::new();
    let mut chip = quiet_chip();
    chip.checkpoint();
    chip.expect_map_virtual()
        .with(eq(VTIMER), eq(VTIMER))
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _| Ok(()));
    chip.expect_unmap_virtual()
        .with(eq(VTIMER))
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| Ok(()));
    chip.expect_map_virtual()
        .with(eq(ppi(20)), eq(VTIMER))
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _| Ok(()));
    chip.expect_virtual_active().returning(|_| Ok(false));
    chip.expect_set_host_active().returning(|_, _| Ok(()));
    chip.expect_set_host_masked().returning(|_, _| Ok(()));
    let mut hw = quiet_hw();
    hw.expect_vtimer_ctl().return_const(TimerCtl::empty());
    hw.expect_vtimer_cval().return_const(Ticks::ZERO);
    for vm in [&first, &second, &second] {
        assert_eq!(timer.load(vm, &mut hw, &mut chip), Ok(()));
        assert_eq!(timer.put(&mut hw, &mut quiet_soft()), Ok(()));
    }
    assert_eq!(timer.vtimer().irq(), ppi(20));
}

#[test]
fn configured_interrupt_numbers_are_used_at_load() {
    let mut vm = VmTimer::new();
    let ppi = |n| IntId::ppi(n).unwrap_or(VTIMER);
    assert_eq!(vm.set_irqs(ppi(20), ppi(21)), Ok(()));
    assert_eq!(vm.set_host_virtual_ppi(ppi(19)), Ok(()));
    let mut timer = VcpuTimer::new();
    let mut chip = MockIrqChip::new();
    chip.expect_map_virtual()
        .with(eq(ppi(20)), eq(ppi(19)))
        .times(1)
        .returning(|_, _| Ok(()));
    chip.expect_virtual_active()
        .with(eq(ppi(20)))
        .returning(|_| Ok(false));
    chip.expect_set_host_active()
        .with(eq(ppi(19)), eq(false))
        .returning(|_, _| Ok(()));
    chip.expect_set_host_masked()
        .with(eq(ppi(19)), eq(false))
        .returning(|_, _| Ok(()));
    assert_eq!(timer.load(&vm, &mut quiet_hw(), &mut chip), Ok(()));
    assert_eq!(timer.vtimer().irq(), ppi(20));
    assert_eq!(timer.ptimer().irq(), ppi(21));
    assert_eq!(
        vm.set_irqs(ppi(22), ppi(23)),
        Err(arch_timer_virt::ConfigError::ConfigLocked)
    );
}
