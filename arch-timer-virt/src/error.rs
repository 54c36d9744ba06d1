//! The crate's one error type.

use core::convert::Infallible;
use core::fmt;

use crate::IntId;

/// What can go wrong in this crate.
///
/// `E` is the error type of the [`IrqChip`](crate::IrqChip) in use; errors
/// that do not involve an interrupt controller use the default, [`Infallible`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error<E = Infallible> {
    /// A number outside 16..=31 was given where a PPI is required.
    InvalidPpi(u32),
    /// The same PPI was given to both timers of a VM.
    DuplicatePpi(IntId),
    /// The VM configuration can no longer change: a vCPU has been loaded.
    ConfigLocked,
    /// The operation needs the vCPU loaded on this CPU, and it is not.
    NotLoaded,
    /// [`VcpuTimer::load`](crate::VcpuTimer::load) on a vCPU that is
    /// already loaded.
    AlreadyLoaded,
    /// [`VcpuTimer::before_entry`](crate::VcpuTimer::before_entry) on a
    /// blocked vCPU, between [`block`](crate::VcpuTimer::block) and
    /// [`unblock`](crate::VcpuTimer::unblock).
    Blocked,
    /// A shared timer was borrowed again while already borrowed (a
    /// re-entrant call from inside [`SharedVcpuTimer::with`](crate::SharedVcpuTimer::with)).
    Busy,
    /// A guest wrote a read-only timer register (a count).
    ReadOnlyRegister,
    /// The interrupt controller reported an error.
    IrqChip(E),
}

impl Error {
    /// The same error for a context whose interrupt controller error is `E`.
    #[must_use]
    pub const fn widen<E>(self) -> Error<E> {
        match self {
            Self::InvalidPpi(n) => Error::InvalidPpi(n),
            Self::DuplicatePpi(i) => Error::DuplicatePpi(i),
            Self::ConfigLocked => Error::ConfigLocked,
            Self::NotLoaded => Error::NotLoaded,
            Self::AlreadyLoaded => Error::AlreadyLoaded,
            Self::Blocked => Error::Blocked,
            Self::Busy => Error::Busy,
            Self::ReadOnlyRegister => Error::ReadOnlyRegister,
            Self::IrqChip(never) => match never {},
        }
    }
}

impl<E: fmt::Display> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidPpi(n) => write!(f, "INTID {n} is not a PPI (16..=31)"),
            Self::DuplicatePpi(i) => write!(f, "{i} is given to both timers"),
            Self::ConfigLocked => write!(f, "the VM timer configuration is locked: a vCPU has run"),
            Self::NotLoaded => write!(f, "the vCPU timer is not loaded on this CPU"),
            Self::AlreadyLoaded => write!(f, "the vCPU timer is already loaded"),
            Self::Blocked => write!(f, "the vCPU is blocked: unblock it before entering it"),
            Self::Busy => write!(f, "the shared vCPU timer is already borrowed"),
            Self::ReadOnlyRegister => write!(f, "the timer register is read-only"),
            Self::IrqChip(e) => write!(f, "interrupt controller: {e}"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> core::error::Error for Error<E> {}
