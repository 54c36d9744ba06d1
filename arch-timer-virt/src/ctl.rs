//! The timer control register value (`CNTV_CTL_EL0`, `CNTP_CTL_EL0`).

use core::fmt;
use core::ops::BitOr;

/// A timer control register value: `CNTx_CTL_EL0` (Arm ARM D24.10, "Generic
/// Timer registers").
///
/// | bit | name | meaning |
/// |---|---|---|
/// | 0 | ENABLE | the timer is enabled |
/// | 1 | IMASK | the timer's interrupt output is masked |
/// | 2 | ISTATUS | read-only: the timer condition is met |
///
/// Values read from hardware keep every bit ([`TimerCtl::from_bits_retain`]).
/// Values a guest or VMM *writes* go through [`TimerCtl::from_write`], which
/// keeps only ENABLE and IMASK: ISTATUS is read-only and the other bits are
/// RES0.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct TimerCtl(u64);

impl TimerCtl {
    /// Bit 0, ENABLE.
    pub const ENABLE: Self = Self(1 << 0);
    /// Bit 1, IMASK.
    pub const IMASK: Self = Self(1 << 1);
    /// Bit 2, ISTATUS (read-only).
    pub const ISTATUS: Self = Self(1 << 2);
    /// The bits a write can change.
    pub const WRITABLE: Self = Self(Self::ENABLE.0 | Self::IMASK.0);

    /// The timer disabled, nothing masked, condition not met.
    #[must_use]
    #[inline]
    pub const fn empty() -> Self {
        Self(0)
    }

    /// A value exactly as read from the register, all bits kept.
    #[must_use]
    #[inline]
    pub const fn from_bits_retain(bits: u64) -> Self {
        Self(bits)
    }

    /// A value as a guest or VMM write leaves it: ISTATUS and unknown bits
    /// are dropped.
    #[must_use]
    #[inline]
    pub const fn from_write(bits: u64) -> Self {
        Self(bits & Self::WRITABLE.0)
    }

    /// The raw register value.
    #[must_use]
    #[inline]
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// Whether every bit set in `other` is set in `self`.
    #[must_use]
    #[inline]
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// The bits set in either value.
    #[must_use]
    #[inline]
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// The bits of `self` that are not in `other`.
    #[must_use]
    #[inline]
    pub const fn difference(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }

    /// ENABLE is set.
    #[must_use]
    #[inline]
    pub const fn is_enabled(self) -> bool {
        self.contains(Self::ENABLE)
    }

    /// IMASK is set.
    #[must_use]
    #[inline]
    pub const fn is_masked(self) -> bool {
        self.contains(Self::IMASK)
    }

    /// ISTATUS is set (meaningful only when ENABLE is set).
    #[must_use]
    #[inline]
    pub const fn istatus(self) -> bool {
        self.contains(Self::ISTATUS)
    }

    /// Enabled and not masked: the timer's output follows its condition.
    #[must_use]
    #[inline]
    pub const fn can_fire(self) -> bool {
        self.is_enabled() && !self.is_masked()
    }

    /// Whether the interrupt output of a timer with this control value is
    /// asserted, judged from ISTATUS as the hardware reported it.
    #[must_use]
    #[inline]
    pub const fn output_asserted(self) -> bool {
        self.can_fire() && self.istatus()
    }

    /// The writable bits only, as a write of this value would store them.
    #[must_use]
    #[inline]
    pub const fn writable(self) -> Self {
        Self(self.0 & Self::WRITABLE.0)
    }

    /// This value with ISTATUS set to `met`.
    #[must_use]
    #[inline]
    pub const fn with_istatus(self, met: bool) -> Self {
        if met {
            self.union(Self::ISTATUS)
        } else {
            self.difference(Self::ISTATUS)
        }
    }
}

impl BitOr for TimerCtl {
    type Output = Self;

    fn bitor(self, rhs: Self) -> Self {
        self.union(rhs)
    }
}

impl fmt::Debug for TimerCtl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TimerCtl(")?;
        let mut sep = "";
        for (bit, name) in [
            (Self::ENABLE, "ENABLE"),
            (Self::IMASK, "IMASK"),
            (Self::ISTATUS, "ISTATUS"),
        ] {
            if self.contains(bit) {
                write!(f, "{sep}{name}")?;
                sep = " | ";
            }
        }
        let other = self.difference(Self::ENABLE | Self::IMASK | Self::ISTATUS);
        if other.0 != 0 {
            write!(f, "{sep}{:#x}", other.0)?;
        } else if sep.is_empty() {
            write!(f, "0")?;
        }
        write!(f, ")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_drop_istatus_and_unknown_bits() {
        let ctl = TimerCtl::from_write(u64::MAX);
        assert_eq!(ctl, TimerCtl::ENABLE | TimerCtl::IMASK);
        assert!(!ctl.istatus());
        assert_eq!(TimerCtl::from_write(0b100), TimerCtl::empty());
    }

    #[test]
    fn output_needs_enable_unmasked_and_istatus() {
        let all = TimerCtl::ENABLE | TimerCtl::ISTATUS;
        assert!(all.output_asserted());
        assert!(!(all | TimerCtl::IMASK).output_asserted());
        assert!(!TimerCtl::ISTATUS.output_asserted());
        assert!(!TimerCtl::ENABLE.output_asserted());
    }

    #[test]
    fn istatus_can_be_set_and_cleared() {
        let ctl = TimerCtl::ENABLE.with_istatus(true);
        assert!(ctl.istatus());
        assert_eq!(ctl.with_istatus(false), TimerCtl::ENABLE);
        assert_eq!(ctl.writable(), TimerCtl::ENABLE);
    }

    #[test]
    fn debug_names_bits() {
        use std::format;
        assert_eq!(format!("{:?}", TimerCtl::empty()), "TimerCtl(0)");
        assert_eq!(
            format!("{:?}", TimerCtl::ENABLE | TimerCtl::ISTATUS),
            "TimerCtl(ENABLE | ISTATUS)"
        );
        assert_eq!(
            format!("{:?}", TimerCtl::from_bits_retain(0x13)),
            "TimerCtl(ENABLE | IMASK | 0x10)"
        );
    }
}
