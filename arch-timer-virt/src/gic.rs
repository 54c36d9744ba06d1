//! [`GicCpu`]: the GIC backends' own operations, so that a run loop is
//! generic over the GIC version and can be mocked.

use core::fmt;

use crate::{IntId, IrqChip};

/// The interrupt controller of one physical CPU as a hypervisor's run loop
/// drives it: the host CPU interface (acknowledge, priority drop,
/// deactivate), the maintenance interrupt, and the virtual CPU interface
/// of the vCPU it runs (load, put, the sync after each exit).
///
/// Implemented by the GICv3 and GICv2 backends' `HostGic` and by
/// `mock::MockGicCpu` (feature `mock`). A run loop written against this
/// trait compiles unchanged against any of them. (The model in
/// `arch-timer-virt-sim` does not implement it: its host GIC reads the
/// timer line from the same CPU state its `TimerHw` view borrows
/// mutably.)
///
/// [`chip`](Self::chip) lends the [`IrqChip`] the timer operations of
/// [`VcpuTimer`](crate::VcpuTimer) take: one `&mut` borrow of the host GIC
/// and the vCPU's state, for the duration of one call, so the run loop can
/// call the trait's own methods (such as
/// [`sync_after_exit`](Self::sync_after_exit)) between the timer's.
///
/// # The order around a guest exit
///
/// ```text
/// guest exits (IRQs masked at EL2)
/// maintenance_asserted()         optional (statistics): read before the sync,
///                                which handles and so clears its cause
/// sync_after_exit(vgic)          the vGIC's state first ...
/// VcpuTimer::after_irq_exit      ... then the timer's: after_irq_exit at an
///   or VcpuTimer::after_exit     IRQ exit, after_exit at any other
/// while let Some(id) = acknowledge() {
///     priority_drop(id)          EOImode = 1: still active
///     a direct timer's PPI       -> VcpuTimer::handle_timer_irq, which
///                                   leaves it to the guest (or deactivate
///                                   it if that returns HostIrq::NotLoaded)
///     maintenance_intid()        -> maintenance(vgic), deactivate(id)
///     anything else              -> the hypervisor's, deactivate(id)
/// }
/// ```
///
/// The whole run loop, schedule-in to schedule-out, is
/// [`VcpuTimer`](crate::VcpuTimer)'s call pattern; the crate's README
/// shows it as code.
pub trait GicCpu {
    /// One vCPU's virtual CPU interface state, saved while it is not
    /// loaded.
    type Vgic;
    /// What can go wrong; `Debug` and `Display`, as
    /// [`IrqChip::Error`].
    type Error: fmt::Debug + fmt::Display;
    /// The [`IrqChip`] for one vCPU on this CPU.
    type Chip<'a>: IrqChip<Error = Self::Error>
    where
        Self: 'a;

    /// The interrupt controller the timer operations of `vgic`'s vCPU use.
    fn chip<'a>(&'a mut self, vgic: &'a mut Self::Vgic) -> Self::Chip<'a>;

    /// The maintenance interrupt's PPI on this CPU (INTID 25 on the
    /// usual systems; the devicetree says).
    fn maintenance_intid(&self) -> IntId;

    /// Acknowledges the highest priority pending interrupt (`ICC_IAR1_EL1`,
    /// `GICC_IAR`), which becomes active. `None` if nothing is pending (a
    /// special INTID).
    fn acknowledge(&mut self) -> Option<IntId>;

    /// Drops the running priority of the acknowledged `intid`
    /// (`ICC_EOIR1_EL1`, `GICC_EOIR`); with `EOImode = 1` it stays active.
    fn priority_drop(&mut self, intid: IntId);

    /// Deactivates `intid` (`ICC_DIR_EL1`, `GICC_DIR`).
    fn deactivate(&mut self, intid: IntId);

    /// Whether the maintenance interrupt is asserted now. Read it right
    /// after an exit, before [`sync_after_exit`](Self::sync_after_exit),
    /// which handles (and so clears) the EOI condition that raised it.
    fn maintenance_asserted(&self) -> bool;

    /// Loads `vgic`'s state onto this CPU's virtual interface (vCPU
    /// scheduled in), before [`VcpuTimer::load`](crate::VcpuTimer::load).
    ///
    /// # Errors
    ///
    /// Whatever the backend refuses (a vCPU loaded elsewhere, another vCPU
    /// loaded here).
    fn vcpu_load(&mut self, vgic: &mut Self::Vgic) -> Result<(), Self::Error>;

    /// Saves it back (vCPU scheduled out), after
    /// [`VcpuTimer::put`](crate::VcpuTimer::put).
    ///
    /// # Errors
    ///
    /// Whatever the backend refuses (the vCPU is not loaded here).
    fn vcpu_put(&mut self, vgic: &mut Self::Vgic) -> Result<(), Self::Error>;

    /// Brings `vgic`'s bookkeeping in step with what the guest did to its
    /// list registers, right after each exit and before
    /// [`VcpuTimer::after_exit`](crate::VcpuTimer::after_exit).
    ///
    /// # Errors
    ///
    /// Whatever the backend refuses (the vCPU is not loaded here).
    fn sync_after_exit(&mut self, vgic: &mut Self::Vgic) -> Result<(), Self::Error>;

    /// The maintenance interrupt was taken: handles its cause (re-injects
    /// level-sensitive lines still high, refills list registers).
    ///
    /// # Errors
    ///
    /// Whatever the backend refuses (the vCPU is not loaded here).
    fn maintenance(&mut self, vgic: &mut Self::Vgic) -> Result<(), Self::Error>;
}

impl<T: GicCpu + ?Sized> GicCpu for &mut T {
    type Vgic = T::Vgic;
    type Error = T::Error;
    type Chip<'a>
        = T::Chip<'a>
    where
        Self: 'a;

    fn chip<'a>(&'a mut self, vgic: &'a mut Self::Vgic) -> Self::Chip<'a> {
        T::chip(self, vgic)
    }
    fn maintenance_intid(&self) -> IntId {
        T::maintenance_intid(self)
    }
    fn acknowledge(&mut self) -> Option<IntId> {
        T::acknowledge(self)
    }
    fn priority_drop(&mut self, intid: IntId) {
        T::priority_drop(self, intid);
    }
    fn deactivate(&mut self, intid: IntId) {
        T::deactivate(self, intid);
    }
    fn maintenance_asserted(&self) -> bool {
        T::maintenance_asserted(self)
    }
    fn vcpu_load(&mut self, vgic: &mut Self::Vgic) -> Result<(), Self::Error> {
        T::vcpu_load(self, vgic)
    }
    fn vcpu_put(&mut self, vgic: &mut Self::Vgic) -> Result<(), Self::Error> {
        T::vcpu_put(self, vgic)
    }
    fn sync_after_exit(&mut self, vgic: &mut Self::Vgic) -> Result<(), Self::Error> {
        T::sync_after_exit(self, vgic)
    }
    fn maintenance(&mut self, vgic: &mut Self::Vgic) -> Result<(), Self::Error> {
        T::maintenance(self, vgic)
    }
}
