//! The crate's error types: [`Error`] for the timer operations,
//! [`ConfigError`] for building a configuration, and the single-case
//! [`NotLoaded`] and [`Busy`] of the operations that can fail only that way.

use core::fmt;

use crate::IntId;

/// What can go wrong in a timer operation of a vCPU.
///
/// `E` is the error type of the [`IrqChip`](crate::IrqChip) in use.
/// Operations that cannot fail in more than one way return a narrower type
/// ([`NotLoaded`], [`Busy`], [`ConfigError`]) that converts into this one
/// with `?`, whatever `E` is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error<E> {
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

impl<E: fmt::Display> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotLoaded => fmt::Display::fmt(&NotLoaded, f),
            Self::AlreadyLoaded => write!(f, "the vCPU timer is already loaded"),
            Self::Blocked => write!(f, "the vCPU is blocked: unblock it before entering it"),
            Self::Busy => fmt::Display::fmt(&Busy, f),
            Self::ReadOnlyRegister => write!(f, "the timer register is read-only"),
            Self::IrqChip(e) => write!(f, "interrupt controller: {e}"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> core::error::Error for Error<E> {}

/// The vCPU is not loaded on this CPU: the only way
/// [`VcpuTimer::put`](crate::VcpuTimer::put) fails.
///
/// Converts into [`Error::NotLoaded`] with `?`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NotLoaded;

impl fmt::Display for NotLoaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the vCPU timer is not loaded on this CPU")
    }
}

impl core::error::Error for NotLoaded {}

impl<E> From<NotLoaded> for Error<E> {
    fn from(_: NotLoaded) -> Self {
        Self::NotLoaded
    }
}

/// A shared timer is already borrowed: the only way
/// [`SharedVcpuTimer::with`](crate::SharedVcpuTimer::with) fails (a
/// re-entrant call).
///
/// Converts into [`Error::Busy`] with `?`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Busy;

impl fmt::Display for Busy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the shared vCPU timer is already borrowed")
    }
}

impl core::error::Error for Busy {}

impl<E> From<Busy> for Error<E> {
    fn from(_: Busy) -> Self {
        Self::Busy
    }
}

/// What can go wrong while building a configuration: an interrupt number
/// ([`IntId::ppi`]) or the VM's settings ([`VmTimer`](crate::VmTimer)).
/// Nothing about a vCPU's run state can happen here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConfigError {
    /// A number outside 16..=31 was given where a PPI is required.
    InvalidPpi(u32),
    /// A number that is no interrupt a GIC can signal was given (1020..=1023
    /// are special, 1024..=8191 reserved, LPIs end at 2^24).
    InvalidIntId(u32),
    /// The same PPI was given to both timers of a VM.
    DuplicatePpi(IntId),
    /// The VM configuration can no longer change: a vCPU has been loaded.
    ConfigLocked,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidPpi(n) => write!(f, "INTID {n} is not a PPI (16..=31)"),
            Self::InvalidIntId(n) => write!(f, "{n} is not an interrupt ID"),
            Self::DuplicatePpi(i) => write!(f, "{i} is given to both timers"),
            Self::ConfigLocked => write!(f, "the VM timer configuration is locked: a vCPU has run"),
        }
    }
}

impl core::error::Error for ConfigError {}
