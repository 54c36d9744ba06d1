//! Interrupt identifiers.

use core::fmt;

use crate::ConfigError;

/// A GIC interrupt identifier (INTID): the one type for interrupt numbers
/// across the core and every backend (timer PPIs, what a backend's
/// `acknowledge` returns, the maintenance interrupt).
///
/// Built only through a validating constructor: [`IntId::ppi`] (16..=31,
/// the range every generic timer interrupt lives in, and what the timer
/// configuration requires), or [`IntId::new`] for any INTID a GIC can
/// signal (SGIs 0..=15, PPIs, SPIs 32..=1019, LPIs from 8192).
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
    /// The GIC virtual CPU interface's maintenance interrupt, the usual
    /// INTID (QEMU `virt`, the Arm base boards; the firmware says).
    pub const MAINTENANCE: Self = Self(25);

    /// The last SPI, INTID 1019 (1020..=1023 are special).
    pub const LAST_SPI: u32 = 1019;
    /// The first LPI, INTID 8192 (GICv3).
    pub const FIRST_LPI: u32 = 8192;
    /// One past the largest INTID a GICv3 can report (24 bits).
    pub const INTID_LIMIT: u32 = 1 << 24;

    /// The PPI with INTID `intid`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidPpi`] unless `intid` is in 16..=31.
    pub const fn ppi(intid: u32) -> Result<Self, ConfigError> {
        if intid >= Self::FIRST_PPI && intid <= Self::LAST_PPI {
            Ok(Self(intid))
        } else {
            Err(ConfigError::InvalidPpi(intid))
        }
    }

    /// Any interrupt a GIC can signal: an SGI, PPI or SPI (0..=1019) or an
    /// LPI (8192 up to 2^24).
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidIntId`] for the special INTIDs 1020..=1023,
    /// the reserved 1024..=8191 and anything from 2^24.
    pub const fn new(intid: u32) -> Result<Self, ConfigError> {
        if intid <= Self::LAST_SPI || (intid >= Self::FIRST_LPI && intid < Self::INTID_LIMIT) {
            Ok(Self(intid))
        } else {
            Err(ConfigError::InvalidIntId(intid))
        }
    }

    /// Whether this is a PPI (16..=31).
    #[must_use]
    #[inline]
    pub const fn is_ppi(self) -> bool {
        self.0 >= Self::FIRST_PPI && self.0 <= Self::LAST_PPI
    }

    /// Whether this is an SGI (0..=15).
    #[must_use]
    pub const fn is_sgi(self) -> bool {
        self.0 < Self::FIRST_PPI
    }

    /// The INTID as a number.
    #[must_use]
    #[inline]
    pub const fn get(self) -> u32 {
        self.0
    }

    /// The bit for this interrupt in a 32-bit SGI/PPI register such as
    /// `GICR_ISACTIVER0` or `GICD_ISENABLER0` (bit *n* is INTID *n*); 0 for
    /// an INTID from 32 (an SPI or LPI has no bit there).
    #[must_use]
    #[inline]
    pub const fn bit(self) -> u32 {
        match 1u32.checked_shl(self.0) {
            Some(bit) => bit,
            None => 0,
        }
    }
}

impl From<IntId> for u32 {
    fn from(intid: IntId) -> Self {
        intid.0
    }
}

impl TryFrom<u32> for IntId {
    type Error = ConfigError;

    /// [`IntId::new`].
    fn try_from(intid: u32) -> Result<Self, ConfigError> {
        Self::new(intid)
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
            assert_eq!(IntId::ppi(n), Err(ConfigError::InvalidPpi(n)));
        }
    }

    #[test]
    fn new_accepts_sgis_ppis_spis_and_lpis_only() {
        for n in [0, 15, 16, 31, 32, 1019, 8192, (1 << 24) - 1] {
            assert_eq!(IntId::new(n).map(IntId::get), Ok(n));
            assert_eq!(IntId::try_from(n).map(IntId::get), Ok(n));
        }
        for n in [1020, 1023, 1024, 8191, 1 << 24, u32::MAX] {
            assert_eq!(IntId::new(n), Err(ConfigError::InvalidIntId(n)));
        }
        assert!(IntId::new(3).is_ok_and(IntId::is_sgi));
        assert!(IntId::new(40).is_ok_and(|i| !i.is_ppi() && !i.is_sgi()));
    }

    #[test]
    fn bit_positions_match_the_intid() {
        assert_eq!(IntId::VIRTUAL_TIMER.bit(), 1 << 27);
        assert_eq!(IntId::ppi(31).map(IntId::bit), Ok(1 << 31));
        assert_eq!(IntId::ppi(16).map(IntId::bit), Ok(1 << 16));
        assert_eq!(IntId::new(32).map(IntId::bit), Ok(0));
        assert_eq!(IntId::new(8192).map(IntId::bit), Ok(0));
    }
}
