//! [mockall] mocks of the hardware traits, for tests that check the exact
//! sequence of hardware accesses (feature `mock`).
//!
//! ```
//! use arch_timer_virt::mock::MockTimerHw;
//! use arch_timer_virt::{Ticks, TimerHw};
//!
//! let mut hw = MockTimerHw::new();
//! hw.expect_physical_count().return_const(Ticks::new(100));
//! assert_eq!(hw.physical_count(), Ticks::new(100));
//! ```

use crate::{IntId, SoftTimer, Ticks, TimerCtl, TimerFeatures};

/// The error of [`MockIrqChip`]: tests make a mock fail by returning it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MockChipError;

impl core::fmt::Display for MockChipError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("mock interrupt controller error")
    }
}

mockall::mock! {
    /// A mock [`TimerHw`](crate::TimerHw).
    pub TimerHw {}
    impl crate::TimerHw for TimerHw {
        fn features(&self) -> TimerFeatures;
        fn physical_count(&self) -> Ticks;
        fn vtimer_ctl(&self) -> TimerCtl;
        fn set_vtimer_ctl(&mut self, ctl: TimerCtl);
        fn vtimer_cval(&self) -> Ticks;
        fn set_vtimer_cval(&mut self, cval: Ticks);
        fn set_virtual_offset(&mut self, offset: Ticks);
        fn barrier(&mut self);
        fn set_el1_physical_access(&mut self, allowed: bool);
    }
}

mockall::mock! {
    /// A mock [`IrqChip`](crate::IrqChip) whose error is [`MockChipError`].
    pub IrqChip {}
    impl crate::IrqChip for IrqChip {
        type Error = MockChipError;
        fn set_host_active(&mut self, ppi: IntId, active: bool) -> Result<(), MockChipError>;
        fn set_host_masked(&mut self, ppi: IntId, masked: bool) -> Result<(), MockChipError>;
        fn set_virtual_level(&mut self, intid: IntId, level: bool) -> Result<(), MockChipError>;
        fn virtual_active(&self, intid: IntId) -> Result<bool, MockChipError>;
        fn map_virtual(&mut self, intid: IntId, host: IntId) -> Result<(), MockChipError>;
        fn unmap_virtual(&mut self, intid: IntId) -> Result<(), MockChipError>;
    }
}

mockall::mock! {
    /// A mock [`SoftTimers`](crate::SoftTimers).
    pub SoftTimers {}
    impl crate::SoftTimers for SoftTimers {
        fn arm(&mut self, timer: SoftTimer, at: Ticks);
        fn cancel(&mut self, timer: SoftTimer);
    }
}
