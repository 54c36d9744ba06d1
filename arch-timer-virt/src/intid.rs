//! Interrupt identifiers.

use core::fmt;

use crate::Error;

/// A GIC interrupt identifier (INTID) of a private peripheral interrupt
/// (PPI), 16..=31: the range every generic timer interrupt lives in.
///
/// Built only through [`IntId::ppi`], which rejects anything else, so an
/// `IntId` held by the library is always a valid PPI.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct IntId(u32);

impl IntId {
    /// The first PPI, INTID 16.
    pub const FIRST_PPI: u32 = 16;
    /// The last PPI, INTID 31.
    pub const LAST_PPI: u32 = 31;

    /// EL1 virtual timer, the usual INTID (QEMU `virt` and most boards).
    pub const VIRTUAL_TIMER: Self = Self(27);
    /// EL1 physical timer, the usual INTID.
    pub const PHYSICAL_TIMER: Self = Self(30);
    /// EL2 physical timer, the usual INTID.
    pub const HYP_PHYSICAL_TIMER: Self = Self(26);
    /// EL2 virtual timer, the usual INTID.
    pub const HYP_VIRTUAL_TIMER: Self = Self(28);

    /// The PPI with INTID `intid`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPpi`] unless `intid` is in 16..=31.
    pub const fn ppi(intid: u32) -> Result<Self, Error> {
        if intid >= Self::FIRST_PPI && intid <= Self::LAST_PPI {
            Ok(Self(intid))
        } else {
            Err(Error::InvalidPpi(intid))
        }
    }

    /// The INTID as a number.
    #[must_use]
    pub const fn get(self) -> u32 {
        self.0
    }

    /// The bit for this interrupt in a 32-bit SGI/PPI register such as
    /// `GICR_ISACTIVER0` or `GICD_ISENABLER0` (bit *n* is INTID *n*).
    #[must_use]
    pub const fn bit(self) -> u32 {
        1 << self.0
    }
}

impl From<IntId> for u32 {
    fn from(intid: IntId) -> Self {
        intid.0
    }
}

impl TryFrom<u32> for IntId {
    type Error = Error;

    fn try_from(intid: u32) -> Result<Self, Error> {
        Self::ppi(intid)
    }
}

impl fmt::Debug for IntId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IntId({})", self.0)
    }
}

impl fmt::Display for IntId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "INTID {}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_exactly_the_ppis() {
        for n in 16..=31 {
            assert_eq!(IntId::ppi(n).map(IntId::get), Ok(n));
        }
        for n in [0, 15, 32, 1019, 1023, u32::MAX] {
            assert_eq!(IntId::ppi(n), Err(Error::InvalidPpi(n)));
        }
    }

    #[test]
    fn bit_positions_match_the_intid() {
        assert_eq!(IntId::VIRTUAL_TIMER.bit(), 1 << 27);
        assert_eq!(IntId::ppi(31).map(IntId::bit), Ok(1 << 31));
        assert_eq!(IntId::ppi(16).map(IntId::bit), Ok(1 << 16));
    }
}
