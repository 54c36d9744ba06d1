//! One timer's state: [`TimerContext`].

use crate::{IntId, Ticks, TimerCtl};

/// Which of a vCPU's two EL1 timers.
///
/// `#[non_exhaustive]`: a later version may add timers (the EL2 timers of
/// a nested guest, FEAT_NV2); match with a wildcard arm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TimerId {
    /// The EL1 virtual timer (`CNTV_*`), run directly on the hardware.
    #[doc(alias = "vtimer")]
    Virtual,
    /// The EL1 physical timer (`CNTP_*`): emulated, or direct where the VM
    /// and the CPU allow it ([`TimerMap`](crate::TimerMap)).
    #[doc(alias = "ptimer")]
    Physical,
}

/// Where a timer's live state is.
///
/// Not part of the stable API (hidden from the docs): the library's own
/// bookkeeping, public only so that `arch-timer-virt-sim`'s invariant
/// checks can see whether a `put` after a `block` saved again. It may
/// change in any release.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[doc(alias = "loaded")]
#[doc(hidden)]
pub enum Residency {
    /// On the timer registers of the CPU the vCPU is loaded on; the copy in
    /// memory may be stale.
    Hardware,
    /// In the [`TimerContext`]; the hardware holds nothing of it.
    Memory,
}

/// The state of one guest timer: control, compare value, counter offset,
/// the level of its virtual interrupt line and where the state lives.
#[derive(Clone, Debug, PartialEq, Eq)]
#[doc(alias = "arch_timer_context")]
pub struct TimerContext {
    id: TimerId,
    ctl: TimerCtl,
    cval: Ticks,
    offset: Ticks,
    irq: IntId,
    level: bool,
    residency: Residency,
}

impl TimerContext {
    /// A disabled timer, with its state in memory.
    #[must_use]
    pub(crate) const fn new(id: TimerId, irq: IntId) -> Self {
        Self {
            id,
            ctl: TimerCtl::empty(),
            cval: Ticks::ZERO,
            offset: Ticks::ZERO,
            irq,
            level: false,
            residency: Residency::Memory,
        }
    }

    /// Which timer this is.
    #[must_use]
    #[inline]
    pub const fn id(&self) -> TimerId {
        self.id
    }

    /// The control value last known in memory. While the state is on the
    /// hardware ([`Residency::Hardware`]) this may be stale.
    #[must_use]
    #[inline]
    pub const fn ctl(&self) -> TimerCtl {
        self.ctl
    }

    /// The compare value last known in memory (see [`ctl`](Self::ctl)).
    #[must_use]
    #[inline]
    pub const fn cval(&self) -> Ticks {
        self.cval
    }

    /// The counter offset: this timer counts `physical count - offset`.
    #[must_use]
    #[inline]
    pub const fn offset(&self) -> Ticks {
        self.offset
    }

    /// The guest's INTID for this timer.
    #[must_use]
    #[inline]
    pub const fn irq(&self) -> IntId {
        self.irq
    }

    /// The level of the virtual interrupt line as last told to the
    /// interrupt controller (or to userspace).
    #[must_use]
    #[inline]
    pub const fn level(&self) -> bool {
        self.level
    }

    /// Where the live state is. Not part of the stable API (see
    /// [`Residency`]).
    #[must_use]
    #[doc(hidden)]
    #[inline]
    pub const fn residency(&self) -> Residency {
        self.residency
    }

    /// Enabled and not masked: the line follows the timer condition.
    #[doc(alias = "kvm_timer_irq_can_fire")]
    #[must_use]
    #[inline]
    pub const fn can_fire(&self) -> bool {
        self.ctl.can_fire()
    }

    /// The timer's count when the physical count is `physical`.
    #[must_use]
    #[inline]
    pub const fn count(&self, physical: Ticks) -> Ticks {
        physical.wrapping_sub(self.offset)
    }

    /// The timer condition, `count >= CVAL` (unsigned, as the hardware
    /// compares).
    #[must_use]
    #[inline]
    pub const fn condition_met(&self, physical: Ticks) -> bool {
        self.count(physical).get() >= self.cval.get()
    }

    /// Whether the timer's output is asserted at `physical`.
    #[doc(alias = "kvm_timer_should_fire")]
    #[must_use]
    #[inline]
    pub const fn should_fire(&self, physical: Ticks) -> bool {
        self.can_fire() && self.condition_met(physical)
    }

    /// How long from `physical` until the output asserts: `None` if the
    /// timer cannot fire, zero if it already has.
    #[doc(alias = "kvm_timer_compute_delta")]
    #[must_use]
    pub const fn ticks_until_expiry(&self, physical: Ticks) -> Option<Ticks> {
        if !self.can_fire() {
            return None;
        }
        match self.cval.checked_sub(self.count(physical)) {
            Some(delta) => Some(delta),
            None => Some(Ticks::ZERO),
        }
    }

    /// The physical count at which the output asserts, seen from
    /// `physical`: `None` if the timer cannot fire, `physical` if it already
    /// has, [`Ticks::MAX`] if that lies beyond the counter's range.
    #[must_use]
    pub const fn expiry(&self, physical: Ticks) -> Option<Ticks> {
        match self.ticks_until_expiry(physical) {
            Some(delta) => Some(physical.saturating_add(delta)),
            None => None,
        }
    }

    /// TVAL as the guest would read it at `physical`: the low 32 bits of
    /// `CVAL - count`, signed.
    #[must_use]
    #[allow(clippy::cast_possible_truncation)] // the truncation is the architecture's
    pub const fn tval(&self, physical: Ticks) -> i32 {
        (self.cval.wrapping_sub(self.count(physical)).get() as u32).cast_signed()
    }

    #[inline]
    pub(crate) const fn set_ctl(&mut self, ctl: TimerCtl) {
        self.ctl = ctl;
    }

    #[inline]
    pub(crate) const fn set_cval(&mut self, cval: Ticks) {
        self.cval = cval;
    }

    pub(crate) const fn set_offset(&mut self, offset: Ticks) {
        self.offset = offset;
    }

    pub(crate) const fn set_irq(&mut self, irq: IntId) {
        self.irq = irq;
    }

    #[inline]
    pub(crate) const fn set_level(&mut self, level: bool) {
        self.level = level;
    }

    #[inline]
    pub(crate) const fn set_residency(&mut self, residency: Residency) {
        self.residency = residency;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn armed(cval: u64, offset: u64) -> TimerContext {
        let mut t = TimerContext::new(TimerId::Virtual, IntId::VIRTUAL_TIMER);
        t.set_ctl(TimerCtl::ENABLE);
        t.set_cval(Ticks::new(cval));
        t.set_offset(Ticks::new(offset));
        t
    }

    #[test]
    fn condition_uses_offset_count() {
        let t = armed(100, 1000);
        assert!(!t.should_fire(Ticks::new(1099)));
        assert!(t.should_fire(Ticks::new(1100)));
        assert_eq!(t.ticks_until_expiry(Ticks::new(1090)), Some(Ticks::new(10)));
        assert_eq!(t.expiry(Ticks::new(1090)), Some(Ticks::new(1100)));
        assert_eq!(t.expiry(Ticks::new(5000)), Some(Ticks::new(5000)));
    }

    #[test]
    fn disabled_or_masked_never_fires() {
        let mut t = armed(0, 0);
        t.set_ctl(TimerCtl::ENABLE | TimerCtl::IMASK);
        assert!(!t.should_fire(Ticks::MAX));
        assert_eq!(t.expiry(Ticks::ZERO), None);
        t.set_ctl(TimerCtl::empty());
        assert_eq!(t.ticks_until_expiry(Ticks::ZERO), None);
        assert!(t.condition_met(Ticks::ZERO));
    }

    #[test]
    fn cval_at_the_top_of_the_range_does_not_overflow() {
        let t = armed(u64::MAX, 0);
        assert!(!t.should_fire(Ticks::new(u64::MAX - 1)));
        assert!(t.should_fire(Ticks::MAX));
        assert_eq!(t.expiry(Ticks::ZERO), Some(Ticks::MAX));
        // With an offset the physical deadline lies beyond the counter.
        let t = armed(u64::MAX, 10);
        assert_eq!(t.expiry(Ticks::new(20)), Some(Ticks::MAX));
    }

    #[test]
    fn offset_larger_than_the_count_wraps_like_hardware() {
        // CNTVCT = CNTPCT - CNTVOFF wraps: a huge virtual count meets any CVAL.
        let t = armed(5, 100);
        assert_eq!(t.count(Ticks::new(50)), Ticks::new(u64::MAX - 49));
        assert!(t.should_fire(Ticks::new(50)));
        assert!(!t.should_fire(Ticks::new(100)));
        assert!(t.should_fire(Ticks::new(105)));
    }

    #[test]
    fn tval_is_signed_low_32_bits() {
        let t = armed(1000, 0);
        assert_eq!(t.tval(Ticks::new(900)), 100);
        assert_eq!(t.tval(Ticks::new(1001)), -1);
        let far = armed(u64::from(u32::MAX) + 5, 0);
        assert_eq!(far.tval(Ticks::ZERO), 4);
    }
}
