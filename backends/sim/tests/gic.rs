//! The model GIC's semantics, on their own.

use arch_timer_virt::{IntId, IrqChip, Ticks, TimerCtl, TimerHw};
use arch_timer_virt_sim::{Machine, VirtualState};

const PPI: IntId = IntId::VIRTUAL_TIMER;

/// The counter frequency of the machines here (a common SoC crystal): the
/// GIC's semantics do not depend on it.
const FREQUENCY_HZ: u32 = 24_000_000;

/// A machine whose CPU 0 virtual timer line is high.
fn line_high() -> Machine {
    let mut m = Machine::new(1, 1, FREQUENCY_HZ);
    m.guest_write_cval(0, Ticks::new(10));
    m.guest_write_ctl(0, 1);
    m.advance(10);
    assert!(m.host_line(0, PPI));
    m
}

#[test]
fn line_follows_enable_imask_and_unsigned_condition() {
    let mut m = Machine::new(1, 1, FREQUENCY_HZ);
    m.guest_write_cval(0, Ticks::new(10));
    m.advance(9);
    m.guest_write_ctl(0, 1);
    assert!(!m.host_line(0, PPI));
    m.advance(1);
    assert!(m.host_line(0, PPI));
    assert!(m.guest_read_ctl(0).istatus());
    m.guest_write_ctl(0, 0b11);
    assert!(!m.host_line(0, PPI), "IMASK lowers the line");
    assert!(m.guest_read_ctl(0).istatus(), "ISTATUS ignores IMASK");
    m.guest_write_ctl(0, 0b101);
    assert_eq!(m.cpu(0).timer.ctl, TimerCtl::ENABLE, "ISTATUS is read-only");
    // An offset above the count wraps the virtual count to the top.
    let mut p = m.ports(0, 0);
    p.timer.set_virtual_offset(Ticks::new(11));
    assert_eq!(m.guest_virtual_count(0), Ticks::MAX);
    assert!(m.host_line(0, PPI));
}

#[test]
fn tval_write_sign_extends() {
    let mut m = Machine::new(1, 1, FREQUENCY_HZ);
    m.advance(1000);
    m.guest_write_tval(0, -10);
    assert_eq!(m.guest_read_cval(0), Ticks::new(990));
    m.guest_write_tval(0, i32::MAX);
    assert_eq!(m.guest_read_cval(0), Ticks::new(1000 + 0x7fff_ffff));
}

#[test]
fn level_ppi_is_signalled_acknowledged_to_active_and_not_signalled_again() {
    let mut m = line_high();
    assert!(m.timer_irq_signalled(0));
    assert_eq!(m.host_acknowledge(0), Some(PPI));
    let state = m.cpu(0).ppis.get(PPI);
    assert!(state.active && state.priority_held);
    assert!(!m.timer_irq_signalled(0), "active PPI is not re-signalled");
    assert_eq!(m.host_acknowledge(0), None);
}

#[test]
fn priority_drop_alone_does_not_deactivate() {
    let mut m = line_high();
    let ppi = m.host_acknowledge(0).unwrap();
    m.host_priority_drop(0, ppi);
    let state = m.cpu(0).ppis.get(ppi);
    assert!(state.active && !state.priority_held);
    m.advance(1000);
    assert!(
        !m.timer_irq_signalled(0),
        "still active after the drop: no storm"
    );
    m.host_deactivate(0, ppi);
    assert!(
        m.timer_irq_signalled(0),
        "line still high: signalled again once inactive"
    );
}

#[test]
fn masked_ppi_is_pending_but_not_signalled() {
    let mut m = line_high();
    let mut p = m.ports(0, 0);
    p.gic.set_host_masked(PPI, true).unwrap();
    assert!(m.host_pending(0, PPI));
    assert!(!m.timer_irq_signalled(0));
    assert_eq!(m.host_acknowledge(0), None);
    let mut p = m.ports(0, 0);
    p.gic.set_host_masked(PPI, false).unwrap();
    assert!(m.timer_irq_signalled(0));
}

#[test]
fn lowered_line_withdraws_pending() {
    let mut m = line_high();
    assert!(m.host_pending(0, PPI));
    m.guest_write_ctl(0, 0);
    assert!(!m.host_pending(0, PPI));
    assert_eq!(m.host_acknowledge(0), None);
}

#[test]
fn hw_deactivation_by_the_guest_clears_the_physical_active_state() {
    let mut m = line_high();
    let ppi = m.host_acknowledge(0).unwrap();
    m.host_priority_drop(0, ppi);
    let mut p = m.ports(0, 0);
    p.gic.map_virtual(IntId::VIRTUAL_TIMER, ppi).unwrap();
    p.gic.set_virtual_level(IntId::VIRTUAL_TIMER, true).unwrap();
    assert_eq!(
        m.virtual_irq(0, IntId::VIRTUAL_TIMER).state,
        VirtualState::Pending
    );
    let intid = m.guest_acknowledge(0).unwrap();
    let p = m.ports(0, 0);
    assert_eq!(p.gic.virtual_active(intid), Ok(true));
    assert!(m.cpu(0).ppis.get(ppi).active);
    m.guest_deactivate(0, 0, intid);
    assert!(
        !m.cpu(0).ppis.get(ppi).active,
        "HW bit: physical deactivated too"
    );
    assert_eq!(m.virtual_irq(0, intid).state, VirtualState::Inactive);
}

#[test]
fn deactivation_without_hw_bit_leaves_the_physical_active() {
    let mut m = line_high();
    let ppi = m.host_acknowledge(0).unwrap();
    m.host_priority_drop(0, ppi);
    let mut p = m.ports(0, 0);
    p.gic.set_virtual_level(IntId::VIRTUAL_TIMER, true).unwrap();
    let intid = m.guest_acknowledge(0).unwrap();
    m.guest_deactivate(0, 0, intid);
    assert!(m.cpu(0).ppis.get(ppi).active);
}

#[test]
fn raising_a_deactivated_line_again_re_pends_it() {
    let mut m = Machine::new(1, 1, FREQUENCY_HZ);
    let mut p = m.ports(0, 0);
    p.gic.map_virtual(IntId::VIRTUAL_TIMER, PPI).unwrap();
    p.gic.set_virtual_level(IntId::VIRTUAL_TIMER, true).unwrap();
    let intid = m.guest_acknowledge(0).unwrap();
    let mut p = m.ports(0, 0);
    p.gic.set_virtual_level(intid, true).unwrap();
    assert_eq!(
        m.virtual_irq(0, intid).state,
        VirtualState::Active,
        "HW LR: not active+pending"
    );
    m.guest_deactivate(0, 0, intid);
    assert_eq!(m.virtual_irq(0, intid).state, VirtualState::Inactive);
    let mut p = m.ports(0, 0);
    p.gic.set_virtual_level(intid, true).unwrap();
    assert_eq!(m.virtual_irq(0, intid).state, VirtualState::Pending);
    assert_eq!(m.virtual_irq(0, intid).raises, 2);
}

#[test]
fn lowering_withdraws_pending_but_leaves_active_to_the_guest() {
    let mut m = Machine::new(1, 1, FREQUENCY_HZ);
    let v = IntId::VIRTUAL_TIMER;
    let mut p = m.ports(0, 0);
    p.gic.set_virtual_level(v, true).unwrap();
    p.gic.set_virtual_level(v, false).unwrap();
    assert_eq!(m.virtual_irq(0, v).state, VirtualState::Inactive);
    let mut p = m.ports(0, 0);
    p.gic.set_virtual_level(v, true).unwrap();
    m.guest_acknowledge(0).unwrap();
    let mut p = m.ports(0, 0);
    p.gic.set_virtual_level(v, false).unwrap();
    assert_eq!(m.virtual_irq(0, v).state, VirtualState::Active);
}

#[test]
fn every_access_is_counted_and_traced() {
    let mut m = Machine::new(1, 1, FREQUENCY_HZ);
    m.set_tracing(true);
    let mut p = m.ports(0, 0);
    p.timer.set_vtimer_cval(Ticks::new(5));
    p.timer.barrier();
    p.timer.set_vtimer_ctl(TimerCtl::ENABLE);
    let _ = p.timer.vtimer_ctl();
    let c = m.counters();
    assert_eq!(
        (c.cval_writes, c.barriers, c.ctl_writes, c.ctl_reads),
        (1, 1, 1, 1)
    );
    assert_eq!(c.vtimer_register_accesses(), 4);
    assert_eq!(m.take_trace().len(), 4);
    assert_eq!(m.ordering_violations(), 0);
    let mut p = m.ports(0, 0);
    p.timer.set_vtimer_ctl(TimerCtl::empty());
    p.timer.set_vtimer_cval(Ticks::new(6));
    p.timer.set_vtimer_ctl(TimerCtl::ENABLE);
    assert_eq!(
        m.ordering_violations(),
        1,
        "CTL after CVAL without isb is caught"
    );
    let mut p = m.ports(0, 0);
    p.timer.set_vtimer_cval(Ticks::new(7));
    assert_eq!(m.ordering_violations(), 2, "CVAL under an enabled timer");
    let mut p = m.ports(0, 0);
    p.timer.set_virtual_offset(Ticks::new(1));
    assert_eq!(m.ordering_violations(), 3, "CNTVOFF under an enabled timer");
}

/// A late acknowledge (the PPI was signalled, its line dropped before the
/// host read the IAR) still returns the PPI and makes it active, unless it
/// is active or masked by then.
#[test]
fn late_acknowledge_returns_a_dropped_ppi_unless_active_or_masked() {
    let mut m = Machine::new(1, 1, FREQUENCY_HZ);
    let ppi = m.timer_ppi();
    let mut p = m.ports(0, 0);
    p.timer.set_vtimer_cval(Ticks::new(5));
    p.timer.barrier();
    p.timer.set_vtimer_ctl(TimerCtl::ENABLE);
    m.advance(5);
    assert!(m.timer_irq_signalled(0));
    // The guest disables its timer: the line drops.
    m.guest_write_ctl(0, 0);
    assert!(!m.timer_irq_signalled(0));
    assert_eq!(
        m.host_acknowledge(0),
        None,
        "an ordinary acknowledge sees nothing"
    );
    assert_eq!(m.host_acknowledge_late(0), Some(ppi));
    let state = m.cpu(0).ppis.get(ppi);
    assert!(state.active && state.priority_held);
    assert_eq!(m.host_acknowledge_late(0), None, "already active");
    m.host_priority_drop(0, ppi);
    m.host_deactivate(0, ppi);
    let mut p = m.ports(0, 0);
    p.gic.set_host_masked(ppi, true).unwrap();
    assert_eq!(m.host_acknowledge_late(0), None, "masked");
}
