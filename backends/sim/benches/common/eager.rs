//! The eager baseline: a hypervisor without residency tracking, which saves
//! the virtual timer on every exit and restores it on every entry.
//!
//! Exit: read CTL and CVAL, disable the timer, write 0 to `CNTVOFF_EL2`.
//! Entry: the physical PPI's active state as KVM set it on every entry
//! before residency tracking (active while the line is high or the guest
//! has the interrupt active, which needs a vGIC look-up with the line low;
//! the write skipped while it is known clear), then write `CNTVOFF_EL2`,
//! CVAL, `isb`, CTL. The guest's line level is computed from the saved copy
//! on exit (no further reads). This file is included by the benchmark and
//! by the `report` example.

use arch_timer_virt::{IntId, IrqChip, SoftTimer, SoftTimers, Ticks, TimerCtl, TimerHw};

/// One vCPU's virtual timer, kept in memory between runs.
#[derive(Clone, Debug, Default)]
pub struct EagerVcpu {
    ctl: TimerCtl,
    cval: Ticks,
    offset: Ticks,
    level: bool,
    mapped: bool,
    /// The physical PPI is known inactive (KVM's cache of the "active
    /// clear" state; an "active set" cannot be cached, the guest's
    /// deactivation clears it behind the hypervisor's back).
    known_clear: bool,
}

impl EagerVcpu {
    /// Scheduled onto a CPU: map the interrupt once, trap the EL1
    /// physical timer.
    pub fn load<H: TimerHw, C: IrqChip>(&mut self, hw: &mut H, chip: &mut C) {
        if !self.mapped {
            let _ = chip.map_virtual(IntId::VIRTUAL_TIMER, IntId::VIRTUAL_TIMER);
            self.mapped = true;
        }
        hw.set_el1_physical_access(false);
    }

    /// Scheduled away: nothing of the timer is on the CPU between runs,
    /// and the cached PPI state is no longer trusted.
    pub fn put<H: TimerHw>(&mut self, hw: &mut H) {
        hw.set_el1_physical_access(true);
        self.known_clear = false;
    }

    /// Right before entering the guest: the physical PPI's active state,
    /// then restore everything.
    pub fn entry<H: TimerHw, C: IrqChip>(&mut self, hw: &mut H, chip: &mut C) {
        let active = self.level || chip.virtual_active(IntId::VIRTUAL_TIMER).unwrap_or(false);
        if active || !self.known_clear {
            let _ = chip.set_host_active(IntId::VIRTUAL_TIMER, active);
            self.known_clear = !active;
        }
        hw.set_virtual_offset(self.offset);
        hw.set_vtimer_cval(self.cval);
        hw.barrier();
        hw.set_vtimer_ctl(self.ctl.writable());
    }

    /// Right after the guest exits: save everything, update the line.
    pub fn exit<H: TimerHw, C: IrqChip>(&mut self, hw: &mut H, chip: &mut C) {
        self.ctl = hw.vtimer_ctl();
        self.cval = hw.vtimer_cval();
        hw.set_vtimer_ctl(TimerCtl::empty());
        hw.set_virtual_offset(Ticks::ZERO);
        let fire = self.ctl.output_asserted();
        if fire != self.level {
            self.level = fire;
            let _ = chip.set_virtual_level(IntId::VIRTUAL_TIMER, fire);
        }
    }

    /// About to sleep: the state is already in memory; arm the wake-up.
    pub fn block<H: TimerHw, S: SoftTimers>(&mut self, hw: &mut H, soft: &mut S) {
        let now = hw.physical_count();
        if self.ctl.can_fire() {
            let count = now.wrapping_sub(self.offset);
            let at = match self.cval.checked_sub(count) {
                Some(delta) => now.saturating_add(delta),
                None => now,
            };
            soft.arm(SoftTimer::Background, at);
        }
    }

    /// Woken.
    pub fn unblock<S: SoftTimers>(&mut self, soft: &mut S) {
        soft.cancel(SoftTimer::Background);
    }
}
