//! Counter ticks: the unit of every count, compare value and offset.

use core::fmt;

/// A value of the system counter, or a distance between two such values,
/// in counter ticks (not nanoseconds: the rate is `CNTFRQ_EL0`).
///
/// The generic timer compares 64-bit unsigned values (Arm ARM D11.2.4,
/// "Operation of the CompareValue views of the timers"), so this is a plain
/// `u64`. Every operation the library does on it is explicitly wrapping,
/// saturating or checked, so guest-chosen values never overflow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct Ticks(u64);

impl Ticks {
    /// Zero ticks.
    pub const ZERO: Self = Self(0);
    /// The largest counter value.
    pub const MAX: Self = Self(u64::MAX);

    /// Wraps a raw counter value.
    #[must_use]
    #[inline]
    pub const fn new(ticks: u64) -> Self {
        Self(ticks)
    }

    /// The raw counter value.
    #[must_use]
    #[inline]
    pub const fn get(self) -> u64 {
        self.0
    }

    /// `self - rhs` modulo 2^64, as the counter hardware computes
    /// `CNTVCT = CNTPCT - CNTVOFF`.
    #[must_use]
    #[inline]
    pub const fn wrapping_sub(self, rhs: Self) -> Self {
        Self(self.0.wrapping_sub(rhs.0))
    }

    /// `self + rhs` modulo 2^64.
    #[must_use]
    #[inline]
    pub const fn wrapping_add(self, rhs: Self) -> Self {
        Self(self.0.wrapping_add(rhs.0))
    }

    /// `self + rhs`, or [`Ticks::MAX`] where that would overflow.
    #[must_use]
    #[inline]
    pub const fn saturating_add(self, rhs: Self) -> Self {
        Self(self.0.saturating_add(rhs.0))
    }

    /// `self - rhs`, or [`Ticks::ZERO`] where that would go below zero.
    #[must_use]
    #[inline]
    pub const fn saturating_sub(self, rhs: Self) -> Self {
        Self(self.0.saturating_sub(rhs.0))
    }

    /// `self - rhs`, or `None` where that would go below zero.
    #[must_use]
    #[inline]
    pub const fn checked_sub(self, rhs: Self) -> Option<Self> {
        match self.0.checked_sub(rhs.0) {
            Some(v) => Some(Self(v)),
            None => None,
        }
    }
}

impl From<u64> for Ticks {
    fn from(ticks: u64) -> Self {
        Self(ticks)
    }
}

impl From<Ticks> for u64 {
    fn from(ticks: Ticks) -> Self {
        ticks.0
    }
}

impl fmt::Display for Ticks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ticks", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_never_overflows() {
        assert_eq!(Ticks::MAX.saturating_add(Ticks::new(1)), Ticks::MAX);
        assert_eq!(Ticks::ZERO.saturating_sub(Ticks::new(1)), Ticks::ZERO);
        assert_eq!(Ticks::ZERO.wrapping_sub(Ticks::new(1)), Ticks::MAX);
        assert_eq!(Ticks::MAX.wrapping_add(Ticks::new(2)), Ticks::new(1));
        assert_eq!(Ticks::new(3).checked_sub(Ticks::new(4)), None);
        assert_eq!(
            Ticks::new(4).checked_sub(Ticks::new(3)),
            Some(Ticks::new(1))
        );
    }

    #[test]
    fn converts_both_ways() {
        assert_eq!(u64::from(Ticks::from(42)), 42);
        assert_eq!(Ticks::new(7).get(), 7);
    }
}
