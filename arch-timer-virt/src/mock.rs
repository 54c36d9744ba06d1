//! [mockall] mocks of the hardware traits, for tests that check the exact
//! sequence of hardware accesses (feature `mock`).
//!
//! [`MockTimerHw::lenient`] accepts any number of `barrier()` calls, so a
//! test states only the accesses it is about. The crate re-exports
//! [`mockall`] for `Sequence`s and predicates, and the
//! feature turns on `critical-section`'s `std` implementation, so a test
//! links without a dependency of its own.
//!
//! ```
//! use arch_timer_virt::mock::MockTimerHw;
//! use arch_timer_virt::{Ticks, TimerHw};
//!
//! let mut hw = MockTimerHw::new();
//! hw.expect_physical_count().return_const(Ticks::new(100));
//! assert_eq!(hw.physical_count(), Ticks::new(100));
//! ```

use crate::{GicCpu, IntId, SoftTimer, Ticks, TimerCtl};

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
        fn physical_count(&self) -> Ticks;
        fn vtimer_ctl(&self) -> TimerCtl;
        fn set_vtimer_ctl(&mut self, ctl: TimerCtl);
        fn vtimer_cval(&self) -> Ticks;
        fn set_vtimer_cval(&mut self, cval: Ticks);
        fn set_virtual_offset(&mut self, offset: Ticks);
        fn barrier(&mut self);
        fn set_el1_physical_access(&mut self, allowed: bool);
        fn ptimer_ctl(&self) -> TimerCtl;
        fn set_ptimer_ctl(&mut self, ctl: TimerCtl);
        fn ptimer_cval(&self) -> Ticks;
        fn set_ptimer_cval(&mut self, cval: Ticks);
        fn has_physical_offset(&self) -> bool;
        fn set_physical_offset(&mut self, offset: Ticks);
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

impl MockTimerHw {
    /// A mock that accepts any number of [`barrier`](crate::TimerHw::barrier)
    /// calls (an internal step of a register sequence), so a test expects
    /// only the accesses it checks. Use [`new`](Self::new) where the
    /// barrier's place in a sequence is the point.
    #[must_use]
    pub fn lenient() -> Self {
        let mut hw = Self::new();
        hw.expect_barrier().return_const(());
        hw
    }
}

mockall::mock! {
    /// The host-side operations of [`MockGicCpu`], one mock method per
    /// [`GicCpu`] method that is not [`chip`](GicCpu::chip).
    pub GicOps {
        /// [`GicCpu::maintenance_intid`].
        pub fn maintenance_intid(&self) -> IntId;
        /// [`GicCpu::acknowledge`].
        pub fn acknowledge(&mut self) -> Option<IntId>;
        /// [`GicCpu::priority_drop`].
        pub fn priority_drop(&mut self, intid: IntId);
        /// [`GicCpu::deactivate`].
        pub fn deactivate(&mut self, intid: IntId);
        /// [`GicCpu::maintenance_asserted`].
        pub fn maintenance_asserted(&self) -> bool;
        /// [`GicCpu::vcpu_load`], for the vCPU `vgic`.
        pub fn vcpu_load(&mut self, vgic: usize) -> Result<(), MockChipError>;
        /// [`GicCpu::vcpu_put`], for the vCPU `vgic`.
        pub fn vcpu_put(&mut self, vgic: usize) -> Result<(), MockChipError>;
        /// [`GicCpu::sync_after_exit`], for the vCPU `vgic`.
        pub fn sync_after_exit(&mut self, vgic: usize) -> Result<(), MockChipError>;
        /// [`GicCpu::maintenance`], for the vCPU `vgic`.
        pub fn maintenance(&mut self, vgic: usize) -> Result<(), MockChipError>;
    }
}

/// A mock [`GicCpu`]: the host-side operations on [`ops`](Self::ops), the
/// [`IrqChip`](crate::IrqChip) that [`chip`](GicCpu::chip) lends on
/// [`chip`](Self::chip). A vCPU's state ([`GicCpu::Vgic`]) is its index, a
/// `usize`, which the `ops` expectations see.
#[derive(Default)]
pub struct MockGicCpu {
    /// Expectations of the host-side operations.
    pub ops: MockGicOps,
    /// Expectations of the timer operations' interrupt controller calls.
    pub chip: MockIrqChip,
}

impl MockGicCpu {
    /// A mock with no expectations.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

impl core::fmt::Debug for MockGicCpu {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("MockGicCpu")
    }
}

impl GicCpu for MockGicCpu {
    type Vgic = usize;
    type Error = MockChipError;
    type Chip<'a> = &'a mut MockIrqChip;

    fn chip<'a>(&'a mut self, _vgic: &'a mut usize) -> &'a mut MockIrqChip {
        &mut self.chip
    }
    fn maintenance_intid(&self) -> IntId {
        self.ops.maintenance_intid()
    }
    fn acknowledge(&mut self) -> Option<IntId> {
        self.ops.acknowledge()
    }
    fn priority_drop(&mut self, intid: IntId) {
        self.ops.priority_drop(intid);
    }
    fn deactivate(&mut self, intid: IntId) {
        self.ops.deactivate(intid);
    }
    fn maintenance_asserted(&self) -> bool {
        self.ops.maintenance_asserted()
    }
    fn vcpu_load(&mut self, vgic: &mut usize) -> Result<(), MockChipError> {
        self.ops.vcpu_load(*vgic)
    }
    fn vcpu_put(&mut self, vgic: &mut usize) -> Result<(), MockChipError> {
        self.ops.vcpu_put(*vgic)
    }
    fn sync_after_exit(&mut self, vgic: &mut usize) -> Result<(), MockChipError> {
        self.ops.sync_after_exit(*vgic)
    }
    fn maintenance(&mut self, vgic: &mut usize) -> Result<(), MockChipError> {
        self.ops.maintenance(*vgic)
    }
}
