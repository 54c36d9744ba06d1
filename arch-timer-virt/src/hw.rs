//! The hardware the timer logic drives: [`TimerHw`], [`IrqChip`] and
//! [`SoftTimers`].
//!
//! Each trait is implemented by a backend (real system registers, a GIC
//! version, a host model, a mock). Every operation of
//! [`VcpuTimer`](crate::VcpuTimer) borrows the hardware it needs for the
//! duration of the call; nothing is stored.

use core::fmt;

use crate::{IntId, Ticks, TimerCtl};

/// The generic timer registers of *this* physical CPU, as seen from EL2.
///
/// Infallible: these are system register accesses. Reads without side
/// effects take `&self`, writes `&mut self`. What the CPU offers (VHE,
/// the counter frequency) is the backend's business, read when it is
/// built; the core asks only whether the EL1 physical counter can be
/// offset ([`has_physical_offset`](Self::has_physical_offset), FEAT_ECV),
/// which decides whether a guest's physical timer can run on the hardware
/// (see [`TimerMap`](crate::TimerMap)).
///
/// # Per-CPU exclusion
///
/// The core takes no lock around its register sequences (a save reads
/// CTL and CVAL, then disables the timer; a restore writes CVAL, a
/// barrier, then CTL). They rely on the implementation being the only
/// writer of these registers on its CPU: no interrupt handler on this CPU
/// touches them except through the same `TimerHw` (which Rust's `&mut`
/// then rules out during a call). An implementation on real registers
/// makes that its constructor's safety contract, as the aarch64 backend's
/// `SysRegs::new` does. Nothing else is needed: a guest exit at EL2 runs
/// with IRQs masked (`PSTATE.I` set on exception entry) until the
/// hypervisor unmasks them, and a handler that does reach the vCPU's timer
/// goes through [`SharedVcpuTimer`](crate::SharedVcpuTimer). The virtual timer accessors
/// reach the *EL1* virtual timer (`CNTV_CTL_EL0`/`CNTV_CVAL_EL0` with
/// `HCR_EL2.E2H = 0`, `CNTV_CTL_EL02`/`CNTV_CVAL_EL02` with E2H = 1), the
/// physical timer accessors the *EL1* physical timer (`CNTP_CTL_EL0`/
/// `CNTP_CVAL_EL0` with E2H = 0, `CNTP_CTL_EL02`/`CNTP_CVAL_EL02` with
/// E2H = 1). The hypervisor's own timer is the EL2 physical timer
/// (`CNTHP_*`), which nothing here touches.
///
/// # Implementing it on a model
///
/// A fake or emulator of these registers behaves as the hardware does
/// where the core relies on it:
///
/// - [`vtimer_ctl`](Self::vtimer_ctl) and [`ptimer_ctl`](Self::ptimer_ctl)
///   report ISTATUS from the timer condition at the moment of the read
///   while ENABLE is set (virtual: `count - CNTVOFF >= CVAL`; physical:
///   `count - CNTPOFF >= CVAL` while an offset is set, else
///   `count >= CVAL`; the count wraps modulo 2^64, the comparison is
///   unsigned). The core takes a direct timer's firing from that bit
///   (with ENABLE set and IMASK clear; it does not look at ISTATUS of a
///   disabled timer, which the architecture leaves UNKNOWN); it never
///   computes it from CVAL itself for a timer on the hardware.
/// - [`set_vtimer_ctl`](Self::set_vtimer_ctl) and
///   [`set_ptimer_ctl`](Self::set_ptimer_ctl) are given ENABLE and IMASK
///   only (ISTATUS is read-only and never written by the core); the CVAL
///   and offset setters take effect at once.
///
/// [`barrier`](Self::barrier) may do nothing on a model whose writes take
/// effect in program order.
pub trait TimerHw {
    /// The physical count, `CNTPCT_EL0`.
    fn physical_count(&self) -> Ticks;

    /// The EL1 virtual timer control register, ISTATUS included.
    fn vtimer_ctl(&self) -> TimerCtl;

    /// Writes the EL1 virtual timer control register.
    fn set_vtimer_ctl(&mut self, ctl: TimerCtl);

    /// The EL1 virtual timer compare value.
    fn vtimer_cval(&self) -> Ticks;

    /// Writes the EL1 virtual timer compare value.
    fn set_vtimer_cval(&mut self, cval: Ticks);

    /// Writes the virtual offset, `CNTVOFF_EL2`.
    fn set_virtual_offset(&mut self, offset: Ticks);

    /// An instruction synchronization barrier (`isb`): register writes
    /// before it take effect before any after it.
    fn barrier(&mut self);

    /// Allows (`true`) or traps (`false`) EL1 and EL0 accesses to the
    /// physical timer and counter: `CNTHCTL_EL2.EL1PCEN`/`EL1PCTEN`, at bits
    /// 1/0 with E2H = 0 and `EL1PTEN`/`EL1PCTEN` at 11/10 with E2H = 1.
    fn set_el1_physical_access(&mut self, allowed: bool);

    /// The EL1 physical timer control register, ISTATUS included. Its
    /// ISTATUS compares CVAL with the *offset* physical count
    /// (`CNTPCT - CNTPOFF_EL2`) while a physical offset is in effect (see
    /// [`set_physical_offset`](Self::set_physical_offset)).
    fn ptimer_ctl(&self) -> TimerCtl;

    /// Writes the EL1 physical timer control register.
    fn set_ptimer_ctl(&mut self, ctl: TimerCtl);

    /// The EL1 physical timer compare value.
    fn ptimer_cval(&self) -> Ticks;

    /// Writes the EL1 physical timer compare value.
    fn set_ptimer_cval(&mut self, cval: Ticks);

    /// Whether this CPU can offset the EL1 physical counter and timer:
    /// FEAT_ECV (`ID_AA64MMFR0_EL1.ECV != 0`), which adds `CNTPOFF_EL2`
    /// and `CNTHCTL_EL2.ECV`. A pure read of what the backend learned when
    /// it was built.
    #[doc(alias = "has_cntpoff")]
    fn has_physical_offset(&self) -> bool;

    /// Sets the offset EL1 and EL0 see on the physical counter and timer:
    /// writes `CNTPOFF_EL2` and sets `CNTHCTL_EL2.ECV` exactly when
    /// `offset` is not zero (so an offset of zero leaves the CPU as without
    /// FEAT_ECV). EL2's own view of the counter is never offset.
    ///
    /// The core calls it only when
    /// [`has_physical_offset`](Self::has_physical_offset) is `true`, while
    /// the EL1 physical timer is disabled. Without FEAT_ECV there is no
    /// such register: an implementation then does nothing.
    #[doc(alias = "CNTPOFF_EL2")]
    fn set_physical_offset(&mut self, offset: Ticks);
}

/// The interrupt controller, host side and virtual side.
///
/// The host side acts on the physical PPI of *this* CPU. The virtual side
/// acts for the vCPU whose timer operation is running: a backend with a
/// vGIC hands in a view of that vCPU. Every method is fallible and must not
/// panic on any INTID or state.
pub trait IrqChip {
    /// What can go wrong. `Debug` and `Display`, so that
    /// [`Error`](crate::Error)`<Self::Error>` is a [`core::error::Error`]
    /// and `?` turns it into a `Box<dyn Error>` also in code generic over
    /// the interrupt controller.
    type Error: fmt::Debug + fmt::Display;

    /// Sets (`true`) or clears (`false`) the active state of the physical
    /// PPI `ppi` on this CPU (`GICR_ISACTIVER0`/`GICR_ICACTIVER0`,
    /// `GICD_ISACTIVER0`/`GICD_ICACTIVER0`).
    ///
    /// # Errors
    ///
    /// Whatever the backend cannot do.
    fn set_host_active(&mut self, ppi: IntId, active: bool) -> Result<(), Self::Error>;

    /// Masks (`true`) or unmasks (`false`) the physical PPI `ppi` on this
    /// CPU (`ICENABLER0`/`ISENABLER0`).
    ///
    /// # Errors
    ///
    /// Whatever the backend cannot do.
    fn set_host_masked(&mut self, ppi: IntId, masked: bool) -> Result<(), Self::Error>;

    /// Sets the level of the vCPU's virtual interrupt line `intid`. Raising
    /// a line makes the interrupt pending for the guest (with the HW bit and
    /// the physical INTID when it is mapped, see
    /// [`map_virtual`](Self::map_virtual)); raising it again after the guest
    /// has deactivated it makes it pending again. Lowering it withdraws a
    /// still-pending interrupt; an active one is left to the guest.
    ///
    /// Raising a mapped line while the guest has the interrupt active
    /// changes nothing in the virtual interface: a hardware interrupt must
    /// not be pending and active there (its pending state is the physical
    /// PPI's, which signals again after the guest's deactivation if the
    /// timer still fires, and the library raises the line then). An
    /// unmapped one is pending again, at once (pending and active) or once
    /// the guest deactivates it (the level-sensitive behaviour below).
    ///
    /// A line that is not mapped (the emulated physical timer's) is
    /// level-sensitive: if it is still high when the guest deactivates the
    /// interrupt, the interrupt is pending again without another raise
    /// (the library raises a line only when its level changes). A GIC
    /// backend does this by asking for an EOI maintenance interrupt and
    /// re-injecting; a mapped line needs nothing of the kind, since the
    /// physical PPI signals again.
    ///
    /// # Errors
    ///
    /// Whatever the backend cannot do.
    fn set_virtual_level(&mut self, intid: IntId, level: bool) -> Result<(), Self::Error>;

    /// Whether the vCPU's virtual interrupt `intid` is active (or active and
    /// pending) in the guest.
    ///
    /// # Errors
    ///
    /// Whatever the backend cannot do.
    fn virtual_active(&self, intid: IntId) -> Result<bool, Self::Error>;

    /// Where the vCPU's virtual interrupt `intid` stands: neither pending
    /// nor active (the guest has completed it, or it was never raised),
    /// pending, active, or both. Pending counts wherever the backend keeps
    /// it (a list register, or a queue waiting for one).
    ///
    /// The library asks this (through
    /// [`lower_virtual_level`](Self::lower_virtual_level)) when it lowers a
    /// direct timer's line: a hardware-mapped interrupt the guest has
    /// completed has had its physical PPI deactivated by that completion,
    /// so the library skips the deactivation it would otherwise write.
    ///
    /// The default asks [`virtual_active`](Self::virtual_active) and
    /// reports an interrupt that is not active as
    /// [`VirtualState::Pending`]: always correct, at the cost of that
    /// deactivation. A backend that can tell the states apart overrides it.
    ///
    /// # Errors
    ///
    /// Whatever the backend cannot do.
    fn virtual_state(&self, intid: IntId) -> Result<VirtualState, Self::Error> {
        Ok(if self.virtual_active(intid)? {
            VirtualState::Active
        } else {
            VirtualState::Pending
        })
    }

    /// Lowers the line of the vCPU's virtual interrupt `intid`, as
    /// [`set_virtual_level`](Self::set_virtual_level)`(intid, false)`, and
    /// returns where the interrupt stood just before, as
    /// [`virtual_state`](Self::virtual_state) would have: what the library
    /// calls when a direct timer's line falls.
    ///
    /// The default does exactly those two calls. A backend that finds the
    /// interrupt once for both overrides it; the result must be the same.
    ///
    /// # Errors
    ///
    /// Whatever the backend cannot do; the state asked first, so an error
    /// there leaves the line as it was.
    fn lower_virtual_level(&mut self, intid: IntId) -> Result<VirtualState, Self::Error> {
        let state = self.virtual_state(intid)?;
        self.set_virtual_level(intid, false)?;
        Ok(state)
    }

    /// Maps the vCPU's virtual interrupt `intid` to the physical PPI `host`:
    /// from now on it is injected with the HW bit, so the guest's
    /// deactivation deactivates `host` too.
    ///
    /// # Errors
    ///
    /// Whatever the backend cannot do.
    fn map_virtual(&mut self, intid: IntId, host: IntId) -> Result<(), Self::Error>;

    /// Undoes [`map_virtual`](Self::map_virtual).
    ///
    /// # Errors
    ///
    /// Whatever the backend cannot do.
    fn unmap_virtual(&mut self, intid: IntId) -> Result<(), Self::Error>;
}

/// Where a virtual interrupt stands in the vCPU's interrupt controller
/// ([`IrqChip::virtual_state`]).
///
/// `#[non_exhaustive]`: match with a wildcard arm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum VirtualState {
    /// Neither pending nor active.
    Inactive,
    /// Pending, not active.
    Pending,
    /// Active, not pending.
    Active,
    /// Active and pending.
    PendingActive,
}

impl VirtualState {
    /// Whether the guest has the interrupt active
    /// ([`Active`](Self::Active) or [`PendingActive`](Self::PendingActive)).
    #[must_use]
    #[inline]
    pub const fn is_active(self) -> bool {
        matches!(self, Self::Active | Self::PendingActive)
    }
}

/// Which host software timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SoftTimer {
    /// Wakes a blocked vCPU at the earliest expiry of its timers.
    #[doc(alias = "bg_timer")]
    Background,
    /// Raises the emulated physical timer's line at its expiry while the
    /// guest runs (never armed for a direct physical timer).
    #[doc(alias = "phys_timer")]
    Physical,
}

/// The host's software timers for one vCPU: one-shot deadlines on the
/// physical counter.
///
/// When [`SoftTimer::Background`] expires the hypervisor wakes the vCPU;
/// when [`SoftTimer::Physical`] expires it calls
/// [`VcpuTimer::physical_timer_expired`](crate::VcpuTimer::physical_timer_expired)
/// (or simply exits the guest, whose next
/// [`before_entry`](crate::VcpuTimer::before_entry) raises the line).
/// Either order with the exit's [`after_exit`](crate::VcpuTimer::after_exit)
/// is right: the natural place is where the run loop handles the exit's
/// interrupts, after `after_exit`.
///
/// An implementation keeps one deadline per [`SoftTimer`] (the aarch64
/// backend's `HypTimer` multiplexes them onto the EL2 physical timer):
///
/// - a deadline the count has already reached expires at once, as a
///   hardware comparator does;
/// - a timer that expired is disarmed by the implementation: it fires once
///   per [`arm`](Self::arm);
/// - the core may arm or cancel from any timer operation, also on a vCPU
///   that is not loaded, and keeps its own record of what it armed.
pub trait SoftTimers {
    /// Arms `timer` to expire when the physical count reaches `at`,
    /// replacing any earlier deadline of the same timer. A deadline
    /// already reached expires at once.
    fn arm(&mut self, timer: SoftTimer, at: Ticks);

    /// Cancels `timer`. Cancelling a timer that is not armed, or has
    /// already expired, does nothing.
    fn cancel(&mut self, timer: SoftTimer);
}

impl<T: TimerHw + ?Sized> TimerHw for &mut T {
    fn physical_count(&self) -> Ticks {
        T::physical_count(self)
    }
    fn vtimer_ctl(&self) -> TimerCtl {
        T::vtimer_ctl(self)
    }
    fn set_vtimer_ctl(&mut self, ctl: TimerCtl) {
        T::set_vtimer_ctl(self, ctl);
    }
    fn vtimer_cval(&self) -> Ticks {
        T::vtimer_cval(self)
    }
    fn set_vtimer_cval(&mut self, cval: Ticks) {
        T::set_vtimer_cval(self, cval);
    }
    fn set_virtual_offset(&mut self, offset: Ticks) {
        T::set_virtual_offset(self, offset);
    }
    fn barrier(&mut self) {
        T::barrier(self);
    }
    fn set_el1_physical_access(&mut self, allowed: bool) {
        T::set_el1_physical_access(self, allowed);
    }
    fn ptimer_ctl(&self) -> TimerCtl {
        T::ptimer_ctl(self)
    }
    fn set_ptimer_ctl(&mut self, ctl: TimerCtl) {
        T::set_ptimer_ctl(self, ctl);
    }
    fn ptimer_cval(&self) -> Ticks {
        T::ptimer_cval(self)
    }
    fn set_ptimer_cval(&mut self, cval: Ticks) {
        T::set_ptimer_cval(self, cval);
    }
    fn has_physical_offset(&self) -> bool {
        T::has_physical_offset(self)
    }
    fn set_physical_offset(&mut self, offset: Ticks) {
        T::set_physical_offset(self, offset);
    }
}

impl<T: IrqChip + ?Sized> IrqChip for &mut T {
    type Error = T::Error;

    fn set_host_active(&mut self, ppi: IntId, active: bool) -> Result<(), Self::Error> {
        T::set_host_active(self, ppi, active)
    }
    fn set_host_masked(&mut self, ppi: IntId, masked: bool) -> Result<(), Self::Error> {
        T::set_host_masked(self, ppi, masked)
    }
    fn set_virtual_level(&mut self, intid: IntId, level: bool) -> Result<(), Self::Error> {
        T::set_virtual_level(self, intid, level)
    }
    fn virtual_active(&self, intid: IntId) -> Result<bool, Self::Error> {
        T::virtual_active(self, intid)
    }
    fn virtual_state(&self, intid: IntId) -> Result<VirtualState, Self::Error> {
        T::virtual_state(self, intid)
    }
    fn lower_virtual_level(&mut self, intid: IntId) -> Result<VirtualState, Self::Error> {
        T::lower_virtual_level(self, intid)
    }
    fn map_virtual(&mut self, intid: IntId, host: IntId) -> Result<(), Self::Error> {
        T::map_virtual(self, intid, host)
    }
    fn unmap_virtual(&mut self, intid: IntId) -> Result<(), Self::Error> {
        T::unmap_virtual(self, intid)
    }
}

impl<T: SoftTimers + ?Sized> SoftTimers for &mut T {
    fn arm(&mut self, timer: SoftTimer, at: Ticks) {
        T::arm(self, timer, at);
    }
    fn cancel(&mut self, timer: SoftTimer) {
        T::cancel(self, timer);
    }
}
