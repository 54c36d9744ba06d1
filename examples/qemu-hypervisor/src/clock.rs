//! Time in the example: the counter frequency and conversions between
//! counter ticks and microseconds.
//!
//! Nothing in the hypervisor or its guests assumes a counter frequency.
//! Every period, bound, deadline and limit is written in time units
//! (microseconds) and turned into ticks with the frequency read from
//! `CNTFRQ_EL0` once at start-up: by the hypervisor on its boot CPU, and by
//! each guest for itself (firmware sets `CNTFRQ_EL0` and a guest may read
//! it). QEMU 7.2 runs the counter at 62.5 MHz, QEMU 9 and later at 1 GHz on
//! `-machine virt` (62.5 MHz on the older machine types such as `virt-8.2`),
//! hardware at whatever its firmware says, 1 GHz from Armv8.6 on. A
//! `CNTFRQ_EL0` of 0 means firmware never set it: [`Clock::from_cntfrq`]
//! refuses it and the hypervisor stops at start-up with a message.

use core::fmt;
use core::num::NonZeroU64;

/// Microseconds in a second.
const US_PER_S: u128 = 1_000_000;

/// The counter frequency, non-zero, and what follows from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    hz: NonZeroU64,
}

/// Why a `CNTFRQ_EL0` value cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClockError {
    /// `CNTFRQ_EL0` reads 0: the firmware that started us never set it.
    Unset,
}

impl fmt::Display for ClockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unset => f.write_str(
                "CNTFRQ_EL0 is 0: the firmware never set the counter frequency, so no period, \
                 bound or deadline can be turned into counter ticks",
            ),
        }
    }
}

impl Clock {
    /// A clock of `hz` counter ticks per second; `None` for 0.
    #[must_use]
    pub const fn new(hz: u64) -> Option<Self> {
        match NonZeroU64::new(hz) {
            Some(hz) => Some(Self { hz }),
            None => None,
        }
    }

    /// The clock a `CNTFRQ_EL0` value describes: its low 32 bits (the rest
    /// is RES0).
    ///
    /// # Errors
    ///
    /// [`ClockError::Unset`] if the frequency is 0.
    pub const fn from_cntfrq(cntfrq: u64) -> Result<Self, ClockError> {
        match Self::new(cntfrq & 0xffff_ffff) {
            Some(clock) => Ok(clock),
            None => Err(ClockError::Unset),
        }
    }

    /// Counter ticks per second.
    #[must_use]
    pub const fn hz(self) -> u64 {
        self.hz.get()
    }

    /// The ticks in `us` microseconds, rounded up (a non-zero time is at
    /// least one tick), saturating at `u64::MAX`.
    #[must_use]
    pub fn ticks_us(self, us: u64) -> u64 {
        let ticks = (u128::from(us) * u128::from(self.hz.get())).div_ceil(US_PER_S);
        u64::try_from(ticks).unwrap_or(u64::MAX)
    }

    /// The ticks in `ms` milliseconds (see [`Clock::ticks_us`]).
    #[must_use]
    pub fn ticks_ms(self, ms: u64) -> u64 {
        self.ticks_us(ms.saturating_mul(1000))
    }

    /// The ticks in `us` microseconds as a timer's `TVAL` (a signed 32-bit
    /// count of ticks): at most `i32::MAX` ticks, 2.1 s at 1 GHz.
    #[must_use]
    pub fn tval_us(self, us: u64) -> u64 {
        self.ticks_us(us).min(i32::MAX.unsigned_abs().into())
    }

    /// `ticks` in whole microseconds, rounded down.
    #[must_use]
    pub fn us(self, ticks: u64) -> u64 {
        let us = u128::from(ticks) * US_PER_S / u128::from(self.hz.get());
        u64::try_from(us).unwrap_or(u64::MAX)
    }
}

/// A timer's `TVAL` register value as what it is, a signed 32-bit number
/// of ticks (negative once the compare value has passed): the low 32 bits,
/// sign-extended.
#[must_use]
pub fn tval_signed(value: u64) -> i32 {
    let low = u32::try_from(value & 0xffff_ffff).unwrap_or(0);
    i32::from_ne_bytes(low.to_ne_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frequencies under test: QEMU 7.2 (62.5 MHz), QEMU 10 `virt` (1 GHz),
    /// a common SoC crystal (24 MHz), and an odd one.
    const FREQUENCIES_UNDER_TEST: [u64; 4] = [62_500_000, 1_000_000_000, 24_000_000, 19_200_001];
    /// A slow counter under test (a 32 kHz crystal), for rounding.
    const SLOW_FREQUENCY_UNDER_TEST: u64 = 32_768;
    /// The 1 GHz entry of [`FREQUENCIES_UNDER_TEST`].
    const GHZ_UNDER_TEST: u64 = FREQUENCIES_UNDER_TEST[1];

    #[test]
    fn zero_is_refused() {
        assert_eq!(Clock::from_cntfrq(0), Err(ClockError::Unset));
        // Only the low 32 bits are the frequency.
        assert_eq!(Clock::from_cntfrq(1 << 32), Err(ClockError::Unset));
        assert!(Clock::new(0).is_none());
    }

    #[test]
    fn conversions_round_trip() {
        for hz in FREQUENCIES_UNDER_TEST {
            let c = Clock::from_cntfrq(hz).unwrap();
            assert_eq!(c.hz(), hz);
            assert_eq!(c.ticks_ms(1000), hz);
            assert_eq!(c.us(hz), 1_000_000);
            for us in [1, 7, 1000, 250_000, 20_000_000] {
                let ticks = c.ticks_us(us);
                // Rounded up: never shorter than asked, at most a tick longer.
                assert!(u128::from(ticks) * 1_000_000 >= u128::from(us) * u128::from(hz));
                assert!(u128::from(ticks - 1) * 1_000_000 < u128::from(us) * u128::from(hz));
                assert_eq!(c.us(ticks), us);
            }
            assert_eq!(c.ticks_us(0), 0);
            assert_eq!(c.ticks_us(u64::MAX), u64::MAX);
        }
    }

    #[test]
    fn slow_counter_has_no_zero_periods() {
        let c = Clock::new(SLOW_FREQUENCY_UNDER_TEST).unwrap();
        assert_eq!(c.ticks_us(1), 1);
        assert_eq!(c.us(1), 30);
    }

    #[test]
    fn tval_is_signed_32_bit() {
        assert_eq!(tval_signed(5), 5);
        assert_eq!(tval_signed((-1000_i64).cast_unsigned()), -1000);
        // A 64-bit read with junk above bit 31 (RES0 in the register).
        assert_eq!(tval_signed(0x1234_ffff_fff0), -16);
        let c = Clock::new(GHZ_UNDER_TEST).unwrap();
        assert_eq!(c.tval_us(1_000_000), GHZ_UNDER_TEST);
        assert_eq!(c.tval_us(10_000_000), u64::from(i32::MAX.unsigned_abs()));
    }
}
