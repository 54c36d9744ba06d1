//! The crate's one error type.

use core::fmt;

use crate::HostMode;

/// What can go wrong when building or using a [`GenericTimer`](crate::GenericTimer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// VHE was asked for, but `ID_AA64MMFR1_EL1.VH` is 0: this CPU does not
    /// implement FEAT_VHE.
    VheNotImplemented,
    /// The host mode the caller stated does not match `HCR_EL2.E2H`.
    HostModeMismatch {
        /// What the caller stated.
        stated: HostMode,
        /// What `HCR_EL2.E2H` says.
        actual: HostMode,
    },
    /// `CNTPOFF_EL2` was written, but `ID_AA64MMFR0_EL1.ECV` is 0: this CPU
    /// does not implement FEAT_ECV (QEMU 7.2 does not).
    EcvNotImplemented,
    /// A [`HypTimer`](crate::HypTimer) slot that does not exist (from its
    /// `N`), or the same slot given for both of a vCPU's soft timers.
    NoSuchSlot(usize),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::VheNotImplemented => write!(f, "this CPU does not implement FEAT_VHE"),
            Self::HostModeMismatch { stated, actual } => write!(
                f,
                "host mode stated as {stated} but HCR_EL2.E2H says {actual}"
            ),
            Self::EcvNotImplemented => {
                write!(f, "this CPU does not implement FEAT_ECV (no CNTPOFF_EL2)")
            }
            Self::NoSuchSlot(slot) => write!(f, "no usable HypTimer slot {slot}"),
        }
    }
}

impl core::error::Error for Error {}
